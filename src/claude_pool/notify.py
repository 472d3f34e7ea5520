"""A broadcast "something changed" signal without lost wake-ups.

Take a :meth:`Signal.ticket` *before* looking at the state you wait on; then
``await Signal.wait(ticket, timeout)`` returns at once if :meth:`Signal.notify` was called
since the ticket was taken, else at the next notify or when ``timeout`` passes.
"""

from __future__ import annotations

import asyncio


class Signal:
    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def ticket(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    @staticmethod
    async def wait(ticket: asyncio.Event, timeout: float | None) -> bool:
        """Whether the signal came (False: the timeout passed first)."""
        try:
            async with asyncio.timeout(timeout):
                await ticket.wait()
        except TimeoutError:
            return False
        return True


__all__ = ["Signal"]

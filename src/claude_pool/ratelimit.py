"""Pool-level rate-limit awareness: while the API pushes back, new dispatches wait.

The CLI retries HTTP 429/529/5xx answers by itself and reports each retry (``api_retry``
events with the delay). Starting more tasks meanwhile would only meet the same answer, so the
pool holds dispatch until the latest announced retry time and resumes by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import BaseModel, Field

from claude_pool.events import Event, RateLimitCleared, RateLimitHeld
from claude_pool.executor.base import ExecutorEvent
from claude_pool.types import now_ms

log = logging.getLogger(__name__)


class RateLimitState(BaseModel):
    """The API is pushing back: new tasks wait until ``until_ms``."""

    until_ms: int
    status: int | None = None
    """HTTP status the CLI is retrying (429 rate limited, 529 overloaded, 5xx)."""
    slots: dict[str, int] = Field(default_factory=dict)
    """Slots whose CLI is retrying, with the time each expects to retry."""
    message: str = ""


class RateLimiter:
    def __init__(
        self, *, min_pause_secs: float, emit: Callable[[Event], None] | None = None
    ) -> None:
        self._min_pause_ms = int(min_pause_secs * 1000)
        self._state: RateLimitState | None = None
        self._slots: dict[str, int] = {}
        self._emit = emit

    def note_api_retry(self, event: ExecutorEvent) -> None:
        delay_ms = int(event.data.get("delay_ms") or 0)
        until = event.at_ms + max(delay_ms, self._min_pause_ms)
        status = event.data.get("status")
        self._slots[event.slot_id] = until
        if self._state is None or until > self._state.until_ms:
            self._state = RateLimitState(
                until_ms=until, status=status if isinstance(status, int) else None
            )
            if self._emit is not None:
                self._emit(RateLimitHeld(until_ms=until, status=self._state.status))
        log.warning(
            "slot %s task %s: API answered %s, CLI retrying in %d ms (attempt %s)",
            event.slot_id, event.task_id, status, delay_ms, event.data.get("attempt"),
        )  # fmt: skip

    def current(self) -> RateLimitState | None:
        """The state while dispatch is held, else None."""
        now = now_ms()
        state = self._state
        if state is None or state.until_ms <= now:
            if state is not None and self._emit is not None:
                self._emit(RateLimitCleared())
            self._state = None
            self._slots.clear()
            return None
        slots = {k: v for k, v in self._slots.items() if v > now}
        when = f"{(state.until_ms - now) / 1000:.1f}s"
        message = f"rate limited (HTTP {state.status or '?'}): dispatch resumes in {when}"
        return state.model_copy(update={"slots": slots, "message": message})

    async def gate(self) -> None:
        """Return once dispatch may go on."""
        # Later retries may push the time back, so check again after each sleep.
        while (state := self.current()) is not None:  # noqa: ASYNC110
            await asyncio.sleep((state.until_ms - now_ms()) / 1000)

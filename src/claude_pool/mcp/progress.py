"""Progress notifications for long tool calls, fed by the pool's domain events.

The pool calls listeners synchronously from its event loop; MCP progress is sent with an
``await``. A bounded queue sits between them, and one sender task per tool call drains it, so
a slow client can never hold up a slot (when the queue is full, the newest note is dropped).
Notes are the engine's own one-line descriptions of events (:func:`claude_pool.events.describe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from mcp.server.mcpserver import Context

from claude_pool.events import Event, TaskQueued, describe, ends_wait, outcome_of
from claude_pool.pool import Pool
from claude_pool.types import TaskRecord

log = logging.getLogger(__name__)

SendProgress = Callable[[float, float | None, str | None], Awaitable[None]]

_QUEUE_SIZE = 256
_FLUSH_SECS = 5.0


_QUIET = frozenset({"task_turn", "task_claimed", "spend_recorded"})
"""Event types not worth a notification of their own."""


def progress_note(event: Event) -> str | None:
    """The note a watched task's event gives (the engine's one-line description), or None."""
    if event.type in _QUIET:
        return None
    return describe(event)


class ProgressReporter:
    """Sends progress notifications for one tool call.

    ``watch(task_id)`` forwards that task's live events (each note bumps the progress counter,
    total unknown). ``advance(progress, total, note)`` reports counted progress (fan-out
    items) and is what a reporter with ``events=False`` uses. Progress values only increase,
    as MCP requires. Use as an async context manager: leaving it flushes pending notes.
    """

    def __init__(self, pool: Pool, send: SendProgress) -> None:
        self._pool = pool
        self._send = send
        self._watched: set[str] = set()
        self._chains: set[str] = set()
        self._tags: set[str] = set()
        self._ended: set[str] = set()
        """Watched tasks whose ending event was reported."""
        self._queue: asyncio.Queue[tuple[float, float | None, str] | None] = asyncio.Queue(
            _QUEUE_SIZE
        )
        self._progress = 0.0
        self._sender: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._broken = False

    async def __aenter__(self) -> Self:
        self._remove_listener = self._pool.add_listener(self._on_event)
        self._sender = asyncio.create_task(self._run_sender(), name="mcp-progress")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        sender = self._sender
        if sender is None:
            return
        if exc is None and not sender.done():
            # Let queued notes out before the response goes; never wait long for a slow peer.
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)
            done, _ = await asyncio.wait({sender}, timeout=_FLUSH_SECS)
            if done:
                return
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender

    def watch(self, task_id: str) -> None:
        """Report the task's events."""
        self._watched.add(task_id)

    def watch_chain(self, chain_id: str) -> None:
        """Report the chain's events, and those of its steps' tasks."""
        self._chains.add(chain_id)

    def watch_tag(self, tag: str) -> None:
        """Report every task queued with ``tag`` from now on, and its events."""
        self._tags.add(tag)

    def note(self, message: str) -> None:
        """Report a note with the next progress value (total unknown)."""
        self._progress += 1
        self._put(self._progress, None, message)

    def advance(self, progress: float, total: float | None, message: str) -> None:
        """Report counted progress; values that would not increase are bumped just past the last."""
        self._progress = max(progress, self._progress + 1e-6)
        self._put(self._progress, total, message)

    def _put(self, progress: float, total: float | None, message: str) -> None:
        if self._broken:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((progress, total, message))

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TaskQueued) and self._tags.intersection(event.tags):
            self._watched.add(event.task_id)
        if event.task_id not in self._watched and event.chain_id not in self._chains:
            return
        message = progress_note(event)
        if message is not None:
            if event.task_id is not None and ends_wait(event):
                self._ended.add(event.task_id)
            self.note(message)

    def ended(self, record: TaskRecord) -> None:
        """A watched task is over: report how, unless its ending event already was (it may
        have ended before the watch began)."""
        if record.id not in self._ended:
            event = outcome_of(record)
            if event is not None:
                self._ended.add(record.id)
                self.note(describe(event))

    async def _run_sender(self) -> None:
        while (item := await self._queue.get()) is not None:
            progress, total, message = item
            try:
                await self._send(progress, total, message)
            except Exception as exc:
                # The client went away or does not take progress: the call itself goes on.
                log.debug("progress notification failed, no more will be sent: %r", exc)
                self._broken = True
                return


def reporter_for(pool: Pool, ctx: Context[Any, Any]) -> ProgressReporter:
    """A reporter that sends through an MCP tool call's ``Context``."""
    return ProgressReporter(pool, ctx.report_progress)

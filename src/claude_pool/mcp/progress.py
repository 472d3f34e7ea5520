"""Progress notifications for long tool calls, fed by the pool's live events.

The pool calls listeners synchronously from its event loop; MCP progress is sent with an
``await``. A bounded queue sits between them, and one sender task per tool call drains it, so
a slow client can never hold up a slot (when the queue is full, the newest note is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from mcp.server.mcpserver import Context

from claude_pool.executor.base import EventKind, ExecutorEvent
from claude_pool.pool import Pool

log = logging.getLogger(__name__)

SendProgress = Callable[[float, float | None, str | None], Awaitable[None]]

_QUEUE_SIZE = 256
_FLUSH_SECS = 5.0
_SNIPPET_CHARS = 160


def _short(text: str, limit: int = _SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_event(event: ExecutorEvent) -> str | None:
    """A one-line note about a pool event, or None for events not worth a notification."""
    data = event.data
    task = event.task_id
    match event.kind:
        case EventKind.PROCESS_STARTED:
            return f"{task}: started on {event.slot_id}"
        case EventKind.TOOL_USE:
            tool_input = data.get("input")
            detail = ""
            if isinstance(tool_input, dict):
                for key in ("command", "file_path", "path", "pattern", "url", "description"):
                    if isinstance(tool_input.get(key), str):
                        detail = f" {_short(tool_input[key], 80)}"
                        break
            return f"{task}: using {data.get('name', 'a tool')}{detail}"
        case EventKind.ASSISTANT_TEXT:
            text = str(data.get("text", "")).strip()
            return f"{task}: {_short(text)}" if text else None
        case EventKind.API_RETRY:
            delay = float(data.get("delay_ms") or 0) / 1000
            return (
                f"{task}: API answered HTTP {data.get('status', '?')}, retrying in {delay:.1f}s "
                f"(attempt {data.get('attempt', '?')} of {data.get('max_retries', '?')})"
            )
        case EventKind.RATE_LIMIT:
            return f"{task}: rate limited by the API"
        case EventKind.PERMISSION_DENIED:
            return f"{task}: permission denied for {data.get('tool', 'a tool')}"
        case EventKind.RESULT:
            return f"{task}: finished"
        case _:
            return None


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
        self._watched.add(task_id)

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

    def _on_event(self, event: ExecutorEvent) -> None:
        if event.task_id not in self._watched:
            return
        message = describe_event(event)
        if message is not None:
            self.note(message)

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

"""Pool-level rate-limit awareness: while the API pushes back, new dispatches wait.

The CLI retries HTTP 429/529/5xx answers by itself and reports each retry (``api_retry``
events with the delay). Starting more tasks meanwhile would only meet the same answer, so the
pool holds dispatch while any task's CLI is retrying: from its first ``api_retry`` until the
task shows progress again (the retried call got through) or ends, however long the CLI's
backoff grows and whether or not the announced time has passed. A hold never outlives the
tasks that caused it.

The state is published to the store (:meth:`~claude_pool.store.base.MemberStore.set_rate_limit`)
so that ``claude-pool status`` in another process shows it; :func:`combined` merges what every
live pool process reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from claude_pool.events import Event, RateLimitCleared, RateLimitHeld
from claude_pool.executor.base import EventKind, ExecutorEvent
from claude_pool.notify import Signal
from claude_pool.store.base import MemberStore
from claude_pool.types import RateLimitState, now_ms

log = logging.getLogger(__name__)

PROGRESS = frozenset(
    {
        EventKind.ASSISTANT_TEXT,
        EventKind.TOOL_USE,
        EventKind.TOOL_RESULT,
        EventKind.TURN,
        EventKind.RESULT,
    }
)
"""Executor events that show a task's API call got through: its retrying is over."""


@dataclass
class _Retry:
    slot_id: str
    until_ms: int
    status: int | None


class RateLimiter:
    """Which of this pool's tasks are retrying an API call; dispatch waits while any is."""

    def __init__(self, *, worker_id: str, emit: Callable[[Event], None] | None = None) -> None:
        self._worker_id = worker_id
        self._retrying: dict[str, _Retry] = {}
        self._emit = emit
        self.changed = Signal()
        """Notified whenever the hold starts, changes or ends."""

    @property
    def held(self) -> bool:
        return bool(self._retrying)

    def note_api_retry(self, event: ExecutorEvent) -> None:
        delay_ms = int(event.data.get("delay_ms") or 0)
        status = event.data.get("status")
        status = status if isinstance(status, int) else None
        until = event.at_ms + delay_ms
        before = self.current()
        self._retrying[event.task_id] = _Retry(event.slot_id, until, status)
        if (before is None or until > before.until_ms) and self._emit is not None:
            self._emit(RateLimitHeld(until_ms=until, status=status))
        self.changed.notify()
        log.warning(
            "slot %s task %s: API answered %s, CLI retrying in %d ms (attempt %s); "
            "dispatch waits until it gets through",
            event.slot_id, event.task_id, status, delay_ms, event.data.get("attempt"),
            extra={"task_id": event.task_id, "slot_id": event.slot_id},
        )  # fmt: skip

    def note_event(self, event: ExecutorEvent) -> None:
        """A task's executor event: an API retry starts (or extends) the hold, progress
        ends that task's part in it."""
        if event.kind is EventKind.API_RETRY:
            self.note_api_retry(event)
        elif event.kind in PROGRESS:
            self.task_done(event.task_id)

    def task_done(self, task_id: str) -> None:
        """The task got through or ended: it no longer holds dispatch."""
        if self._retrying.pop(task_id, None) is None:
            return
        if not self._retrying:
            log.info("no task is retrying an API call any more: dispatch resumes")
            if self._emit is not None:
                self._emit(RateLimitCleared())
        self.changed.notify()

    def current(self) -> RateLimitState | None:
        """This pool's hold, or None while no task is retrying."""
        if not self._retrying:
            return None
        latest = max(self._retrying.values(), key=lambda r: r.until_ms)
        return RateLimitState(
            until_ms=latest.until_ms,
            status=latest.status,
            slots={r.slot_id: r.until_ms for r in self._retrying.values()},
            tasks=sorted(self._retrying),
            workers=[self._worker_id],
        )

    async def gate(self) -> None:
        """Return once no task of this pool is retrying."""
        while self._retrying:
            ticket = self.changed.ticket()
            if not self._retrying:
                break
            # Cancelled with the scheduler when the pool closes; every change notifies.
            await Signal.wait(ticket, None)


async def publish(
    limiter: RateLimiter, store: MemberStore, worker_id: str, retry_secs: float
) -> None:
    """Keep ``limiter``'s hold in the store, for other processes' status (a background task:
    it writes on every change, and retries a failed write after ``retry_secs``)."""
    published: RateLimitState | None = None
    while True:
        ticket = limiter.changed.ticket()
        state = limiter.current()
        if state != published:
            try:
                await store.set_rate_limit(worker_id, state)
            except Exception:
                log.exception("publishing the rate-limit state failed; will retry")
                await asyncio.sleep(retry_secs)
                continue
            published = state
        await Signal.wait(ticket, None)


def combined(states: Iterable[RateLimitState], now: int | None = None) -> RateLimitState | None:
    """One view of the holds of several pool processes (None when none holds), with a
    message for people."""
    states = list(states)
    if not states:
        return None
    now = now_ms() if now is None else now
    latest = max(states, key=lambda s: s.until_ms)
    slots: dict[str, int] = {}
    tasks: set[str] = set()
    workers: set[str] = set()
    for state in states:
        slots.update(state.slots)
        tasks.update(state.tasks)
        workers.update(state.workers)
    count = len(tasks)
    retrying = f"{count} task{'s' if count != 1 else ''} retrying"
    if latest.until_ms > now:
        when = f"next try in {(latest.until_ms - now) / 1000:.1f}s"
    else:
        when = "retry under way"
    return RateLimitState(
        until_ms=latest.until_ms,
        status=latest.status,
        slots=slots,
        tasks=sorted(tasks),
        workers=sorted(workers),
        message=(
            f"rate limited (HTTP {latest.status or '?'}): dispatch waits while {retrying} ({when})"
        ),
    )


__all__ = ["PROGRESS", "RateLimitState", "RateLimiter", "combined", "publish"]

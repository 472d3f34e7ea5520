"""Assignment: slots claim queued tasks (priority, then FIFO) and pending tasks that wait too
long for a slot fail with ``NoSlotAvailable``.

No lock is held while waiting. Each idle slot loop asks the store for the best task it may run
(an atomic claim), and when there is none waits for a "work arrived" signal. Submissions in this
process signal at once; submissions from other processes sharing the store are seen within
``poll_secs``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from claude_pool.slot import Slot
from claude_pool.store.base import Store, StoredTask
from claude_pool.types import SlotState, TaskId, TaskState, now_ms

log = logging.getLogger(__name__)

RunClaimed = Callable[[Slot, StoredTask], Awaitable[None]]
ExpireTask = Callable[[StoredTask, float], Awaitable[None]]
AssignmentTimeout = Callable[[StoredTask], float]


class WorkSignal:
    """A broadcast "something changed" signal without lost wake-ups: take a ``ticket()``
    before looking for work, then ``wait(ticket)`` returns at once if a signal came since."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    @staticmethod
    async def wait(ticket: asyncio.Event, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await ticket.wait()
        except TimeoutError:
            pass


class Dispatcher:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        run_claimed: RunClaimed,
        expire: ExpireTask,
        assignment_timeout: AssignmentTimeout,
        *,
        poll_secs: float,
        gate: Callable[[], Awaitable[None]] | None = None,
        targeted_only: bool = False,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._run_claimed = run_claimed
        self._expire = expire
        self._assignment_timeout = assignment_timeout
        self._poll_secs = poll_secs
        self._gate = gate
        self._targeted_only = targeted_only
        self.work = WorkSignal()
        self._deadlines: list[tuple[float, TaskId]] = []
        self._deadline_added = WorkSignal()

    # ── slot loops ──────────────────────────────────────────────────

    async def slot_loop(self, slot: Slot) -> None:
        """Claim and run tasks on one slot until the slot is told to stop."""
        while not slot.stopping:
            if self._gate is not None:
                await self._gate()
            ticket = self.work.ticket()
            if slot.record.state is SlotState.ERRORED:
                # Waits for the supervisor (or a person) to restore it.
                await WorkSignal.wait(ticket, self._poll_secs)
                continue
            try:
                claimed = await self._claim(slot)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("slot %s: claiming a task failed; retrying", slot.id)
                await WorkSignal.wait(ticket, self._poll_secs)
                continue
            if claimed is None:
                await WorkSignal.wait(ticket, self._poll_secs)
                continue
            await self._run_claimed(slot, claimed)

    async def _claim(self, slot: Slot) -> StoredTask | None:
        """Claim atomically; if this loop is cancelled mid-claim (scale-down, drain), a task
        the store already handed over goes back to the queue instead of being lost."""
        claim = asyncio.ensure_future(
            self._store.claim_task(
                slot.id,
                slot.record.config.role,
                slot.record.config.name,
                self._worker_id,
                now_ms(),
                targeted_only=self._targeted_only,
            )
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            claimed = await claim
            if claimed is not None:
                await self._store.transition_task(
                    claimed.record.id,
                    {TaskState.RUNNING},
                    TaskState.PENDING,
                    now_ms=now_ms(),
                    slot_id=None,
                )
                self.work.notify()
            raise

    # ── assignment deadlines ────────────────────────────────────────

    def track_deadline(self, task: StoredTask) -> None:
        """Remember when a task submitted here must have found a slot."""
        created = task.record.created_at_ms or now_ms()
        deadline = created / 1000 + self._assignment_timeout(task)
        heapq.heappush(self._deadlines, (deadline, task.record.id))
        self._deadline_added.notify()

    async def assignment_watchdog(self, min_timeout: Callable[[], float]) -> None:
        """Fail pending tasks whose wait for a slot exceeded their assignment timeout.

        Tasks submitted here are tracked precisely by deadline; tasks submitted by other
        processes are found by a store query at most once per second.
        """
        next_scan = 0.0
        while True:
            now = now_ms() / 1000
            while self._deadlines and self._deadlines[0][0] <= now:
                _, task_id = heapq.heappop(self._deadlines)
                stored = await self._store.get_task(task_id)
                if stored is not None and stored.record.state is TaskState.PENDING:
                    await self._expire(stored, self._assignment_timeout(stored))
            if now >= next_scan:
                next_scan = now + 1.0
                cutoff = int((now - min_timeout()) * 1000)
                for stored in await self._store.pending_tasks_older_than(cutoff):
                    limit = self._assignment_timeout(stored)
                    if (stored.record.created_at_ms or 0) / 1000 + limit <= now:
                        await self._expire(stored, limit)
            wake_at = min(next_scan, self._deadlines[0][0] if self._deadlines else next_scan)
            await WorkSignal.wait(self._deadline_added.ticket(), max(0.0, wake_at - now))

"""The supervisor: a periodic health check of the pool's slots and of the store.

Every ``supervisor_interval_secs`` it

- restores errored slots (a fresh process and conversation), each at most ``max_restarts``
  times, so a slot that keeps failing stays errored for a human to look at;
- stops tasks stuck past their timeout (plus a grace period), which the executor should have
  ended itself;
- reconciles the store with reality: slot records that disagree with the live slots are
  rewritten, and tasks the store says run here but no slot runs are put back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from claude_pool.queue import EXTERNAL_PREFIX, TaskQueue
from claude_pool.runner import TaskRunner
from claude_pool.slots import SlotSet
from claude_pool.store.base import Store
from claude_pool.types import SlotId, TaskFilter, TaskState, now_ms

log = logging.getLogger(__name__)

STUCK_GRACE_SECS = 60.0
"""How long past its timeout a task may run before the supervisor stops it."""

ORPHAN_GRACE_SECS = 10.0
"""How long a task must have been running, unknown to every slot here, to count as orphaned."""


@dataclass
class SupervisorReport:
    """What one check did."""

    restored_slots: list[SlotId] = field(default_factory=list)
    stuck_tasks_stopped: list[str] = field(default_factory=list)
    slots_reconciled: list[SlotId] = field(default_factory=list)
    tasks_requeued: list[str] = field(default_factory=list)


class Supervisor:
    """Works only through the public interfaces of the slot set, the task runner and the
    queue."""

    def __init__(
        self,
        *,
        store: Store,
        slots: SlotSet,
        runner: TaskRunner,
        queue: TaskQueue,
        worker_id: str,
        max_restarts: int,
        stuck_grace_secs: float = STUCK_GRACE_SECS,
    ) -> None:
        self._store = store
        self._slots = slots
        self._runner = runner
        self._queue = queue
        self._worker_id = worker_id
        self.max_restarts = max_restarts
        self.stuck_grace_secs = stuck_grace_secs
        self.restores: dict[SlotId, int] = {}
        self.last_report = SupervisorReport()

    async def run(self, interval_secs: float) -> None:
        while True:
            await asyncio.sleep(interval_secs)
            try:
                self.last_report = await self.check_once()
            except Exception:
                log.exception("supervisor check failed; will retry")

    async def check_once(self) -> SupervisorReport:
        report = SupervisorReport()
        await self._restore_errored(report)
        self._stop_stuck(report)
        await self._reconcile(report)
        return report

    async def _restore_errored(self, report: SupervisorReport) -> None:
        limit = self.max_restarts
        for slot in self._slots.errored():
            used = self.restores.get(slot.id, 0)
            if used >= limit:
                continue
            self.restores[slot.id] = used + 1
            await self._slots.restore(slot)
            report.restored_slots.append(slot.id)
            log.warning(
                "supervisor: restored errored slot %s (restore %d of %d)", slot.id, used + 1, limit
            )

    def _stop_stuck(self, report: SupervisorReport) -> None:
        now = now_ms()
        for running in self._runner.running_tasks():
            limit = running.timeout_secs
            if limit is None or running.cancel.is_set():
                continue
            if now - running.started_ms > (limit + self.stuck_grace_secs) * 1000:
                running.stop(
                    f"stopped by the supervisor: still running {self.stuck_grace_secs:g}s past "
                    f"its {limit:g}s timeout"
                )
                report.stuck_tasks_stopped.append(running.task_id)
                log.error(
                    "supervisor: task %s stuck past its timeout; stopping it", running.task_id
                )

    async def _reconcile(self, report: SupervisorReport) -> None:
        store = self._store
        for slot in self._slots:
            stored = await store.get_slot(slot.id)
            if stored is None:
                continue
            live = slot.record
            if (stored.state, stored.current_task) != (live.state, live.current_task):
                await store.update_slot(slot.id, state=live.state, current_task=live.current_task)
                report.slots_reconciled.append(slot.id)
        # A task claimed a moment ago may not be registered as running yet; only tasks that
        # have been running a while without a runner are orphans.
        settled_before = now_ms() - int(ORPHAN_GRACE_SECS * 1000)
        for record in await store.list_tasks(TaskFilter(state=TaskState.RUNNING), limit=10_000):
            if record.id in self._runner or (record.started_at_ms or 0) > settled_before:
                continue
            stored_task = await store.get_task(record.id)
            if (
                stored_task is None
                or stored_task.claimed_by != self._worker_id
                or (record.slot_id or "").startswith(EXTERNAL_PREFIX)
            ):
                continue
            if await self._queue.requeue(
                stored_task, "it was marked running here but nothing ran it"
            ):
                report.tasks_requeued.append(record.id)
                log.error(
                    "supervisor: task %s was marked running here but nothing ran it; re-queued",
                    record.id,
                )

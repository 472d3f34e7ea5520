"""Assignment: free slots claim queued tasks (priority, then FIFO), and tasks that wait too long
for a slot fail with ``NoSlotAvailable``.

One claim loop per pool. For each free slot that looks for work it starts a claim (the store
hands over the best task the slot may run, atomically; the claims of several slots go side by
side, so a store may commit them together), and the task that claimed runs what it got
through the task runner. No lock is held while waiting, and nothing polls: a slot asks when
it has a reason to — it was just added, it finished a task, or work it may run arrived (a
``task_queued``, ``task_requeued`` or ``task_rejected`` event, from this process or, through
the store's wake-up channel, from another). One arrival makes one parked
slot ask, not all of them (or, when every slot that fits is asking already, makes one of them
ask again if it finds nothing); a slot that asks and finds nothing parks until the next reason.
A slow fallback makes every parked slot ask again once in a while, in case a wake-up was lost.

Assignment deadlines are tracked from the same events (every process sharing the store tracks
every task's; a compare-and-set lets exactly one of them fail it).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from claude_pool.errors import NoSlotAvailable, StoreDamaged
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    Event,
    TaskApproved,
    TaskClaimed,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    TaskTargetInfo,
    finished,
    task_state_after,
)
from claude_pool.lifecycle import Lifecycle
from claude_pool.notify import Signal
from claude_pool.outcomes import Outcomes
from claude_pool.runner import TaskRunner
from claude_pool.slot import Slot
from claude_pool.slots import SlotSet
from claude_pool.store.base import Store, StoredTask, TaskTarget
from claude_pool.types import PoolConfig, TaskId, TaskResult, TaskState, now_ms

log = logging.getLogger(__name__)

_MAX_TARGETS = 1000
"""Kinds of target whose announced tasks the scheduler counts (see Scheduler._waiting)."""

FALLBACK_SECS = 30.0
"""How often every parked slot asks for work anyway (lost wake-ups cannot strand a task)."""


def target_of(info: TaskTargetInfo) -> TaskTarget:
    return TaskTarget(slot_id=info.slot_id, role=info.role, name=info.name)  # type: ignore[arg-type]


def target_info(target: TaskTarget) -> TaskTargetInfo:
    return TaskTargetInfo(slot_id=target.slot_id, role=target.role, name=target.name)


class Scheduler:
    def __init__(
        self,
        *,
        config: PoolConfig,
        store: Store,
        slots: SlotSet,
        runner: TaskRunner,
        events: EventLog,
        outcomes: Outcomes,
        lifecycle: Lifecycle,
        gate: Callable[[], Awaitable[None]] | None = None,
        targeted_only: bool = False,
        fallback_secs: float = FALLBACK_SECS,
    ) -> None:
        self.config = config
        self._store = store
        self._slots = slots
        self._runner = runner
        self._events = events
        self._outcomes = outcomes
        self._lifecycle = lifecycle
        self._gate = gate
        self.targeted_only = targeted_only
        self._fallback_secs = fallback_secs
        self._generation = 0
        self._claim_done = Signal()
        self._in_flight = 0
        self._unserved: list[TaskTarget] = []
        """Targets of work that arrived while every slot that fits it was asking."""
        self._waiting: dict[TaskTarget, int] = {}
        """Tasks announced here (queued, requeued, unblocked) that no claim here has taken
        yet, by target: what a slot whose task ends may find. An over-count (a task taken by
        another process, or cancelled) costs one claim that finds nothing, which clears it."""
        self._announced = 0
        """Announcements so far; ``_last_announced``: the number of each target's latest."""
        self._last_announced: dict[TaskTarget, int] = {}
        self._damaged: StoreDamaged | None = None
        self.claims = 0
        """Claims asked of the store so far (for benchmarks)."""
        self._claims_failing = False
        # Assignment deadlines: a heap of (deadline, task id), and the live ones by id.
        self._deadlines: list[tuple[float, TaskId]] = []
        self._deadline_of: dict[TaskId, float] = {}
        self._deadline_added = Signal()

    # ── reasons to look for work ─────────────────────────────────────

    def on_event(self, event: Event) -> None:
        """Bus listener: work arrived, or a tracked task no longer waits for a slot."""
        match event:
            case TaskQueued(depends_on=[]):
                self.work_arrived(target_of(event.target))
                self._track(event)
            case TaskQueued():
                pass  # waits for its dependencies: see unblocked()
            case TaskRequeued(target=target):
                if target is None:
                    self.look_everywhere()
                else:
                    self.work_arrived(target_of(target))
            case TaskRejected(requeued=True, target=target):
                self.work_arrived(target_of(target))
            case TaskApproved(kind="plan", target=target):
                self.work_arrived(target_of(target) if target else TaskTarget())
            case TaskClaimed(task_id=task_id):
                self._deadline_of.pop(TaskId(task_id), None)
            case _ if event.task_id is not None and task_state_after(event) is not None:
                state = task_state_after(event)
                if state is not TaskState.PENDING:
                    self._deadline_of.pop(TaskId(event.task_id), None)

    def _may_run(self, slot: Slot, target: TaskTarget) -> bool:
        if self.targeted_only and target.describe() is None:
            return False
        return slot.may_run(target)

    def work_arrived(self, target: TaskTarget) -> None:
        """A task this pool's slots may run was queued: one parked slot that fits it looks."""
        chosen: Slot | None = None
        for slot in self._slots:
            if (
                not slot.looking
                and slot.is_free
                and (chosen is None or slot.last_active_ms < chosen.last_active_ms)
                and self._may_run(slot, target)
            ):
                chosen = slot
        if len(self._waiting) < _MAX_TARGETS or target in self._waiting:
            self._announced += 1
            self._waiting[target] = self._waiting.get(target, 0) + 1
            self._last_announced[target] = self._announced
        else:
            self.look_everywhere()  # too many kinds of target to count: every slot asks
        if chosen is not None:
            chosen.looking = True
            self._slots.changed.notify()
            return
        if len(self._unserved) < len(self._slots) and any(
            slot.claiming and self._may_run(slot, target) for slot in self._slots
        ):
            # Every slot that fits is asking the store right now, and may have missed it:
            # one of them asks again if it finds nothing.
            self._unserved.append(target)
        self._slots.changed.notify()

    def wants_work(self, slot: Slot) -> bool:
        """Whether ``slot``, whose task just ended, should ask the store for more: the queue
        may hold work this process was never told of (``slot.backlog``), or more tasks that
        fit it were announced than other slots are asking for."""
        if slot.backlog:
            return True
        fitting = [t for t in self._waiting if self._may_run(slot, t)]
        if not fitting:
            return False
        waiting = sum(self._waiting[t] for t in fitting)
        asking = sum(
            1
            for other in self._slots
            if other is not slot
            and (other.looking or other.claiming)
            and any(self._may_run(other, t) for t in fitting)
        )
        return waiting > asking

    def _taken(self, slot: Slot, claimed: StoredTask | None, announced: int) -> None:
        """Count a claim's outcome against the announced tasks; ``announced``: the number of
        announcements when the claim began."""
        if claimed is None:
            # Nothing in the store fitted this slot when it asked: what was announced for it
            # before then is gone (taken elsewhere, cancelled). What was announced while it
            # asked may not have been stored yet when it looked, so it stays counted.
            slot.backlog = False
            for target in [t for t in self._waiting if self._may_run(slot, t)]:
                if self._last_announced[target] <= announced:
                    self._forget(target)
            return
        target = claimed.target
        if target in self._waiting:
            if self._waiting[target] > 1:
                self._waiting[target] -= 1
            else:
                self._forget(target)

    def _forget(self, target: TaskTarget) -> None:
        del self._waiting[target]
        del self._last_announced[target]

    def unblocked(self, stored: StoredTask) -> None:
        """A task's dependencies no longer hold it: a slot looks for it, and its wait for a
        slot starts now (not when it was queued)."""
        self.work_arrived(stored.target)
        if stored.record.id not in self._deadline_of:
            limit = self.assignment_timeout(stored.target, stored.assignment_timeout_secs)
            self.track_deadline(stored.record.id, now_ms(), limit)

    def look_everywhere(self) -> None:
        """Every free slot looks once (after a restart, a requeue of unknown target...)."""
        self._generation += 1
        for slot in self._slots:
            slot.backlog = True
        for slot in self._slots.free():
            slot.looking = True
        self._slots.changed.notify()

    # ── the claim loop ───────────────────────────────────────────────

    async def run(self, tg: asyncio.TaskGroup) -> None:
        """Claim work for free slots and start it in ``tg`` (a background task).

        Each claim is a task of its own, so that the claims of several free slots are asked
        of the store side by side (a store may commit them in one transaction)."""
        while self._damaged is None:
            if self._gate is not None:
                await self._gate()
            ticket = self._slots.changed.ticket()
            slot = self._next_looking()
            if slot is None:
                if not await Signal.wait(ticket, self._fallback_secs):
                    self.look_everywhere()
                continue
            slot.looking = False
            slot.claiming = True
            self._in_flight += 1
            tg.create_task(
                self._claim_for(slot, self._generation, self._announced), name=f"claim-{slot.id}"
            )
        self._lifecycle.fail(self._damaged)  # nothing more can be claimed

    async def _claim_for(self, slot: Slot, generation: int, announced: int) -> None:
        """Claim a task for ``slot`` and run it (a task of the pool's task group)."""
        try:
            claimed = await self._claim(slot)
        except asyncio.CancelledError:
            raise
        except StoreDamaged as exc:
            self._damaged = exc
            return
        except Exception as exc:
            if not self._claims_failing:  # once per incident, not once a second
                log.error("claiming a task failed (%r); retrying every second", exc)
            self._claims_failing = True
            self._claim_ended(slot)
            await Signal.wait(self._slots.changed.ticket(), 1.0)
            slot.looking = True
            self._slots.changed.notify()
            return
        finally:
            if slot.claiming:
                self._claim_ended(slot)
        if self._claims_failing:
            self._claims_failing = False
            log.warning("claiming tasks works again")
        self._taken(slot, claimed, announced)
        if claimed is None:
            if self._generation != generation or self._took_unserved(slot):
                slot.looking = True  # work arrived while it asked: ask again
                self._slots.changed.notify()
            return
        self._events.emit(TaskClaimed(task_id=claimed.record.id, slot_id=slot.id))
        running = self._runner.start(slot, claimed)
        current = asyncio.current_task()
        if current is not None:
            current.set_name(f"task-{claimed.record.id}")
        await self._runner.run(slot, claimed, running)  # (in this task: one task per run)

    def _took_unserved(self, slot: Slot) -> bool:
        """Whether work arrived for this slot while every slot that fits it was asking."""
        for i, target in enumerate(self._unserved):
            if self._may_run(slot, target):
                del self._unserved[i]
                return True
        return False

    def _claim_ended(self, slot: Slot) -> None:
        slot.claiming = False
        self._in_flight -= 1
        self._claim_done.notify()
        self._slots.claim_ended.notify()
        self._slots.changed.notify()  # (wakes the loop, which may stop or find the slot free)

    def _next_looking(self) -> Slot | None:
        best: Slot | None = None
        for slot in self._slots:
            if (
                slot.looking
                and slot.is_free
                and (best is None or slot.last_active_ms < best.last_active_ms)
            ):
                best = slot
        return best

    async def _claim(self, slot: Slot) -> StoredTask | None:
        """Claim atomically; if the loop is cancelled mid-claim (the pool closing), a task the
        store already handed over goes back to the queue instead of being lost."""
        self.claims += 1
        claim = asyncio.ensure_future(
            self._store.claim_task(
                slot.id,
                slot.role,
                slot.name,
                self._events.worker_id,
                now_ms(),
                targeted_only=self.targeted_only,
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
            raise

    async def claim_settled(self) -> None:
        """Return once no claim is in flight (a task claimed then is registered by now)."""
        while self._in_flight:
            await Signal.wait(self._claim_done.ticket(), None)

    # ── assignment deadlines ─────────────────────────────────────────

    def assignment_timeout(self, target: TaskTarget, explicit: float | None) -> float:
        """How long a task may wait for a slot: its own limit, else the longest override of
        the slots here that may run it, else the pool's."""
        if explicit is not None:
            return explicit
        if not self._slots.any_assignment_timeout():
            return float(self.config.slot_assignment_timeout_secs)
        overrides = [
            s.record.config.slot_assignment_timeout_secs
            for s in self._slots
            if s.record.config.slot_assignment_timeout_secs is not None and s.may_run(target)
        ]
        return (
            float(max(overrides)) if overrides else float(self.config.slot_assignment_timeout_secs)
        )

    def _track(self, event: TaskQueued) -> None:
        limit = self.assignment_timeout(target_of(event.target), event.assignment_timeout_secs)
        self.track_deadline(TaskId(event.task_id), event.at_ms, limit)

    def track_deadline(self, task_id: TaskId, created_ms: int, limit: float) -> None:
        deadline = created_ms / 1000 + limit
        self._deadline_of[task_id] = deadline
        # The watchdog sleeps until the earliest deadline: only an earlier one must wake it
        # (waking it for each of a batch's tasks cost an event-loop turn per task).
        earlier = not self._deadlines or deadline < self._deadlines[0][0]
        heapq.heappush(self._deadlines, (deadline, task_id))
        if len(self._deadlines) > 2 * len(self._deadline_of) + 1024:
            self._deadlines = [(d, t) for d, t in self._deadlines if self._deadline_of.get(t) == d]
            heapq.heapify(self._deadlines)
        if earlier:
            self._deadline_added.notify()

    async def track_pending(self) -> None:
        """Track the deadlines of the tasks already waiting in the store (at open)."""
        for stored in await self._store.pending_tasks():
            if stored.record.depends_on:
                continue  # tracked once unblocked
            limit = self.assignment_timeout(stored.target, stored.assignment_timeout_secs)
            created = stored.record.created_at_ms or now_ms()
            self.track_deadline(stored.record.id, created, limit)

    async def assignment_watchdog(self) -> None:
        """Fail pending tasks whose wait for a slot passed their assignment timeout (a
        background task)."""
        while True:
            now = now_ms() / 1000
            while self._deadlines and self._deadlines[0][0] <= now:
                deadline, task_id = heapq.heappop(self._deadlines)
                if self._deadline_of.get(task_id) != deadline:
                    continue  # claimed, ended, or tracked again since
                del self._deadline_of[task_id]
                try:
                    await self._expire(task_id)
                except Exception:
                    log.exception("task %s: failing it for want of a slot failed", task_id)
            wake_at = self._deadlines[0][0] if self._deadlines else None
            timeout = None if wake_at is None else max(0.0, wake_at - now)
            await Signal.wait(self._deadline_added.ticket(), timeout)

    async def _expire(self, task_id: TaskId) -> None:
        stored = await self._store.get_task(task_id)
        if stored is None or stored.record.state is not TaskState.PENDING:
            return
        limit = self.assignment_timeout(stored.target, stored.assignment_timeout_secs)
        error = NoSlotAvailable(limit, stored.target.describe())
        result = TaskResult.failure(str(error))
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.PENDING}, TaskState.FAILED, now_ms=now_ms(), result=result,
                events=batch,
            ),
            finished(task_id, TaskState.FAILED, result),
        )  # fmt: skip
        if updated is not None:
            self._outcomes.refused(task_id, error)
            self._outcomes.ended(updated)


__all__ = ["FALLBACK_SECS", "Scheduler", "target_info", "target_of"]

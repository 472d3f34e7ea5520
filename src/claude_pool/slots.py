"""The slot set: this pool's slots, their working directories, and scaling.

A pool starts its slots by adopting slot records no live pool process owns (their
conversations and history carry over) and creating the rest. With worktree isolation each
slot works in its own git worktree; removing a slot (scale-down, drain) removes its worktree
without losing work (see :mod:`claude_pool.worktree`). Scaling stays within
``scaling.min_slots..max_slots``: :meth:`SlotSet.scale_up`, :meth:`SlotSet.scale_down` (idle,
least-used slots first; never a running task), :meth:`SlotSet.set_target`, and with
``auto_scale`` :meth:`SlotSet.autoscale` grows while tasks wait and shrinks idle slots.

A slot's CLI process is started as soon as the slot is added (``start_slots_at_open``), at most
``max_concurrent_spawns`` at once; the slot takes no task until its process is ready, so the
first tasks go to the first slots ready instead of waiting for one still starting.

The scheduler reads the set (:meth:`SlotSet.free`) and waits on :attr:`SlotSet.changed`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from claude_pool.config import Settings
from claude_pool.errors import (
    PoolShutdown,
    ScalingError,
    SlotNotFound,
    StoreError,
    WorktreeError,
)
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    Event,
    SlotAdded,
    SlotRemoved,
    SlotRestarted,
    SlotStateChanged,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
)
from claude_pool.executor.base import Executor, SlotStart
from claude_pool.lifecycle import Lifecycle
from claude_pool.membership import Membership, dead_here, this_host
from claude_pool.notify import Signal
from claude_pool.slot import Slot
from claude_pool.store.base import Store
from claude_pool.types import (
    PoolConfig,
    SlotConfig,
    SlotId,
    SlotRecord,
    SlotState,
    TaskRecord,
    TaskState,
    new_slot_id,
    now_ms,
)
from claude_pool.worktree import (
    WorktreeManager,
    WorktreeReport,
    commits_diff,
    find_repo_root,
    worktree_diff,
    worktree_event,
)

log = logging.getLogger(__name__)


class SlotSet:
    def __init__(
        self,
        *,
        config: PoolConfig,
        settings: Settings,
        store: Store,
        executor: Callable[[], Executor],
        events: EventLog,
        membership: Membership,
        cwd: Path,
        slot_configs: list[SlotConfig],
        initial_slots: int,
        lifecycle: Lifecycle,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]] | None = None,
    ) -> None:
        self.config = config
        self._settings = settings
        self._store = store
        self._executor = executor
        self._events = events
        self._membership = membership
        self.cwd = cwd
        self._slot_configs = slot_configs
        self._initial_slots = initial_slots
        self._slots: dict[SlotId, Slot] = {}
        self._scaling = asyncio.Lock()
        self._worktrees: WorktreeManager | None = None
        self._worktrees_lock = asyncio.Lock()
        self.worktree_reports: list[WorktreeReport] = []
        self.changed = Signal()
        """Set whenever a slot may have become able to take work."""
        self.claim_ended = Signal()
        """Set by the scheduler whenever a claim for a slot returns."""
        self._lifecycle = lifecycle
        self._queue_grew = Signal()
        self._spawn = spawn
        self._spawn_limit = asyncio.Semaphore(settings.max_concurrent_spawns or os.cpu_count() or 1)
        self.start_config: Callable[[Slot], Awaitable[SlotStart]] | None = None
        """What a slot's process is started with ahead of its first task (set by the pool:
        the task runner knows what a task that overrides nothing runs with)."""

    # ── reading ──────────────────────────────────────────────────────

    def __iter__(self) -> Iterator[Slot]:
        return iter(tuple(self._slots.values()))

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, slot_id: object) -> bool:
        return slot_id in self._slots

    def get(self, slot_id: SlotId | str) -> Slot:
        slot = self._slots.get(SlotId(slot_id))
        if slot is None:
            raise SlotNotFound(slot_id)
        return slot

    @property
    def records(self) -> list[SlotRecord]:
        return [slot.record for slot in self._slots.values()]

    def any_assignment_timeout(self) -> bool:
        """Whether any slot here overrides the pool's assignment timeout."""
        return any(
            s.record.config.slot_assignment_timeout_secs is not None for s in self._slots.values()
        )

    def free(self) -> list[Slot]:
        """Slots that could take a task now."""
        return [slot for slot in self._slots.values() if slot.is_free]

    def find(
        self, name: str | None = None, role: str | None = None, state: SlotState | None = None
    ) -> list[SlotRecord]:
        return [
            s.record
            for s in self._slots.values()
            if (name is None or s.record.config.name == name)
            and (role is None or s.record.config.role == role)
            and (state is None or s.record.state is state)
        ]

    def errored(self) -> list[Slot]:
        return [
            s
            for s in self._slots.values()
            if s.record.state is SlotState.ERRORED and not s.stopping
        ]

    # ── changing one slot ────────────────────────────────────────────

    async def update(self, slot: Slot, **fields: Any) -> SlotRecord:
        """Write the named fields to the store and to the slot's local record."""
        await self._store.update_slot(slot.id, **fields)
        previous = slot.record.state
        slot.record = slot.record.model_copy(update=fields)
        if slot.record.state is not previous:
            self.note_state(slot, previous)
        return slot.record

    def note_state(self, slot: Slot, previous: SlotState | None) -> None:
        """Publish a slot's change of state."""
        self._events.emit(
            SlotStateChanged(
                slot_id=slot.id,
                state=slot.record.state.value,
                previous=previous.value if previous is not None else None,
                current_task=slot.record.current_task,
            )
        )
        if slot.is_free:
            slot.looking = True
            self.changed.notify()

    async def configure(self, slot_id: SlotId | str, **changes: Any) -> SlotRecord:
        """Change a slot's identity (name, role, description) and/or config overrides."""
        slot = self.get(slot_id)
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - set(SlotConfig.model_fields)
        if unknown:
            raise ValueError(f"unknown slot settings: {', '.join(sorted(unknown))}")
        config = SlotConfig.model_validate({**slot.record.config.model_dump(), **changes})
        record = await self.update(slot, config=config)
        slot.looking = True  # it may fit tasks it did not fit before
        self.changed.notify()
        return record

    async def restore(self, slot: Slot) -> None:
        """Bring an errored slot back: a new process and a new conversation."""
        await self._executor().release_slot(slot.id)
        slot.crash_streak = 0
        count = slot.record.restart_count + 1
        await self.update(slot, state=SlotState.IDLE, session_id=None, restart_count=count)
        self._events.emit(SlotRestarted(slot_id=slot.id, restart_count=count, reason="restored"))

    # ── starting and removing slots ──────────────────────────────────

    async def start(self, count: int) -> None:
        """Start ``count`` slots, adopting stored slots no live pool process owns first."""
        adoptable = await self._slots_to_adopt(count)
        for index in range(count):
            if adoptable:
                record = adoptable.pop(0).model_copy(
                    update={"state": SlotState.IDLE, "current_task": None}
                )
                await self._add(record, adopted=True)
            else:
                config = self._slot_configs[index] if index < len(self._slot_configs) else None
                await self._add(SlotRecord(id=new_slot_id(), config=config or SlotConfig()))

    async def _adoptable(self) -> list[SlotRecord]:
        live = await self._membership.live_workers()
        owned: set[SlotId] = set()
        for worker in live:
            owned.update(s.id for s in await self._store.list_slots(worker))
        return [s for s in await self._store.list_slots() if s.id not in owned]

    async def _slots_to_adopt(self, count: int) -> list[SlotRecord]:
        return (await self._adoptable())[:count] if count else []

    async def _add(self, record: SlotRecord, *, adopted: bool = False) -> Slot:
        cwd = self.cwd
        if self.config.worktree_isolation or record.worktree_path is not None:
            record, cwd = await self._slot_workdir(record)
        if record.session_id is not None and record.session_host not in (None, this_host()):
            # Claude Code keeps a conversation in its machine's files: it resumes only there.
            log.info(
                "slot %s: its session was recorded on %s, not this machine (%s); starting a "
                "new one", record.id, record.session_host, this_host(),
            )  # fmt: skip
            record = record.model_copy(
                update={"session_id": None, "session_cwd": None, "session_host": None}
            )
        if record.session_id is not None and record.session_cwd not in (None, str(cwd)):
            # A conversation resumes only in the directory it was recorded in.
            log.info(
                "slot %s: its session was recorded in %s, not %s; starting a new one",
                record.id, record.session_cwd, cwd,
            )  # fmt: skip
            record = record.model_copy(
                update={"session_id": None, "session_cwd": None, "session_host": None}
            )
        await self._store.upsert_slot(record, self._membership.worker_id)
        slot = Slot(record=record, cwd=cwd, mode=self.config.slot_mode)
        self._slots[slot.id] = slot
        self._events.emit(
            SlotAdded(slot_id=slot.id, name=slot.name, role=slot.role, adopted=adopted)
        )
        self._start_ahead(slot)
        self.changed.notify()
        return slot

    def _start_ahead(self, slot: Slot) -> None:
        """Start the slot's process now rather than with its first task, if the executor can
        (``start_slot``) and the settings want it."""
        starter = getattr(self._executor(), "start_slot", None)
        if (
            not self._settings.start_slots_at_open
            or starter is None
            or self._spawn is None
            or self.start_config is None
            or self.config.budget_microdollars is not None
        ):
            return
        slot.starting = True
        try:
            self._spawn(self._start_process(slot, starter), f"slot-start-{slot.id}")
        except PoolShutdown:
            slot.starting = False

    async def _start_process(
        self, slot: Slot, starter: Callable[[SlotStart], Awaitable[bool]]
    ) -> None:
        try:
            async with self._spawn_limit:
                if slot.stopping or self.start_config is None:
                    return
                if not await starter(await self.start_config(slot)):
                    log.warning("slot %s: its process will start with its first task", slot.id)
        except Exception:
            log.exception("slot %s: starting its process ahead of its tasks failed", slot.id)
        finally:
            slot.starting = False
            if slot.is_free:
                slot.looking = True
                self.changed.notify()

    async def remove(self, slot: Slot) -> None:
        """Stop an idle slot: its process, its worktree (work kept), its record stopped."""
        slot.stopping = True
        self._slots.pop(slot.id, None)
        await self._executor().release_slot(slot.id)
        await self.finish_worktree(slot)
        await self.update(slot, state=SlotState.STOPPED, current_task=None)
        self._events.emit(SlotRemoved(slot_id=slot.id))

    async def stop_all(self) -> list[WorktreeReport]:
        """Drain: every slot's process is stopped and its record marked stopped; returns what
        happened to their worktrees (removed, or kept with their work)."""
        reports = []
        slots = list(self._slots.values())
        for slot in slots:  # every process first: the store may be failing
            slot.stopping = True
            await self._executor().release_slot(slot.id)
        for slot in slots:
            try:
                await self.update(slot, state=SlotState.STOPPED, current_task=None)
            except StoreError as exc:
                log.error("slot %s: recording that it stopped failed (%s)", slot.id, exc)
                break  # the rest would fail alike
        for slot in slots:
            report = await self.finish_worktree(slot)
            if report is not None:
                reports.append(report)
        return reports

    # ── scaling ──────────────────────────────────────────────────────

    async def scale_up(self, n: int = 1) -> list[SlotRecord]:
        if n < 1:
            raise ValueError(f"scale_up needs a positive count, got {n}")
        async with self._scaling:
            return await self._scale_up(n)

    async def scale_down(self, n: int = 1) -> list[SlotRecord]:
        if n < 1:
            raise ValueError(f"scale_down needs a positive count, got {n}")
        async with self._scaling:
            return await self._scale_down(n)

    async def set_target(self, n: int) -> list[SlotRecord]:
        async with self._scaling:
            self._check_bounds(n)
            current = len(self._slots)
            if n > current:
                await self._scale_up(n - current)
            elif n < current:
                await self._scale_down(current - n)
            return self.records

    # One scaling change at a time: the bounds are checked against the slots as they are.

    async def _scale_up(self, n: int) -> list[SlotRecord]:
        self._lifecycle.check_accepting()
        self._check_bounds(len(self._slots) + n)
        added = [
            await self._add(SlotRecord(id=new_slot_id(), config=SlotConfig())) for _ in range(n)
        ]
        return [slot.record for slot in added]

    async def _scale_down(self, n: int) -> list[SlotRecord]:
        self._check_bounds(len(self._slots) - n)
        # A slot asking for work right now may get some: wait for the answer.
        while any(slot.claiming for slot in self._slots.values()):
            await Signal.wait(self.claim_ended.ticket(), 1.0)
        idle = sorted(
            (s for s in self._slots.values() if s.is_idle),
            key=lambda s: (s.record.tasks_completed, s.record.cost_microdollars),
        )
        removed = []
        for slot in idle[:n]:
            await self.remove(slot)
            removed.append(slot.record)
        return removed

    def _check_bounds(self, count: int) -> None:
        scaling = self.config.scaling
        if not scaling.min_slots <= count <= scaling.max_slots:
            raise ScalingError(count, scaling.min_slots, scaling.max_slots)

    def on_event(self, event: Event) -> None:
        """Bus listener: the queue grew (what automatic scaling waits for)."""
        if isinstance(event, TaskQueued | TaskRequeued | TaskRejected):
            self._queue_grew.notify()

    async def autoscale(self) -> None:
        """Grow while tasks wait and no slot is free; shrink slots idle for
        ``scale_idle_secs``, never below ``scaling.min_slots`` (a background task)."""
        scaling = self.config.scaling
        idle_ms = int(self._settings.scale_idle_secs * 1000)
        check_secs = min(self._settings.scale_idle_secs, 5.0)
        while True:
            ticket = self._queue_grew.ticket()
            await Signal.wait(ticket, check_secs)
            try:
                if not self._lifecycle.accepting:
                    continue
                counts = await self._store.count_tasks()
                waiting = counts.get(TaskState.PENDING, 0)
                free = self.free()
                starting = any(s.starting for s in self._slots.values())
                if waiting and not free and not starting and len(self._slots) < scaling.max_slots:
                    await self.scale_up(1)
                    log.info("auto-scaling: %d task(s) waiting, added a slot", waiting)
                    self._queue_grew.notify()  # look again: one slot may not be enough
                    continue
                now = now_ms()
                stale = [s for s in free if now - s.last_active_ms >= idle_ms]
                if stale and not waiting and len(self._slots) > scaling.min_slots:
                    await self.scale_down(1)
                    log.info("auto-scaling: removed a slot idle for %ds", idle_ms // 1000)
            except Exception:
                log.exception("auto-scaling failed; will retry")

    # ── worktrees ────────────────────────────────────────────────────

    async def worktrees(self) -> WorktreeManager:
        """The worktrees of the pool's repository; the first call also cleans what crashed
        pools left behind (``WorktreeError`` outside a git repository)."""
        async with self._worktrees_lock:
            if self._worktrees is None:
                manager = await WorktreeManager.for_directory(
                    self.cwd, self.config.worktree_base_dir, self._membership.worker_id
                )
                # Only the worktrees of the slots this pool is about to adopt are spared; those
                # of stored slots it does not adopt are finished like any leftover (work kept).
                adopting = [] if self._slots else await self._slots_to_adopt(self._initial_slots)
                keep = {str(manager.path_for(s.id)) for s in adopting}
                for state in ("running", "pending"):
                    for doc in await self._store.list_chains(state, limit=1_000_000):
                        workdir = (doc.get("result") or {}).get("workdir")
                        if isinstance(workdir, str):
                            keep.add(workdir)
                reports = await manager.cleanup_leftovers(keep, lambda owner: not dead_here(owner))
                self._report_worktrees(reports)
                self._worktrees = manager
            return self._worktrees

    async def task_diff(self, record: TaskRecord) -> str | None:
        """What the task changed: its recorded commits, else what its slot's worktree holds
        (see :func:`~claude_pool.worktree.worktree_diff`); None when it ran on no worktree
        of these slots."""
        commits = record.result.commits if record.result is not None else []
        if commits:
            root = await find_repo_root(self.cwd)
            return await commits_diff(root, commits)
        slot = next((s for s in self.records if s.id == record.slot_id), None)
        if slot is None or not slot.worktree_path:
            return None
        root = await find_repo_root(self.cwd)
        return await worktree_diff(Path(slot.worktree_path), root)

    async def _slot_workdir(self, record: SlotRecord) -> tuple[SlotRecord, Path]:
        """The slot's record and working directory: its own worktree with isolation on. A
        conversation resumes only in the directory it was recorded in, so a slot whose
        directory changes starts a new one."""
        if not self.config.worktree_isolation:
            return record.model_copy(update={"worktree_path": None, "session_id": None}), self.cwd
        manager = await self.worktrees()
        path = await manager.ensure(record.id)
        update: dict[str, Any] = {"worktree_path": str(path)}
        if record.worktree_path != str(path):
            update["session_id"] = None
        return record.model_copy(update=update), manager.workdir_in(path, self.cwd)

    async def finish_worktree(self, slot: Slot) -> WorktreeReport | None:
        """Remove a stopped slot's worktree; work in it is kept on its branch (reported)."""
        path = slot.record.worktree_path
        if path is None or self._worktrees is None:
            return None
        try:
            report = await self._worktrees.finish(
                Path(path), self._worktrees.branch_for(slot.id), f"slot {slot.id}"
            )
        except (WorktreeError, OSError):
            log.exception("slot %s: removing its worktree %s failed; left in place", slot.id, path)
            return None
        self._report_worktrees([report])
        return report

    def _report_worktrees(self, reports: list[WorktreeReport]) -> None:
        self.worktree_reports.extend(reports)
        for report in reports:
            self._events.emit(worktree_event(report))


__all__ = ["SlotSet"]

"""The engine's facade: the one place that knows the rules.

The MCP server, the CLI and any web face translate requests into ``Pool`` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, Field

from claude_pool.budget import BudgetLedger
from claude_pool.chain import (
    ChainResult,
    ChainRunner,
    ChainSpec,
    ChainState,
    SkillResolver,
    new_chain_id,
)
from claude_pool.config import EffectiveConfig, Settings, effective_config
from claude_pool.errors import (
    BudgetExhausted,
    ClaudePoolError,
    InvalidTaskState,
    NoSlotAvailable,
    PoolShutdown,
    ScalingError,
    SlotNotFound,
    TaskNotFound,
    WorktreeError,
)
from claude_pool.executor.base import (
    EventKind,
    ExecutionRequest,
    Executor,
    ExecutorEvent,
)
from claude_pool.executor.orphans import start_time
from claude_pool.invocation import skill_resolver
from claude_pool.ratelimit import RateLimiter, RateLimitState
from claude_pool.scheduler import Dispatcher
from claude_pool.skills import SkillRegistry
from claude_pool.slot import RunningTask, Slot
from claude_pool.store import Message, Store, StoredTask, TaskTarget, open_store
from claude_pool.supervisor import Supervisor
from claude_pool.types import (
    MetricsFilter,
    PermissionMode,
    PoolConfig,
    SessionMetrics,
    SlotConfig,
    SlotId,
    SlotMode,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
    new_slot_id,
    new_task_id,
    now_ms,
)
from claude_pool.worktree import WorktreeManager, WorktreeReport, find_repo_root

log = logging.getLogger(__name__)

EventListener = Callable[[ExecutorEvent], None]

_MAX_REMEMBERED_ERRORS = 10_000
_MAX_REMEMBERED_FINAL = 10_000
_REGISTRATION_TURNS = 1_000
"""Event-loop turns cancel() waits for a just-claimed task to be registered as running."""

_EXTERNAL_PREFIX = "external:"
"""Slot id prefix of tasks claimed by an outside worker (see ``Pool.claim``)."""

# Events worth keeping in the store (the chatty ones only go to live listeners).
_PERSISTED_EVENTS = {
    EventKind.PROCESS_EXITED,
    EventKind.API_RETRY,
    EventKind.RATE_LIMIT,
    EventKind.PERMISSION_DENIED,
}


class DrainSummary(BaseModel):
    """What ``drain()`` did."""

    tasks_finished: int = 0
    """Tasks that were running when the drain began and finished within the grace period."""
    tasks_cancelled: int = 0
    """Tasks still running after the grace period, cancelled."""
    tasks_left_pending: int = 0
    """Queued tasks left in the store for the next pool (or cancelled with cancel_pending)."""
    slots_stopped: int = 0
    total_spend_microdollars: int = 0
    chains_interrupted: int = 0
    """Chains stopped mid-way; they stay ``running`` in the store and a pool opened on it
    resumes them."""
    worktrees: list[WorktreeReport] = Field(default_factory=list)
    """What happened to each slot's and chain's worktree (or clone)."""
    kept_branches: list[str] = Field(default_factory=list)
    """Branches kept because they hold work found on no other branch (see ``worktrees``)."""


class RejectOutcome(BaseModel):
    """What ``reject()`` did: re-queued the task for another attempt, or failed it."""

    requeued: bool
    attempt: int
    """With ``requeued``, the attempt now queued; otherwise the number of rejections."""
    max_attempts: int
    task: TaskRecord


class PoolStatus(BaseModel):
    worker_id: str
    slots: list[SlotRecord]
    tasks: dict[str, int] = Field(default_factory=dict)
    """Number of tasks in each state, across the whole store."""
    spend_microdollars: int = 0
    budget_microdollars: int | None = None
    model: str | None = None
    """The pool's default model (tasks and slots may override it)."""
    permission_mode: PermissionMode | None = None
    slot_mode: SlotMode = SlotMode.PERSISTENT
    shutting_down: bool = False
    rate_limit: RateLimitState | None = None
    """Set while the API pushes back (HTTP 429/529/5xx retries): dispatch pauses until then."""


def _worker_id() -> str:
    # host:pid:<start ticks>.<random>: the start time tells this process from a later one
    # that happens to get the same pid.
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_time(pid) or 0}.{secrets.token_hex(3)}"


def _alive_here(worker_id: str) -> bool | None:
    """Whether a pool process on this host is alive (decided by its process, whatever its
    heartbeat says); None for another host's (only the heartbeat tells)."""
    host, _, rest = worker_id.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    started = start_time(int(pid_text))
    recorded = token.partition(".")[0]
    if recorded.isdigit() and int(recorded) and started is not None:
        return started == int(recorded)
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _worker_is_dead_here(worker_id: str) -> bool:
    """True when the worker ran on this host and its process no longer exists."""
    return _alive_here(worker_id) is False


class Pool:
    """A pool of Claude Code slots behind one queue.

    Use it as an async context manager::

        async with Pool(PoolConfig(model="claude-haiku-4-5"), slots=2) as pool:
            result = await pool.run("Summarise README.md")

    Several pool processes may share one store (a SQLite file): each runs what is queued.
    ``only_targeted=True`` makes this pool's slots take only tasks aimed at them (by slot,
    role or name), and aims the tasks submitted through this pool without a target at its
    first slot: a one-slot pool that runs its own work (chains and routing included) next to
    a queue that others fill, without taking theirs.
    """

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        slots: int | None = None,
        store: Store | str | None = None,
        executor: Executor | None = None,
        settings: Settings | None = None,
        slot_configs: Sequence[SlotConfig] | None = None,
        task_timeout_secs: float | None = None,
        cwd: str | Path | None = None,
        poll_secs: float = 0.25,
        only_targeted: bool = False,
    ) -> None:
        base = settings or Settings()
        self.config: PoolConfig = config or base.pool
        self.settings = base
        self._slot_count = slots if slots is not None else base.slots
        self._slot_configs = list(slot_configs if slot_configs is not None else base.slot_configs)
        self._task_timeout = (
            task_timeout_secs if task_timeout_secs is not None else (base.task_timeout_secs)
        )
        self._cwd = Path(cwd or base.cwd or os.getcwd()).resolve()
        self._store: Store = (
            store
            if store is not None and not isinstance(store, str)
            else open_store(store or base.store)
        )
        self._executor: Executor | None = executor
        self.worker_id = _worker_id()
        self._poll_secs = poll_secs
        self._slots: dict[SlotId, Slot] = {}
        self._running: dict[TaskId, RunningTask] = {}
        self._finished: dict[TaskId, asyncio.Event] = {}
        self._errors: dict[TaskId, ClaudePoolError] = {}
        self._final: dict[TaskId, TaskRecord] = {}
        self._budget = BudgetLedger(
            self._store, lambda: self.config.budget_microdollars, poll_secs=poll_secs
        )
        self._context_cache: dict[str, str] | None = None
        self._scaling = asyncio.Lock()
        self.supervisor = Supervisor(self)
        self._skills: SkillRegistry | None = None
        self._rate_limits = RateLimiter(min_pause_secs=poll_secs)
        self._listeners: list[EventListener] = []
        self._tg: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self._accepting = False
        self._closed = False
        self._drain_summary: DrainSummary | None = None
        self._started_ms = now_ms()
        self.skill_resolver: SkillResolver | None = None
        """Turns a chain step's skill into a prompt; None: :attr:`skills`."""
        self._worktrees: WorktreeManager | None = None
        self._worktrees_lock = asyncio.Lock()
        self._worktree_reports: list[WorktreeReport] = []
        self._chains = ChainRunner(
            self,
            spawn=self._spawn_chain,
            worktrees=self._worktree_manager,
            cwd=self._cwd,
            accepting=lambda: self._accepting,
        )
        self._dispatcher = Dispatcher(
            self._store,
            self.worker_id,
            self._run_claimed,
            self._expire_unassigned,
            self._assignment_timeout,
            poll_secs=poll_secs,
            gate=self._rate_limits.gate,
            targeted_only=only_targeted,
        )
        self._only_targeted = only_targeted

    # ── lifecycle ───────────────────────────────────────────────────

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def store(self) -> Store:
        return self._store

    @property
    def cwd(self) -> Path:
        """The directory slots work in (unless worktree isolation gives each its own)."""
        return self._cwd

    @property
    def skills(self) -> SkillRegistry:
        """Skills available to this pool: built-in, global, project (under ``cwd``), runtime."""
        if self._skills is None:
            self._skills = SkillRegistry.for_project(self._cwd)
        return self._skills

    @property
    def slots(self) -> list[SlotRecord]:
        """This pool's slots, as last recorded."""
        return [slot.record for slot in self._slots.values()]

    async def open(self) -> None:
        """Open the store, recover what a dead pool left behind, and start the slots."""
        if self._tg is not None:
            raise ClaudePoolError("this pool is already open")
        await self._store.open()
        if self._executor is None:
            self._executor = _default_executor(self.config, self.settings)
        check = getattr(self._executor, "check", None)
        if self._slot_count and check is not None:
            try:
                await check()  # a missing or too old CLI fails here, not on the first task
            except BaseException:
                await self._store.close()
                raise
        if self.config.worktree_isolation:
            try:
                await find_repo_root(self._cwd)  # outside a git repository: fail here, clearly
            except BaseException:
                await self._store.close()
                raise
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            await self._store.heartbeat_worker(self.worker_id, now_ms())
            await self._recover()
            if self.config.worktree_isolation:
                await self._worktree_manager()
            await self._start_slots(self._slot_count)
            self._accepting = True
            await self._resume_chains()
            self._background = [
                self._tg.create_task(self._heartbeat_loop(), name="pool-heartbeat"),
                self._tg.create_task(
                    self._dispatcher.assignment_watchdog(self._min_assignment_timeout),
                    name="pool-assignment-watchdog",
                ),
                self._tg.create_task(self._sync_loop(), name="pool-sync"),
            ]
            if self.config.supervisor_enabled:
                self._background.append(
                    self._tg.create_task(
                        self.supervisor.run(self.config.supervisor_interval_secs),
                        name="pool-supervisor",
                    )
                )
            if self.settings.auto_scale:
                self._background.append(
                    self._tg.create_task(self._autoscale_loop(), name="pool-autoscale")
                )
        except BaseException:
            await self._shutdown_taskgroup()
            raise

    async def close(self) -> None:
        """Drain (if not done yet), stop background work and close the store."""
        if self._closed or self._tg is None:
            return
        if self._drain_summary is None:
            await self.drain()
        self._closed = True
        await self._shutdown_taskgroup()
        with contextlib.suppress(Exception):
            await self._store.remove_worker(self.worker_id)
        await self._store.close()

    async def _shutdown_taskgroup(self) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        for task in self._background:
            task.cancel()
        for slot in self._slots.values():
            if slot.loop_task is not None:
                slot.loop_task.cancel()
        await tg.__aexit__(None, None, None)

    async def _recover(self) -> None:
        """Take over the tasks and slots of pool processes that died."""
        now = now_ms()
        alive_since = now - int(self._stale_after_secs() * 1000)
        owners = set(await self._store.stale_task_owners(now + 1))
        stale = set(await self._store.stale_task_owners(alive_since))
        # On this host a pool process is dead when its process is; a slow heartbeat (a busy
        # machine) does not make a live one dead. Elsewhere only the heartbeat can tell.
        dead = {
            w for w in owners
            if (here := _alive_here(w)) is False or (here is None and w in stale)
        } - {self.worker_id}  # fmt: skip
        if dead:
            recovered = await self._store.recover_tasks(dead, self.settings.recovery, now)
            for worker in dead:
                await self._store.remove_worker(worker)
            if recovered:
                log.warning(
                    "recovered %d task(s) left running by dead pool process(es) %s (policy: %s)",
                    len(recovered),
                    sorted(dead),
                    self.settings.recovery,
                )
                self._dispatcher.work.notify()

    def _stale_after_secs(self) -> float:
        return max(3 * self.settings.heartbeat_secs, 1.0)

    async def _adoptable_slots(self) -> list[SlotRecord]:
        """Slot records in the store that no live pool process owns (their sessions and
        history carry over to this pool)."""
        live = await self._live_workers()
        owned: set[SlotId] = set()
        for worker in live:
            owned.update(s.id for s in await self._store.list_slots(worker))
        return [s for s in await self._store.list_slots() if s.id not in owned]

    async def _slots_to_adopt(self, count: int) -> list[SlotRecord]:
        """The stored slots :meth:`_start_slots` takes over for ``count`` slots."""
        return (await self._adoptable_slots())[:count] if count else []

    async def _start_slots(self, count: int) -> None:
        adoptable = await self._slots_to_adopt(count)
        for index in range(count):
            if adoptable:
                record = adoptable.pop(0).model_copy(
                    update={"state": SlotState.IDLE, "current_task": None}
                )
            else:
                config = self._slot_configs[index] if index < len(self._slot_configs) else None
                record = SlotRecord(id=new_slot_id(), config=config or SlotConfig())
            await self._add_slot(record)

    async def _add_slot(self, record: SlotRecord) -> Slot:
        assert self._tg is not None
        cwd = self._cwd
        if self.config.worktree_isolation or record.worktree_path is not None:
            record, cwd = await self._slot_workdir(record)
        if record.session_id is not None and record.session_cwd not in (None, str(cwd)):
            # A conversation resumes only in the directory it was recorded in.
            log.info(
                "slot %s: its session was recorded in %s, not %s; starting a new one",
                record.id, record.session_cwd, cwd,
            )  # fmt: skip
            record = record.model_copy(update={"session_id": None, "session_cwd": None})
        await self._store.upsert_slot(record, self.worker_id)
        slot = Slot(record=record, cwd=cwd, mode=self.config.slot_mode)
        self._slots[slot.id] = slot
        slot.loop_task = self._tg.create_task(
            self._dispatcher.slot_loop(slot), name=f"slot-{slot.id}"
        )
        return slot

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_secs)
            try:
                await self._store.heartbeat_worker(self.worker_id, now_ms())
                await self._recover()
                if self._accepting:  # take over the chains of pool processes that died since
                    await self._resume_chains()
            except Exception:
                log.exception("heartbeat failed; will retry")

    async def _sync_loop(self) -> None:
        """Notice changes made by other processes: work queued there, and cancellations of
        tasks running here."""
        while True:
            await asyncio.sleep(self._poll_secs)
            try:
                for task_id, running in list(self._running.items()):
                    if running.cancel.is_set():
                        continue
                    stored = await self._store.get_task(task_id)
                    if stored is not None and stored.record.state is not TaskState.RUNNING:
                        running.cancel_reason = f"task became {stored.record.state} elsewhere"
                        running.cancel.set()
                self._context_cache = None
                self._dispatcher.work.notify()
            except Exception:
                log.exception("store sync failed; will retry")

    # ── submitting and waiting ──────────────────────────────────────

    async def submit(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        *,
        review: bool = False,
        max_rejections: int = 3,
        priority: int = 0,
        timeout: float | None = None,
        slot: SlotId | str | None = None,
        role: str | None = None,
        name: str | None = None,
        fresh_session: bool = False,
        assignment_timeout: float | None = None,
        cwd: str | Path | None = None,
    ) -> TaskId:
        """Queue a task and return its id at once.

        ``priority``: higher runs first, equal priorities in submission order. ``timeout``: the
        task's run-time limit in seconds (default: the pool's). ``slot``/``role``/``name``
        restrict which slots may run it. ``fresh_session`` runs it in a new conversation.
        ``cwd`` runs it in another directory than its slot's (in a fresh one-shot session).
        """
        self._check_accepting()
        if not prompt or not prompt.strip():
            raise ValueError("prompt must not be empty")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_rejections < 0:
            raise ValueError(f"max_rejections must be >= 0, got {max_rejections}")
        await self._budget.check()
        if self._only_targeted and not (slot or role or name) and self._slots:
            slot = next(iter(self._slots))  # this pool's own work goes to its own slot
        record = TaskRecord(
            id=new_task_id(),
            prompt=prompt,
            tags=list(tags),
            config=overrides,
            created_at_ms=now_ms(),
            review_required=review,
            max_rejections=max_rejections if review else 3,
            original_prompt=prompt if review else None,
        )
        stored = await self._store.insert_task(
            StoredTask(
                record=record,
                priority=priority,
                target=TaskTarget(slot_id=SlotId(slot) if slot else None, role=role, name=name),
                timeout_secs=timeout,
                assignment_timeout_secs=assignment_timeout,
                fresh_session=fresh_session,
                cwd=_real_path(cwd) if cwd is not None else None,
            )
        )
        self._dispatcher.track_deadline(stored)
        self._dispatcher.work.notify()
        return record.id

    async def wait(self, task_id: TaskId | str, timeout: float | None = None) -> TaskRecord:
        """Wait until the task ends (or awaits review); returns its record.

        Raises ``TimeoutError`` if ``timeout`` seconds pass first.
        """
        task_id = TaskId(task_id)
        if (final := self._final.get(task_id)) is not None:
            return final
        async with asyncio.timeout(timeout):
            while True:
                event = self._finished.setdefault(task_id, asyncio.Event())
                stored = await self._store.get_task(task_id)
                if stored is None:
                    raise TaskNotFound(task_id)
                state = stored.record.state
                if state.is_terminal or state is TaskState.PENDING_REVIEW:
                    return stored.record
                if self._closed:
                    raise PoolShutdown("the pool closed before the task finished")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_secs * 4):
                        await event.wait()

    async def result(self, task_id: TaskId | str) -> TaskResult | None:
        """The task's result, or None while it has not finished."""
        record = await self.get_task(task_id)
        if record.state.is_terminal or record.state is TaskState.PENDING_REVIEW:
            return record.result
        return None

    async def run(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        **submit_options: Any,
    ) -> TaskResult:
        """Submit a task and wait for its result.

        A task that ran returns its result, successful or not. A task that never found a slot
        raises ``NoSlotAvailable``.
        """
        task_id = await self.submit(prompt, overrides, tags, **submit_options)
        try:
            record = await self.wait(task_id)
        except asyncio.CancelledError:
            # Whoever waited is gone: the task goes too (structured concurrency).
            await asyncio.shield(self._cancel_quietly([task_id]))
            raise
        error = self._errors.pop(task_id, None)
        if error is not None:
            raise error
        return record.result or TaskResult.failure(f"task ended {record.state} without a result")

    async def _cancel_quietly(self, task_ids: Sequence[TaskId]) -> None:
        for task_id in task_ids:
            try:
                async with asyncio.timeout(self._kill_budget_secs()):
                    await self.cancel(task_id)
            except Exception:
                log.exception("cancelling task %s failed", task_id)

    async def fan_out(
        self,
        prompts: Sequence[str],
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
    ) -> list[TaskResult]:
        """Run several prompts side by side; one result per prompt, in input order. A failure
        (even one raised at submission) is reported in its own item and never discards the
        others."""
        tags = list(tags)

        async def one(prompt: str) -> TaskResult:
            try:
                return await self.run(prompt, overrides, tags)
            except ClaudePoolError as exc:
                return TaskResult.failure(str(exc))
            except ValueError as exc:
                return TaskResult.failure(f"invalid task: {exc}")

        async with asyncio.TaskGroup() as tg:
            futures = [tg.create_task(one(p)) for p in prompts]
        return [f.result() for f in futures]

    async def cancel(self, task_id: TaskId | str) -> TaskRecord:
        """Cancel a task: a pending task never starts; a running task's process is stopped
        and it ends ``cancelled`` with its spend so far; a finished task is left alone.
        Returns the task's record afterwards."""
        task_id = TaskId(task_id)
        cancelled = await self._store.transition_task(
            task_id,
            {TaskState.PENDING},
            TaskState.CANCELLED,
            now_ms=now_ms(),
            result=TaskResult.failure("cancelled before it started"),
        )
        if cancelled is not None:
            self._mark_finished(task_id)
            return cancelled
        stored = await self._store.get_task(task_id)
        if stored is None:
            raise TaskNotFound(task_id)
        if stored.record.state is TaskState.RUNNING:
            running = await self._registered(stored)
            if running is not None:
                running.cancel_reason = "cancelled"
                running.cancel.set()
                await running.finished.wait()
            else:
                # Running in another pool process: the state change is what it watches for.
                await self._store.transition_task(
                    task_id,
                    {TaskState.RUNNING},
                    TaskState.CANCELLED,
                    now_ms=now_ms(),
                    result=TaskResult.failure("cancelled"),
                )
            stored = await self._store.get_task(task_id)
            assert stored is not None
        return stored.record

    async def _registered(self, stored: StoredTask) -> RunningTask | None:
        """The local run of a running task. A task a slot here has just claimed is registered
        within a few event-loop turns; waiting for that lets cancel() stop its process
        rather than only flag it for the sync loop."""
        task_id = stored.record.id
        local = stored.claimed_by == self.worker_id and not (
            stored.record.slot_id or ""
        ).startswith(_EXTERNAL_PREFIX)
        for _ in range(_REGISTRATION_TURNS if local else 0):
            if task_id in self._running:
                break
            await asyncio.sleep(0)
        return self._running.get(task_id)

    # ── inspection ──────────────────────────────────────────────────

    async def get_task(self, task_id: TaskId | str) -> TaskRecord:
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        return stored.record

    async def list_tasks(
        self, filter: TaskFilter | None = None, limit: int = 100, offset: int = 0
    ) -> list[TaskRecord]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return await self._store.list_tasks(filter, limit, offset)

    async def status(self) -> PoolStatus:
        counts = await self._store.count_tasks()
        return PoolStatus(
            worker_id=self.worker_id,
            slots=[s.record for s in self._slots.values()],
            tasks={str(state): n for state, n in counts.items()},
            spend_microdollars=await self._store.get_spend(),
            budget_microdollars=self.config.budget_microdollars,
            model=self.config.model,
            permission_mode=effective_config(self.config).permission_mode,
            slot_mode=self.config.slot_mode,
            shutting_down=not self._accepting,
            rate_limit=self._rate_limits.current(),
        )

    async def session_metrics(self, filter: MetricsFilter | None = None) -> SessionMetrics:
        return await self._store.session_metrics(filter, self._started_ms, now_ms())

    def slot(self, slot_id: SlotId | str) -> SlotRecord:
        slot = self._slots.get(SlotId(slot_id))
        if slot is None:
            raise SlotNotFound(slot_id)
        return slot.record

    def add_listener(self, listener: EventListener) -> Callable[[], None]:
        """Receive live executor events (text, tool calls, retries...). Returns a remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # ── claiming work for an outside worker ─────────────────────────

    async def claim(
        self, task_id: TaskId | str | None = None, *, claimant: str = "coordinator"
    ) -> TaskRecord | None:
        """Take a queued task out of the queue for the caller to do itself: the given one, or
        else the best untargeted one. The claim is atomic, so no slot (and no other claimant)
        can ever run it too. Report back with :meth:`complete_claimed`. None when there is
        nothing to claim."""
        self._check_accepting()
        slot_id = SlotId(f"{_EXTERNAL_PREFIX}{claimant}")
        if task_id is None:
            stored = await self._store.claim_task(slot_id, None, None, self.worker_id, now_ms())
            return stored.record if stored is not None else None
        claimed = await self._store.transition_task(
            TaskId(task_id),
            {TaskState.PENDING},
            TaskState.RUNNING,
            now_ms=now_ms(),
            slot_id=slot_id,
        )
        if claimed is None:
            raise await self._wrong_state(task_id, "pending", "claim")
        return claimed

    async def complete_claimed(
        self,
        task_id: TaskId | str,
        output: str,
        *,
        success: bool = True,
        cost_microdollars: int = 0,
        turns_used: int = 0,
    ) -> TaskRecord:
        """Record the outcome of a task taken with :meth:`claim`."""
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        record = stored.record
        if record.state is not TaskState.RUNNING or not (record.slot_id or "").startswith(
            _EXTERNAL_PREFIX
        ):
            raise InvalidTaskState(task_id, str(record.state), "running under a claim", "complete")
        result = TaskResult(
            output=output,
            success=success,
            cost_microdollars=cost_microdollars,
            turns_used=turns_used,
            elapsed_ms=max(0, now_ms() - (record.started_at_ms or now_ms())),
        )
        if cost_microdollars:
            await self._store.add_spend(cost_microdollars)
        if not success:
            target = TaskState.FAILED
        else:
            target = TaskState.PENDING_REVIEW if record.review_required else TaskState.COMPLETED
        updated = await self._store.transition_task(
            record.id, {TaskState.RUNNING}, target, now_ms=now_ms(), result=result
        )
        if updated is None:
            raise await self._wrong_state(task_id, "running", "complete")
        self._mark_finished(record.id)
        return updated

    # ── review gate ─────────────────────────────────────────────────

    async def approve(self, task_id: TaskId | str) -> TaskRecord:
        """Accept a result held for review: the task becomes ``completed``."""
        updated = await self._store.transition_task(
            TaskId(task_id), {TaskState.PENDING_REVIEW}, TaskState.COMPLETED, now_ms=now_ms()
        )
        if updated is None:
            raise await self._wrong_state(task_id, "pending_review", "approve")
        self._mark_finished(updated.id)
        return updated

    async def reject(self, task_id: TaskId | str, feedback: str) -> RejectOutcome:
        """Send a result back: the task is queued again with the feedback appended to its
        original prompt, or, once it has been rejected ``max_rejections`` times, it fails
        carrying the last feedback. The outcome says which happened."""
        if not feedback.strip():
            raise ValueError("feedback must say what to change")
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        record = stored.record
        if record.state is not TaskState.PENDING_REVIEW:
            raise await self._wrong_state(task_id, "pending_review", "reject")
        count = record.rejection_count + 1
        original = record.original_prompt or record.prompt
        now = now_ms()
        if count >= record.max_rejections:
            output = f"rejected {count} time(s), the limit; last feedback: {feedback}"
            failed_result = (record.result or TaskResult.failure(output)).model_copy(
                update={"success": False, "output": output}
            )
            updated = await self._store.transition_task(
                record.id,
                {TaskState.PENDING_REVIEW},
                TaskState.FAILED,
                now_ms=now,
                result=failed_result,
                rejection_count=count,
            )
            if updated is None:
                raise await self._wrong_state(task_id, "pending_review", "reject")
            self._mark_finished(record.id)
            return RejectOutcome(
                requeued=False, attempt=count, max_attempts=record.max_rejections, task=updated
            )
        prompt = (
            f"{original}\n\n---\nA reviewer rejected your previous result "
            f"(attempt {count + 1} of {record.max_rejections}). Feedback:\n{feedback}"
        )
        updated = await self._store.transition_task(
            record.id,
            {TaskState.PENDING_REVIEW},
            TaskState.PENDING,
            now_ms=now,
            prompt=prompt,
            rejection_count=count,
            result=None,
            slot_id=None,
        )
        if updated is None:
            raise await self._wrong_state(task_id, "pending_review", "reject")
        self._dispatcher.work.notify()
        return RejectOutcome(
            requeued=True, attempt=count + 1, max_attempts=record.max_rejections, task=updated
        )

    async def _wrong_state(
        self, task_id: TaskId | str, expected: str, operation: str
    ) -> ClaudePoolError:
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            return TaskNotFound(task_id)
        return InvalidTaskState(task_id, str(stored.record.state), expected, operation)

    # ── slots: identity and scaling ─────────────────────────────────

    def find_slots(
        self, name: str | None = None, role: str | None = None, state: SlotState | None = None
    ) -> list[SlotRecord]:
        """Slots matching every given criterion."""
        return [
            s.record
            for s in self._slots.values()
            if (name is None or s.record.config.name == name)
            and (role is None or s.record.config.role == role)
            and (state is None or s.record.state is state)
        ]

    async def configure_slot(
        self,
        slot_id: SlotId | str,
        *,
        name: str | None = None,
        role: str | None = None,
        description: str | None = None,
        **overrides: Any,
    ) -> SlotRecord:
        """Change a slot's identity (name, role, description) and/or its config overrides
        (any ``SlotConfig`` field). Takes effect from the slot's next task."""
        slot = self._slots.get(SlotId(slot_id))
        if slot is None:
            raise SlotNotFound(slot_id)
        changes = {"name": name, "role": role, "description": description, **overrides}
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - set(SlotConfig.model_fields)
        if unknown:
            raise ValueError(f"unknown slot settings: {', '.join(sorted(unknown))}")
        config = SlotConfig.model_validate({**slot.record.config.model_dump(), **changes})
        slot.record = await self._update_slot(slot, config=config)
        self._dispatcher.work.notify()
        return slot.record

    async def scale_up(self, n: int = 1) -> list[SlotRecord]:
        """Add ``n`` slots (within ``scaling.max_slots``)."""
        if n < 1:
            raise ValueError(f"scale_up needs a positive count, got {n}")
        async with self._scaling:
            return await self._scale_up(n)

    async def scale_down(self, n: int = 1) -> list[SlotRecord]:
        """Remove ``n`` slots (within ``scaling.min_slots``): idle slots first, least used
        first; a slot that is running a task is never interrupted. Returns the removed slots;
        fewer than ``n`` when not enough slots are idle."""
        if n < 1:
            raise ValueError(f"scale_down needs a positive count, got {n}")
        async with self._scaling:
            return await self._scale_down(n)

    async def set_target_slots(self, n: int) -> list[SlotRecord]:
        """Scale up or down to ``n`` slots; returns the slots afterwards."""
        async with self._scaling:
            self._check_bounds(n)
            current = len(self._slots)
            if n > current:
                await self._scale_up(n - current)
            elif n < current:
                await self._scale_down(current - n)
            return self.slots

    # One scaling change at a time: the bounds are checked against the slots as they are.

    async def _scale_up(self, n: int) -> list[SlotRecord]:
        self._check_accepting()
        self._check_bounds(len(self._slots) + n)
        added = [
            await self._add_slot(SlotRecord(id=new_slot_id(), config=SlotConfig()))
            for _ in range(n)
        ]
        return [slot.record for slot in added]

    async def _scale_down(self, n: int) -> list[SlotRecord]:
        self._check_bounds(len(self._slots) - n)
        idle = sorted(
            (s for s in self._slots.values() if s.running is None and not s.stopping),
            key=lambda s: (s.record.tasks_completed, s.record.cost_microdollars),
        )
        removed = []
        for slot in idle[:n]:
            await self._remove_slot(slot)
            removed.append(slot.record)
        return removed

    def _check_bounds(self, count: int) -> None:
        scaling = self.config.scaling
        if not scaling.min_slots <= count <= scaling.max_slots:
            raise ScalingError(count, scaling.min_slots, scaling.max_slots)

    async def _remove_slot(self, slot: Slot) -> None:
        slot.stopping = True
        self._dispatcher.work.notify()
        if slot.loop_task is not None and not slot.loop_task.done():
            slot.loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.loop_task
        self._slots.pop(slot.id, None)
        assert self._executor is not None
        await self._executor.release_slot(slot.id)
        await self._finish_slot_worktree(slot)
        slot.record = await self._update_slot(slot, state=SlotState.STOPPED, current_task=None)

    # ── shared context and messages ─────────────────────────────────

    async def context_set(self, key: str, value: str) -> None:
        """Set a note that every task's system prompt carries from now on."""
        if not key.strip():
            raise ValueError("context key must not be empty")
        await self._store.context_set(key, value)
        self._context_cache = None

    async def context_get(self, key: str) -> str | None:
        return await self._store.context_get(key)

    async def context_delete(self, key: str) -> bool:
        self._context_cache = None
        return await self._store.context_delete(key)

    async def context_list(self) -> dict[str, str]:
        return await self._store.context_list()

    async def send_message(self, from_slot: str, to_slot: str, content: str) -> Message:
        """Leave a message for a slot; it is delivered with that slot's next task."""
        if (
            SlotId(to_slot) not in self._slots
            and await self._store.get_slot(SlotId(to_slot)) is None
        ):
            raise SlotNotFound(to_slot)
        return await self._store.send_message(from_slot, to_slot, content, now_ms())

    async def broadcast(self, from_slot: str, content: str) -> list[Message]:
        """Send a message to every slot except the sender."""
        return [
            await self._store.send_message(from_slot, slot_id, content, now_ms())
            for slot_id in self._slots
            if slot_id != from_slot
        ]

    async def read_messages(self, slot_id: str) -> list[Message]:
        """A slot's unread messages; they are marked read."""
        return await self._store.read_messages(slot_id, drain=True)

    async def peek_messages(self, slot_id: str) -> list[Message]:
        """A slot's unread messages, left unread."""
        return await self._store.read_messages(slot_id, drain=False)

    # ── chains and worktrees ────────────────────────────────────────

    async def chain(
        self,
        spec: ChainSpec | Mapping[str, Any],
        *,
        skill_resolver: SkillResolver | None = None,
        timeout: float | None = None,
    ) -> ChainResult:
        """Run a chain and wait for it: its steps in order, each as a task (see
        :mod:`claude_pool.chain`). A failed step ends it ``failed`` with the rest skipped."""
        chain_id = await self.submit_chain(spec, skill_resolver=skill_resolver)
        return await self.wait_chain(chain_id, timeout)

    async def submit_chain(
        self, spec: ChainSpec | Mapping[str, Any], *, skill_resolver: SkillResolver | None = None
    ) -> str:
        """Start a chain in the background and return its id at once; follow it with
        :meth:`chain_result` or :meth:`wait_chain`."""
        self._check_accepting()
        spec = spec if isinstance(spec, ChainSpec) else ChainSpec.model_validate(spec)
        return await self._chains.submit(spec, skill_resolver or self._skill_resolver())

    async def fan_out_chains(
        self,
        specs: Sequence[ChainSpec | Mapping[str, Any]],
        *,
        skill_resolver: SkillResolver | None = None,
    ) -> list[ChainResult]:
        """Run independent chains side by side; one result per spec, in input order. A chain
        that fails (even one refused at submission) never discards the others."""

        async def one(spec: ChainSpec | Mapping[str, Any]) -> ChainResult:
            try:
                return await self.chain(spec, skill_resolver=skill_resolver)
            except (ClaudePoolError, ValueError) as exc:
                name = spec.name if isinstance(spec, ChainSpec) else spec.get("name")
                return ChainResult(
                    id=new_chain_id(),
                    name=name if isinstance(name, str) else None,
                    state=ChainState.FAILED,
                    error=f"the chain was not started: {exc}",
                )

        async with asyncio.TaskGroup() as tg:
            futures = [tg.create_task(one(spec)) for spec in specs]
        return [f.result() for f in futures]

    async def chain_result(self, chain_id: str) -> ChainResult:
        """A chain's progress: state, current step, the running step's output so far, and the
        finished steps with their outputs and costs."""
        return await self._chains.get(chain_id)

    async def wait_chain(self, chain_id: str, timeout: float | None = None) -> ChainResult:
        """Wait until the chain ends; ``TimeoutError`` if ``timeout`` seconds pass first."""
        return await self._chains.wait(chain_id, timeout, self._poll_secs * 4)

    async def cancel_chain(self, chain_id: str) -> ChainResult:
        """Cancel a chain: its running step's task is cancelled (its process stopped), the
        remaining steps are skipped and the chain ends ``cancelled``. A finished chain is left
        alone."""
        return await self._chains.cancel(chain_id)

    async def list_chains(
        self, state: ChainState | str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ChainResult]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return await self._chains.list_chains(
            ChainState(state) if state is not None else None, limit, offset
        )

    @property
    def worktree_reports(self) -> list[WorktreeReport]:
        """What this pool did with the slot worktrees it removed (scale-down, drain) and with
        leftovers of crashed pools it cleaned, oldest first."""
        return list(self._worktree_reports)

    def _spawn_chain(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise PoolShutdown()
        return self._tg.create_task(coro, name=name)

    def _skill_resolver(self) -> SkillResolver:
        """Chain skill steps come from :attr:`skills` unless ``skill_resolver`` is set."""
        return self.skill_resolver or skill_resolver(self.skills)

    async def _resume_chains(self) -> None:
        await self._chains.resume_orphans(await self._live_workers(), self._skill_resolver())

    async def _live_workers(self) -> set[str]:
        """Other pool processes that are alive: on this host, those whose process runs;
        elsewhere, those with a recent heartbeat."""
        fresh = set(await self._store.live_workers(now_ms() - int(self._stale_after_secs() * 1000)))
        known = set(await self._store.live_workers(0))
        return {
            w for w in known | fresh
            if w != self.worker_id
            and ((here := _alive_here(w)) is True or (here is None and w in fresh))
        }  # fmt: skip

    async def _worktree_manager(self) -> WorktreeManager:
        """The worktrees of the pool's repository; the first call also cleans what crashed
        pools left behind (``WorktreeError`` outside a git repository)."""
        async with self._worktrees_lock:
            if self._worktrees is None:
                manager = await WorktreeManager.for_directory(
                    self._cwd, self.config.worktree_base_dir, self.worker_id
                )
                # Only the worktrees of the slots this pool is about to adopt are spared; those
                # of stored slots it does not adopt are finished like any leftover (work kept).
                adopting = [] if self._slots else await self._slots_to_adopt(self._slot_count)
                keep = {str(manager.path_for(s.id)) for s in adopting}
                for state in (ChainState.RUNNING, ChainState.PENDING):
                    for chain in await self._chains.list_chains(state, limit=1_000_000):
                        if chain.workdir is not None:
                            keep.add(chain.workdir)
                reports = await manager.cleanup_leftovers(
                    keep, lambda owner: not _worker_is_dead_here(owner)
                )
                self._worktree_reports.extend(reports)
                self._worktrees = manager
            return self._worktrees

    async def _slot_workdir(self, record: SlotRecord) -> tuple[SlotRecord, Path]:
        """The slot's record and working directory: its own worktree with isolation on. A
        conversation resumes only in the directory it was recorded in, so a slot whose
        directory changes starts a new one."""
        if not self.config.worktree_isolation:
            return record.model_copy(update={"worktree_path": None, "session_id": None}), self._cwd
        manager = await self._worktree_manager()
        path = await manager.ensure(record.id)
        update: dict[str, Any] = {"worktree_path": str(path)}
        if record.worktree_path != str(path):
            update["session_id"] = None
        return record.model_copy(update=update), manager.workdir_in(path, self._cwd)

    async def _finish_slot_worktree(self, slot: Slot) -> WorktreeReport | None:
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
        self._worktree_reports.append(report)
        return report

    async def _drain_chains_and_worktrees(self, summary: DrainSummary) -> None:
        summary.chains_interrupted, reports = await self._chains.stop()
        for slot in list(self._slots.values()):
            report = await self._finish_slot_worktree(slot)
            if report is not None:
                reports.append(report)
        summary.worktrees = reports
        summary.kept_branches = [b for r in reports for b in r.kept_branches]

    # ── draining ────────────────────────────────────────────────────

    async def drain(
        self, grace_secs: float | None = None, *, cancel_pending: bool = False
    ) -> DrainSummary:
        """Stop taking work, let running tasks finish within the grace period, cancel the
        rest, stop every slot process. Never hangs."""
        if self._drain_summary is not None:
            return self._drain_summary
        grace = self.settings.drain_grace_secs if grace_secs is None else grace_secs
        self._accepting = False
        for slot in self._slots.values():
            slot.stopping = True
        self._dispatcher.work.notify()
        running = list(self._running.values())
        summary = DrainSummary()
        if running:
            waits = [asyncio.ensure_future(r.finished.wait()) for r in running]
            _, pending = await asyncio.wait(waits, timeout=grace)
            for waiter in pending:
                waiter.cancel()
            for r in running:
                if r.finished.is_set():
                    summary.tasks_finished += 1
                else:
                    r.cancel_reason = "cancelled: the pool drained"
                    r.cancel.set()
                    summary.tasks_cancelled += 1
            stragglers = [asyncio.ensure_future(r.finished.wait()) for r in running]
            _, still = await asyncio.wait(stragglers, timeout=self._kill_budget_secs())
            for waiter in still:
                waiter.cancel()
        for slot in self._slots.values():
            if slot.loop_task is not None and not slot.loop_task.done():
                slot.loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await slot.loop_task
        if cancel_pending:
            for record in await self._store.list_tasks(TaskFilter(state=TaskState.PENDING), 10**9):
                await self.cancel(record.id)
        counts = await self._store.count_tasks()
        summary.tasks_left_pending = counts.get(TaskState.PENDING, 0)
        assert self._executor is not None
        for slot in list(self._slots.values()):
            await self._executor.release_slot(slot.id)
            await self._store.update_slot(slot.id, state=SlotState.STOPPED, current_task=None)
            slot.record = slot.record.model_copy(
                update={"state": SlotState.STOPPED, "current_task": None}
            )
            summary.slots_stopped += 1
        await self._drain_chains_and_worktrees(summary)
        await self._executor.aclose()
        summary.total_spend_microdollars = await self._store.get_spend()
        self._drain_summary = summary
        return summary

    def _kill_budget_secs(self) -> float:
        # Interrupt, terminate and kill each get a bounded wait inside the executor.
        return 30.0

    # ── running one task ────────────────────────────────────────────

    async def _run_claimed(self, slot: Slot, stored: StoredTask) -> None:
        task = stored.record
        running = RunningTask(task_id=task.id, slot_id=slot.id)
        self._running[task.id] = running
        slot.running = running
        result: TaskResult | None = None
        try:
            # The claim already marked the slot busy in the store.
            slot.record = slot.record.model_copy(
                update={"state": SlotState.BUSY, "current_task": task.id}
            )
            request = await self._build_request(slot, stored, running)
            assert self._executor is not None
            result = await self._executor.execute(request, self._on_event)
        except BudgetExhausted as exc:
            self._remember_error(task.id, exc)
            result = TaskResult.failure(str(exc))
        except _NotStarted as exc:
            result = TaskResult.failure(str(exc))
        except asyncio.CancelledError:
            result = TaskResult.failure("cancelled: the pool shut down while the task ran")
            raise
        except Exception as exc:
            log.exception("task %s on slot %s: executor error", task.id, slot.id)
            result = TaskResult.failure(f"internal error while running the task: {exc!r}")
        finally:
            await asyncio.shield(self._settle(slot, stored, running, result))

    async def _build_request(
        self, slot: Slot, stored: StoredTask, running: RunningTask
    ) -> ExecutionRequest:
        task = stored.record
        running.timeout_secs = (
            stored.timeout_secs if stored.timeout_secs is not None else self._task_timeout
        )
        config = effective_config(self.config, slot.record.config, task.config)
        cap = await self._await_budget(running, config.max_budget_usd)
        if cap is not None:
            config = replace(config, max_budget_usd=cap / 1_000_000)
        config = await self._with_shared_context(config)
        prompt = await self._with_messages(slot, running, task.prompt)
        elsewhere = stored.cwd is not None and Path(stored.cwd) != slot.cwd
        # A conversation resumes only where it was recorded, so a task in another directory
        # runs one-shot and leaves the slot's warm process and session alone.
        one_shot = slot.mode is SlotMode.EPHEMERAL or elsewhere
        fresh = one_shot or stored.fresh_session
        running.one_shot = elsewhere
        return ExecutionRequest(
            task_id=task.id,
            slot_id=slot.id,
            prompt=prompt,
            config=config,
            cwd=Path(stored.cwd) if elsewhere and stored.cwd else slot.cwd,
            mode=SlotMode.EPHEMERAL if one_shot else SlotMode.PERSISTENT,
            session_id=None if fresh else slot.record.session_id,
            timeout_secs=running.timeout_secs,
            cancel=running.cancel,
        )

    async def _await_budget(self, running: RunningTask, task_cap_usd: float | None) -> int | None:
        """Reserve the task's budget; waiting for it can be cancelled and counts against the
        task's timeout like the run itself."""
        if self.config.budget_microdollars is None:  # nothing to wait for
            return await self._budget.reserve(running.task_id, task_cap_usd, self._idle_slots)
        reserve = asyncio.ensure_future(
            self._budget.reserve(running.task_id, task_cap_usd, self._idle_slots)
        )
        stop = asyncio.ensure_future(running.cancel.wait())
        try:
            await asyncio.wait(
                {reserve, stop}, timeout=running.timeout_secs,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            stop.cancel()
        if reserve.done():
            return reserve.result()
        # Nothing is reserved until reserve() returns, so stopping it here loses nothing.
        reserve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reserve
        if running.cancel.is_set():
            raise _NotStarted("cancelled while waiting for budget")
        raise _NotStarted(
            f"timed out after {running.timeout_secs:g}s waiting for budget held by running tasks"
        )

    async def _shared_context(self) -> dict[str, str]:
        """The shared context, cached between sync ticks (other processes' changes show up
        within ``poll_secs``; this pool's own at once)."""
        if self._context_cache is None:
            self._context_cache = await self._store.context_list()
        return self._context_cache

    async def _with_shared_context(self, config: EffectiveConfig) -> EffectiveConfig:
        context = await self._shared_context()
        if not context:
            return config
        notes = "\n".join(f"- {key}: {value}" for key, value in sorted(context.items()))
        block = f"Shared context from the pool coordinator:\n{notes}"
        prompt = f"{config.system_prompt}\n\n{block}" if config.system_prompt else block
        return replace(config, system_prompt=prompt)

    async def _with_messages(self, slot: Slot, running: RunningTask, prompt: str) -> str:
        messages = await self._store.read_messages(slot.id, drain=False)
        running.delivered_up_to = messages[-1].id if messages else None
        if not messages:
            return prompt
        lines = "\n".join(f"- from {m.from_slot}: {m.content}" for m in messages)
        return f"Messages for you from other slots:\n{lines}\n\n{prompt}"

    async def _settle(
        self, slot: Slot, stored: StoredTask, running: RunningTask, result: TaskResult | None
    ) -> None:
        """Record a finished run: spend, slot state, the task's one terminal state."""
        task = stored.record
        result = result or TaskResult.failure("the task ended without a result")
        try:
            if result.success and running.delivered_up_to is not None:
                # Only what this task's prompt carried: later messages wait for the next task.
                await self._store.read_messages(
                    slot.id, drain=True, up_to_id=running.delivered_up_to
                )
            if running.cancel.is_set() and not result.success:
                # (A run that succeeded just as the cancel came stays completed: it is done.)
                target = TaskState.CANCELLED
                reason = running.cancel_reason or "cancelled"
                result = result.model_copy(
                    update={"success": False, "output": _join(reason, result.output)}
                )
            elif result.success:
                target = TaskState.PENDING_REVIEW if task.review_required else TaskState.COMPLETED
            else:
                target = TaskState.FAILED
            session = slot.record.session_id
            if slot.mode is SlotMode.EPHEMERAL:
                session = None
            elif result.session_id and not running.one_shot and not running.crashed:
                # A run that died may never have saved its conversation: keep the last one
                # known to be resumable.
                session = result.session_id
            slot_fields: dict[str, Any] = {
                "state": SlotState.IDLE,
                "current_task": None,
                "session_id": session,
                "session_cwd": str(slot.cwd) if session is not None else None,
            }
            slot_fields.update(self._crash_accounting(slot, running, result))
            completed = 1 if result.success else 0
            now = now_ms()
            moved = await self._store.settle_task(
                task.id,
                {TaskState.RUNNING},
                target,
                now_ms=now,
                result=result,
                slot_id=slot.id,
                spend=result.cost_microdollars,
                tasks_completed=completed,
                slot_fields=slot_fields,
            )
            if moved and target.is_terminal:
                self._remember_final(task.model_copy(update={
                    "state": target, "result": result, "slot_id": slot.id,
                    "completed_at_ms": now,
                }))  # fmt: skip
            slot.record = slot.record.model_copy(
                update={
                    **slot_fields,
                    "tasks_completed": slot.record.tasks_completed + completed,
                    "cost_microdollars": slot.record.cost_microdollars + result.cost_microdollars,
                }
            )
            if not moved:
                # Someone else ended it first (e.g. a cancel from another process): keep their
                # state, but attach what the run actually cost and said.
                await self._store.transition_task(
                    task.id,
                    {TaskState.CANCELLED},
                    TaskState.CANCELLED,
                    now_ms=now,
                    result=result.model_copy(update={"success": False}),
                )
        except Exception:
            log.exception("task %s: recording its result failed", task.id)
        finally:
            self._budget.settle(task.id, result)
            slot.running = None
            slot.last_active_ms = now_ms()
            self._running.pop(task.id, None)
            running.finished.set()
            self._mark_finished(task.id)

    def _crash_accounting(
        self, slot: Slot, running: RunningTask, result: TaskResult
    ) -> dict[str, Any]:
        """A dead CLI process is restarted (with --resume) for the next task, up to
        ``max_restarts`` crashes in a row; past that the slot is errored."""
        if not running.crashed:
            if result.success:
                slot.crash_streak = 0
            return {}
        slot.crash_streak += 1
        if slot.crash_streak > self.config.max_restarts:
            log.error(
                "slot %s: its CLI process died %d times in a row; the slot is now errored",
                slot.id,
                slot.crash_streak,
            )
            return {"state": SlotState.ERRORED}
        log.warning("slot %s: its CLI process died; it restarts for the next task", slot.id)
        return {"restart_count": slot.record.restart_count + 1}

    async def _restore_slot(self, slot: Slot) -> None:
        """Bring an errored slot back: a new process and a new conversation."""
        assert self._executor is not None
        await self._executor.release_slot(slot.id)
        slot.crash_streak = 0
        slot.record = await self._update_slot(
            slot,
            state=SlotState.IDLE,
            session_id=None,
            restart_count=slot.record.restart_count + 1,
        )
        self._dispatcher.work.notify()

    async def _update_slot(self, slot: Slot, **fields: Any) -> SlotRecord:
        """Write the named fields to the store and return the slot's updated local record."""
        await self._store.update_slot(slot.id, **fields)
        return slot.record.model_copy(update=fields)

    def _remember_final(self, record: TaskRecord) -> None:
        """Keep a task this pool ended for good (completed, failed, cancelled never change),
        so that wait() need not read it back; bounded, oldest forgotten."""
        self._final[record.id] = record
        while len(self._final) > _MAX_REMEMBERED_FINAL:
            del self._final[next(iter(self._final))]

    def _remember_error(self, task_id: TaskId, error: ClaudePoolError) -> None:
        """Keep why a task never ran, for ``run`` to raise; bounded, oldest forgotten."""
        self._errors[task_id] = error
        while len(self._errors) > _MAX_REMEMBERED_ERRORS:
            del self._errors[next(iter(self._errors))]

    def _mark_finished(self, task_id: TaskId) -> None:
        event = self._finished.pop(task_id, None)
        if event is not None:
            event.set()

    async def _expire_unassigned(self, stored: StoredTask, limit: float) -> None:
        error = NoSlotAvailable(limit, stored.target.describe())
        updated = await self._store.transition_task(
            stored.record.id,
            {TaskState.PENDING},
            TaskState.FAILED,
            now_ms=now_ms(),
            result=TaskResult.failure(str(error)),
        )
        if updated is not None:
            self._remember_error(stored.record.id, error)
            self._mark_finished(stored.record.id)

    def _assignment_timeout(self, stored: StoredTask) -> float:
        if stored.assignment_timeout_secs is not None:
            return stored.assignment_timeout_secs
        overrides = [
            s.record.config.slot_assignment_timeout_secs
            for s in self._slots.values()
            if s.record.config.slot_assignment_timeout_secs is not None
            and stored.target.matches(s.id, s.record.config.role, s.record.config.name)
        ]
        return (
            float(max(overrides)) if overrides else float(self.config.slot_assignment_timeout_secs)
        )

    def _min_assignment_timeout(self) -> float:
        values = [self.config.slot_assignment_timeout_secs] + [
            s.record.config.slot_assignment_timeout_secs
            for s in self._slots.values()
            if s.record.config.slot_assignment_timeout_secs is not None
        ]
        return float(min(values))

    def _on_event(self, event: ExecutorEvent) -> None:
        if event.kind is EventKind.API_RETRY:
            self._rate_limits.note_api_retry(event)
        elif event.kind is EventKind.PROCESS_EXITED:
            running = self._running.get(event.task_id)
            if running is not None:
                running.crashed = True
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")
        if event.kind in _PERSISTED_EVENTS and self._tg is not None:
            self._tg.create_task(
                self._store.append_event(
                    str(event.kind), event.task_id, event.slot_id, event.data, event.at_ms
                )
            )

    # ── automatic scaling ───────────────────────────────────────────

    async def _autoscale_loop(self) -> None:
        """Grow while tasks wait and no slot is free; shrink slots idle for
        ``scale_idle_secs``, never below ``scaling.min_slots``."""
        scaling = self.config.scaling
        idle_ms = int(self.settings.scale_idle_secs * 1000)
        while True:
            await asyncio.sleep(self._poll_secs)
            try:
                if not self._accepting:
                    continue
                counts = await self._store.count_tasks()
                waiting = counts.get(TaskState.PENDING, 0)
                free = [s for s in self._slots.values() if s.running is None and not s.stopping]
                if waiting and not free and len(self._slots) < scaling.max_slots:
                    await self.scale_up(1)
                    log.info("auto-scaling: %d task(s) waiting, added a slot", waiting)
                    continue
                now = now_ms()
                stale = [s for s in free if now - s.last_active_ms >= idle_ms]
                if stale and not waiting and len(self._slots) > scaling.min_slots:
                    await self.scale_down(1)
                    log.info("auto-scaling: removed a slot idle for %ds", idle_ms // 1000)
            except Exception:
                log.exception("auto-scaling failed; will retry")

    # ── policy checks ───────────────────────────────────────────────

    def _idle_slots(self) -> int:
        """Slots that could start a task now, counting the one asking."""
        return 1 + sum(1 for s in self._slots.values() if s.running is None)

    def _check_accepting(self) -> None:
        if self._closed or not self._accepting:
            raise PoolShutdown()


class _NotStarted(Exception):
    """A claimed task stopped before its CLI started (cancelled, or timed out waiting)."""


def _real_path(path: str | Path) -> str:
    # One quick syscall; kept out of the async methods so linters see why it is fine.
    return os.path.realpath(path)


def _join(reason: str, output: str) -> str:
    return f"{reason}: {output}" if output and output != reason else reason


def _default_executor(config: PoolConfig, settings: Settings) -> Executor:
    from claude_pool.executor import ClaudeCliExecutor
    from claude_pool.testing.claude_cli import find_claude

    claude_bin: str | Path | None = settings.claude_bin
    if claude_bin is None and shutil.which("claude") is None:
        # Fall back to the project-local install that `make setup` creates.
        claude_bin = find_claude()
    return ClaudeCliExecutor(
        claude_bin, env=settings.env, detect_permission_prompts=config.detect_permission_prompts
    )

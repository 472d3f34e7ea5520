"""The engine's facade: what a pool can do, in one place.

``Pool`` opens and closes the engine and delegates each operation to the part that holds its
rules: the queue (:mod:`claude_pool.queue`: submit, wait, cancel, review), the slot set
(:mod:`claude_pool.slots`: slots, worktrees, scaling), the runner of one claimed task
(:mod:`claude_pool.runner`), the scheduler (:mod:`claude_pool.scheduler`), membership and
recovery (:mod:`claude_pool.membership`), the chain runner (:mod:`claude_pool.chain.runner`)
and the supervisor. What happens is published as domain events (:mod:`claude_pool.events`)
on the pool's bus; the faces (MCP server, CLI, HTTP) translate requests into ``Pool`` calls
and subscribe to its events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, Field

from claude_pool.aio import cancelled_with_caller
from claude_pool.budget import BudgetLedger, typical_call_cost
from claude_pool.bus import DEFAULT_SUBSCRIPTION_SIZE, EventBus, EventFilter, Subscription
from claude_pool.chain.model import (
    ChainResult,
    ChainSpec,
    ChainState,
    SkillResolver,
    new_chain_id,
)
from claude_pool.chain.runner import CHAIN_LISTENS_TO, ChainRunner
from claude_pool.chain.workflows import skill_resolver
from claude_pool.config import Settings, effective_config
from claude_pool.dependencies import Dependencies
from claude_pool.errors import ClaudePoolError, PoolShutdown, StoreDamaged
from claude_pool.eventlog import EventLog
from claude_pool.events import TASK_STATE_TYPES, Event
from claude_pool.executor.base import Executor
from claude_pool.housekeeping import housekeeping
from claude_pool.lifecycle import Lifecycle
from claude_pool.membership import Membership, new_worker_id
from claude_pool.merging import MergeReport, MergeSource, conflict_resolver, merge_branches
from claude_pool.notes import SharedNotes
from claude_pool.outcomes import Outcomes
from claude_pool.queue import FanOutItem, RejectOutcome, TaskQueue
from claude_pool.ratelimit import RateLimiter, combined
from claude_pool.ratelimit import publish as publish_rate_limit
from claude_pool.runner import TaskRunner
from claude_pool.scheduler import Scheduler
from claude_pool.shutdown import DrainSummary, drain
from claude_pool.skills import SkillRegistry
from claude_pool.slots import SlotSet
from claude_pool.store import Delivery, DeliveryState, Message, Store, Webhook, open_store
from claude_pool.supervisor import Supervisor
from claude_pool.types import (
    DependencyFailure,
    MetricsFilter,
    MetricsScope,
    PermissionMode,
    PoolConfig,
    RateLimitState,
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
    check_texts,
    now_ms,
)
from claude_pool.webhooks import WebhookDeliverer, webhook_from_api
from claude_pool.worktree import (
    WorktreeManager,
    WorktreeReport,
    commits_diff,
    find_repo_root,
    worktree_diff,
)

log = logging.getLogger(__name__)


class PoolStatus(BaseModel):
    """A pool at a glance: its slots, the queue, spend against the budget, defaults."""

    worker_id: str
    slots: list[SlotRecord]
    tasks: dict[str, int] = Field(default_factory=dict)
    """Number of tasks in each state, across the whole store."""
    spend_microdollars: int = 0
    reserved_microdollars: int = 0
    """Budget held for running tasks (by every worker on the store) until they settle."""
    budget_microdollars: int | None = None
    budget_exhausted: bool = False
    """New work is refused: the budget is spent, or what is left cannot pay for another call
    and no running task holds budget that it may give back."""
    model: str | None = None
    """The pool's default model (tasks and slots may override it)."""
    permission_mode: PermissionMode | None = None
    slot_mode: SlotMode = SlotMode.PERSISTENT
    shutting_down: bool = False
    rate_limit: RateLimitState | None = None
    """Set while the API pushes back: tasks are retrying an API call (HTTP 429/529/5xx), in
    this pool process or in another one on the store, and dispatch waits until they get
    through or end."""
    latest_event_seq: int = 0
    """The latest event this pool has published (resume ``events(after=...)`` from here)."""
    waiting: dict[str, list[str]] = Field(default_factory=dict)
    """Pending tasks held by their dependencies, with the dependencies each still waits for
    (of the oldest :data:`STATUS_PENDING_SCAN` pending tasks)."""


STATUS_PENDING_SCAN = 200
"""How many pending tasks ``status`` looks at to report which wait for dependencies."""


class Pool:
    """A pool of Claude Code slots behind one queue.

    Use it as an async context manager::

        async with Pool(PoolConfig(model="claude-haiku-4-5"), slots=2) as pool:
            result = await pool.run("Summarise README.md")

    Several pool processes may share one store (a SQLite file): each runs what is queued.
    ``only_targeted=True`` makes this pool's slots take only tasks aimed at them (by slot,
    role or name), and aims the tasks submitted through this pool without a target at its
    first slot: a one-slot pool that runs its own work (chains and routing included) next to
    a queue that others fill, without taking theirs (see :meth:`connect`).
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
        only_targeted: bool = False,
    ) -> None:
        base = settings or Settings()
        self.config: PoolConfig = config or base.pool
        self.settings = base
        self._slot_count = slots if slots is not None else base.slots
        self._cwd = Path(cwd or base.cwd or os.getcwd()).resolve()
        self._store: Store = (
            store
            if store is not None and not isinstance(store, str)
            else open_store(store or base.store)
        )
        self._executor: Executor | None = executor
        self.worker_id = new_worker_id()
        self._started_ms = now_ms()
        self._lifecycle = Lifecycle()
        self._tg: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self._drain_summary: DrainSummary | None = None
        self._skills: SkillRegistry | None = None
        self.skill_resolver: SkillResolver | None = None
        """Turns a chain step's skill into a prompt; None: :attr:`skills`."""

        self.bus = EventBus()
        """Where the pool's domain events are published (see :meth:`add_listener`,
        :meth:`subscribe`, :meth:`events`)."""
        self._events = EventLog(self._store, self.bus, self.worker_id, lifecycle=self._lifecycle)
        self.membership = Membership(
            self._store, self._events, heartbeat_secs=base.heartbeat_secs, recovery=base.recovery
        )
        outcomes = Outcomes()
        self._budget = BudgetLedger(
            self._store,
            lambda: self.config.budget_microdollars,
            self.worker_id,
            prior=self._call_cost_prior,
        )
        self._rate_limits = RateLimiter(worker_id=self.worker_id, emit=self._events.emit)
        self._slots = SlotSet(
            config=self.config,
            settings=base,
            store=self._store,
            executor=self._executor_or_fail,
            events=self._events,
            membership=self.membership,
            cwd=self._cwd,
            slot_configs=list(slot_configs if slot_configs is not None else base.slot_configs),
            initial_slots=self._slot_count,
            lifecycle=self._lifecycle,
            spawn=self._spawn,
        )
        self._runner = TaskRunner(
            config=self.config,
            task_timeout_secs=(
                task_timeout_secs if task_timeout_secs is not None else base.task_timeout_secs
            ),
            store=self._store,
            executor=self._executor_or_fail,
            events=self._events,
            slots=self._slots,
            budget=self._budget,
            rate_limits=self._rate_limits,
            outcomes=outcomes,
            lifecycle=self._lifecycle,
        )
        self._slots.start_config = self._runner.slot_start
        self._scheduler = Scheduler(
            config=self.config,
            store=self._store,
            slots=self._slots,
            runner=self._runner,
            events=self._events,
            outcomes=outcomes,
            lifecycle=self._lifecycle,
            gate=self._rate_limits.gate,
            targeted_only=only_targeted,
        )
        self._dependencies = Dependencies(
            store=self._store,
            events=self._events,
            outcomes=outcomes,
            on_unblocked=self._scheduler.unblocked,
        )
        self._queue = TaskQueue(
            dependencies=self._dependencies,
            store=self._store,
            events=self._events,
            runner=self._runner,
            scheduler=self._scheduler,
            slots=self._slots,
            budget=self._budget,
            outcomes=outcomes,
            lifecycle=self._lifecycle,
            default_model=lambda: self.config.model,
            only_targeted=only_targeted,
        )
        self._notes = SharedNotes(store=self._store, events=self._events, slots=self._slots)
        self._chains = ChainRunner(
            tasks=self._queue,
            store=self._store,
            events=self._events,
            spawn=self._spawn,
            worktrees=self._slots.worktrees,
            cwd=self._cwd,
            lifecycle=self._lifecycle,
        )
        self.supervisor = Supervisor(
            store=self._store,
            slots=self._slots,
            runner=self._runner,
            queue=self._queue,
            worker_id=self.worker_id,
            max_restarts=self.config.max_restarts,
        )
        self.webhooks = WebhookDeliverer(self._store, self.bus, self.settings)
        """Delivers the store's webhook outbox (see :mod:`claude_pool.webhooks`)."""
        # The engine's own reactions, each to the event types it cares about.
        self.bus.add_listener(self._queue.on_event, TASK_STATE_TYPES)
        self.bus.add_listener(self._dependencies.on_event, TASK_STATE_TYPES)
        self.bus.add_listener(
            self._scheduler.on_event,
            {"task_queued", "task_claimed", *TASK_STATE_TYPES},
        )
        self.bus.add_listener(
            self._runner.on_event, {"context_changed", "message_sent", *TASK_STATE_TYPES}
        )
        self.bus.add_listener(self._chains.on_event, CHAIN_LISTENS_TO)
        self.bus.add_listener(
            self._budget.on_event, {"task_finished", "task_cancelled", "task_held_for_review"}
        )
        if base.auto_scale:
            self.bus.add_listener(
                self._slots.on_event, {"task_queued", "task_requeued", "task_rejected"}
            )

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

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, settings: Settings, *, executor: Executor | None = None, cwd: str | Path | None = None
    ) -> AsyncIterator[Pool]:
        """A pool to run one-off work through (a command line's ``run``): when a live worker
        with slots shares the store, a pool with no slots whose work that worker runs;
        otherwise one slot of its own that takes only the work submitted through it, never
        other people's queued tasks."""
        async with cls(settings=settings, slots=0, cwd=cwd) as probe:
            worker = await probe.membership.live_worker_with_slots()
        pool = cls(
            settings=settings, slots=0 if worker else 1, executor=executor, cwd=cwd,
            only_targeted=worker is None,
        )  # fmt: skip
        async with pool:
            yield pool

    @property
    def store(self) -> Store:
        """The store this pool keeps its tasks, slots, spend and events in."""
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
        return self._slots.records

    async def open(self) -> None:
        """Open the store, recover what a dead pool left behind, and start the slots."""
        if self._tg is not None:
            raise ClaudePoolError("this pool is already open")
        await self._store.open()
        try:
            if self._executor is None:
                self._executor = _default_executor(self.config, self.settings)
            check = getattr(self._executor, "check", None)
            if self._slot_count and check is not None:
                await check()  # a missing or too old CLI fails here, not on the first task
            if self.config.worktree_isolation:
                await find_repo_root(self._cwd)  # outside a git repository: fail here, clearly
        except BaseException:
            await self._store.close()
            raise
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            await self._events.start()
            await self.webhooks.configure(self.settings.webhooks)
            await self._budget.learn_from_history()
            await self.membership.join(self._slot_count)
            await self.membership.recover()
            if self.config.worktree_isolation:
                await self._slots.worktrees()
            await self._slots.start(self._slot_count)
            self._lifecycle.accepting = True
            await self._scheduler.track_pending()
            await self._dependencies.sweep()
            await self._chains.resume_orphans(
                await self.membership.live_workers(), self._skill_resolver()
            )
            tg = self._tg
            self._background = [
                tg.create_task(self._events.run(), name="pool-events"),
                tg.create_task(self._events.watch(), name="pool-events-watch"),
                tg.create_task(self.webhooks.run(), name="pool-webhooks"),
                tg.create_task(self._scheduler.run(tg), name="pool-scheduler"),
                tg.create_task(self._scheduler.assignment_watchdog(), name="pool-deadlines"),
                tg.create_task(self._dependencies.run(), name="pool-dependencies"),
                tg.create_task(
                    housekeeping(
                        every_secs=self.settings.heartbeat_secs,
                        event_retention_secs=self.settings.event_retention_secs,
                        membership=self.membership,
                        chains=self._chains,
                        store=self._store,
                        lifecycle=self._lifecycle,
                        skill_resolver=self._skill_resolver,
                    ),
                    name="pool-heartbeat",
                ),
                tg.create_task(
                    publish_rate_limit(
                        self._rate_limits, self._store, self.worker_id, self.settings.heartbeat_secs
                    ),
                    name="pool-rate-limit",
                ),
            ]
            if self.config.supervisor_enabled:
                self._background.append(
                    tg.create_task(
                        self.supervisor.run(self.config.supervisor_interval_secs),
                        name="pool-supervisor",
                    )
                )
            if self.settings.auto_scale:
                self._background.append(
                    tg.create_task(self._slots.autoscale(), name="pool-autoscale")
                )
        except BaseException:
            await self._shutdown_taskgroup()
            await self._store.close()
            raise

    async def close(self) -> None:
        """Drain (if not done yet), stop background work and close the store."""
        if self._lifecycle.closed or self._tg is None:
            return
        try:
            if self._drain_summary is None:
                await self.drain()
        finally:
            self._lifecycle.closed = True
            self._queue.wake_all()
            self._chains.wake_all()
            await self._shutdown_taskgroup()
            with contextlib.suppress(Exception):
                await self.membership.leave()
            await self._store.close()

    @property
    def failure(self) -> StoreDamaged | None:
        """Why this pool stopped taking work on its own: its store is damaged (a corrupt page
        met while claiming, recording a result or heartbeating). None while all is well."""
        return self._lifecycle.failure

    async def wait_failure(self) -> StoreDamaged:
        """Return :attr:`failure` once the pool has one (a long-running face waits on this
        next to its own stop signal)."""
        await self._lifecycle.failed.wait()
        assert self._lifecycle.failure is not None
        return self._lifecycle.failure

    async def _shutdown_taskgroup(self) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        for task in self._background:
            task.cancel()
        await tg.__aexit__(None, None, None)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            coro.close()
            raise PoolShutdown()
        return self._tg.create_task(coro, name=name)

    def _call_cost_prior(self, model: str | None) -> int:
        """What a call of ``model`` is assumed to cost before any was seen: the executor's
        estimate when it has one (``call_cost_prior``), else a typical Claude Code call."""
        estimate = getattr(self._executor, "call_cost_prior", None)
        return int(estimate(model)) if callable(estimate) else typical_call_cost(model)

    def _executor_or_fail(self) -> Executor:
        if self._executor is None:
            raise PoolShutdown("the pool is not open")
        return self._executor

    # ── events ──────────────────────────────────────────────────────

    def add_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every domain event as it is published (inline: it
        must be quick and must not block). Returns a function that removes it."""
        return self.bus.add_listener(listener)

    def subscribe(
        self, filter: EventFilter | None = None, *, maxsize: int = DEFAULT_SUBSCRIPTION_SIZE
    ) -> Subscription:
        """A bounded live subscription to the pool's events (``async for`` over it; see
        :mod:`claude_pool.bus` for what happens when it falls behind)."""
        return self.bus.subscribe(filter, maxsize=maxsize)

    def events(
        self,
        after: int | None = None,
        *,
        task_id: str | None = None,
        chain_id: str | None = None,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]:
        """Every event after sequence number ``after`` (None: from now on), in order and
        without gaps, then live as they happen — this pool's and, through the store, other
        processes'. Resume with the last ``seq`` seen."""
        return self._events.stream(after, task_id=task_id, chain_id=chain_id, types=types)

    # ── webhooks ────────────────────────────────────────────────────

    async def add_webhook(
        self, url: str, events: Iterable[str] = ("*",), secret: str | None = None
    ) -> Webhook:
        """POST every event of the given types (``*``: all) to ``url`` from now on, signed
        with ``secret`` when given (see :mod:`claude_pool.webhooks`). Kept in the store, so
        it outlives this pool and every pool on the store delivers it."""
        hook = webhook_from_api(url, events, secret, now_ms())
        await self._store.put_webhook(hook)
        self.webhooks.wake()
        return hook

    async def remove_webhook(self, webhook_id: str) -> bool:
        """Stop a webhook (its pending deliveries are dropped); False for an unknown id."""
        return await self._store.delete_webhook(webhook_id)

    async def list_webhooks(self) -> list[Webhook]:
        """The webhooks in the store: configured ones and those added with
        :meth:`add_webhook`."""
        return await self._store.list_webhooks()

    async def webhook_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        """Webhook deliveries, newest first: pending (with their next attempt), delivered or
        failed, with the latest attempt's status or error."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        chosen = DeliveryState(state) if state is not None else None
        return await self._store.list_deliveries(webhook_id, chosen, limit, offset)

    # ── tasks ───────────────────────────────────────────────────────

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
        depends_on: Iterable[TaskId | str] = (),
        on_dependency_failure: DependencyFailure = "cancel",
        verify: str | None = None,
        plan_first: bool = False,
    ) -> TaskId:
        """Queue a task and return its id at once.

        ``priority``: higher runs first, equal priorities in submission order. ``timeout``: the
        task's run-time limit in seconds (default: the pool's). ``slot``/``role``/``name``
        restrict which slots may run it. ``fresh_session`` runs it in a new conversation.
        ``cwd`` runs it in another directory than its slot's (in a fresh one-shot session).
        ``review`` holds the result for :meth:`approve` / :meth:`reject`.
        ``depends_on``: tasks (already submitted) that must complete before this one may run;
        its prompt may use ``{{<task id>.output}}`` for their outputs. If one fails or is
        cancelled, this task is cancelled too, unless ``on_dependency_failure="run"``.
        ``verify``: a shell command run in the task's directory once it completes (default:
        the slot's or pool's ``verify``); a non-zero exit sends the task back to the same
        slot with the command's output as feedback, up to ``max_rejections`` attempts.
        ``plan_first``: the slot first makes a plan in plan mode, held for review (review
        kind ``plan``); :meth:`approve` has it carried out in the same conversation, in the
        task's own permission mode, and :meth:`reject` asks for a new plan.
        """
        return await self._queue.submit(
            prompt, overrides, tags, review=review, max_rejections=max_rejections,
            priority=priority, timeout=timeout, slot=slot, role=role, name=name,
            fresh_session=fresh_session, assignment_timeout=assignment_timeout, cwd=cwd,
            depends_on=depends_on, on_dependency_failure=on_dependency_failure, verify=verify,
            plan_first=plan_first,
        )  # fmt: skip

    async def wait(self, task_id: TaskId | str, timeout: float | None = None) -> TaskRecord:
        """Wait until the task ends (or awaits review); returns its record.

        Raises ``TimeoutError`` if ``timeout`` seconds pass first.
        """
        return await self._queue.wait(task_id, timeout)

    async def result(self, task_id: TaskId | str) -> TaskResult | None:
        """The task's result, or None while it has not finished."""
        return await self._queue.result(task_id)

    async def run(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        **submit_options: Any,
    ) -> TaskResult:
        """Submit a task and wait for its result (cancelling the call cancels the task).

        A task that ran returns its result, successful or not. A task that never found a slot
        raises ``NoSlotAvailable``; one the budget could not pay for, ``BudgetExhausted``.
        """
        return await self._queue.run(prompt, overrides, tags, **submit_options)

    async def fan_out(
        self,
        prompts: Sequence[str],
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        **submit_options: Any,
    ) -> list[TaskResult]:
        """Run several prompts side by side; one result per prompt, in input order. A failure
        (even one raised at submission) is reported in its own item and never discards the
        others. :meth:`fan_out_items` says more about each. ``submit_options`` (those of
        :meth:`submit`: ``depends_on``, ``verify``...) apply to every item."""
        items = await self.fan_out_items(prompts, overrides, tags, **submit_options)
        return [item.as_result() for item in items]

    async def fan_out_items(
        self,
        prompts: Sequence[str],
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        *,
        on_item: Callable[[FanOutItem], None] | None = None,
        **submit_options: Any,
    ) -> list[FanOutItem]:
        """Like :meth:`fan_out`, with each item's task id, state, result or error;
        ``on_item`` is called as each item ends. Cancelling the call cancels the tasks."""
        return await self._queue.fan_out(
            prompts, overrides, tags, on_item=on_item, **submit_options
        )

    async def cancel(self, task_id: TaskId | str) -> TaskRecord:
        """Cancel a task: a pending task never starts; a running task's process is stopped
        and it ends ``cancelled`` with its spend so far; a finished task is left alone.
        Returns the task's record afterwards."""
        return await self._queue.cancel(task_id)

    async def task_diff(self, task_id: TaskId | str) -> str | None:
        """What the task's slot changed in its git worktree (see
        :func:`claude_pool.worktree.worktree_diff`), for reviewing a result; None when the task
        ran on no worktree of this pool's slots."""
        record = await self._queue.get(task_id)
        commits = record.result.commits if record.result is not None else []
        if commits:
            root = await find_repo_root(self._cwd)
            return await commits_diff(root, commits)
        slot = next((s for s in self._slots.records if s.id == record.slot_id), None)
        if slot is None or not slot.worktree_path:
            return None
        root = await find_repo_root(self._cwd)
        return await worktree_diff(Path(slot.worktree_path), root)

    async def requeue(self, task_id: TaskId | str) -> TaskRecord:
        """Queue a failed or cancelled task again, as it was first submitted; returns its
        record, pending. ``InvalidTaskState`` for a task in any other state."""
        return await self._queue.retry(task_id)

    def cancelled_with_caller(self) -> contextlib.AbstractAsyncContextManager[set[str]]:
        """``async with pool.cancelled_with_caller() as mine: mine.add(task_id)``: the tasks
        added are cancelled if the caller is cancelled inside the block (plain asyncio and
        anyio cancellation alike), so no work outlives whoever waited for it."""
        return self._queue.cancelled_with_caller()

    def chains_cancelled_with_caller(self) -> contextlib.AbstractAsyncContextManager[set[str]]:
        """As :meth:`cancelled_with_caller`, for chain ids."""
        return cancelled_with_caller(self.cancel_chain)

    async def get_task(self, task_id: TaskId | str) -> TaskRecord:
        """A task's whole record (``TaskNotFound`` for an unknown id)."""
        return await self._queue.get(task_id)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        """Tasks matching ``filter`` (state, slot, any of some tags), in submission order, or
        newest first."""
        return await self._queue.list(filter, limit, offset, newest_first=newest_first)

    async def status(self) -> PoolStatus:
        """Slots, task counts, spend against the budget, defaults and rate-limit state."""
        counts = await self._store.count_tasks()
        spent, reserved = await self._store.budget_state()
        return PoolStatus(
            worker_id=self.worker_id,
            slots=self._slots.records,
            tasks={str(state): n for state, n in counts.items()},
            spend_microdollars=spent,
            reserved_microdollars=reserved,
            budget_microdollars=self.config.budget_microdollars,
            budget_exhausted=self._budget.exhausted(
                self.config.budget_microdollars, spent, reserved, self.config.model
            ),
            model=self.config.model,
            permission_mode=effective_config(self.config).permission_mode,
            slot_mode=self.config.slot_mode,
            shutting_down=not self._lifecycle.accepting,
            rate_limit=await self._rate_limit(),
            latest_event_seq=self._events.latest_seq,
            waiting=await self.waiting_for(),
        )

    async def waiting_for(
        self, task_ids: Iterable[TaskId | str] | None = None
    ) -> dict[str, list[str]]:
        """Which of these pending tasks (None: the oldest pending ones) wait for dependencies,
        and for which (those not yet completed)."""
        if task_ids is None:
            records = await self._queue.list(
                TaskFilter(state=TaskState.PENDING), STATUS_PENDING_SCAN
            )
        else:
            records = [await self._queue.get(task_id) for task_id in task_ids]
        waiting = await self._dependencies.waiting_for(records)
        return {task_id: [str(d) for d in deps] for task_id, deps in waiting.items()}

    async def _rate_limit(self) -> RateLimitState | None:
        """This process's hold and those other live processes on the store publish."""
        own = self._rate_limits.current()
        others = await self.membership.rate_limits()
        return combined([own, *others] if own is not None else others)

    async def session_metrics(self, filter: MetricsFilter | None = None) -> SessionMetrics:
        """Counts, spend, cost and time figures and a per-model breakdown, computed in the
        store (see :mod:`claude_pool.store.metrics`). They cover this pool's session (the
        tasks created since it opened) unless the filter gives a time range or asks for
        ``all_time``; the result's ``scope`` says which."""
        filter = filter or MetricsFilter()
        scope: MetricsScope
        if filter.since_ms is not None or filter.until_ms is not None:
            scope = "range"
        elif filter.all_time:
            scope = "all_time"
        else:
            scope = "session"
            filter = filter.model_copy(update={"since_ms": self._started_ms})
        metrics = await self._store.session_metrics(filter, self._started_ms, now_ms())
        metrics.scope = scope
        return metrics

    # ── outside workers and the review gate ─────────────────────────

    async def claim(
        self, task_id: TaskId | str | None = None, *, claimant: str = "coordinator"
    ) -> TaskRecord | None:
        """Take a queued task out of the queue for the caller to do itself: the given one, or
        else the best untargeted one. The claim is atomic, so no slot (and no other claimant)
        can ever run it too. Report back with :meth:`complete_claimed`. None when there is
        nothing to claim."""
        return await self._queue.claim(task_id, claimant=claimant)

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
        return await self._queue.complete_claimed(
            task_id, output, success=success, cost_microdollars=cost_microdollars,
            turns_used=turns_used,
        )  # fmt: skip

    async def approve(self, task_id: TaskId | str) -> TaskRecord:
        """Accept a result held for review: the task becomes ``completed``."""
        return await self._queue.approve(task_id)

    async def reject(self, task_id: TaskId | str, feedback: str) -> RejectOutcome:
        """Send a result back: the task is queued again with the feedback appended to its
        original prompt, or, once it has been rejected ``max_rejections`` times, it fails
        carrying the last feedback. The outcome says which happened."""
        return await self._queue.reject(task_id, feedback)

    # ── slots ───────────────────────────────────────────────────────

    def slot(self, slot_id: SlotId | str) -> SlotRecord:
        """One of this pool's slots (``SlotNotFound`` for another id)."""
        return self._slots.get(slot_id).record

    def find_slots(
        self, name: str | None = None, role: str | None = None, state: SlotState | None = None
    ) -> list[SlotRecord]:
        """Slots matching every given criterion."""
        return self._slots.find(name, role, state)

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
        return await self._slots.configure(
            slot_id, name=name, role=role, description=description, **overrides
        )

    async def scale_up(self, n: int = 1) -> list[SlotRecord]:
        """Add ``n`` slots (within ``scaling.max_slots``)."""
        return await self._slots.scale_up(n)

    async def scale_down(self, n: int = 1) -> list[SlotRecord]:
        """Remove ``n`` slots (within ``scaling.min_slots``): idle slots first, least used
        first; a slot that is running a task is never interrupted. Returns the removed slots;
        fewer than ``n`` when not enough slots are idle."""
        return await self._slots.scale_down(n)

    async def set_target_slots(self, n: int) -> list[SlotRecord]:
        """Scale up or down to ``n`` slots; returns the slots afterwards."""
        return await self._slots.set_target(n)

    @property
    def worktree_reports(self) -> list[WorktreeReport]:
        """What this pool did with the slot worktrees it removed (scale-down, drain) and with
        leftovers of crashed pools it cleaned, oldest first."""
        return list(self._slots.worktree_reports)

    # ── shared context and messages ─────────────────────────────────

    async def context_set(self, key: str, value: str) -> None:
        """Set a note that every task's system prompt carries from now on."""
        await self._notes.context_set(key, value)

    async def context_get(self, key: str) -> str | None:
        """A shared note's value, or None."""
        return await self._notes.context_get(key)

    async def context_delete(self, key: str) -> bool:
        """Delete a note; whether it existed."""
        return await self._notes.context_delete(key)

    async def context_list(self) -> dict[str, str]:
        """Every shared note, by key."""
        return await self._notes.context_list()

    async def send_message(self, from_slot: str, to_slot: str, content: str) -> Message:
        """Leave a message for a slot; it is delivered with that slot's next task."""
        return await self._notes.send_message(from_slot, to_slot, content)

    async def broadcast(self, from_slot: str, content: str) -> list[Message]:
        """Send a message to every slot except the sender."""
        return await self._notes.broadcast(from_slot, content)

    async def read_messages(self, slot_id: str) -> list[Message]:
        """A slot's unread messages; they are marked read."""
        return await self._notes.read_messages(slot_id, drain=True)

    async def peek_messages(self, slot_id: str) -> list[Message]:
        """A slot's unread messages, left unread."""
        return await self._notes.read_messages(slot_id, drain=False)

    # ── chains ──────────────────────────────────────────────────────

    async def chain(
        self,
        spec: ChainSpec | Mapping[str, Any],
        *,
        skill_resolver: SkillResolver | None = None,
        timeout: float | None = None,
    ) -> ChainResult:
        """Run a chain and wait for it: its steps in order, each as a task (see
        :mod:`claude_pool.chain`). A failed step ends it ``failed`` with the rest skipped."""
        async with self.chains_cancelled_with_caller() as mine:
            chain_id = await self.submit_chain(spec, skill_resolver=skill_resolver)
            mine.add(chain_id)
            return await self.wait_chain(chain_id, timeout)

    async def submit_chain(
        self, spec: ChainSpec | Mapping[str, Any], *, skill_resolver: SkillResolver | None = None
    ) -> str:
        """Start a chain in the background and return its id at once; follow it with
        :meth:`chain_result` or :meth:`wait_chain`."""
        self._lifecycle.check_accepting()
        spec = spec if isinstance(spec, ChainSpec) else ChainSpec.model_validate(spec)
        if skill_resolver is None and self.skill_resolver is None:
            # An unknown skill is refused now (naming close matches), not when its step runs,
            # after the chain may have made a worktree.
            for step in spec.steps:
                if step.skill is not None and step.prompt is None:
                    self.skills.get(step.skill)
        for step in spec.steps:
            # Unknown or failed dependencies are refused now, not when the step runs.
            await self._dependencies.check(
                spec.step_dependencies(step), step.prompt or "", "cancel"
            )
        return await self._chains.submit(spec, skill_resolver or self._skill_resolver())

    async def fan_out_chains(
        self,
        specs: Sequence[ChainSpec | Mapping[str, Any]],
        *,
        skill_resolver: SkillResolver | None = None,
        on_item: Callable[[int, ChainResult], None] | None = None,
    ) -> list[ChainResult]:
        """Run independent chains side by side; one result per spec, in input order. A chain
        that fails (even one refused at submission) never discards the others. ``on_item``
        is called with each chain's index and result as it ends; cancelling the call cancels
        the chains."""
        results: list[ChainResult | None] = [None] * len(specs)

        async def one(index: int, spec: ChainSpec | Mapping[str, Any]) -> None:
            try:
                result = await self.chain(spec, skill_resolver=skill_resolver)
            except (ClaudePoolError, ValueError) as exc:
                name = spec.name if isinstance(spec, ChainSpec) else spec.get("name")
                result = ChainResult(
                    id=new_chain_id(),
                    name=name if isinstance(name, str) else None,
                    state=ChainState.FAILED,
                    error=f"the chain was not started: {exc}",
                )
            results[index] = result
            if on_item is not None:
                on_item(index, result)

        async with asyncio.TaskGroup() as tg:
            for index, spec in enumerate(specs):
                tg.create_task(one(index, spec))
        return [r for r in results if r is not None]

    async def merge(
        self,
        ids: Sequence[str],
        into: str = "main",
        *,
        resolve_conflicts: bool = False,
        verify: str | None = None,
        review: bool = False,
        overrides: TaskOverrides | None = None,
        resolve_timeout: float | None = None,
    ) -> MergeReport:
        """Merge the work of these tasks (with worktree isolation, exactly the commits each
        made on its slot's branch) and chains (their ``kept_branch``) into ``into``, in order,
        in a temporary worktree; the target branch moves only by a fast-forward, so neither it
        nor a working tree is ever left conflicted. At a conflict it stops and reports the
        branch and files; the report says what was merged, what was skipped and why (see
        :mod:`claude_pool.merging`).

        ``resolve_conflicts``: a conflict is handed to a slot instead, as a task run in the
        conflicted worktree ("resolve the conflicts of branch X onto main") with ``verify``
        (default: the pool's or slot's), ``review``, ``overrides`` and ``resolve_timeout`` (its
        run-time limit); when it completes, through those gates, its resolution is committed
        and the merge goes on. The call waits for it, a review included; cancelling the call
        cancels it."""
        check_texts([into, *ids, verify], "merge")
        manager = await WorktreeManager.for_directory(
            self._cwd, self.config.worktree_base_dir, self.worker_id
        )
        sources = [await self._merge_source(str(source)) for source in ids]
        resolver = None
        if resolve_conflicts:
            resolver = conflict_resolver(
                self._queue, verify=verify, review=review, overrides=overrides,
                timeout=resolve_timeout,
            )  # fmt: skip
        return await merge_branches(
            manager.repo_root, sources, into, scratch_dir=manager.base_dir,
            lock_reason=manager.lock_reason, resolver=resolver,
        )  # fmt: skip

    async def _merge_source(self, source: str) -> MergeSource:
        if source.startswith("chain-"):  # the shape of new_chain_id()
            chain = await self._chains.get(source)
            if chain.state is not ChainState.COMPLETED:
                return MergeSource(source=source, reason=f"the chain is {chain.state}")
            if chain.kept_branch is None:
                return MergeSource(
                    source=source, reason="the chain kept no branch (it changed nothing)"
                )
            return MergeSource(source=source, branch=chain.kept_branch)
        record = await self._queue.get(source)
        if record.state is not TaskState.COMPLETED:
            return MergeSource(source=source, reason=f"the task is {record.state}")
        if record.result is not None and record.result.commits:
            commits = record.result.commits
            return MergeSource(source=source, branch=commits[-1].branch, commits=commits)
        if record.slot_id is None:
            return MergeSource(source=source, reason="the task ran on no slot")
        # A task from before tasks recorded their commits: its slot's whole branch.
        return MergeSource(source=source, branch=WorktreeManager.branch_for(record.slot_id))

    async def chain_result(self, chain_id: str) -> ChainResult:
        """A chain's progress: state, current step, the running step's output so far, and the
        finished steps with their outputs and costs."""
        return await self._chains.get(chain_id)

    async def wait_chain(self, chain_id: str, timeout: float | None = None) -> ChainResult:
        """Wait until the chain ends; ``TimeoutError`` if ``timeout`` seconds pass first."""
        return await self._chains.wait(chain_id, timeout)

    async def cancel_chain(self, chain_id: str) -> ChainResult:
        """Cancel a chain: its running step's task is cancelled (its process stopped), the
        remaining steps are skipped and the chain ends ``cancelled``. A finished chain is left
        alone."""
        return await self._chains.cancel(chain_id)

    async def list_chains(
        self, state: ChainState | str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ChainResult]:
        """Chains in creation order (with ``state``, only those in it)."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return await self._chains.list_chains(
            ChainState(state) if state is not None else None, limit, offset
        )

    def _skill_resolver(self) -> SkillResolver:
        """Chain skill steps come from :attr:`skills` unless ``skill_resolver`` is set."""
        return self.skill_resolver or skill_resolver(self.skills)

    # ── draining ────────────────────────────────────────────────────

    async def drain(
        self, grace_secs: float | None = None, *, cancel_pending: bool = False
    ) -> DrainSummary:
        """Stop taking work, let running tasks finish within the grace period, cancel the
        rest, stop every slot process. Never hangs, and a failing store does not stop it
        (see ``DrainSummary.store_error``)."""
        if self._drain_summary is None:
            self._drain_summary = await drain(
                grace_secs=self.settings.drain_grace_secs if grace_secs is None else grace_secs,
                cancel_pending=cancel_pending,
                lifecycle=self._lifecycle,
                store=self._store,
                slots=self._slots,
                scheduler=self._scheduler,
                runner=self._runner,
                chains=self._chains,
                executor=self._executor_or_fail(),
                cancel=self.cancel,
            )
        return self._drain_summary


def _default_executor(config: PoolConfig, settings: Settings) -> Executor:
    from claude_pool.executor import ClaudeCliExecutor
    from claude_pool.executor.locate import find_claude

    claude_bin: str | Path | None = settings.claude_bin
    if claude_bin is None and shutil.which("claude") is None:
        # Fall back to the pinned CLI that `claude-pool install-cli` (or `make setup`) installs.
        claude_bin = find_claude()
    return ClaudeCliExecutor(
        claude_bin,
        env=settings.env,
        detect_permission_prompts=config.detect_permission_prompts,
        clear_for_fresh_sessions=settings.clear_for_fresh_sessions,
    )


__all__ = ["DrainSummary", "FanOutItem", "Pool", "PoolStatus", "RejectOutcome"]

"""The engine's facade: what a pool can do, in one place.

``Pool`` opens and closes the engine (:mod:`claude_pool.engine`, which builds and wires its
parts) and delegates each operation to the part that holds its rules: the queue
(:mod:`claude_pool.queue`: submit, wait, cancel, review), the slot set (:mod:`claude_pool.slots`:
slots, worktrees, scaling), the chain runner (:mod:`claude_pool.chain.runner`), merging
(:mod:`claude_pool.merging`) and status (:mod:`claude_pool.status`). What happens is published
as domain events (:mod:`claude_pool.events`) on the pool's bus; the faces (MCP server, CLI,
HTTP) translate requests into ``Pool`` calls and subscribe to its events.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from claude_pool.aio import cancelled_with_caller
from claude_pool.bus import DEFAULT_SUBSCRIPTION_SIZE, EventFilter, Subscription
from claude_pool.chain.fanout import fan_out_chains
from claude_pool.chain.model import ChainResult, ChainSpec, ChainState, SkillResolver
from claude_pool.chain.workflows import skill_resolver
from claude_pool.config import Settings
from claude_pool.engine import Engine
from claude_pool.errors import StoreDamaged
from claude_pool.events import Event
from claude_pool.executor.base import Executor
from claude_pool.merging import MergeReport, conflict_resolver, merge_work
from claude_pool.queue import FanOutItem, RejectOutcome
from claude_pool.shutdown import DrainSummary
from claude_pool.skills import SkillRegistry
from claude_pool.slots import SlotSet
from claude_pool.status import PoolStatus, session_metrics, status
from claude_pool.store import Delivery, DeliveryState, Message, Store, Webhook
from claude_pool.types import (
    DependencyFailure,
    MetricsFilter,
    PoolConfig,
    SessionMetrics,
    SlotConfig,
    SlotId,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    check_texts,
    now_ms,
)
from claude_pool.webhooks import webhook_from_api
from claude_pool.worktree import WorktreeReport


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
        self._skills: SkillRegistry | None = None
        self.skill_resolver: SkillResolver | None = None
        """Turns a chain step's skill into a prompt; None: :attr:`skills`."""
        self._engine = engine = Engine(
            self.config, base, store=store, executor=executor, cwd=cwd, slots=slots,
            slot_configs=slot_configs, task_timeout_secs=task_timeout_secs,
            only_targeted=only_targeted, skill_resolver=self._skill_resolver,
        )  # fmt: skip
        self.worker_id = engine.worker_id
        self.bus = engine.bus
        """Where the pool's domain events are published (see :meth:`subscribe`)."""
        self.membership = engine.membership
        self.supervisor = engine.supervisor
        self.webhooks = engine.webhooks
        """Delivers the store's webhook outbox (see :mod:`claude_pool.webhooks`)."""
        self._slots: SlotSet = engine.slots
        self._queue = engine.queue
        self._chains = engine.chains
        self._notes = engine.notes

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
        """A pool for one-off work: slot-less when a live worker with slots shares the store
        (it runs the work), else one slot of its own that takes only the work sent through it."""
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
        return self._engine.store

    @property
    def cwd(self) -> Path:
        """The directory slots work in (unless worktree isolation gives each its own)."""
        return self._engine.cwd

    @property
    def skills(self) -> SkillRegistry:
        """Skills available to this pool: built-in, global, project (under ``cwd``), runtime."""
        if self._skills is None:
            self._skills = SkillRegistry.for_project(self.cwd)
        return self._skills

    @property
    def slots(self) -> list[SlotRecord]:
        """This pool's slots, as last recorded."""
        return self._slots.records

    async def open(self) -> None:
        """Open the store, recover what a dead pool left behind, and start the slots."""
        await self._engine.open()

    async def close(self) -> None:
        """Drain (if not done yet), stop background work and close the store."""
        await self._engine.close()

    async def drain(
        self, grace_secs: float | None = None, *, cancel_pending: bool = False
    ) -> DrainSummary:
        """Stop taking work, let running tasks finish within the grace period, cancel the rest
        and stop every slot process. Never hangs, even on a failing store; once per pool."""
        return await self._engine.drain(grace_secs, cancel_pending=cancel_pending)

    @property
    def failure(self) -> StoreDamaged | None:
        """Why this pool stopped taking work on its own (its store is damaged), or None."""
        return self._engine.lifecycle.failure

    async def wait_failure(self) -> StoreDamaged:
        """Return :attr:`failure` once the pool has one."""
        return await self._engine.lifecycle.wait_failure()

    # ── events ──────────────────────────────────────────────────────

    def add_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener(event)`` inline for every domain event (it must be quick and must
        not block). Returns a function that removes it."""
        return self.bus.add_listener(listener)

    def subscribe(
        self, filter: EventFilter | None = None, *, maxsize: int = DEFAULT_SUBSCRIPTION_SIZE
    ) -> Subscription:
        """A bounded live subscription to the pool's events (see :mod:`claude_pool.bus`)."""
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
        without gaps, then live — this pool's and other processes' on the store."""
        return self._engine.events.stream(after, task_id=task_id, chain_id=chain_id, types=types)

    # ── webhooks ────────────────────────────────────────────────────

    async def add_webhook(
        self, url: str, events: Iterable[str] = ("*",), secret: str | None = None
    ) -> Webhook:
        """POST every event of the given types (``*``: all) to ``url``, signed with ``secret``;
        kept in the store, so every pool on it delivers it (see :mod:`claude_pool.webhooks`)."""
        hook = webhook_from_api(url, events, secret, now_ms())
        await self.store.put_webhook(hook)
        self.webhooks.wake()
        return hook

    async def remove_webhook(self, webhook_id: str) -> bool:
        """Stop a webhook (its pending deliveries are dropped); False for an unknown id."""
        return await self.store.delete_webhook(webhook_id)

    async def list_webhooks(self) -> list[Webhook]:
        """The webhooks in the store: configured ones and those added with :meth:`add_webhook`."""
        return await self.store.list_webhooks()

    async def webhook_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        """Webhook deliveries, newest first, with the latest attempt's status or error."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        chosen = DeliveryState(state) if state is not None else None
        return await self.store.list_deliveries(webhook_id, chosen, limit, offset)

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
        """Queue a task and return its id at once (the options are explained at
        :meth:`claude_pool.queue.TaskQueue.submit`)."""
        return await self._queue.submit(
            prompt, overrides, tags, review=review, max_rejections=max_rejections,
            priority=priority, timeout=timeout, slot=slot, role=role, name=name,
            fresh_session=fresh_session, assignment_timeout=assignment_timeout, cwd=cwd,
            depends_on=depends_on, on_dependency_failure=on_dependency_failure, verify=verify,
            plan_first=plan_first,
        )  # fmt: skip

    async def wait(self, task_id: TaskId | str, timeout: float | None = None) -> TaskRecord:
        """Wait until the task ends (or awaits review) and return its record;
        ``TimeoutError`` if ``timeout`` seconds pass first."""
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
        """Submit a task and wait for its result (cancelling the call cancels the task);
        ``NoSlotAvailable`` or ``BudgetExhausted`` when it never ran."""
        return await self._queue.run(prompt, overrides, tags, **submit_options)

    async def fan_out(
        self,
        prompts: Sequence[str],
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        **submit_options: Any,
    ) -> list[TaskResult]:
        """Run several prompts side by side; one result per prompt, in input order, a failure
        in its own item (``submit_options`` apply to every item)."""
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
        """Cancel a task (a running one's process is stopped; a finished one is left alone);
        returns its record afterwards."""
        return await self._queue.cancel(task_id)

    async def task_diff(self, task_id: TaskId | str) -> str | None:
        """What the task changed in git (its commits, else its slot's worktree), for review;
        None when it ran on no worktree of this pool's slots."""
        return await self._slots.task_diff(await self._queue.get(task_id))

    async def requeue(self, task_id: TaskId | str) -> TaskRecord:
        """Queue a failed or cancelled task again, as first submitted (``InvalidTaskState``
        for any other state)."""
        return await self._queue.retry(task_id)

    def cancelled_with_caller(self) -> contextlib.AbstractAsyncContextManager[set[str]]:
        """``async with pool.cancelled_with_caller() as mine: mine.add(task_id)``: the tasks
        added are cancelled if the caller is cancelled inside the block."""
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
        """Tasks matching ``filter``, in submission order or newest first."""
        return await self._queue.list(filter, limit, offset, newest_first=newest_first)

    async def status(self) -> PoolStatus:
        """Slots, task counts, spend against the budget, defaults and rate-limit state."""
        return await status(self._engine)

    async def waiting_for(
        self, task_ids: Iterable[TaskId | str] | None = None
    ) -> dict[str, list[str]]:
        """Which of these pending tasks (None: the oldest pending ones) wait for dependencies,
        and for which."""
        return await self._queue.waiting_for(task_ids)

    async def session_metrics(self, filter: MetricsFilter | None = None) -> SessionMetrics:
        """Counts, spend, cost and time figures of this pool's session (or the filter's range,
        or ``all_time``), computed in the store."""
        return await session_metrics(self._engine, filter)

    # ── outside workers and the review gate ─────────────────────────

    async def claim(
        self, task_id: TaskId | str | None = None, *, claimant: str = "coordinator"
    ) -> TaskRecord | None:
        """Atomically take a queued task (this one, or the best untargeted one) for the caller
        to do itself; report back with :meth:`complete_claimed`. None: nothing to claim."""
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
        """Send a result back: queued again with the feedback, or failed once rejected
        ``max_rejections`` times; the outcome says which."""
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
        """Change a slot's name, role, description and/or config overrides (any
        ``SlotConfig`` field), from its next task."""
        return await self._slots.configure(
            slot_id, name=name, role=role, description=description, **overrides
        )

    async def scale_up(self, n: int = 1) -> list[SlotRecord]:
        """Add ``n`` slots (within ``scaling.max_slots``)."""
        return await self._slots.scale_up(n)

    async def scale_down(self, n: int = 1) -> list[SlotRecord]:
        """Remove up to ``n`` idle slots, least used first (within ``scaling.min_slots``);
        returns the removed ones. A running task is never interrupted."""
        return await self._slots.scale_down(n)

    async def set_target_slots(self, n: int) -> list[SlotRecord]:
        """Scale up or down to ``n`` slots; returns the slots afterwards."""
        return await self._slots.set_target(n)

    @property
    def worktree_reports(self) -> list[WorktreeReport]:
        """What this pool did with the slot worktrees it removed and crashed pools' leftovers
        it cleaned, oldest first."""
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
        """Run a chain and wait for it (see :mod:`claude_pool.chain`); a failed step ends it
        ``failed`` with the rest skipped."""
        async with self.chains_cancelled_with_caller() as mine:
            chain_id = await self.submit_chain(spec, skill_resolver=skill_resolver)
            mine.add(chain_id)
            return await self.wait_chain(chain_id, timeout)

    async def submit_chain(
        self, spec: ChainSpec | Mapping[str, Any], *, skill_resolver: SkillResolver | None = None
    ) -> str:
        """Start a chain in the background and return its id at once."""
        self._engine.lifecycle.check_accepting()
        spec = spec if isinstance(spec, ChainSpec) else ChainSpec.model_validate(spec)
        if skill_resolver is None and self.skill_resolver is None:
            # An unknown skill is refused now (naming close matches), not when its step runs,
            # after the chain may have made a worktree.
            for step in spec.steps:
                if step.skill is not None and step.prompt is None:
                    self.skills.get(step.skill)
        await self._engine.dependencies.check_chain(spec)
        return await self._chains.submit(spec, skill_resolver or self._skill_resolver())

    async def fan_out_chains(
        self,
        specs: Sequence[ChainSpec | Mapping[str, Any]],
        *,
        skill_resolver: SkillResolver | None = None,
        on_item: Callable[[int, ChainResult], None] | None = None,
    ) -> list[ChainResult]:
        """Run independent chains side by side; one result per spec, in input order, a failed
        one never discarding the others (see :mod:`claude_pool.chain.fanout`)."""
        run = functools.partial(self.chain, skill_resolver=skill_resolver)
        return await fan_out_chains(specs, run, on_item)

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
        """Merge the work of these tasks and chains into ``into``, in order, never leaving it
        conflicted; ``resolve_conflicts`` hands a conflict to a slot as a task (see
        :mod:`claude_pool.merging`)."""
        check_texts([into, *ids, verify], "merge")
        resolver = None
        if resolve_conflicts:
            resolver = conflict_resolver(
                self._queue, verify=verify, review=review, overrides=overrides,
                timeout=resolve_timeout,
            )  # fmt: skip
        return await merge_work(
            ids, into, cwd=self.cwd, base_dir=self.config.worktree_base_dir,
            owner=self.worker_id, get_task=self._queue.get, get_chain=self._chains.get,
            resolver=resolver,
        )  # fmt: skip

    async def chain_result(self, chain_id: str) -> ChainResult:
        """A chain's progress: state, current step and its output so far, finished steps."""
        return await self._chains.get(chain_id)

    async def wait_chain(self, chain_id: str, timeout: float | None = None) -> ChainResult:
        """Wait until the chain ends; ``TimeoutError`` if ``timeout`` seconds pass first."""
        return await self._chains.wait(chain_id, timeout)

    async def cancel_chain(self, chain_id: str) -> ChainResult:
        """Cancel a chain: its running step's task is cancelled, the rest skipped (a finished
        chain is left alone)."""
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


__all__ = ["DrainSummary", "FanOutItem", "Pool", "PoolStatus", "RejectOutcome"]

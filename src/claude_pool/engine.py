"""The engine's parts, wired together, and the order they open and close in.

:class:`Engine` builds every part of a pool around one store and one event bus — the queue
(:mod:`claude_pool.queue`), the slot set (:mod:`claude_pool.slots`), the runner of one claimed
task (:mod:`claude_pool.runner`), the scheduler, membership and recovery, dependencies, the
budget, the chain runner, the supervisor, webhooks — and connects each to the domain events it
reacts to. It owns the task group the background loops run in: :meth:`Engine.open` starts them
after recovering what a dead pool left behind, :meth:`Engine.close` drains and stops them.
``Pool`` (:mod:`claude_pool.pool`) is its facade.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from claude_pool.budget import BudgetLedger, typical_call_cost
from claude_pool.bus import EventBus
from claude_pool.chain.model import SkillResolver
from claude_pool.chain.runner import CHAIN_LISTENS_TO, ChainRunner
from claude_pool.config import Settings
from claude_pool.dependencies import Dependencies
from claude_pool.errors import ClaudePoolError, PoolShutdown
from claude_pool.eventlog import EventLog
from claude_pool.events import TASK_STATE_TYPES
from claude_pool.executor.base import Executor
from claude_pool.housekeeping import housekeeping
from claude_pool.lifecycle import Lifecycle
from claude_pool.membership import Membership, new_worker_id
from claude_pool.notes import SharedNotes
from claude_pool.outcomes import Outcomes
from claude_pool.queue import TaskQueue
from claude_pool.ratelimit import RateLimiter
from claude_pool.ratelimit import publish as publish_rate_limit
from claude_pool.runner import TaskRunner
from claude_pool.scheduler import Scheduler
from claude_pool.shutdown import DrainSummary, drain
from claude_pool.slots import SlotSet
from claude_pool.store import Store, open_store
from claude_pool.supervisor import Supervisor
from claude_pool.types import PoolConfig, SlotConfig, now_ms
from claude_pool.webhooks import WebhookDeliverer
from claude_pool.worktree import find_repo_root


class Engine:
    """A pool's parts, built and wired; the facade reads them as attributes."""

    def __init__(
        self,
        config: PoolConfig,
        settings: Settings,
        *,
        store: Store | str | None,
        executor: Executor | None,
        cwd: str | Path | None,
        slots: int | None,
        slot_configs: Sequence[SlotConfig] | None,
        task_timeout_secs: float | None,
        only_targeted: bool,
        skill_resolver: Callable[[], SkillResolver],
    ) -> None:
        """Build the parts; the ``Pool`` arguments left None take the settings' values."""
        self.config = config
        self.settings = settings
        if store is None or isinstance(store, str):
            store = open_store(store or settings.store)
        self.store = store
        self.executor = executor
        """None until :meth:`open` makes the default one (the Claude Code CLI)."""
        self.cwd = Path(cwd or settings.cwd or os.getcwd()).resolve()
        self.slot_count = slots if slots is not None else settings.slots
        if slot_configs is None:
            slot_configs = settings.slot_configs
        if task_timeout_secs is None:
            task_timeout_secs = settings.task_timeout_secs
        self.worker_id = new_worker_id()
        self.started_ms = now_ms()
        self.lifecycle = Lifecycle()
        self._skill_resolver = skill_resolver
        self._tg: asyncio.TaskGroup | None = None
        self._background: list[asyncio.Task[None]] = []
        self.drain_summary: DrainSummary | None = None
        """What the drain did, once one ran (a second drain returns it)."""

        self.bus = EventBus()
        self.events = EventLog(store, self.bus, self.worker_id, lifecycle=self.lifecycle)
        self.membership = Membership(
            store, self.events, heartbeat_secs=settings.heartbeat_secs, recovery=settings.recovery
        )
        outcomes = Outcomes()
        self.budget = BudgetLedger(
            store, lambda: self.config.budget_microdollars, self.worker_id,
            prior=self._call_cost_prior,
        )  # fmt: skip
        self.rate_limits = RateLimiter(worker_id=self.worker_id, emit=self.events.emit)
        self.slots = SlotSet(
            config=config, settings=settings, store=store, executor=self.executor_or_fail,
            events=self.events, membership=self.membership, cwd=self.cwd,
            slot_configs=list(slot_configs), initial_slots=self.slot_count,
            lifecycle=self.lifecycle, spawn=self.spawn,
        )  # fmt: skip
        self.runner = TaskRunner(
            config=config, task_timeout_secs=task_timeout_secs, store=store,
            executor=self.executor_or_fail, events=self.events, slots=self.slots,
            budget=self.budget, rate_limits=self.rate_limits, outcomes=outcomes,
            lifecycle=self.lifecycle, spawn=self.spawn,
        )  # fmt: skip
        self.slots.start_config = self.runner.slot_start
        self.scheduler = Scheduler(
            config=config, store=store, slots=self.slots, runner=self.runner, events=self.events,
            outcomes=outcomes, lifecycle=self.lifecycle, gate=self.rate_limits.gate,
            targeted_only=only_targeted,
        )  # fmt: skip
        self.runner.wants_work = self.scheduler.wants_work
        self.dependencies = Dependencies(
            store=store, events=self.events, outcomes=outcomes,
            on_unblocked=self.scheduler.unblocked,
        )  # fmt: skip
        self.queue = TaskQueue(
            dependencies=self.dependencies, store=store, events=self.events, runner=self.runner,
            scheduler=self.scheduler, slots=self.slots, budget=self.budget, outcomes=outcomes,
            lifecycle=self.lifecycle, default_model=lambda: self.config.model,
            only_targeted=only_targeted,
        )  # fmt: skip
        self.notes = SharedNotes(store=store, events=self.events, slots=self.slots)
        self.chains = ChainRunner(
            tasks=self.queue, store=store, events=self.events, spawn=self.spawn,
            worktrees=self.slots.worktrees, cwd=self.cwd, lifecycle=self.lifecycle,
        )  # fmt: skip
        self.supervisor = Supervisor(
            store=store, slots=self.slots, runner=self.runner, queue=self.queue,
            worker_id=self.worker_id, max_restarts=config.max_restarts,
        )  # fmt: skip
        self.webhooks = WebhookDeliverer(store, self.bus, settings)
        self._listen()

    def _listen(self) -> None:
        """The engine's own reactions, each to the event types it cares about."""
        add = self.bus.add_listener
        add(self.queue.on_event, TASK_STATE_TYPES)
        add(self.dependencies.on_event, TASK_STATE_TYPES)
        add(self.scheduler.on_event, {"task_queued", "task_claimed", *TASK_STATE_TYPES})
        add(self.runner.on_event, {"context_changed", "message_sent", *TASK_STATE_TYPES})
        add(self.chains.on_event, CHAIN_LISTENS_TO)
        add(self.budget.on_event, {"task_finished", "task_cancelled", "task_held_for_review"})
        if self.settings.auto_scale:
            add(self.slots.on_event, {"task_queued", "task_requeued", "task_rejected"})

    # ── opening and closing ─────────────────────────────────────────

    async def open(self) -> None:
        """Open the store, recover what a dead pool left behind, start the slots and the
        background loops."""
        if self._tg is not None:
            raise ClaudePoolError("this pool is already open")
        await self.store.open()
        try:
            if self.executor is None:
                self.executor = default_executor(self.config, self.settings)
            check = getattr(self.executor, "check", None)
            if self.slot_count and check is not None:
                await check()  # a missing or too old CLI fails here, not on the first task
            if self.config.worktree_isolation:
                await find_repo_root(self.cwd)  # outside a git repository: fail here, clearly
        except BaseException:
            await self.store.close()
            raise
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            await self.events.start()
            await self.webhooks.configure(self.settings.webhooks)
            await self.budget.learn_from_history()
            await self.membership.join(self.slot_count)
            await self.membership.recover()
            if self.config.worktree_isolation:
                await self.slots.worktrees()
            await self.slots.start(self.slot_count)
            self.lifecycle.accepting = True
            await self.scheduler.track_pending()
            await self.dependencies.sweep()
            await self.chains.resume_orphans(
                await self.membership.live_workers(), self._skill_resolver()
            )
            self._background = self._start_background(self._tg)
        except BaseException:
            await self._shutdown_taskgroup()
            await self.store.close()
            raise

    def _start_background(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        settings = self.settings
        beat = housekeeping(
            every_secs=settings.heartbeat_secs,
            event_retention_secs=settings.event_retention_secs,
            membership=self.membership,
            chains=self.chains,
            store=self.store,
            lifecycle=self.lifecycle,
            skill_resolver=self._skill_resolver,
        )
        rate_limit = publish_rate_limit(
            self.rate_limits, self.store, self.worker_id, settings.heartbeat_secs
        )
        loops: list[tuple[Coroutine[Any, Any, None], str]] = [
            (self.events.run(), "pool-events"),
            (self.events.watch(), "pool-events-watch"),
            (self.webhooks.run(), "pool-webhooks"),
            (self.scheduler.run(tg), "pool-scheduler"),
            (self.scheduler.assignment_watchdog(), "pool-deadlines"),
            (self.dependencies.run(), "pool-dependencies"),
            (beat, "pool-heartbeat"),
            (rate_limit, "pool-rate-limit"),
        ]
        if self.config.supervisor_enabled:
            loops.append(
                (self.supervisor.run(self.config.supervisor_interval_secs), "pool-supervisor")
            )
        if settings.auto_scale:
            loops.append((self.slots.autoscale(), "pool-autoscale"))
        return [tg.create_task(coro, name=name) for coro, name in loops]

    async def drain(self, grace_secs: float | None, *, cancel_pending: bool) -> DrainSummary:
        """Stop taking work, let running tasks finish within the grace period, cancel the
        rest and stop every slot process (see :mod:`claude_pool.shutdown`); once."""
        if self.drain_summary is None:
            self.drain_summary = await drain(
                grace_secs=self.settings.drain_grace_secs if grace_secs is None else grace_secs,
                cancel_pending=cancel_pending,
                lifecycle=self.lifecycle,
                store=self.store,
                slots=self.slots,
                scheduler=self.scheduler,
                runner=self.runner,
                chains=self.chains,
                executor=self.executor_or_fail(),
                cancel=self.queue.cancel,
            )
        return self.drain_summary

    async def close(self) -> None:
        """Drain (if not done yet), stop background work and close the store."""
        if self.lifecycle.closed or self._tg is None:
            return
        try:
            if self.drain_summary is None:
                await self.drain(None, cancel_pending=False)
        finally:
            self.lifecycle.closed = True
            self.queue.wake_all()
            self.chains.wake_all()
            await self._shutdown_taskgroup()
            with contextlib.suppress(Exception):
                await self.membership.leave()
            await self.store.close()

    async def _shutdown_taskgroup(self) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        for task in self._background:
            task.cancel()
        await tg.__aexit__(None, None, None)

    # ── what the parts are given ────────────────────────────────────

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` in the engine's task group (``PoolShutdown`` once it is closed)."""
        if self._tg is None:
            coro.close()
            raise PoolShutdown()
        return self._tg.create_task(coro, name=name)

    def executor_or_fail(self) -> Executor:
        if self.executor is None:
            raise PoolShutdown("the pool is not open")
        return self.executor

    def _call_cost_prior(self, model: str | None) -> int:
        """What a call of ``model`` is assumed to cost before any was seen: the executor's
        estimate when it has one (``call_cost_prior``), else a typical Claude Code call."""
        estimate = getattr(self.executor, "call_cost_prior", None)
        return int(estimate(model)) if callable(estimate) else typical_call_cost(model)


def default_executor(config: PoolConfig, settings: Settings) -> Executor:
    """The Claude Code CLI: ``settings.claude_bin``, else ``claude`` on the PATH, else the
    pinned CLI that ``claude-pool install-cli`` (or ``make setup``) installs."""
    from claude_pool.executor import ClaudeCliExecutor
    from claude_pool.executor.locate import find_claude

    claude_bin: str | Path | None = settings.claude_bin
    if claude_bin is None and shutil.which("claude") is None:
        claude_bin = find_claude()
    return ClaudeCliExecutor(
        claude_bin,
        env=settings.env,
        detect_permission_prompts=config.detect_permission_prompts,
        clear_for_fresh_sessions=settings.clear_for_fresh_sessions,
    )


__all__ = ["Engine", "default_executor"]

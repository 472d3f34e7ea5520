"""Draining a pool: stop taking work, let running tasks finish within a grace period, cancel
the rest, stop every slot process and finish the worktrees. Bounded in time, and a failing
store does not stop it (every process is stopped all the same)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from claude_pool.chain.runner import ChainRunner
from claude_pool.errors import StoreError
from claude_pool.executor.base import Executor
from claude_pool.lifecycle import Lifecycle
from claude_pool.runner import TaskRunner
from claude_pool.scheduler import Scheduler
from claude_pool.slots import SlotSet
from claude_pool.store import Store
from claude_pool.types import TaskFilter, TaskState
from claude_pool.worktree import WorktreeReport

log = logging.getLogger(__name__)

_T = TypeVar("_T")

KILL_BUDGET_SECS = 30.0
"""Interrupt, terminate and kill each get a bounded wait inside the executor; this bounds
them all."""


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
    store_error: str | None = None
    """The first store failure met while draining (the drain went on: every process was
    stopped; the counts that needed the store are left at zero)."""


async def drain(
    *,
    grace_secs: float,
    cancel_pending: bool,
    lifecycle: Lifecycle,
    store: Store,
    slots: SlotSet,
    scheduler: Scheduler,
    runner: TaskRunner,
    chains: ChainRunner,
    executor: Executor,
    cancel: Callable[[str], Awaitable[Any]],
) -> DrainSummary:
    lifecycle.accepting = False
    for slot in slots:
        slot.stopping = True
    await scheduler.claim_settled()
    running = runner.running_tasks()
    summary = DrainSummary()

    async def tolerant(step: Awaitable[_T], default: _T) -> _T:
        try:
            return await step
        except StoreError as exc:
            if summary.store_error is None:
                summary.store_error = str(exc)
                if lifecycle.failure is None:
                    log.error("draining: %s; going on without the store", exc)
            return default

    if running:
        waits = [asyncio.ensure_future(r.finished.wait()) for r in running]
        _, pending = await asyncio.wait(waits, timeout=grace_secs)
        for waiter in pending:
            waiter.cancel()
        for r in running:
            if r.finished.is_set():
                summary.tasks_finished += 1
            else:
                r.stop("cancelled: the pool drained")
                summary.tasks_cancelled += 1
        stragglers = [asyncio.ensure_future(r.finished.wait()) for r in running]
        _, still = await asyncio.wait(stragglers, timeout=KILL_BUDGET_SECS)
        for waiter in still:
            waiter.cancel()
    runner.stop_retrying()
    if cancel_pending:
        pending_filter = TaskFilter(state=TaskState.PENDING)
        for record in await tolerant(store.list_tasks(pending_filter, 10**9), []):
            await tolerant(cancel(record.id), None)
    counts = await tolerant(store.count_tasks(), {})
    summary.tasks_left_pending = counts.get(TaskState.PENDING, 0)
    summary.slots_stopped = len(slots)
    chains_interrupted, chain_reports = await tolerant(chains.stop(), (0, []))
    slot_reports = await slots.stop_all()
    reports = [*chain_reports, *slot_reports]
    summary.chains_interrupted = chains_interrupted
    summary.worktrees = reports
    summary.kept_branches = [b for r in reports for b in r.kept_branches]
    await executor.aclose()
    summary.total_spend_microdollars = await tolerant(store.get_spend(), 0)
    return summary


__all__ = ["KILL_BUDGET_SECS", "DrainSummary", "drain"]

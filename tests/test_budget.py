"""The pool's budget: no task starts that cannot finish a call, and several workers keep one
budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from claude_pool import BudgetExhausted, Pool, PoolConfig, TaskState
from claude_pool.budget import BudgetLedger
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import Store
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import MetricsFilter, TaskId, TaskResult
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""

CALL = 6_000
"""What one API call costs here, in microdollars (the stand-in of the report)."""


def one_call(request: ExecutionRequest) -> TaskResult:
    """A one-call task, with the CLI's budget rule: the call is made and paid for, and a cap
    below its cost ends the task on the cap."""
    cap = request.config.max_budget_usd
    if cap is not None and cap * 1_000_000 < CALL:
        return TaskResult.failure("Claude Code failed: it reached its spend cap").model_copy(
            update={"cost_microdollars": CALL, "turns_used": 1, "budget_exceeded": True}
        )
    return TaskResult.success_result("done", CALL, 1)


async def test_a_tight_budget_never_starts_a_task_with_a_cap_below_a_call() -> None:
    # Regression: budget 15,000, 4 slots, one-call tasks of 6,000: 24,000 was spent, one task
    # succeeded and three failed on caps of 2,250, 1,125 and 4,500.
    executor = FakeExecutor(handler=one_call, call_cost_microdollars=5_000)  # a close prior
    async with Pool(
        PoolConfig(budget_microdollars=15_000), slots=4, store=new_store(), executor=executor
    ) as pool:
        items = await pool.fan_out_items([f"job {i}" for i in range(8)])
        status = await pool.status()
    caps = [r.config.max_budget_usd for r in executor.requests]
    assert all(cap is not None and cap * 1_000_000 >= CALL for cap in caps)
    assert not any(i.result and i.result.budget_exceeded for i in items)
    assert sum(i.success for i in items) == 2, "as many as the budget pays for"
    assert status.spend_microdollars == 2 * CALL
    refused = [i for i in items if not i.success]
    assert all("budget exhausted" in (i.error or "") for i in refused)
    assert status.budget_exhausted


async def test_slots_that_claim_side_by_side_share_what_is_free() -> None:
    # Four slots claim four tasks at once: each task's cap is a quarter of what is free, not
    # everything for the first to reserve (while the three others wait for it to settle).
    budget = 100 * CALL
    executor = FakeExecutor(handler=one_call, call_cost_microdollars=CALL, hold=True)
    async with Pool(
        PoolConfig(budget_microdollars=budget), slots=4, store=new_store(), executor=executor
    ) as pool:
        ids = await asyncio.gather(*(pool.submit(f"job {i}") for i in range(4)))
        running = await executor.wait_running(4)
        caps = sorted(round((r.config.max_budget_usd or 0) * 1_000_000) for r in running)
        executor.release()
        for task_id in ids:
            assert (await pool.wait(task_id, timeout=5)).state is TaskState.COMPLETED
    assert sum(caps) <= budget
    assert caps[0] >= budget // 4 - CALL, caps


async def test_a_task_waits_for_running_ones_to_settle_before_it_is_refused() -> None:
    executor = FakeExecutor(handler=one_call, call_cost_microdollars=CALL, hold=True)
    # Two caps of 1.25 calls fit; what is left after the two cannot pay for a third.
    async with Pool(
        PoolConfig(budget_microdollars=round(2.5 * CALL)), slots=3, store=new_store(),
        executor=executor,
    ) as pool:  # fmt: skip
        first = await pool.submit("first")
        await executor.wait_running(1)
        second = await pool.submit("second")
        third = await pool.submit("third")
        await executor.wait_running(2)
        # The third cannot be paid for while the two run, and is not started.
        assert len(executor.requests) == 2
        executor.release()
        records = [await pool.wait(t, timeout=5) for t in (first, second, third)]
    assert [r.state for r in records] == [TaskState.COMPLETED, TaskState.COMPLETED,
                                          TaskState.FAILED]  # fmt: skip
    assert records[2].result is not None
    assert "budget exhausted" in records[2].result.output
    assert len(executor.requests) == 2


async def test_several_pools_on_one_store_keep_one_budget(
    shared_store: Callable[[], Store],
) -> None:
    # Regression: each process reserved on its own, so together they overshot.
    budget = 5 * CALL
    executors = [FakeExecutor(handler=one_call, call_cost_microdollars=CALL) for _ in range(3)]
    pools = [
        Pool(PoolConfig(budget_microdollars=budget), slots=4, store=shared_store(), executor=e)
        for e in executors
    ]
    for pool in pools:
        await pool.open()
    try:
        submitted = []
        for i in range(20):
            # Once the five calls are spent, new work may be refused at the door instead.
            with contextlib.suppress(BudgetExhausted):
                submitted.append(await pools[i % 3].submit(f"job {i}"))
        records = [await pools[0].wait(t, timeout=10) for t in submitted]
        spent = (await pools[0].status()).spend_microdollars
    finally:
        for pool in pools:
            await pool.close()
    assert spent <= budget
    assert sum(r.state is TaskState.COMPLETED for r in records) == 5
    assert not any(r.result and r.result.budget_exceeded for r in records)
    assert sum(len(e.requests) for e in executors) == 5


async def test_new_work_is_refused_once_what_is_left_cannot_pay_for_a_call() -> None:
    executor = FakeExecutor(handler=one_call, call_cost_microdollars=CALL)
    async with Pool(
        PoolConfig(budget_microdollars=CALL + 100), slots=1, store=new_store(),
        executor=executor,
    ) as pool:  # fmt: skip
        assert (await pool.run("the only one")).success
        with pytest.raises(BudgetExhausted) as refused:
            await pool.submit("one more")
        assert (refused.value.spent, refused.value.limit) == (CALL, CALL + 100)
        assert (await pool.status()).budget_exhausted


async def test_what_calls_cost_is_learned_from_the_store_history(
    shared_store: Callable[[], Store],
) -> None:
    first = FakeExecutor(handler=one_call, call_cost_microdollars=CALL)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=first) as pool:
        await pool.run("teaches the store")
    # A new pool whose executor guesses far too low still starts with what the store saw.
    low = FakeExecutor(handler=one_call, call_cost_microdollars=10)
    async with Pool(
        PoolConfig(budget_microdollars=100 * CALL), slots=4, store=shared_store(), executor=low
    ) as pool:
        await asyncio.gather(*(pool.run(f"job {i}") for i in range(4)))
    assert all((r.config.max_budget_usd or 0) * 1_000_000 >= CALL for r in low.requests)


async def test_a_rejected_task_keeps_the_spend_of_every_attempt() -> None:
    # Regression: after reject() the task was queued again with result=None, and its earlier
    # attempts vanished from the record and from session_metrics (42,000 there vs 48,000 in
    # status()).
    async with Pool(PoolConfig(), slots=1, store=new_store(),
                    executor=FakeExecutor(handler=one_call)) as pool:  # fmt: skip
        task_id = await pool.submit("write it", review=True, max_rejections=3)
        for feedback in ("shorter", "friendlier"):
            assert (await pool.wait(task_id, timeout=5)).state is TaskState.PENDING_REVIEW
            await pool.reject(task_id, feedback)
        record = await pool.wait(task_id, timeout=5)
        await pool.approve(task_id)
        record = await pool.get_task(task_id)
        metrics = await pool.session_metrics()
        status = await pool.status()
    assert [a.reason for a in record.attempts] == ["rejected: shorter", "rejected: friendlier"]
    assert [a.cost_microdollars for a in record.attempts] == [CALL, CALL]
    assert record.total_cost_microdollars == 3 * CALL
    assert status.spend_microdollars == 3 * CALL
    assert metrics.total_spend_microdollars == status.spend_microdollars
    assert metrics.max_cost_microdollars == 3 * CALL
    assert metrics.model_breakdown[0].total_cost_microdollars == 3 * CALL


async def test_session_metrics_cover_this_session_unless_asked_for_all_time(
    shared_store: Callable[[], Store],
) -> None:
    # Regression: after reopening a SQLite store, total_tasks counted every task ever stored
    # while session_start_ms was the new session's.
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=FakeExecutor()) as pool:
        for i in range(3):
            await pool.run(f"earlier {i}")
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=FakeExecutor()) as pool:
        await pool.run("now")
        session = await pool.session_metrics()
        everything = await pool.session_metrics(MetricsFilter(all_time=True))
        ranged = await pool.session_metrics(MetricsFilter(since_ms=0))
    assert (session.total_tasks, session.scope) == (1, "session")
    assert (everything.total_tasks, everything.scope) == (4, "all_time")
    assert (ranged.total_tasks, ranged.scope) == (4, "range")
    assert "scope" not in session.model_dump(), "the seed's JSON shape, by default"
    assert everything.model_dump()["scope"] == "all_time"


@pytest.mark.parametrize(
    ("left", "reused"),
    [
        (40 * CALL, True),  # within twice the slot's share of what is free (25 calls)
        (2 * CALL, True),  # at least one call and a task, with their margins
        (CALL, False),  # less than a task is expected to cost: a new cap, a new process
        (60 * CALL, False),  # more than twice the slot's share
        (None, False),  # no live process with a cap
    ],
)
async def test_what_a_live_process_still_allows_is_reserved_where_it_fits(
    left: int | None, reused: bool
) -> None:
    async with opened(new_store()) as store:
        ledger = BudgetLedger(store, lambda: 100 * CALL, "worker", prior=lambda model: CALL)
        ledger.costs.observe(None, CALL, 1)

        cap = await ledger.reserve(TaskId("task-1"), None, None, lambda: 4, lambda: left)

        assert cap == (left if reused else 25 * CALL)
        assert await store.budget_state() == (0, cap)


async def test_a_live_process_allowance_is_not_reserved_past_what_is_free_or_the_task_cap() -> None:
    async with opened(new_store()) as store:
        ledger = BudgetLedger(store, lambda: 10 * CALL, "worker", prior=lambda model: CALL)
        ledger.costs.observe(None, CALL, 1)
        first = await ledger.reserve(TaskId("task-1"), None, None, lambda: 2, lambda: None)
        assert first == 5 * CALL

        past_free = await ledger.reserve(TaskId("task-2"), None, None, lambda: 1, lambda: 6 * CALL)
        await store.release_budget(TaskId("task-2"))
        task_cap = 3 * CALL / 1_000_000
        past_cap = await ledger.reserve(
            TaskId("task-3"), None, task_cap, lambda: 1, lambda: 4 * CALL
        )

    assert past_free == 5 * CALL, "what is free, not the live process's 6 calls"
    assert past_cap == 3 * CALL, "the task's own cap"


@contextlib.asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Store]:
    await store.open()
    try:
        yield store
    finally:
        await store.close()

"""Review gate, scaling, slot identity, shared context and messaging on the engine."""

from __future__ import annotations

import asyncio

import pytest

from claude_pool import (
    BudgetExhausted,
    InvalidTaskState,
    Pool,
    PoolConfig,
    ScalingConfig,
    ScalingError,
    SlotNotFound,
    SlotState,
    TaskOverrides,
    TaskResult,
    TaskState,
)
from claude_pool.config import Settings
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor


def make_pool(executor: FakeExecutor, slots: int = 1, config: PoolConfig | None = None) -> Pool:
    return Pool(config or PoolConfig(), slots=slots, store=MemoryStore(), executor=executor)


async def test_approve_completes_a_task_held_for_review() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task_id = await pool.submit("write it", review=True)
        await pool.wait(task_id, timeout=5)
        record = await pool.approve(task_id)
        assert record.state is TaskState.COMPLETED
        assert (await pool.get_task(task_id)).state is TaskState.COMPLETED


async def test_reject_requeues_with_feedback_appended_to_the_original_prompt() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        task_id = await pool.submit("write a haiku", review=True, max_rejections=3)
        await pool.wait(task_id, timeout=5)
        outcome = await pool.reject(task_id, "needs more autumn")
        assert outcome.requeued
        assert outcome.attempt == 2
        assert outcome.max_attempts == 3
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.PENDING_REVIEW
        second_prompt = executor.requests[1].prompt
        assert second_prompt.startswith("write a haiku")
        assert "needs more autumn" in second_prompt
        assert "attempt 2 of 3" in second_prompt
        outcome = await pool.reject(task_id, "now less autumn")
        record = await pool.wait(task_id, timeout=5)
        third_prompt = executor.requests[2].prompt
        assert "now less autumn" in third_prompt
        assert "needs more autumn" not in third_prompt
        assert record.rejection_count == 2


async def test_the_last_allowed_rejection_fails_the_task_with_the_feedback() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task_id = await pool.submit("x", review=True, max_rejections=2)
        await pool.wait(task_id, timeout=5)
        first = await pool.reject(task_id, "try again")
        assert first.requeued
        await pool.wait(task_id, timeout=5)
        second = await pool.reject(task_id, "still wrong")
        assert not second.requeued
        assert second.task.state is TaskState.FAILED
        assert second.task.result is not None
        assert "still wrong" in second.task.result.output


async def test_approve_or_reject_in_the_wrong_state_names_the_state() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task_id = await pool.submit("no review")
        await pool.wait(task_id, timeout=5)
        with pytest.raises(InvalidTaskState, match="completed"):
            await pool.approve(task_id)
        with pytest.raises(InvalidTaskState, match="completed"):
            await pool.reject(task_id, "feedback")


async def test_scale_up_and_down_stay_within_bounds() -> None:
    config = PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=3))
    async with make_pool(FakeExecutor(), slots=1, config=config) as pool:
        added = await pool.scale_up(2)
        assert len(added) == 2
        assert len(pool.slots) == 3
        with pytest.raises(ScalingError, match=r"1\.\.3"):
            await pool.scale_up(1)
        await pool.set_target_slots(1)
        assert len(pool.slots) == 1
        with pytest.raises(ScalingError):
            await pool.scale_down(1)
        with pytest.raises(ValueError, match="positive"):
            await pool.scale_up(-1)


async def test_scale_down_removes_idle_least_used_slots_and_never_a_running_one() -> None:
    executor = FakeExecutor(hold=True)
    config = PoolConfig(scaling=ScalingConfig(min_slots=0, max_slots=4))
    async with make_pool(executor, slots=3, config=config) as pool:
        task_id = await pool.submit("long")
        [request] = await executor.wait_running(1)
        removed = await pool.scale_down(3)
        assert request.slot_id not in {r.id for r in removed}
        assert len(removed) == 2
        assert [s.id for s in pool.slots] == [request.slot_id]
        executor.release()
        assert (await pool.wait(task_id, timeout=5)).state is TaskState.COMPLETED


async def test_find_and_configure_slots() -> None:
    async with make_pool(FakeExecutor(), slots=2) as pool:
        first = pool.slots[0]
        await pool.configure_slot(first.id, name="rev", role="reviewer", model="claude-opus-4")
        assert [s.id for s in pool.find_slots(role="reviewer")] == [first.id]
        assert pool.find_slots(name="rev")[0].config.model == "claude-opus-4"
        assert len(pool.find_slots(state=SlotState.IDLE)) == 2
        with pytest.raises(SlotNotFound):
            await pool.configure_slot("slot-nope", name="x")
        with pytest.raises(ValueError, match="unknown"):
            await pool.configure_slot(first.id, colour="blue")


async def test_context_reaches_every_task_system_prompt_by_appending() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        await pool.context_set("style", "terse")
        assert await pool.context_list() == {"style": "terse"}
        await pool.run("a")
        assert await pool.context_delete("style")
        assert await pool.context_get("style") is None
        await pool.run("b")
    assert "style: terse" in (executor.requests[0].config.system_prompt or "")
    assert executor.requests[1].config.system_prompt is None


async def test_messages_are_delivered_with_the_next_task_and_survive_a_failure() -> None:
    outcomes = iter([False, True])

    def handler(request: ExecutionRequest) -> TaskResult:
        if next(outcomes):
            return TaskResult.success_result("ok", 1, 1)
        return TaskResult.failure("crashed")

    executor = FakeExecutor(handler=handler)
    async with make_pool(executor) as pool:
        slot_id = pool.slots[0].id
        await pool.send_message("coordinator", slot_id, "use the v2 API")
        assert [m.content for m in await pool.peek_messages(slot_id)] == ["use the v2 API"]
        await pool.run("first")
        await pool.run("second")
        assert await pool.read_messages(slot_id) == []
        with pytest.raises(SlotNotFound):
            await pool.send_message("coordinator", "slot-missing", "hi")
    assert "use the v2 API" in executor.requests[0].prompt
    assert "use the v2 API" in executor.requests[1].prompt


async def test_broadcast_reaches_every_other_slot_and_read_drains() -> None:
    async with make_pool(FakeExecutor(), slots=3) as pool:
        sender = pool.slots[0].id
        sent = await pool.broadcast(sender, "standup in 5")
        assert {m.to_slot for m in sent} == {s.id for s in pool.slots[1:]}
        other = pool.slots[1].id
        assert [m.content for m in await pool.read_messages(other)] == ["standup in 5"]
        assert await pool.read_messages(other) == []


async def test_concurrent_tasks_cannot_spend_past_the_pool_budget() -> None:
    """Each task spends all it is allowed; together they stay within the budget."""

    def spend_everything(request: ExecutionRequest) -> TaskResult:
        cap = request.config.max_budget_usd
        assert cap is not None
        return TaskResult.success_result("spent", round(cap * 1_000_000), 1)

    budget = 1_000_000
    config = PoolConfig(budget_microdollars=budget)
    async with make_pool(FakeExecutor(handler=spend_everything), slots=8, config=config) as pool:
        results = await pool.fan_out([f"job {i}" for i in range(40)])
        spent = (await pool.status()).spend_microdollars
        assert spent <= budget
        # What is left could not pay for a call as calls were seen to cost: none started to
        # fail on its cap.
        costs = [r.cost_microdollars for r in results if r.success]
        assert budget - spent < 1.25 * (sum(costs) / len(costs))
        refused = [r for r in results if not r.success]
        assert refused
        assert all("budget exhausted" in r.output for r in refused)
        with pytest.raises(BudgetExhausted) as caught:
            await pool.submit("one more")
        assert caught.value.limit == budget
        assert caught.value.spent == spent


async def test_a_task_cap_below_its_budget_share_is_kept() -> None:
    executor = FakeExecutor()
    config = PoolConfig(budget_microdollars=10_000_000)
    async with make_pool(executor, slots=1, config=config) as pool:
        await pool.run("capped", TaskOverrides(max_budget_usd=0.5))
        await pool.run("uncapped")
    assert executor.requests[0].config.max_budget_usd == 0.5
    assert executor.requests[1].config.max_budget_usd == pytest.approx(10.0, rel=0.01)


async def test_failed_and_cancelled_tasks_spend_counts() -> None:
    def fail_with_cost(request: ExecutionRequest) -> TaskResult:
        return TaskResult.failure("broke").model_copy(update={"cost_microdollars": 700})

    executor = FakeExecutor(handler=fail_with_cost, cancel_cost_microdollars=300)
    async with make_pool(executor, slots=1) as pool:
        await pool.run("fails")
        executor.hold = True
        task_id = await pool.submit("cancelled")
        await executor.wait_running(1)
        await pool.cancel(task_id)
        assert (await pool.status()).spend_microdollars == 1000


async def test_auto_scaling_grows_while_tasks_wait_and_shrinks_idle_slots() -> None:
    executor = FakeExecutor(hold=True)
    settings = Settings(
        auto_scale=True,
        scale_idle_secs=0.1,
        slots=1,
        pool=PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=3)),
    )
    pool = Pool(settings=settings, store=MemoryStore(), executor=executor)
    async with pool:
        ids = [await pool.submit(f"job {i}") for i in range(4)]
        await executor.wait_running(3)
        assert len(pool.slots) == 3
        executor.release()
        for task_id in ids:
            await pool.wait(task_id, timeout=5)
        async with asyncio.timeout(5):
            while len(pool.slots) > 1:  # noqa: ASYNC110 - no event marks an idle timeout
                await asyncio.sleep(0.02)
        assert len(pool.slots) == 1


async def test_a_claimed_task_is_never_run_by_a_slot_and_completes_once() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=1) as pool:
        await pool.submit("keeps the slot busy")
        await executor.wait_running(1)
        queued = [await pool.submit(f"queued {i}") for i in range(3)]
        claims = await asyncio.gather(*(pool.claim() for _ in range(5)))
        claimed = [c.id for c in claims if c is not None]
        assert sorted(claimed) == sorted(queued)
        done = await pool.complete_claimed(claimed[0], "did it myself", cost_microdollars=5)
        assert done.state is TaskState.COMPLETED
        with pytest.raises(InvalidTaskState):
            await pool.complete_claimed(claimed[0], "again")
        executor.release()
        for task_id in claimed[1:]:
            await pool.complete_claimed(task_id, "ok")
        await pool.drain()
    assert [r.prompt for r in executor.requests] == ["keeps the slot busy"]


async def test_a_task_waiting_for_budget_can_be_cancelled() -> None:
    """Regression: cancel() hung on a task waiting for budget held by running tasks."""

    def spend_some(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("spent", 400_000, 1)

    executor = FakeExecutor(handler=spend_some)
    config = PoolConfig(budget_microdollars=1_000_000)
    async with make_pool(executor, slots=2, config=config) as pool:
        await pool.run("teaches the pool what a task costs")
        executor.hold = True
        holder = await pool.submit("holds most of what is left")
        await executor.wait_running(1)
        waiting = await pool.submit("waits for budget")
        async with asyncio.timeout(5):
            while (await pool.get_task(waiting)).state is not TaskState.RUNNING:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        record = await asyncio.wait_for(pool.cancel(waiting), timeout=5)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert "waiting for budget" in record.result.output
        assert [r.prompt for r in executor.requests][-1] == "holds most of what is left"
        executor.release()
        await pool.wait(holder, timeout=5)


async def test_waiting_for_budget_counts_against_the_task_timeout() -> None:
    def spend_some(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("spent", 400_000, 1)

    executor = FakeExecutor(handler=spend_some)
    config = PoolConfig(budget_microdollars=1_000_000)
    async with make_pool(executor, slots=2, config=config) as pool:
        await pool.run("teaches the pool what a task costs")
        executor.hold = True
        await pool.submit("holds most of what is left")
        await executor.wait_running(1)
        result = await pool.run("cannot wait long", timeout=0.2)
        assert not result.success
        assert "timed out after 0.2s waiting for budget" in result.output
        executor.release()


async def test_concurrent_scale_downs_never_go_below_min_slots() -> None:
    """Regression: two scale_down(1) calls both passed the bounds check."""
    config = PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=4))
    async with make_pool(FakeExecutor(), slots=2, config=config) as pool:
        outcomes = await asyncio.gather(
            pool.scale_down(1), pool.scale_down(1), return_exceptions=True
        )
        assert len(pool.slots) == 1
        assert sum(isinstance(o, ScalingError) for o in outcomes) == 1


async def test_a_run_that_succeeded_as_the_cancel_came_stays_completed() -> None:
    def finishes_then_cancel_arrives(request: ExecutionRequest) -> TaskResult:
        request.cancel.set()
        return TaskResult.success_result("finished", 10, 1)

    async with make_pool(FakeExecutor(handler=finishes_then_cancel_arrives)) as pool:
        task_id = await pool.submit("x")
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.COMPLETED
        assert record.result is not None
        assert record.result.output == "finished"


async def test_a_message_sent_while_a_task_runs_reaches_the_next_task() -> None:
    """Regression: a successful task marked every unread message read, including ones that
    arrived while it ran and were never in any prompt."""
    pool_ref: list[Pool] = []

    async def handler(request: ExecutionRequest) -> TaskResult:
        if request.prompt.endswith("first"):
            await pool_ref[0].send_message("coordinator", request.slot_id, "sent mid-task")
        return TaskResult.success_result("ok", 1, 1)

    executor = FakeExecutor(handler=handler)
    async with make_pool(executor) as pool:
        pool_ref.append(pool)
        await pool.run("first")
        await pool.run("second")
    assert "sent mid-task" not in executor.requests[0].prompt
    assert "sent mid-task" in executor.requests[1].prompt

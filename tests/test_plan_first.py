"""Plan approval through the public seams: Pool + MemoryStore + FakeExecutor."""

from __future__ import annotations

from claude_pool import PermissionMode, Pool, PoolConfig, TaskOverrides, TaskState
from claude_pool.events import Event, TaskApproved, TaskHeldForReview
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor


def make_pool(executor: FakeExecutor, slots: int = 2) -> Pool:
    return Pool(PoolConfig(), slots=slots, store=MemoryStore(), executor=executor)


EDITS = TaskOverrides(permission_mode=PermissionMode.ACCEPT_EDITS)


async def test_a_plan_first_task_plans_in_plan_mode_then_carries_out_the_approved_plan() -> None:
    executor = FakeExecutor()
    seen: list[Event] = []
    async with make_pool(executor) as pool:
        pool.add_listener(seen.append)
        task = await pool.submit("add a cache", EDITS, plan_first=True)
        held = await pool.wait(task, timeout=5)
        assert held.state is TaskState.PENDING_REVIEW
        assert held.review_kind == "plan"
        assert held.result is not None
        assert held.result.output == "done: add a cache"
        approved = await pool.approve(task)
        assert approved.state is TaskState.PENDING
        assert approved.plan_approved
        done = await pool.wait(task, timeout=5)
    assert done.state is TaskState.COMPLETED
    assert done.review_kind is None
    planning, doing = executor.requests
    assert planning.config.permission_mode is PermissionMode.PLAN
    assert doing.config.permission_mode is PermissionMode.ACCEPT_EDITS
    assert doing.slot_id == planning.slot_id, "the plan is carried out where it was made"
    assert doing.prompt.startswith("Your plan was approved. Carry it out now.")
    assert "done: add a cache" in doing.prompt
    assert [a.reason for a in done.attempts] == ["plan approved"]
    kinds = [(e.type, e.kind) for e in seen if isinstance(e, TaskHeldForReview | TaskApproved)]
    assert kinds == [("task_held_for_review", "plan"), ("task_approved", "plan")]


async def test_rejecting_a_plan_asks_for_a_new_one_still_in_plan_mode() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        task = await pool.submit("add a cache", EDITS, plan_first=True)
        await pool.wait(task, timeout=5)
        outcome = await pool.reject(task, "use Redis, not a dict")
        assert outcome.requeued
        again = await pool.wait(task, timeout=5)
        assert again.review_kind == "plan"
        await pool.approve(task)
        await pool.wait(task, timeout=5)
    _, second, third = executor.requests
    assert second.config.permission_mode is PermissionMode.PLAN
    assert "rejected your previous plan" in second.prompt
    assert "Make a new plan" in second.prompt
    assert "use Redis, not a dict" in second.prompt
    assert third.config.permission_mode is PermissionMode.ACCEPT_EDITS


async def test_a_plan_first_task_with_review_is_held_again_for_its_result() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task = await pool.submit("add a cache", EDITS, plan_first=True, review=True)
        assert (await pool.wait(task, timeout=5)).review_kind == "plan"
        await pool.approve(task)
        held = await pool.wait(task, timeout=5)
        assert held.review_kind == "result"
        assert (await pool.approve(task)).state is TaskState.COMPLETED


async def test_a_plan_first_task_is_verified_only_when_it_carries_the_plan_out() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        task = await pool.submit("add a cache", EDITS, plan_first=True, verify="echo checked")
        held = await pool.wait(task, timeout=5)
        assert held.result is not None
        assert held.result.verifications == []
        await pool.approve(task)
        done = await pool.wait(task, timeout=5)
    assert done.result is not None
    assert [c.output for c in done.result.verifications] == ["checked\n"]

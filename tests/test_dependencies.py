"""Task dependencies through the public seams: Pool + a store + FakeExecutor (two pools on one
SQLite or PostgreSQL store for the cross-worker case)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from claude_pool import ChainState, Pool, PoolConfig, TaskResult, TaskState
from claude_pool.events import ChainStepStarted
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import Store
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import new_task_id
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""


def make_pool(executor: FakeExecutor, slots: int = 2, **kwargs: object) -> Pool:
    store = kwargs.pop("store", None) or new_store()
    return Pool(PoolConfig(), slots=slots, store=store, executor=executor, **kwargs)  # type: ignore[arg-type]


def failing_on(word: str) -> FakeExecutor:
    def handler(request: ExecutionRequest) -> TaskResult:
        if word in request.prompt:
            return TaskResult.failure("it broke")
        return TaskResult.success_result(f"done: {request.prompt}", 1000, 1)

    return FakeExecutor(handler=handler)


async def test_a_dependent_task_runs_only_after_every_dependency_completed() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=3) as pool:
        first = await pool.submit("first")
        second = await pool.submit("second")
        last = await pool.submit("last", depends_on=[first, second], priority=9)
        await executor.wait_running(2)
        assert (await pool.get_task(last)).state is TaskState.PENDING
        assert (await pool.status()).waiting == {last: [first, second]}
        executor.release(first)
        await pool.wait(first, timeout=5)
        assert await pool.waiting_for([last]) == {last: [second]}
        assert [r.prompt for r in executor.requests] == ["first", "second"]
        executor.release()
        record = await pool.wait(last, timeout=5)
        assert record.state is TaskState.COMPLETED
        assert record.depends_on == [first, second]
        assert [r.prompt for r in executor.requests] == ["first", "second", "last"]
        assert (await pool.status()).waiting == {}


async def test_the_prompt_carries_a_dependency_output_where_it_names_it() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        plan = await pool.submit("make a plan")
        step = await pool.submit(f"carry out: {{{{{plan}.output}}}} now", depends_on=[plan])
        await pool.wait(step, timeout=5)
        assert executor.requests[-1].prompt == "carry out: done: make a plan now"
        assert (await pool.get_task(step)).prompt == f"carry out: {{{{{plan}.output}}}} now"


async def test_a_placeholder_for_a_task_that_is_not_a_dependency_is_refused() -> None:
    async with make_pool(FakeExecutor()) as pool:
        other = await pool.submit("other")
        with pytest.raises(ValueError, match=r"only the outputs of its dependencies"):
            await pool.submit(f"use {{{{{other}.output}}}}")
        assert len(await pool.list_tasks()) == 1


async def test_unknown_and_repeated_dependencies_are_refused_so_no_cycle_can_form() -> None:
    async with make_pool(FakeExecutor()) as pool:
        with pytest.raises(ValueError, match=r"no task in this store.*no\s+cycle"):
            await pool.submit("waits", depends_on=["task-0000000000000000"])
        first = await pool.submit("first")
        with pytest.raises(ValueError, match="more than once"):
            await pool.submit("waits", depends_on=[first, first])
        with pytest.raises(ValueError, match="on_dependency_failure"):
            await pool.submit("waits", depends_on=[first], on_dependency_failure="later")  # type: ignore[arg-type]
        assert [t.id for t in await pool.list_tasks()] == [first]


async def test_a_failed_dependency_cancels_its_dependents_in_turn_naming_it() -> None:
    executor = failing_on("broken")
    executor.hold = True  # the dependency fails once all three are queued, not before
    async with make_pool(executor) as pool:
        broken = await pool.submit("broken step")
        child = await pool.submit("child", depends_on=[broken])
        grandchild = await pool.submit("grandchild", depends_on=[child])
        executor.release()
        record = await pool.wait(grandchild, timeout=5)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert record.result.output == f"dependency {child} cancelled"
        child_record = await pool.get_task(child)
        assert child_record.state is TaskState.CANCELLED
        assert child_record.result is not None
        assert child_record.result.output == f"dependency {broken} failed"
        assert [r.prompt for r in executor.requests] == ["broken step"]


async def test_a_cancelled_dependency_cancels_the_dependent() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=1) as pool:
        blocker = await pool.submit("blocker")
        await executor.wait_running(1)
        queued = await pool.submit("queued")
        dependent = await pool.submit("dependent", depends_on=[queued])
        await pool.cancel(queued)
        record = await pool.wait(dependent, timeout=5)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert record.result.output == f"dependency {queued} cancelled"
        executor.release()
        await pool.wait(blocker, timeout=5)


async def test_a_dependent_asked_to_run_anyway_runs_after_a_failure() -> None:
    executor = failing_on("broken")
    async with make_pool(executor) as pool:
        broken = await pool.submit("broken step")
        report = await pool.submit(
            f"report on {{{{{broken}.output}}}}", depends_on=[broken], on_dependency_failure="run"
        )
        record = await pool.wait(report, timeout=5)
        assert record.state is TaskState.COMPLETED
        assert executor.requests[-1].prompt == "report on it broke"


async def test_depending_on_a_task_that_already_failed_is_refused_unless_run_anyway() -> None:
    async with make_pool(failing_on("broken")) as pool:
        broken = await pool.submit("broken")
        await pool.wait(broken, timeout=5)
        with pytest.raises(ValueError, match="already failed"):
            await pool.submit("after", depends_on=[broken])
        anyway = await pool.submit("after", depends_on=[broken], on_dependency_failure="run")
        assert (await pool.wait(anyway, timeout=5)).state is TaskState.COMPLETED


async def test_depending_on_a_completed_task_runs_at_once() -> None:
    async with make_pool(FakeExecutor()) as pool:
        done = await pool.submit("done")
        await pool.wait(done, timeout=5)
        after = await pool.submit("after", depends_on=[done])
        assert (await pool.wait(after, timeout=5)).state is TaskState.COMPLETED


async def test_a_dependency_held_for_review_holds_its_dependents_until_approved() -> None:
    executor = FakeExecutor()
    async with make_pool(executor) as pool:
        reviewed = await pool.submit("reviewed", review=True)
        after = await pool.submit("after", depends_on=[reviewed])
        assert (await pool.wait(reviewed, timeout=5)).state is TaskState.PENDING_REVIEW
        assert await pool.waiting_for([after]) == {after: [reviewed]}
        await pool.approve(reviewed)
        assert (await pool.wait(after, timeout=5)).state is TaskState.COMPLETED


async def test_the_wait_for_a_slot_starts_when_the_dependencies_are_done() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=2) as pool:
        slow = await pool.submit("slow")
        await executor.wait_running(1)
        after = await pool.submit("after", depends_on=[slow], assignment_timeout=0.2)
        # Longer than its assignment timeout: waiting for a dependency is not waiting for a slot.
        with pytest.raises(TimeoutError):
            await pool.wait(after, timeout=0.5)
        assert (await pool.get_task(after)).state is TaskState.PENDING
        executor.release()
        assert (await pool.wait(after, timeout=5)).state is TaskState.COMPLETED


async def test_a_dependency_run_by_another_pool_on_the_store_unblocks_this_one(
    shared_store: Callable[[], Store],
) -> None:
    first_executor = FakeExecutor(hold=True)
    second_executor = FakeExecutor()
    async with (
        make_pool(first_executor, slots=1, store=shared_store()),
        make_pool(second_executor, slots=0, store=shared_store()) as submitter,
    ):
        dependency = await submitter.submit("dependency")
        await first_executor.wait_running(1)
        async with make_pool(second_executor, slots=1, store=shared_store()) as second:
            dependent = await second.submit(
                f"after {{{{{dependency}.output}}}}", depends_on=[dependency]
            )
            assert await second.waiting_for([dependent]) == {dependent: [dependency]}
            first_executor.release()
            record = await second.wait(dependent, timeout=10)
            assert record.state is TaskState.COMPLETED
            ran = [r.prompt for r in first_executor.requests + second_executor.requests]
            assert ran == ["dependency", "after done: dependency"]


async def test_dependencies_settled_before_a_restart_unblock_after_it(
    shared_store: Callable[[], Store],
) -> None:
    async with make_pool(FakeExecutor(), slots=0, store=shared_store()) as pool:
        first = await pool.submit("first")
        after = await pool.submit("after", depends_on=[first])
    # Another process ran the dependency while no pool with slots was open (an outside
    # claim): the dependent is settled when the next pool opens.
    async with make_pool(FakeExecutor(), slots=0, store=shared_store()) as outside:
        claimed = await outside.claim(first)
        assert claimed is not None
        await outside.complete_claimed(first, "first is done")
    executor = FakeExecutor()
    async with make_pool(executor, slots=1, store=shared_store()) as pool:
        record = await asyncio.wait_for(pool.wait(after), timeout=10)
        assert record.state is TaskState.COMPLETED
        assert [r.prompt for r in executor.requests] == ["after"]


async def test_a_fan_out_can_wait_for_a_task_and_a_task_can_join_the_fan_out() -> None:
    executor = FakeExecutor()
    async with make_pool(executor, slots=3) as pool:
        setup = await pool.submit("set up")
        items = await pool.fan_out_items(
            [f"part {i} after {{{{{setup}.output}}}}" for i in range(3)], depends_on=[setup]
        )
        assert all(item.success for item in items)
        joined = await pool.submit(
            "join the parts", depends_on=[item.task_id for item in items if item.task_id]
        )
        assert (await pool.wait(joined, timeout=5)).state is TaskState.COMPLETED
        prompts = [r.prompt for r in executor.requests]
        assert prompts[0] == "set up"
        assert sorted(prompts[1:4]) == [f"part {i} after done: set up" for i in range(3)]
        assert prompts[4] == "join the parts"


async def test_a_chain_waits_for_the_tasks_it_depends_on_and_its_steps_can_use_their_output() -> (
    None
):
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        setup = await pool.submit("set up")
        chain_id = await pool.submit_chain(
            {
                "isolation": "none",
                "depends_on": [setup],
                "steps": [
                    {"prompt": f"build on {{{{{setup}.output}}}}"},
                    {"prompt": "then {previous_output}"},
                ],
            }
        )
        await executor.wait_running(1)
        step_task = await _current_task(pool, chain_id)
        assert await pool.waiting_for([step_task]) == {step_task: [setup]}
        assert [r.prompt for r in executor.requests] == ["set up"]
        executor.release()
        result = await pool.wait_chain(chain_id, timeout=10)
    assert result.state is ChainState.COMPLETED, result.error
    assert [r.prompt for r in executor.requests] == [
        "set up", "build on done: set up", "then done: build on done: set up",
    ]  # fmt: skip


async def _current_task(pool: Pool, chain_id: str) -> str:
    """The task of the chain's running step (waits on the chain's events, bounded)."""
    started: asyncio.Queue[str] = asyncio.Queue()
    remove = pool.add_listener(
        lambda e: (
            started.put_nowait(e.task_id or "")
            if isinstance(e, ChainStepStarted) and e.chain_id == chain_id
            else None
        )
    )
    try:
        current = (await pool.chain_result(chain_id)).current_task_id
        return current or await asyncio.wait_for(started.get(), 10)
    finally:
        remove()


async def test_a_chain_step_waits_for_its_own_dependencies_after_the_steps_before_it() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        other = await pool.submit("outside work")
        chain_id = await pool.submit_chain(
            {
                "isolation": "none",
                "steps": [
                    {"prompt": "first step"},
                    {"prompt": "second step", "depends_on": [other]},
                ],
            }
        )
        await executor.wait_running(2)
        executor.release(await _current_task(pool, chain_id))
        step_task = await _second_step_task(pool, chain_id)
        assert await pool.waiting_for([step_task]) == {step_task: [other]}
        assert (await pool.get_task(other)).state is TaskState.RUNNING
        executor.release()
        done = await pool.wait_chain(chain_id, timeout=10)
    assert done.state is ChainState.COMPLETED, done.error
    prompts = [r.prompt for r in executor.requests]
    assert sorted(prompts[:2]) == ["first step", "outside work"]
    assert prompts[2] == "second step"


async def _second_step_task(pool: Pool, chain_id: str) -> str:
    started: asyncio.Queue[str] = asyncio.Queue()
    remove = pool.add_listener(
        lambda e: (
            started.put_nowait(e.task_id or "")
            if isinstance(e, ChainStepStarted) and e.chain_id == chain_id and e.index == 1
            else None
        )
    )
    try:
        result = await pool.chain_result(chain_id)
        if result.current_step == 1 and result.current_task_id:
            return result.current_task_id
        return await asyncio.wait_for(started.get(), 10)
    finally:
        remove()


async def test_a_cancelled_dependency_cancels_the_chain_waiting_for_it_naming_it() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        dependency = await pool.submit("needed first")
        await executor.wait_running(1)
        chain_id = await pool.submit_chain(
            {"isolation": "none", "depends_on": [dependency], "steps": [{"prompt": "after"}]}
        )
        await _current_task(pool, chain_id)
        await pool.cancel(dependency)
        result = await pool.wait_chain(chain_id, timeout=10)
    assert result.state is ChainState.CANCELLED
    assert result.error is not None
    assert f"dependency {dependency} cancelled" in result.error
    assert [r.prompt for r in executor.requests] == ["needed first"]


async def test_fan_out_waits_for_its_dependencies_for_every_item() -> None:
    executor = FakeExecutor()
    async with make_pool(executor, slots=3) as pool:
        setup = await pool.submit("set up")
        results = await pool.fan_out(["left", "right"], depends_on=[setup])
    assert [r.success for r in results] == [True, True]
    assert executor.requests[0].prompt == "set up"


async def test_a_dependency_cycle_cannot_be_formed_through_any_seam() -> None:
    """A cycle needs a task to name one submitted after it (or itself, or a chain of its
    own): each of those is refused, so the graph only ever points back in time."""
    async with make_pool(FakeExecutor()) as pool:
        first = await pool.submit("first")
        second = await pool.submit("second", depends_on=[first])
        # The id a task will get cannot be named before it exists: not by a task, ...
        with pytest.raises(ValueError, match="no task in this store"):
            await pool.submit("self", depends_on=[new_task_id()])
        # ... nor by a chain or one of its steps (refused at submission, nothing queued) ...
        with pytest.raises(ValueError, match="no task in this store"):
            await pool.submit_chain(
                {
                    "steps": [
                        {"prompt": "a"},
                        {"prompt": "b", "depends_on": ["task-ffffffffffffffff"]},
                    ]
                }
            )
        # ... and a chain is no task: naming one (the chain itself, say) is refused too.
        chain_id = await pool.submit_chain({"isolation": "none", "steps": [{"prompt": "c"}]})
        await pool.wait_chain(chain_id, timeout=10)
        with pytest.raises(ValueError, match="a chain; depends_on takes task ids"):
            await pool.submit("after the chain", depends_on=[chain_id])
        with pytest.raises(ValueError, match="a chain; depends_on takes task ids"):
            await pool.submit_chain({"depends_on": [chain_id], "steps": [{"prompt": "d"}]})
        with pytest.raises(ValueError, match="more than once"):
            await pool.submit("twice", depends_on=[second, second])
        await pool.wait(second, timeout=5)
        tasks = await pool.list_tasks()
    assert [t.prompt for t in tasks] == ["first", "second", "c"]

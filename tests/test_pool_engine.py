"""Engine behaviour through the public seams: Pool + a store (memory, PostgreSQL) +
FakeExecutor."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_pool import (
    InvalidTaskState,
    NoSlotAvailable,
    Pool,
    PoolConfig,
    PoolShutdown,
    SlotConfig,
    SlotMode,
    TaskNotFound,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
)
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import MemoryStore, Store, StoredTask
from claude_pool.testing.fake_executor import FakeExecutor
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""


def make_pool(executor: FakeExecutor, slots: int = 1, **kwargs: object) -> Pool:
    config = kwargs.pop("config", None) or PoolConfig()
    return Pool(config, slots=slots, store=new_store(), executor=executor, **kwargs)  # type: ignore[arg-type]


async def test_run_returns_the_executor_result_and_records_it() -> None:
    async with make_pool(FakeExecutor()) as pool:
        result = await pool.run("hello")
        assert result.success
        assert result.output == "done: hello"
        tasks = await pool.list_tasks()
        assert [t.state for t in tasks] == [TaskState.COMPLETED]
        assert tasks[0].started_at_ms is not None
        assert tasks[0].completed_at_ms is not None
        status = await pool.status()
        assert status.spend_microdollars == 1000
        assert status.slots[0].tasks_completed == 1


async def test_higher_priority_runs_first_then_submission_order() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        first = await pool.submit("first")
        await executor.wait_running(1)
        low_a = await pool.submit("low a")
        low_b = await pool.submit("low b")
        high = await pool.submit("high", priority=5)
        executor.release()
        for task_id in (first, low_a, low_b, high):
            await pool.wait(task_id, timeout=5)
        order = [r.prompt for r in executor.requests]
        assert order == ["first", "high", "low a", "low b"]
        del low_a, low_b


async def test_a_task_that_finds_no_slot_in_time_fails_with_no_slot_available() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        await pool.submit("occupies the only slot")
        await executor.wait_running(1)
        with pytest.raises(NoSlotAvailable) as caught:
            await asyncio.wait_for(pool.run("waits", assignment_timeout=0.2), timeout=5)
        assert caught.value.timeout_secs == pytest.approx(0.2)
        failed = await pool.list_tasks()
        assert failed[1].state is TaskState.FAILED
        assert "no slot" in (failed[1].result.output if failed[1].result else "")
        executor.release()


async def test_slot_assignment_timeout_override_of_the_target_slot_is_honoured() -> None:
    executor = FakeExecutor(hold=True)
    slow_slot = SlotConfig(name="slow", slot_assignment_timeout_secs=1)
    async with make_pool(
        executor,
        slots=1,
        slot_configs=[slow_slot],
        config=PoolConfig(slot_assignment_timeout_secs=300),
    ) as pool:
        await pool.submit("occupies the slot")
        await executor.wait_running(1)
        with pytest.raises(NoSlotAvailable):
            await asyncio.wait_for(pool.run("for slow", name="slow"), timeout=5)
        executor.release()


async def test_cancel_pending_task_never_starts() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        await pool.submit("busy")
        await executor.wait_running(1)
        queued = await pool.submit("queued")
        record = await pool.cancel(queued)
        assert record.state is TaskState.CANCELLED
        executor.release()
        await pool.drain()
        assert "queued" not in [r.prompt for r in executor.requests]


async def test_cancel_running_task_stops_it_and_counts_its_spend() -> None:
    def stopped_with_spend(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("never", 0, 0)

    executor = FakeExecutor(hold=True, handler=stopped_with_spend, cancel_cost_microdollars=2500)
    async with make_pool(executor) as pool:
        task_id = await pool.submit("long job")
        await executor.wait_running(1)
        record = await pool.cancel(task_id)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert record.result.cost_microdollars == 2500
        assert not executor.running
        assert (await pool.status()).spend_microdollars == 2500


async def test_cancel_of_a_finished_task_leaves_it_alone() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task_id = await pool.submit("quick")
        await pool.wait(task_id, timeout=5)
        record = await pool.cancel(task_id)
        assert record.state is TaskState.COMPLETED


async def test_cancel_of_an_unknown_task_raises_task_not_found() -> None:
    async with make_pool(FakeExecutor()) as pool:
        with pytest.raises(TaskNotFound):
            await pool.cancel("task-doesnotexist")


async def test_200_concurrent_submits_on_4_slots_each_end_exactly_once() -> None:
    executor = FakeExecutor()
    async with make_pool(executor, slots=4) as pool:
        ids = await asyncio.gather(*(pool.submit(f"task {i}") for i in range(200)))
        records = await asyncio.gather(*(pool.wait(t, timeout=20) for t in ids))
        assert {r.state for r in records} == {TaskState.COMPLETED}
        runs = Counter(r.task_id for r in executor.requests)
        assert set(runs) == set(ids)
        assert max(runs.values()) == 1
        slots_used = {r.slot_id for r in executor.requests}
        assert len(slots_used) == 4
        status = await pool.status()
        assert status.spend_microdollars == 200 * 1000
        assert sum(s.tasks_completed for s in status.slots) == 200


async def test_fan_out_reports_each_failure_in_its_own_item_in_input_order() -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        if "bad" in request.prompt:
            return TaskResult.failure(f"failed: {request.prompt}")
        return TaskResult.success_result(f"ok: {request.prompt}", 10, 1)

    async with make_pool(FakeExecutor(handler=handler), slots=3) as pool:
        results = await pool.fan_out(["one", "bad two", "three", "bad four", ""])
        assert [r.success for r in results] == [True, False, True, False, False]
        assert results[0].output == "ok: one"
        assert results[1].output == "failed: bad two"
        assert "empty" in results[4].output


async def test_drain_under_load_returns_promptly_and_cancels_what_outlives_the_grace() -> None:
    executor = FakeExecutor(hold=True)
    pool = make_pool(executor, slots=4)
    await pool.open()
    for i in range(24):
        await pool.submit(f"job {i}")
    await executor.wait_running(4)
    async with asyncio.timeout(5):
        summary = await pool.drain(grace_secs=0.1)
    assert summary.tasks_cancelled == 4
    assert summary.tasks_left_pending == 20
    assert summary.slots_stopped == 4
    assert not executor.running
    assert executor.closed
    with pytest.raises(PoolShutdown):
        await pool.submit("too late")
    await pool.close()


async def test_drain_lets_running_tasks_finish_within_the_grace_period() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=2) as pool:
        ids = [await pool.submit(f"job {i}") for i in range(2)]
        await executor.wait_running(2)
        drain = asyncio.create_task(pool.drain(grace_secs=10))
        executor.release()
        summary = await asyncio.wait_for(drain, timeout=5)
        assert summary.tasks_finished == 2
        assert summary.tasks_cancelled == 0
        for task_id in ids:
            assert (await pool.get_task(task_id)).state is TaskState.COMPLETED


async def test_task_timeout_fails_the_task() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        result = await pool.run("slow", timeout=0.1)
        assert not result.success
        assert "timed out" in result.output


async def test_review_task_waits_for_review() -> None:
    async with make_pool(FakeExecutor()) as pool:
        task_id = await pool.submit("needs review", review=True)
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.PENDING_REVIEW
        assert record.original_prompt == "needs review"


async def test_persistent_slot_resumes_its_session_and_ephemeral_does_not() -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("ok", 1, 1).with_session_id(
            request.session_id or f"session-for-{request.task_id}"
        )

    persistent = FakeExecutor(handler=handler)
    async with make_pool(persistent) as pool:
        await pool.run("one")
        await pool.run("two")
        await pool.run("three", fresh_session=True)
    sessions = [r.session_id for r in persistent.requests]
    assert sessions[0] is None
    assert sessions[1] == f"session-for-{persistent.requests[0].task_id}"
    assert sessions[2] is None

    ephemeral = FakeExecutor(handler=handler)
    async with make_pool(ephemeral, config=PoolConfig(slot_mode=SlotMode.EPHEMERAL)) as pool:
        await pool.run("one")
        await pool.run("two")
    assert [r.session_id for r in ephemeral.requests] == [None, None]
    assert {r.mode for r in ephemeral.requests} == {SlotMode.EPHEMERAL}


async def test_tasks_targeted_at_a_role_run_only_on_slots_with_that_role() -> None:
    executor = FakeExecutor()
    configs = [SlotConfig(role="coder"), SlotConfig(role="reviewer")]
    async with make_pool(executor, slots=2, slot_configs=configs) as pool:
        reviewer = next(s for s in (await pool.status()).slots if s.config.role == "reviewer")
        for i in range(6):
            await pool.run(f"review {i}", role="reviewer")
        assert {r.slot_id for r in executor.requests} == {reviewer.id}


async def test_overrides_and_shared_context_reach_the_executor() -> None:
    executor = FakeExecutor()
    async with make_pool(executor, config=PoolConfig(system_prompt="Be brief.")) as pool:
        await pool.context_set("repo", "claude-pool")
        await pool.run("x", TaskOverrides(model="claude-haiku-4-5", max_turns=2))
    config = executor.requests[0].config
    assert config.model == "claude-haiku-4-5"
    assert config.max_turns == 2
    assert config.system_prompt is not None
    assert config.system_prompt.startswith("Be brief.")
    assert "repo: claude-pool" in config.system_prompt


async def test_wait_times_out_with_timeout_error_while_the_task_runs() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        task_id = await pool.submit("slow")
        await executor.wait_running(1)
        with pytest.raises(TimeoutError):
            await pool.wait(task_id, timeout=0.05)
        assert await pool.result(task_id) is None
        executor.release()
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.COMPLETED


async def test_submit_rejects_bad_input_with_a_clear_error() -> None:
    async with make_pool(FakeExecutor()) as pool:
        with pytest.raises(ValueError, match="empty"):
            await pool.submit("   ")
        with pytest.raises(ValueError, match="timeout"):
            await pool.submit("x", timeout=-1)


async def test_a_task_with_its_own_directory_runs_one_shot_outside_the_slot_session(
    tmp_path: Path,
) -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("ok", 1, 1).with_session_id(f"s-{request.prompt}")

    executor = FakeExecutor(handler=handler)
    async with make_pool(executor, cwd=tmp_path / "slot") as pool:
        await pool.run("home")
        await pool.run("away", cwd=tmp_path / "chain")
        await pool.run("home again")
    home, away, again = executor.requests
    assert away.cwd == (tmp_path / "chain").resolve()
    assert away.mode is SlotMode.EPHEMERAL
    assert away.session_id is None
    assert again.cwd == home.cwd
    assert again.session_id == "s-home"


async def test_cancelling_run_or_fan_out_cancels_their_tasks(
    engine_store: str, request: pytest.FixtureRequest
) -> None:
    if engine_store == "postgres":
        # Known defect, found by running this suite on PostgreSQL: a fan_out cancelled while
        # it stores its last task (a round trip there) never learns that task's id, so it is
        # left queued and runs. Not fixed yet; shown as XPASS when the race goes the other way.
        request.applymarker(pytest.mark.xfail(reason="a submit cancelled mid-insert leaves "
                                              "its task queued", strict=False))  # fmt: skip
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=2) as pool:
        waiting = asyncio.create_task(pool.run("abandoned"))
        fanned = asyncio.create_task(pool.fan_out(["part a", "part b"]))
        await executor.wait_running(2)
        waiting.cancel()
        fanned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        with pytest.raises(asyncio.CancelledError):
            await fanned
        states = {t.prompt: t.state for t in await pool.list_tasks()}
        assert states == dict.fromkeys(["abandoned", "part a", "part b"], TaskState.CANCELLED)
        assert not executor.running


class CancelsRightAfterClaims(MemoryStore):
    """A store through which a cancel() arrives just after a claim committed, before the
    claiming slot has resumed (the window between claim and registration)."""

    pool: Pool | None = None
    cancelled: list[TaskRecord] = []

    async def claim_task(self, *args: Any, **kwargs: Any) -> StoredTask | None:
        claimed = await super().claim_task(*args, **kwargs)
        if claimed is not None and self.pool is not None:
            canceller = asyncio.ensure_future(self.pool.cancel(claimed.record.id))
            canceller.add_done_callback(lambda f: self.cancelled.append(f.result()))
            await asyncio.sleep(0)  # let cancel() run its first steps inside the window
        return claimed


@pytest.mark.own_store
async def test_cancel_in_the_claim_window_waits_for_the_process_to_stop() -> None:
    """Regression: a cancel landing between a claim and the task's registration returned
    while the task went on running for up to poll_secs."""
    store = CancelsRightAfterClaims()
    executor = FakeExecutor(hold=True)
    async with Pool(PoolConfig(), slots=1, store=store, executor=executor) as pool:
        store.pool = pool
        task_id = await pool.submit("claimed and cancelled at once")
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.CANCELLED
        async with asyncio.timeout(5):
            while not store.cancelled:  # noqa: ASYNC110 - the canceller's callback
                await asyncio.sleep(0)
        returned = store.cancelled[0]
        assert returned.state is TaskState.CANCELLED
        # cancel() returned only once the run had stopped: with the run's own result.
        assert returned.result is not None
        assert "while running" in returned.result.output
        assert not executor.running


async def test_an_adopted_slot_resumes_its_session_only_in_the_directory_it_was_recorded_in(
    shared_store: Callable[[], Store], tmp_path: Path
) -> None:
    """Regression: a pool reopened in another directory resumed the slots' sessions there."""

    def handler(request: ExecutionRequest) -> TaskResult:
        return TaskResult.success_result("ok", 1, 1).with_session_id("s-recorded")

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = FakeExecutor(handler=handler)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=first,
                    cwd=tmp_path / "a") as pool:  # fmt: skip
        await pool.run("one")
    same_dir = FakeExecutor(handler=handler)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=same_dir,
                    cwd=tmp_path / "a") as pool:  # fmt: skip
        await pool.run("two")
    moved = FakeExecutor(handler=handler)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=moved,
                    cwd=tmp_path / "b") as pool:  # fmt: skip
        await pool.run("three")
    assert same_dir.requests[0].session_id == "s-recorded"
    assert moved.requests[0].session_id is None


async def test_a_pool_of_only_targeted_slots_leaves_other_queued_work_alone() -> None:
    store = new_store()
    executor = FakeExecutor()
    async with Pool(PoolConfig(), slots=0, store=store, executor=FakeExecutor()) as queue:
        queued = await queue.submit("someone else's task")
    async with Pool(PoolConfig(), slots=1, store=store, executor=executor,
                    only_targeted=True) as pool:  # fmt: skip
        result = await pool.run("mine", slot=pool.slots[0].id)
        assert result.output == "done: mine"
        assert (await pool.get_task(queued)).state is TaskState.PENDING
    assert [r.prompt for r in executor.requests] == ["mine"]


async def test_wait_answers_from_memory_exactly_what_the_store_holds() -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        if "fail" in request.prompt:
            return TaskResult.failure("broke")
        return TaskResult.success_result("fine", 5, 1)

    executor = FakeExecutor(handler=handler)
    async with make_pool(executor) as pool:
        done = await pool.submit("works", tags=["t"])
        failed = await pool.submit("fails")
        for task_id in (done, failed):
            remembered = await pool.wait(task_id, timeout=5)
            stored = await pool.store.get_task(task_id)
            assert stored is not None
            assert remembered == stored.record
        executor.hold = True
        cancelled = await pool.submit("cancelled")
        await executor.wait_running(1)
        await pool.cancel(cancelled)
        stored = await pool.store.get_task(cancelled)
        assert stored is not None
        assert await pool.wait(cancelled, timeout=5) == stored.record


async def test_a_live_pool_with_a_late_heartbeat_keeps_its_running_task(
    shared_store: Callable[[], Store],
) -> None:
    """Regression: a pool process on this host whose heartbeat lagged (a busy machine) was
    taken for dead by another pool opening on the store, and its running task re-queued
    while it still ran it."""
    executor = FakeExecutor(hold=True)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=executor) as busy:
        task_id = await busy.submit("long job")
        await executor.wait_running(1)
        await busy.store.heartbeat_worker(busy.worker_id, 1)  # very stale
        async with Pool(PoolConfig(), slots=1, store=shared_store(),
                        executor=FakeExecutor()) as other:  # fmt: skip
            record = await other.get_task(task_id)
            assert record.state is TaskState.RUNNING
            assert record.slot_id == busy.slots[0].id
        executor.release()
        assert (await busy.wait(task_id, timeout=5)).state is TaskState.COMPLETED


async def test_a_failed_task_can_be_queued_again_and_runs_anew() -> None:
    attempts: list[str] = []

    def flaky(request: ExecutionRequest) -> TaskResult:
        attempts.append(request.prompt)
        if len(attempts) == 1:
            return TaskResult.failure("the first try failed")
        return TaskResult.success_result("fine now", 10, 1)

    async with Pool(
        PoolConfig(), slots=1, store=new_store(), executor=FakeExecutor(handler=flaky)
    ) as pool:
        task_id = await pool.submit("try it", priority=3, tags=["x"])
        assert (await pool.wait(task_id, timeout=5)).state is TaskState.FAILED
        again = await pool.requeue(task_id)
        assert again.state is TaskState.PENDING
        assert again.result is None
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.COMPLETED
        assert record.result is not None
        assert record.result.output == "fine now"
        assert attempts == ["try it", "try it"]
        with pytest.raises(InvalidTaskState, match="requeue"):
            await pool.requeue(task_id)


@pytest.mark.parametrize("priority", [-99999999999999999999, 1_000_001, -1_000_001])
async def test_a_priority_out_of_range_is_refused_with_a_clear_error(priority: int) -> None:
    """Regression: ``submit --priority -99999999999999999999`` crashed with OverflowError in
    the store."""
    async with Pool(PoolConfig(), slots=0, store=new_store()) as pool:
        with pytest.raises(ValueError, match="priority must be between"):
            await pool.submit("x", priority=priority)
        assert await pool.list_tasks() == []
        edge = await pool.submit("edge", priority=1_000_000)
        assert (await pool.get_task(edge)).state is TaskState.PENDING

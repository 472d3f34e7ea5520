"""Crashing slots, the supervisor's restores, stuck tasks and store reconciliation."""

from __future__ import annotations

import asyncio

import pytest

from claude_pool import Pool, PoolConfig, SlotState, TaskResult, TaskState
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.store import StoredTask, TaskTarget
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import SlotId, TaskRecord, new_task_id, now_ms
from engine_stores import new_store

pytestmark = pytest.mark.usefixtures("engine_store")
"""Each test runs on the memory store and on PostgreSQL (tests/engine_stores.py)."""


def crash_on_prompt(request: ExecutionRequest) -> list[tuple[EventKind, dict[str, object]]]:
    if "crash" in request.prompt:
        return [(EventKind.PROCESS_EXITED, {"pid": 1, "exit_code": -9, "reason": "killed"})]
    return []


def handler(request: ExecutionRequest) -> TaskResult:
    if "crash" in request.prompt:
        return TaskResult.failure("the Claude Code CLI process exited unexpectedly")
    return TaskResult.success_result("fine", 1, 1)


def crashing_pool(max_restarts: int) -> tuple[Pool, FakeExecutor]:
    executor = FakeExecutor(handler=handler, events=crash_on_prompt)
    config = PoolConfig(max_restarts=max_restarts)
    return Pool(config, slots=1, store=new_store(), executor=executor), executor


async def test_a_slot_whose_process_keeps_crashing_ends_errored() -> None:
    pool, _ = crashing_pool(max_restarts=2)
    async with pool:
        await pool.run("crash 1")
        await pool.run("crash 2")
        slot = pool.slots[0]
        assert slot.state is SlotState.IDLE
        assert slot.restart_count == 2
        await pool.run("crash 3")
        slot = pool.slots[0]
        assert slot.state is SlotState.ERRORED
        stored = await pool.store.get_slot(slot.id)
        assert stored is not None
        assert stored.state is SlotState.ERRORED


async def test_a_success_resets_the_crash_streak() -> None:
    pool, _ = crashing_pool(max_restarts=1)
    async with pool:
        await pool.run("crash")
        await pool.run("fine")
        await pool.run("crash")
        assert pool.slots[0].state is SlotState.IDLE


async def test_the_supervisor_restores_an_errored_slot_and_queued_work_runs() -> None:
    pool, executor = crashing_pool(max_restarts=1)
    async with pool:
        await pool.run("crash a")
        await pool.run("crash b")
        assert pool.slots[0].state is SlotState.ERRORED
        waiting = await pool.submit("afterwards")
        with pytest.raises(TimeoutError):
            await pool.wait(waiting, timeout=0.3)
        report = await pool.supervisor.check_once()
        assert report.restored_slots == [pool.slots[0].id]
        assert executor.released_slots == [pool.slots[0].id]
        record = await pool.wait(waiting, timeout=5)
        assert record.state is TaskState.COMPLETED
        assert pool.slots[0].session_id is None


async def test_the_supervisor_gives_up_on_a_slot_after_max_restarts_restores() -> None:
    pool, _ = crashing_pool(max_restarts=1)
    async with pool:
        await pool.run("crash a")
        await pool.run("crash b")
        assert (await pool.supervisor.check_once()).restored_slots
        await pool.run("crash c")
        await pool.run("crash d")
        assert pool.slots[0].state is SlotState.ERRORED
        report = await pool.supervisor.check_once()
        assert report.restored_slots == []
        assert pool.slots[0].state is SlotState.ERRORED


async def test_the_supervisor_stops_a_task_stuck_past_its_timeout() -> None:
    async def ignores_its_timeout(request: ExecutionRequest) -> TaskResult:
        await request.cancel.wait()
        return TaskResult.failure("stopped")

    executor = FakeExecutor(handler=ignores_its_timeout)
    async with Pool(PoolConfig(), slots=1, store=new_store(), executor=executor) as pool:
        pool.supervisor.stuck_grace_secs = 0
        task_id = await pool.submit("hangs", timeout=0.01)
        await executor.wait_running(1)
        await asyncio.sleep(0.05)  # let it outlive its (tiny) timeout
        report = await pool.supervisor.check_once()
        assert report.stuck_tasks_stopped == [task_id]
        record = await pool.wait(task_id, timeout=5)
        assert record.state is TaskState.CANCELLED
        assert record.result is not None
        assert "supervisor" in record.result.output


async def test_the_supervisor_requeues_a_task_marked_running_here_that_nothing_runs() -> None:
    executor = FakeExecutor()
    store = new_store()
    async with Pool(PoolConfig(), slots=1, store=store, executor=executor) as pool:
        orphan = TaskRecord.new_pending(new_task_id(), "orphaned")
        await store.insert_task(
            StoredTask(record=orphan, target=TaskTarget(slot_id=SlotId("slot-gone")))
        )
        long_ago = now_ms() - 60_000
        await store.claim_task(SlotId("slot-gone"), None, None, pool.worker_id, long_ago)
        report = await pool.supervisor.check_once()
        assert report.tasks_requeued == [orphan.id]
        await store.transition_task(orphan.id, {TaskState.PENDING}, TaskState.CANCELLED,
                                    now_ms=now_ms())  # fmt: skip


async def test_with_supervisor_enabled_an_errored_slot_comes_back_by_itself() -> None:
    executor = FakeExecutor(handler=handler, events=crash_on_prompt)
    config = PoolConfig(max_restarts=1, supervisor_enabled=True, supervisor_interval_secs=1)
    async with Pool(config, slots=1, store=new_store(), executor=executor) as pool:
        await pool.run("crash a")
        await pool.run("crash b")
        assert pool.slots[0].state is SlotState.ERRORED
        queued = await pool.submit("runs once the supervisor has restored the slot")
        record = await pool.wait(queued, timeout=10)
        assert record.state is TaskState.COMPLETED
        assert pool.supervisor.restores == {pool.slots[0].id: 1}

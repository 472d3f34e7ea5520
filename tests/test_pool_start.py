"""Starting slots: at open, a bounded number at once, first tasks to the first slots ready
(Pool + MemoryStore + FakeExecutor, whose slot starts a test holds and releases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_pool import Pool, PoolConfig, Settings, TaskState
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor


def make_pool(executor: FakeExecutor, slots: int, tmp_path: Path, **settings: object) -> Pool:
    config = settings.pop("config", None) or PoolConfig(model="fake-model")
    return Pool(
        config,  # type: ignore[arg-type]
        slots=slots,
        store=MemoryStore(),
        executor=executor,
        settings=Settings(**settings),  # type: ignore[arg-type]
        cwd=tmp_path,
    )


@pytest.fixture
def pool_cwd(tmp_path: Path) -> Path:
    return tmp_path.resolve()


async def test_every_slot_is_started_when_the_pool_opens(tmp_path: Path, pool_cwd: Path) -> None:
    executor = FakeExecutor(hold_starts=True)
    async with make_pool(executor, 3, tmp_path, max_concurrent_spawns=3) as pool:
        starts = await executor.wait_starting(3)
        assert {s.slot_id for s in starts} == {s.id for s in pool.slots}
        assert {s.config.model for s in starts} == {"fake-model"}
        assert {s.cwd for s in starts} == {pool_cwd}
        assert executor.requests == []
        executor.release_start()
        result = await pool.run("hello")
    assert result.success
    assert sorted(executor.started) == sorted(s.slot_id for s in starts)


async def test_no_more_slots_start_at_once_than_the_cap(tmp_path: Path) -> None:
    executor = FakeExecutor(hold_starts=True)
    async with make_pool(executor, 6, tmp_path, max_concurrent_spawns=2) as pool:
        for done in range(6):
            starting = await executor.wait_starting(min(2, 6 - done))
            assert len(starting) <= 2
            executor.release_start(starting[0].slot_id)
            await executor.wait_started(done + 1)
        assert len(executor.starts) == 6
        assert executor.most_starting == 2
        assert len(pool.slots) == 6


async def test_the_first_task_goes_to_the_first_slot_ready(tmp_path: Path) -> None:
    executor = FakeExecutor(hold_starts=True)
    async with make_pool(executor, 3, tmp_path, max_concurrent_spawns=3) as pool:
        first, second, third = await executor.wait_starting(3)
        task_id = await pool.submit("hello")
        executor.release_start(third.slot_id)
        record = await pool.wait(task_id, timeout=5)
        # It did not wait for the slots still starting.
        assert set(executor.starting) == {first.slot_id, second.slot_id}
        executor.release_start()
    assert record.state is TaskState.COMPLETED
    assert record.slot_id == third.slot_id


async def test_the_first_tasks_share_out_over_the_slots_as_they_get_ready(
    tmp_path: Path,
) -> None:
    executor = FakeExecutor(hold_starts=True, hold=True)
    async with make_pool(executor, 3, tmp_path, max_concurrent_spawns=1) as pool:
        start = (await executor.wait_starting(1))[0]
        tasks = [await pool.submit(f"job {n}") for n in range(2)]
        executor.release_start(start.slot_id)
        [running] = await executor.wait_running(1)
        assert running.slot_id == start.slot_id
        executor.release_start()
        await executor.wait_running(2)
        executor.release()
        records = [await pool.wait(t, timeout=5) for t in tasks]
    assert len({r.slot_id for r in records}) == 2


async def test_a_slot_added_by_scaling_up_is_started_ahead_too(tmp_path: Path) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, 1, tmp_path) as pool:
        await executor.wait_started(1)
        [added] = await pool.scale_up(1)
        assert (await executor.wait_started(2))[-1] == added.id


async def test_a_slot_still_starting_can_be_scaled_away(tmp_path: Path) -> None:
    executor = FakeExecutor(hold_starts=True)
    async with make_pool(executor, 3, tmp_path, max_concurrent_spawns=3) as pool:
        await executor.wait_starting(3)
        await pool.set_target_slots(1)
        assert len(pool.slots) == 1
        executor.release_start()
        assert (await pool.run("hello")).success


async def test_with_start_at_open_off_slots_start_with_their_first_task(tmp_path: Path) -> None:
    executor = FakeExecutor()
    async with make_pool(executor, 2, tmp_path, start_slots_at_open=False) as pool:
        assert (await pool.run("hello")).success
    assert executor.starts == []


async def test_a_pool_with_a_budget_starts_slots_with_their_first_task(tmp_path: Path) -> None:
    # Each task's process carries its own --max-budget-usd: one started ahead would not fit.
    executor = FakeExecutor()
    config = PoolConfig(model="fake-model", budget_microdollars=1_000_000)
    async with make_pool(executor, 2, tmp_path, config=config) as pool:
        assert (await pool.run("hello")).success
    assert executor.starts == []

"""Rate limits: while a task's CLI retries an API call (HTTP 429/529/5xx), dispatch waits;
the hold lasts exactly as long as some task is retrying, and other processes on the store
see it in their status. The real CLI's retries are covered in test_policies_e2e.py and
test_cli_commands.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from claude_pool import Pool, PoolConfig, TaskState, now_ms
from claude_pool.events import Event, RateLimitCleared, RateLimitHeld
from claude_pool.executor.base import EventKind
from claude_pool.membership import this_host
from claude_pool.store import MemoryStore, Store
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import RateLimitState

RETRY_429 = {"status": 429, "attempt": 1, "max_retries": 10}


def make_pool(executor: FakeExecutor, slots: int = 2, store: Store | None = None) -> Pool:
    return Pool(PoolConfig(), slots=slots, store=store or MemoryStore(), executor=executor)


async def test_dispatch_waits_while_a_task_retries_even_past_the_announced_time() -> None:
    """Regression: the hold ended at the announced retry time while the task was still on
    its retry, and a new task started into the same 429s."""
    executor = FakeExecutor(hold=True)
    async with make_pool(executor) as pool:
        first = await pool.submit("first")
        await executor.wait_running(1)
        executor.emit(first, EventKind.API_RETRY, {**RETRY_429, "delay_ms": 50})
        held = (await pool.status()).rate_limit
        assert held is not None
        assert held.status == 429
        assert held.tasks == [first]
        assert held.workers == [pool.worker_id]
        second = await pool.submit("second")
        while now_ms() <= held.until_ms + 200:  # noqa: ASYNC110 - time has to pass
            await asyncio.sleep(0.05)
        still = (await pool.status()).rate_limit
        assert still is not None, "the announced time passed but the retry is under way"
        assert "retry under way" in still.message
        assert (await pool.get_task(second)).state is TaskState.PENDING
        assert list(executor.running) == [first]
        # The retried call got through: the task shows progress, dispatch resumes.
        executor.emit(first, EventKind.TURN, {"turn": 1})
        await executor.wait_running(2)
        assert (await pool.status()).rate_limit is None
        executor.release()
        for task_id in (first, second):
            assert (await pool.wait(task_id, timeout=5)).state is TaskState.COMPLETED


async def test_a_hold_ends_with_the_task_that_caused_it() -> None:
    """Regression: a new task waited out the announced backoff after the only retrying task
    had been killed (with the CLI's later backoffs of 37 s, dispatch stalled for nothing)."""
    executor = FakeExecutor(hold=True)
    events: list[Event] = []
    async with make_pool(executor) as pool:
        pool.add_listener(events.append)
        doomed = await pool.submit("doomed")
        await executor.wait_running(1)
        executor.emit(doomed, EventKind.API_RETRY, {**RETRY_429, "delay_ms": 600_000})
        assert (await pool.status()).rate_limit is not None
        await pool.cancel(doomed)
        assert (await pool.status()).rate_limit is None
        executor.hold = False
        # Ten minutes were announced; the next task runs at once.
        result = await pool.run("next", timeout=5)
        assert result.success
        kinds = [type(e) for e in events if isinstance(e, RateLimitHeld | RateLimitCleared)]
        assert kinds == [RateLimitHeld, RateLimitCleared]


async def test_the_hold_lasts_until_every_retrying_task_got_through() -> None:
    executor = FakeExecutor(hold=True)
    async with make_pool(executor, slots=3) as pool:
        a, b = await pool.submit("a"), await pool.submit("b")
        await executor.wait_running(2)
        executor.emit(a, EventKind.API_RETRY, {**RETRY_429, "delay_ms": 10})
        executor.emit(b, EventKind.API_RETRY, {"status": 529, "delay_ms": 20})
        held = (await pool.status()).rate_limit
        assert held is not None
        assert held.tasks == sorted([a, b])
        assert held.status == 529, "the latest announced retry gives the status"
        assert "2 tasks retrying" in held.message
        third = await pool.submit("c")
        executor.emit(a, EventKind.ASSISTANT_TEXT, {"text": "got through"})
        remaining = (await pool.status()).rate_limit
        assert remaining is not None
        assert remaining.tasks == [b]
        assert (await pool.get_task(third)).state is TaskState.PENDING
        executor.release(b)  # b ends: nothing retries any more
        await pool.wait(b, timeout=5)
        await executor.wait_running(2)
        assert third in executor.running
        executor.release()
        await pool.wait(third, timeout=5)


async def test_another_pool_process_on_the_store_sees_the_hold(
    shared_store: Callable[[], Store],
) -> None:
    """Regression: ``claude-pool status`` in another process showed ``rate_limit: null``
    during a 429 storm. The hold is kept in the store; a process that is gone no longer
    shows one."""
    executor = FakeExecutor(hold=True)
    async with (
        make_pool(executor, slots=1, store=shared_store()) as worker,
        Pool(PoolConfig(), slots=0, store=shared_store()) as client,
    ):
        task_id = await worker.submit("storm")
        await executor.wait_running(1)
        assert (await client.status()).rate_limit is None
        executor.emit(task_id, EventKind.API_RETRY, {**RETRY_429, "delay_ms": 5_000})
        async with asyncio.timeout(5):
            while (seen := (await client.status()).rate_limit) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # another process's write: nothing to await
        assert seen.status == 429
        assert seen.tasks == [task_id]
        assert seen.workers == [worker.worker_id]
        assert "rate limited (HTTP 429)" in seen.message
        executor.emit(task_id, EventKind.TURN, {"turn": 1})
        async with asyncio.timeout(5):
            while (await client.status()).rate_limit is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        executor.release()
        await worker.wait(task_id, timeout=5)


async def test_a_dead_process_leaves_no_hold_behind() -> None:
    store = MemoryStore()
    async with Pool(PoolConfig(), slots=0, store=store) as client:
        gone = f"{this_host()}:999999999:1.dead00"  # no such process here
        await store.heartbeat_worker(gone, now_ms())
        await store.set_rate_limit(gone, RateLimitState(until_ms=now_ms() + 60_000, tasks=["t"]))
        assert await store.rate_limits() != {}
        assert (await client.status()).rate_limit is None

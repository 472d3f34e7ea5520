"""Pool processes on several machines sharing one store (SQLite and PostgreSQL): another
machine is told apart by its worker id and by the host its slots' sessions were recorded on;
it is dead only when its heartbeat has expired."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool import Pool, PoolConfig, Settings, TaskState
from claude_pool.chain import ChainResult, ChainSpec, ChainState, StepResult, new_chain_id
from claude_pool.events import TaskRequeued
from claude_pool.executor.base import ExecutionRequest
from claude_pool.membership import this_host
from claude_pool.store import Store, StoredTask
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import SlotId, TaskId, TaskRecord, TaskResult, new_task_id, now_ms

FAR_AWAY = "far-away-host"
"""A machine that is not this one."""


def _with_session(request: ExecutionRequest) -> TaskResult:
    return TaskResult.success_result("ok", 1, 1).with_session_id("s-recorded")


async def test_a_session_recorded_on_another_machine_is_never_resumed_here(
    shared_store: Callable[[], Store], tmp_path: Path
) -> None:
    first = FakeExecutor(handler=_with_session)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=first,
                    cwd=tmp_path) as pool:  # fmt: skip
        await pool.run("one")
        (slot,) = pool.slots
        stored = await pool.store.get_slot(slot.id)
    assert stored is not None
    assert stored.session_host is not None, "the session is recorded with its host"
    same_host = FakeExecutor(handler=_with_session)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=same_host,
                    cwd=tmp_path) as pool:  # fmt: skip
        await pool.run("two")
        # As if the slot had last run on another machine (same directory path there).
        await pool.store.update_slot(SlotId(slot.id), session_host=FAR_AWAY)
    elsewhere = FakeExecutor(handler=_with_session)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=elsewhere,
                    cwd=tmp_path) as pool:  # fmt: skip
        assert [s.id for s in pool.slots] == [slot.id], "the slot was adopted"
        await pool.run("three")
    assert same_host.requests[0].session_id == "s-recorded"
    assert elsewhere.requests[0].session_id is None


async def test_a_dead_worker_on_another_machine_has_its_task_rerun_once_by_one_survivor(
    shared_store: Callable[[], Store],
) -> None:
    store = shared_store()
    await store.open()
    dead = f"{FAR_AWAY}:4242:0.dead00"
    task = StoredTask(
        record=TaskRecord(id=TaskId(new_task_id()), prompt="interrupted", created_at_ms=now_ms())
    )
    await store.insert_task(task)
    await store.heartbeat_worker(dead, now_ms() - 60_000)  # expired long ago
    claimed = await store.claim_task(SlotId("slot-far"), None, None, dead, now_ms())
    assert claimed is not None
    await store.close()

    executors = [FakeExecutor() for _ in range(3)]
    pools = [
        Pool(PoolConfig(), slots=1, store=shared_store(), executor=e,
             settings=Settings(heartbeat_secs=0.2))
        for e in executors
    ]  # fmt: skip
    await asyncio.gather(*(p.open() for p in pools))
    try:
        record = await pools[0].wait(task.record.id, timeout=20)
        events = await pools[0].store.read_events(task_id=task.record.id)
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert record.state is TaskState.COMPLETED
    assert sum(len(e.requests) for e in executors) == 1, "re-run exactly once"
    assert [e.type for e in events if isinstance(e, TaskRequeued)] == ["task_requeued"]
    assert [a.reason for a in record.attempts] == [f"its pool process {dead} died while it ran"]


def _worker_id_in_another_process_space() -> str:
    """The worker id a pool process gets on a machine with this one's host name: one in a
    process-id namespace of its own (the test is skipped where one cannot be made)."""
    if shutil.which("unshare") is None:
        pytest.skip("`unshare` (util-linux) is not installed")
    code = "from claude_pool.membership import new_worker_id; print(new_worker_id())"
    made = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot make a process-id namespace here: {made.stderr.strip()}")
    return made.stdout.strip()


async def test_a_live_worker_on_another_machine_with_the_same_host_name_keeps_its_task(
    shared_store: Callable[[], Store],
) -> None:
    """Regression: machines were told apart by host name alone, so a worker on another
    machine called like this one was judged by a process id here (no such process: dead), and
    its running task was re-queued while it ran."""
    namesake = _worker_id_in_another_process_space()
    assert namesake.partition(":")[0] != this_host(), "another machine, the same host name"
    assert namesake.startswith(socket.gethostname())
    store = shared_store()
    await store.open()
    task = StoredTask(
        record=TaskRecord(id=TaskId(new_task_id()), prompt="running", created_at_ms=now_ms())
    )
    await store.insert_task(task)
    await store.heartbeat_worker(namesake, now_ms())
    assert await store.claim_task(SlotId("slot-far"), None, None, namesake, now_ms())
    try:
        async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=FakeExecutor(),
                        settings=Settings(heartbeat_secs=5)) as pool:  # fmt: skip
            assert await pool.membership.recover() == []
            assert (await pool.get_task(task.record.id)).state is TaskState.RUNNING
            assert namesake in await pool.membership.live_workers()
    finally:
        await store.close()


async def test_a_worker_whose_own_heartbeat_was_late_takes_nothing_over_until_its_next(
    shared_store: Callable[[], Store],
) -> None:
    """Regression: after a stall that held every worker's heartbeat back (a busy machine, a
    slow path to the database), the first worker whose beat got through took the others for
    dead and re-ran their running tasks while they still ran them."""
    elsewhere = f"{FAR_AWAY}:4242:0.slow00"
    store = shared_store()
    await store.open()
    task = StoredTask(
        record=TaskRecord(id=TaskId(new_task_id()), prompt="running", created_at_ms=now_ms())
    )
    await store.insert_task(task)
    await store.heartbeat_worker(elsewhere, now_ms())
    assert await store.claim_task(SlotId("slot-far"), None, None, elsewhere, now_ms())
    clock = [1000.0]
    try:
        async with Pool(PoolConfig(), slots=0, store=shared_store(),
                        settings=Settings(heartbeat_secs=60)) as pool:  # fmt: skip
            membership = pool.membership  # its own beats are a minute apart: none comes here
            membership.monotonic = lambda: clock[0]
            await membership.beat()
            # Both were held back; the other's heartbeat looks expired from here.
            await store.heartbeat_worker(elsewhere, now_ms() - 600_000)
            clock[0] += 300
            assert await membership.beat() == [], "late itself: it takes nothing over"
            assert (await pool.get_task(task.record.id)).state is TaskState.RUNNING
            clock[0] += 1
            assert await membership.beat() == [task.record.id], "on time: it does"
    finally:
        await store.close()


async def test_a_cancel_on_one_machine_stops_the_run_on_another_within_two_seconds(
    shared_store: Callable[[], Store],
) -> None:
    executor = FakeExecutor(hold=True)
    async with Pool(PoolConfig(), slots=1, store=shared_store(), executor=executor) as worker:
        task_id = await worker.submit("long")
        await executor.wait_running(1)
        async with Pool(PoolConfig(), slots=0, store=shared_store(),
                        executor=FakeExecutor()) as other:  # fmt: skip
            await other.cancel(task_id)
            async with asyncio.timeout(2):
                while executor.running:
                    executor._changed.clear()
                    await executor._changed.wait()
        assert (await worker.wait(task_id, timeout=5)).state is TaskState.CANCELLED


async def test_a_chain_of_a_dead_worker_on_another_machine_is_taken_over_by_one_survivor(
    shared_store: Callable[[], Store], tmp_path: Path
) -> None:
    dead = f"{FAR_AWAY}:4343:0.dead01"
    chain_spec = ChainSpec.model_validate(
        {"isolation": "none", "steps": [{"prompt": "one"}, {"prompt": "two"}]}
    )
    result = ChainResult(
        id=new_chain_id(),
        isolation=chain_spec.isolation,
        steps=[StepResult(name=n, index=i) for i, n in enumerate(chain_spec.step_names())],
    )
    document = {
        "result": result.model_dump(mode="json"),
        "spec": chain_spec.model_dump(mode="json"),
        "owner": dead,
    }
    store = shared_store()
    await store.open()
    await store.heartbeat_worker(dead, now_ms() - 60_000)
    await store.upsert_chain(result.id, document, result.state.value, result.created_at_ms)
    await store.close()

    executors = [FakeExecutor() for _ in range(3)]
    pools = [
        Pool(PoolConfig(), slots=1, store=shared_store(), executor=e, cwd=tmp_path,
             settings=Settings(heartbeat_secs=0.2))
        for e in executors
    ]  # fmt: skip
    await asyncio.gather(*(p.open() for p in pools))
    try:
        finished = await pools[0].wait_chain(result.id, timeout=20)
        stored = await pools[0].store.get_chain(result.id)
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    assert finished.state is ChainState.COMPLETED, finished.error
    # One survivor drives it; its steps are tasks that any worker's slot may run, once each.
    assert sorted(r.prompt for e in executors for r in e.requests) == ["one", "two"]
    assert stored is not None
    assert stored["owner"] in {p.worker_id for p in pools}


async def test_an_idle_worker_on_postgres_reads_nothing_until_a_submit_wakes_it(
    postgres_url: str,
) -> None:
    from claude_pool.store.postgres import PostgresStore
    from claude_pool.testing.counting_store import CountingStore

    inner = PostgresStore(postgres_url)
    store = CountingStore(inner)
    executor = FakeExecutor()
    async with Pool(PoolConfig(), slots=2, store=store.as_store(), executor=executor) as worker:
        async with Pool(PoolConfig(), slots=0, store=PostgresStore(postgres_url),
                        executor=FakeExecutor()) as client:  # fmt: skip
            assert (await client.run("warm up")).success
            # What the worker still does after that task (its slot asks for more work, the
            # task's dependents are looked up) lands before the watch begins.
            await store.quiet()
            store.reset()
            reads_before = inner.wakeups().fallback_reads
            # Idle, well within every fallback period: no query at all.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.Event().wait(), timeout=1.0)
            assert store.calls == Counter(), "an idle worker polls nothing"
            assert inner.wakeups().fallback_reads == reads_before
            loop = asyncio.get_running_loop()
            sent = loop.time()
            task_id = await client.submit("wake up")
            record = await client.wait(task_id, timeout=10)
            assert record.state is TaskState.COMPLETED
            assert loop.time() - sent < inner.wakeups().fallback_secs, "NOTIFY woke it"
        assert worker.slots

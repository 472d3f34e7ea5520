"""Several workers on one store: PostgreSQL beside SQLite, with the fake executor.

Prints, for each store, the throughput of 1 and of 4 workers (pool objects, each with its own
store object and 4 slots, sharing one store, run in this process), and of 4 worker processes
(closer to several machines; timed from the first start to the last end the store recorded),
on a batch of tasks queued up front; and the submit-to-start latency (p50/p99)
of a task submitted by a client pool to an idle worker: through ``LISTEN/NOTIFY`` on
PostgreSQL, through the store's polling (every 0.1 s while anyone waits) on SQLite.

The PostgreSQL server is ``CLAUDE_POOL_TEST_POSTGRES`` (default
``postgresql://127.0.0.1:5432/test``); the bench works in a schema of its own and drops it.
Without a server it says so and prints the SQLite figures only.

    .venv/bin/python bench/postgres_bench.py [--tasks 2000] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from claude_pool import Pool, PoolConfig, TaskResult, TaskState
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import Store
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.postgres import server_url, unreachable_reason

StoreFactory = Callable[[], Store]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def throughput(make_store: StoreFactory, workers: int, tasks: int) -> float:
    """Tasks per second, from the first claim to the last completion, of ``workers`` pools
    draining ``tasks`` queued tasks."""
    client = Pool(PoolConfig(), slots=0, store=make_store(), executor=FakeExecutor())
    await client.open()
    try:
        ids = [await client.submit(f"job {i}") for i in range(tasks)]
        pools = [
            Pool(PoolConfig(), slots=4, store=make_store(), executor=FakeExecutor())
            for _ in range(workers)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(p.open() for p in pools))
        try:
            for task_id in ids:
                record = await client.wait(task_id, timeout=600)
                assert record.state is TaskState.COMPLETED, record
            elapsed = time.perf_counter() - started
        finally:
            await asyncio.gather(*(p.close() for p in pools))
    finally:
        await client.close()
    return tasks / elapsed


_WORKER = """
import asyncio, sys
from claude_pool import Pool, PoolConfig
from claude_pool.store import open_store
from claude_pool.testing.fake_executor import FakeExecutor

async def main():
    async with Pool(PoolConfig(), slots=4, store=open_store(sys.argv[1]),
                    executor=FakeExecutor()):
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def throughput_in_processes(url: str, make_store: StoreFactory, workers: int,
                                  tasks: int) -> float:  # fmt: skip
    """Tasks per second of ``workers`` worker processes (each a pool with 4 slots, as on
    machines of their own), from the first task's start to the last one's end as the store
    recorded them (so process start-up is not counted)."""
    client = Pool(PoolConfig(), slots=0, store=make_store(), executor=FakeExecutor())
    await client.open()
    procs: list[asyncio.subprocess.Process] = []
    try:
        ids = [await client.submit(f"job {i}") for i in range(tasks)]
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKER, url)
            for _ in range(workers)
        ]
        records = [await client.wait(task_id, timeout=600) for task_id in ids]
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
        await client.close()
    assert all(r.state is TaskState.COMPLETED for r in records)
    first = min(r.started_at_ms or 0 for r in records)
    last = max(r.completed_at_ms or 0 for r in records)
    return tasks / max(0.001, (last - first) / 1000)


async def submit_to_start(make_store: StoreFactory, samples: int) -> tuple[float, float]:
    """(p50, p99) milliseconds from a client's submit to the idle worker's executor start."""
    started: dict[str, float] = {}

    def handler(request: ExecutionRequest) -> TaskResult:
        started[request.prompt] = time.perf_counter()
        return TaskResult.success_result("ok", 0, 1)

    worker = Pool(PoolConfig(), slots=1, store=make_store(), executor=FakeExecutor(handler=handler))
    client = Pool(PoolConfig(), slots=0, store=make_store(), executor=FakeExecutor())
    await worker.open()
    await client.open()
    latencies: list[float] = []
    try:
        for i in range(samples + 5):
            await asyncio.sleep(0.02)  # the worker is idle, waiting, when the task comes
            prompt = f"sample {i}"
            sent = time.perf_counter()
            task_id = await client.submit(prompt)
            await client.wait(task_id, timeout=30)
            if i >= 5:  # the first few warm up connections
                latencies.append((started[prompt] - sent) * 1000)
    finally:
        await client.close()
        await worker.close()
    return statistics.median(latencies), percentile(latencies, 99)


@contextmanager
def sqlite_store() -> Iterator[tuple[str, StoreFactory]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pool.db"
        yield str(path), lambda: SqliteStore(path)


@contextmanager
def postgres_store() -> Iterator[tuple[str, StoreFactory]]:
    from claude_pool.store.postgres import PostgresStore
    from claude_pool.testing.postgres import fresh_schema

    with fresh_schema(server_url()) as url:
        yield url, lambda: PostgresStore(url)


async def measure(name: str, tasks: int, samples: int) -> list[float]:
    fresh = sqlite_store if name == "SQLite" else postgres_store
    row = []
    for workers in (1, 4):
        with fresh() as (_, make_store):
            row.append(await throughput(make_store, workers, tasks))
    with fresh() as (url, make_store):
        row.append(await throughput_in_processes(url, make_store, 4, tasks))
    with fresh() as (_, make_store):
        row.extend(await submit_to_start(make_store, samples))
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    stores = ["SQLite"]
    reason = unreachable_reason()
    if reason is None:
        stores.append("PostgreSQL")
    else:
        print(f"PostgreSQL: skipped, {reason}")
    rows = {name: await measure(name, args.tasks, args.samples) for name in stores}
    print(f"{args.tasks} tasks queued up front, fake executor, 4 slots per worker; "
          f"submit-to-start over {args.samples} tasks to an idle worker")  # fmt: skip
    header = ("store", "1 worker/s", "4 workers/s", "4 processes/s", "start p50 ms",
              "start p99 ms")  # fmt: skip
    print("  ".join(f"{h:>14}" for h in header))
    for name, row in rows.items():
        print(f"{name:>14}  " + "  ".join(f"{v:>14.1f}" for v in row))
    if len(rows) == 2:
        sqlite, postgres = rows["SQLite"], rows["PostgreSQL"]
        ratios = ", ".join(
            f"{label} x{p / q:.2f}"
            for label, p, q in zip(header[1:], postgres, sqlite, strict=True)
        )
        print(f"PostgreSQL / SQLite: {ratios}")


if __name__ == "__main__":
    asyncio.run(main())

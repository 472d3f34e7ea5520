"""Scheduler throughput and dispatch latency with the fake executor, on the memory and SQLite
stores; then status/list latency on a store holding 100,000 tasks.

Prints figures only. Goals: >= 2,000 tasks/s on SQLite with 4 and with 16 slots, 16 slots no
slower than 4 (a submit wakes one idle slot, not all of them), p99 dispatch latency < 10 ms,
status < 50 ms on 100,000 tasks. Also: tasks submitted side by side in bursts of 100 (a
fan-out), whose writes the SQLite store commits together. Throughput is the median of three
runs of 10,000 tasks submitted at once; dispatch latency is measured one task at a time, so
that it is not queueing time.

    .venv/bin/python bench/scheduler_bench.py [--tasks 10000] [--slots 4 16]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from claude_pool import Pool, PoolConfig, TaskResult
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store import MemoryStore, Store
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor

sys.path.insert(0, str(Path(__file__).parent))
from store_bench import completed_task


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def throughput(store: Store, tasks: int, slots: int) -> dict[str, float]:
    submitted: dict[str, float] = {}
    started: dict[str, float] = {}

    def handler(request: ExecutionRequest) -> TaskResult:
        # A slot may start a task before submit() has returned its id to the loop below.
        started[request.task_id] = time.perf_counter()
        return TaskResult.success_result("ok", 10, 1)

    executor = FakeExecutor(handler=handler)
    async with Pool(PoolConfig(), slots=slots, store=store, executor=executor) as pool:
        start = time.perf_counter()
        ids = []
        for i in range(tasks):
            submitted_at = time.perf_counter()
            task_id = await pool.submit(f"task {i}")
            submitted[task_id] = submitted_at
            ids.append(task_id)
        for task_id in ids:
            await pool.wait(task_id)
        elapsed = time.perf_counter() - start
    latencies = [started[t] - submitted[t] for t in ids]
    # With every task submitted at once, submit-to-start time is mostly queueing.
    return {
        "tasks_per_sec": tasks / elapsed,
        "queue_wait_p50_ms": percentile(latencies, 50) * 1000,
        "queue_wait_p99_ms": percentile(latencies, 99) * 1000,
        "elapsed_s": elapsed,
    }


async def throughput_runs(make_store: Callable[[int], Store], tasks: int, slots: int,
                          runs: int = 3) -> dict[str, float]:  # fmt: skip
    """Median of several runs (this 2-core machine is shared; single runs vary)."""
    results = [await throughput(make_store(i), tasks, slots) for i in range(runs)]
    rates = sorted(r["tasks_per_sec"] for r in results)
    median = next(r for r in results if r["tasks_per_sec"] == rates[len(rates) // 2])
    return {**median, "min_tasks_per_sec": rates[0], "max_tasks_per_sec": rates[-1]}


async def burst_throughput(
    store: Store, tasks: int, slots: int, burst: int = 100
) -> dict[str, float]:
    """Tasks submitted side by side, ``burst`` at a time (as a fan-out does): how fast they
    are taken (the store commits the writes of one turn together) and done."""
    executor = FakeExecutor(handler=lambda _: TaskResult.success_result("ok", 10, 1))
    async with Pool(PoolConfig(), slots=slots, store=store, executor=executor) as pool:
        start = time.perf_counter()
        ids: list[str] = []
        for first in range(0, tasks, burst):
            count = min(burst, tasks - first)
            ids += await asyncio.gather(*(pool.submit(f"task {first + i}") for i in range(count)))
        submitted = time.perf_counter() - start
        await asyncio.gather(*(pool.wait(task_id) for task_id in ids))
        elapsed = time.perf_counter() - start
    return {"submits_per_sec": tasks / submitted, "tasks_per_sec": tasks / elapsed}


async def paced_latency(store: Store, tasks: int, slots: int) -> dict[str, float]:
    """Dispatch latency: submit → executor start while a slot is free, one task at a time."""
    marks: dict[str, float] = {}
    started: dict[str, float] = {}

    def handler(request: ExecutionRequest) -> TaskResult:
        started[request.task_id] = time.perf_counter()
        return TaskResult.success_result("ok", 10, 1)

    async with Pool(
        PoolConfig(), slots=slots, store=store, executor=FakeExecutor(handler=handler)
    ) as pool:
        for i in range(tasks):
            mark = time.perf_counter()
            task_id = await pool.submit(f"paced {i}")
            marks[task_id] = mark
            await pool.wait(task_id)
    latencies = [started[t] - marks[t] for t in marks]
    return {
        "dispatch_p50_ms": percentile(latencies, 50) * 1000,
        "dispatch_p99_ms": percentile(latencies, 99) * 1000,
    }


async def big_store_queries(path: Path, rows: int) -> dict[str, float]:
    rng = random.Random(7)
    store = SqliteStore(path)
    await store.open()
    await store.insert_tasks(completed_task(i, rng) for i in range(rows))
    await store.close()
    async with Pool(
        PoolConfig(), slots=4, store=SqliteStore(path), executor=FakeExecutor()
    ) as pool:
        timings: dict[str, list[float]] = {"status_ms": [], "list_50_ms": []}
        for _ in range(20):
            t0 = time.perf_counter()
            await pool.status()
            timings["status_ms"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await pool.list_tasks(limit=50, offset=rows // 2)
            timings["list_50_ms"].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in timings.items()}


def machine_speed() -> dict[str, float]:
    """A fixed pure-Python loop, best of five: this shared 2-core machine's speed varies from
    day to day by up to 2.5x, and every figure here moves with it. Compare runs by it."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return {"python_loop_mops": 2.0 / best}


def show(title: str, figures: dict[str, float]) -> None:
    body = "  ".join(f"{k}={v:,.2f}" for k, v in figures.items())
    print(f"{title:<34} {body}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--slots", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    show("machine", machine_speed())
    with tempfile.TemporaryDirectory() as tmp:
        show(
            f"memory: {args.tasks} tasks, {args.slots[0]} slots",
            await throughput_runs(lambda _: MemoryStore(), args.tasks, args.slots[0]),
        )
        rates: dict[int, float] = {}
        for slots in args.slots:
            figures = await throughput_runs(
                lambda i, n=slots: SqliteStore(Path(tmp) / f"tp{n}-{i}.db"), args.tasks, slots
            )
            rates[slots] = figures["tasks_per_sec"]
            show(f"sqlite: {args.tasks} tasks, {slots} slots", figures)
        if len(rates) > 1:
            fewest, most = min(rates), max(rates)
            print(
                f"sqlite {most} vs {fewest} slots: {rates[most] / rates[fewest]:.2f}x "
                f"(goal: >= 1.0, both >= 2,000 tasks/s)"
            )
        show(
            f"sqlite: {args.tasks} tasks, bursts of 100",
            await burst_throughput(SqliteStore(Path(tmp) / "burst.db"), args.tasks, args.slots[0]),
        )
        show("memory: paced dispatch", await paced_latency(MemoryStore(), 500, args.slots[0]))
        show(
            "sqlite: paced dispatch",
            await paced_latency(SqliteStore(Path(tmp) / "paced.db"), 500, args.slots[0]),
        )
        show(
            f"sqlite: {args.rows:,} tasks stored",
            await big_store_queries(Path(tmp) / "big.db", args.rows),
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Store benchmark: query times over a large SQLite store, and the per-task write path.

Fills a temporary SQLite store with 100,000 completed tasks (bulk insert), then prints the
median and worst of several runs of the queries the pool and its faces use most. Then runs
the store's share of dispatching tasks (insert, claim, complete, spend, slot cost, event) one
task at a time and prints tasks/s. Figures only; goals: count/list < 50 ms and
session_metrics < 100 ms at 100,000 tasks; the full dispatch path >= 2,000 tasks/s.

    .venv/bin/python bench/store_bench.py [--tasks 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_pool.events import TaskFinished
from claude_pool.store import SqliteStore, StoredTask
from claude_pool.types import (
    MetricsFilter,
    SlotId,
    SlotRecord,
    TaskFilter,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskState,
    new_task_id,
)

T0 = 1_700_000_000_000
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
TAGS = ["review", "migrate", "triage", "docs", "tests"]


def completed_task(i: int, rng: random.Random) -> StoredTask:
    created = T0 + i * 10
    elapsed = rng.randint(500, 120_000)
    result = TaskResult(
        output="done: " + "x" * rng.randint(50, 400),
        success=True,
        cost_microdollars=rng.randint(100, 200_000),
        turns_used=rng.randint(1, 30),
        elapsed_ms=elapsed,
        model=rng.choice(MODELS),
        session_id=f"session-{i}",
    )
    record = TaskRecord(
        id=new_task_id(),
        prompt=f"task {i}: " + "please do the thing " * rng.randint(1, 10),
        state=TaskState.COMPLETED,
        slot_id=SlotId(f"slot-{i % 16}"),
        result=result,
        tags=rng.sample(TAGS, rng.randint(0, 2)),
        created_at_ms=created,
        started_at_ms=created + 5,
        completed_at_ms=created + 5 + elapsed,
    )
    return StoredTask(record=record, priority=rng.randint(0, 3))


def file_mb(path: Path) -> float:
    return os.path.getsize(path) / 1e6


async def timed(label: str, fn: Callable[[], Awaitable[Any]], runs: int = 9) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    print(f"  {label:<48} median {statistics.median(times):7.2f} ms   max {max(times):7.2f} ms")


async def query_bench(path: Path, count: int) -> None:
    store = SqliteStore(path)
    await store.open()
    rng = random.Random(42)
    start = time.perf_counter()
    batch = 10_000
    for first in range(0, count, batch):
        await store.insert_tasks(
            completed_task(i, rng) for i in range(first, min(count, first + batch))
        )
    fill = time.perf_counter() - start
    print(f"filled {count:,} completed tasks in {fill:.2f} s ({count / fill:,.0f} tasks/s bulk)")
    size = file_mb(path)
    print(f"database file: {size:.1f} MB")

    await timed("count_tasks", store.count_tasks)
    await timed("list_tasks(limit=50)", lambda: store.list_tasks(limit=50))
    await timed(
        "list_tasks(limit=50, offset=50_000)", lambda: store.list_tasks(limit=50, offset=50_000)
    )
    await timed(
        "list_tasks(state=completed, limit=50)",
        lambda: store.list_tasks(TaskFilter(state=TaskState.COMPLETED), limit=50),
    )
    await timed(
        "list_tasks(tags=[docs], limit=50)",
        lambda: store.list_tasks(TaskFilter(tags=["docs"]), limit=50),
    )
    await timed("session_metrics()", lambda: store.session_metrics(None, T0, T0 + 1))
    await timed(
        "session_metrics(since/until: middle half)",
        lambda: store.session_metrics(
            MetricsFilter(since_ms=T0 + count * 10 // 4, until_ms=T0 + count * 10 * 3 // 4),
            T0,
            T0 + 1,
        ),
    )
    await timed(
        "session_metrics(model=...)",
        lambda: store.session_metrics(MetricsFilter(model=MODELS[0]), T0, T0 + 1),
    )
    await timed(
        "session_metrics(tags=[docs])",
        lambda: store.session_metrics(MetricsFilter(tags=["docs"]), T0, T0 + 1),
    )
    await store.close()


async def dispatch_bench(path: Path, count: int, backlog: int) -> None:
    """The store calls one dispatched task costs, sequentially (the worst case for latency)."""
    store = SqliteStore(path)
    await store.open()
    slot = SlotId("slot-bench")
    await store.upsert_slot(SlotRecord(id=slot), "bench")
    # A deep queue behind the measured tasks: a claim must not cost more as the queue grows.
    await store.insert_tasks(
        StoredTask(
            record=TaskRecord(id=new_task_id(), prompt="backlog", created_at_ms=T0), priority=-1
        )
        for _ in range(backlog)
    )
    latencies = []
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        task = StoredTask(record=TaskRecord(id=new_task_id(), prompt=f"p{i}", created_at_ms=T0))
        await store.insert_task(task)
        claimed = await store.claim_task(slot, None, None, "bench", T0 + 1)
        latencies.append((time.perf_counter() - t0) * 1000)
        assert claimed is not None
        result = TaskResult(output="ok", success=True, cost_microdollars=10, elapsed_ms=5)
        await store.transition_task(
            TaskId(claimed.record.id),
            [TaskState.RUNNING],
            TaskState.COMPLETED,
            now_ms=T0 + 2,
            result=result,
        )
        await store.add_spend(10)
        await store.add_slot_cost(slot, 10, 1)
        await store.append_events(
            [TaskFinished(task_id=claimed.record.id, slot_id=slot, state=TaskState.COMPLETED,
                          success=True, cost_microdollars=10, at_ms=T0 + 2)]
        )  # fmt: skip
    elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"dispatch path (insert, claim, complete, spend, slot cost, event) x {count:,}, "
        f"{backlog:,} tasks queued behind: "
        f"{count / elapsed:,.0f} tasks/s; insert+claim p50 "
        f"{statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms"
    )
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--dispatch", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await query_bench(Path(tmp) / "query.db", args.tasks)
        await dispatch_bench(Path(tmp) / "dispatch.db", args.dispatch, backlog=0)
        await dispatch_bench(Path(tmp) / "backlog.db", args.dispatch, backlog=args.tasks)


if __name__ == "__main__":
    asyncio.run(main())

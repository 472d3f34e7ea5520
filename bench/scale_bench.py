"""Costs that must not grow with history: `status`, this session's `session_metrics`, the newest
50 tasks and dispatch throughput, on SQLite stores already holding 10k, 100k and 1M tasks.

Goals (issue 16, with 1,000,000 stored tasks): status < 20 ms, session metrics < 100 ms, newest
50 < 10 ms, dispatch throughput within 20% of an empty store's.

The history is built fast: 10,000 completed tasks through the store's bulk insert (varied
models, costs, durations, tags), then copied in SQL with new ids and earlier creation times
until the store holds the wanted number (copies carry no tags and no events). A pool then opens
on the store and runs this session's work through the fake executor: the figures are medians.

    .venv/bin/python bench/scale_bench.py [--rows 10000 100000 1000000] [--tasks 3000]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from claude_pool import Pool, PoolConfig
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor

sys.path.insert(0, str(Path(__file__).parent))
from store_bench import completed_task

SEED_ROWS = 10_000
HOUR_MS = 3_600_000


async def build_history(path: Path, rows: int) -> float:
    """A store holding ``rows`` completed tasks, all created before now; returns seconds taken."""
    start = time.perf_counter()
    rng = random.Random(11)
    store = SqliteStore(path)
    await store.open()
    await store.insert_tasks(completed_task(i, rng) for i in range(min(rows, SEED_ROWS)))
    await store.close()
    conn = sqlite3.connect(path)
    columns = [
        row[1] for row in conn.execute("PRAGMA table_info(tasks)") if row[1] not in ("seq", "id")
    ]
    picked = ", ".join(columns)
    copied = ", ".join(
        f"{c} - :shift" if c.endswith("_at_ms") else c for c in columns
    )  # fmt: skip
    copy = 0
    while (have := conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]) < rows:
        copy += 1
        with conn:
            conn.execute(
                f"INSERT INTO tasks (id, {picked}) "
                f"SELECT printf('task-c%03d%012x', :copy, seq), {copied} FROM tasks "
                f"WHERE seq <= :seed ORDER BY seq LIMIT :n",
                {"copy": copy, "shift": copy * HOUR_MS, "seed": SEED_ROWS, "n": rows - have},
            )
    conn.close()
    return time.perf_counter() - start


async def median_ms(fn: Callable[[], Awaitable[Any]], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def measure(path: Path, tasks: int) -> dict[str, float]:
    async with Pool(
        PoolConfig(), slots=4, store=SqliteStore(path), executor=FakeExecutor()
    ) as pool:
        # Dispatch throughput: this session's tasks, submitted at once.
        start = time.perf_counter()
        ids = [await pool.submit(f"now {i}") for i in range(tasks)]
        for task_id in ids:
            await pool.wait(task_id)
        rate = tasks / (time.perf_counter() - start)
        return {
            "tasks_per_sec": rate,
            "status_ms": await median_ms(pool.status, 21),
            "session_metrics_ms": await median_ms(pool.session_metrics, 11),
            "newest_50_ms": await median_ms(
                lambda: pool.list_tasks(limit=50, newest_first=True), 21
            ),
        }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--tasks", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'stored tasks':>12}  {'tasks/s':>8}  {'empty':>8}  {'ratio':>5}  {'status':>9}  "
          f"{'session metrics':>15}  {'newest 50':>9}  build")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path = Path(tmp) / f"history-{rows}.db"
            built = await build_history(path, rows)
            # Interleaved with runs on an empty store, so that a busy machine slows both alike.
            full: list[dict[str, float]] = []
            empty: list[dict[str, float]] = []
            for i in range(args.rounds):
                empty.append(await measure(Path(tmp) / f"empty-{rows}-{i}.db", args.tasks))
                full.append(await measure(path, args.tasks))
            f, e = median_of(full), median_of(empty)
            ratio = f["tasks_per_sec"] / e["tasks_per_sec"]
            print(f"{rows:>12,}  {f['tasks_per_sec']:>8,.0f}  {e['tasks_per_sec']:>8,.0f}  "
                  f"{ratio:>5.0%}  {f['status_ms']:>6.2f} ms  "
                  f"{f['session_metrics_ms']:>12.2f} ms  {f['newest_50_ms']:>6.2f} ms  "
                  f"{built:.0f} s")  # fmt: skip
            path.unlink()
    print("goals at 1,000,000: status < 20 ms, session metrics < 100 ms, newest 50 < 10 ms, "
          "throughput >= 80% of an empty store's (medians of interleaved rounds)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

"""Store reads per task: they must not grow with how long tasks take.

Two batches of the same size run on 4 slots of a SQLite-backed pool with the fake executor:
one whose tasks each take 0.1 s, one whose tasks each take 3 s. Every store call is counted
(``claude_pool.testing.counting_store``); reads per task must be equal within one read, since
nothing polls the store while tasks run or while callers wait. The wake-up channel's probes of
the latest event id are reported apart: they are one cheap read a few times a second for the
whole process, whatever the number of tasks or waiters.

    .venv/bin/python bench/store_reads_bench.py [--tasks 20] [--slots 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from claude_pool import Pool, PoolConfig, TaskResult
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.counting_store import WRITES, CountingStore
from claude_pool.testing.fake_executor import FakeExecutor


async def batch(path: Path, tasks: int, slots: int, task_secs: float) -> dict[str, float]:
    async def handler(request: ExecutionRequest) -> TaskResult:
        await asyncio.sleep(task_secs)
        return TaskResult.success_result("ok", 10, 1)

    inner = SqliteStore(path)
    store = CountingStore(inner)
    async with Pool(
        PoolConfig(), slots=slots, store=store.as_store(), executor=FakeExecutor(handler=handler)
    ) as pool:
        store.reset()
        probes_before = inner.wakeups().probes
        started = time.perf_counter()
        ids = [await pool.submit(f"task {i}") for i in range(tasks)]
        for task_id in ids:
            await pool.wait(task_id)
        elapsed = time.perf_counter() - started
        probes = inner.wakeups().probes - probes_before
        reads = dict(store.calls)
    read_calls = {k: v for k, v in reads.items() if k not in WRITES and "(" not in k}
    total_reads = sum(read_calls.values())
    print(f"  {task_secs:g}s tasks: {elapsed:.1f}s; reads by method: {read_calls or 'none'}")
    return {
        "reads_per_task": total_reads / tasks,
        "writes_per_task": (sum(reads.values()) - total_reads) / tasks,
        "wakeup_probes_per_sec": probes / elapsed,
        "elapsed_s": elapsed,
    }


def show(title: str, figures: dict[str, float]) -> None:
    body = "  ".join(f"{k}={v:,.2f}" for k, v in figures.items())
    print(f"{title:<22} {body}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        short = await batch(Path(tmp) / "short.db", args.tasks, args.slots, 0.1)
        long = await batch(Path(tmp) / "long.db", args.tasks, args.slots, 3.0)
    show("0.1 s tasks", short)
    show("3 s tasks", long)
    difference = long["reads_per_task"] - short["reads_per_task"]
    verdict = "ok" if abs(difference) <= 1 else "TOO MANY: reads grow with waiting time"
    print(f"reads per task, 3 s minus 0.1 s: {difference:+.2f} (goal: within 1) {verdict}")


if __name__ == "__main__":
    asyncio.run(main())

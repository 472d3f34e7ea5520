"""The budget under pressure: 20 one-call tasks under a budget that pays for 5 calls.

With 4 and with 16 slots, for one pool and for three workers on one SQLite store, prints the
spend against the budget, the tasks completed, those that failed on their cap (started, paid
for a call, then stopped by ``--max-budget-usd``: what must never happen), and those refused
(``BudgetExhausted``, never started). The executor is the fake one with the CLI's budget rule:
a call is made and paid for, and a cap below its cost ends the task on the cap.

    .venv/bin/python bench/budget_bench.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from claude_pool import Pool, PoolConfig, TaskRecord, TaskResult, TaskState
from claude_pool.executor.base import ExecutionRequest
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor

CALL = 6_000
TASKS = 20
BUDGET = 5 * CALL


def one_call(request: ExecutionRequest) -> TaskResult:
    cap = request.config.max_budget_usd
    if cap is not None and cap * 1_000_000 < CALL:
        return TaskResult.failure("stopped on its cap").model_copy(
            update={"cost_microdollars": CALL, "turns_used": 1, "budget_exceeded": True}
        )
    return TaskResult.success_result("done", CALL, 1)


async def batch(path: Path, workers: int, slots: int) -> dict[str, int]:
    # The executor's prior is a little low, as a first guess tends to be.
    pools = [
        Pool(
            PoolConfig(budget_microdollars=BUDGET),
            slots=slots,
            store=SqliteStore(path),
            executor=FakeExecutor(handler=one_call, call_cost_microdollars=CALL * 4 // 5),
        )
        for _ in range(workers)
    ]
    for pool in pools:
        await pool.open()
    try:
        ids = [await pools[i % workers].submit(f"job {i}") for i in range(TASKS)]
        records: list[TaskRecord] = [await pools[0].wait(t, timeout=60) for t in ids]
        spent = (await pools[0].status()).spend_microdollars
    finally:
        for pool in pools:
            await pool.close()
    on_cap = [r for r in records if r.result is not None and r.result.budget_exceeded]
    refused = [
        r
        for r in records
        if r.state is TaskState.FAILED and r.result and "budget exhausted" in r.result.output
    ]
    return {
        "spend": spent,
        "budget": BUDGET,
        "completed": sum(r.state is TaskState.COMPLETED for r in records),
        "failed_on_cap": len(on_cap),
        "refused": len(refused),
    }


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 3):
            for slots in (4, 16):
                figures = await batch(Path(tmp) / f"b{workers}-{slots}.db", workers, slots)
                who = "one pool" if workers == 1 else f"{workers} workers, one store"
                body = "  ".join(f"{k}={v:,}" for k, v in figures.items())
                print(f"{who:<22} {slots:>2} slots  {body}")


if __name__ == "__main__":
    asyncio.run(main())

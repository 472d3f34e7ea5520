"""Quickstart: a pool of two Claude Code slots runs one task, then says what it spent.

Run it with ANTHROPIC_API_KEY set (or a logged-in `claude`); it spends a few cents at most.
"""

import asyncio

from claude_pool import Pool, PoolConfig


async def main() -> None:
    config = PoolConfig(model="claude-haiku-4-5", budget_microdollars=500_000)  # a $0.50 cap
    async with Pool(config, slots=2, store=":memory:") as pool:
        result = await pool.run("In one sentence: what is a task queue for?")
        print(result.output)
        verdict = "succeeded" if result.success else "failed"
        print(
            f"{verdict}: ${result.cost_microdollars / 1e6:.4f}, "
            f"{result.turns_used} turn(s), {result.elapsed_ms / 1000:.1f} s"
        )
        status = await pool.status()
        print(f"the pool spent ${status.spend_microdollars / 1e6:.4f} of its $0.50")


asyncio.run(main())

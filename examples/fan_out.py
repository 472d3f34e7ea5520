"""Fan-out: several prompts side by side, each with its own outcome.

A prompt that fails (an API error, a budget refused) is reported in its own item and never
discards the others' results.
"""

import asyncio

from claude_pool import FanOutItem, Pool, PoolConfig, TaskOverrides

PROMPTS = [
    "Name a prime number between 10 and 20. Answer with the number only.",
    "Name a colour of the rainbow. Answer with one word.",
    "Name a planet of the solar system. Answer with one word.",
]


def report(item: FanOutItem) -> None:
    """Called as each item ends, in whatever order they finish."""
    print(f"  finished: #{item.index} ({'ok' if item.success else 'failed'})")


async def main() -> None:
    config = PoolConfig(model="claude-haiku-4-5", budget_microdollars=500_000)
    async with Pool(config, slots=3, store=":memory:") as pool:
        items = await pool.fan_out_items(PROMPTS, TaskOverrides(max_turns=1), on_item=report)
        for item in items:  # in the order of PROMPTS
            if item.success and item.result is not None:
                print(f"#{item.index} ok: {item.result.output.strip()}")
            else:
                print(f"#{item.index} failed ({item.state}): {item.error}")
        succeeded = sum(item.success for item in items)
        print(f"{succeeded} of {len(items)} succeeded")


asyncio.run(main())

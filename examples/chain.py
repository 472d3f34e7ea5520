"""Chain: steps that run in order, each seeing what the earlier ones produced.

``{previous_output}`` is the step before's output; ``{steps.NAME.VAR}`` is a value taken from an
earlier step's JSON output with ``output_vars`` (a dot path).
"""

import asyncio

from claude_pool import ChainSpec, ChainStep, Pool, PoolConfig

SPEC = ChainSpec(
    isolation="none",  # run in place: no git worktree needed
    steps=[
        ChainStep(
            name="pick",
            prompt='Pick a small, well-known sorting algorithm. Answer as JSON {"name": "..."}.',
            output_vars={"algorithm": "name"},
        ),
        ChainStep(
            name="explain",
            prompt="Explain {steps.pick.algorithm} to a new programmer in two sentences.",
        ),
        ChainStep(name="title", prompt="Give this explanation a title: {previous_output}"),
    ],
)


async def main() -> None:
    config = PoolConfig(model="claude-haiku-4-5", budget_microdollars=500_000)
    async with Pool(config, slots=1, store=":memory:") as pool:
        chain = await pool.chain(SPEC)
        for step in chain.steps:
            print(f"{step.name} ({step.state}): {(step.output or step.error or '').strip()}")
        print(f"chain {chain.state}, ${chain.total_cost_microdollars / 1e6:.4f}")


asyncio.run(main())

"""Running independent chains side by side, one result per spec in input order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from claude_pool.chain.model import ChainResult, ChainSpec, ChainState, new_chain_id
from claude_pool.errors import ClaudePoolError

ChainInput = ChainSpec | Mapping[str, Any]


async def fan_out_chains(
    specs: Sequence[ChainInput],
    run: Callable[[ChainInput], Awaitable[ChainResult]],
    on_item: Callable[[int, ChainResult], None] | None = None,
) -> list[ChainResult]:
    """``run`` each spec at once. A chain that fails, even one refused at submission (a
    ``failed`` result that says why), never discards the others; ``on_item`` is called with
    each chain's index and result as it ends."""
    results: list[ChainResult | None] = [None] * len(specs)

    async def one(index: int, spec: ChainInput) -> None:
        try:
            result = await run(spec)
        except (ClaudePoolError, ValueError) as exc:
            name = spec.name if isinstance(spec, ChainSpec) else spec.get("name")
            result = ChainResult(
                id=new_chain_id(),
                name=name if isinstance(name, str) else None,
                state=ChainState.FAILED,
                error=f"the chain was not started: {exc}",
            )
        results[index] = result
        if on_item is not None:
            on_item(index, result)

    async with asyncio.TaskGroup() as tg:
        for index, spec in enumerate(specs):
            tg.create_task(one(index, spec))
    return [r for r in results if r is not None]


__all__ = ["ChainInput", "fan_out_chains"]

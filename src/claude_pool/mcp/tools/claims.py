"""Claiming work to do yourself: pool_claim and pool_complete_claimed."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import MAX_PROMPT_CHARS, NOT_BOOL, Name, TaskIdArg
from claude_pool.mcp.models import ClaimResult, TaskOutcome
from claude_pool.mcp.tooling import CHANGES, pool_tool
from claude_pool.pool import Pool
from claude_pool.types import usd_to_microdollars


def register_claim_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_claim and pool_complete_claimed."""

    @pool_tool(server, "pool_claim", CHANGES, "Take a queued task to do yourself")
    async def pool_claim(
        task_id: Annotated[
            Name | None,
            Field(description="The queued task to take; leave out to take the next one."),
        ] = None,
        claimant: Annotated[Name, Field(description="Who takes it (your name).")] = "coordinator",
    ) -> ClaimResult:
        """Take a queued task out of the queue to do it yourself instead of a slot. The
        claim is atomic: no slot and no other claimant can ever run the task too. Returns
        its prompt and settings; report the outcome with pool_complete_claimed. claimed=false
        when nothing is queued."""
        record = await pool.claim(task_id, claimant=claimant)
        if record is None:
            return ClaimResult(claimed=False, note="nothing is queued that you could claim")
        return ClaimResult(
            claimed=True,
            task_id=record.id,
            prompt=record.prompt,
            overrides=record.config,
            tags=record.tags,
            review_required=record.review_required,
            note="do the work, then report it with pool_complete_claimed",
        )

    @pool_tool(server, "pool_complete_claimed", CHANGES, "Report a claimed task's outcome")
    async def pool_complete_claimed(
        task_id: TaskIdArg,
        output: Annotated[
            str,
            Field(
                description="The task's result, as a slot would have answered.",
                json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
            ),
        ],
        success: Annotated[bool, Field(description="False if you could not do it.")] = True,
        cost_usd: Annotated[
            float, Field(ge=0, le=10_000, description="What doing it cost, in USD."), NOT_BOOL
        ] = 0.0,
        turns_used: Annotated[int, Field(ge=0, le=100_000), NOT_BOOL] = 0,
    ) -> TaskOutcome:
        """Record the outcome of a task you took with pool_claim; it ends completed (or
        pending_review if it was submitted for review) or failed."""
        if len(output) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"output is {len(output):,} characters, over the {MAX_PROMPT_CHARS:,} limit; "
                "write it to a file and report the path"
            )
        record = await pool.complete_claimed(
            task_id,
            output,
            success=success,
            cost_microdollars=usd_to_microdollars(cost_usd),
            turns_used=turns_used,
        )
        return TaskOutcome.of(record)


__all__ = [
    "register_claim_tools",
]

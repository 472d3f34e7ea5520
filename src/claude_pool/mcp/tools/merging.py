"""Merging results: pool_merge."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import MAX_LIST_ITEMS, Name
from claude_pool.mcp.tooling import SETS, pool_tool
from claude_pool.merging import MergeReport
from claude_pool.pool import Pool


def register_merge_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_merge."""

    @pool_tool(server, "pool_merge", SETS, "Merge tasks' and chains' branches")
    async def pool_merge(
        ids: Annotated[
            list[Name],
            Field(
                min_length=1,
                max_length=MAX_LIST_ITEMS,
                description=(
                    "Task ids (their slot's claude-pool/<slot> branch, with worktree "
                    "isolation) and chain ids (their kept branch), merged in this order."
                ),
            ),
        ],
        into: Annotated[Name, Field(description="The branch to merge into.")] = "main",
    ) -> MergeReport:
        """Merge the kept worktree branches of completed tasks and chains into a branch, in
        order. The merges happen in a temporary worktree and the target branch only moves by
        a fast-forward, so it and the user's working tree are never left conflicted. At a
        conflict it stops and reports the branch and files (conflict); what merged before
        stays merged. The report lists merged, skipped (with why) and the new head. A slot's
        work is on its branch once the slot stops (pool_drain) or its work is committed."""
        return await pool.merge(ids, into=into)


__all__ = ["register_merge_tools"]

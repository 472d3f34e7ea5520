"""Merging results: pool_merge."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import (
    MAX_LIST_ITEMS,
    Name,
    Overrides,
    TimeoutSecs,
    Verify,
    overrides_of,
)
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
                    "Task ids (exactly the commits each made on its slot's branch, with "
                    "worktree isolation) and chain ids (their kept branch), merged in this "
                    "order."
                ),
            ),
        ],
        into: Annotated[Name, Field(description="The branch to merge into.")] = "main",
        resolve_conflicts: Annotated[
            bool,
            Field(
                description=(
                    "At a conflict, hand it to a slot as a task ('resolve the conflicts of "
                    "branch X onto main') run in the conflicted worktree; when it completes, "
                    "through verify and review, its resolution is committed and the merge "
                    "goes on. The call waits for it."
                )
            ),
        ] = False,
        verify: Verify = None,
        review: Annotated[
            bool,
            Field(description="Hold each conflict resolution for pool_approve_result first."),
        ] = False,
        overrides: Overrides = None,
        resolve_timeout: TimeoutSecs = None,
    ) -> MergeReport:
        """Merge the work of completed tasks and chains into a branch, in order. The merges
        happen in a temporary worktree and the target branch only moves by a fast-forward, so
        it and the user's working tree are never left conflicted. At a conflict it stops and
        reports the branch and files (conflict), or with resolve_conflicts has a slot resolve
        it (verify: the check its resolution must pass); what merged before stays merged. The
        report lists merged (with resolved_by), skipped (with why) and the new head."""
        return await pool.merge(
            ids, into=into, resolve_conflicts=resolve_conflicts, verify=verify, review=review,
            overrides=overrides_of(overrides), resolve_timeout=resolve_timeout,
        )  # fmt: skip


__all__ = ["register_merge_tools"]

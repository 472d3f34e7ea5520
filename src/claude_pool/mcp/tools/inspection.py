"""Looking at the pool: pool_status, pool_session_metrics, pool_list_tasks."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import MAX_EPOCH_MS, MAX_LIST_ITEMS, MAX_OFFSET, NOT_BOOL, Name
from claude_pool.mcp.models import TaskList, TaskSummary
from claude_pool.mcp.tooling import READ_ONLY, pool_tool
from claude_pool.pool import Pool, PoolStatus
from claude_pool.types import MetricsFilter, SessionMetrics, TaskFilter, TaskState


def register_inspection_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_status, pool_session_metrics, pool_list_tasks."""

    @pool_tool(server, "pool_status", READ_ONLY, "Pool status")
    async def pool_status() -> PoolStatus:
        """The pool at a glance: every slot (state, current task, role, spend), how many
        tasks are in each state, total spend and budget in microdollars (1 USD = 1,000,000),
        whether it is shutting down, any API rate limiting that is pausing new tasks, and
        which pending tasks wait for dependencies (waiting)."""
        return await pool.status()

    @pool_tool(server, "pool_session_metrics", READ_ONLY, "Cost and timing metrics")
    async def pool_session_metrics(
        since_ms: Annotated[
            int | None,
            Field(ge=0, le=MAX_EPOCH_MS, description="Only tasks created at or after (epoch ms)."),
            NOT_BOOL,
        ] = None,
        until_ms: Annotated[
            int | None,
            Field(ge=0, le=MAX_EPOCH_MS, description="Only tasks created before (epoch ms)."),
            NOT_BOOL,
        ] = None,
        tags: Annotated[
            list[Name] | None, Field(max_length=MAX_LIST_ITEMS, description="Any of these tags.")
        ] = None,
        model: Annotated[Name | None, Field(description="Only tasks run on this model.")] = None,
    ) -> SessionMetrics:
        """Aggregate metrics over the pool's tasks: counts by state, spend (total, average,
        max, in microdollars), elapsed times (average, median, min, max), turns, and a
        per-model breakdown. Filter by time window, tags or model."""
        return await pool.session_metrics(
            MetricsFilter(since_ms=since_ms, until_ms=until_ms, tags=tags, model=model)
        )

    @pool_tool(server, "pool_list_tasks", READ_ONLY, "List tasks")
    async def pool_list_tasks(
        state: Annotated[TaskState | None, Field(description="Only tasks in this state.")] = None,
        slot_id: Annotated[Name | None, Field(description="Only tasks run by this slot.")] = None,
        tags: Annotated[
            list[Name] | None, Field(max_length=MAX_LIST_ITEMS, description="Any of these tags.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Page size."), NOT_BOOL] = 50,
        offset: Annotated[
            int, Field(ge=0, le=MAX_OFFSET, description="Tasks to skip."), NOT_BOOL
        ] = 0,
    ) -> TaskList:
        """List tasks, oldest first, with a preview of each prompt and output (pool_result
        has the whole result). Filter by state, slot or tags; page with limit and offset."""
        records = await pool.list_tasks(
            TaskFilter(state=state, slot_id=slot_id, tags=tags), limit + 1, offset
        )
        page = records[:limit]
        waiting = await pool.waiting_for(r.id for r in page if r.depends_on)
        return TaskList(
            tasks=[TaskSummary.of(r, waiting.get(r.id)) for r in page],
            limit=limit,
            offset=offset,
            more=len(records) > limit,
        )


__all__ = [
    "register_inspection_tools",
]

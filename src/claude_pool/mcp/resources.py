"""The pool's state as MCP resources (JSON documents a client can read or attach)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from pydantic import BaseModel

from claude_pool.errors import SlotNotFound, TaskNotFound
from claude_pool.mcp.models import Budget, TaskOutcome
from claude_pool.pool import Pool

JSON = "application/json"

ResourceGroup = Callable[[MCPServer[Any], Pool], None]


def _dump(model: BaseModel) -> str:
    return model.model_dump_json(indent=2)


async def budget_of(pool: Pool) -> Budget:
    status = await pool.status()
    limit = status.budget_microdollars
    spent = status.spend_microdollars
    return Budget(
        budget_microdollars=limit,
        spend_microdollars=spent,
        remaining_microdollars=None if limit is None else max(0, limit - spent),
        exhausted=status.budget_exhausted,
    )


def register_pool_resources(server: MCPServer[Any], pool: Pool) -> None:
    """pool://status, pool://slots, pool://slots/{id}, pool://budget, pool://context,
    pool://results/{id}."""

    @server.resource(
        "pool://status",
        name="status",
        title="Pool status",
        description="Slots, task counts by state, spend, budget and rate limiting.",
        mime_type=JSON,
    )
    async def status() -> str:
        return _dump(await pool.status())

    @server.resource(
        "pool://slots",
        name="slots",
        title="Slots",
        description="Every slot of the pool with its state, configuration and spend.",
        mime_type=JSON,
    )
    async def slots() -> str:
        return json.dumps([s.model_dump(mode="json") for s in pool.slots], indent=2)

    @server.resource(
        "pool://slots/{id}",
        name="slot",
        title="One slot",
        description="One slot by id.",
        mime_type=JSON,
    )
    async def slot(id: str) -> str:
        try:
            return _dump(pool.slot(id))
        except SlotNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc

    @server.resource(
        "pool://budget",
        name="budget",
        title="Budget",
        description="Pool budget, spend and what is left, in microdollars (1 USD = 1,000,000).",
        mime_type=JSON,
    )
    async def budget() -> str:
        return _dump(await budget_of(pool))

    @server.resource(
        "pool://context",
        name="context",
        title="Shared context",
        description="The shared notes every task's system prompt carries, by key.",
        mime_type=JSON,
    )
    async def context() -> str:
        return json.dumps(await pool.context_list(), indent=2)

    @server.resource(
        "pool://results/{id}",
        name="result",
        title="Task result",
        description="A task's state and, once finished, its full result.",
        mime_type=JSON,
    )
    async def result(id: str) -> str:
        try:
            return _dump(TaskOutcome.of(await pool.get_task(id)))
        except TaskNotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc


POOL_RESOURCE_GROUPS: tuple[ResourceGroup, ...] = (register_pool_resources,)

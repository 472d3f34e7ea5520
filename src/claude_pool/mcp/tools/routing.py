"""Auto-routing as MCP tools: ``pool_route`` (how a request would best run) and ``pool_auto``
(route it and run it), on :mod:`claude_pool.routing`."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import NOT_BOOL, Name, Overrides, Prompt, Tags, overrides_of
from claude_pool.mcp.progress import ProgressReporter, reporter_for
from claude_pool.mcp.tooling import CLASSIFIES, RUNS_WORK, ToolContext, pool_tool
from claude_pool.pool import Pool
from claude_pool.routing import AutoResult, RouteDecision, RouteHints, RouteKind, auto, route

RouteModel = Annotated[
    Name | None, Field(description="Model for the routing call (default: a cheap one).")
]
MaxParallel = Annotated[
    int, Field(ge=1, le=100, description="At most this many tasks side by side."), NOT_BOOL
]
MaxSteps = Annotated[
    int, Field(ge=1, le=50, description="At most this many chain steps."), NOT_BOOL
]
Preference = Annotated[
    RouteKind | None, Field(description="The shape to choose when it fits the request.")
]
Domain = Annotated[
    str | None,
    Field(max_length=1_000, description='What the work is about, e.g. "Python web backend".'),
]


def register_routing_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_route and pool_auto."""

    @pool_tool(server, "pool_route", CLASSIFIES, "Classify how a request should run")
    async def pool_route(
        request: Prompt,
        max_parallel: MaxParallel = 8,
        max_steps: MaxSteps = 6,
        preference: Preference = None,
        domain: Domain = None,
        model: RouteModel = None,
    ) -> RouteDecision:
        """Decide, without running it, how a request would best be run: as one task (single),
        as independent parts side by side (parallel, with the sub-prompts), or as ordered
        steps (chain, with the steps). One cheap, tool-less model call (a few tenths of a cent);
        if it fails the answer is single with fallback_reason set. Use pool_auto to route and
        run in one go."""
        hints = RouteHints(
            max_parallel=max_parallel, max_steps=max_steps, preference=preference, domain=domain
        )
        return await route(pool, request, hints, model=model)

    @pool_tool(server, "pool_auto", RUNS_WORK, "Route a request and run it")
    async def pool_auto(
        request: Prompt,
        ctx: ToolContext,
        max_parallel: MaxParallel = 8,
        max_steps: MaxSteps = 6,
        preference: Preference = None,
        domain: Domain = None,
        model: RouteModel = None,
        overrides: Overrides = None,
        tags: Tags | None = None,
    ) -> AutoResult:
        """Hand over a request and let the pool decide how to run it: a cheap model call
        classifies it (see pool_route), then it runs as one task, as parallel tasks, or as a
        chain of steps, and you get the combined output, each part's result and the total cost
        (routing included). Task failures are results (success=false), not errors. Progress
        notifications report the routing decision and each task's activity. Costs money;
        overrides apply to every task (not to the routing call)."""
        hints = RouteHints(
            max_parallel=max_parallel, max_steps=max_steps, preference=preference, domain=domain
        )
        marker = f"auto-call:{secrets.token_hex(4)}"
        async with reporter_for(pool, ctx) as reporter:
            reporter.note("routing the request")
            run = auto(
                pool,
                request,
                hints,
                overrides=overrides_of(overrides),
                tags=[*(tags or ()), marker],
                model=model,
            )
            return await _following_tagged(pool, reporter, marker, run)


async def _following_tagged(
    pool: Pool, reporter: ProgressReporter, tag: str, work: Awaitable[AutoResult]
) -> AutoResult:
    """Await ``work``, reporting the tasks tagged ``tag`` (and their events) as they are
    queued. Cancelling cancels the work, whose tasks go with it (the engine's rule)."""
    reporter.watch_tag(tag)
    result = await work
    decision = result.decision
    reporter.note(f"ran as {decision.kind}: {'succeeded' if result.success else 'failed'}")
    return result


__all__ = [
    "register_routing_tools",
]

"""Workflows as MCP tools: ``pool_workflow_list`` and ``pool_invoke_workflow``.

A workflow (:mod:`claude_pool.chain.workflows`) is a named chain of skills; invoking one runs
it as a chain, which :mod:`claude_pool.mcp.tools.chains` follows.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, Field

from claude_pool.chain import ChainIsolation
from claude_pool.chain.workflows import (
    Workflow,
    WorkflowParameter,
    WorkflowRegistry,
    workflow_chain,
)
from claude_pool.mcp.arguments import Name, Tags, TaskOverridesArg, Wait, overrides_of
from claude_pool.mcp.tooling import READ_ONLY, RUNS_WORK, ToolContext, pool_tool
from claude_pool.mcp.tools.chains import ChainOutcome, run_chain_reporting
from claude_pool.pool import Pool

# ── results ─────────────────────────────────────────────────────────


class WorkflowStepView(BaseModel):
    name: str
    skill: str | None = None
    prompt: str | None = None


class WorkflowView(BaseModel):
    name: str
    description: str
    parameters: list[WorkflowParameter]
    steps: list[WorkflowStepView]

    @classmethod
    def of(cls, workflow: Workflow) -> WorkflowView:
        return cls(
            name=workflow.name,
            description=workflow.description,
            parameters=workflow.parameters,
            steps=[
                WorkflowStepView(name=s.name, skill=s.skill, prompt=s.prompt)
                for s in workflow.steps
            ],
        )


class WorkflowList(BaseModel):
    workflows: list[WorkflowView]


class WorkflowRun(BaseModel):
    workflow: str
    engine: Literal["chain"] = Field(
        "chain", description="How it ran: as a chain (pool_chain_result follows it)."
    )
    outcome: ChainOutcome


# ── tools ───────────────────────────────────────────────────────────


def register_workflow_tools(
    server: MCPServer[Any], pool: Pool, workflows: WorkflowRegistry | None = None
) -> None:
    """pool_workflow_list and pool_invoke_workflow."""
    registry = workflows or WorkflowRegistry()

    @pool_tool(server, "pool_workflow_list", READ_ONLY, "List workflows")
    async def pool_workflow_list() -> WorkflowList:
        """The named workflows (e.g. issue-to-pr, refactor-and-test, review-and-fix): ready-made
        chains of skills with their parameters and steps. Run one with pool_invoke_workflow."""
        return WorkflowList(workflows=[WorkflowView.of(w) for w in registry.list()])

    @pool_tool(server, "pool_invoke_workflow", RUNS_WORK, "Run a workflow")
    async def pool_invoke_workflow(
        name: Annotated[Name, Field(description="A workflow name (pool_workflow_list).")],
        ctx: ToolContext,
        params: Annotated[
            dict[Name, str] | None,
            Field(description='The workflow\'s parameters by name, e.g. {"issue": "123"}.'),
        ] = None,
        overrides: Annotated[
            TaskOverridesArg | None,
            Field(
                description="Task settings for every step; a step's own settings (e.g. a "
                "read-only planning step) win over these."
            ),
        ] = None,
        tags: Tags | None = None,
        isolation: Annotated[
            ChainIsolation,
            Field(
                description="worktree (default: a git worktree of its own, work kept on "
                "branch claude-pool/<chain id>), clone, or none (the pool's directory)."
            ),
        ] = ChainIsolation.WORKTREE,
        wait: Wait = True,
    ) -> WorkflowRun:
        """Run a named workflow: its parameters are filled in and its steps run as a chain
        (each step a pool task, later steps using earlier ones' output). With wait=true
        (default) returns the chain's outcome with every step's output and cost, reporting
        each step as progress; with wait=false returns at once with the chain id for
        pool_chain_result. Unknown workflows, and missing or unknown parameters, are refused
        naming what is wrong. Costs money; its steps may edit files and push branches if their
        settings allow it (issue-to-pr opens a PR). Cancelling a waiting call cancels it."""
        workflow = registry.get(name)
        spec = workflow_chain(workflow, params or {}, pool.skills, overrides_of(overrides))
        spec = spec.model_copy(update={"isolation": isolation, "tags": [*(tags or ()), *spec.tags]})
        if not wait:
            chain_id = await pool.submit_chain(spec)
            result = await pool.chain_result(chain_id)
        else:
            result = await run_chain_reporting(pool, ctx, spec)
        return WorkflowRun(workflow=workflow.name, outcome=ChainOutcome.of(result))


__all__ = [
    "WorkflowList",
    "WorkflowRun",
    "WorkflowView",
    "register_workflow_tools",
]

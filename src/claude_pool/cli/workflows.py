"""``claude-pool workflow ...``: list workflows, and run one as a chain of skills.

``workflow run`` does what ``claude-pool run`` does: it submits to a live ``claude-pool worker``
on the same store if there is one, else runs in this process with one slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from claude_pool.chain import ChainIsolation, ChainResult, ChainState, StepState
from claude_pool.chain.workflows import (
    WorkflowError,
    WorkflowNotFound,
    WorkflowRegistry,
    skill_resolver,
    workflow_chain,
)
from claude_pool.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASK_FAILED,
    BudgetOpt,
    ConfigOpt,
    JsonOpt,
    MaxTurnsOpt,
    ModelOpt,
    PermissionOpt,
    StoreOpt,
    TagOpt,
    _executing_pool,
    _interruptible,
    _not_found,
    _overrides,
    _print_json,
    _registry,
    _run,
    _settings,
    _showing_events,
    _usage,
    err,
    out,
)
from claude_pool.skills import SkillError
from claude_pool.types import microdollars_to_usd

if TYPE_CHECKING:
    from claude_pool.pool import Pool

workflow_app = typer.Typer(
    name="workflow",
    help="List and run workflows (named, parameterised chains of skills).",
    no_args_is_help=True,
)


@workflow_app.command("list")
def list_workflows(as_json: JsonOpt = False) -> None:
    """List the workflows with their parameters and steps."""
    workflows = WorkflowRegistry().list()
    if as_json:
        _print_json([w.model_dump(mode="json", exclude_none=True) for w in workflows])
        return
    table = Table(title="workflows")
    table.add_column("name", no_wrap=True)
    table.add_column("parameters")
    table.add_column("steps, description", ratio=1, overflow="fold")
    for workflow in workflows:
        params = " ".join(
            f"{p.name}=" if p.required else f"[{p.name}=]" for p in workflow.parameters
        )
        steps = " → ".join(s.name for s in workflow.steps)
        table.add_row(
            escape(workflow.name),
            escape(params),
            f"{escape(steps)}\n[dim]{escape(workflow.description)}[/]",
        )
    out.print(table)


@workflow_app.command("run")
def run_workflow(
    name: Annotated[str, typer.Argument(help="Workflow name.")],
    params: Annotated[
        list[str] | None, typer.Argument(help="Parameters as key=value (e.g. issue=123).")
    ] = None,
    isolation: Annotated[
        ChainIsolation,
        typer.Option(
            help="worktree: a git worktree of its own, its work kept on a branch; clone: a "
            "fresh clone; none: this directory."
        ),
    ] = ChainIsolation.WORKTREE,
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    tag: TagOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a workflow as a chain and print every step's outcome. Your task options apply to
    every step (a step's own settings win over them); each step starts a fresh conversation;
    Ctrl-C cancels the chain (exit 130)."""
    settings = _settings(config, store=store)
    registry = _registry(settings)
    try:
        workflow = WorkflowRegistry().get(name)
    except WorkflowNotFound as exc:
        _not_found(str(exc))
    values: dict[str, str | None] = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _usage(f"parameter {item!r} is not key=value")
        values[key] = value
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)
    try:
        spec = workflow_chain(workflow, values, registry, overrides)
    except (WorkflowError, SkillError) as exc:
        _usage(str(exc))
    spec = spec.model_copy(update={"isolation": isolation, "tags": [*(tag or ()), *spec.tags]})

    async def go() -> tuple[ChainResult, bool]:
        async with _executing_pool(settings) as pool:
            chain_id = await pool.submit_chain(spec, skill_resolver=skill_resolver(registry))
            result, interrupted = await _interruptible(
                _follow_chain(pool, chain_id, quiet=as_json), lambda: pool.cancel_chain(chain_id)
            )
            assert result is not None  # with on_interrupt, the wait itself gives the result
            return result, interrupted

    result, interrupted = _run(go())
    cancelled = interrupted and result.state is ChainState.CANCELLED
    if cancelled:
        cost = microdollars_to_usd(result.total_cost_microdollars)
        err.print(f"cancelled: {result.id} (spent ${cost:.6f})", highlight=False)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        _show_chain(result)
    if cancelled:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_OK if result.success else EXIT_TASK_FAILED)


async def _follow_chain(pool: Pool, chain_id: str, *, quiet: bool) -> ChainResult:
    if quiet or not err.is_terminal:
        return await pool.wait_chain(chain_id)
    return await _showing_events(
        pool, chain_id, pool.wait_chain(chain_id), lambda e: e.chain_id == chain_id
    )


def _show_chain(result: ChainResult) -> None:
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(
        result.state, "cyan"
    )
    out.print(f"[bold]{result.id}[/] {result.name or ''} [{colour}]{result.state}[/]")
    for step in result.steps:
        mark = {StepState.COMPLETED: "✓", StepState.FAILED: "✗"}.get(step.state, "·")
        cost = microdollars_to_usd(step.cost_microdollars)
        out.print(f"  {mark} {step.name} {step.state} (${cost:.4f})", highlight=False)
    if result.error:
        err.print(result.error, markup=False, highlight=False)
    if result.output is not None:
        out.print(result.output, markup=False, highlight=False)
    if result.kept_branch:
        out.print(f"[dim]work kept on branch {result.kept_branch}[/]")
    total = microdollars_to_usd(result.total_cost_microdollars)
    out.print(f"[dim]cost ${total:.6f}[/]")

"""``claude-pool auto`` and ``claude-pool route``: let one cheap model call decide how to run a
request (one task, parallel tasks or a chain of steps), and run it or only show the decision.

Both do what ``claude-pool run`` does: they submit to a live ``claude-pool worker`` on the same
store if there is one, else run in this process with one slot.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from claude_pool.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASK_FAILED,
    BudgetOpt,
    ConfigOpt,
    ContinueOpt,
    JsonOpt,
    MaxTurnsOpt,
    ModelOpt,
    PermissionOpt,
    StoreOpt,
    TagOpt,
    _executing_pool,
    _interruptible,
    _overrides,
    _print_json,
    _run,
    _settings,
    _usage,
    err,
    out,
)
from claude_pool.routing import AutoResult, RouteDecision, RouteHints, RouteKind, auto, route
from claude_pool.types import microdollars_to_usd

RequestArg = Annotated[str, typer.Argument(help="What to get done.")]
MaxParallelOpt = Annotated[
    int, typer.Option(min=1, max=100, help="At most this many tasks at once.")
]
MaxStepsOpt = Annotated[int, typer.Option(min=1, max=50, help="At most this many chain steps.")]
PreferOpt = Annotated[RouteKind | None, typer.Option(help="The shape to choose when it fits.")]
DomainOpt = Annotated[
    str | None,
    typer.Option(help='What the work is about, to help the router judge (e.g. "Python web app").'),
]
RoutingModelOpt = Annotated[
    str | None, typer.Option(help="Model for the routing call (default: a cheap one).")
]


def _hints(
    max_parallel: int, max_steps: int, prefer: RouteKind | None, domain: str | None
) -> RouteHints:
    return RouteHints(
        max_parallel=max_parallel, max_steps=max_steps, preference=prefer, domain=domain
    )


def _check_request(request: str) -> None:
    # Before a pool (and the claude CLI) is needed at all.
    if not request.strip():
        _usage("the request is empty: say what to get done")


def route_command(
    request: RequestArg,
    max_parallel: MaxParallelOpt = 8,
    max_steps: MaxStepsOpt = 6,
    prefer: PreferOpt = None,
    domain: DomainOpt = None,
    routing_model: RoutingModelOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show how `claude-pool auto` would run a request, without running it. One cheap model
    call chooses one task, parallel tasks or a chain of steps; a routing failure is shown as a
    single task with the reason."""
    settings = _settings(config, store=store)
    hints = _hints(max_parallel, max_steps, prefer, domain)
    _check_request(request)

    async def go() -> RouteDecision:
        async with _executing_pool(settings) as pool:
            try:
                return await route(pool, request, hints, model=routing_model)
            except ValueError as exc:
                _usage(str(exc))

    decision = _run(go())
    if as_json:
        _print_json(decision.model_dump(mode="json"))
        return
    out.print(f"[bold]{decision.kind}[/]: {escape(decision.reason)}", highlight=False)
    for index, prompt in enumerate(decision.prompts, 1):
        out.print(f"  {index}. {escape(prompt)}", highlight=False)
    for index, step in enumerate(decision.steps, 1):
        out.print(f"  {index}. {escape(step.name)}: {escape(step.prompt)}", highlight=False)
    for adjustment in decision.adjustments:
        err.print(f"[dim]adjusted: {escape(adjustment)}[/]", highlight=False)
    if decision.fallback_reason:
        err.print(
            f"[yellow]routing failed, so it would run as one task:[/] "
            f"{escape(decision.fallback_reason)}",
            highlight=False,
        )
    cost = microdollars_to_usd(decision.cost_microdollars)
    out.print(f"[dim]routing cost ${cost:.6f}[/]")


def auto_command(
    request: RequestArg,
    max_parallel: MaxParallelOpt = 8,
    max_steps: MaxStepsOpt = 6,
    prefer: PreferOpt = None,
    domain: DomainOpt = None,
    routing_model: RoutingModelOpt = None,
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    tag: TagOpt = None,
    keep_conversation: ContinueOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the pool decide how to run a request, and run it. One cheap model call chooses
    one task, parallel tasks or a chain of steps; Ctrl-C cancels the work (exit 130)."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)
    hints = _hints(max_parallel, max_steps, prefer, domain)
    _check_request(request)

    async def go() -> AutoResult | None:
        async with _executing_pool(settings) as pool:
            try:
                work = auto(
                    pool,
                    request,
                    hints,
                    overrides=overrides,
                    tags=tag or (),
                    model=routing_model,
                    fresh_session=not keep_conversation,
                )
                # Cancelling the call cancels the tasks and chain it started.
                result, _ = await _interruptible(work)
            except ValueError as exc:
                _usage(str(exc))
            return result

    result = _run(go())
    if result is None:
        err.print("cancelled: the request's tasks were stopped", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        decision = result.decision
        why = decision.fallback_reason or decision.reason or ""
        err.print(f"[dim]routed as {decision.kind}: {why}[/]", highlight=False)
        out.print(result.output, markup=False, highlight=False)
        total = microdollars_to_usd(result.cost_microdollars)
        out.print(f"[dim]{len(result.parts)} task(s) · cost ${total:.6f}[/]")
    raise typer.Exit(EXIT_OK if result.success else EXIT_TASK_FAILED)

"""``claude-pool skills ...``, ``claude-pool workflow ...``, ``claude-pool auto`` and
``claude-pool route``.

Attached to the main app by :func:`attach`. Skills come from the registry of the working
directory (``--config``'s ``cwd``, else the current directory): built-in, global
(``~/.claude-pool/skills``) and project (``.claude-pool/skills``). A command line process has no
runtime layer that would outlive it, so ``add`` and ``remove`` work on the skill files.

Commands that run work do what ``claude-pool run`` does: submit to a live ``claude-pool worker``
on the same store if there is one, else run in this process with one slot.

The shared helpers of :mod:`claude_pool.cli` are imported inside the commands: ``python -m
claude_pool.cli`` runs that module as ``__main__``, and importing it from here at import time
would import it a second time, half-built.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from claude_pool.chain import ChainIsolation, ChainResult, StepState
from claude_pool.chain.workflows import (
    WorkflowError,
    WorkflowNotFound,
    WorkflowRegistry,
    skill_resolver,
    workflow_chain,
)
from claude_pool.config import merge_overrides
from claude_pool.routing import AutoResult, RouteDecision, RouteHints, RouteKind, auto, route
from claude_pool.skills import (
    SKILL_FILE,
    Skill,
    SkillError,
    SkillNotFound,
    SkillRegistry,
    SkillScope,
    SkillSource,
    parse_skill,
)
from claude_pool.types import TaskOverrides, microdollars_to_usd

if TYPE_CHECKING:
    from claude_pool.config import Settings
    from claude_pool.pool import Pool
    from claude_pool.types import TaskRecord

skills_app = typer.Typer(
    name="skills",
    help="List, show, run and manage skills (prompt templates in SKILL.md format).",
    no_args_is_help=True,
)
workflow_app = typer.Typer(
    name="workflow",
    help="List and run workflows (named, parameterised chains of skills).",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store: a SQLite file, ':memory:' (default: ./claude-pool.db)."),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="TOML config file (default: ./claude-pool.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
GlobalOpt = Annotated[
    bool,
    typer.Option("--global", help="The global skills directory (~/.claude-pool/skills)."),
]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing file.")]
ModelOpt = Annotated[str | None, typer.Option(help="Model for the task(s).")]
MaxTurnsOpt = Annotated[int | None, typer.Option(help="Turn limit per task.")]
PermissionOpt = Annotated[str | None, typer.Option(help="Permission mode for the task(s).")]
BudgetOpt = Annotated[float | None, typer.Option(help="Spend cap per task, in USD.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")]

_PROGRESS_SECS = 0.5


# ── helpers ──────────────────────────────────────────────────────────


def _fail(message: str, code: int) -> NoReturn:
    from claude_pool import cli as base

    base._fail(message, code)


def _usage(message: str) -> NoReturn:
    from claude_pool import cli as base

    _fail(message, base.EXIT_USAGE)


def _not_found(message: str) -> NoReturn:
    from claude_pool import cli as base

    _fail(message, base.EXIT_NOT_FOUND)


def _settings(config: str | None, store: str | None = None) -> Settings:
    from claude_pool import cli as base

    return base._settings(config, store=store)


def _registry(settings: Settings) -> SkillRegistry:
    return SkillRegistry.for_project(Path(settings.cwd) if settings.cwd else None)


def _skill_dir(registry: SkillRegistry, where_global: bool) -> Path:
    directory = registry.global_dir if where_global else registry.project_dir
    assert directory is not None  # for_project always sets both
    return directory


def _get_skill(registry: SkillRegistry, name: str) -> Skill:
    try:
        return registry.get(name)
    except SkillNotFound as exc:
        _not_found(str(exc))


def _print_json(data: Any) -> None:
    from claude_pool import cli as base

    base._print_json(data)


def _task_overrides(
    model: str | None, max_turns: int | None, permission_mode: str | None, budget: float | None
) -> TaskOverrides | None:
    from claude_pool import cli as base

    return base._overrides(model, max_turns, permission_mode, budget)


def _key_values(items: list[str], known: Mapping[str, object]) -> dict[str, str] | None:
    """``key=value`` words as a mapping when every word is one with a known key; else None."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            return None
        pairs[key] = value
    return pairs


# ── skills ───────────────────────────────────────────────────────────


@skills_app.command("list")
def list_skills(
    scope: Annotated[SkillScope | None, typer.Option(help="Only skills of this scope.")] = None,
    source: Annotated[
        SkillSource | None, typer.Option(help="Only this source's skills (shadowed ones too).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the skills: built-in, global and project ones (later ones win)."""
    from claude_pool import cli as base

    registry = _registry(_settings(config))
    skills = registry.list(scope, source)
    if as_json:
        _print_json(
            {
                "skills": [_skill_json(s, registry, full=False) for s in skills],
                "load_errors": [str(e) for e in registry.errors],
            }
        )
        return
    table = Table(title="skills")
    table.add_column("name", no_wrap=True)
    table.add_column("scope")
    table.add_column("source")
    table.add_column("description (arguments)", ratio=1, overflow="fold")
    for skill in skills:
        arguments = " ".join(a.name if a.required else f"[{a.name}]" for a in skill.arguments)
        hint = skill.argument_hint or arguments
        table.add_row(
            skill.name,
            str(skill.scope),
            str(skill.source),
            f"{skill.description} [dim]{escape(hint)}[/]" if hint else skill.description,
        )
    base.out.print(table)
    for issue in registry.errors:
        base.err.print(f"[yellow]skipped[/] {issue}", markup=True, highlight=False)


def _skill_json(skill: Skill, registry: SkillRegistry, *, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": skill.name,
        "description": skill.description,
        "scope": skill.scope.value,
        "source": skill.source.value,
        "argument_hint": skill.argument_hint,
        "arguments": [a.model_dump() for a in skill.arguments],
        "path": str(skill.path) if skill.path is not None else None,
        "shadows": [d.source.value for d in registry.definitions(skill.name)[:-1]],
    }
    if full:
        data["overrides"] = (
            skill.overrides.model_dump(mode="json", exclude_none=True) if skill.overrides else None
        )
        data["body"] = skill.body
        data["markdown"] = skill.to_markdown()
    return data


@skills_app.command("show")
def show_skill(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a skill's SKILL.md (where it comes from, its arguments and template)."""
    from claude_pool import cli as base

    registry = _registry(_settings(config))
    skill = _get_skill(registry, name)
    if as_json:
        _print_json(_skill_json(skill, registry, full=True))
        return
    where = f" from {skill.path}" if skill.path is not None else ""
    base.err.print(f"[dim]{skill.source} skill{where}[/]")
    base.out.print(skill.to_markdown(), markup=False, highlight=False, end="")


@skills_app.command("add")
def add_skill(
    file: Annotated[str, typer.Argument(help="A SKILL.md file, or - to read standard input.")],
    to_global: GlobalOpt = False,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a skill to the project's skills (or the global ones): checks it, then writes it to
    <dir>/<name>/SKILL.md as given."""
    from claude_pool import cli as base

    registry = _registry(_settings(config))
    if file == "-":
        text, origin = sys.stdin.read(), None
    else:
        try:
            text, origin = Path(file).read_text(encoding="utf-8"), Path(file)
        except (OSError, UnicodeDecodeError) as exc:
            _usage(f"cannot read {file}: {exc}")
    try:
        skill = parse_skill(text, origin)
    except SkillError as exc:
        _usage(str(exc))
    target = _skill_dir(registry, to_global) / skill.name / SKILL_FILE
    if target.exists() and not overwrite:
        _usage(f"{target} already exists; pass --overwrite to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {target}: {exc}", base.EXIT_TASK_FAILED)
    _report_change(skill.name, "added", target, as_json)


@skills_app.command("remove")
def remove_skill(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    from_global: GlobalOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a project skill (or a global one with --global): its folder or file. Built-in
    skills cannot be removed (an ejected copy can)."""
    from claude_pool import cli as base

    registry = _registry(_settings(config))
    source = SkillSource.GLOBAL if from_global else SkillSource.PROJECT
    found = [d for d in registry.definitions(name) if d.source is source]
    if not found or found[0].path is None:
        others = ", ".join(str(d.source) for d in registry.definitions(name))
        detail = f"; it is a {others} skill" if others else ""
        _not_found(f"no {source} skill named {name!r}{detail}")
    path = found[0].path
    try:
        if path.name == SKILL_FILE:
            shutil.rmtree(path.parent)
        else:
            path.unlink()
    except OSError as exc:
        _fail(f"cannot remove {path}: {exc}", base.EXIT_TASK_FAILED)
    _report_change(name, "removed", path, as_json)


@skills_app.command("save")
def save_skill(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    to_global: GlobalOpt = False,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a skill's current definition to the project's skills (or, with --global, the
    global ones), e.g. to share a project skill with every project."""
    registry = _registry(_settings(config))
    _get_skill(registry, name)
    try:
        path = registry.save(name, _skill_dir(registry, to_global), overwrite=overwrite)
    except SkillError as exc:
        _usage(f"{exc} (--overwrite replaces it)")
    _report_change(name, "saved", path, as_json)


@skills_app.command("eject")
def eject_skill(
    name: Annotated[str, typer.Argument(help="Built-in skill name.")],
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a built-in skill into the project's .claude-pool/skills to edit it; the copy wins
    over the built-in."""
    registry = _registry(_settings(config))
    try:
        path = registry.eject(name, overwrite=overwrite)
    except SkillNotFound as exc:
        _not_found(str(exc))
    except SkillError as exc:
        _usage(f"{exc} (--overwrite replaces it)")
    _report_change(name, "ejected", path, as_json)


def _report_change(name: str, action: str, path: Path, as_json: bool) -> None:
    from claude_pool import cli as base

    if as_json:
        _print_json({"name": name, "action": action, "path": str(path)})
    else:
        base.out.print(f"{action} {name}: {path}", markup=False, highlight=False)


@skills_app.command("run")
def run_skill(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="The skill's arguments: key=value for each, or plain values in order "
            "(extra words go to the last argument)."
        ),
    ] = None,
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Run-time limit in seconds.")] = None,
    tag: TagOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a skill as a task with its own settings (yours on top) and print the result:
    through a running worker if there is one, otherwise in this process."""
    from claude_pool import cli as base

    settings = _settings(config, store)
    skill = _get_skill(_registry(settings), name)
    if skill.scope is SkillScope.COORDINATOR:
        _usage(
            f"skill {name!r} is a coordinator skill (instructions for a coordinating session), "
            f"not a task; read it with `claude-pool skills show {name}`"
        )
    words = args or []
    named = _key_values(words, {a.name: a for a in skill.arguments}) if words else {}
    declared = len(skill.arguments)
    if named is None and declared and len(words) > declared:
        # As for a one-line argument string: extra words belong to the last argument.
        words = [*words[: declared - 1], " ".join(words[declared - 1 :])]
    try:
        prompt = skill.render(named if named is not None else words)
    except SkillError as exc:
        _usage(str(exc))
    overrides = merge_overrides(
        skill.overrides, _task_overrides(model, max_turns, permission_mode, max_budget_usd)
    )

    async def go() -> TaskRecord:
        async with base._executing_pool(settings) as pool:
            try:
                task_id = await pool.submit(
                    prompt, overrides, [*(tag or ()), f"skill:{skill.name}"], timeout=timeout
                )
            except ValueError as exc:
                _usage(str(exc))
            return await base._wait_with_progress(pool, task_id, None, as_json)

    record = base._run(go())
    base._show_record(record, as_json)
    raise typer.Exit(base._exit_for(record))


# ── workflows ────────────────────────────────────────────────────────


@workflow_app.command("list")
def list_workflows(as_json: JsonOpt = False) -> None:
    """List the workflows with their parameters and steps."""
    from claude_pool import cli as base

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
        table.add_row(workflow.name, escape(params), f"{steps}\n[dim]{workflow.description}[/]")
    base.out.print(table)


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
    """Run a workflow as a chain, showing each step, and print every step's outcome. Your task
    options apply to every step; a step's own settings win over them."""
    from claude_pool import cli as base

    settings = _settings(config, store)
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
    overrides = _task_overrides(model, max_turns, permission_mode, max_budget_usd)
    try:
        spec = workflow_chain(workflow, values, registry, overrides)
    except (WorkflowError, SkillError) as exc:
        _usage(str(exc))
    spec = spec.model_copy(update={"isolation": isolation, "tags": [*(tag or ()), *spec.tags]})

    async def go() -> ChainResult:
        async with base._executing_pool(settings) as pool:
            chain_id = await pool.submit_chain(spec, skill_resolver=skill_resolver(registry))
            return await _follow_chain(pool, chain_id, quiet=as_json)

    result = base._run(go())
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        _show_chain(result)
    raise typer.Exit(base.EXIT_OK if result.success else base.EXIT_TASK_FAILED)


async def _follow_chain(pool: Pool, chain_id: str, *, quiet: bool) -> ChainResult:
    from claude_pool import cli as base

    if quiet or not base.err.is_terminal:
        return await pool.wait_chain(chain_id)
    with base.err.status("starting") as status:
        waiter = asyncio.ensure_future(pool.wait_chain(chain_id))
        while not waiter.done():
            snapshot = await pool.chain_result(chain_id)
            step = snapshot.current_step_name or "-"
            partial = snapshot.partial_output.strip().splitlines()[-1:] or [""]
            status.update(f"{chain_id} [cyan]{snapshot.state}[/] step {step} · {partial[0][:80]}")
            await asyncio.wait({waiter}, timeout=_PROGRESS_SECS)
        return waiter.result()


def _show_chain(result: ChainResult) -> None:
    from claude_pool import cli as base

    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(
        result.state, "cyan"
    )
    base.out.print(f"[bold]{result.id}[/] {result.name or ''} [{colour}]{result.state}[/]")
    for step in result.steps:
        mark = {StepState.COMPLETED: "✓", StepState.FAILED: "✗"}.get(step.state, "·")
        cost = microdollars_to_usd(step.cost_microdollars)
        base.out.print(f"  {mark} {step.name} {step.state} (${cost:.4f})", highlight=False)
    if result.error:
        base.err.print(result.error, markup=False, highlight=False)
    if result.output is not None:
        base.out.print(result.output, markup=False, highlight=False)
    if result.kept_branch:
        base.out.print(f"[dim]work kept on branch {result.kept_branch}[/]")
    total = microdollars_to_usd(result.total_cost_microdollars)
    base.out.print(f"[dim]cost ${total:.6f}[/]")


# ── auto and route ───────────────────────────────────────────────────

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
    """Show how `claude-pool auto` would run a request (one task, parallel tasks or a chain of
    steps) without running it: one cheap model call classifies it. A routing failure is shown
    as a single task with the reason."""
    from claude_pool import cli as base

    settings = _settings(config, store)
    hints = _hints(max_parallel, max_steps, prefer, domain)
    _check_request(request)

    async def go() -> RouteDecision:
        async with base._executing_pool(settings) as pool:
            try:
                return await route(pool, request, hints, model=routing_model)
            except ValueError as exc:
                _usage(str(exc))

    decision = base._run(go())
    if as_json:
        _print_json(decision.model_dump(mode="json"))
        return
    base.out.print(f"[bold]{decision.kind}[/]: {escape(decision.reason)}", highlight=False)
    for index, prompt in enumerate(decision.prompts, 1):
        base.out.print(f"  {index}. {escape(prompt)}", highlight=False)
    for index, step in enumerate(decision.steps, 1):
        base.out.print(f"  {index}. {escape(step.name)}: {escape(step.prompt)}", highlight=False)
    for adjustment in decision.adjustments:
        base.err.print(f"[dim]adjusted: {escape(adjustment)}[/]", highlight=False)
    if decision.fallback_reason:
        base.err.print(
            f"[yellow]routing failed, so it would run as one task:[/] "
            f"{escape(decision.fallback_reason)}",
            highlight=False,
        )
    cost = microdollars_to_usd(decision.cost_microdollars)
    base.out.print(f"[dim]routing cost ${cost:.6f}[/]")


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
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Let the pool decide how to run a request (one task, parallel tasks or a chain of
    steps; one cheap model call decides) and run it."""
    from claude_pool import cli as base

    settings = _settings(config, store)
    overrides = _task_overrides(model, max_turns, permission_mode, max_budget_usd)
    hints = _hints(max_parallel, max_steps, prefer, domain)
    _check_request(request)

    async def go() -> AutoResult:
        async with base._executing_pool(settings) as pool:
            try:
                return await auto(
                    pool,
                    request,
                    hints,
                    overrides=overrides,
                    tags=tag or (),
                    model=routing_model,
                )
            except ValueError as exc:
                _usage(str(exc))

    result = base._run(go())
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        decision = result.decision
        why = decision.fallback_reason or decision.reason or ""
        base.err.print(f"[dim]routed as {decision.kind}: {why}[/]", highlight=False)
        base.out.print(result.output, markup=False, highlight=False)
        total = microdollars_to_usd(result.cost_microdollars)
        base.out.print(f"[dim]{len(result.parts)} task(s) · cost ${total:.6f}[/]")
    raise typer.Exit(base.EXIT_OK if result.success else base.EXIT_TASK_FAILED)


def attach(app: typer.Typer) -> None:
    """Add ``skills``, ``workflow``, ``auto`` and ``route`` to the main app."""
    app.add_typer(skills_app)
    app.add_typer(workflow_app)
    app.command("auto")(auto_command)
    app.command("route")(route_command)


__all__ = ["attach", "auto_command", "route_command", "skills_app", "workflow_app"]

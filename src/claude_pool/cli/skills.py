"""``claude-pool skills ...``: list, show, run and manage skills.

Skills come from the registry of the working directory (``--config``'s ``cwd``, else the
current directory): built-in, global (``~/.claude-pool/skills``) and project
(``.claude-pool/skills``). A command line process has no runtime layer that would outlive it, so
``add`` and ``remove`` work on the skill files.

``skills run`` does what ``claude-pool run`` does: it submits to a live ``claude-pool worker`` on
the same store if there is one, else runs in this process with one slot.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from claude_pool.cli.common import (
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
    TimeoutOpt,
    _end_with_task,
    _executing_pool,
    _fail,
    _follow_task,
    _not_found,
    _overrides,
    _print_json,
    _registry,
    _run,
    _settings,
    _usage,
    err,
    out,
)
from claude_pool.config import merge_overrides
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

if TYPE_CHECKING:
    from claude_pool.types import TaskRecord

skills_app = typer.Typer(
    name="skills",
    help="List, show, run and manage skills (prompt templates in SKILL.md format).",
    no_args_is_help=True,
)

GlobalOpt = Annotated[
    bool,
    typer.Option("--global", help="The global skills directory (~/.claude-pool/skills)."),
]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace an existing file.")]


def _skill_dir(registry: SkillRegistry, where_global: bool) -> Path:
    directory = registry.global_dir if where_global else registry.project_dir
    assert directory is not None  # for_project always sets both
    return directory


def _get_skill(registry: SkillRegistry, name: str) -> Skill:
    try:
        return registry.get(name)
    except SkillNotFound as exc:
        _not_found(str(exc))


def _key_values(items: list[str], known: Mapping[str, object]) -> dict[str, str] | None:
    """``key=value`` words as a mapping when every word is one with a known key; else None."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            return None
        pairs[key] = value
    return pairs


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
            escape(skill.name),
            str(skill.scope),
            str(skill.source),
            f"{escape(skill.description)} [dim]{escape(hint)}[/]"
            if hint
            else escape(skill.description),
        )
    out.print(table)
    for issue in registry.errors:
        err.print(f"[yellow]skipped[/] {issue}", markup=True, highlight=False)


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
    registry = _registry(_settings(config))
    skill = _get_skill(registry, name)
    if as_json:
        _print_json(_skill_json(skill, registry, full=True))
        return
    where = f" from {skill.path}" if skill.path is not None else ""
    err.print(f"[dim]{skill.source} skill{where}[/]")
    out.print(skill.to_markdown(), markup=False, highlight=False, end="")


@skills_app.command("add")
def add_skill(
    file: Annotated[str, typer.Argument(help="A SKILL.md file, or - to read standard input.")],
    to_global: GlobalOpt = False,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a skill to the project's skills (or the global ones). It is checked, then written
    to <dir>/<name>/SKILL.md as given."""
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
        _fail(f"cannot write {target}: {exc}", EXIT_TASK_FAILED)
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
        _fail(f"cannot remove {path}: {exc}", EXIT_TASK_FAILED)
    _report_change(name, "removed", path, as_json)


@skills_app.command("save")
def save_skill(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    to_global: GlobalOpt = False,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a skill's current definition to the project's skills (or the global ones). With
    --global, a project skill is shared with every project."""
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
    if as_json:
        _print_json({"name": name, "action": action, "path": str(path)})
    else:
        out.print(f"{action} {name}: {path}", markup=False, highlight=False)


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
    timeout: TimeoutOpt = None,
    tag: TagOpt = None,
    keep_conversation: ContinueOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a skill as a task with its own settings (yours on top) and print the result. It
    goes through a running worker if there is one, otherwise runs in this process; Ctrl-C
    cancels it (exit 130)."""
    settings = _settings(config, store=store)
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
        skill.overrides, _overrides(model, max_turns, permission_mode, max_budget_usd)
    )

    async def go() -> tuple[TaskRecord, bool]:
        async with _executing_pool(settings) as pool:
            try:
                task_id = await pool.submit(
                    prompt,
                    overrides,
                    [*(tag or ()), f"skill:{skill.name}"],
                    timeout=timeout,
                    fresh_session=not keep_conversation,
                )
            except ValueError as exc:
                _usage(str(exc))
            return await _follow_task(pool, task_id, as_json)

    _end_with_task(*_run(go()), as_json)

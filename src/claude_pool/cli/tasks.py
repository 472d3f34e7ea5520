"""``claude-pool submit``, ``result``, ``cancel``, ``requeue``, ``approve``, ``reject``,
``tasks`` and ``run``: one task at a time."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from claude_pool.cli.common import (
    EXIT_USAGE,
    AfterOpt,
    BudgetOpt,
    ConfigOpt,
    ContinueOpt,
    JsonOpt,
    MaxTurnsOpt,
    ModelOpt,
    PermissionOpt,
    PriorityOpt,
    RunAnywayOpt,
    StoreOpt,
    TagOpt,
    TimeoutOpt,
    _client,
    _end_with_task,
    _executing_pool,
    _exit_for,
    _fail,
    _follow_task,
    _overrides,
    _print_json,
    _print_table,
    _require_store,
    _run,
    _settings,
    _show_record,
    _wait_with_progress,
    out,
)
from claude_pool.events import preview
from claude_pool.merging import MergeReport
from claude_pool.pool import RejectOutcome
from claude_pool.types import TaskFilter, TaskRecord, TaskState, microdollars_to_usd

TaskIdArg = Annotated[str, typer.Argument(help="Task id.")]


def submit(
    prompt: Annotated[str, typer.Argument(help="What the task should do.")],
    priority: PriorityOpt = 0,
    tag: TagOpt = None,
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    timeout: TimeoutOpt = None,
    review: Annotated[bool, typer.Option(help="Hold the result for approval.")] = False,
    after: AfterOpt = None,
    verify: Annotated[
        str | None,
        typer.Option(
            metavar="COMMAND",
            help=(
                "Run this shell command in the task's directory once it completes; a non-zero "
                "exit sends the task back with the command's output (up to 3 attempts)."
            ),
        ),
    ] = None,
    plan_first: Annotated[
        bool,
        typer.Option(
            "--plan-first",
            help=(
                "Plan first, in plan mode, and wait for `approve` (which carries the plan out) "
                "or `reject` (which asks for a new one)."
            ),
        ),
    ] = False,
    run_anyway: RunAnywayOpt = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a task and print its id. A running `claude-pool worker` executes it (in the
    slot's continuing conversation, as the library does)."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)

    async def go() -> str:
        async with _client(settings) as pool:
            try:
                return await pool.submit(
                    prompt, overrides, tag or (), priority=priority, timeout=timeout,
                    review=review, depends_on=after or (),
                    on_dependency_failure="run" if run_anyway else "cancel", verify=verify,
                    plan_first=plan_first,
                )  # fmt: skip
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)

    task_id = _run(go())
    if as_json:
        _print_json({"task_id": task_id})
    else:
        out.print(task_id)


def result(
    task_id: TaskIdArg,
    wait: Annotated[bool, typer.Option(help="Wait until the task finishes.")] = False,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up waiting after N seconds.")
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a task's state and result (exit 5 while it is not finished)."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings, existing=True) as pool:
            if not wait:
                return await pool.get_task(task_id)
            try:
                return await _wait_with_progress(pool, task_id, timeout, as_json)
            except TimeoutError:
                return await pool.get_task(task_id)

    record = _run(go())
    _show_record(record, as_json)
    raise typer.Exit(_exit_for(record))


def cancel(
    task_id: TaskIdArg,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a task. A queued one never starts; a running one is stopped (its spend kept)."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings, existing=True) as pool:
            return await pool.cancel(task_id)

    _show_record(_run(go()), as_json)


def requeue(
    task_id: TaskIdArg,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a failed or cancelled task again, as it was first submitted. What its earlier
    runs spent stays spent; exit 4 for a task in another state."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings, existing=True) as pool:
            return await pool.requeue(task_id)

    record = _run(go())
    if as_json:
        _print_json(record.model_dump(mode="json"))
    else:
        out.print(f"{record.id} queued again", markup=False, highlight=False)


def merge(
    ids: Annotated[list[str], typer.Argument(help="Task and chain ids, merged in this order.")],
    into: Annotated[str, typer.Option(help="The branch to merge into.")] = "main",
    resolve: Annotated[
        bool,
        typer.Option(
            "--resolve",
            help="Hand a conflict to a slot as a task (through a running worker, or a slot "
            "of this command's own); its resolution is committed and the merge goes on.",
        ),
    ] = False,
    verify: Annotated[
        str | None,
        typer.Option(help="With --resolve: the check a resolution must pass (e.g. 'make test')."),
    ] = None,
    review: Annotated[
        bool, typer.Option("--review", help="With --resolve: hold resolutions for approve.")
    ] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge the work of tasks and chains into a branch (default main). A task brings its own
    commits, a chain its kept branch. It never leaves that branch or the working tree
    conflicted; exit 1
    when it stopped at a conflict (one --resolve could not resolve included) or could not
    move the branch."""
    settings = _settings(config, store=store)

    async def go() -> MergeReport:
        if resolve:
            _require_store(settings)
            async with _executing_pool(settings) as pool:
                return await pool.merge(
                    ids, into=into, resolve_conflicts=True, verify=verify, review=review
                )
        async with _client(settings, existing=True) as pool:
            return await pool.merge(ids, into=into)

    report = _run(go())
    if as_json:
        _print_json(report.model_dump(mode="json"))
    else:
        for merged in report.merged:
            how = f", conflicts resolved by {merged.resolved_by}" if merged.resolved_by else ""
            out.print(f"merged {merged.branch} ({merged.source}{how})", markup=False)
        for skipped in report.skipped:
            what = skipped.branch or skipped.source
            out.print(f"skipped {what} ({skipped.source}): {skipped.reason}", markup=False)
        if report.conflict is not None:
            files = ", ".join(report.conflict.files)
            out.print(
                f"conflict: {report.conflict.branch} ({report.conflict.source}) in {files}",
                markup=False,
            )
        out.print(report.message, markup=False, highlight=False)
    if report.conflict is not None or report.error is not None:
        raise typer.Exit(1)


def approve(
    task_id: TaskIdArg,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept a result held for review. The task (submitted with `--review`) becomes
    completed; exit 4 for a task that is not awaiting review."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings, existing=True) as pool:
            return await pool.approve(task_id)

    record = _run(go())
    if as_json:
        _print_json(record.model_dump(mode="json"))
    else:
        out.print(f"{record.id} approved: {record.state}", markup=False, highlight=False)


def reject(
    task_id: TaskIdArg,
    feedback: Annotated[
        str, typer.Option("--feedback", "-f", help="What to change; the next attempt gets it.")
    ],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a result held for review back with feedback. The task is queued again with the
    feedback, or fails once it has been rejected as often as it may be; this says which.
    Exit 4 for a task that is not awaiting review."""
    settings = _settings(config, store=store)

    async def go() -> RejectOutcome:
        async with _client(settings, existing=True) as pool:
            try:
                return await pool.reject(task_id, feedback)
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)

    outcome = _run(go())
    if as_json:
        _print_json(outcome.model_dump(mode="json"))
    elif outcome.requeued:
        out.print(
            f"{outcome.task.id} rejected: queued again for attempt {outcome.attempt} of "
            f"{outcome.max_attempts}",
            markup=False,
            highlight=False,
        )
    else:
        out.print(
            f"{outcome.task.id} rejected {outcome.attempt} time(s), the limit: it failed",
            markup=False,
            highlight=False,
        )


PROMPT_CHARS = 60
"""The prompt column shows at most this much of each prompt (more with --json)."""
_MIN_PROMPT_CHARS = 12
_STATE_STYLE = {"completed": "green", "failed": "red", "cancelled": "yellow"}


def tasks(
    state: Annotated[TaskState | None, typer.Option(help="Only tasks in this state.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Any of these tags.")] = None,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first (default: newest first).")
    ] = False,
    limit: Annotated[int, typer.Option(min=0, help="At most this many tasks.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first.")] = 0,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, newest first."""
    settings = _settings(config, store=store)

    async def go() -> tuple[list[TaskRecord], dict[str, list[str]]]:
        async with _client(settings, existing=True) as pool:
            records = await pool.list_tasks(
                TaskFilter(state=state, tags=tag), limit, offset, newest_first=not oldest_first
            )
            return records, await pool.waiting_for(r.id for r in records if r.depends_on)

    records, waiting = _run(go())
    if as_json:
        _print_json(
            [
                r.model_dump(mode="json")
                | ({"waiting_for": waiting[r.id]} if r.id in waiting else {})
                for r in records
            ]
        )
        return
    _print_tasks(records, waiting)


def _print_tasks(records: list[TaskRecord], waiting: dict[str, list[str]]) -> None:
    """A table whose columns are never cut: only the prompt column is shortened (with an
    ellipsis), to fit a terminal; elsewhere (a pipe, a file) it does not depend on any width.
    A pending task held by dependencies shows as waiting, its prompt after what it waits for;
    a plan held for approval as ``plan review``; the runs of a task's verification command
    (``✓``, ``✗`` and the exit code) before its prompt."""
    rows = []
    for r in records:
        res = r.result
        state = "plan review" if r.review_kind == "plan" else str(r.state)
        rows.append(
            [
                r.id,
                "waiting" if r.id in waiting else state,
                r.slot_id or "-",
                f"{microdollars_to_usd(res.cost_microdollars):.4f}" if res else "-",
                str(res.turns_used) if res else "-",
            ]
        )
    headers = ["id", "state", "slot", "cost $", "turns"]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    # A rich table takes each column's width plus 2 of padding plus 1 of border, plus 1.
    fixed = sum(widths) + 3 * (len(widths) + 1) + 1
    room = PROMPT_CHARS
    if out.is_terminal:
        room = max(_MIN_PROMPT_CHARS, min(PROMPT_CHARS, out.width - fixed))
    table = Table(title="tasks")
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width)
    table.add_column("prompt", no_wrap=True)
    for record, row in zip(records, rows, strict=True):
        cells = [Text(cell) for cell in row]
        cells[1].stylize(_STATE_STYLE.get(row[1], "cyan"))
        prompt = record.original_prompt or record.prompt
        runs = record.result.verifications if record.result is not None else []
        if runs:
            marks = " ".join("✓" if v.passed else f"✗{v.exit_code}" for v in runs)
            prompt = f"[checks {marks}] {prompt}"
        if record.id in waiting:
            prompt = f"[after {', '.join(waiting[record.id])}] {prompt}"
        table.add_row(*cells, Text(preview(prompt, room)))
    _print_table(table, fixed + room)


def run(
    prompt: Annotated[str, typer.Argument(help="What the task should do.")],
    model: ModelOpt = None,
    max_turns: MaxTurnsOpt = None,
    permission_mode: PermissionOpt = None,
    max_budget_usd: BudgetOpt = None,
    timeout: TimeoutOpt = None,
    keep_conversation: ContinueOpt = False,
    verify: Annotated[
        str | None,
        typer.Option(
            metavar="COMMAND",
            help="Check the result with this shell command (see `submit --verify`).",
        ),
    ] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one task and print its result. It goes through a running worker if there is one,
    otherwise runs in this process; Ctrl-C cancels it (exit 130)."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)

    async def go() -> tuple[TaskRecord, bool]:
        async with _executing_pool(settings) as pool:
            try:
                task_id = await pool.submit(
                    prompt,
                    overrides,
                    timeout=timeout,
                    fresh_session=not keep_conversation,
                    verify=verify,
                )
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)
            return await _follow_task(pool, task_id, as_json)

    _end_with_task(*_run(go()), as_json)

"""``claude-pool submit``, ``result``, ``cancel``, ``tasks`` and ``run``: one task at a time."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from claude_pool.cli.common import (
    EXIT_USAGE,
    ConfigOpt,
    JsonOpt,
    StoreOpt,
    _client,
    _executing_pool,
    _exit_for,
    _fail,
    _overrides,
    _print_json,
    _run,
    _settings,
    _show_record,
    _wait_with_progress,
    out,
)
from claude_pool.types import TaskFilter, TaskRecord, TaskState, microdollars_to_usd


def submit(
    prompt: Annotated[str, typer.Argument(help="What the task should do.")],
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")] = None,
    model: Annotated[str | None, typer.Option(help="Model for this task.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="Turn limit for this task.")] = None,
    permission_mode: Annotated[str | None, typer.Option(help="Permission mode.")] = None,
    max_budget_usd: Annotated[float | None, typer.Option(help="Spend cap for this task.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Run-time limit in seconds.")] = None,
    review: Annotated[bool, typer.Option(help="Hold the result for approval.")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a task and print its id; a running `claude-pool worker` executes it."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)

    async def go() -> str:
        async with _client(settings) as pool:
            try:
                return await pool.submit(
                    prompt, overrides, tag or (), priority=priority, timeout=timeout, review=review
                )
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)

    task_id = _run(go())
    if as_json:
        _print_json({"task_id": task_id})
    else:
        out.print(task_id)


def result(
    task_id: Annotated[str, typer.Argument(help="Task id.")],
    wait: Annotated[bool, typer.Option(help="Wait until the task finishes.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after N seconds.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a task's state and result (exit 5 while it is not finished)."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings) as pool:
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
    task_id: Annotated[str, typer.Argument(help="Task id.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a task: a queued one never starts; a running one is stopped."""
    settings = _settings(config, store=store)

    async def go() -> TaskRecord:
        async with _client(settings) as pool:
            return await pool.cancel(task_id)

    record = _run(go())
    _show_record(record, as_json)


def tasks(
    state: Annotated[TaskState | None, typer.Option(help="Only tasks in this state.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Any of these tags.")] = None,
    limit: Annotated[int, typer.Option(min=0)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, oldest first."""
    settings = _settings(config, store=store)

    async def go() -> list[TaskRecord]:
        async with _client(settings) as pool:
            return await pool.list_tasks(TaskFilter(state=state, tags=tag), limit, offset)

    records = _run(go())
    if as_json:
        _print_json([r.model_dump(mode="json") for r in records])
        return
    table = Table(title="tasks")
    # Ids are copied into other commands, so they are never shortened.
    table.add_column("id", no_wrap=True, min_width=max((len(r.id) for r in records), default=2))
    for name in ("state", "slot", "cost $", "turns"):
        table.add_column(name, no_wrap=True)
    table.add_column("prompt", overflow="ellipsis", no_wrap=True, max_width=60)
    for r in records:
        res = r.result
        table.add_row(
            r.id,
            str(r.state),
            r.slot_id or "-",
            f"{microdollars_to_usd(res.cost_microdollars):.4f}" if res else "-",
            str(res.turns_used) if res else "-",
            r.prompt.replace("\n", " ")[:60],
        )
    out.print(table)


def run(
    prompt: Annotated[str, typer.Argument(help="What the task should do.")],
    model: Annotated[str | None, typer.Option(help="Model for this task.")] = None,
    max_turns: Annotated[int | None, typer.Option(help="Turn limit for this task.")] = None,
    permission_mode: Annotated[str | None, typer.Option(help="Permission mode.")] = None,
    max_budget_usd: Annotated[float | None, typer.Option(help="Spend cap for this task.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Run-time limit in seconds.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one task and print its result: through a running worker if there is one,
    otherwise in this process."""
    settings = _settings(config, store=store)
    overrides = _overrides(model, max_turns, permission_mode, max_budget_usd)

    async def go() -> TaskRecord:
        async with _executing_pool(settings) as pool:
            try:
                task_id = await pool.submit(prompt, overrides, timeout=timeout)
            except ValueError as exc:
                _fail(str(exc), EXIT_USAGE)
            return await _wait_with_progress(pool, task_id, None, as_json)

    record = _run(go())
    _show_record(record, as_json)
    raise typer.Exit(_exit_for(record))

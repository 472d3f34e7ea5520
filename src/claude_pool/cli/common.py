"""What every ``claude-pool`` command shares: exit codes, the two consoles, common options, and
the helpers that load settings, open a pool, run a command's coroutine and show a task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from claude_pool.config import Settings, load_settings
from claude_pool.errors import (
    BudgetExhausted,
    ClaudePoolError,
    ConfigError,
    NoSlotAvailable,
    PoolShutdown,
    TaskNotFound,
)
from claude_pool.events import Event, describe
from claude_pool.pool import Pool
from claude_pool.skills import SkillRegistry
from claude_pool.types import (
    TaskOverrides,
    TaskRecord,
    TaskState,
    microdollars_to_usd,
    now_ms,
)

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_TIMEOUT = 5

# Text is never hard-wrapped: a message a script or a log reads stays on one line, whatever the
# terminal width or the length of a path in it (tables still fit the width they are given).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_T = TypeVar("_T")

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store: a SQLite file, ':memory:' (default: ./claude-pool.db)."),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="TOML config file (default: ./claude-pool.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

# The task options of the commands that run skills, workflows and routed requests.
ModelOpt = Annotated[str | None, typer.Option(help="Model for the task(s).")]
MaxTurnsOpt = Annotated[int | None, typer.Option(help="Turn limit per task.")]
PermissionOpt = Annotated[str | None, typer.Option(help="Permission mode for the task(s).")]
BudgetOpt = Annotated[float | None, typer.Option(help="Spend cap per task, in USD.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")]


def _settings(config: str | None, **explicit: Any) -> Settings:
    try:
        return load_settings(config, **explicit)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _usage(message: str) -> NoReturn:
    _fail(message, EXIT_USAGE)


def _not_found(message: str) -> NoReturn:
    _fail(message, EXIT_NOT_FOUND)


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(coro)
    except TaskNotFound as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except (BudgetExhausted, NoSlotAvailable, PoolShutdown) as exc:
        _fail(str(exc), EXIT_REFUSED)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ClaudePoolError as exc:
        _fail(str(exc), EXIT_TASK_FAILED)


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[Pool]:
    """A pool with no slots: it queues, inspects and cancels, while workers execute."""
    pool = Pool(settings=settings, slots=0, store=settings.store)
    await pool.open()
    try:
        yield pool
    finally:
        await pool.close()


def _executing_pool(settings: Settings) -> AbstractAsyncContextManager[Pool]:
    """A pool to run work through: the live worker's, or one slot of this process's own that
    takes only the work submitted here (the engine decides: ``Pool.connect``)."""
    return Pool.connect(settings)


def _registry(settings: Settings) -> SkillRegistry:
    """The skills of the working directory (``--config``'s ``cwd``, else the current
    directory): built-in, global (``~/.claude-pool/skills``) and project
    (``.claude-pool/skills``)."""
    return SkillRegistry.for_project(Path(settings.cwd) if settings.cwd else None)


def _overrides(
    model: str | None,
    max_turns: int | None,
    permission_mode: str | None,
    max_budget_usd: float | None,
) -> TaskOverrides | None:
    values = {
        "model": model,
        "max_turns": max_turns,
        "permission_mode": permission_mode,
        "max_budget_usd": max_budget_usd,
    }
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return None
    try:
        return TaskOverrides.model_validate(given)
    except ValueError as exc:
        _fail(f"invalid task option: {exc}", EXIT_USAGE)


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _exit_for(record: TaskRecord) -> int:
    if record.state is TaskState.COMPLETED or record.state is TaskState.PENDING_REVIEW:
        return EXIT_OK
    if record.state in (TaskState.PENDING, TaskState.RUNNING):
        return EXIT_TIMEOUT
    return EXIT_TASK_FAILED


def _show_record(record: TaskRecord, as_json: bool) -> None:
    if as_json:
        _print_json(record.model_dump(mode="json"))
        return
    result = record.result
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(
        record.state, "cyan"
    )
    out.print(f"[bold]{record.id}[/] [{colour}]{record.state}[/]")
    if result is not None:
        out.print(result.output, markup=False, highlight=False)
        out.print(
            f"[dim]cost ${microdollars_to_usd(result.cost_microdollars):.6f} · "
            f"{result.turns_used} turns · {result.elapsed_ms} ms · {result.model or '-'}[/]"
        )


async def _wait_with_progress(
    pool: Pool, task_id: str, timeout: float | None, quiet: bool
) -> TaskRecord:
    """Wait for a task; on a terminal, show its latest event (the engine's one-line
    description) and the time it has taken."""
    if quiet or not err.is_terminal:
        return await pool.wait(task_id, timeout)
    return await _showing_events(
        pool, task_id, pool.wait(task_id, timeout), lambda e: e.task_id == task_id
    )


_QUIET_EVENTS = frozenset({"task_turn", "spend_recorded"})


async def _showing_events(
    pool: Pool, label: str, work: Awaitable[_T], about: Callable[[Event], bool]
) -> _T:
    """Await ``work`` under a status line showing the latest event it is ``about`` (the
    engine's one-line description) and the time taken so far."""
    started = now_ms()
    latest = ["waiting"]

    def on_event(event: Event) -> None:
        if about(event) and event.type not in _QUIET_EVENTS:
            latest[0] = describe(event)

    remove = pool.add_listener(on_event)
    try:
        with err.status(label) as status:
            waiter = asyncio.ensure_future(work)
            while not waiter.done():
                secs = (now_ms() - started) / 1000
                status.update(Text(f"{label} {secs:.0f}s · {latest[0][:100]}"))
                # Only the clock needs this tick: what happens comes from the events above.
                await asyncio.wait({waiter}, timeout=0.5)
            return waiter.result()
    finally:
        remove()

"""What every ``claude-pool`` command shares: exit codes, the two consoles, common options, and
the helpers that load settings, open a pool, run a command's coroutine (and stop it on Ctrl-C)
and show a task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from claude_pool.config import Settings, load_settings
from claude_pool.errors import (
    BudgetExhausted,
    ChainNotFound,
    ClaudePoolError,
    ConfigError,
    InvalidTaskState,
    NoSlotAvailable,
    PoolShutdown,
    StoreNotFound,
    TaskNotFound,
)
from claude_pool.events import Event, describe
from claude_pool.pool import Pool
from claude_pool.queue import PRIORITY_LIMIT
from claude_pool.skills import SkillRegistry
from claude_pool.store import open_store, store_file
from claude_pool.types import (
    PermissionMode,
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
EXIT_INTERRUPTED = 130
"""Ctrl-C: what a shell reports for a command ended by SIGINT (128 + 2)."""

# Text is never hard-wrapped: a message a script or a log reads stays on one line, whatever the
# terminal width or the length of a path in it (tables still fit the width they are given).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

_T = TypeVar("_T")

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store: a SQLite file, ':memory:' or a postgresql:// URL (default: ./claude-pool.db).",
    ),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="TOML config file (default: ./claude-pool.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

# The HTTP options of `serve --http` and `worker --http`.
HostOpt = Annotated[
    str | None,
    typer.Option(help="HTTP address; other than loopback needs a token (default 127.0.0.1)."),
]
PortOpt = Annotated[int | None, typer.Option(min=0, max=65535, help="HTTP port (default 8765).")]
AllowedHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        help="Another name clients may reach the HTTP server by (Host header; repeatable). "
        "Accepted anyway: the bound address, loopback names, and beyond loopback this "
        "machine's names.",
    ),
]

# The task options of the commands that run tasks, skills, workflows and routed requests.
ModelOpt = Annotated[str | None, typer.Option(help="Model for the task(s).")]
MaxTurnsOpt = Annotated[int | None, typer.Option(min=1, help="Turn limit per task.")]
PermissionOpt = Annotated[
    PermissionMode | None, typer.Option(help="Permission mode for the task(s).")
]
BudgetOpt = Annotated[
    float | None, typer.Option(min=0, help="Spend cap per task, in USD (more than 0).")
]
TimeoutOpt = Annotated[
    float | None, typer.Option(min=0, help="Run-time limit per task, in seconds (more than 0).")
]
PriorityOpt = Annotated[
    int,
    typer.Option(
        min=-PRIORITY_LIMIT,
        max=PRIORITY_LIMIT,
        help=f"Higher runs first ({-PRIORITY_LIMIT:,} to {PRIORITY_LIMIT:,}).",
    ),
]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Tag (repeatable).")]
AfterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--after",
        metavar="ID",
        help=(
            "Run only after this task has completed (repeatable). The prompt may use "
            "{{ID.output}} for its output."
        ),
    ),
]
RunAnywayOpt = Annotated[
    bool,
    typer.Option(
        "--run-anyway",
        help="Run even if a task named by --after fails or is cancelled (default: cancel).",
    ),
]
ContinueOpt = Annotated[
    bool,
    typer.Option(
        "--continue",
        help="Continue the slot's previous conversation (default: a fresh conversation, so "
        "one command's work never sees another's).",
    ),
]


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
    except (TaskNotFound, ChainNotFound) as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except (BudgetExhausted, NoSlotAvailable, PoolShutdown, InvalidTaskState) as exc:
        _fail(str(exc), EXIT_REFUSED)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    except ClaudePoolError as exc:
        _fail(str(exc), EXIT_TASK_FAILED)


def _require_store(settings: Settings) -> None:
    """Fail (exit 3) when the settings' store is a file that does not exist, before anything
    would create it: a command that only reads or changes what is stored has nothing to do
    there, and an empty store made by a typo in ``--store`` helps nobody."""
    try:
        path = store_file(settings.store)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    if path is not None and not path.exists():
        _fail(
            f"no store at {path}; nothing has been queued there (run a command that submits "
            "work, or pass --store)",
            EXIT_NOT_FOUND,
        )


@asynccontextmanager
async def _client(settings: Settings, *, existing: bool = False) -> AsyncIterator[Pool]:
    """A pool with no slots: it queues, inspects and cancels, while workers execute. With
    ``existing``, only on a store that is already there (see :func:`_require_store`)."""
    if existing:
        _require_store(settings)
    # Only where a store is already: nothing is set up on PostgreSQL either.
    pool = Pool(settings=settings, slots=0, store=open_store(settings.store, create=not existing))
    try:
        await pool.open()
    except StoreNotFound as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
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


_OPTION_OF_FIELD = {
    "model": "--model",
    "max_turns": "--max-turns",
    "permission_mode": "--permission-mode",
    "max_budget_usd": "--max-budget-usd",
}


def _overrides(
    model: str | None,
    max_turns: int | None,
    permission_mode: PermissionMode | None,
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
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        option = _OPTION_OF_FIELD.get(field, field)
        reason = str(error["msg"]).replace("Input should be", "must be", 1)
        _usage(f"{option} {error['input']!r}: {reason}")


_WIDE = 100_000


def _print_table(table: Table, width: int | None = None) -> None:
    """Print ``table`` as wide as its content needs (or ``width``), whatever the console's
    width: its columns are never squeezed, so nothing in them is cut, and the output is the
    same on any terminal, pipe or file. (A terminal narrower than that wraps the lines.)"""
    if width is None:
        width = Measurement.get(out, out.options.update_width(_WIDE), table).maximum
    Console(width=width, soft_wrap=True).print(table)


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
    kind = " (its plan awaits approval)" if record.review_kind == "plan" else ""
    out.print(f"[bold]{record.id}[/] [{colour}]{record.state}[/]{kind}")
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


async def _interruptible(
    work: Awaitable[_T], on_interrupt: Callable[[], Awaitable[object]] | None = None
) -> tuple[_T | None, bool]:
    """Await ``work`` and say whether Ctrl-C (SIGINT) interrupted it.

    The first Ctrl-C calls ``on_interrupt`` (cancel the task or chain: its spend is kept, its
    process stopped) and then waits for ``work``, which that ends promptly; without
    ``on_interrupt`` it cancels ``work`` itself (whose own cleanup cancels its tasks) and gives
    None. A second Ctrl-C, while that happens, exits at once with 130 (the CLI processes die
    with this one, their tools with its watchdog)."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_sigint() -> None:
        if interrupted.is_set():
            err.print("interrupted again: stopping now", highlight=False)
            os._exit(EXIT_INTERRUPTED)
        interrupted.set()

    waiter = asyncio.ensure_future(work)
    trigger = asyncio.ensure_future(interrupted.wait())
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        await asyncio.wait({waiter, trigger}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            return waiter.result(), False
        err.print("interrupted: cancelling (Ctrl-C again to stop at once)", highlight=False)
        if on_interrupt is not None:
            await on_interrupt()
            return await waiter, True
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        return None, True
    finally:
        trigger.cancel()
        if not waiter.done():
            waiter.cancel()
        loop.remove_signal_handler(signal.SIGINT)


async def _follow_task(pool: Pool, task_id: str, quiet: bool) -> tuple[TaskRecord, bool]:
    """Wait for a task this command submitted, showing its progress on a terminal; Ctrl-C
    cancels it. Its record, and whether Ctrl-C was pressed."""
    record, interrupted = await _interruptible(
        _wait_with_progress(pool, task_id, None, quiet), lambda: pool.cancel(task_id)
    )
    assert record is not None  # with on_interrupt, the wait itself gives the record
    return record, interrupted


def _end_with_task(record: TaskRecord, interrupted: bool, as_json: bool) -> NoReturn:
    """Show the task a command ran and exit as it ended: 130 when Ctrl-C cancelled it, saying
    so (and what it spent) on stderr."""
    cancelled = interrupted and record.state is TaskState.CANCELLED
    if cancelled:
        spent = record.result.cost_microdollars if record.result else 0
        err.print(
            f"cancelled: {record.id} (spent ${microdollars_to_usd(spent):.6f})", highlight=False
        )
    _show_record(record, as_json)
    raise typer.Exit(EXIT_INTERRUPTED if cancelled else _exit_for(record))

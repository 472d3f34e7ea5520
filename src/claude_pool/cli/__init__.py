"""The ``claude-pool`` command line: a thin face over :class:`claude_pool.Pool`.

Every command works against one store (a SQLite file in the working directory by default), so a
``claude-pool worker`` in one shell runs what ``claude-pool submit`` queues from another.

Exit codes: 0 success; 1 the task failed or was cancelled; 2 bad usage or configuration;
3 no such task; 4 refused (budget exhausted, no slot available, pool shut down); 5 still not
finished when the wait timed out.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from claude_pool.config import TOKENS_ENV_VAR, Settings, load_settings
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
from claude_pool.types import (
    Effort,
    PermissionMode,
    SlotMode,
    TaskFilter,
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

app = typer.Typer(
    name="claude-pool",
    help="Run many Claude Code sessions as one managed pool.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


def _settings(config: str | None, **explicit: Any) -> Settings:
    try:
        return load_settings(config, **explicit)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


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
    started = now_ms()
    latest = ["waiting"]

    def on_event(event: Event) -> None:
        if event.task_id == task_id and event.type not in ("task_turn", "spend_recorded"):
            latest[0] = describe(event, subject=False)

    remove = pool.add_listener(on_event)
    try:
        with err.status(task_id) as status:
            waiter = asyncio.ensure_future(pool.wait(task_id, timeout))
            while not waiter.done():
                secs = (now_ms() - started) / 1000
                status.update(Text(f"{task_id} {secs:.0f}s · {latest[0][:100]}"))
                # Only the clock needs this tick: what happens comes from the events above.
                await asyncio.wait({waiter}, timeout=0.5)
            return waiter.result()
    finally:
        remove()


# ── commands ────────────────────────────────────────────────────────


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def status(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show slots, queue and spend."""
    settings = _settings(config, store=store)

    async def go() -> dict[str, Any]:
        async with _client(settings) as pool:
            st = await pool.status()
            slots = await pool.store.list_slots()
            data = st.model_dump(mode="json")
            data["slots"] = [s.model_dump(mode="json") for s in slots]
            return data

    data = _run(go())
    if as_json:
        _print_json(data)
        return
    table = Table(title="slots")
    for name in ("slot", "state", "name/role", "task", "done", "cost $"):
        table.add_column(name, no_wrap=True)
    for s in data["slots"]:
        cfg = s["config"]
        table.add_row(
            s["id"],
            s["state"],
            cfg.get("name") or cfg.get("role") or "-",
            s["current_task"] or "-",
            str(s["tasks_completed"]),
            f"{microdollars_to_usd(s['cost_microdollars']):.4f}",
        )
    out.print(table)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(data["tasks"].items())) or "no tasks"
    out.print(f"tasks: {counts}")
    budget = data["budget_microdollars"]
    spent = microdollars_to_usd(data["spend_microdollars"])
    limit = f" of ${microdollars_to_usd(budget):.4f}" if budget is not None else ""
    out.print(f"spend: ${spent:.6f}{limit}")


@app.command()
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


def _executing_pool(settings: Settings) -> AbstractAsyncContextManager[Pool]:
    """A pool to run work through: the live worker's, or one slot of this process's own that
    takes only the work submitted here (the engine decides: ``Pool.connect``)."""
    return Pool.connect(settings)


@app.command()
def worker(
    slots: Annotated[int | None, typer.Option(help="Number of slots.")] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    permission_mode: Annotated[str | None, typer.Option(help="Default permission mode.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a pool that executes whatever is queued in the store until SIGINT/SIGTERM, which
    drain it (running tasks finish within the grace period)."""
    settings = _settings(
        config, store=store, slots=slots, model=model, permission_mode=permission_mode
    )
    _run(_worker(settings))


async def _worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = Pool(settings=settings, store=settings.store)
    async with pool:
        err.print(
            f"[bold]claude-pool worker[/] {pool.worker_id}: {len(pool.slots)} slot(s) on "
            f"{settings.store}; Ctrl-C drains"
        )
        await stop.wait()
        err.print("draining...")
        summary = await pool.drain()
        err.print(
            f"drained: {summary.tasks_finished} finished, {summary.tasks_cancelled} cancelled, "
            f"{summary.tasks_left_pending} left queued"
        )


# ── serve: the MCP server ───────────────────────────────────────────


def _read_mcp_config(path: str) -> dict[str, Any]:
    """The servers of an MCP config file (``{"mcpServers": {...}}`` as in .mcp.json, or the
    bare mapping of servers by name)."""
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read the MCP config file {path}: {exc.strerror or exc}", EXIT_USAGE)
    except ValueError as exc:
        _fail(f"the MCP config file {path} is not valid JSON: {exc}", EXIT_USAGE)
    servers = data.get("mcpServers", data) if isinstance(data, dict) else None
    if not isinstance(servers, dict) or not all(isinstance(v, dict) for v in servers.values()):
        _fail(
            f'the MCP config file {path} must hold {{"mcpServers": {{"name": {{...}}}}}}, '
            "as .mcp.json does",
            EXIT_USAGE,
        )
    return servers


@app.command()
def serve(
    http: Annotated[
        bool | None,
        typer.Option(
            "--http/--stdio",
            help="Serve streamable HTTP (at /mcp) instead of stdio (default: stdio).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="HTTP address; other than loopback needs --token (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="HTTP port (default 8765).")
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            "--token",
            help=f"Bearer token HTTP clients must send (repeatable; replaces ${TOKENS_ENV_VAR}, "
            "which holds them comma-separated).",
        ),
    ] = None,
    slots: Annotated[int | None, typer.Option(min=0, help="Initial number of slots.")] = None,
    min_slots: Annotated[int | None, typer.Option(min=0, help="Fewest slots.")] = None,
    max_slots: Annotated[int | None, typer.Option(min=1, help="Most slots.")] = None,
    auto_scale: Annotated[
        bool | None,
        typer.Option("--auto-scale/--no-auto-scale", help="Grow and shrink with the queue."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    fallback_model: Annotated[
        str | None, typer.Option(help="Model to use when the default is overloaded.")
    ] = None,
    permission_mode: Annotated[
        PermissionMode | None, typer.Option(help="Default permission mode (default: plan).")
    ] = None,
    effort: Annotated[Effort | None, typer.Option(help="Default reasoning effort.")] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="Appended to every task's system prompt.")
    ] = None,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Default turn limit.")] = None,
    allowed_tool: Annotated[
        list[str] | None,
        typer.Option("--allowed-tool", help="Tool every slot may use (repeatable)."),
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option(min=0, help="Hard cap on the pool's total spend, in USD.")
    ] = None,
    worktree_isolation: Annotated[
        bool | None,
        typer.Option(
            "--worktree-isolation/--no-worktree-isolation",
            help="Give each slot its own git worktree.",
        ),
    ] = None,
    mcp_config: Annotated[
        str | None,
        typer.Option("--mcp-config", help="JSON file of MCP servers the slots get (.mcp.json)."),
    ] = None,
    strict_mcp_config: Annotated[
        bool | None,
        typer.Option(
            "--strict-mcp-config/--no-strict-mcp-config",
            help="Slots use only the pool's MCP servers, not the project's (default: strict).",
        ),
    ] = None,
    unattended: Annotated[
        bool | None,
        typer.Option(
            "--unattended/--no-unattended", help="Default permission mode dontAsk, not plan."
        ),
    ] = None,
    task_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Default per-task time limit in seconds.")
    ] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory of the slots.")] = None,
    slot_mode: Annotated[
        SlotMode | None,
        typer.Option(help="persistent: a slot keeps its session; ephemeral: fresh per task."),
    ] = None,
    max_restarts: Annotated[
        int | None, typer.Option(min=0, help="Restarts of a crashed slot before it is dropped.")
    ] = None,
    slot_assignment_timeout: Annotated[
        int | None,
        typer.Option(min=0, help="Seconds a task waits for a targeted slot to be free."),
    ] = None,
    supervisor: Annotated[
        bool | None,
        typer.Option(
            "--supervisor/--no-supervisor", help="Watch slots and restart stuck or dead ones."
        ),
    ] = None,
    supervisor_interval: Annotated[
        int | None, typer.Option(min=1, help="Seconds between supervisor checks.")
    ] = None,
    drain_grace: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds running tasks may finish when the server stops."),
    ] = None,
    recovery: Annotated[
        str | None,
        typer.Option(
            help="Tasks left running by a pool that died: requeue (default) or fail them."
        ),
    ] = None,
    worktree_base_dir: Annotated[
        str | None, typer.Option(help="Where slot and chain git worktrees are made.")
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="Log level on stderr (debug, info, warning, error).")
    ] = "warning",
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the pool as an MCP server: stdio for a Claude Code session (add it with
    `claude mcp add claude-pool -- claude-pool serve`), or streamable HTTP with --http.
    Stops when the client disconnects (stdio) or on Ctrl-C/SIGTERM, draining the pool.
    Every option can also come from the config file or CLAUDE_POOL_* variables (flags win);
    bearer tokens only from --token or $CLAUDE_POOL_TOKENS."""
    from claude_pool.mcp import check_http_binding
    from claude_pool.mcp import serve as serve_mcp

    level = log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        _fail(f"--log-level {log_level!r}: use debug, info, warning or error", EXIT_USAGE)
    explicit: dict[str, Any] = {
        "http": http,
        "host": host,
        "port": port,
        "tokens": token or None,
        "store": store,
        "slots": slots,
        "scaling_min_slots": min_slots,
        "scaling_max_slots": max_slots,
        "auto_scale": auto_scale,
        "model": model,
        "fallback_model": fallback_model,
        "permission_mode": permission_mode,
        "effort": effort,
        "system_prompt": system_prompt,
        "max_turns": max_turns,
        "allowed_tools": allowed_tool,
        "budget_usd": budget_usd,
        "worktree_isolation": worktree_isolation,
        "mcp_servers": _read_mcp_config(mcp_config) if mcp_config else None,
        "strict_mcp_config": strict_mcp_config,
        "unattended_mode": unattended,
        "task_timeout_secs": task_timeout,
        "cwd": cwd,
        "slot_mode": slot_mode,
        "max_restarts": max_restarts,
        "slot_assignment_timeout_secs": slot_assignment_timeout,
        "supervisor_enabled": supervisor,
        "supervisor_interval_secs": supervisor_interval,
        "drain_grace_secs": drain_grace,
        "recovery": recovery,
        "worktree_base_dir": worktree_base_dir,
    }
    settings = _settings(config, **explicit)
    if settings.http:
        try:
            check_http_binding(settings.host, [t.get_secret_value() for t in settings.tokens])
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
    summary = _run(serve_mcp(settings, log_level=level))  # type: ignore[arg-type]  # checked
    err.print(
        f"claude-pool serve stopped: {summary.tasks_finished} task(s) finished, "
        f"{summary.tasks_cancelled} cancelled, {summary.tasks_left_pending} left queued; "
        f"spent ${microdollars_to_usd(summary.total_spend_microdollars):.4f}"
    )


# ── doctor and demo ─────────────────────────────────────────────────


@app.command()
def doctor(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check that this machine can run a pool: the claude CLI and its version, credentials,
    git, the store, node/npm. Exit 1 when something must be fixed."""
    from claude_pool.doctor import Status, print_report, run_checks

    settings: Settings | None = None
    problem: str | None = None
    try:
        settings = load_settings(config, store=store)
    except ConfigError as exc:
        problem = str(exc)
    checks = asyncio.run(run_checks(settings, config_error=problem))
    if as_json:
        ok = all(c.status is not Status.FAIL for c in checks)
        _print_json({"ok": ok, "checks": [c.to_json() for c in checks]})
    else:
        print_report(checks, out)
    raise typer.Exit(EXIT_TASK_FAILED if any(c.status is Status.FAIL for c in checks) else EXIT_OK)


@app.command()
def demo(
    mock: Annotated[
        bool | None,
        typer.Option(
            "--mock/--real",
            help="Use the built-in mock Anthropic API, or the real one (default: the real API "
            "when ANTHROPIC_API_KEY is set).",
        ),
    ] = None,
    slots: Annotated[int, typer.Option(min=1, max=8, help="Number of slots.")] = 3,
    budget_usd: Annotated[float, typer.Option(min=0.01, help="Spend cap in USD.")] = 1.0,
    model: Annotated[str | None, typer.Option(help="Model (real API only).")] = None,
    keep: Annotated[bool, typer.Option(help="Keep the demo's project directory.")] = False,
) -> None:
    """Watch a pool of real Claude Code slots work: a fan-out of reviews, a two-step chain and
    a task through the review gate, then spend and metrics. Needs no API key (it uses the
    built-in mock API without one)."""
    from claude_pool.demo import DemoOptions, run_demo

    options = DemoOptions(
        mock=mock, slots=slots, budget_usd=budget_usd, model=model, keep_project=keep
    )
    raise typer.Exit(_run(run_demo(options, out)))


# ── skills, workflows, auto (claude_pool.cli.skills) ────────────────

from claude_pool.cli.skills import attach as _attach_skill_commands  # noqa: E402

_attach_skill_commands(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)

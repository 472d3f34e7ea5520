"""``claude-pool serve``: the pool as an MCP server, over stdio or streamable HTTP."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from claude_pool.cli.common import (
    EXIT_USAGE,
    AllowedHostOpt,
    ConfigOpt,
    HostOpt,
    PortOpt,
    StoreOpt,
    _fail,
    _run,
    _settings,
)
from claude_pool.cli.logs import LogFormat, LogFormatOpt, LogLevel, LogLevelOpt, configure_logging
from claude_pool.config import TOKENS_ENV_VAR, parse_tokens
from claude_pool.errors import ConfigError
from claude_pool.types import Effort, PermissionMode, SlotMode, microdollars_to_usd

log = logging.getLogger(__name__)


def _read_mcp_config(path: str) -> dict[str, Any]:
    """The servers of an MCP config file (``{"mcpServers": {...}}`` as in .mcp.json, or the
    bare mapping of servers by name)."""
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


def _read_token_file(path: str) -> list[str]:
    """The tokens in a file: separated by newlines, commas or spaces."""
    try:
        tokens = parse_tokens(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read the token file {path}: {exc}", EXIT_USAGE)
    if not tokens:
        _fail(f"the token file {path} holds no token", EXIT_USAGE)
    return tokens


def serve(
    http: Annotated[
        bool | None,
        typer.Option(
            "--http/--stdio",
            help="Serve HTTP instead of stdio (default: stdio): MCP at /mcp, the dashboard at /, "
            "the REST API at /api/v1, Prometheus metrics at /metrics.",
        ),
    ] = None,
    host: HostOpt = None,
    port: PortOpt = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            help="File of bearer tokens HTTP clients must send (one a line). Replaces "
            f"${TOKENS_ENV_VAR}, which holds them comma-separated; both keep them out of `ps`.",
        ),
    ] = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            "--token",
            help="Bearer token HTTP clients must send (repeatable; with --token-file, either "
            f"is accepted; replaces ${TOKENS_ENV_VAR}). Every user of this machine can read it "
            "in `ps`: prefer --token-file or the environment.",
        ),
    ] = None,
    allowed_host: AllowedHostOpt = None,
    slots: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Initial number of slots. 0: a server that only queues, for `claude-pool "
            "worker`s on the same store to run (the slot floor, --min-slots, is then 0 too).",
        ),
    ] = None,
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
    log_level: LogLevelOpt = LogLevel.WARNING,
    log_format: LogFormatOpt = LogFormat.TEXT,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Serve the pool as an MCP server, over stdio or HTTP (with the dashboard and REST API).

    stdio serves one Claude Code session (add it with `claude mcp add claude-pool --
    claude-pool serve`); --http serves many. It stops when the client disconnects (stdio) or
    on Ctrl-C/SIGTERM, draining the pool. Every option can also come from the config file or
    CLAUDE_POOL_* variables (flags win); bearer tokens only from --token-file, --token or
    $CLAUDE_POOL_TOKENS, never from the config file."""
    from claude_pool.mcp import check_http_binding
    from claude_pool.mcp import serve as serve_mcp

    tokens = [*(token or ()), *(_read_token_file(token_file) if token_file else ())]
    explicit: dict[str, Any] = {
        "http": http,
        "host": host,
        "port": port,
        "tokens": tokens or None,
        "allowed_hosts": allowed_host or None,
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
    configure_logging(log_level, log_format)
    # LogLevel's values, upper-cased, are the MCP server's level names.
    level: Any = log_level.upper()
    if settings.http:
        from claude_pool.web.server import serve_http

        summary = _run(serve_http(settings, log_level=level))
    else:
        summary = _run(serve_mcp(settings, log_level=level))
    # Said at the level the server said where it listens: both frame its life in the log.
    log.warning(
        "claude-pool serve stopped: %d task(s) finished, %d cancelled, %d left queued; spent $%.4f",
        summary.tasks_finished,
        summary.tasks_cancelled,
        summary.tasks_left_pending,
        microdollars_to_usd(summary.total_spend_microdollars),
    )

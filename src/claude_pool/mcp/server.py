"""``claude-pool serve``: the pool's operations as an MCP server (stdio or streamable HTTP).

:func:`build_server` puts tools and resources for one :class:`Pool` on an ``MCPServer`` (the
official SDK's high-level server); :func:`serve` opens a pool from settings, serves it until
the client goes away or a signal arrives, and drains the pool on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from claude_pool import __version__
from claude_pool.config import Settings
from claude_pool.errors import ConfigError
from claude_pool.executor.base import Executor
from claude_pool.mcp.auth import (
    BearerTokenMiddleware,
    host_header_values,
    host_names,
    is_loopback,
)
from claude_pool.mcp.resources import POOL_RESOURCE_GROUPS, ResourceGroup
from claude_pool.mcp.tooling import ToolGroup
from claude_pool.mcp.tools import TOOL_GROUPS
from claude_pool.pool import DrainSummary, Pool

log = logging.getLogger(__name__)

SERVER_NAME = "claude-pool"
MCP_PATH = "/mcp"
DEFAULT_PORT = 8765
_SHUTDOWN_SECS = 10

DEFAULT_TOOL_GROUPS: tuple[ToolGroup, ...] = TOOL_GROUPS
"""The engine's tools, then chains (with pool://chains/{id}), skills (also as prompts),
workflows and routing (see :mod:`claude_pool.mcp.tools`)."""

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

INSTRUCTIONS = """\
claude-pool runs background Claude Code sessions ("slots") for you. Hand work to them and
collect the results; each task runs in a slot's own Claude Code session.

How to use it well:
- Parallel work: pool_submit each independent piece (you get task ids at once), keep working,
  then pool_result(task_id, wait=true) for each. For a batch of independent prompts that you
  want back together, pool_fan_out runs them side by side and returns one item per prompt
  (a failure in one never loses the others). pool_run is for a single task you must wait for.
- Prompts must stand alone: a slot does not see your conversation. Say which files, what to
  do, and what to answer with. Shared facts every task needs (conventions, paths, decisions)
  go in context_set once instead of into every prompt.
- Budget: tasks cost money. pool_status and pool://budget show spend and budget (in
  microdollars, 1 USD = 1,000,000); overrides.max_budget_usd caps one task. When the pool
  budget is spent, new work is refused.
- Permissions: slots default to plan mode (read-only). To let a task edit files, pass
  overrides.permission_mode="acceptEdits" (or allowed_tools for specific tools).
- Quality gate: pool_submit_with_review holds the result in pending_review; read it, then
  pool_approve_result, or pool_reject_result with concrete feedback to have it redone.
- Targeting: pool_configure_slot gives slots names and roles (e.g. role "reviewer" with its own
  system prompt); pool_submit(role=...) or name=/slot= sends work to them. A slot continues its
  previous conversation; pass fresh_session=true for unrelated work.
- Messages: pool_send_message / pool_broadcast leave notes that reach a slot with its next task.
- Claiming: pool_claim takes a queued task for you to do yourself (atomically, so no slot runs
  it too); report it with pool_complete_claimed.
- Capacity: pool_scale_up / pool_scale_down / pool_set_target_slots change the number of slots.
  pool_cancel stops a task. pool_drain stops the whole pool for good: only when asked.
- Staged work: pool_chain runs ordered steps (later steps get {previous_output} and earlier
  steps' output_vars); pool_invoke_workflow runs a named one (pool_workflow_list). Skills
  (pool_skill_list) are ready-made prompts: pool_skill_run runs one on a slot. pool_auto lets
  the pool decide between one task, parallel tasks and a chain.
- Failed tasks are results (success=false with the reason), not tool errors; a tool error
  means the call itself was wrong and says how to fix it.
"""


def build_server(
    pool: Pool,
    *,
    name: str = SERVER_NAME,
    instructions: str = INSTRUCTIONS,
    tool_groups: Iterable[ToolGroup] = DEFAULT_TOOL_GROUPS,
    resource_groups: Iterable[ResourceGroup] = POOL_RESOURCE_GROUPS,
    log_level: LogLevel = "WARNING",
) -> MCPServer[Any]:
    """An MCP server whose tools and resources act on ``pool`` (which the caller opens and
    closes). Add tool groups (e.g. chains, skills) by passing more ``tool_groups``."""
    server: MCPServer[Any] = MCPServer(
        name,
        title="claude-pool",
        description="A pool of background Claude Code sessions behind one queue.",
        instructions=instructions,
        version=__version__,
        log_level=log_level,
    )
    for register in tool_groups:
        register(server, pool)
    for register_resources in resource_groups:
        register_resources(server, pool)
    return server


def check_http_binding(host: str, tokens: Sequence[str]) -> None:
    """Refuse an empty bearer token, and to expose the pool beyond this machine without one."""
    if any(not token.strip() for token in tokens):
        raise ConfigError(
            "tokens",
            "<hidden>",
            "a bearer token is empty (an empty --token, or a blank one in the token file); "
            "give a real token, or none on a loopback address",
        )
    if not tokens and not is_loopback(host):
        raise ConfigError(
            "host",
            host,
            "serving on a non-loopback address needs a bearer token, since anyone who can reach "
            "it could spend your budget; pass --token-file (or set CLAUDE_POOL_TOKENS, or pass "
            "--token), or bind 127.0.0.1",
        )


def http_app(
    server: MCPServer[Any],
    *,
    host: str = "127.0.0.1",
    tokens: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
) -> ASGIApp:
    """The streamable HTTP app (at ``/mcp``), behind bearer-token checks when tokens are given.

    Requests must name one of :func:`host_names` in their ``Host`` header (and, from a browser,
    come from such an origin): the SDK's DNS-rebinding protection, on every address."""
    names = host_names(host, allowed_hosts)
    values = host_header_values(names)
    origins = [f"{scheme}://{value}" for value in values for scheme in ("http", "https")]
    security = TransportSecuritySettings(allowed_hosts=values, allowed_origins=origins)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH, host=host, transport_security=security
    )
    return BearerTokenMiddleware(app, tokens) if tokens else app


class _HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling.

    uvicorn re-raises SIGINT/SIGTERM once it has shut down, which would end the process before
    the pool drains; :func:`serve` handles those signals itself instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(
    server: MCPServer[Any],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    tokens: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
) -> uvicorn.Server:
    """A uvicorn server for :func:`http_app`; ``await it.serve()`` (optionally on sockets you
    bound), set ``should_exit`` to stop it. It leaves signal handling to its caller."""
    check_http_binding(host, tokens)
    config = uvicorn.Config(
        http_app(server, host=host, tokens=tokens, allowed_hosts=allowed_hosts),
        host=host,
        port=port,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=_SHUTDOWN_SECS,
    )
    return _HttpServer(config)


@contextlib.contextmanager
def _on_signals(stop: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Call ``stop`` on SIGINT/SIGTERM while inside (where the loop supports signals)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop, sig)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _serve_http(
    server: uvicorn.Server, tokens: Sequence[str], allowed_hosts: Sequence[str]
) -> None:
    """Serve until SIGINT/SIGTERM (a second SIGINT skips waiting for open connections)."""

    def stop(sig: signal.Signals) -> None:
        if server.should_exit and sig is signal.SIGINT:
            server.force_exit = True
        server.should_exit = True

    with _on_signals(stop):
        config = server.config
        log.warning(
            "claude-pool MCP server on http://%s:%d%s (%s; Host: %s)",
            config.host,
            config.port,
            MCP_PATH,
            "bearer token required" if tokens else "no token: this machine only",
            ", ".join(host_names(config.host, allowed_hosts)),
        )
        await server.serve()


async def _serve_stdio(server: MCPServer[Any]) -> None:
    """Serve on stdin/stdout until the client closes stdin or SIGINT/SIGTERM arrives."""
    serving = asyncio.ensure_future(server.run_stdio_async())
    stopped = False

    def stop(sig: signal.Signals) -> None:
        nonlocal stopped
        stopped = True
        serving.cancel()

    with _on_signals(stop):
        try:
            await serving
        except asyncio.CancelledError:
            if not stopped:
                raise


async def serve(
    settings: Settings,
    transport: Literal["stdio", "http"] | None = None,
    host: str | None = None,
    port: int | None = None,
    tokens: Sequence[str] | None = None,
    *,
    executor: Executor | None = None,
    log_level: LogLevel = "WARNING",
) -> DrainSummary:
    """Open a pool from ``settings``, serve it over ``transport``, drain it on exit.

    ``transport``, ``host``, ``port`` and ``tokens`` default to the settings' ``http``,
    ``host``, ``port`` and ``tokens``; the ``Host`` names answered to are the settings'
    ``allowed_hosts`` besides the usual ones (:func:`~claude_pool.mcp.auth.host_names`). stdio
    ends when the client closes the stream; HTTP (uvicorn, streamable HTTP at ``/mcp``) ends on
    SIGINT/SIGTERM. Either way running tasks get the drain grace period, then the slots stop.
    Raises :class:`ConfigError` for a non-loopback HTTP host without a token, or an empty
    token.
    """
    if transport is None:
        transport = "http" if settings.http else "stdio"
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if tokens is None:
        tokens = [token.get_secret_value() for token in settings.tokens]
    if transport == "http":
        check_http_binding(host, tokens)
    pool = Pool(settings=settings, executor=executor)
    async with pool:
        server = build_server(pool, log_level=log_level)
        if transport == "http":
            allowed = settings.allowed_hosts
            http = http_server(server, host=host, port=port, tokens=tokens, allowed_hosts=allowed)
            await _serve_http(http, tokens, allowed)
        else:
            await _serve_stdio(server)
        return await pool.drain()

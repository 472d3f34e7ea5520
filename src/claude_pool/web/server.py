"""Serving the HTTP face with uvicorn: ``claude-pool serve --http`` (with MCP at ``/mcp``)
and ``claude-pool worker --http`` (the web face alone, to watch a batch worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp

from claude_pool.config import Settings
from claude_pool.executor.base import Executor
from claude_pool.mcp.auth import host_names
from claude_pool.mcp.server import LogLevel, build_server, check_http_binding, http_app
from claude_pool.pool import DrainSummary, Pool
from claude_pool.web.app import HttpFace, create_app

log = logging.getLogger(__name__)

SHUTDOWN_SECS = 10


class HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling (the caller drains the pool on signals), that
    calls ``on_started`` once it listens (so "listening on" is never said too early)."""

    def __init__(
        self, config: uvicorn.Config, on_started: Callable[[HttpServer], None] | None = None
    ) -> None:
        super().__init__(config)
        self.on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started(self)

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose, for port 0)."""
        for server in getattr(self, "servers", ()):
            for sock in server.sockets or ():
                return int(sock.getsockname()[1])
        return int(self.config.port)


def face_for(
    pool: Pool,
    *,
    host: str = "127.0.0.1",
    tokens: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    mcp: bool = True,
    log_level: LogLevel = "WARNING",
) -> HttpFace:
    """The whole HTTP face of ``pool``: the web app and, with ``mcp``, MCP at ``/mcp`` (both
    behind the same bind, token and Host rules)."""
    check_http_binding(host, tokens)
    mcp_app: ASGIApp | None = None
    if mcp:
        server = build_server(pool, log_level=log_level)
        mcp_app = http_app(server, host=host, tokens=tokens, allowed_hosts=allowed_hosts)
    return create_app(pool, host=host, tokens=tokens, allowed_hosts=allowed_hosts, mcp=mcp_app)


def http_server(face: HttpFace, *, host: str, port: int) -> HttpServer:
    """A uvicorn server for ``face``; ``await it.serve()``, set ``should_exit`` to stop it."""
    config = uvicorn.Config(
        face,
        host=host,
        port=port,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_SECS,
    )
    return HttpServer(config)


def announce(server: HttpServer, tokens: Sequence[str], allowed_hosts: Sequence[str]) -> None:
    """Log where ``server`` listens and what it serves (call it once it listens)."""
    config = server.config
    base = f"http://{config.host}:{server.port}"
    mcp = f"MCP server on {base}/mcp, " if getattr(config.app, "_mcp", None) is not None else ""
    log.warning(
        "claude-pool %sdashboard on %s/ (API /api/v1, metrics /metrics; %s; Host: %s)",
        mcp,
        base,
        "bearer token required" if tokens else "no token: this machine only",
        ", ".join(host_names(config.host, allowed_hosts)),
    )


@contextlib.contextmanager
def on_signals(stop: Callable[[signal.Signals], None]) -> Iterator[None]:
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


async def serve_face(
    face: HttpFace, server: HttpServer, tokens: Sequence[str], allowed: Sequence[str]
) -> None:
    """Serve until SIGINT/SIGTERM (a second SIGINT skips waiting for open connections)."""

    def stop(sig: signal.Signals) -> None:
        if server.should_exit and sig is signal.SIGINT:
            server.force_exit = True
        server.should_exit = True
        face.close()

    server.on_started = lambda started: announce(started, tokens, allowed)
    with on_signals(stop):
        try:
            await server.serve()
        finally:
            face.close()


async def serve_http(
    settings: Settings,
    *,
    executor: Executor | None = None,
    log_level: LogLevel = "WARNING",
) -> DrainSummary:
    """``claude-pool serve --http``: open a pool from ``settings``, serve MCP at ``/mcp`` and
    the web face beside it until SIGINT/SIGTERM, then drain the pool."""
    tokens = [token.get_secret_value() for token in settings.tokens]
    check_http_binding(settings.host, tokens)
    pool = Pool(settings=settings, executor=executor)
    async with pool:
        allowed = settings.allowed_hosts
        face = face_for(
            pool, host=settings.host, tokens=tokens, allowed_hosts=allowed, log_level=log_level
        )
        server = http_server(face, host=settings.host, port=settings.port)
        await serve_face(face, server, tokens, allowed)
        return await pool.drain()


__all__ = [
    "SHUTDOWN_SECS",
    "HttpServer",
    "announce",
    "face_for",
    "http_server",
    "on_signals",
    "serve_face",
    "serve_http",
]

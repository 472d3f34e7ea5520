"""``claude-pool worker``: a pool that runs what is queued in the store until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

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
from claude_pool.cli.serve import _read_token_file
from claude_pool.config import TOKENS_ENV_VAR, Settings
from claude_pool.errors import ConfigError
from claude_pool.pool import Pool
from claude_pool.types import PermissionMode

log = logging.getLogger(__name__)


def worker(
    slots: Annotated[int | None, typer.Option(min=1, help="Number of slots.")] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    permission_mode: Annotated[
        PermissionMode | None, typer.Option(help="Default permission mode.")
    ] = None,
    http: Annotated[
        bool | None,
        typer.Option(
            "--http/--no-http",
            help="Also serve the dashboard, REST API and /metrics over HTTP, to watch this "
            "worker (same bind and token rules as `serve --http`).",
        ),
    ] = None,
    host: HostOpt = None,
    port: PortOpt = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file",
            help=f"File of bearer tokens HTTP clients must send (replaces ${TOKENS_ENV_VAR}).",
        ),
    ] = None,
    allowed_host: AllowedHostOpt = None,
    log_level: LogLevelOpt = LogLevel.INFO,
    log_format: LogFormatOpt = LogFormat.TEXT,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a pool that executes whatever is queued in the store. SIGINT or SIGTERM drains it
    (running tasks finish within the grace period); each task's start and end is logged.
    With --http it also serves the dashboard and the REST API."""
    settings = _settings(
        config, store=store, slots=slots, model=model, permission_mode=permission_mode,
        http=http, host=host, port=port, allowed_hosts=allowed_host or None,
        tokens=_read_token_file(token_file) if token_file else None,
    )  # fmt: skip
    if settings.http:
        from claude_pool.mcp import check_http_binding

        try:
            check_http_binding(settings.host, [t.get_secret_value() for t in settings.tokens])
        except ConfigError as exc:
            _fail(str(exc), EXIT_USAGE)
    configure_logging(log_level, log_format)
    _run(_worker(settings))


async def _worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = Pool(settings=settings, store=settings.store)
    async with pool:
        log.info(
            "claude-pool worker %s: %d slot(s) on %s; Ctrl-C drains",
            pool.worker_id,
            len(pool.slots),
            settings.store,
            extra={"worker_id": pool.worker_id},
        )
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(pool.wait_failure())
        web = asyncio.ensure_future(_serve_web(pool, settings)) if settings.http else None
        waiters = {stopped, failed} | ({web} if web is not None else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopped, failed):
            waiter.cancel()
        if web is not None:
            web.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await web
        log.info("draining...", extra={"worker_id": pool.worker_id})
        summary = await pool.drain()
        log.info(
            "drained: %d finished, %d cancelled, %d left queued",
            summary.tasks_finished,
            summary.tasks_cancelled,
            summary.tasks_left_pending,
            extra={"worker_id": pool.worker_id},
        )
    if pool.failure is not None:
        raise typer.Exit(1)  # the failure was logged when it happened


async def _serve_web(pool: Pool, settings: Settings) -> None:
    """The web face of this worker, until cancelled (the worker's own signal handling stops
    it)."""
    from claude_pool.web.server import announce, face_for, http_server

    tokens = [t.get_secret_value() for t in settings.tokens]
    face = face_for(
        pool, host=settings.host, tokens=tokens, allowed_hosts=settings.allowed_hosts, mcp=False
    )
    server = http_server(face, host=settings.host, port=settings.port)
    server.on_started = lambda started: announce(started, tokens, settings.allowed_hosts)
    serving = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        face.close()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        raise

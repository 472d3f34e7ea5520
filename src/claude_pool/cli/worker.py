"""``claude-pool worker``: a pool that runs what is queued in the store until it is stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from claude_pool.cli.common import ConfigOpt, StoreOpt, _run, _settings
from claude_pool.cli.logs import LogFormat, LogFormatOpt, LogLevel, LogLevelOpt, configure_logging
from claude_pool.config import Settings
from claude_pool.pool import Pool
from claude_pool.types import PermissionMode

log = logging.getLogger(__name__)


def worker(
    slots: Annotated[int | None, typer.Option(min=1, help="Number of slots.")] = None,
    model: Annotated[str | None, typer.Option(help="Default model.")] = None,
    permission_mode: Annotated[
        PermissionMode | None, typer.Option(help="Default permission mode.")
    ] = None,
    log_level: LogLevelOpt = LogLevel.INFO,
    log_format: LogFormatOpt = LogFormat.TEXT,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Run a pool that executes whatever is queued in the store. SIGINT or SIGTERM drains it
    (running tasks finish within the grace period); each task's start and end is logged."""
    settings = _settings(
        config, store=store, slots=slots, model=model, permission_mode=permission_mode
    )
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
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stopped, failed):
            waiter.cancel()
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

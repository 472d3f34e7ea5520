"""``claude-pool worker``: a pool that runs what is queued in the store until it is stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from claude_pool.cli.common import ConfigOpt, StoreOpt, _run, _settings, err
from claude_pool.config import Settings
from claude_pool.pool import Pool


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

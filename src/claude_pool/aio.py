"""Small asyncio helpers the engine and its faces share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio

log = logging.getLogger(__name__)

T = TypeVar("T")

CANCEL_SECS = 30.0
"""How long cancelling a caller's work may take when the caller itself is cancelled."""


async def run_shielded(coro: Coroutine[Any, Any, T], timeout: float) -> T | None:
    """Run a clean-up (cancelling tasks, say) to its end even while the caller is being
    cancelled, within ``timeout`` seconds; then let the caller's cancellation go on.

    Both kinds of cancellation are held off: a plain asyncio ``task.cancel()`` (absorbed
    while the clean-up runs, raised again after it) and an anyio cancel scope, which keeps
    re-delivering its cancellation (shielded here). Returns the clean-up's result, or None if
    it did not finish in time (it is cancelled then).
    """
    task = asyncio.ensure_future(coro)
    cancelled = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with anyio.CancelScope(shield=True):
        while not task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                task.cancel()
                break
            try:
                await asyncio.wait({task}, timeout=remaining)
            except asyncio.CancelledError:
                cancelled = True
    if not task.done():
        try:
            await asyncio.wait({task}, timeout=1.0)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    if task.done() and not task.cancelled():
        return task.result()
    return None


@contextlib.asynccontextmanager
async def cancelled_with_caller(
    cancel: Callable[[str], Awaitable[object]], *, timeout: float = CANCEL_SECS
) -> AsyncIterator[set[str]]:
    """``async with cancelled_with_caller(pool.cancel) as mine: mine.add(task_id)``: if the
    caller is cancelled inside the block, ``cancel(id)`` runs for every id added (shielded and
    bounded, see :func:`run_shielded`) before the cancellation goes on. Structured
    concurrency: whoever waited is gone, so is the work it started."""
    owned: set[str] = set()
    try:
        yield owned
    except asyncio.CancelledError:
        if owned:
            await run_shielded(_cancel_each(cancel, sorted(owned)), timeout)
        raise


async def _cancel_each(cancel: Callable[[str], Awaitable[object]], ids: list[str]) -> None:
    for item in ids:
        try:
            await cancel(item)
        except Exception:
            log.exception("cancelling %s for a cancelled caller failed", item)


__all__ = ["CANCEL_SECS", "cancelled_with_caller", "run_shielded"]

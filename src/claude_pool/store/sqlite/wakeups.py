"""How a SQLite store hears of events that other processes append: :class:`SqliteWakeups`.

SQLite has no LISTEN/NOTIFY, so the store reads the highest event id now and then, and only
while someone waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from claude_pool.errors import StoreError

if TYPE_CHECKING:
    from claude_pool.store.sqlite.store import SqliteStore

log = logging.getLogger(__name__)

WAKEUP_INTERVAL_SECS = 0.1
"""How often a SQLite store looks for events appended by other processes while anyone waits:
one read of the highest event id, shared by all of the store's waiters."""


class SqliteWakeups:
    """Another process's writes are seen by reading the latest event id, at most every
    ``interval`` seconds and only while someone waits, however many wait."""

    def __init__(self, store: SqliteStore, interval: float = WAKEUP_INTERVAL_SECS) -> None:
        self._store = store
        self.interval = interval
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._prober: asyncio.Task[None] | None = None
        self._last_probe = -interval
        self.probes = 0
        """Reads of the latest event id so far (for benchmarks)."""

    async def wait(self, after_seq: int, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        entry = (after_seq, future)
        self._waiters.append(entry)
        if self._prober is None or self._prober.done():
            self._prober = loop.create_task(self._probe(), name="sqlite-wakeups")
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return await self._store.latest_event_seq()
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def stop(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            # However often waiters come and go, the file is read at most once an interval.
            wait = self._last_probe + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_probe = loop.time()
            try:
                self.probes += 1
                latest = await self._store.latest_event_seq()
            except StoreError as exc:
                log.warning("SQLite store %s: looking for new events failed: %s", self._store, exc)
            else:
                self._wake(latest)

    def _wake(self, latest: int) -> None:
        keep = []
        for after, future in self._waiters:
            if future.done():
                continue
            if latest > after:
                future.set_result(latest)
            else:
                keep.append((after, future))
        self._waiters = keep

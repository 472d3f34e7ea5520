"""How a PostgreSQL store hears of events that other processes append, on any machine:
:class:`PostgresWakeups`, over ``LISTEN/NOTIFY``.

Every write that logs events sends ``NOTIFY`` on the store's channel with the last event
number, delivered when it commits. One connection per store object listens (opened at the
first wait, kept until the store closes) and wakes every waiter whose number the log has
passed: a submit on one machine reaches an idle worker on another in milliseconds, with no
query while nothing happens. A notification can be lost only with the connection; so, while
anyone waits, the listener also reads the latest number every :data:`FALLBACK_SECS`, and again
each time it has (re)connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from claude_pool.errors import StoreError
from claude_pool.store.postgres.queries import QUERIES as Q

if TYPE_CHECKING:
    from claude_pool.store.postgres.store import PostgresStore

log = logging.getLogger(__name__)

FALLBACK_SECS = 5.0
"""While anyone waits, how often the listener reads the latest event number anyway (in case
a notification was lost with a connection)."""

STOP_TIMEOUT_SECS = 5.0
"""How long closing the store waits for the listener to stop."""

RECONNECT_SECS = 1.0
"""Pause before the listener connects again after losing its connection."""


class PostgresWakeups:
    """Waiters on the event log of one :class:`PostgresStore`, woken by ``NOTIFY``."""

    def __init__(self, store: PostgresStore, fallback_secs: float = FALLBACK_SECS) -> None:
        self._store = store
        self.fallback_secs = fallback_secs
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._listener: asyncio.Task[None] | None = None
        self._latest = 0
        self._listening = False
        self.notifications = 0
        """Notifications received so far (for tests and benchmarks)."""
        self.fallback_reads = 0
        """Reads of the latest event number the listener made (for tests and benchmarks)."""

    async def wait(self, after_seq: int, timeout: float) -> int:
        if self._listening and self._latest > after_seq:
            return self._latest
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        entry = (after_seq, future)
        self._waiters.append(entry)
        if self._listener is None or self._listener.done():
            self._listener = loop.create_task(self._listen(), name="postgres-wakeups")
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return await self._store.latest_event_seq()
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        self._listening = False
        if listener is not None and not listener.done():
            listener.cancel()
            # Bounded: closing the store must not hang on a connection that does not answer.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(listener, STOP_TIMEOUT_SECS)

    async def _listen(self) -> None:
        failing = False
        while True:
            try:
                conn = await self._store.connect()
            except StoreError as exc:
                if not failing:
                    log.warning("PostgreSQL store %s: cannot listen for events: %s",
                                self._store.where, exc)  # fmt: skip
                    failing = True
                await asyncio.sleep(RECONNECT_SECS)
                continue
            try:
                await self._serve(conn)
            except psycopg.Error as exc:
                if not failing:
                    log.warning("PostgreSQL store %s: listening for events failed: %s; "
                                "connecting again", self._store.where, exc)  # fmt: skip
                    failing = True
                await asyncio.sleep(RECONNECT_SECS)
            else:  # pragma: no cover - _serve returns only by raising
                return
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _serve(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._store.channel)))
        # Whatever was appended before LISTEN took effect is found by reading once.
        await self._read_latest(conn)
        self._listening = True
        while True:
            async for notify in conn.notifies(timeout=self.fallback_secs):
                self.notifications += 1
                try:
                    self._wake(int(notify.payload))
                except ValueError:
                    log.debug("ignoring a notification %r", notify.payload)
            if self._waiters:
                await self._read_latest(conn)

    async def _read_latest(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        self.fallback_reads += 1
        cur = await conn.execute(sql.SQL(Q["latest_event_seq"]))
        row = await cur.fetchone()
        self._wake(int(row[0]) if row is not None else 0)

    def _wake(self, latest: int) -> None:
        if latest > self._latest:
            self._latest = latest
        latest = self._latest
        keep = []
        for after, future in self._waiters:
            if future.done():
                continue
            if latest > after:
                future.set_result(latest)
            else:
                keep.append((after, future))
        self._waiters = keep

"""The engine's side of the event log: numbering, publishing, and other processes' events.

Every domain event goes through one :class:`EventLog` per pool:

- :meth:`EventLog.write` runs a store write that changes state *and* logs its events in the
  same atomic step (``insert_task(..., events=...)`` and the like), then publishes them. So
  an event is published only once it is in the store, with its sequence number, and it is in
  the store exactly when its change is.
- :meth:`EventLog.emit` takes an event that records no change of its own (a task's progress,
  a claim, a slot that went busy): it is buffered and goes out with the next write, or within
  ``flush_secs`` on its own. Buffered events always precede the write they ride with, so the
  log keeps the order in which things happened. A store that can append events ahead of its
  later writes (:class:`~claude_pool.store.base.EventsAhead`: SQLite) logs them on their own,
  in the same batch as that write; elsewhere the write takes them along.
- :meth:`EventLog.watch` (a background task of the pool) listens on the store's wake-up
  channel and publishes what *other* processes appended, so a wait in this process wakes when
  another process finishes the task. One reader for the whole process: it reads only when the
  log holds events this process did not write.
- :meth:`EventLog.stream` gives a consumer the log in order from any sequence number, then
  live: what server-sent events, webhooks and ``claude-pool watch`` read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from claude_pool.bus import EventBus
from claude_pool.errors import StoreDamaged
from claude_pool.events import Event, TaskProgress
from claude_pool.lifecycle import Lifecycle
from claude_pool.store.base import EventsAhead, Store

log = logging.getLogger(__name__)

T = TypeVar("T")

FLUSH_SECS = 0.025
"""How long an emitted event may wait for a write to ride with before it is written alone."""

MAX_PENDING = 10_000
"""Emitted events kept while the store cannot take them; past that the oldest progress events
(text, tool calls) are dropped, never state changes."""

WATCH_FALLBACK_SECS = 5.0
"""Longest wait on the store's wake-up channel before looking again anyway."""

_PAGE = 1000


@dataclass(frozen=True)
class EventQuery:
    """Which events a consumer wants: about one task, one chain, of some types (all None:
    every event)."""

    task_id: str | None = None
    chain_id: str | None = None
    types: frozenset[str] | None = None

    def matches(self, event: Event) -> bool:
        return (
            (self.task_id is None or event.task_id == self.task_id)
            and (self.chain_id is None or event.chain_id == self.chain_id)
            and (self.types is None or event.type in self.types)
        )


class EventLog:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        worker_id: str,
        *,
        flush_secs: float = FLUSH_SECS,
        watch_fallback_secs: float = WATCH_FALLBACK_SECS,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._watch_failing = False
        self._store = store
        self._ahead = store.append_events_ahead if isinstance(store, EventsAhead) else None
        self._bus = bus
        self.worker_id = worker_id
        self._flush_secs = flush_secs
        self._watch_fallback_secs = watch_fallback_secs
        self._pending: list[Event] = []
        self._tickets = 0
        self._carrying: asyncio.Future[None] | None = None
        """Done when the write in flight that carries emitted events is."""
        self._next_ticket = 0
        self._done: dict[int, tuple[list[Event], asyncio.Future[None]]] = {}
        self._flush_wanted = asyncio.Event()
        self._own: set[int] = set()
        self._seen = 0
        """Every event up to here has been published in this process (own or foreign)."""
        self.latest_seq = 0
        """The highest sequence number published here."""
        self._dropped = 0
        self._failing = False
        self.foreign_reads = 0
        """Reads of other processes' events so far (for benchmarks)."""

    async def start(self) -> None:
        """Begin after what the log already holds (call once, when the pool opens)."""
        self._seen = self.latest_seq = await self._store.latest_event_seq()

    # ── writing ──────────────────────────────────────────────────────

    def emit(self, event: Event) -> None:
        """Log and publish ``event`` soon (with the next write, or within ``flush_secs``)."""
        event.worker_id = self.worker_id
        self._pending.append(event)
        if len(self._pending) > MAX_PENDING:
            self._drop_progress()
        self._flush_wanted.set()

    async def write(self, change: Callable[[list[Event]], Awaitable[T]], *events: Event) -> T:
        """Run ``change(batch)``, a store write that logs the events of ``batch`` (the emitted
        events still buffered, then ``events``); then publish what it logged. A change that
        builds events of its own inside the write (one per recovered task, say) appends them
        to ``batch`` and they are published too. A compare-and-set that did not happen logs
        nothing: its own events are dropped, the buffered ones wait for the next write."""
        for event in events:
            event.worker_id = self.worker_id
        while self._carrying is not None:
            # A write in flight carries emitted events and may not log them (a compare-and-set
            # that did not happen): they must go before this write's, so it waits.
            await asyncio.shield(self._carrying)
        buffered, self._pending = self._pending, []
        if buffered and self._ahead is not None:
            # The store logs them ahead of this write, whatever it does: nothing is carried,
            # and the writes after this one need not wait for it (they commit together).
            self._append_ahead(buffered, self._ahead)
            buffered = []
        batch = [*buffered, *events]
        ticket = self._take_ticket()
        carrying = self._carry() if buffered else None
        try:
            result = await change(batch)
        except BaseException:
            # A write that landed before its caller was cancelled numbered its events:
            # publish those, and keep only the rest for the next write.
            self._pending[:0] = [e for e in buffered if not e.seq]
            self._carried(carrying)
            self._written(ticket, batch)
            raise
        unlogged = [e for e in buffered if not e.seq]
        if unlogged:
            self._pending[:0] = unlogged
            self._flush_wanted.set()
        self._carried(carrying)
        await self._written(ticket, batch)
        return result

    def _append_ahead(
        self, events: list[Event], ahead: Callable[[list[Event]], asyncio.Future[None]]
    ) -> asyncio.Future[None]:
        """Have the store log ``events`` ahead of every later write; they are published in
        their turn once stored, or go back to the buffer if the store failed."""
        ticket = self._take_ticket()

        def stored(done: asyncio.Future[None]) -> None:
            if done.cancelled() or done.exception() is not None:
                self._pending[:0] = [e for e in events if not e.seq]
                self._flush_wanted.set()
            self._written(ticket, events)

        future = ahead(events)
        future.add_done_callback(stored)
        return future

    def _carry(self) -> asyncio.Future[None]:
        self._carrying = asyncio.get_running_loop().create_future()
        return self._carrying

    def _carried(self, carrying: asyncio.Future[None] | None) -> None:
        if carrying is not None:
            self._carrying = None
            carrying.set_result(None)

    async def flush(self) -> None:
        """Write the buffered events now."""
        while self._carrying is not None:
            await asyncio.shield(self._carrying)  # (see write())
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._ahead is not None:
            stored = self._append_ahead(batch, self._ahead)
            await asyncio.wait([stored])
            if (exc := stored.exception()) is not None:
                self._note_failure(len(batch), exc)
                raise exc
            self._note_success()
            return
        ticket = self._take_ticket()
        carrying = self._carry()
        try:
            await self._store.append_events(batch)
        except BaseException as exc:
            self._pending[:0] = [e for e in batch if not e.seq]
            self._carried(carrying)
            self._written(ticket, batch)
            if isinstance(exc, Exception):
                self._note_failure(len(batch), exc)
            raise
        self._carried(carrying)
        self._note_success()
        await self._written(ticket, batch)

    def _note_failure(self, count: int, exc: BaseException) -> None:
        """One log line when writing events starts failing (see :meth:`_note_success`)."""
        if not self._failing:
            self._failing = True
            log.error("writing %d event(s) to the store failed (%s); will retry", count, exc)

    def _note_success(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("writing events to the store works again")

    # Writes run side by side (so that a store can commit several in one transaction), but
    # their events are published in the order the writes began: each write takes a ticket,
    # and what it logged is published once every earlier ticket's events are. Only a write
    # that carries emitted events holds back the writes after it (see write()); with a store
    # that appends them ahead, none carries any, so side-by-side writes share one commit.

    def _take_ticket(self) -> int:
        ticket = self._tickets
        self._tickets += 1
        return ticket

    def _written(self, ticket: int, batch: Sequence[Event]) -> asyncio.Future[None]:
        """Record that the write holding ``ticket`` is done; publish every write done in
        ticket order so far. The future is done once this write's events are published."""
        published: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done[ticket] = ([e for e in batch if e.seq], published)
        ready: list[Event] = []
        futures: list[asyncio.Future[None]] = []
        while self._next_ticket in self._done:
            logged, future = self._done.pop(self._next_ticket)
            self._next_ticket += 1
            ready.extend(logged)
            futures.append(future)
        if len(futures) > 1:
            ready.sort(key=lambda e: e.seq)  # (a write sent to another connection may overtake)
        self._publish(ready)
        for future in futures:
            future.set_result(None)
        return published

    async def run(self) -> None:
        """The flusher: writes emitted events that no write took along (a background task)."""
        while True:
            await self._flush_wanted.wait()
            await asyncio.sleep(self._flush_secs)
            self._flush_wanted.clear()
            try:
                await self.flush()
            except StoreDamaged as exc:
                if self._lifecycle is not None:
                    self._lifecycle.fail(exc)
                return
            except Exception:
                await asyncio.sleep(min(5.0, self._flush_secs * 40))
                self._flush_wanted.set()

    async def close(self) -> None:
        """Write what is still buffered (best effort: the store may be gone)."""
        try:
            await self.flush()
        except Exception:
            log.warning("%d event(s) could not be written at close", len(self._pending))

    def _publish(self, events: Sequence[Event]) -> None:
        for event in events:
            self._own.add(event.seq)
            if event.seq > self.latest_seq:
                self.latest_seq = event.seq
            self._bus.publish(event)

    def _drop_progress(self) -> None:
        keep: list[Event] = []
        excess = len(self._pending) - MAX_PENDING
        for event in self._pending:
            if excess > 0 and isinstance(event, TaskProgress):
                excess -= 1
                self._dropped += 1
                continue
            keep.append(event)
        self._pending = keep
        if self._dropped and self._dropped % 1000 == 1:
            log.warning(
                "the store is not taking events; %d progress event(s) dropped", self._dropped
            )

    # ── other processes' events ──────────────────────────────────────

    async def watch(self) -> None:
        """Publish the events other processes append to the log (a background task)."""
        wakeups = self._store.wakeups()
        while True:
            try:
                latest = await wakeups.wait(self._seen, self._watch_fallback_secs)
                if latest > self._seen:
                    await self._catch_up(latest)
            except asyncio.CancelledError:
                raise
            except StoreDamaged as exc:
                if self._lifecycle is not None:
                    self._lifecycle.fail(exc)
                return
            except Exception as exc:
                if not self._watch_failing:  # once per incident
                    self._watch_failing = True
                    log.error("reading other processes' events failed (%s); will retry", exc)
                await asyncio.sleep(1.0)
                continue
            if self._watch_failing:
                self._watch_failing = False
                log.warning("reading other processes' events works again")

    async def _catch_up(self, latest: int) -> None:
        own = sum(1 for seq in self._own if self._seen < seq <= latest)
        if own < latest - self._seen:  # some are not ours
            after = self._seen
            while after < latest:
                self.foreign_reads += 1
                page = await self._store.read_events(
                    after=after, up_to=latest, limit=_PAGE, not_from=self.worker_id
                )
                for event in page:
                    if event.seq > self.latest_seq:
                        self.latest_seq = event.seq
                    self._bus.publish(event)
                if len(page) < _PAGE:
                    break
                after = page[-1].seq
        self._seen = max(self._seen, latest)
        self._own = {seq for seq in self._own if seq > self._seen}

    # ── reading the log in order ─────────────────────────────────────

    async def stream(
        self,
        after: int | None = None,
        *,
        task_id: str | None = None,
        chain_id: str | None = None,
        types: Collection[str] | None = None,
    ) -> AsyncIterator[Event]:
        """The events after sequence number ``after`` (None: from now on), in order, then
        live, for as long as the caller iterates. It reads the store's log, woken by the bus,
        so it never misses or reorders an event, however slow the consumer."""
        query = EventQuery(task_id, chain_id, frozenset(types) if types is not None else None)
        wake = self._bus.subscribe(query.matches, maxsize=1)
        try:
            last = self.latest_seq if after is None else after
            while True:
                # Forget earlier wake-ups first: whatever is published from here on wakes the
                # wait below, and whatever was published before is in the store for the read.
                while wake.get_nowait() is not None:
                    pass
                page = await self._store.read_events(
                    after=last,
                    limit=_PAGE,
                    task_id=query.task_id,
                    chain_id=query.chain_id,
                    types=query.types,
                )
                for event in page:
                    last = event.seq
                    yield event
                if len(page) < _PAGE:
                    await wake.get()
        finally:
            wake.close()


__all__ = ["FLUSH_SECS", "MAX_PENDING", "WATCH_FALLBACK_SECS", "EventLog", "EventQuery"]

"""One event bus per pool: the engine publishes, faces and side effects subscribe.

Publishing is synchronous and never waits: the engine calls :meth:`EventBus.publish` with an
event that the store's event log has already numbered. There are two ways to receive events:

- a **listener** (:meth:`EventBus.add_listener`) is a plain function called inline, for the
  engine's own quick reactions (waking a waiter, invalidating a cache). It must not block;
  an exception it raises is logged and forgotten.
- a **subscription** (:meth:`EventBus.subscribe`) is a bounded buffer read with ``async for``,
  for consumers that do I/O (MCP progress, server-sent events, webhooks, the CLI). Overflow
  policy: when a subscriber falls ``maxsize`` events behind, newer events are not buffered;
  once it reads again it gets a :class:`Lagged` notice saying which sequence numbers it
  missed, then the events that arrived after. It can fetch what it missed from the store's
  event log (``Pool.events(after=...)`` does that by itself). A slow subscriber therefore
  never blocks the engine nor grows memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from claude_pool.events import Event

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]
EventFilter = Callable[[Event], bool]

DEFAULT_SUBSCRIPTION_SIZE = 1000


@dataclass(frozen=True)
class Lagged:
    """A subscription fell behind and these events were not buffered for it."""

    first_seq: int
    last_seq: int
    count: int


class Subscription:
    """A bounded, ordered feed of the bus's events (see the module docstring for overflow).

    Read it with ``async for item in subscription`` (items are events or :class:`Lagged`
    notices) or :meth:`get`; :meth:`close` it when done (or use it as a context manager).
    """

    def __init__(self, bus: EventBus, filter: EventFilter | None, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"a subscription needs room for at least one event, got {maxsize}")
        self._bus = bus
        self._filter = filter
        self._maxsize = maxsize
        self._items: deque[Event | Lagged] = deque()
        self._events_buffered = 0
        self._gap: list[int] | None = None  # [first_seq, last_seq, count] being missed
        self._ready = asyncio.Event()
        self._closed = False
        self.missed = 0
        """Events this subscription has missed so far, in all."""

    def offer(self, event: Event) -> None:
        """Called by the bus for each published event."""
        if self._closed or (self._filter is not None and not self._filter(event)):
            return
        if self._events_buffered >= self._maxsize:
            self.missed += 1
            if self._gap is None:
                self._gap = [event.seq, event.seq, 1]
            else:
                self._gap[1] = event.seq
                self._gap[2] += 1
            return
        if self._gap is not None:
            self._items.append(Lagged(*self._gap))
            self._gap = None
        self._items.append(event)
        self._events_buffered += 1
        self._ready.set()

    def _take(self) -> Event | Lagged | None:
        if self._items:
            item = self._items.popleft()
            if isinstance(item, Event):
                self._events_buffered -= 1
            return item
        if self._gap is not None:
            gap, self._gap = self._gap, None
            return Lagged(*gap)
        return None

    def get_nowait(self) -> Event | Lagged | None:
        """The next item, or None when nothing is buffered."""
        return self._take()

    async def get(self, timeout: float | None = None) -> Event | Lagged | None:
        """The next item; None once the subscription is closed and its buffer read;
        ``TimeoutError`` if nothing comes within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                item = self._take()
                if item is not None or self._closed:
                    return item
                self._ready.clear()
                await self._ready.wait()

    def __aiter__(self) -> AsyncIterator[Event | Lagged]:
        return self

    async def __anext__(self) -> Event | Lagged:
        item = await self.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop receiving; an ``async for`` over it ends once the buffer is read."""
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            self._ready.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventBus:
    """Delivers each published event to every listener and subscription, in order."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._by_type: dict[str, list[Listener]] = {}
        self._subscriptions: list[Subscription] = []
        self.published = 0
        """Events published so far."""

    def publish(self, event: Event) -> None:
        self.published += 1
        for listener in (*self._listeners, *self._by_type.get(event.type, ())):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.type)
        for subscription in tuple(self._subscriptions):
            subscription.offer(event)

    def add_listener(
        self, listener: Listener, types: Collection[str] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(event)`` inline for every event (or only for events of the given
        ``types``); returns a function removing it."""
        lists = (
            [self._listeners]
            if types is None
            else [self._by_type.setdefault(kind, []) for kind in types]
        )
        for listeners in lists:
            listeners.append(listener)

        def remove() -> None:
            for listeners in lists:
                if listener in listeners:
                    listeners.remove(listener)

        return remove

    def subscribe(
        self, filter: EventFilter | None = None, *, maxsize: int = DEFAULT_SUBSCRIPTION_SIZE
    ) -> Subscription:
        """A bounded subscription to the events ``filter`` accepts (all without one)."""
        subscription = Subscription(self, filter, maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)


__all__ = ["DEFAULT_SUBSCRIPTION_SIZE", "EventBus", "EventFilter", "Lagged", "Listener",
           "Subscription"]  # fmt: skip

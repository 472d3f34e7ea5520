"""Where a pool keeps its state: the :class:`Store` protocol and its implementations.

``open_store(url)`` picks one from a URL: ``":memory:"`` for :class:`MemoryStore`,
``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain file path for
:class:`SqliteStore`.
"""

from __future__ import annotations

import re
from pathlib import Path

from claude_pool.errors import ConfigError
from claude_pool.store.base import (
    UNSET,
    ChainStore,
    Delivery,
    DeliveryState,
    EventLogStore,
    LedgerStore,
    MemberStore,
    Message,
    MetricsStore,
    NoteStore,
    OutboxStore,
    RecoveryEvents,
    RecoveryPolicy,
    SlotStore,
    Store,
    StoredTask,
    TaskQueueStore,
    TaskTarget,
    Wakeups,
    Webhook,
)
from claude_pool.store.memory import MemoryStore
from claude_pool.store.sqlite import SqliteStore

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def store_file(url: str) -> Path | None:
    """The file a store URL names (a SQLite store), or None for one that is not a file
    (``:memory:``). Raises :class:`ConfigError` for a URL no store understands."""
    url = url.strip()
    if url == ":memory:":
        return None
    match = _SCHEME.match(url)
    if match is None:
        if not url:
            raise ConfigError("store", url, "give a file path, sqlite:///path or :memory:")
        return Path(url).expanduser()
    scheme = match[1].lower()
    if scheme in ("postgresql", "postgres"):
        raise ConfigError(
            "store",
            url,
            "the PostgreSQL store is not available yet; use a SQLite file path "
            "(e.g. sqlite:///pool.db) for now",
        )
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db and sqlite:////absolute.db.
        path = url[len("sqlite://") :]
        if not path.startswith("/") or len(path) == 1:
            raise ConfigError("store", url, "write sqlite:///relative.db or sqlite:////abs.db")
        return Path(path[1:]).expanduser()
    raise ConfigError(
        "store", url, f"unknown store scheme {scheme!r}; use a file path, sqlite:/// or :memory:"
    )


def open_store(url: str) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``)."""
    path = store_file(url)
    return MemoryStore() if path is None else SqliteStore(path)


__all__ = [
    "UNSET",
    "ChainStore",
    "Delivery",
    "DeliveryState",
    "EventLogStore",
    "LedgerStore",
    "MemberStore",
    "MemoryStore",
    "Message",
    "MetricsStore",
    "NoteStore",
    "OutboxStore",
    "RecoveryEvents",
    "RecoveryPolicy",
    "SlotStore",
    "SqliteStore",
    "Store",
    "StoredTask",
    "TaskQueueStore",
    "TaskTarget",
    "Wakeups",
    "Webhook",
    "open_store",
    "store_file",
]

"""Where a pool keeps its state: the :class:`Store` protocol and its implementations.

``open_store(url)`` picks one from a URL: ``":memory:"`` for :class:`MemoryStore`,
``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain file path for
:class:`SqliteStore`, ``postgresql://`` (or ``postgres://``) for the PostgreSQL store
(:mod:`claude_pool.store.postgres`, which needs the ``postgres`` extra).
"""

from __future__ import annotations

import re
from pathlib import Path

from claude_pool.errors import ConfigError, StoreError
from claude_pool.store.base import (
    UNSET,
    ChainStore,
    Delivery,
    DeliveryState,
    EventLogStore,
    EventsAhead,
    LedgerStore,
    MemberStore,
    Message,
    MetricsStore,
    NoteStore,
    OutboxStore,
    RecoveryEvents,
    RecoveryPolicy,
    Requeue,
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

POSTGRES_EXTRA = "pip install 'claude-pool[postgres]'"


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL store (``postgresql://`` or ``postgres://``)."""
    match = _SCHEME.match(url.strip())
    return match is not None and match[1].lower() in ("postgresql", "postgres")


def store_file(url: str) -> Path | None:
    """The file a store URL names (a SQLite store), or None for one that is not a file
    (``:memory:``, a PostgreSQL URL). Raises :class:`ConfigError` for a URL no store
    understands."""
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
        return None
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db and sqlite:////absolute.db.
        path = url[len("sqlite://") :]
        if not path.startswith("/") or len(path) == 1:
            raise ConfigError("store", url, "write sqlite:///relative.db or sqlite:////abs.db")
        return Path(path[1:]).expanduser()
    raise ConfigError(
        "store",
        url,
        f"unknown store scheme {scheme!r}; use a file path, sqlite:///, postgresql:// or :memory:",
    )


def open_store(url: str, *, create: bool = True) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``). With ``create``
    false, a PostgreSQL store refuses to open where there is no store yet, rather than set one
    up (a SQLite file's absence is for the caller to check)."""
    if is_postgres_url(url):
        return postgres_store(url, create=create)
    path = store_file(url)
    return MemoryStore() if path is None else SqliteStore(path)


def postgres_store(url: str, *, create: bool = True) -> Store:
    """The PostgreSQL store for ``url``; a :class:`StoreError` naming the extra to install
    when psycopg is missing."""
    try:
        from claude_pool.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"the store {url.split('@')[-1]!r} is a PostgreSQL URL, but the PostgreSQL driver "
            f"is not installed; install it with {POSTGRES_EXTRA}"
        ) from exc
    return PostgresStore(url, create=create)


__all__ = [
    "UNSET",
    "ChainStore",
    "Delivery",
    "DeliveryState",
    "EventLogStore",
    "EventsAhead",
    "LedgerStore",
    "MemberStore",
    "MemoryStore",
    "Message",
    "MetricsStore",
    "NoteStore",
    "OutboxStore",
    "RecoveryEvents",
    "RecoveryPolicy",
    "Requeue",
    "SlotStore",
    "SqliteStore",
    "Store",
    "StoredTask",
    "TaskQueueStore",
    "TaskTarget",
    "Wakeups",
    "Webhook",
    "is_postgres_url",
    "open_store",
    "postgres_store",
    "store_file",
]

"""The default store: one SQLite file in WAL mode, shareable by several processes.

A map of the package, from the top down:

- :mod:`.store`: :class:`SqliteStore`, the async store, and why it runs short operations on
  the event loop's thread and the rest on a thread of its own;
- :mod:`.wakeups`: how it hears of events that other processes append;
- :mod:`.database`: the synchronous operations on one connection, their transactions, and the
  schema migration;
- :mod:`.queries`: the SQL statements by name, loaded from ``sql/queries.sql``;
- :mod:`.rows`: rows to models and back;
- :mod:`.schema`: the schema files, ``sql/schema.sql`` and ``sql/migrations/``.
"""

from __future__ import annotations

import sqlite3

if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - depends on the platform
    raise ImportError(
        f"the SQLite store needs SQLite 3.35 or newer (for RETURNING); this Python links "
        f"SQLite {sqlite3.sqlite_version}. Use a newer Python build or the memory store."
    )

from claude_pool.store._migrations import Migration
from claude_pool.store.sqlite.schema import APPLICATION_ID, migrations, schema_sql, split_statements
from claude_pool.store.sqlite.store import SqliteStore
from claude_pool.store.sqlite.wakeups import WAKEUP_INTERVAL_SECS

__all__ = [
    "APPLICATION_ID",
    "WAKEUP_INTERVAL_SECS",
    "Migration",
    "SqliteStore",
    "migrations",
    "schema_sql",
    "split_statements",
]

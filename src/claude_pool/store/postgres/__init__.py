"""The PostgreSQL store: one database shared by workers on several machines.

A map of the package:

- :mod:`.store`: :class:`PostgresStore`, every store role on a psycopg 3 connection pool, with
  claims by ``SELECT ... FOR UPDATE SKIP LOCKED`` and compare-and-set state changes;
- :mod:`.wakeups`: wake-ups by ``LISTEN/NOTIFY``;
- :mod:`.schema`: ``sql/schema.sql``, the numbered ``sql/migrations`` and how they are applied;
- :mod:`.queries`: the SQL statements by name, from ``sql/queries.sql``;
- :mod:`.errors`: psycopg errors as store errors that say what to do.

It needs the ``postgres`` extra (``pip install 'claude-pool[postgres]'``), which brings
psycopg and psycopg-pool; importing this package without them raises an ImportError naming it.
"""

from __future__ import annotations

try:
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by simulating the missing module
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg-pool; install them with "
        "pip install 'claude-pool[postgres]'"
    ) from exc

from claude_pool.store._migrations import Migration
from claude_pool.store.postgres.schema import latest_version, migrations, schema_sql
from claude_pool.store.postgres.store import PostgresStore, split_store_url
from claude_pool.store.postgres.wakeups import FALLBACK_SECS, PostgresWakeups

__all__ = [
    "FALLBACK_SECS",
    "Migration",
    "PostgresStore",
    "PostgresWakeups",
    "latest_version",
    "migrations",
    "schema_sql",
    "split_store_url",
]

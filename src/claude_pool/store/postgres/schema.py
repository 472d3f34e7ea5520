"""The PostgreSQL store's schema files (``sql/schema.sql`` and the numbered
``sql/migrations``) and how a database is brought up to date.

The store lives in one PostgreSQL schema (``public`` unless the URL says ``?schema=NAME``);
table ``claude_pool_schema`` holds the version its tables are at. An empty schema gets
``schema.sql`` whole; an older one the migrations it lacks. Several workers may open the store
at once: the migration runs under a transaction-scoped advisory lock, so one of them applies it
and the others find it done.
"""

from __future__ import annotations

import logging
import zlib
from importlib.resources.abc import Traversable

import psycopg

from claude_pool.errors import StoreError
from claude_pool.store import _migrations
from claude_pool.store._migrations import Migration, read_migrations, read_schema
from claude_pool.store.postgres.queries import QUERIES as Q

log = logging.getLogger(__name__)

_PACKAGE = "claude_pool.store.postgres"

STORE_TABLES = (
    "claude_pool_schema", "tasks", "task_tags", "workers", "slots", "counters",
    "budget_reservations", "context", "messages", "events", "chains", "webhooks",
    "webhook_events", "webhook_deliveries",
)  # fmt: skip
"""The tables the store owns (a schema holding some but no version row is not a store)."""


def sql_dir() -> Traversable:
    """The package's ``sql`` directory (schema, migrations, named queries)."""
    return _migrations.sql_dir(_PACKAGE)


def schema_sql() -> str:
    """The current schema, as a script."""
    return read_schema(_PACKAGE)


def migrations() -> list[Migration]:
    """Every numbered migration, in order. Numbers start at 1 and have no gaps."""
    return read_migrations(_PACKAGE, "PostgreSQL")


def latest_version() -> int:
    return migrations()[-1].version


async def schema_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> int | None:
    """The version of the store in the connection's schema: None when there is no store
    there at all (an empty schema). Refuses a schema that holds other things under the
    store's table names, and one written by a newer claude-pool."""
    cur = await conn.execute(Q["store_tables"], (list(STORE_TABLES),))
    tables = {str(row[0]) for row in await cur.fetchall()}
    if not tables:
        return None
    if "claude_pool_schema" not in tables:
        raise StoreError(
            f"the PostgreSQL schema holds tables named like claude-pool's "
            f"({', '.join(sorted(tables)[:5])}) but is not a claude-pool store; point the URL "
            "at another database or schema (?schema=NAME)"
        )
    row = await (await conn.execute(Q["schema_version"])).fetchone()
    if row is None:
        raise StoreError(
            "the PostgreSQL store's claude_pool_schema table is empty, so its version is "
            "unknown; the store is damaged: restore it, or point the URL at a new schema"
        )
    version = int(str(row[0]))
    if version > latest_version():
        raise StoreError(
            f"the PostgreSQL store has schema version {version}, newer than the "
            f"{latest_version()} this claude-pool knows; upgrade claude-pool on this machine "
            "(every worker on one store needs a version that knows its schema)"
        )
    return version


async def migrate(conn: psycopg.AsyncConnection[tuple[object, ...]], schema: str) -> int:
    """Create or bring up to date the store in ``schema`` (the connection's search path);
    returns the version it is at."""
    latest = latest_version()
    if await schema_version(conn) == latest:
        return latest
    async with conn.transaction():
        # One migrator per schema at a time, across every machine.
        lock = zlib.crc32(f"claude-pool:{schema}".encode())
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        version = await schema_version(conn)
        if version == latest:
            return latest
        scripts = [schema_sql()] if version is None else [
            m.sql for m in migrations() if m.version > version
        ]  # fmt: skip
        for script in scripts:
            await conn.execute(script.encode())
        await conn.execute(Q["set_schema_version"], (latest,))
    log.info("PostgreSQL store (schema %s): at version %d (was %s)", schema, latest, version)
    return latest

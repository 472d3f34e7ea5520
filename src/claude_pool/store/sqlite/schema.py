"""The SQLite store's schema files: the current schema, the numbered migrations, and the marks
that tell a claude-pool database from other SQLite files.

The schema is ``sql/schema.sql``; a new file gets it whole, an older file is brought up to date
by the numbered files in ``sql/migrations`` (:meth:`Database.connect
<claude_pool.store.sqlite.database.Database.connect>` applies them). The applied version is
kept in ``PRAGMA user_version``, and ``PRAGMA application_id`` marks the file as a claude-pool
store.
"""

from __future__ import annotations

import sqlite3
from importlib.resources.abc import Traversable

from claude_pool.store import _migrations
from claude_pool.store._migrations import Migration, read_migrations, read_schema

APPLICATION_ID = 0x436C506C
"""``PRAGMA application_id`` of a claude-pool database ("ClPl")."""

_PACKAGE = "claude_pool.store.sqlite"


def sql_dir() -> Traversable:
    """The package's ``sql`` directory (schema, migrations, named queries)."""
    return _migrations.sql_dir(_PACKAGE)


def schema_sql() -> str:
    """The current schema, as a script."""
    return read_schema(_PACKAGE)


def migrations() -> list[Migration]:
    """Every numbered migration, in order. Numbers start at 1 and have no gaps."""
    return read_migrations(_PACKAGE, "SQLite")


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (``executescript`` would commit the transaction the
    migration runs in, so statements are executed one by one)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements

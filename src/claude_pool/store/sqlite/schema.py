"""The SQLite store's schema files: the current schema, the numbered migrations, and the marks
that tell a claude-pool database from other SQLite files.

The schema is ``sql/schema.sql``; a new file gets it whole, an older file is brought up to date
by the numbered files in ``sql/migrations`` (:meth:`Database.connect
<claude_pool.store.sqlite.database.Database.connect>` applies them). The applied version is
kept in ``PRAGMA user_version``, and ``PRAGMA application_id`` marks the file as a claude-pool
store.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from claude_pool.errors import StoreError

APPLICATION_ID = 0x436C506C
"""``PRAGMA application_id`` of a claude-pool database ("ClPl")."""

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def sql_dir() -> Traversable:
    """The package's ``sql`` directory (schema, migrations, named queries)."""
    return files("claude_pool.store.sqlite") / "sql"


def schema_sql() -> str:
    """The current schema, as a script."""
    return (sql_dir() / "schema.sql").read_text(encoding="utf-8")


def migrations() -> list[Migration]:
    """Every numbered migration, in order. Numbers start at 1 and have no gaps."""
    found: list[Migration] = []
    for entry in (sql_dir() / "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(
            f"the SQLite migrations shipped with claude-pool are numbered "
            f"{[m.version for m in found]}, not 1..n; reinstall claude-pool"
        )
    return found


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

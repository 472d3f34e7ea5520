"""The SQL files a store package ships in its ``sql/`` directory: the current schema
(``schema.sql``) and the numbered migrations (``migrations/NNNN_name.sql``), read the same way
for SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from claude_pool.errors import StoreError

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def sql_dir(package: str) -> Traversable:
    """The ``sql`` directory of a store package (schema, migrations, named queries)."""
    return files(package) / "sql"


def read_schema(package: str) -> str:
    """The current schema of a store package, as a script."""
    return (sql_dir(package) / "schema.sql").read_text(encoding="utf-8")


def read_migrations(package: str, database: str) -> list[Migration]:
    """Every numbered migration of a store package, in order; ``StoreError`` unless they are
    numbered 1..n without gaps (``database`` names the store in that message)."""
    found: list[Migration] = []
    for entry in (sql_dir(package) / "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(
            f"the {database} migrations shipped with claude-pool are numbered "
            f"{[m.version for m in found]}, not 1..n; reinstall claude-pool"
        )
    return found


__all__ = ["Migration", "read_migrations", "read_schema", "sql_dir"]

"""What ``claude-pool doctor`` finds in a PostgreSQL store, read without changing anything:
whether the server answers, its version, the store's schema version, and whether the user may
do what the store needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql

from claude_pool.errors import StoreError
from claude_pool.store.postgres.errors import describe_url
from claude_pool.store.postgres.queries import QUERIES as Q
from claude_pool.store.postgres.schema import STORE_TABLES, latest_version, schema_version
from claude_pool.store.postgres.store import CONNECT_TIMEOUT_SECS, split_store_url

MINIMUM_SERVER_VERSION = 120000
"""PostgreSQL 12: the oldest server the store's SQL is known to run on."""

Level = Literal["ok", "warn", "fail"]


@dataclass
class Health:
    """One verdict (the worst finding) and what was found, with what to fix."""

    level: Level
    findings: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    version: int | None = None
    """The store's schema version (None: no store there yet, or unknown)."""

    def add(self, level: Level, finding: str, fix: str = "") -> None:
        order = {"ok": 0, "warn": 1, "fail": 2}
        if order[level] > order[self.level]:
            self.level = level
        self.findings.append(finding)
        if fix:
            self.fixes.append(fix)


async def inspect(url: str) -> Health:
    """Connect to the store at ``url`` and look (read-only) at what it holds."""
    conninfo, schema = split_store_url(url)
    where = describe_url(conninfo)
    health = Health("ok")
    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_SECS)
        )
    except psycopg.Error as exc:
        health.add(
            "fail",
            f"{where}: cannot connect: {' '.join(str(exc).split())}",
            "start PostgreSQL or fix the URL's host, port, user, password and database (the "
            "database must exist: createdb NAME)",
        )
        return health
    async with conn:
        await _look(conn, schema, where, health)
    return health


async def _look(conn: psycopg.AsyncConnection[Any], schema: str | None, where: str,
                health: Health) -> None:  # fmt: skip
    server = conn.info.server_version
    shown = f"PostgreSQL {server // 10000}.{server % 10000}"
    if server < MINIMUM_SERVER_VERSION:
        health.add("fail", f"{where}: {shown} is too old", "use PostgreSQL 12 or newer")
    else:
        health.add("ok", f"{where}: {shown}")
    if schema is not None:
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    row = await (await conn.execute("SELECT current_schema(), current_user")).fetchone()
    current: str | None = row[0] if row is not None else None
    user = str(row[1]) if row is not None else "?"
    if current is None:
        exists = False
        if schema is not None:
            found = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            exists = await found.fetchone() is not None
        if schema is not None and not exists:
            await _may_create(conn, None, user, health, f"schema {schema} does not exist yet")
            return
        health.add("fail", "no schema to keep the store in (empty search_path)",
                   "add ?schema=NAME to the store URL")  # fmt: skip
        return
    try:
        health.version = await schema_version(conn)
    except StoreError as exc:
        health.add("fail", str(exc).split("; ")[0], str(exc).split("; ", 1)[-1])
        return
    except psycopg.errors.InsufficientPrivilege:
        await _may_use(conn, current, user, health)
        return
    latest = latest_version()
    if health.version is None:
        await _may_create(conn, current, user, health, f"no store in schema {current} yet")
        return
    if health.version < latest:
        health.add("warn", f"schema {current} at version {health.version}; the next worker "
                   f"to open it migrates it to {latest}",
                   "nothing to do (back up the database first if you may go back)")  # fmt: skip
        await _may_create(conn, current, user, health, None)
    else:
        health.add("ok", f"schema {current} at version {health.version}")
    await _may_use(conn, current, user, health)


async def _may_create(conn: psycopg.AsyncConnection[Any], schema: str | None, user: str,
                      health: Health, finding: str | None) -> None:  # fmt: skip
    """Whether ``user`` may set the store up (create the schema, or tables in it)."""
    if schema is None:
        cur = await conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')")
        what = "create the schema"
        fix = f"GRANT CREATE ON DATABASE <db> TO {user}, or create the schema for it"
    else:
        cur = await conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,))
        what = f"create tables in schema {schema}"
        fix = f"GRANT CREATE ON SCHEMA {schema} TO {user}, or use a schema the user owns"
    row = await cur.fetchone()
    if row is not None and row[0]:
        if finding is not None:
            health.add("ok", f"{finding}; the first worker to open it sets it up")
    else:
        health.add("fail", f"{finding + '; ' if finding else ''}user {user} may not {what}", fix)


async def _may_use(conn: psycopg.AsyncConnection[Any], schema: str, user: str,
                   health: Health) -> None:  # fmt: skip
    found = await conn.execute(Q["store_tables"].encode(), (list(STORE_TABLES),))
    missing = []
    for (table,) in await found.fetchall():
        cur = await conn.execute(
            "SELECT has_table_privilege(%s, 'SELECT,INSERT,UPDATE,DELETE')",
            (f"{sql.Identifier(schema).as_string(conn)}.{table}",),
        )
        row = await cur.fetchone()
        if row is None or not row[0]:
            missing.append(table)
    if missing:
        health.add(
            "fail",
            f"user {user} may not read and write {', '.join(missing[:4])}"
            + (" ..." if len(missing) > 4 else ""),
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user}; "
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {user}",
        )
        return
    tasks = await (await conn.execute("SELECT count(*) FROM tasks")).fetchone()
    workers = await (await conn.execute("SELECT count(*) FROM workers")).fetchone()
    health.add("ok", f"{tasks[0] if tasks else 0} task(s), "
               f"{workers[0] if workers else 0} registered worker(s)")  # fmt: skip

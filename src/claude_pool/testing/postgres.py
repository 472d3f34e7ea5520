"""A PostgreSQL server for tests: where it is, whether it answers, and a fresh schema per test.

The server is ``CLAUDE_POOL_TEST_POSTGRES`` (default ``postgresql://127.0.0.1:5432/test``).
:func:`require_postgres` is the one rule for a server that does not answer: outside CI the
test is skipped with the reason; in CI (``CI`` set to true) it fails, so a broken CI database
cannot turn the PostgreSQL tests into silent skips.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_URL = "postgresql://127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("CLAUDE_POOL_TEST_POSTGRES", DEFAULT_URL)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unreachable_reason(url: str | None = None) -> str | None:
    """Why no test can use the server (psycopg missing, server down), or None if it answers."""
    url = url or server_url()
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'claude-pool[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at {url} ({str(exc).strip()}); set " \
            "CLAUDE_POOL_TEST_POSTGRES to one"  # fmt: skip
    return None


def require_postgres() -> str:
    """The server's URL; skips the calling test (fails it in CI) when it does not answer."""
    import pytest

    reason = unreachable_reason()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI=true and the PostgreSQL tests cannot run: {reason}")
        pytest.skip(reason)
    return server_url()


def with_schema(url: str, schema: str) -> str:
    """``url`` naming ``schema`` (claude-pool's ``?schema=`` parameter)."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


@contextmanager
def fresh_schema(url: str | None = None) -> Iterator[str]:
    """A store URL on a new, empty schema, dropped with everything in it afterwards."""
    import psycopg
    from psycopg import sql

    url = url or server_url()
    schema = f"cp_test_{secrets.token_hex(5)}"
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_database(url: str | None = None) -> Iterator[str]:
    """A URL on a new, empty database, dropped afterwards (for processes that should see the
    default schema)."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = url or server_url()
    name = f"cp_test_{secrets.token_hex(5)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = conninfo_to_dict(url)
    host, port = parts.get("host", "127.0.0.1"), parts.get("port", "5432")
    user = f"{parts['user']}@" if parts.get("user") else ""
    try:
        yield f"postgresql://{user}{host}:{port}/{name}"
    finally:
        with psycopg.connect(make_conninfo(url), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

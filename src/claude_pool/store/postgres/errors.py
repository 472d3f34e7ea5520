"""psycopg errors as :class:`~claude_pool.errors.StoreError`, saying what to do about them."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from claude_pool.errors import StoreError

PG_EXTRA_HINT = "pip install 'claude-pool[postgres]'"


def describe_url(url: str) -> str:
    """``postgresql://user@host:port/db`` without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "(an unreadable PostgreSQL URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{parts.get('dbname') or ''}"


def translate_error(where: str, operation: str, exc: BaseException) -> StoreError:
    """The :class:`StoreError` for a psycopg (or pool) error met while doing ``operation``."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        advice = (
            "the database user lacks a privilege the store needs; grant it CREATE on the "
            "schema (to set it up) and SELECT, INSERT, UPDATE, DELETE on its tables, or "
            "connect as the owner"
        )
    elif isinstance(exc, pg_errors.InvalidCatalogName):
        advice = "the database does not exist; create it (createdb NAME) or fix the URL"
    elif isinstance(exc, pg_errors.UndefinedTable | pg_errors.UndefinedColumn):
        advice = (
            "the store's tables are missing or older than this claude-pool; open the store "
            "once with this version (any worker does) to create or migrate them"
        )
    elif isinstance(exc, pg_errors.DiskFull):
        advice = "the database server is out of disk space"
    elif isinstance(exc, psycopg.OperationalError | OSError) or "PoolTimeout" in type(exc).__name__:
        advice = (
            "check that the PostgreSQL server is running and reachable from this machine, "
            "and that the URL's host, port, user and database are right"
        )
    else:
        advice = "this looks like a bug in claude-pool; please report it with this message"
    return StoreError(f"PostgreSQL store {where}: {operation} failed: {text}; {advice}")

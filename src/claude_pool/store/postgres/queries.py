"""The PostgreSQL store's SQL by name: :data:`QUERIES`, loaded once from ``sql/queries.sql``."""

from __future__ import annotations

from importlib.resources import files

from claude_pool.store._queries import parse_queries

QUERIES = parse_queries(
    (files("claude_pool.store.postgres") / "sql" / "queries.sql").read_text(encoding="utf-8"),
    "postgres/sql/queries.sql",
)
"""Every named statement and fragment of the PostgreSQL store."""

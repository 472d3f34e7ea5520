"""The SQLite store's SQL by name: :data:`QUERIES`, loaded once from ``sql/queries.sql`` (the
layout :mod:`claude_pool.store._queries` reads). ``{word}`` left in a block is filled in by
:mod:`~claude_pool.store.sqlite.database` with ``str.format``.
"""

from __future__ import annotations

from claude_pool.store._queries import Queries, parse_queries
from claude_pool.store.sqlite.schema import sql_dir

QUERIES = parse_queries((sql_dir() / "queries.sql").read_text(encoding="utf-8"), "queries.sql")
"""Every named statement and fragment of the SQLite store."""

__all__ = ["QUERIES", "Queries", "parse_queries"]

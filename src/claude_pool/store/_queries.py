"""Named SQL statements: how a database store's ``sql/queries.sql`` is read.

The file is a list of blocks, each under a ``-- name: NAME`` line (the layout aiosql and
procrastinate's ``queries.sql`` use). A block is a statement or a fragment of one; comment
lines and a final ``;`` are left out. ``{name}`` in a block is replaced by the block of that
name as it is written (one level: an included block includes nothing); any other ``{word}``
is left for the store to fill in with ``str.format``.
"""

from __future__ import annotations

import re

from claude_pool.errors import StoreError

_NAME_LINE = re.compile(r"^--\s*name\s*:(.*)$", re.MULTILINE)
_INCLUDE = re.compile(r"\{(\w+)\}")


class Queries(dict[str, str]):
    """Statements and fragments by name; asking for a name the file does not have says so."""

    def __init__(self, queries: dict[str, str], source: str) -> None:
        super().__init__(queries)
        self.source = source

    def __missing__(self, name: str) -> str:
        raise KeyError(f"{self.source} has no query named {name!r}")


def parse_queries(text: str, source: str) -> Queries:
    """Split ``text`` on its ``-- name:`` lines; ``source`` names it in errors."""
    header, *named = _NAME_LINE.split(text)
    if _sql_of(header):
        raise StoreError(f"{source}: SQL before the first '-- name:' line belongs to no query")
    blocks: dict[str, str] = {}
    for raw_name, body in zip(named[::2], named[1::2], strict=True):
        name = raw_name.strip()
        if not name.isidentifier():
            raise StoreError(f"{source}: '-- name:' must be followed by a name, not {name!r}")
        if name in blocks:
            raise StoreError(f"{source}: two queries are named {name!r}; rename one")
        blocks[name] = _sql_of(body)
        if not blocks[name]:
            raise StoreError(f"{source}: the query {name!r} is empty")
    included = {
        name: _INCLUDE.sub(lambda m: blocks.get(m[1], m[0]), sql) for name, sql in blocks.items()
    }
    return Queries(included, source)


def _sql_of(block: str) -> str:
    lines = (line for line in block.splitlines() if not line.lstrip().startswith("--"))
    return "\n".join(lines).strip().removesuffix(";").rstrip()

"""The SQLite store's named queries: how queries.sql is split into statements, and that the
shipped file and the code that uses it agree."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest

from claude_pool.errors import StoreError
from claude_pool.store.sqlite import database
from claude_pool.store.sqlite.queries import QUERIES, parse_queries

TEXT = """\
-- A header comment belongs to no query.

-- name: columns
-- The columns, in order.
id, name

-- name: get_thing
-- thing id.
SELECT {columns}
FROM things WHERE id = ?;

-- name: list_things
SELECT {columns} FROM things WHERE {filters};
"""


def test_a_queries_file_is_split_on_its_name_lines_without_comments_or_semicolons() -> None:
    queries = parse_queries(TEXT, "test.sql")
    assert list(queries) == ["columns", "get_thing", "list_things"]
    assert queries["columns"] == "id, name"
    assert queries["get_thing"] == "SELECT id, name\nFROM things WHERE id = ?"


def test_a_block_includes_another_by_name_and_leaves_other_braces_to_the_caller() -> None:
    queries = parse_queries(TEXT, "test.sql")
    assert queries["list_things"] == "SELECT id, name FROM things WHERE {filters}"
    assert queries["list_things"].format(filters="1 = 1").endswith("WHERE 1 = 1")


def test_two_queries_with_one_name_are_an_error() -> None:
    with pytest.raises(StoreError, match=r"test\.sql: two queries are named 'get_thing'"):
        parse_queries(TEXT + "\n-- name: get_thing\nSELECT 1;\n", "test.sql")


@pytest.mark.parametrize("line", ["-- name:", "-- name:   ", "-- name: get thing"])
def test_a_name_line_without_a_name_is_an_error(line: str) -> None:
    with pytest.raises(StoreError, match="must be followed by a name"):
        parse_queries(f"{line}\nSELECT 1;\n", "test.sql")


def test_sql_before_the_first_name_line_is_an_error() -> None:
    with pytest.raises(StoreError, match="belongs to no query"):
        parse_queries("SELECT 1;\n" + TEXT, "test.sql")


def test_a_query_with_only_comments_is_an_error() -> None:
    with pytest.raises(StoreError, match="the query 'nothing' is empty"):
        parse_queries("-- name: nothing\n-- to do\n\n" + TEXT, "test.sql")


def test_asking_for_a_query_the_file_does_not_have_names_it() -> None:
    queries = parse_queries(TEXT, "test.sql")
    with pytest.raises(KeyError, match=r"test\.sql has no query named 'get_thnig'"):
        queries["get_thnig"]


def test_every_shipped_query_is_used_and_every_query_used_ships() -> None:
    text = (files("claude_pool.store.sqlite") / "sql" / "queries.sql").read_text()
    included = set(re.findall(r"\{(\w+)\}", text)) & set(QUERIES)
    code = Path(database.__file__).read_text()
    looked_up = set(re.findall(r'(?:Q\[|_sql\()\s*"(\w+)"', code))
    named = set(re.findall(r'"(\w+)"', code))
    assert looked_up - set(QUERIES) == set()
    assert set(QUERIES) - named - included == set()

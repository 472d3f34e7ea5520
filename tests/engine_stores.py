"""The store the engine suites run on: each of their tests runs once on the memory store and
once on the real PostgreSQL store (see the ``engine_store`` fixture in conftest.py).

The suites build their pools in plain helper functions, so the choice is kept here, for the
test being run, rather than handed through every test's arguments: :func:`new_store` gives a
new, empty store of the current kind, as ``MemoryStore()`` would. On PostgreSQL each store is a
schema of its own, dropped with everything in it when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from claude_pool.store import MemoryStore, Store

KINDS = ("memory", "postgres")


class _EngineStores:
    def __init__(self) -> None:
        self.kind = "memory"
        self._schemas: ExitStack | None = None
        self._server = ""

    @contextmanager
    def using(self, kind: str) -> Iterator[None]:
        if kind not in KINDS:
            raise ValueError(f"unknown engine store {kind!r}; use one of {KINDS}")
        if kind == "postgres":
            from claude_pool.testing.postgres import require_postgres

            self._server = require_postgres()  # skips, or fails in CI, with the reason
        with ExitStack() as schemas:
            self.kind, self._schemas = kind, schemas
            try:
                yield
            finally:
                self.kind, self._schemas = "memory", None

    def new(self) -> Store:
        if self.kind == "memory":
            return MemoryStore()
        from claude_pool.store.postgres import PostgresStore
        from claude_pool.testing.postgres import fresh_schema

        assert self._schemas is not None
        return PostgresStore(self._schemas.enter_context(fresh_schema(self._server)))


STORES = _EngineStores()


def new_store() -> Store:
    """A new, empty store of the kind the current test runs on."""
    return STORES.new()

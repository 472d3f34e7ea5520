"""Shared fixtures: the mock Anthropic API and the real Claude Code CLI pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from claude_pool import Pool, PoolConfig
from claude_pool.executor import ClaudeCliExecutor
from claude_pool.store import MemoryStore, Store
from claude_pool.testing.claude_cli import CliRun, ensure_claude, mock_cli_env, run_print
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI
from claude_pool.testing.recording_executor import RecordingExecutor

CLI_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The pinned Claude Code CLI (installed on first use)."""
    return ensure_claude()


@pytest.fixture
def mock_api() -> Iterator[MockAnthropicAPI]:
    """A running mock Anthropic API with fresh state."""
    with MockAnthropicAPI() as api:
        yield api


@pytest.fixture
def cli_home(tmp_path: Path) -> Path:
    """An isolated HOME for the CLI (its sessions and settings land here)."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def cli_cwd(tmp_path: Path) -> Path:
    """An empty working directory for the CLI."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    return cwd


@pytest.fixture
def cli_env(mock_api: MockAnthropicAPI, cli_home: Path) -> dict[str, str]:
    """Environment that points the CLI at ``mock_api`` with ``cli_home`` as HOME."""
    return mock_cli_env(mock_api.base_url, cli_home)


class RunClaude(Protocol):
    def __call__(
        self,
        *args: str,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> CliRun: ...


@pytest.fixture
def run_claude(claude_bin: Path, cli_env: dict[str, str], cli_cwd: Path) -> RunClaude:
    """Run ``claude -p --output-format stream-json --verbose *args`` against the mock.

    Put the prompt after ``--`` in ``args`` (or pass it as ``input``). Returns a ``CliRun``.
    """

    def run(
        *args: str,
        input: str | None = None,
        cwd: Path | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> CliRun:
        return run_print(
            claude_bin, args, env=cli_env, cwd=cwd or cli_cwd, input=input, timeout=timeout
        )

    return run


PoolFactory = Callable[..., Pool]


@pytest.fixture
def cli_events() -> list[RecordingExecutor]:
    """The recording executors of the pools ``make_pool`` built in this test, in order."""
    return []


@pytest.fixture
def make_pool(
    claude_bin: Path, cli_env: dict[str, str], cli_cwd: Path, cli_events: list[RecordingExecutor]
) -> PoolFactory:
    """Build a ``Pool`` whose slots run the real CLI against ``mock_api`` in ``cli_cwd``.

    ``make_pool(slots=1, store=None, **pool_config)``: the store defaults to memory, the
    model to the mock's ``DEFAULT_MODEL``; other keywords are ``PoolConfig`` fields. The
    executor events of each pool are kept (fixture ``cli_events``).
    """

    def make(slots: int = 1, store: Store | None = None, **config: Any) -> Pool:
        config.setdefault("model", DEFAULT_MODEL)
        executor = RecordingExecutor(ClaudeCliExecutor(claude_bin, env=cli_env))
        cli_events.append(executor)
        return Pool(PoolConfig(**config), slots=slots, store=store or MemoryStore(),
                    executor=executor, cwd=cli_cwd)  # fmt: skip

    return make


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL store URL on a fresh schema of the test server, dropped afterwards. Skips
    the test when no server answers (fails it in CI): see claude_pool.testing.postgres."""
    from claude_pool.testing.postgres import fresh_schema, require_postgres

    with fresh_schema(require_postgres()) as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of an engine suite (one using the ``engine_store`` fixture) runs once per store
    kind, unless it is marked ``own_store`` (it builds the store it needs itself) or its
    stores come from ``shared_store`` or ``postgres_url``."""
    if "engine_store" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("own_store") is not None:
        return
    if {"shared_store", "postgres_url"} & set(metafunc.fixturenames):
        return  # it has chosen its stores already
    metafunc.parametrize(
        "engine_store",
        ["memory", pytest.param("postgres", marks=pytest.mark.postgres)],
        indirect=True,
    )


@pytest.fixture
def engine_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """The kind of store (``memory`` or ``postgres``) that ``engine_stores.new_store()`` makes
    in this test. PostgreSQL is skipped with the reason when no server answers (a failure in
    CI), and each of its stores is a fresh schema, dropped after the test."""
    from engine_stores import STORES

    kind = getattr(request, "param", "memory")
    with STORES.using(kind):
        yield kind


SharedStore = Callable[[], Store]
"""Makes a new store object on one shared backing store: what another process would open."""


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    """For tests of several pool processes on one store: each call gives a new store object
    on the same SQLite file, or the same PostgreSQL schema (skipped, or failed in CI, when
    no server answers)."""
    if request.param == "sqlite":
        from claude_pool.store import SqliteStore

        db = tmp_path / "pool.db"
        yield lambda: SqliteStore(db)
        return
    from claude_pool.store.postgres import PostgresStore
    from claude_pool.testing.postgres import fresh_schema, require_postgres

    with fresh_schema(require_postgres()) as url:
        yield lambda: PostgresStore(url)

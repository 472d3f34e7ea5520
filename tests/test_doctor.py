"""``claude-pool doctor``: what it finds, what it tells you to fix, and its exit code."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from claude_pool import Pool, Settings
from claude_pool.cli import EXIT_OK, EXIT_TASK_FAILED, app
from claude_pool.doctor import (
    Status,
    check_claude,
    check_credentials,
    check_git,
    check_store,
    real_api_configured,
)
from claude_pool.store.sqlite import APPLICATION_ID, migrations
from claude_pool.testing.claude_cli import CLAUDE_CODE_VERSION, MOCK_API_KEY

LATEST = migrations()[-1].version


def doctor(*args: str, env: dict[str, str | None]) -> tuple[int, dict[str, Any]]:
    """Run ``claude-pool doctor --json``; returns the exit code and the checks by name."""
    run = CliRunner().invoke(app, ["doctor", "--json", *args], env=env)
    data = json.loads(run.output)
    assert data["ok"] is (run.exit_code == EXIT_OK)
    return run.exit_code, {c["name"]: c for c in data["checks"]}


def fake_claude(tmp_path: Path, version_line: str) -> Path:
    script = tmp_path / "claude"
    script.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository as the working directory."""
    work = tmp_path / "repo"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    monkeypatch.chdir(work)
    return work


async def queue_one_task(store: Path) -> None:
    async with Pool(settings=Settings(store=str(store)), slots=0) as pool:
        await pool.submit("waits for a worker")


@pytest.mark.cli
def test_doctor_passes_with_the_pinned_cli_a_key_a_repository_and_a_store(
    claude_bin: Path, repo: Path
) -> None:
    store = repo / "pool.db"
    asyncio.run(queue_one_task(store))

    code, checks = doctor(
        "--store",
        str(store),
        env={
            "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin),
            "ANTHROPIC_API_KEY": "sk-ant-api03-not-a-real-one",
            "ANTHROPIC_BASE_URL": None,
        },
    )

    assert code == EXIT_OK, checks
    assert checks["claude CLI"]["status"] == "ok"
    assert checks["claude CLI"]["detail"].startswith(f"{CLAUDE_CODE_VERSION} at {claude_bin}")
    assert checks["credentials"]["status"] == "ok"
    assert "sk-ant" not in checks["credentials"]["detail"]
    assert checks["git repository"]["status"] == "ok"
    assert checks["store"]["status"] == "ok"
    assert f"schema version {LATEST}, 1 task(s) (1 pending)" in checks["store"]["detail"]


def test_doctor_fails_and_says_how_to_install_when_the_cli_is_missing(repo: Path) -> None:
    code, checks = doctor(
        "--store", ":memory:", env={"CLAUDE_POOL_CLAUDE_BIN": str(repo / "no-such-claude")}
    )
    assert code == EXIT_TASK_FAILED
    claude = checks["claude CLI"]
    assert claude["status"] == "fail"
    assert "not an executable" in claude["detail"]
    assert claude["fix"].startswith("run `claude-pool install-cli`")
    assert "CLAUDE_POOL_CLAUDE_BIN" in claude["fix"]


def test_doctor_without_any_claude_names_the_folder_install_cli_fills(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code, checks = doctor(
        "--store",
        ":memory:",
        env={
            "CLAUDE_POOL_CLAUDE_BIN": None,
            "CLAUDE_POOL_CACHE_DIR": str(cache),
            "PATH": str(tmp_path / "empty"),
        },
    )
    assert code == EXIT_TASK_FAILED
    claude = checks["claude CLI"]
    assert claude["detail"] == f"no `claude` on PATH and none installed in {cache / 'claude-cli'}"
    assert claude["fix"].startswith("run `claude-pool install-cli`")


@pytest.mark.parametrize(
    ("version_line", "status", "words"),
    [
        ("1.0.3 (Claude Code)", Status.FAIL, "older than 2.1.0"),
        ("9.9.9 (Claude Code)", Status.WARN, f"tested with {CLAUDE_CODE_VERSION}"),
        ("no version here", Status.FAIL, "does not answer `--version`"),
    ],
)
def test_doctor_judges_the_cli_by_its_version(
    tmp_path: Path, version_line: str, status: Status, words: str
) -> None:
    binary = fake_claude(tmp_path, version_line)
    check = check_claude(Settings(claude_bin=str(binary)))
    assert check.status is status
    assert words in check.detail
    assert check.fix


@pytest.mark.parametrize(
    ("env", "status", "words"),
    [
        ({}, Status.WARN, "runs against the built-in mock API"),
        ({"ANTHROPIC_API_KEY": MOCK_API_KEY}, Status.WARN, "the mock API's key"),
        ({"ANTHROPIC_API_KEY": "sk-ant-api03-x"}, Status.OK, "the demo uses it"),
        (
            {"ANTHROPIC_API_KEY": "sk-ant-api03-x", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"},
            Status.WARN,
            "a local server",
        ),
        ({"CLAUDE_CODE_OAUTH_TOKEN": "t"}, Status.OK, "still uses the built-in mock"),
    ],
)
def test_doctor_says_which_api_the_demo_will_use(
    env: dict[str, str], status: Status, words: str
) -> None:
    check = check_credentials(env)
    assert check.status is status
    assert words in check.detail


def test_only_a_key_that_is_not_the_mocks_counts_as_the_real_api() -> None:
    assert not real_api_configured({})
    assert not real_api_configured({"ANTHROPIC_API_KEY": ""})
    assert not real_api_configured({"ANTHROPIC_API_KEY": MOCK_API_KEY})
    assert real_api_configured({"ANTHROPIC_API_KEY": "sk-ant-api03-x"})


def test_outside_a_repository_git_warns_unless_worktree_isolation_needs_it(
    tmp_path: Path,
) -> None:
    [git, plain] = check_git(Settings(), tmp_path)
    assert git.status is Status.OK
    assert plain.status is Status.WARN
    assert "not in a git repository" in plain.detail
    assert "git init" in plain.fix
    isolated = Settings.model_validate({"pool": {"worktree_isolation": True}})
    [_, needed] = check_git(isolated, tmp_path)
    assert needed.status is Status.FAIL


async def test_doctor_does_not_create_a_store_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "pool.db"
    check = await check_store(Settings(store=str(path)))
    assert check.status is Status.OK
    assert "does not exist yet" in check.detail
    assert not path.exists()


def make_sqlite(path: Path, user_version: int, application_id: int, table: bool = False) -> None:
    conn = sqlite3.connect(path)
    if table:
        conn.execute("CREATE TABLE other_app (x)")
    conn.execute(f"PRAGMA user_version = {user_version}")
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("user_version", "application_id", "table", "status", "words"),
    [
        (LATEST + 1, APPLICATION_ID, False, Status.FAIL, "newer than"),
        (1, APPLICATION_ID, False, Status.WARN, f"upgrades it to {LATEST}"),
        (0, 0x1234, False, Status.FAIL, "not a claude-pool database"),
        (0, 0, True, Status.FAIL, "not a claude-pool database"),
    ],
)
async def test_doctor_reports_a_store_it_cannot_use_as_is_without_changing_it(
    tmp_path: Path, user_version: int, application_id: int, table: bool, status: Status, words: str
) -> None:
    path = tmp_path / "pool.db"
    make_sqlite(path, user_version, application_id, table)
    before = path.read_bytes()
    check = await check_store(Settings(store=str(path)))
    assert check.status is status
    assert words in check.detail
    assert path.read_bytes() == before


def test_doctor_reports_a_broken_config_file_and_still_runs_the_other_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "claude-pool.toml"
    config.write_text("slots = [not toml")
    code, checks = doctor("--config", str(config), env={})
    assert code == EXIT_TASK_FAILED
    assert checks["config"]["status"] == "fail"
    assert "not valid TOML" in checks["config"]["detail"]
    assert {"claude CLI", "credentials", "git", "store", "node/npm"} <= set(checks)


def test_doctor_prints_a_table_of_checks_with_what_to_fix(tmp_path: Path) -> None:
    run = CliRunner().invoke(
        app,
        ["doctor", "--store", ":memory:"],
        env={"CLAUDE_POOL_CLAUDE_BIN": str(tmp_path / "missing"), "COLUMNS": "200"},
    )
    assert run.exit_code == EXIT_TASK_FAILED
    assert "claude CLI" in run.output
    assert "FAIL" in run.output
    assert "→ run `claude-pool install-cli`" in run.output
    assert "problem(s) to fix" in run.output


# ── a PostgreSQL store ──────────────────────────────────────────────


async def test_doctor_on_a_new_postgres_schema_says_the_first_worker_sets_it_up_and_creates_nothing(
    postgres_url: str,
) -> None:
    import psycopg

    from claude_pool.store.postgres import split_store_url

    check = await check_store(Settings(store=postgres_url))
    assert check.status is Status.OK, check
    assert "PostgreSQL" in check.detail
    assert "sets it up" in check.detail
    conninfo, schema = split_store_url(postgres_url)
    with psycopg.connect(conninfo) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() is None, "doctor changed nothing"


async def test_doctor_on_a_postgres_store_shows_its_version_and_contents(postgres_url: str) -> None:
    from claude_pool.store.postgres import PostgresStore, latest_version

    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    check = await check_store(Settings(store=postgres_url))
    assert check.status is Status.OK, check
    assert f"at version {latest_version()}" in check.detail
    assert "0 task(s)" in check.detail


async def test_doctor_refuses_a_postgres_store_of_a_newer_claude_pool(postgres_url: str) -> None:
    import psycopg
    from psycopg import sql

    from claude_pool.store.postgres import PostgresStore, split_store_url

    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    conninfo, schema = split_store_url(postgres_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {}.claude_pool_schema SET version = 999").format(sql.Identifier(schema))
        )
    check = await check_store(Settings(store=postgres_url))
    assert check.status is Status.FAIL
    assert "newer than" in check.detail
    assert "upgrade claude-pool" in check.fix


async def test_doctor_says_what_to_grant_a_postgres_user_who_may_not_use_the_store(
    postgres_url: str,
) -> None:
    import secrets

    import psycopg
    from psycopg import sql

    from claude_pool.store.postgres import PostgresStore, split_store_url

    store = PostgresStore(postgres_url)
    await store.open()
    await store.close()
    conninfo, schema = split_store_url(postgres_url)
    role = f"cp_test_user_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
    try:
        url = postgres_url.replace("postgresql://", f"postgresql://{role}@", 1)
        check = await check_store(Settings(store=url))
        assert check.status is Status.FAIL
        assert f"user {role} may not read and write" in check.detail
        assert f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema}" in check.fix
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_doctor_says_how_to_reach_a_postgres_server_that_does_not_answer() -> None:
    check = await check_store(Settings(store="postgresql://127.0.0.1:9/nowhere?connect_timeout=1"))
    assert check.status is Status.FAIL
    assert "cannot connect" in check.detail
    assert "start PostgreSQL" in check.fix

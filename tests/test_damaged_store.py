"""Damaged and foreign SQLite files: never written to before they are known to be ours, and a
page that goes bad under a running pool stops it with one clear error, not a hang or a pile of
tracebacks."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from claude_pool import Pool, PoolConfig, StoreDamaged, StoreError, TaskState
from claude_pool.store import SqliteStore
from claude_pool.store.sqlite.schema import APPLICATION_ID
from claude_pool.testing.damage import corrupt_table
from claude_pool.testing.fake_executor import FakeExecutor


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def journal_mode(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return mode


def foreign_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


async def test_a_foreign_sqlite_file_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """Regression: the file was refused, but only after being switched to WAL mode."""
    path = foreign_file(tmp_path / "notes.db")
    before = digest(path)
    with pytest.raises(StoreError, match=r"holds other tables \(notes\)"):
        await SqliteStore(path).open()
    assert digest(path) == before
    assert journal_mode(path) == "delete"
    assert sorted(os.listdir(tmp_path)) == ["notes.db"], "no -wal or -shm file"


@pytest.mark.parametrize(
    ("pragmas", "refusal"),
    [
        ("PRAGMA application_id = 1234", "belongs to another application"),
        (f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 999", "version 999"),
    ],
)
async def test_a_file_of_another_application_or_a_newer_claude_pool_is_left_alone(
    tmp_path: Path, pragmas: str, refusal: str
) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.executescript(pragmas)
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match=refusal):
        await SqliteStore(path).open()
    assert digest(path) == before
    assert journal_mode(path) == "delete"


async def test_a_file_that_is_not_a_database_is_refused_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "pool.db"
    path.write_text("these are my notes\n" * 200)
    before = digest(path)
    with pytest.raises(StoreDamaged, match="is not a claude-pool SQLite database or is damaged"):
        await SqliteStore(path).open()
    assert digest(path) == before


async def test_a_page_that_goes_bad_mid_run_stops_the_pool_with_one_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a corrupt page gave chained tracebacks ending in ``CancelledError`` from
    ``close()``; the result write was retried for ever and close waited on it."""
    db = tmp_path / "pool.db"
    executor = FakeExecutor(hold=True)
    caplog.set_level(logging.WARNING, logger="claude_pool")
    pool = Pool(PoolConfig(), slots=2, store=SqliteStore(db), executor=executor)
    async with asyncio.timeout(30):  # bounded: nothing may hang on a damaged store
        async with pool:
            task_id = await pool.submit("write the report")
            await executor.wait_running(1)
            corrupt_table(db, "tasks")
            executor.release()
            failure = await pool.wait_failure()
            assert pool.failure is failure
            assert "database disk image is malformed" in str(failure)
            assert "move" in str(failure), "it says what to do"
            with pytest.raises(StoreDamaged):
                await pool.submit("more work")
            assert task_id not in executor.running
    summary = await pool.drain()  # after close: what the close's drain did
    assert summary.slots_stopped == 2
    assert sorted(executor.released_slots) == sorted(s.id for s in pool.slots), (
        "every slot's process was stopped"
    )
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("this pool takes no more work" in r.getMessage() for r in errors)
    assert len(errors) <= 3, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records), "no tracebacks"


def test_the_command_line_says_one_line_about_a_damaged_store(tmp_path: Path) -> None:
    db = tmp_path / "pool.db"

    async def fill() -> None:
        async with Pool(PoolConfig(), slots=0, store=SqliteStore(db)) as pool:
            for i in range(20):
                await pool.submit(f"task {i} " + "x" * 2000)

    asyncio.run(fill())
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[4096 : 4096 + 512] = b"\xff" * 512  # page 2: the tasks table's root
    db.write_bytes(bytes(data))
    for args in (["status"], ["submit", "hello"], ["tasks"]):
        done = subprocess.run(
            [sys.executable, "-m", "claude_pool.cli", *args, "--store", str(db)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith("error: SQLite store"), lines
        assert "damaged" in lines[0]
        assert "Traceback" not in done.stdout + done.stderr


async def test_a_damaged_store_leaves_queued_work_where_it_is(tmp_path: Path) -> None:
    """The work the damaged file still holds is not touched by the failing pool: a pool
    opened on a repaired copy finds what was queued."""
    db = tmp_path / "pool.db"
    async with Pool(PoolConfig(), slots=0, store=SqliteStore(db)) as pool:
        queued = await pool.submit("later")
    async with Pool(PoolConfig(), slots=0, store=SqliteStore(db)) as pool:
        assert (await pool.get_task(queued)).state is TaskState.PENDING

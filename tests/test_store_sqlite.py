"""The SQLite store meets the store contract, and keeps its data like a database should."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from claude_pool.bus import EventBus
from claude_pool.errors import ConfigError, StoreError
from claude_pool.eventlog import EventLog
from claude_pool.events import Event, TaskCancelled, TaskQueued, TaskRequeued, TaskText
from claude_pool.store import MemoryStore, SqliteStore, Store, StoredTask, open_store
from claude_pool.store.sqlite import APPLICATION_ID, migrations, schema_sql, split_statements
from claude_pool.store.sqlite.database import Database
from claude_pool.testing.store_contract import T0, StoreContract, make_result, make_task
from claude_pool.types import SlotId, SlotRecord, SlotState, TaskRecord, TaskState


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = SqliteStore(tmp_path / "pool.db")
        await store.open()
        yield store
        await store.close()


class TestSqliteStoreInMemory(StoreContract):
    """A private in-memory database: every operation takes the store's thread."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        store = SqliteStore(":memory:")
        await store.open()
        yield store
        await store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pool.db"


def test_sqlite_store_implements_the_store_protocol(tmp_path: Path) -> None:
    assert isinstance(SqliteStore(tmp_path / "x.db"), Store)


async def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    pending = await store.insert_task(make_task("later", tags=["keep"], priority=2))
    running = await store.insert_task(make_task("now", priority=9))
    await store.claim_task(SlotId("slot-a"), None, None, "worker-1", T0 + 1)
    await store.upsert_slot(SlotRecord(id=SlotId("slot-a"), session_id="sess"), "worker-1")
    await store.add_slot_cost(SlotId("slot-a"), 42, 1)
    await store.add_spend(1234)
    await store.context_set("goal", "ship it")
    message = await store.send_message("slot-b", "slot-a", "hi", T0)
    event = TaskQueued(task_id=pending.record.id, prompt="later", at_ms=T0)
    await store.append_events([event])
    await store.heartbeat_worker("worker-1", T0)
    await store.close()

    reopened = SqliteStore(db_path)
    await reopened.open()
    try:
        got = await reopened.get_task(pending.record.id)
        assert got == pending
        still_running = await reopened.get_task(running.record.id)
        assert still_running is not None
        assert still_running.record.state is TaskState.RUNNING
        assert still_running.claimed_by == "worker-1"
        slot = await reopened.get_slot(SlotId("slot-a"))
        assert slot is not None
        assert (slot.session_id, slot.cost_microdollars, slot.tasks_completed) == ("sess", 42, 1)
        assert await reopened.get_spend() == 1234
        assert await reopened.context_list() == {"goal": "ship it"}
        assert await reopened.read_messages("slot-a", drain=False) == [message]
        assert await reopened.read_events() == [event]
        assert await reopened.live_workers(T0) == ["worker-1"]
        # New tasks still come after the old ones.
        newer = await reopened.insert_task(make_task("newer"))
        assert newer.seq > running.seq
    finally:
        await reopened.close()


async def test_two_store_objects_on_one_file_never_claim_a_task_twice(db_path: Path) -> None:
    first, second = SqliteStore(db_path), SqliteStore(db_path)
    await first.open()
    await second.open()
    try:
        tasks = await first.insert_tasks(make_task(f"p{i}") for i in range(200))

        async def claimer(store: SqliteStore, n: int) -> list[str]:
            got: list[str] = []
            while True:
                task = await store.claim_task(SlotId(f"slot-{n}"), None, None, f"w{n}", T0)
                if task is None:
                    return got
                got.append(task.record.id)

        results = await asyncio.gather(
            *(claimer(first if n % 2 else second, n) for n in range(20)),
            *(first.add_spend(1) for _ in range(50)),
            *(second.add_spend(1) for _ in range(50)),
        )
        claimed = Counter(i for ids in results[:20] if isinstance(ids, list) for i in ids)
        assert set(claimed) == {t.record.id for t in tasks}
        assert set(claimed.values()) == {1}
        assert await first.get_spend() == 100
        assert await second.get_spend() == 100
    finally:
        await first.close()
        await second.close()


async def test_two_store_objects_on_one_file_never_both_take_over_a_chain(
    db_path: Path,
) -> None:
    first, second = SqliteStore(db_path), SqliteStore(db_path)
    await first.open()
    await second.open()
    try:
        for i in range(20):
            doc = {"id": f"chain-{i}", "owner": "dead"}
            await first.upsert_chain(f"chain-{i}", doc, "running", T0)
        wins = await asyncio.gather(
            *(
                store.claim_chain(f"chain-{i}", "dead", name, T0 + 1)
                for i in range(20)
                for store, name in ((first, "first"), (second, "second"))
            )
        )
        assert [wins[2 * i] + wins[2 * i + 1] for i in range(20)] == [1] * 20
        owners = [c["owner"] for c in await second.list_chains("running", limit=100)]
        assert owners == ["first" if wins[2 * i] else "second" for i in range(20)]
    finally:
        await first.close()
        await second.close()


async def test_a_cancelled_chain_claim_leaves_the_chain_to_its_owner(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.upsert_chain("chain-1", {"id": "chain-1", "owner": "dead"}, "running", T0)
    # Another connection holds the write lock, so the claim is still in flight when cancelled.
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    claim = asyncio.create_task(store.claim_chain("chain-1", "dead", "me", T0 + 1))
    for _ in range(2):  # let the claim find the database busy and go to the store's thread
        await asyncio.sleep(0)
    claim.cancel()
    blocker.execute("COMMIT")
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await claim
    await store.close()  # waits for the claim to be taken back

    await store.open()
    assert await store.get_chain("chain-1") == {"id": "chain-1", "owner": "dead"}
    assert await store.claim_chain("chain-1", "dead", "other", T0 + 2)
    await store.close()


_CLAIMER_SCRIPT = """
import asyncio, json, sys
from claude_pool.store import SqliteStore
from claude_pool.types import SlotId

async def main():
    store = SqliteStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    claimed = []
    while (task := await store.claim_task(SlotId("other"), None, None, "other", 0)) is not None:
        claimed.append(task.record.id)
    await store.close()
    print(json.dumps(claimed), flush=True)

asyncio.run(main())
"""


async def test_another_process_and_this_one_never_claim_a_task_twice(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    tasks = await store.insert_tasks(make_task(f"p{i}") for i in range(300))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLAIMER_SCRIPT,
        str(db_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert await child.stdout.readline() == b"ready\n"
            child.stdin.write(b"go\n")
            await child.stdin.drain()
            mine: list[str] = []
            while (task := await store.claim_task(SlotId("s"), None, None, "me", T0)) is not None:
                mine.append(task.record.id)
            theirs = json.loads(await child.stdout.readline())
            assert await child.wait() == 0
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await store.close()
    claimed = Counter(mine + theirs)
    assert set(claimed) == {t.record.id for t in tasks}
    assert set(claimed.values()) == {1}


async def test_a_task_inserted_by_one_store_object_is_claimed_by_another(db_path: Path) -> None:
    submitter, worker = SqliteStore(db_path), SqliteStore(db_path)
    await submitter.open()
    await worker.open()
    try:
        task = await submitter.insert_task(make_task("from the CLI"))
        claimed = await worker.claim_task(SlotId("slot-a"), None, None, "w", T0)
        assert claimed is not None
        assert claimed.record.id == task.record.id
        seen = await submitter.get_task(task.record.id)
        assert seen is not None
        assert seen.record.state is TaskState.RUNNING
    finally:
        await submitter.close()
        await worker.close()


def _schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
    ).fetchall()
    return [(t, n, tbl, re.sub(r"\s+", " ", sql).strip()) for t, n, tbl, sql in rows]


def test_applying_every_migration_yields_exactly_the_current_schema() -> None:
    migrated = sqlite3.connect(":memory:")
    for migration in migrations():
        for statement in split_statements(migration.sql):
            migrated.execute(statement)
    current = sqlite3.connect(":memory:")
    for statement in split_statements(schema_sql()):
        current.execute(statement)
    assert _schema_of(migrated) == _schema_of(current)
    assert _schema_of(current), "the schema defines tables"
    assert (
        migrated.execute("SELECT * FROM counters").fetchall()
        == current.execute("SELECT * FROM counters").fetchall()
    )


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "0001_initial.sql"


async def test_a_new_database_is_in_wal_mode_at_the_latest_schema_version(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1].version
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


async def test_opening_twice_and_closing_twice_is_harmless(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.open()
    await store.close()
    await store.close()


async def test_using_a_store_that_is_not_open_is_a_store_error(db_path: Path) -> None:
    store = SqliteStore(db_path)
    with pytest.raises(StoreError, match=r"not open; call open\(\) first"):
        await store.get_spend()


@pytest.fixture
def corrupt_db(db_path: Path) -> Path:
    db_path.write_bytes(b"this is not a database at all" * 100)
    return db_path


async def test_a_corrupt_file_gives_a_store_error_that_says_what_to_do(corrupt_db: Path) -> None:
    db_path = corrupt_db
    store = SqliteStore(db_path)
    with pytest.raises(StoreError, match="not a claude-pool SQLite database") as info:
        await store.open()
    assert str(db_path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_an_unusable_path_gives_a_store_error_that_says_what_to_do(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="writable directory"):
        await SqliteStore(not_a_dir / "pool.db").open()
    with pytest.raises(StoreError, match="writable"):
        await SqliteStore(tmp_path).open()  # a directory, not a file


async def test_a_database_from_a_newer_claude_pool_is_refused(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StoreError, match="upgrade claude-pool"):
        await SqliteStore(db_path).open()


async def test_a_database_of_another_application_is_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a claude-pool database"):
        await SqliteStore(db_path).open()


async def test_parent_directories_are_created(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a" / "b" / "pool.db")
    await store.open()
    await store.close()
    assert (tmp_path / "a" / "b" / "pool.db").is_file()


async def test_a_cancelled_claim_leaves_no_task_claimed(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    task = await store.insert_task(make_task())
    # Another connection holds the write lock, so the claim is still in flight when cancelled.
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    claim = asyncio.create_task(store.claim_task(SlotId("s"), None, None, "w", T0))
    await asyncio.sleep(0)  # let the claim reach the database thread
    claim.cancel()
    blocker.execute("COMMIT")
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await claim
    await store.close()  # waits for the claim to be taken back

    await store.open()
    stored = await store.get_task(task.record.id)
    assert stored is not None
    assert stored.record.state is TaskState.PENDING
    assert stored.claimed_by is None
    again = await store.claim_task(SlotId("s"), None, None, "w", T0)
    assert again is not None
    assert again.record.id == task.record.id
    await store.close()


async def test_a_claim_cancelled_at_any_point_is_either_returned_or_undone(
    db_path: Path,
) -> None:
    store = SqliteStore(db_path)
    await store.open()
    for yields in range(6):
        task = await store.insert_task(make_task())
        claim = asyncio.create_task(store.claim_task(SlotId("s"), None, None, "w", T0))
        for _ in range(yields):
            await asyncio.sleep(0)
        claim.cancel()
        try:
            claimed = await claim
        except asyncio.CancelledError:
            claimed = None
        stored = await store.get_task(task.record.id)
        assert stored is not None
        expected = TaskState.PENDING if claimed is None else TaskState.RUNNING
        assert stored.record.state is expected, f"cancelled after {yields} yields"
        if claimed is None:
            await store.transition_task(
                task.record.id, [TaskState.PENDING], TaskState.CANCELLED, now_ms=T0
            )
        else:
            await store.transition_task(
                task.record.id, [TaskState.RUNNING], TaskState.CANCELLED, now_ms=T0
            )
    await store.close()


async def test_a_cancelled_drain_loses_no_message(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    sent = await store.send_message("a", "b", "important", T0)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    drain = asyncio.create_task(store.read_messages("b", drain=True))
    await asyncio.sleep(0)
    drain.cancel()
    blocker.execute("COMMIT")
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await drain
    await store.close()
    await store.open()
    assert await store.read_messages("b", drain=True) == [sent]
    await store.close()


async def test_a_write_while_another_process_holds_the_lock_waits_for_it(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    with another_process_holds_the_file(db_path):
        adding = asyncio.create_task(store.add_spend(5))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not adding.done()
    assert await adding == 5
    assert await store.get_spend() == 5
    await store.close()


def _count_commits(store: SqliteStore) -> list[str]:
    """The transactions the store's quick connection commits from now on."""
    commits: list[str] = []
    assert store._quick_db is not None
    store._quick_db.conn.set_trace_callback(_commits_into(commits))
    return commits


async def _count_thread_commits(store: SqliteStore) -> list[str]:
    """The transactions the connection of the store's thread commits from now on."""
    commits: list[str] = []
    trace = _commits_into(commits)
    await store._run("tracing", lambda db: db.conn.set_trace_callback(trace))
    return commits


def _commits_into(commits: list[str]) -> Callable[[str], None]:
    return lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None


async def test_writes_asked_for_in_one_turn_commit_together(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    commits = _count_commits(store)
    tasks = [make_task(f"burst {i}") for i in range(50)]
    stored = await asyncio.gather(*(store.insert_task(t) for t in tasks))
    # The 50 asked for in the same turn share one commit.
    assert len(commits) == 1
    assert [s.record.id for s in stored] == [t.record.id for t in tasks]
    assert len(await store.list_tasks(limit=100)) == 50
    await store.close()


async def test_a_write_given_up_while_it_waits_for_its_batch_is_not_written(
    db_path: Path,
) -> None:
    store = SqliteStore(db_path)
    await store.open()
    task = await store.insert_task(make_task())
    commits = _count_commits(store)
    # Another process holds the file: the first write waits for it on the store's thread,
    # and the writes asked for meanwhile wait for that one.
    with another_process_holds_the_file(db_path):
        first = asyncio.create_task(store.add_spend(3))
        for _ in range(3):
            await asyncio.sleep(0)
        claim = asyncio.create_task(store.claim_task(SlotId("s"), None, None, "w", T0))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not first.done()
        assert not claim.done()
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await claim
    assert await first == 3
    assert commits == []  # the spend went through the thread; the claim ran nowhere
    stored = await store.get_task(task.record.id)
    assert stored is not None
    assert stored.record.state is TaskState.PENDING
    await store.close()


async def test_a_write_that_fails_in_a_batch_fails_alone(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    taken = await store.insert_task(make_task("first"))
    refused = TaskQueued(task_id=taken.record.id)
    results = await asyncio.gather(
        store.add_spend(1),  # the four share a batch
        store.insert_task(make_task("before")),
        store.insert_task(make_task("again", task_id=taken.record.id), events=[refused]),
        store.insert_task(make_task("after")),
        return_exceptions=True,
    )
    assert isinstance(results[2], StoreError)
    assert "already exists" in str(results[2])
    assert refused.seq == 0  # it was not logged
    assert not any(isinstance(r, BaseException) for r in (results[0], results[1], results[3]))
    prompts = sorted(t.prompt for t in await store.list_tasks(limit=10))
    assert prompts == ["after", "before", "first"]
    await store.close()


async def test_a_batch_while_another_process_holds_the_lock_waits_for_it(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    with another_process_holds_the_file(db_path):
        adding = asyncio.gather(*(store.add_spend(5) for _ in range(10)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not adding.done()
    assert sorted(await adding) == [5 * n for n in range(1, 11)]
    assert await store.get_spend() == 50
    await store.close()


async def test_writes_wait_for_the_stores_thread_then_commit_together(db_path: Path) -> None:
    # While the store's thread holds a write (here one that found the file locked by another
    # process), later writes do not each find the file locked and queue on the thread: they
    # wait, and commit in one transaction on the quick connection once it is done.
    store = SqliteStore(db_path)
    await store.open()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    on_thread = await _count_thread_commits(store)
    first = asyncio.ensure_future(store.add_spend(1))
    for _ in range(5):
        await asyncio.sleep(0)
    commits = _count_commits(store)
    later = []
    for _ in range(5):
        later.append(asyncio.ensure_future(store.add_spend(1)))
        await asyncio.sleep(0)  # each asked for in a turn of its own
    assert not first.done()
    assert not any(write.done() for write in later)
    blocker.execute("COMMIT")
    blocker.close()
    await asyncio.gather(first, *later)
    assert await store.get_spend() == 6
    assert (len(on_thread), len(commits)) == (1, 1)
    await store.close()


async def _event_log(store: SqliteStore) -> tuple[EventLog, list[Event]]:
    bus = EventBus()
    published: list[Event] = []
    bus.add_listener(published.append)
    log = EventLog(store, bus, "worker-1")
    await log.start()
    return log, published


async def test_writes_behind_emitted_events_commit_together_and_in_order(
    db_path: Path,
) -> None:
    # An emitted event (a claim, a task start) is appended ahead of the write that takes it
    # along: the writes asked for beside that one do not wait to learn whether it logged it,
    # so they all share one commit, and the log still has the emitted event first.
    store = SqliteStore(db_path)
    await store.open()
    log, published = await _event_log(store)
    commits = _count_commits(store)
    log.emit(TaskText(task_id="t-0", slot_id="slot-1", text="emitted first"))
    tasks = [make_task(f"burst {i}") for i in range(20)]

    def insert(task: StoredTask) -> Callable[[list[Event]], Awaitable[StoredTask]]:
        return lambda batch: store.insert_task(task, events=batch)

    await asyncio.gather(*(log.write(insert(t), TaskQueued(task_id=t.record.id)) for t in tasks))
    assert len(commits) == 1
    logged = await store.read_events(after=0)
    expected = ["t-0", *(t.record.id for t in tasks)]
    assert [e.task_id for e in logged] == expected
    assert [e.seq for e in logged] == sorted(e.seq for e in logged)
    assert [(e.task_id, e.seq) for e in published] == [(e.task_id, e.seq) for e in logged]
    await store.close()


async def test_emitted_events_are_logged_when_the_write_taking_them_does_not_happen(
    db_path: Path,
) -> None:
    # A compare-and-set that does not happen logs nothing of its own, but the events emitted
    # before it are in the log, ahead of what later writes log.
    store = SqliteStore(db_path)
    await store.open()
    log, published = await _event_log(store)
    task = await store.insert_task(make_task())
    log.emit(TaskText(task_id=task.record.id, slot_id="slot-1", text="before the cancel"))

    def cancel(batch: list[Event]) -> Awaitable[TaskRecord | None]:
        return store.transition_task(
            task.record.id, {TaskState.RUNNING}, TaskState.CANCELLED, now_ms=T0, events=batch
        )

    later = make_task("later")
    moved, _ = await asyncio.gather(
        log.write(cancel, TaskCancelled(task_id=task.record.id)),
        log.write(
            lambda batch: store.insert_task(later, events=batch),
            TaskQueued(task_id=later.record.id),
        ),
    )
    assert moved is None  # the task was pending, not running
    logged = await store.read_events(after=0)
    assert [e.type for e in logged] == ["task_text", "task_queued"]
    assert [e.seq for e in published] == [e.seq for e in logged]
    await store.close()


async def test_emitted_events_the_store_could_not_take_are_kept_and_written_later(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(db_path)
    await store.open()
    log, published = await _event_log(store)
    real_append = Database.append_events

    def full_disk(db: Database, events: list[Event]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Database, "append_events", full_disk)
    log.emit(TaskText(task_id="t-0", slot_id="slot-1", text="kept"))
    task = make_task()
    await log.write(
        lambda batch: store.insert_task(task, events=batch), TaskQueued(task_id=task.record.id)
    )
    # The write went through; the emitted event did not, and waits for the next write.
    assert [e.type for e in await store.read_events(after=0)] == ["task_queued"]
    monkeypatch.setattr(Database, "append_events", real_append)
    await log.flush()
    assert [e.type for e in await store.read_events(after=0)] == ["task_queued", "task_text"]
    assert [e.type for e in published] == ["task_queued", "task_text"]
    await store.close()


async def test_recovery_logs_its_events_after_events_appended_ahead_of_it(
    db_path: Path,
) -> None:
    # Recovery runs on the store's thread; it waits for the writes already asked for, so an
    # event appended ahead of it is not overtaken by the events it logs.
    store = SqliteStore(db_path)
    await store.open()
    await store.insert_task(make_task())
    task = await store.claim_task(SlotId("slot-1"), None, None, "dead", T0)
    assert task is not None
    for _ in range(20):
        ahead = store.append_events_ahead(
            [TaskText(task_id=task.record.id, slot_id="slot-1", text="before recovery")]
        )
        recovered = await store.recover_tasks(
            ["dead"], "requeue", T0 + 100,
            events=lambda task_id, _worker, _record: [TaskRequeued(task_id=task_id, reason="x")],
        )  # fmt: skip
        await ahead
        assert recovered == [task.record.id]
        logged = await store.read_events(after=0)
        assert [e.type for e in logged[-2:]] == ["task_text", "task_requeued"]
        again = await store.claim_task(SlotId("slot-1"), None, None, "dead", T0)
        assert again is not None
    await store.close()


async def test_a_loop_of_store_calls_lets_other_tasks_run(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    other_task = asyncio.create_task(other())
    for _ in range(20):
        await store.get_spend()
        if ran.is_set():
            break
    assert ran.is_set()
    await other_task
    await store.close()


async def test_the_wal_file_stays_bounded_under_a_stream_of_writes(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    wal = Path(f"{db_path}-wal")
    for i in range(1500):
        await store.insert_task(make_task(f"task {i} " + "x" * 200))
    # Unchecked, 1,500 inserts leave about 50 MB of WAL; checkpoints keep it to a few MB.
    size = wal_size(wal)
    assert size is not None
    assert size < 16_000_000
    await store.close()
    assert wal_size(wal) is None, "closing the last connection removes the WAL"


@contextmanager
def another_process_holds_the_file(db_path: Path) -> Iterator[None]:
    """Another connection holds the file's write lock until the block ends."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("COMMIT")
        blocker.close()


def wal_size(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


async def test_bulk_insert_assigns_seq_in_order_and_indexes_tags(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    try:
        single = await store.insert_task(make_task("single"))
        batch = await store.insert_tasks(
            make_task(f"b{i}", tags=["bulk"], state=TaskState.COMPLETED, result=make_result(i))
            for i in range(5)
        )
        assert [t.seq for t in batch] == list(range(single.seq + 1, single.seq + 6))
        listed = await store.list_tasks()
        assert [t.id for t in listed] == [single.record.id, *(t.record.id for t in batch)]
        metrics = await store.session_metrics(None, T0, T0)
        assert metrics.total_spend_microdollars == 10
        with pytest.raises(StoreError, match="already exists"):
            await store.insert_tasks([make_task(task_id=single.record.id)])
        later = await store.insert_task(make_task("later"))
        assert later.seq == batch[-1].seq + 1
    finally:
        await store.close()


async def test_store_errors_chain_the_sqlite_error(db_path: Path) -> None:
    store = SqliteStore(db_path, busy_timeout_ms=50)
    await store.open()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="busy timeout") as info:
            await store.add_spend(1)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert await store.add_spend(1) == 1
    await store.close()


def test_the_sql_files_ship_inside_the_package() -> None:
    from importlib.resources import files

    sql = files("claude_pool.store.sqlite") / "sql"
    assert "CREATE TABLE tasks" in (sql / "schema.sql").read_text()
    assert (sql / "migrations" / "0001_initial.sql").is_file()
    assert "-- name: claim_task" in (sql / "queries.sql").read_text()


# ── open_store ───────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("relative/pool.db", "relative/pool.db"),
        ("/abs/pool.db", "/abs/pool.db"),
        ("sqlite:///relative/pool.db", "relative/pool.db"),
        ("sqlite:////abs/pool.db", "/abs/pool.db"),
    ],
)
def test_open_store_gives_a_sqlite_store_for_paths_and_sqlite_urls(url: str, expected: str) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store.path == str(Path(expected).absolute())


def test_open_store_gives_a_memory_store_for_memory() -> None:
    assert isinstance(open_store(":memory:"), MemoryStore)


@pytest.mark.parametrize("url", ["mysql://h/db", "", "sqlite://"])
def test_open_store_rejects_unknown_or_empty_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url)


async def test_slot_state_is_stored_as_its_json_spelling(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await store.open()
    await store.upsert_slot(SlotRecord(id=SlotId("s"), state=SlotState.ERRORED), "w")
    await store.insert_task(make_task(task_id="task-x", state=TaskState.PENDING_REVIEW))
    await store.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT state FROM slots").fetchone() == ("errored",)
    assert conn.execute("SELECT state FROM tasks").fetchone() == ("pending_review",)
    conn.close()


def _counted(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT state, n FROM task_counts WHERE n > 0").fetchall())


def _grouped(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())


async def test_task_counts_follow_every_kind_of_change(db_path: Path) -> None:
    """status reads the counts the triggers keep, not a scan of every task: they must agree
    with the tasks after inserts, claims, compare-and-set moves, settlements and recovery."""
    store = SqliteStore(db_path)
    await store.open()
    for i in range(6):
        await store.insert_task(make_task(f"task {i}"))
    await store.insert_tasks([make_task(f"bulk {i}") for i in range(3)])
    first = await store.claim_task(SlotId("s1"), None, None, "w1", T0)
    second = await store.claim_task(SlotId("s2"), None, None, "w2", T0)
    await store.claim_task(SlotId("s3"), None, None, "w2", T0)
    assert first is not None
    assert second is not None
    await store.settle_task(
        first.record.id, [TaskState.RUNNING], TaskState.COMPLETED, now_ms=T0, result=make_result(),
        slot_id=SlotId("s1"), spend=5, tasks_completed=1, slot_fields={},
    )  # fmt: skip
    moved = await store.transition_task(
        second.record.id, [TaskState.RUNNING], TaskState.CANCELLED, now_ms=T0
    )
    assert moved is not None
    # A refused compare-and-set changes nothing.
    assert (
        await store.transition_task(
            second.record.id, [TaskState.RUNNING], TaskState.FAILED, now_ms=T0
        )
        is None
    )
    await store.recover_tasks(["w2"], "requeue", T0)
    counts = await store.count_tasks()
    await store.close()
    conn = sqlite3.connect(db_path)
    assert _counted(conn) == _grouped(conn)
    assert counts == {
        TaskState.PENDING: 7, TaskState.COMPLETED: 1, TaskState.CANCELLED: 1,
    }  # fmt: skip


async def test_the_migration_counts_the_tasks_a_store_already_holds(db_path: Path) -> None:
    """A store made before the counts existed (schema version 8) gets them right on upgrade."""
    conn = sqlite3.connect(db_path)
    for migration in migrations():
        if migration.version > 8:
            break
        for statement in split_statements(migration.sql):
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 8")
    for i, state in enumerate(["pending", "pending", "completed", "failed"]):
        conn.execute(
            "INSERT INTO tasks (id, state, prompt) VALUES (?, ?, 'p')", (f"task-{i}", state)
        )
    conn.commit()
    conn.close()
    store = SqliteStore(db_path)
    await store.open()
    assert await store.count_tasks() == {
        TaskState.PENDING: 2, TaskState.COMPLETED: 1, TaskState.FAILED: 1,
    }  # fmt: skip
    await store.close()


def test_metrics_over_a_time_range_read_only_that_range() -> None:
    """Session metrics must cost what the session holds, not what the store holds: both
    queries search the creation-order index instead of scanning every task."""
    from claude_pool.store.sqlite.database import _sql

    conn = sqlite3.connect(":memory:")
    for statement in split_statements(schema_sql()):
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO tasks (id, state, prompt, created_at_ms, elapsed_ms, model) "
        "VALUES (?, 'completed', 'p', ?, ?, 'm')",
        [(f"task-{i}", i, i % 97) for i in range(2000)],
    )
    conn.execute("ANALYZE")
    index = "INDEXED BY tasks_created"
    filters = "created_at_ms >= ?"
    for statement, params in (
        (_sql("metric_groups", filters=filters, index=index), (1990,)),
        (_sql("middle_elapsed", filters=filters, index=index), (1990, 4)),
    ):
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", params))
        assert "SEARCH tasks USING COVERING INDEX tasks_created (created_at_ms>?)" in plan, plan
        assert "SCAN tasks" not in plan, plan


def test_finding_the_dependents_of_a_task_reads_only_tasks_that_have_dependencies() -> None:
    """Each task that ends looks for its dependents: that must not walk every pending task
    (a batch of 10,000 queued tasks made the lookups quadratic in the batch's size)."""
    from claude_pool.store.sqlite.database import _sql

    conn = sqlite3.connect(":memory:")
    for statement in split_statements(schema_sql()):
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO tasks (id, state, prompt) VALUES (?, 'pending', 'p')",
        [(f"task-{i}",) for i in range(2000)],
    )
    statement = _sql("dependent_tasks", task_columns="id")
    plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", ("x",)))
    assert "USING INDEX tasks_waiting" in plan, plan

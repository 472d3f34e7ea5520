"""The default store: one SQLite file in WAL mode, shareable by several processes.

Threads: the stdlib ``sqlite3`` module is used directly rather than aiosqlite. Each store has
one dedicated thread (a single-worker ``ThreadPoolExecutor``) owning a connection that waits
for the file's lock (``busy_timeout``) and runs everything whose cost grows with the data,
plus the schema migrations. Short operations run on the event loop's thread on a second
connection that never waits, and go to the thread only when the file is locked (see
:class:`SqliteStore`). aiosqlite would give the thread but not this fast path, and would hide
the transaction control the store needs.

Every write is one short ``BEGIN IMMEDIATE`` transaction, so that a busy database makes writers
wait for the lock instead of failing when a read transaction cannot be upgraded; a worker
process and a CLI ``submit`` in another shell can share the file. Claims and state changes are
single ``UPDATE ... RETURNING`` statements guarded by the current state (compare-and-set).

The schema is ``sql/sqlite/schema.sql``; a new file gets it whole, an older file is brought up to
date by the numbered files in ``sql/sqlite/migrations``. The applied version is kept in
``PRAGMA user_version``, and ``PRAGMA application_id`` marks the file as a claude-pool store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

from claude_pool.errors import StoreError
from claude_pool.events import Event, parse_event
from claude_pool.store._common import (
    recovery_failure,
    validate_slot_fields,
)
from claude_pool.store.base import (
    UNSET,
    Message,
    RecoveryEvents,
    RecoveryPolicy,
    StoredTask,
    TaskTarget,
)
from claude_pool.store.metrics import MetricGroup, metrics_from_groups, normalise_tags
from claude_pool.types import (
    MetricsFilter,
    SessionMetrics,
    SlotConfig,
    SlotId,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_ID = 0x436C506C
"""``PRAGMA application_id`` of a claude-pool database ("ClPl")."""

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - depends on the platform
    raise ImportError(
        f"the SQLite store needs SQLite 3.35 or newer (for RETURNING); this Python links "
        f"SQLite {sqlite3.sqlite_version}. Use a newer Python build or the memory store."
    )


# ── schema files ─────────────────────────────────────────────────────


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def _sql_dir() -> Any:
    return files("claude_pool.store") / "sql" / "sqlite"


def schema_sql() -> str:
    """The current schema, as a script."""
    text: str = (_sql_dir() / "schema.sql").read_text(encoding="utf-8")
    return text


def migrations() -> list[Migration]:
    """Every numbered migration, in order. Numbers start at 1 and have no gaps."""
    found: list[Migration] = []
    for entry in (_sql_dir() / "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise StoreError(
            f"the SQLite migrations shipped with claude-pool are numbered "
            f"{[m.version for m in found]}, not 1..n; reinstall claude-pool"
        )
    return found


def split_statements(script: str) -> list[str]:
    """Split a SQL script into statements (``executescript`` would commit the transaction the
    migration runs in, so statements are executed one by one)."""
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return statements


# ── rows ─────────────────────────────────────────────────────────────

_TASK_COLUMNS = (
    "seq, id, state, priority, slot_id, target_slot, target_role, target_name, claimed_by, "
    "created_at_ms, started_at_ms, completed_at_ms, review_required, max_rejections, "
    "rejection_count, timeout_secs, assignment_timeout_secs, fresh_session, tags_json, "
    "config_json, original_prompt, prompt, result_json, cwd"
)

_SLOT_COLUMNS = (
    "id, state, current_task, session_id, tasks_completed, cost_microdollars, restart_count, "
    "worktree_path, config_json, session_cwd"
)

_MESSAGE_COLUMNS = "id, from_slot, to_slot, content, created_at_ms"

_RESULT_SETS = (
    "result_json = ?, cost_microdollars = ?, elapsed_ms = ?, turns_used = ?, model = ?, success = ?"
)


def _record_from_row(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord.model_validate(
        {
            "id": row[1],
            "prompt": row[21],
            "state": row[2],
            "slot_id": row[4],
            "result": None if row[22] is None else json.loads(row[22]),
            "tags": json.loads(row[18]),
            "config": None if row[19] is None else json.loads(row[19]),
            "review_required": bool(row[12]),
            "max_rejections": row[13],
            "rejection_count": row[14],
            "original_prompt": row[20],
            "created_at_ms": row[9],
            "started_at_ms": row[10],
            "completed_at_ms": row[11],
        }
    )


def _task_from_row(row: Sequence[Any]) -> StoredTask:
    return StoredTask(
        record=_record_from_row(row),
        priority=row[3],
        target=TaskTarget(slot_id=row[5], role=row[6], name=row[7]),
        timeout_secs=row[15],
        assignment_timeout_secs=row[16],
        fresh_session=bool(row[17]),
        claimed_by=row[8],
        seq=row[0],
        cwd=row[23],
    )


def _result_values(result: TaskResult | None) -> tuple[Any, ...]:
    if result is None:
        return (None, None, None, None, None, None)
    return (
        result.model_dump_json(),
        result.cost_microdollars,
        result.elapsed_ms,
        result.turns_used,
        result.model,
        int(result.success),
    )


def _task_values(task: StoredTask) -> tuple[Any, ...]:
    record = task.record
    config: TaskOverrides | None = record.config
    return (
        record.id,
        record.state.value,
        task.priority,
        record.slot_id,
        task.target.slot_id,
        task.target.role,
        task.target.name,
        task.claimed_by,
        record.created_at_ms,
        record.started_at_ms,
        record.completed_at_ms,
        int(record.review_required),
        record.max_rejections,
        record.rejection_count,
        task.timeout_secs,
        task.assignment_timeout_secs,
        int(task.fresh_session),
        json.dumps(record.tags),
        None if config is None else config.model_dump_json(),
        record.original_prompt,
        record.prompt,
        *_result_values(record.result),
        task.cwd,
    )


_INSERT_TASK = (
    "INSERT INTO tasks (id, state, priority, slot_id, target_slot, target_role, target_name, "
    "claimed_by, created_at_ms, started_at_ms, completed_at_ms, review_required, "
    "max_rejections, rejection_count, timeout_secs, assignment_timeout_secs, fresh_session, "
    "tags_json, config_json, original_prompt, prompt, result_json, cost_microdollars, "
    "elapsed_ms, turns_used, model, success, cwd) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_INSERT_TASK_WITH_SEQ = _INSERT_TASK.replace("(id,", "(seq, id,", 1).replace(
    "VALUES (", "VALUES (?, ", 1
)

_CLAIM = (
    "UPDATE tasks SET state = 'running', slot_id = ?, claimed_by = ?, started_at_ms = ? "
    "WHERE seq = (SELECT seq FROM tasks WHERE state = 'pending' "
    "AND (target_slot IS NULL OR target_slot = ?) "
    "AND (? = 0 OR target_slot IS NOT NULL OR target_role IS NOT NULL "
    "OR target_name IS NOT NULL) "
    "AND (target_role IS NULL OR target_role = ?) "
    "AND (target_name IS NULL OR target_name = ?) "
    "ORDER BY priority DESC, seq LIMIT 1) "
    f"RETURNING {_TASK_COLUMNS}"
)

_UNCLAIM = (
    "UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, "
    "started_at_ms = NULL WHERE id = ? AND state = 'running' AND claimed_by = ?"
)


def _slot_from_row(row: Sequence[Any]) -> SlotRecord:
    return SlotRecord(
        id=row[0],
        state=SlotState(row[1]),
        current_task=row[2],
        session_id=row[3],
        tasks_completed=row[4],
        cost_microdollars=row[5],
        restart_count=row[6],
        worktree_path=row[7],
        config=SlotConfig.model_validate_json(row[8]),
        session_cwd=row[9],
    )


def _slot_column_value(name: str, value: Any) -> tuple[str, Any]:
    if name == "config":
        return "config_json", value.model_dump_json()
    if name == "state":
        return "state", value.value
    return name, value


def _message_from_row(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0], from_slot=row[1], to_slot=row[2], content=row[3], created_at_ms=row[4]
    )


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _tags_clause(tags: list[str], params: list[Any]) -> str:
    params.extend(tags)
    return f"seq IN (SELECT task_seq FROM task_tags WHERE tag IN ({_placeholders(len(tags))}))"


def _duplicate(task_id: str) -> StoreError:
    return StoreError(
        f"a task with id {task_id!r} already exists; give each task a new id "
        "(claude_pool.types.new_task_id)"
    )


def _translate(path: str, operation: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    lower = text.lower()
    if "locked" in lower or "busy" in lower:
        advice = (
            "another process held the database lock for longer than the busy timeout; retry, "
            "raise busy_timeout_ms, or check for a process stuck holding the file"
        )
    elif "not a database" in lower or "malformed" in lower or "corrupt" in lower:
        advice = (
            "the file is not a claude-pool SQLite database or is damaged; point the store at "
            f"another path, or move {path} away to start afresh"
        )
    elif "readonly" in lower or "unable to open" in lower or "permission" in lower:
        advice = f"check that {path} and its directory exist and are writable by this user"
    elif "disk" in lower or "full" in lower:
        advice = "check the disk holding the database for free space and errors"
    else:
        advice = "this looks like a bug in claude-pool; please report it with this message"
    return StoreError(f"SQLite store {path}: {operation} failed: {text}; {advice}")


# ── the database thread ──────────────────────────────────────────────


_MOVED = TaskRecord(id=TaskId("moved"), prompt="-")
"""Stands for "the task moved" where the caller does not need the record."""


def _transition(
    conn: sqlite3.Connection,
    task_id: str,
    from_states: Collection[TaskState],
    to_state: TaskState,
    now_ms: int,
    fields: dict[str, Any],
    *,
    parse: bool = True,
) -> TaskRecord | None:
    """The compare-and-set UPDATE of a task, inside the caller's write transaction. With
    ``parse=False`` the returned record is a placeholder (only None-or-not matters)."""
    states = [TaskState(s).value for s in from_states]
    sets = ["state = ?"]
    params: list[Any] = [to_state.value]
    if to_state is TaskState.RUNNING:
        sets.append("started_at_ms = ?")
        params.append(now_ms)
    elif to_state is TaskState.PENDING:
        sets.append("claimed_by = NULL, started_at_ms = NULL, completed_at_ms = NULL")
    else:
        sets.append("claimed_by = NULL, completed_at_ms = ?")
        params.append(now_ms)
    if "result" in fields:
        sets.append(_RESULT_SETS)
        params.extend(_result_values(fields["result"]))
    for name in ("slot_id", "prompt", "rejection_count"):
        if name in fields:
            sets.append(f"{name} = ?")
            params.append(fields[name])
    returning = _TASK_COLUMNS if parse else "id"
    row = conn.execute(
        f"UPDATE tasks SET {', '.join(sets)} WHERE id = ? "
        f"AND state IN ({_placeholders(len(states))}) RETURNING {returning}",
        (*params, task_id, *states),
    ).fetchone()
    if row is None:
        return None
    return _record_from_row(row) if parse else _MOVED


_INSERT_EVENT = (
    "INSERT INTO events (kind, task_id, slot_id, chain_id, worker_id, created_at_ms, data_json) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def _log_events(conn: sqlite3.Connection, events: Sequence[Event]) -> list[int]:
    """Append events inside the caller's write transaction; their sequence numbers, which
    the caller sets on the events once the transaction has committed."""
    return [
        conn.execute(
            _INSERT_EVENT,
            (
                e.type,
                e.task_id,
                e.slot_id,
                e.chain_id,
                e.worker_id,
                e.at_ms,
                e.model_dump_json(exclude={"seq"}),
            ),
        ).fetchone()[0]
        for e in events
    ]


def _numbered(events: Sequence[Event], seqs: Sequence[int]) -> None:
    for event, seq in zip(events, seqs, strict=True):
        event.seq = seq


class _Database:
    """Synchronous operations on one connection.

    A store has two: the *waiting* one lives on the store's thread, applies migrations and
    waits up to ``busy_timeout_ms`` for the file's write lock; the *quick* one is used on the
    event loop's thread and never waits (busy timeout 0, no automatic checkpoints).
    """

    def __init__(self, path: str, busy_timeout_ms: int, *, quick: bool = False) -> None:
        self.path = path
        self.busy_timeout_ms = 0 if quick else busy_timeout_ms
        self.quick = quick
        self.writes = 0
        """Write transactions committed since the last checkpoint request."""
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "used before connect()"
        return self._conn

    # connection and schema

    def connect(self) -> None:
        if self.path != ":memory:" and not self.quick:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"SQLite store {self.path}: cannot create its directory: {exc}; choose a "
                    "path in a writable directory"
                ) from exc
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            # The quick connection is made on the thread that opens the store and used on the
            # event loop's thread; the store serialises its use with a lock.
            check_same_thread=not self.quick,
        )
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if self.quick:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            else:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode != "wal" and self.path != ":memory:":
                    log.warning(
                        "SQLite store %s: WAL mode is unavailable here (journal mode %s); "
                        "writers and readers will block each other",
                        self.path,
                        mode,
                    )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if not self.quick:
                self._migrate()
        except BaseException:
            self.close()
            raise

    def checkpoint(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _user_version(self) -> int:
        value: int = self.conn.execute("PRAGMA user_version").fetchone()[0]
        return value

    def _migrate(self) -> None:
        known = migrations()
        latest = known[-1].version
        if self._user_version() == latest:
            self._check_application_id()
            return
        with self.write():
            self._check_application_id()
            version = self._user_version()
            if version > latest:
                raise StoreError(
                    f"SQLite store {self.path}: the database has schema version {version}, "
                    f"newer than the {latest} this claude-pool knows; upgrade claude-pool"
                )
            if version == 0:
                tables = self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchall()
                if tables:
                    raise StoreError(
                        f"SQLite store {self.path}: the file holds other tables "
                        f"({', '.join(t[0] for t in tables[:5])}) and is not a claude-pool "
                        "database; choose another path"
                    )
                scripts = [schema_sql()]
            else:
                scripts = [m.sql for m in known if m.version > version]
            for script in scripts:
                for statement in split_statements(script):
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {latest}")
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            log.info("SQLite store %s: schema at version %d (was %d)", self.path, latest, version)

    def _check_application_id(self) -> None:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"SQLite store {self.path}: the file belongs to another application "
                f"(application_id {app_id:#x}); choose another path"
            )

    @contextmanager
    def write(self) -> Any:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.writes += 1

    @contextmanager
    def snapshot(self) -> Any:
        """A read transaction, so that several queries see one state of the database."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # tasks

    def insert_task(self, task: StoredTask, events: Sequence[Event]) -> StoredTask:
        with self.write() as conn:
            try:
                seq: int = conn.execute(
                    f"{_INSERT_TASK} RETURNING seq", _task_values(task)
                ).fetchone()[0]
            except sqlite3.IntegrityError as exc:
                raise _duplicate(task.record.id) from exc
            self._insert_tags(conn, [(seq, task.record.tags)])
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return replace(task, seq=seq)

    def insert_tasks(self, tasks: Sequence[StoredTask]) -> list[StoredTask]:
        with self.write() as conn:
            # executemany cannot return the assigned keys, so number the batch here, after the
            # highest seq ever handed out (AUTOINCREMENT's own counter included).
            last: int = conn.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tasks'), 0), "
                "COALESCE((SELECT MAX(seq) FROM tasks), 0))"
            ).fetchone()[0]
            stored = [replace(task, seq=last + 1 + i) for i, task in enumerate(tasks)]
            try:
                conn.executemany(
                    _INSERT_TASK_WITH_SEQ, [(task.seq, *_task_values(task)) for task in stored]
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    "a task id in this batch already exists or is repeated; give each task a "
                    "new id (claude_pool.types.new_task_id)"
                ) from exc
            self._insert_tags(conn, [(task.seq, task.record.tags) for task in stored])
        return stored

    @staticmethod
    def _insert_tags(conn: sqlite3.Connection, tagged: list[tuple[int, list[str]]]) -> None:
        rows = [(seq, tag) for seq, tags in tagged for tag in dict.fromkeys(tags)]
        if rows:
            conn.executemany("INSERT INTO task_tags (task_seq, tag) VALUES (?, ?)", rows)

    def get_task(self, task_id: str) -> StoredTask | None:
        row = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
        return None if row is None else _task_from_row(row)

    def list_tasks(
        self, filter: TaskFilter | None, limit: int, offset: int, newest_first: bool
    ) -> list[TaskRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if filter is not None:
            if filter.state is not None:
                clauses.append("state = ?")
                params.append(filter.state.value)
            if filter.slot_id is not None:
                clauses.append("slot_id = ?")
                params.append(filter.slot_id)
            tags = normalise_tags(filter.tags)
            if tags:
                clauses.append(_tags_clause(tags, params))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        rows = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks {where}ORDER BY seq"
            f"{' DESC' if newest_first else ''} LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [_record_from_row(row) for row in rows]

    def count_tasks(self) -> dict[TaskState, int]:
        rows = self.conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
        return {TaskState(state): count for state, count in rows}

    def claim_task(
        self,
        slot_id: str,
        role: str | None,
        name: str | None,
        worker_id: str,
        now_ms: int,
        targeted_only: bool,
    ) -> StoredTask | None:
        with self.write() as conn:
            row = conn.execute(
                _CLAIM, (slot_id, worker_id, now_ms, slot_id, int(targeted_only), role, name)
            ).fetchone()
            if row is None:
                return None
            task = _task_from_row(row)
            conn.execute(
                "UPDATE slots SET state = 'busy', current_task = ? WHERE id = ?",
                (task.record.id, slot_id),
            )
        return task

    def unclaim_task(self, task: StoredTask) -> None:
        with self.write() as conn:
            conn.execute(_UNCLAIM, (task.record.id, task.claimed_by))

    def transition_task(
        self,
        task_id: str,
        from_states: Collection[TaskState],
        to_state: TaskState,
        now_ms: int,
        fields: dict[str, Any],
        events: Sequence[Event],
    ) -> TaskRecord | None:
        if not from_states:
            return None
        with self.write() as conn:
            record = _transition(conn, task_id, from_states, to_state, now_ms, fields)
            seqs = _log_events(conn, events) if record is not None else []
        if record is not None:
            _numbered(events, seqs)
        return record

    def settle_task(
        self,
        task_id: str,
        from_states: Collection[TaskState],
        to_state: TaskState,
        now_ms: int,
        result: TaskResult,
        slot_id: str,
        spend: int,
        tasks_completed: int,
        slot_values: dict[str, Any],
        events: Sequence[Event],
        always_events: Sequence[Event],
    ) -> bool:
        columns = [_slot_column_value(name, value) for name, value in slot_values.items()]
        sets = "".join(f", {c} = ?" for c, _ in columns)
        with self.write() as conn:
            if spend:
                conn.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'spend_microdollars'",
                    (spend,),
                )
            conn.execute(
                "UPDATE slots SET cost_microdollars = cost_microdollars + ?, "
                f"tasks_completed = tasks_completed + ?{sets} WHERE id = ?",
                (spend, tasks_completed, *(v for _, v in columns), slot_id),
            )
            moved = bool(from_states) and (
                _transition(
                    conn, task_id, from_states, to_state, now_ms, {"result": result}, parse=False
                )
                is not None
            )
            logged = [*always_events, *events] if moved else list(always_events)
            seqs = _log_events(conn, logged)
        _numbered(logged, seqs)
        return moved

    def pending_tasks(self, created_before_ms: int | None) -> list[StoredTask]:
        rows = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE state = 'pending' "
            "AND (? IS NULL OR created_at_ms < ?) ORDER BY seq",
            (created_before_ms, created_before_ms),
        ).fetchall()
        return [_task_from_row(row) for row in rows]

    def recover_tasks(
        self,
        dead_workers: list[str],
        policy: RecoveryPolicy,
        now_ms: int,
        events: RecoveryEvents | None,
    ) -> list[TaskId]:
        recovered: list[tuple[int, str, str, TaskRecord]] = []
        logged: list[Event] = []
        with self.write() as conn:
            for worker_id in dead_workers:
                if policy == "requeue":
                    cursor = conn.execute(
                        "UPDATE tasks SET state = 'pending', slot_id = NULL, claimed_by = NULL, "
                        "started_at_ms = NULL WHERE state = 'running' AND claimed_by = ? "
                        f"RETURNING {_TASK_COLUMNS}",
                        (worker_id,),
                    )
                else:
                    cursor = conn.execute(
                        f"UPDATE tasks SET state = 'failed', claimed_by = NULL, "
                        f"completed_at_ms = ?, {_RESULT_SETS} "
                        f"WHERE state = 'running' AND claimed_by = ? RETURNING {_TASK_COLUMNS}",
                        (now_ms, *_result_values(recovery_failure(worker_id)), worker_id),
                    )
                for row in cursor.fetchall():
                    recovered.append((row[0], row[1], worker_id, _record_from_row(row)))
            recovered.sort(key=lambda item: item[0])
            if events is not None:
                for _, task_id, worker_id, record in recovered:
                    logged.extend(events(TaskId(task_id), worker_id, record))
            seqs = _log_events(conn, logged)
        _numbered(logged, seqs)
        return [TaskId(task_id) for _, task_id, _, _ in recovered]

    # workers

    def heartbeat_worker(self, worker_id: str, now_ms: int) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO workers (id, last_heartbeat_ms) VALUES (?, ?) ON CONFLICT (id) "
                "DO UPDATE SET last_heartbeat_ms = excluded.last_heartbeat_ms",
                (worker_id, now_ms),
            )

    def remove_worker(self, worker_id: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def live_workers(self, alive_since_ms: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT id FROM workers WHERE last_heartbeat_ms >= ? ORDER BY id", (alive_since_ms,)
        ).fetchall()
        return [row[0] for row in rows]

    def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT t.claimed_by FROM tasks t LEFT JOIN workers w ON w.id = t.claimed_by "
            "WHERE t.state = 'running' AND t.claimed_by IS NOT NULL "
            "AND (w.id IS NULL OR w.last_heartbeat_ms < ?) ORDER BY t.claimed_by",
            (alive_since_ms,),
        ).fetchall()
        return [row[0] for row in rows]

    # slots

    def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO slots (id, worker_id, state, current_task, session_id, "
                "tasks_completed, cost_microdollars, restart_count, worktree_path, config_json, "
                "session_cwd) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "worker_id = excluded.worker_id, state = excluded.state, "
                "current_task = excluded.current_task, session_id = excluded.session_id, "
                "tasks_completed = excluded.tasks_completed, "
                "cost_microdollars = excluded.cost_microdollars, "
                "restart_count = excluded.restart_count, "
                "worktree_path = excluded.worktree_path, config_json = excluded.config_json, "
                "session_cwd = excluded.session_cwd",
                (
                    slot.id,
                    worker_id,
                    slot.state.value,
                    slot.current_task,
                    slot.session_id,
                    slot.tasks_completed,
                    slot.cost_microdollars,
                    slot.restart_count,
                    slot.worktree_path,
                    slot.config.model_dump_json(),
                    slot.session_cwd,
                ),
            )

    def get_slot(self, slot_id: str) -> SlotRecord | None:
        row = self.conn.execute(
            f"SELECT {_SLOT_COLUMNS} FROM slots WHERE id = ?", (slot_id,)
        ).fetchone()
        return None if row is None else _slot_from_row(row)

    def list_slots(self, worker_id: str | None) -> list[SlotRecord]:
        if worker_id is None:
            rows = self.conn.execute(f"SELECT {_SLOT_COLUMNS} FROM slots ORDER BY seq")
        else:
            rows = self.conn.execute(
                f"SELECT {_SLOT_COLUMNS} FROM slots WHERE worker_id = ? ORDER BY seq",
                (worker_id,),
            )
        return [_slot_from_row(row) for row in rows.fetchall()]

    def update_slot(self, slot_id: str, values: dict[str, Any]) -> SlotRecord | None:
        if not values:
            return self.get_slot(slot_id)
        columns = [_slot_column_value(name, value) for name, value in values.items()]
        with self.write() as conn:
            row = conn.execute(
                f"UPDATE slots SET {', '.join(f'{c} = ?' for c, _ in columns)} WHERE id = ? "
                f"RETURNING {_SLOT_COLUMNS}",
                (*(v for _, v in columns), slot_id),
            ).fetchone()
        return None if row is None else _slot_from_row(row)

    def add_slot_cost(self, slot_id: str, cost: int, tasks_completed: int) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE slots SET cost_microdollars = cost_microdollars + ?, "
                "tasks_completed = tasks_completed + ? WHERE id = ?",
                (cost, tasks_completed, slot_id),
            )

    def delete_slot(self, slot_id: str) -> None:
        with self.write() as conn:
            conn.execute("DELETE FROM slots WHERE id = ?", (slot_id,))

    # spend and context

    def add_spend(self, microdollars: int, events: Sequence[Event]) -> int:
        with self.write() as conn:
            total: int = conn.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'spend_microdollars' "
                "RETURNING value",
                (microdollars,),
            ).fetchone()[0]
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return total

    def get_spend(self) -> int:
        total: int = self.conn.execute(
            "SELECT value FROM counters WHERE name = 'spend_microdollars'"
        ).fetchone()[0]
        return total

    def context_set(self, key: str, value: str, events: Sequence[Event]) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO context (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
            seqs = _log_events(conn, events)
        _numbered(events, seqs)

    def context_get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM context WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def context_delete(self, key: str, events: Sequence[Event]) -> bool:
        with self.write() as conn:
            deleted: int = conn.execute("DELETE FROM context WHERE key = ?", (key,)).rowcount
            seqs = _log_events(conn, events) if deleted else []
        _numbered(events if deleted else (), seqs)
        return deleted > 0

    def context_list(self) -> dict[str, str]:
        rows = self.conn.execute("SELECT key, value FROM context ORDER BY key").fetchall()
        return {key: value for key, value in rows}

    # messages and events

    def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int, events: Sequence[Event]
    ) -> Message:
        with self.write() as conn:
            row = conn.execute(
                "INSERT INTO messages (from_slot, to_slot, content, created_at_ms) "
                f"VALUES (?, ?, ?, ?) RETURNING {_MESSAGE_COLUMNS}",
                (from_slot, to_slot, content, now_ms),
            ).fetchone()
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return _message_from_row(row)

    def read_messages(self, slot_id: str, drain: bool, up_to_id: int | None) -> list[Message]:
        limit = up_to_id if up_to_id is not None else -1
        where = "to_slot = ? AND delivered = 0 AND (? < 0 OR id <= ?)"
        if drain:
            with self.write() as conn:
                rows = conn.execute(
                    f"UPDATE messages SET delivered = 1 WHERE {where} RETURNING {_MESSAGE_COLUMNS}",
                    (slot_id, limit, limit),
                ).fetchall()
            rows.sort(key=lambda row: row[0])
        else:
            rows = self.conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id",
                (slot_id, limit, limit),
            ).fetchall()
        return [_message_from_row(row) for row in rows]

    def undeliver_messages(self, messages: list[Message]) -> None:
        with self.write() as conn:
            conn.execute(
                f"UPDATE messages SET delivered = 0 WHERE id IN ({_placeholders(len(messages))})",
                [m.id for m in messages],
            )

    def append_events(self, events: Sequence[Event]) -> None:
        with self.write() as conn:
            seqs = _log_events(conn, events)
        _numbered(events, seqs)

    def read_events(
        self,
        after: int,
        up_to: int | None,
        limit: int,
        task_id: str | None,
        chain_id: str | None,
        types: list[str] | None,
        not_from: str | None,
    ) -> list[Event]:
        clauses = ["id > ?"]
        params: list[Any] = [after]
        if up_to is not None:
            clauses.append("id <= ?")
            params.append(up_to)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        if chain_id is not None:
            clauses.append("chain_id = ?")
            params.append(chain_id)
        if types is not None:
            clauses.append(f"kind IN ({_placeholders(len(types))})")
            params.extend(types)
        if not_from is not None:
            clauses.append("(worker_id IS NULL OR worker_id != ?)")
            params.append(not_from)
        rows = self.conn.execute(
            f"SELECT id, data_json FROM events WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ?",
            (*params, limit),
        ).fetchall()
        events = []
        for seq, data in rows:
            event = parse_event(data)
            event.seq = seq
            events.append(event)
        return events

    def latest_event_seq(self) -> int:
        row = self.conn.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    def prune_events(self, before_ms: int) -> int:
        with self.write() as conn:
            # Events are appended in time order, so the first one to keep bounds the rest; the
            # newest event always stays, so sequence numbers never go back.
            keep = conn.execute(
                "SELECT id FROM events WHERE created_at_ms >= ? ORDER BY id LIMIT 1", (before_ms,)
            ).fetchone()
            if keep is None:
                keep = conn.execute("SELECT MAX(id) FROM events").fetchone()
            if keep is None or keep[0] is None:
                return 0
            pruned: int = conn.execute("DELETE FROM events WHERE id < ?", (keep[0],)).rowcount
        return pruned

    # chains

    def upsert_chain(
        self,
        chain_id: str,
        data: str,
        state: str,
        now_ms: int,
        expected_owner: str | None,
        events: Sequence[Event],
    ) -> bool:
        """Whether it was written: with ``expected_owner``, only over a stored chain of that
        owner's, checked and written in one write transaction (atomic across processes)."""
        with self.write() as conn:
            if expected_owner is not None:
                row = conn.execute(
                    "SELECT data_json FROM chains WHERE id = ?", (chain_id,)
                ).fetchone()
                if row is None:
                    return False
                stored = json.loads(row[0])
                if not isinstance(stored, dict) or stored.get("owner") != expected_owner:
                    return False
            conn.execute(
                "INSERT INTO chains (id, state, created_at_ms, updated_at_ms, data_json) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "updated_at_ms = excluded.updated_at_ms, data_json = excluded.data_json",
                (chain_id, state, now_ms, now_ms, data),
            )
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return True

    def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str | None, now_ms: int
    ) -> tuple[str, str | None, str | None, int] | None:
        """The claim (to undo it), or None when the chain is not there or not the expected
        owner's. Read and written in one write transaction: atomic across processes."""
        with self.write() as conn:
            row = conn.execute("SELECT data_json FROM chains WHERE id = ?", (chain_id,)).fetchone()
            if row is None:
                return None
            data = json.loads(row[0])
            if not isinstance(data, dict) or data.get("owner") != expected_owner:
                return None
            data["owner"] = new_owner
            conn.execute(
                "UPDATE chains SET data_json = ?, updated_at_ms = ? WHERE id = ?",
                (json.dumps(data), now_ms, chain_id),
            )
        return chain_id, expected_owner, new_owner, now_ms

    def unclaim_chain(self, claim: tuple[str, str | None, str | None, int]) -> None:
        """Give back a claim whose caller was cancelled before it heard of it."""
        chain_id, previous_owner, owner, now_ms = claim
        self.claim_chain(chain_id, owner, previous_owner, now_ms)

    def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT data_json FROM chains WHERE id = ?", (chain_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_chains(self, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        where, params = ("WHERE state = ? ", (state,)) if state is not None else ("", ())
        rows = self.conn.execute(
            f"SELECT data_json FROM chains {where}ORDER BY seq LIMIT ? OFFSET ?",
            (*params, limit, offset),
        ).fetchall()
        return [dict(json.loads(row[0])) for row in rows]

    # metrics

    def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        clauses: list[str] = []
        params: list[Any] = []
        if filter is not None:
            if filter.since_ms is not None:
                clauses.append("created_at_ms >= ?")
                params.append(filter.since_ms)
            if filter.until_ms is not None:
                clauses.append("created_at_ms < ?")
                params.append(filter.until_ms)
            if filter.model is not None:
                clauses.append("model = ?")
                params.append(filter.model)
            tags = normalise_tags(filter.tags)
            if tags:
                clauses.append(_tags_clause(tags, params))
        scope = " AND ".join(clauses) or "1 = 1"
        with self.snapshot() as conn:
            rows = conn.execute(
                "SELECT state, model, COUNT(*), COUNT(cost_microdollars), "
                "COALESCE(SUM(cost_microdollars), 0), MAX(cost_microdollars), "
                "COALESCE(SUM(elapsed_ms), 0), MIN(elapsed_ms), MAX(elapsed_ms), "
                f"COALESCE(SUM(turns_used), 0) FROM tasks WHERE {scope} GROUP BY state, model",
                params,
            ).fetchall()
            groups = [MetricGroup(*row) for row in rows]
            with_result = sum(g.with_result for g in groups if g.state == "completed")
            middle: list[int] = []
            if with_result:
                middle = [
                    row[0]
                    for row in conn.execute(
                        "SELECT elapsed_ms FROM tasks WHERE state = 'completed' "
                        f"AND elapsed_ms IS NOT NULL AND {scope} "
                        "ORDER BY elapsed_ms LIMIT 2 OFFSET ?",
                        (*params, (with_result - 1) // 2),
                    ).fetchall()
                ]
        return metrics_from_groups(groups, middle, session_start_ms, now_ms)


# ── the async store ──────────────────────────────────────────────────


_CHECKPOINT_EVERY = 384
"""Quick-path write transactions between two WAL checkpoints (run on the store's thread)."""
_YIELD_EVERY = 8
"""Quick-path calls between two yields to the event loop."""


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteStore:
    """The :class:`~claude_pool.store.base.Store` protocol over one SQLite file.

    ``path`` may be ``":memory:"`` for a private in-memory database (one store object only).
    ``busy_timeout_ms`` is how long a write waits for another process holding the file.

    Short operations (one task, one slot, a counter...) run directly on the event loop's
    thread on a connection that never waits: they take tens of microseconds, while a hop to a
    thread and back costs about 100 µs and, under load, the GIL hand-off costs far more. When
    the file is locked by someone else such an operation goes to the store's thread, which
    waits for the lock there. Operations whose cost grows with the data (listing, metrics,
    recovery, bulk inserts) always run on the store's thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> None:
        raw = os.fspath(path)
        self.path = raw if raw == ":memory:" else os.path.abspath(os.path.expanduser(raw))
        self._db = _Database(self.path, busy_timeout_ms)
        self._quick_db: _Database | None = None
        self._quick_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._checkpoint_pending = False
        self._quick_calls = 0
        self._wakeups = _SqliteWakeups(self)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _guarded(
        self, operation: str, fn: Callable[..., T], db: _Database, args: tuple[Any, ...]
    ) -> T:
        try:
            return fn(db, *args)
        except sqlite3.Error as exc:
            raise _translate(self.path, operation, exc) from exc

    def _executor_or_raise(self) -> ThreadPoolExecutor:
        if self._executor is None:
            raise StoreError(f"SQLite store {self.path} is not open; call open() first")
        return self._executor

    def _in_background(self, future: asyncio.Future[Any]) -> None:
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, done: asyncio.Future[Any]) -> None:
        self._background.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("SQLite store %s: %s", self.path, done.exception())

    async def _run(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        undo: Callable[[_Database, Any], None] | None = None,
    ) -> T:
        """Run ``fn(db, *args)`` on the store's thread."""
        executor = self._executor_or_raise()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._guarded, operation, fn, self._db, args)
        if undo is None:
            return await future
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller gave up, but the thread may still complete the change (a claim, a
            # drain) that nobody will act on: take it back once it is done.
            def take_back(done: asyncio.Future[T]) -> None:
                if done.cancelled() or done.exception() is not None or not done.result():
                    return
                self._in_background(
                    loop.run_in_executor(
                        executor,
                        self._guarded,
                        f"undoing {operation}",
                        undo,
                        self._db,
                        (done.result(),),
                    )
                )

            future.add_done_callback(take_back)
            self._background.add(future)
            future.add_done_callback(self._background.discard)
            raise

    async def _quick(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        undo: Callable[[_Database, Any], None] | None = None,
    ) -> T:
        """Run ``fn(db, *args)`` here if the database is free at once, else on the thread."""
        if self._quick_db is not None and not self._checkpoint_pending:
            # Yield now and then, like I/O would, so that a loop of store calls cannot starve
            # the other tasks of this event loop; before the operation, since once it has run
            # nothing may stop its result from reaching the caller (a claimed task would be
            # lost). A call that does not yield has no suspension point at all.
            self._quick_calls += 1
            if self._quick_calls % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            db = self._quick_db
            if (
                db is not None
                and not self._checkpoint_pending
                and self._quick_lock.acquire(blocking=False)
            ):
                try:
                    result = fn(db, *args)
                except sqlite3.Error as exc:
                    if not _is_busy(exc):
                        raise _translate(self.path, operation, exc) from exc
                else:
                    if db.writes >= _CHECKPOINT_EVERY:
                        self._request_checkpoint(db)
                    return result
                finally:
                    self._quick_lock.release()
        return await self._run(operation, fn, *args, undo=undo)

    def _request_checkpoint(self, db: _Database) -> None:
        """Copy the WAL back into the database file on the store's thread.

        The quick connection never checkpoints: a checkpoint syncs files to disk, which must
        not happen on the event loop. Until the checkpoint is done, every operation goes to
        the thread and queues behind it, so that it completes and the WAL file is reused from
        its start instead of growing (SQLite's own automatic checkpoint gets the same effect
        by running inside a writer)."""
        db.writes = 0
        if self._checkpoint_pending or self._executor is None:
            return
        self._checkpoint_pending = True

        def done(_: asyncio.Future[Any]) -> None:
            self._checkpoint_pending = False

        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._guarded, "checkpointing", _Database.checkpoint, self._db, ()
        )
        future.add_done_callback(done)
        self._in_background(future)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="claude-pool-sqlite")
        try:
            await self._run("opening the database", _Database.connect)
            if self.path != ":memory:":
                quick = _Database(self.path, 0, quick=True)
                self._guarded("opening the database", _Database.connect, quick, ())
                self._quick_db = quick
        except BaseException:
            await self._shutdown()
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._wakeups.stop()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self._shutdown()

    async def _shutdown(self) -> None:
        executor = self._executor
        try:
            if self._quick_db is not None:
                with self._quick_lock:
                    self._quick_db.close()
                    self._quick_db = None
            # Last, so that closing the last connection checkpoints and removes the WAL file.
            await self._run("closing the database", _Database.close)
        finally:
            self._executor = None
            if executor is not None:
                executor.shutdown(wait=False)

    # ── tasks ────────────────────────────────────────────────────────

    async def insert_task(self, task: StoredTask, *, events: Sequence[Event] = ()) -> StoredTask:
        return await self._quick("inserting a task", _Database.insert_task, task, events)

    async def insert_tasks(self, tasks: Iterable[StoredTask]) -> list[StoredTask]:
        """Insert many tasks in one transaction (imports, benchmarks); returns them with
        ``seq`` assigned. Not part of the Store protocol."""
        return await self._run("inserting tasks", _Database.insert_tasks, list(tasks))

    async def get_task(self, task_id: TaskId) -> StoredTask | None:
        return await self._quick("reading a task", _Database.get_task, task_id)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        return await self._run(
            "listing tasks", _Database.list_tasks, filter, limit, offset, newest_first
        )

    async def count_tasks(self) -> dict[TaskState, int]:
        return await self._run("counting tasks", _Database.count_tasks)

    async def claim_task(
        self,
        slot_id: SlotId,
        role: str | None,
        name: str | None,
        worker_id: str,
        now_ms: int,
        *,
        targeted_only: bool = False,
    ) -> StoredTask | None:
        return await self._quick(
            "claiming a task",
            _Database.claim_task,
            slot_id,
            role,
            name,
            worker_id,
            now_ms,
            targeted_only,
            undo=_Database.unclaim_task,
        )

    async def transition_task(
        self,
        task_id: TaskId,
        from_states: Collection[TaskState],
        to_state: TaskState,
        *,
        now_ms: int,
        result: TaskResult | Any | None = UNSET,
        slot_id: SlotId | Any | None = UNSET,
        prompt: str | Any = UNSET,
        rejection_count: int | Any = UNSET,
        events: Sequence[Event] = (),
    ) -> TaskRecord | None:
        fields = {
            name: value
            for name, value in (
                ("result", result),
                ("slot_id", slot_id),
                ("prompt", prompt),
                ("rejection_count", rejection_count),
            )
            if value is not UNSET
        }
        return await self._quick(
            "changing a task's state",
            _Database.transition_task,
            task_id,
            list(from_states),
            TaskState(to_state),
            now_ms,
            fields,
            events,
        )

    async def pending_tasks(self, created_before_ms: int | None = None) -> list[StoredTask]:
        return await self._run("listing waiting tasks", _Database.pending_tasks, created_before_ms)

    async def recover_tasks(
        self,
        dead_workers: Collection[str],
        policy: RecoveryPolicy,
        now_ms: int,
        *,
        events: RecoveryEvents | None = None,
    ) -> list[TaskId]:
        if policy not in ("requeue", "fail"):
            raise ValueError(f"unknown recovery policy {policy!r}; use 'requeue' or 'fail'")
        return await self._run(
            "recovering tasks",
            _Database.recover_tasks,
            sorted(set(dead_workers)),
            policy,
            now_ms,
            events,
        )

    # ── workers ──────────────────────────────────────────────────────

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None:
        await self._quick("recording a heartbeat", _Database.heartbeat_worker, worker_id, now_ms)

    async def remove_worker(self, worker_id: str) -> None:
        await self._quick("removing a worker", _Database.remove_worker, worker_id)

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        return await self._quick("listing workers", _Database.live_workers, alive_since_ms)

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        return await self._quick(
            "finding stale workers", _Database.stale_task_owners, alive_since_ms
        )

    # ── slots ────────────────────────────────────────────────────────

    async def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        await self._quick("saving a slot", _Database.upsert_slot, slot, worker_id)

    async def get_slot(self, slot_id: SlotId) -> SlotRecord | None:
        return await self._quick("reading a slot", _Database.get_slot, slot_id)

    async def list_slots(self, worker_id: str | None = None) -> list[SlotRecord]:
        return await self._quick("listing slots", _Database.list_slots, worker_id)

    async def settle_task(
        self,
        task_id: TaskId,
        from_states: Collection[TaskState],
        to_state: TaskState,
        *,
        now_ms: int,
        result: TaskResult,
        slot_id: SlotId,
        spend: int,
        tasks_completed: int,
        slot_fields: Mapping[str, Any],
        events: Sequence[Event] = (),
        always_events: Sequence[Event] = (),
    ) -> bool:
        values = validate_slot_fields(slot_id, dict(slot_fields))
        return await self._quick(
            "recording a finished task",
            _Database.settle_task,
            task_id,
            list(from_states),
            TaskState(to_state),
            now_ms,
            result,
            slot_id,
            spend,
            tasks_completed,
            values,
            events,
            always_events,
        )

    async def update_slot(self, slot_id: SlotId, **fields: Any) -> SlotRecord | None:
        values = validate_slot_fields(slot_id, fields)
        return await self._quick("updating a slot", _Database.update_slot, slot_id, values)

    async def add_slot_cost(
        self, slot_id: SlotId, cost_microdollars: int, tasks_completed: int
    ) -> None:
        await self._quick(
            "adding to a slot's cost",
            _Database.add_slot_cost,
            slot_id,
            cost_microdollars,
            tasks_completed,
        )

    async def delete_slot(self, slot_id: SlotId) -> None:
        await self._quick("deleting a slot", _Database.delete_slot, slot_id)

    # ── spend ────────────────────────────────────────────────────────

    async def add_spend(self, microdollars: int, *, events: Sequence[Event] = ()) -> int:
        return await self._quick("adding spend", _Database.add_spend, microdollars, events)

    async def get_spend(self) -> int:
        return await self._quick("reading spend", _Database.get_spend)

    # ── shared context ───────────────────────────────────────────────

    async def context_set(self, key: str, value: str, *, events: Sequence[Event] = ()) -> None:
        await self._quick("setting context", _Database.context_set, key, value, events)

    async def context_get(self, key: str) -> str | None:
        return await self._quick("reading context", _Database.context_get, key)

    async def context_delete(self, key: str, *, events: Sequence[Event] = ()) -> bool:
        return await self._quick("deleting context", _Database.context_delete, key, events)

    async def context_list(self) -> dict[str, str]:
        return await self._quick("listing context", _Database.context_list)

    # ── messages ─────────────────────────────────────────────────────

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int,
        *, events: Sequence[Event] = (),
    ) -> Message:  # fmt: skip
        return await self._quick(
            "sending a message",
            _Database.send_message,
            from_slot,
            to_slot,
            content,
            now_ms,
            events,
        )

    async def read_messages(
        self, slot_id: str, *, drain: bool, up_to_id: int | None = None
    ) -> list[Message]:
        if not drain:
            return await self._quick(
                "reading messages", _Database.read_messages, slot_id, False, up_to_id
            )
        return await self._quick(
            "draining messages",
            _Database.read_messages,
            slot_id,
            True,
            up_to_id,
            undo=_Database.undeliver_messages,
        )

    # ── events ───────────────────────────────────────────────────────

    async def append_events(self, events: Sequence[Event]) -> None:
        if events:
            await self._quick("recording events", _Database.append_events, events)

    async def read_events(
        self,
        *,
        after: int = 0,
        up_to: int | None = None,
        limit: int = 1000,
        task_id: str | None = None,
        chain_id: str | None = None,
        types: Collection[str] | None = None,
        not_from: str | None = None,
    ) -> list[Event]:
        return await self._run(
            "reading events",
            _Database.read_events,
            after,
            up_to,
            limit,
            task_id,
            chain_id,
            sorted(types) if types is not None else None,
            not_from,
        )

    async def latest_event_seq(self) -> int:
        return await self._quick("reading the latest event", _Database.latest_event_seq)

    def wakeups(self) -> _SqliteWakeups:
        return self._wakeups

    async def prune_events(self, before_ms: int) -> int:
        return await self._run("pruning events", _Database.prune_events, before_ms)

    # ── chains ───────────────────────────────────────────────────────

    async def upsert_chain(
        self,
        chain_id: str,
        data: Mapping[str, Any],
        state: str,
        now_ms: int,
        *,
        expected_owner: str | None = None,
        events: Sequence[Event] = (),
    ) -> bool:
        written: bool = await self._quick(
            "saving a chain",
            _Database.upsert_chain,
            chain_id,
            json.dumps(dict(data)),
            state,
            now_ms,
            expected_owner,
            events,
        )
        return written

    async def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str, now_ms: int
    ) -> bool:
        claim = await self._quick(
            "claiming a chain",
            _Database.claim_chain,
            chain_id,
            expected_owner,
            new_owner,
            now_ms,
            undo=_Database.unclaim_chain,
        )
        return claim is not None

    async def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        return await self._quick("reading a chain", _Database.get_chain, chain_id)

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        return await self._run("listing chains", _Database.list_chains, state, limit, offset)

    # ── metrics ──────────────────────────────────────────────────────

    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        return await self._run(
            "computing session metrics",
            _Database.session_metrics,
            filter,
            session_start_ms,
            now_ms,
        )


WAKEUP_INTERVAL_SECS = 0.1
"""How often a SQLite store looks for events appended by other processes while anyone waits:
one read of the highest event id, shared by all of the store's waiters."""


class _SqliteWakeups:
    """Another process's writes are seen by reading the latest event id, at most every
    ``interval`` seconds and only while someone waits, however many wait."""

    def __init__(self, store: SqliteStore, interval: float = WAKEUP_INTERVAL_SECS) -> None:
        self._store = store
        self.interval = interval
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []
        self._prober: asyncio.Task[None] | None = None
        self._last_probe = -interval
        self.probes = 0
        """Reads of the latest event id so far (for benchmarks)."""

    async def wait(self, after_seq: int, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        entry = (after_seq, future)
        self._waiters.append(entry)
        if self._prober is None or self._prober.done():
            self._prober = loop.create_task(self._probe(), name="sqlite-wakeups")
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return await self._store.latest_event_seq()
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def stop(self) -> None:
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            # However often waiters come and go, the file is read at most once an interval.
            wait = self._last_probe + self.interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_probe = loop.time()
            try:
                self.probes += 1
                latest = await self._store.latest_event_seq()
            except StoreError as exc:
                log.warning("SQLite store %s: looking for new events failed: %s", self._store, exc)
            else:
                self._wake(latest)

    def _wake(self, latest: int) -> None:
        keep = []
        for after, future in self._waiters:
            if future.done():
                continue
            if latest > after:
                future.set_result(latest)
            else:
                keep.append((after, future))
        self._waiters = keep

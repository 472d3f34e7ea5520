"""The synchronous layer of the SQLite store: :class:`Database`, every operation on one
connection, written with the named statements of ``sql/queries.sql`` (``Q``, that is
:data:`~claude_pool.store.sqlite.queries.QUERIES`).

Every write is one short ``BEGIN IMMEDIATE`` transaction (:meth:`Database.write`), or one
savepoint in such a transaction shared by several writes (:meth:`Database.batch`), so that a
busy database makes writers wait for the lock instead of failing when a read transaction
cannot be upgraded; a worker process and a CLI ``submit`` in another shell can share the file.
Claims and state changes are single ``UPDATE ... RETURNING`` statements guarded by the current
state (compare-and-set).

Which connection runs an operation, on which thread, is for the async store
(:mod:`claude_pool.store.sqlite.store`) to decide; it also translates ``sqlite3`` errors with
:func:`translate_error`.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from claude_pool.errors import StoreDamaged, StoreError
from claude_pool.events import Event, parse_event
from claude_pool.store._common import archived, recovery_failure, requeue_fields
from claude_pool.store._rows import (
    attempts_values,
    event_values,
    message_from_row,
    record_from_row,
    result_values,
    slot_column_value,
    slot_from_row,
    slot_values,
    task_from_row,
    task_values,
)
from claude_pool.store.base import (
    Delivery,
    Message,
    RecoveryEvents,
    RecoveryPolicy,
    Requeue,
    StoredTask,
    Webhook,
)
from claude_pool.store.metrics import MetricGroup, metrics_from_groups, normalise_tags
from claude_pool.store.sqlite.queries import QUERIES as Q
from claude_pool.store.sqlite.schema import APPLICATION_ID, migrations, schema_sql, split_statements
from claude_pool.types import (
    MetricsFilter,
    RateLimitState,
    SessionMetrics,
    SlotRecord,
    TaskFilter,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskState,
)

log = logging.getLogger(__name__)


# ── errors ───────────────────────────────────────────────────────────


_COLUMN_FIELDS = (
    "slot_id", "prompt", "rejection_count", "original_prompt", "target_slot", "plan_approved",
)  # fmt: skip
"""Task fields a transition may set that are stored as they are, each in its own column."""


def translate_error(path: str, operation: str, exc: sqlite3.Error) -> StoreError:
    """The :class:`StoreError` for ``exc``, saying what to do about it."""
    text = str(exc)
    lower = text.lower()
    if "locked" in lower or "busy" in lower:
        advice = (
            "another process held the database lock for longer than the busy timeout; retry, "
            "raise busy_timeout_ms, or check for a process stuck holding the file"
        )
    elif is_damage(exc):
        return StoreDamaged(
            f"SQLite store {path}: {operation} failed: {text}; the file is not a claude-pool "
            f"SQLite database or is damaged; point the store at another path, or move {path} "
            "away to start afresh (`sqlite3 FILE .recover` may save what it holds)"
        )
    elif "readonly" in lower or "unable to open" in lower or "permission" in lower:
        advice = f"check that {path} and its directory exist and are writable by this user"
    elif "disk" in lower or "full" in lower:
        advice = "check the disk holding the database for free space and errors"
    else:
        advice = "this looks like a bug in claude-pool; please report it with this message"
    return StoreError(f"SQLite store {path}: {operation} failed: {text}; {advice}")


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is damaged or not a database (retrying cannot help)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return True
    lower = str(exc).lower()
    return "not a database" in lower or "malformed" in lower or "corrupt" in lower


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` only says that another connection holds the file's lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _duplicate(task_id: str) -> StoreError:
    return StoreError(
        f"a task with id {task_id!r} already exists; give each task a new id "
        "(claude_pool.types.new_task_id)"
    )


# ── composing statements ─────────────────────────────────────────────


CACHE_KIB = 32 * 1024
"""Page cache of each of the store's connections, in KiB."""


@functools.lru_cache(maxsize=512)
def _sql(name: str, **parts: str) -> str:
    """The named statement or fragment with its ``{parts}`` filled in.

    Remembered: the same few shapes recur on every call (a task moving to a state, a slot's
    usual fields), and ``str.format`` scans the whole template each time, which costs more
    than the lookup on the quick path."""
    return Q[name].format(**parts)


def _placeholders(count: int) -> str:
    """The ``?`` of an IN list."""
    return ", ".join("?" * count)


def _all_of(clauses: Sequence[str]) -> str:
    """A condition that holds where every clause does (always, for no clauses)."""
    return " AND ".join(clauses) or "1 = 1"


def _where(clauses: Sequence[str]) -> str:
    """A WHERE clause for every clause, or nothing for no clauses."""
    return f"WHERE {_all_of(clauses)}" if clauses else ""


def _tags_clause(tags: list[str], params: list[Any]) -> str:
    """The condition "has any of ``tags``"; adds its parameters to ``params``."""
    params.extend(tags)
    return _sql("task_with_any_tag", tags=_placeholders(len(tags)))


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
    sets = [Q["task_set_state"]]
    params: list[Any] = [to_state.value]
    if to_state is TaskState.RUNNING:
        sets.append(Q["task_started"])
        params.append(now_ms)
    elif to_state is TaskState.PENDING:
        sets.append(Q["task_requeued"])
    else:
        sets.append(Q["task_finished"])
        params.append(now_ms)
    if "result" in fields:
        sets.append(Q["result_assignments"])
        params.extend(result_values(fields["result"]))
    if "attempts" in fields:
        sets.append(Q["attempts_assignments"])
        params.extend(attempts_values(fields["attempts"]))
    for name in _COLUMN_FIELDS:
        if name in fields:
            sets.append(f"{name} = ?")
            params.append(fields[name])
    statement = _sql(
        "transition_task" if parse else "transition_task_returning_id",
        assignments=", ".join(sets),
        states=_placeholders(len(states)),
    )
    row = conn.execute(statement, (*params, task_id, *states)).fetchone()
    if row is None:
        return None
    return record_from_row(row) if parse else _MOVED


def _log_events(conn: sqlite3.Connection, events: Sequence[Event]) -> list[int]:
    """Append events inside the caller's write transaction; their sequence numbers, which
    the caller sets on the events once the transaction has committed. (A trigger adds each
    event's webhook deliveries: the outbox rule of ``OutboxStore``.)"""
    if len(events) == 1:
        return [conn.execute(Q["insert_event"], event_values(events[0])).fetchone()[0]]
    if not events:
        return []
    # Several at once (a settlement's events): numbered here and inserted in one call.
    first: int = conn.execute(Q["last_event_id"]).fetchone()[0] + 1
    conn.executemany(
        Q["insert_numbered_event"],
        [(first + i, *event_values(e)) for i, e in enumerate(events)],
    )
    return list(range(first, first + len(events)))


_DELIVERY_COLUMNS = (
    "id, webhook_id, seq, event_type, state, attempts, next_attempt_ms, last_status, "
    "last_error, created_at_ms, delivered_at_ms, payload_json"
)


def _delivery(row: Sequence[Any]) -> Delivery:
    names = [name.strip() for name in _DELIVERY_COLUMNS.split(",")]
    values = dict(zip(names, row, strict=True))
    values["payload"] = values.pop("payload_json")
    return Delivery.model_validate(values)


def _numbered(events: Sequence[Event], seqs: Sequence[int]) -> None:
    for event, seq in zip(events, seqs, strict=True):
        event.seq = seq


# ── the database ─────────────────────────────────────────────────────


class Database:
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
        self._in_batch = False

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
                # Nothing is written (not even the journal mode) before the file is known
                # to be a claude-pool store or a new one.
                self._check_ownership()
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
            # A large store's indexes do not fit SQLite's default 2 MB page cache: with a
            # million tasks, every write then reads index pages back from the OS.
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
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
            return
        with self.write():
            self._check_ownership()  # again: another process may have set it up meanwhile
            version = self._user_version()
            if version == 0:
                scripts = [schema_sql()]
            else:
                scripts = [m.sql for m in known if m.version > version]
            for script in scripts:
                for statement in split_statements(script):
                    self.conn.execute(statement)
            self.conn.execute(f"PRAGMA user_version = {latest}")
            self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            log.info("SQLite store %s: schema at version %d (was %d)", self.path, latest, version)

    def _check_ownership(self) -> None:
        """Refuse a file that another application owns, that holds tables of its own, or
        whose schema is newer than this claude-pool knows. Reads only."""
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"SQLite store {self.path}: the file belongs to another application "
                f"(application_id {app_id:#x}); choose another path"
            )
        version = self._user_version()
        latest = migrations()[-1].version
        if version > latest:
            raise StoreError(
                f"SQLite store {self.path}: the database has schema version {version}, "
                f"newer than the {latest} this claude-pool knows; upgrade claude-pool"
            )
        if version == 0:
            tables = self.conn.execute(Q["other_tables"]).fetchall()
            if tables:
                raise StoreError(
                    f"SQLite store {self.path}: the file holds other tables "
                    f"({', '.join(t[0] for t in tables[:5])}) and is not a claude-pool "
                    "database; choose another path"
                )

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        if self._in_batch:
            # One operation of a batch (see batch()): the batch's transaction is its own.
            yield conn
            return
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
    def batch(self) -> Iterator[None]:
        """One write transaction around several operations: they commit together, or none
        does. (No savepoint per operation: a savepoint costs a statement journal. When one
        operation fails the caller rolls the batch back and runs each on its own.)"""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        self._in_batch = True
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._in_batch = False
        self.writes += 1

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
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
                seq: int = conn.execute(Q["insert_task"], task_values(task)).fetchone()[0]
            except sqlite3.IntegrityError as exc:
                raise _duplicate(task.record.id) from exc
            self._insert_tags(conn, [(seq, task.record.tags)])
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return replace(task, seq=seq)

    def insert_tasks(self, tasks: Sequence[StoredTask]) -> list[StoredTask]:
        with self.write() as conn:
            # executemany cannot return the assigned keys, so number the batch here.
            last: int = conn.execute(Q["last_task_seq"]).fetchone()[0]
            stored = [replace(task, seq=last + 1 + i) for i, task in enumerate(tasks)]
            try:
                conn.executemany(
                    Q["insert_numbered_task"],
                    [(task.seq, *task_values(task)) for task in stored],
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
            conn.executemany(Q["insert_task_tag"], rows)

    def get_task(self, task_id: str) -> StoredTask | None:
        row = self.conn.execute(Q["get_task"], (task_id,)).fetchone()
        return None if row is None else task_from_row(row)

    def list_tasks(
        self, filter: TaskFilter | None, limit: int, offset: int, newest_first: bool
    ) -> list[TaskRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if filter is not None:
            if filter.state is not None:
                clauses.append(Q["task_in_state"])
                params.append(filter.state.value)
            if filter.slot_id is not None:
                clauses.append(Q["task_on_slot"])
                params.append(filter.slot_id)
            tags = normalise_tags(filter.tags)
            if tags:
                clauses.append(_tags_clause(tags, params))
        statement = _sql(
            "list_tasks", where=_where(clauses), order="DESC" if newest_first else "ASC"
        )
        rows = self.conn.execute(statement, (*params, limit, offset)).fetchall()
        return [record_from_row(row) for row in rows]

    def count_tasks(self) -> dict[TaskState, int]:
        rows = self.conn.execute(Q["count_tasks"]).fetchall()
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
                Q["claim_task"],
                (slot_id, worker_id, now_ms, slot_id, int(targeted_only), role, name),
            ).fetchone()
            if row is None:
                return None
            task = task_from_row(row)
            conn.execute(Q["occupy_slot"], (task.record.id, slot_id))
        return task

    def unclaim_task(self, task: StoredTask) -> None:
        with self.write() as conn:
            conn.execute(Q["unclaim_task"], (task.record.id, task.claimed_by))

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
            reason = fields.pop("attempt_reason", None)
            if reason is not None:
                # The run the task had becomes an attempt, read and written in this write.
                row = conn.execute(Q["get_task"], (task_id,)).fetchone()
                if row is None or TaskState(row[2]) not in from_states:
                    return None
                fields["attempts"] = archived(record_from_row(row), reason, now_ms)
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
        slot_fields: dict[str, Any],
        events: Sequence[Event],
        always_events: Sequence[Event],
        requeue: Requeue | None = None,
    ) -> bool:
        columns = [slot_column_value(name, value) for name, value in slot_fields.items()]
        settle_slot = _sql(
            "settle_slot", more_assignments="".join(f", {column} = ?" for column, _ in columns)
        )
        with self.write() as conn:
            if spend:
                conn.execute(Q["add_spend_quietly"], (spend,))
            conn.execute(Q["release_budget"], (task_id,))
            conn.execute(settle_slot, (spend, tasks_completed, *(v for _, v in columns), slot_id))
            fields: dict[str, Any] = {"result": result}
            if requeue is not None:
                row = conn.execute(Q["get_task"], (task_id,)).fetchone()
                if row is not None and TaskState(row[2]) in from_states:
                    fields = requeue_fields(record_from_row(row), result, requeue, now_ms)
            moved = bool(from_states) and (
                _transition(conn, task_id, from_states, to_state, now_ms, fields, parse=False)
                is not None
            )
            logged = [*always_events, *events] if moved else list(always_events)
            seqs = _log_events(conn, logged)
        _numbered(logged, seqs)
        return moved

    def dependent_tasks(self, task_id: str) -> list[StoredTask]:
        rows = self.conn.execute(Q["dependent_tasks"], (task_id,)).fetchall()
        return [task_from_row(row) for row in rows]

    def pending_tasks(self, created_before_ms: int | None) -> list[StoredTask]:
        rows = self.conn.execute(
            Q["pending_tasks"], (created_before_ms, created_before_ms)
        ).fetchall()
        return [task_from_row(row) for row in rows]

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
                    reason = f"its pool process {worker_id} died while it ran"
                    for row in conn.execute(Q["running_tasks_of_worker"], (worker_id,)):
                        attempts = archived(record_from_row(row), reason, now_ms)
                        conn.execute(Q["set_task_attempts"], (*attempts_values(attempts), row[1]))
                    cursor = conn.execute(Q["requeue_tasks_of_worker"], (worker_id,))
                else:
                    failure = result_values(recovery_failure(worker_id))
                    cursor = conn.execute(Q["fail_tasks_of_worker"], (now_ms, *failure, worker_id))
                for row in cursor.fetchall():
                    recovered.append((row[0], row[1], worker_id, record_from_row(row)))
                conn.execute(Q["release_budget_of_worker"], (worker_id,))
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
            conn.execute(Q["heartbeat_worker"], (worker_id, now_ms))

    def remove_worker(self, worker_id: str) -> None:
        with self.write() as conn:
            conn.execute(Q["remove_worker"], (worker_id,))

    def live_workers(self, alive_since_ms: int) -> list[str]:
        rows = self.conn.execute(Q["live_workers"], (alive_since_ms,)).fetchall()
        return [row[0] for row in rows]

    def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        rows = self.conn.execute(Q["stale_task_owners"], (alive_since_ms,)).fetchall()
        return [row[0] for row in rows]

    def set_rate_limit(self, worker_id: str, state: RateLimitState | None) -> None:
        text = None if state is None else state.model_dump_json()
        with self.write() as conn:
            conn.execute(Q["set_rate_limit"], (text, worker_id))

    def rate_limits(self) -> dict[str, RateLimitState]:
        rows = self.conn.execute(Q["rate_limits"]).fetchall()
        return {row[0]: RateLimitState.model_validate_json(row[1]) for row in rows}

    # slots

    def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        with self.write() as conn:
            conn.execute(Q["upsert_slot"], slot_values(slot, worker_id))

    def get_slot(self, slot_id: str) -> SlotRecord | None:
        row = self.conn.execute(Q["get_slot"], (slot_id,)).fetchone()
        return None if row is None else slot_from_row(row)

    def list_slots(self, worker_id: str | None) -> list[SlotRecord]:
        if worker_id is None:
            rows = self.conn.execute(Q["list_slots"])
        else:
            rows = self.conn.execute(Q["list_slots_of_worker"], (worker_id,))
        return [slot_from_row(row) for row in rows.fetchall()]

    def update_slot(self, slot_id: str, values: dict[str, Any]) -> SlotRecord | None:
        if not values:
            return self.get_slot(slot_id)
        columns = [slot_column_value(name, value) for name, value in values.items()]
        statement = _sql(
            "update_slot", assignments=", ".join(f"{column} = ?" for column, _ in columns)
        )
        with self.write() as conn:
            row = conn.execute(statement, (*(v for _, v in columns), slot_id)).fetchone()
        return None if row is None else slot_from_row(row)

    def add_slot_cost(self, slot_id: str, cost: int, tasks_completed: int) -> None:
        with self.write() as conn:
            conn.execute(Q["add_slot_cost"], (cost, tasks_completed, slot_id))

    def delete_slot(self, slot_id: str) -> None:
        with self.write() as conn:
            conn.execute(Q["delete_slot"], (slot_id,))

    # spend and context

    def add_spend(self, microdollars: int, events: Sequence[Event]) -> int:
        with self.write() as conn:
            total: int = conn.execute(Q["add_spend"], (microdollars,)).fetchone()[0]
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return total

    def get_spend(self) -> int:
        total: int = self.conn.execute(Q["get_spend"]).fetchone()[0]
        return total

    def budget_state(self) -> tuple[int, int]:
        spent, reserved = self.conn.execute(Q["budget_state"]).fetchone()
        return int(spent), int(reserved)

    def reserve_budget(
        self, task_id: str, worker_id: str, microdollars: int, limit: int, now_ms: int
    ) -> bool:
        with self.write() as conn:
            cursor = conn.execute(
                Q["reserve_budget"],
                (task_id, worker_id, microdollars, now_ms, task_id, microdollars, limit),
            )
            return cursor.rowcount > 0

    def release_budget(self, task_id: str) -> None:
        with self.write() as conn:
            conn.execute(Q["release_budget"], (task_id,))

    def context_set(self, key: str, value: str, events: Sequence[Event]) -> None:
        with self.write() as conn:
            conn.execute(Q["context_set"], (key, value))
            seqs = _log_events(conn, events)
        _numbered(events, seqs)

    def context_get(self, key: str) -> str | None:
        row = self.conn.execute(Q["context_get"], (key,)).fetchone()
        return None if row is None else str(row[0])

    def context_delete(self, key: str, events: Sequence[Event]) -> bool:
        with self.write() as conn:
            deleted: int = conn.execute(Q["context_delete"], (key,)).rowcount
            seqs = _log_events(conn, events) if deleted else []
        _numbered(events if deleted else (), seqs)
        return deleted > 0

    def context_list(self) -> dict[str, str]:
        rows = self.conn.execute(Q["context_list"]).fetchall()
        return {key: value for key, value in rows}

    # messages and events

    def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int, events: Sequence[Event]
    ) -> Message:
        with self.write() as conn:
            row = conn.execute(Q["send_message"], (from_slot, to_slot, content, now_ms)).fetchone()
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return message_from_row(row)

    def read_messages(self, slot_id: str, drain: bool, up_to_id: int | None) -> list[Message]:
        limit = up_to_id if up_to_id is not None else -1
        if drain:
            with self.write() as conn:
                rows = conn.execute(Q["drain_messages"], (slot_id, limit, limit)).fetchall()
            rows.sort(key=lambda row: row[0])
        else:
            rows = self.conn.execute(Q["read_messages"], (slot_id, limit, limit)).fetchall()
        return [message_from_row(row) for row in rows]

    def undeliver_messages(self, messages: list[Message]) -> None:
        statement = _sql("undeliver_messages", ids=_placeholders(len(messages)))
        with self.write() as conn:
            conn.execute(statement, [m.id for m in messages])

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
        clauses = [Q["event_after"]]
        params: list[Any] = [after]
        if up_to is not None:
            clauses.append(Q["event_up_to"])
            params.append(up_to)
        if task_id is not None:
            clauses.append(Q["event_of_task"])
            params.append(task_id)
        if chain_id is not None:
            clauses.append(Q["event_of_chain"])
            params.append(chain_id)
        if types is not None:
            clauses.append(_sql("event_of_kinds", kinds=_placeholders(len(types))))
            params.extend(types)
        if not_from is not None:
            clauses.append(Q["event_not_from"])
            params.append(not_from)
        statement = _sql("read_events", filters=_all_of(clauses))
        rows = self.conn.execute(statement, (*params, limit)).fetchall()
        events = []
        for seq, data in rows:
            event = parse_event(data)
            event.seq = seq
            events.append(event)
        return events

    def latest_event_seq(self) -> int:
        row = self.conn.execute(Q["latest_event_seq"]).fetchone()
        return int(row[0] or 0)

    def prune_events(self, before_ms: int) -> int:
        with self.write() as conn:
            # Events are appended in time order, so the first one to keep bounds the rest; the
            # newest event always stays, so sequence numbers never go back.
            keep = conn.execute(Q["first_event_since"], (before_ms,)).fetchone()
            if keep is None:
                keep = conn.execute(Q["latest_event_seq"]).fetchone()
            if keep is None or keep[0] is None:
                return 0
            pruned: int = conn.execute(Q["delete_events_before"], (keep[0],)).rowcount
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
                row = conn.execute(Q["get_chain"], (chain_id,)).fetchone()
                if row is None:
                    return False
                stored = json.loads(row[0])
                if not isinstance(stored, dict) or stored.get("owner") != expected_owner:
                    return False
            conn.execute(Q["upsert_chain"], (chain_id, state, now_ms, now_ms, data))
            seqs = _log_events(conn, events)
        _numbered(events, seqs)
        return True

    def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str | None, now_ms: int
    ) -> tuple[str, str | None, str | None, int] | None:
        """The claim (to undo it), or None when the chain is not there or not the expected
        owner's. Read and written in one write transaction: atomic across processes."""
        with self.write() as conn:
            row = conn.execute(Q["get_chain"], (chain_id,)).fetchone()
            if row is None:
                return None
            data = json.loads(row[0])
            if not isinstance(data, dict) or data.get("owner") != expected_owner:
                return None
            data["owner"] = new_owner
            conn.execute(Q["update_chain_data"], (json.dumps(data), now_ms, chain_id))
        return chain_id, expected_owner, new_owner, now_ms

    def unclaim_chain(self, claim: tuple[str, str | None, str | None, int]) -> None:
        """Give back a claim whose caller was cancelled before it heard of it."""
        chain_id, previous_owner, owner, now_ms = claim
        self.claim_chain(chain_id, owner, previous_owner, now_ms)

    def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(Q["get_chain"], (chain_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_chains(self, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        if state is None:
            rows = self.conn.execute(Q["list_chains"], (limit, offset)).fetchall()
        else:
            rows = self.conn.execute(Q["list_chains_in_state"], (state, limit, offset)).fetchall()
        return [dict(json.loads(row[0])) for row in rows]

    # webhooks

    def put_webhook(self, hook: Webhook) -> None:
        with self.write() as conn:
            conn.execute(
                Q["upsert_webhook"],
                (hook.id, hook.url, hook.secret, hook.source, hook.created_at_ms),
            )
            conn.execute(Q["clear_webhook_events"], (hook.id,))
            conn.executemany(Q["insert_webhook_event"], [(hook.id, kind) for kind in hook.events])

    def delete_webhook(self, webhook_id: str) -> bool:
        with self.write() as conn:
            conn.execute(Q["clear_webhook_events"], (webhook_id,))
            conn.execute(Q["delete_pending_deliveries"], (webhook_id,))
            deleted: bool = conn.execute(Q["delete_webhook"], (webhook_id,)).rowcount > 0
        return deleted

    def list_webhooks(self) -> list[Webhook]:
        rows = self.conn.execute(Q["list_webhooks"]).fetchall()
        return [
            Webhook(
                id=hook_id, url=url, secret=secret, source=source, created_at_ms=created,
                events=sorted(json.loads(kinds or "[]")),
            )
            for hook_id, url, secret, source, created, kinds in rows
        ]  # fmt: skip

    def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int) -> list[Delivery]:
        statement = _sql("claim_deliveries", columns=_DELIVERY_COLUMNS)
        with self.write() as conn:
            rows = conn.execute(statement, (now_ms + lease_ms, now_ms, limit)).fetchall()
        return sorted((_delivery(row) for row in rows), key=lambda d: (d.seq, d.id))

    def finish_delivery(
        self,
        delivery_id: int,
        delivered: bool,
        status: int | None,
        error: str | None,
        now_ms: int,
        retry_at_ms: int | None,
    ) -> None:
        state = "delivered" if delivered else ("pending" if retry_at_ms is not None else "failed")
        with self.write() as conn:
            conn.execute(
                Q["finish_delivery"],
                (state, status, error, retry_at_ms, now_ms if delivered else None, delivery_id),
            )

    def next_delivery_due_ms(self) -> int | None:
        row = self.conn.execute(Q["next_delivery_due"]).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def list_deliveries(
        self, webhook_id: str | None, state: str | None, limit: int, offset: int
    ) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []
        if webhook_id is not None:
            clauses.append(Q["delivery_of_webhook"])
            params.append(webhook_id)
        if state is not None:
            clauses.append(Q["delivery_in_state"])
            params.append(state)
        statement = _sql("list_deliveries", columns=_DELIVERY_COLUMNS, filters=_where(clauses))
        rows = self.conn.execute(statement, (*params, limit, offset)).fetchall()
        return [_delivery(row).model_copy(update={"payload": ""}) for row in rows]

    def prune_deliveries(self, before_ms: int) -> int:
        with self.write() as conn:
            pruned: int = conn.execute(Q["prune_deliveries"], (before_ms,)).rowcount
        return pruned

    # metrics

    def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        clauses: list[str] = []
        params: list[Any] = []
        if filter is not None:
            if filter.since_ms is not None:
                clauses.append(Q["task_created_since"])
                params.append(filter.since_ms)
            if filter.until_ms is not None:
                clauses.append(Q["task_created_before"])
                params.append(filter.until_ms)
            if filter.model is not None:
                clauses.append(Q["task_of_model"])
                params.append(filter.model)
            tags = normalise_tags(filter.tags)
            if tags:
                clauses.append(_tags_clause(tags, params))
        scope = _all_of(clauses)
        # A time range (a session's tasks, most often) is read through the index in creation
        # order, so that its cost follows the range, not the store; the planner would rather
        # scan the whole metrics index, which spares it a sort.
        ranged = filter is not None and (filter.since_ms is not None or filter.until_ms is not None)
        index = "INDEXED BY tasks_created" if ranged else ""
        with self.snapshot() as conn:
            rows = conn.execute(
                _sql("metric_groups", filters=scope, index=index), params
            ).fetchall()
            groups = [MetricGroup(*row) for row in rows]
            with_result = sum(g.with_result for g in groups if g.state == "completed")
            middle: list[int] = []
            if with_result:
                middle = [
                    row[0]
                    for row in conn.execute(
                        _sql("middle_elapsed", filters=scope, index=index),
                        (*params, (with_result - 1) // 2),
                    ).fetchall()
                ]
        return metrics_from_groups(groups, middle, session_start_ms, now_ms)

"""The PostgreSQL store: :class:`PostgresStore`, one database (or one schema of it) shared by
workers on any number of machines.

Every operation takes a connection from an async pool (psycopg 3, ``psycopg_pool``), and a
write is one short transaction. What must be atomic across machines is done where the data is:

- a claim is one ``UPDATE`` of the row picked by ``SELECT ... FOR UPDATE SKIP LOCKED``, so
  concurrent claimers each take another task and never wait for each other;
- a state change is a compare-and-set ``UPDATE ... WHERE state = ANY (...)``;
- spending and budget reservations take the spend counter's row lock in turn, so the sum of
  spend and reservations is checked and written as one step by one worker at a time;
- events are numbered from a counter row locked until commit, so they become visible in the
  order of their numbers (a reader that has seen an event has seen every earlier one), and
  each write that logs events sends a ``NOTIFY`` that :mod:`.wakeups` hears.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from claude_pool.errors import StoreError, StoreNotFound
from claude_pool.events import Event, parse_event
from claude_pool.store._common import (
    archived,
    recovery_failure,
    requeue_fields,
    validate_slot_fields,
)
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
    UNSET,
    Delivery,
    DeliveryState,
    Message,
    RecoveryEvents,
    RecoveryPolicy,
    Requeue,
    StoredTask,
    Webhook,
)
from claude_pool.store.metrics import MetricGroup, metrics_from_groups, normalise_tags
from claude_pool.store.postgres.errors import describe_url, translate_error
from claude_pool.store.postgres.queries import QUERIES as Q
from claude_pool.store.postgres.schema import migrate, schema_version
from claude_pool.store.postgres.wakeups import PostgresWakeups
from claude_pool.types import (
    MetricsFilter,
    RateLimitState,
    SessionMetrics,
    SlotId,
    SlotRecord,
    TaskFilter,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskState,
)
from claude_pool.types import now_ms as wall_clock_ms

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]

CONNECT_TIMEOUT_SECS = 10.0
"""How long opening the store waits for the server."""


def split_store_url(url: str) -> tuple[str, str | None]:
    """``(libpq URL, schema)``: claude-pool's own ``?schema=NAME`` is taken out of the URL
    (libpq would refuse it); every other parameter stays. ``postgres://`` is accepted too."""
    parts = urlsplit(url.strip())
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    scheme = "postgresql" if parts.scheme.lower() in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema or None


@dataclass
class _Logged:
    """Events appended in a transaction: the statement's cursor (its one row, read after
    commit, is the last number taken), how many, and that last number once read."""

    cursor: psycopg.AsyncCursor[tuple[Any, ...]] | None
    count: int
    last: int | None = None


_NOTHING = _Logged(None, 0)


def _duplicate(task_id: str) -> StoreError:
    return StoreError(
        f"a task with id {task_id!r} already exists; give each task a new id "
        "(claude_pool.types.new_task_id)"
    )


_DELIVERY_FIELDS = [name.strip() for name in Q["delivery_columns"].split(",")]


def _delivery(row: Sequence[Any]) -> Delivery:
    values = dict(zip(_DELIVERY_FIELDS, row, strict=True))
    values["payload"] = values.pop("payload_json")
    return Delivery.model_validate(values)


def _all_of(clauses: Sequence[str]) -> str:
    return " AND ".join(clauses) or "TRUE"


def _query(text: str) -> sql.SQL:
    # The statements come from the package's own queries.sql, never from input.
    return sql.SQL(text)


_COLUMN_FIELDS = (
    "slot_id", "prompt", "rejection_count", "original_prompt", "target_slot", "plan_approved",
)  # fmt: skip
"""Task fields a transition may set that are stored as they are, each in its own column."""


class PostgresStore:
    """The :class:`~claude_pool.store.base.Store` protocol over PostgreSQL.

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``), optionally with
    ``?schema=NAME`` to keep the store in that schema (created if missing) instead of the
    user's default one. ``max_connections`` bounds the connection pool of this store object.
    With ``create`` false (commands that only read or change what is stored), opening refuses
    a schema that does not exist or holds no store, instead of setting one up there: a typo in
    the URL must not leave an empty store behind.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_connections: int = 2,
        max_connections: int = 10,
        clock: Callable[[], int] = wall_clock_ms,
        create: bool = True,
    ) -> None:
        self.conninfo, url_schema = split_store_url(url)
        self.create = create
        self.schema = schema or url_schema
        self.where = describe_url(self.conninfo) + (
            f" (schema {self.schema})" if self.schema else ""
        )
        self._clock = clock
        self.clock_offset_ms = 0
        """How far the database server's clock is ahead of this machine's, in whole seconds
        (measured at open; smaller differences are left alone)."""
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.channel = ""
        """The NOTIFY channel of this store's events (set when opened)."""
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._logged: dict[int, list[_Logged]] = {}
        """Events appended in each open transaction, by connection."""
        self._wakeups = PostgresWakeups(self)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # ── connections ──────────────────────────────────────────────────

    async def connect(self, *, autocommit: bool = True) -> Conn:
        """A new connection of its own (not from the pool) with the store's search path: for
        the listener and the migration."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=autocommit, **self._connect_options()
            )
        except psycopg.Error as exc:
            raise translate_error(self.where, "connecting", exc) from exc
        try:
            await self._configure(conn)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, psycopg.Error):
                raise translate_error(self.where, "connecting", exc) from exc
            raise
        return conn

    def _connect_options(self) -> dict[str, Any]:
        """A connect timeout, unless the URL sets its own (keyword arguments win over it)."""
        if "connect_timeout" in conninfo_to_dict(self.conninfo):
            return {}
        return {"connect_timeout": max(1, int(CONNECT_TIMEOUT_SECS))}

    async def _configure(self, conn: Conn) -> None:
        if self.schema is not None:
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn = await self.connect()
        try:
            try:
                if self.schema is not None and self.create:
                    await self._create_schema(conn, self.schema)
                row = await (await conn.execute("SELECT current_schema()")).fetchone()
                if row is None or row[0] is None:
                    if self.schema is not None:  # not created: it does not exist
                        raise self._nothing_there(f"schema {self.schema} does not exist")
                    raise StoreError(
                        f"PostgreSQL store {self.where}: the user has no schema to keep the "
                        "store in (empty search_path); add ?schema=NAME to the URL"
                    )
                schema = str(row[0])
                if not self.create and await schema_version(conn) is None:
                    raise self._nothing_there(f"schema {schema} holds no store")
                await migrate(conn, schema)
                self.clock_offset_ms = await self._measure_clock_offset(conn)
            except psycopg.Error as exc:
                raise translate_error(self.where, "setting up the schema", exc) from exc
        finally:
            await conn.close()
        self.channel = f"claude_pool:{schema}"[:63]
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.conninfo,
            min_size=self.min_connections,
            max_size=self.max_connections,
            kwargs={"autocommit": True, **self._connect_options()},
            configure=self._configure,
            open=False,
            timeout=CONNECT_TIMEOUT_SECS,
            name=f"claude-pool {self.where}",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECS)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise translate_error(self.where, "opening connections", exc) from exc
        self._pool = pool

    def _nothing_there(self, what: str) -> StoreNotFound:
        return StoreNotFound(
            f"no store at PostgreSQL {self.where}: {what}, so nothing has been queued there; "
            "check the URL (its ?schema=), or run a command that submits work to set it up",
            where=self.where,
        )

    async def _measure_clock_offset(self, conn: Conn) -> int:
        """The server's clock minus this machine's (``clock``), rounded to whole seconds."""
        before = self._clock()
        cur = await conn.execute(Q["server_clock_ms"].encode())
        row = await cur.fetchone()
        after = self._clock()
        assert row is not None
        offset = int(row[0]) - (before + after) // 2
        rounded = round(offset / 1000) * 1000
        if rounded:
            log.warning(
                "PostgreSQL store %s: this machine's clock is %.1f s %s the database "
                "server's; heartbeats are compared in the server's time (keep the machines' "
                "clocks in sync with NTP)",
                self.where, abs(offset) / 1000, "behind" if offset > 0 else "ahead of",
            )  # fmt: skip
        return rounded

    @staticmethod
    async def _create_schema(conn: Conn, schema: str) -> None:
        # Another worker may make it at the same moment (IF NOT EXISTS is not atomic).
        with contextlib.suppress(pg_errors.UniqueViolation, pg_errors.DuplicateSchema):
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await self._wakeups.stop()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await pool.close()

    @asynccontextmanager
    async def _conn(self, operation: str) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreError(f"PostgreSQL store {self.where} is not open; call open() first")
        task = asyncio.current_task()
        requested = task.cancelling() if task is not None else 0
        try:
            async with self._pool.connection() as conn:
                if task is not None and task.cancelling() > requested:
                    # psycopg_pool waits for a connection with asyncio.wait_for, which on
                    # Python 3.11 loses a cancellation that arrives with the connection: the
                    # caller (a pool's background loop being shut down) would run on forever.
                    raise asyncio.CancelledError
                yield conn
        except StoreError:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise translate_error(self.where, operation, exc) from exc

    @asynccontextmanager
    async def _tx(self, operation: str, *, pipeline: bool = False) -> AsyncIterator[Conn]:
        """A transaction. With ``pipeline``, statements whose results are not read at once
        go to the server together with the next one that is, and with the COMMIT: a write
        whose last statements take the rows every worker shares (spend, event numbers) holds
        them for one round trip, not one per statement."""
        async with self._conn(operation) as conn:
            logged: list[_Logged] = []
            self._logged[id(conn)] = logged
            try:
                if pipeline:
                    async with conn.pipeline(), conn.transaction():
                        yield conn
                else:
                    async with conn.transaction():
                        yield conn
            finally:
                del self._logged[id(conn)]
            # Committed: the numbers the events were given, read while the connection is
            # still this transaction's.
            for entry in logged:
                row = await entry.cursor.fetchone() if entry.cursor is not None else None
                assert row is not None
                entry.last = int(row[0])

    async def _fetchall(self, operation: str, query: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._conn(operation) as conn:
            cur = await conn.execute(_query(query), params)
            return await cur.fetchall()

    async def _fetchone(self, operation: str, query: str, params: Sequence[Any] = ()) -> Any:
        async with self._conn(operation) as conn:
            cur = await conn.execute(_query(query), params)
            return await cur.fetchone()

    async def _fetch_written(
        self, operation: str, query: str, params: Sequence[Any] = ()
    ) -> list[Any]:
        """The rows a writing statement returns, in a transaction of its own."""
        async with self._tx(operation) as conn:
            cur = await conn.execute(_query(query), params)
            return await cur.fetchall()

    async def _execute(self, operation: str, query: str, params: Sequence[Any] = ()) -> int:
        async with self._tx(operation) as conn:
            cur = await conn.execute(_query(query), params)
            return cur.rowcount

    async def _undoable(
        self,
        run: Callable[[], Awaitable[T]],
        undo: Callable[[T], Awaitable[None]],
    ) -> T:
        """Run a change whose result the caller must not lose (a claim, a drain): if the
        caller is cancelled while it runs, it still completes, and is then taken back."""
        task = asyncio.ensure_future(run())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:

            def take_back(done: asyncio.Future[T]) -> None:
                if done.cancelled() or done.exception() is not None or not done.result():
                    return
                self._in_background(asyncio.ensure_future(undo(done.result())))

            task.add_done_callback(take_back)
            self._in_background(task)
            raise

    def _in_background(self, future: asyncio.Future[Any]) -> None:
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, done: asyncio.Future[Any]) -> None:
        self._background.discard(done)
        if not done.cancelled() and done.exception() is not None:
            log.error("PostgreSQL store %s: %s", self.where, done.exception())

    # ── events, inside a write ───────────────────────────────────────

    async def _log_events(self, conn: Conn, events: Sequence[Event]) -> _Logged:
        """Append events inside the caller's transaction, last in it (the numbering row stays
        locked until commit). Their numbers are read, and set on the events, once the
        transaction has committed (:meth:`_numbered`)."""
        if not events:
            return _Logged(None, 0)
        columns = list(zip(*(event_values(event) for event in events), strict=True))
        count = len(events)
        cur = await conn.execute(
            _query(Q["insert_events"]),
            (count, count, *map(list, columns), self.clock_offset_ms, self.channel),
        )
        logged = _Logged(cur, count)
        self._logged[id(conn)].append(logged)
        return logged

    @staticmethod
    async def _numbered(events: Sequence[Event], logged: _Logged) -> None:
        if logged.last is None:
            return
        first = logged.last - logged.count + 1
        for event, seq in zip(events, range(first, logged.last + 1), strict=True):
            event.seq = seq

    # ── tasks ────────────────────────────────────────────────────────

    async def insert_task(self, task: StoredTask, *, events: Sequence[Event] = ()) -> StoredTask:
        try:
            async with self._tx("inserting a task", pipeline=True) as conn:
                seq = await self._insert_one(conn, task)
                seqs = await self._log_events(conn, events)
        except StoreError as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise _duplicate(task.record.id) from exc.__cause__
            raise
        await self._numbered(events, seqs)
        return replace(task, seq=seq)

    @staticmethod
    async def _insert_one(conn: Conn, task: StoredTask) -> int:
        cur = await conn.execute(_query(Q["insert_task"]), task_values(task))
        row = await cur.fetchone()
        assert row is not None
        seq = int(row[0])
        tags = list(dict.fromkeys(task.record.tags))
        if tags:
            await conn.execute(_query(Q["insert_task_tags"]), (seq, tags))
        return seq

    async def insert_tasks(self, tasks: Iterable[StoredTask]) -> list[StoredTask]:
        """Insert many tasks in one transaction (imports, benchmarks); returns them with
        ``seq`` assigned. Not part of the Store protocol."""
        stored: list[StoredTask] = []
        try:
            async with self._tx("inserting tasks") as conn:
                for task in tasks:
                    stored.append(replace(task, seq=await self._insert_one(conn, task)))
        except StoreError as exc:
            if not isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise
            raise StoreError(
                "a task id in this batch already exists or is repeated; give each task a "
                "new id (claude_pool.types.new_task_id)"
            ) from exc.__cause__
        return stored

    async def get_task(self, task_id: TaskId) -> StoredTask | None:
        row = await self._fetchone("reading a task", Q["get_task"], (task_id,))
        return None if row is None else task_from_row(row)

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
                clauses.append(Q["task_with_any_tag"])
                params.append(tags)
        statement = Q["list_tasks"].format(
            where=f"WHERE {_all_of(clauses)}" if clauses else "",
            order="DESC" if newest_first else "ASC",
        )
        rows = await self._fetchall("listing tasks", statement, (*params, limit, offset))
        return [record_from_row(row) for row in rows]

    async def count_tasks(self) -> dict[TaskState, int]:
        rows = await self._fetchall("counting tasks", Q["count_tasks"])
        return {TaskState(state): int(count) for state, count in rows}

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
        async def run() -> StoredTask | None:
            row = await self._fetchone(
                "claiming a task",
                Q["claim_task"],
                (slot_id, worker_id, now_ms, slot_id, targeted_only, role, name, slot_id),
            )
            return None if row is None else task_from_row(row)

        async def undo(task: StoredTask | None) -> None:
            if task is not None:
                await self._execute(
                    "undoing a claim", Q["unclaim_task"], (task.record.id, task.claimed_by)
                )

        return await self._undoable(run, undo)

    async def _transition(
        self,
        conn: Conn,
        task_id: str,
        from_states: Collection[TaskState],
        to_state: TaskState,
        now_ms: int,
        fields: dict[str, Any],
    ) -> TaskRecord | None:
        """The compare-and-set UPDATE of a task, inside the caller's transaction."""
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
                sets.append(f"{name} = %s")
                params.append(fields[name])
        statement = Q["transition_task"].format(assignments=", ".join(sets))
        states = [TaskState(s).value for s in from_states]
        cur = await conn.execute(_query(statement), (*params, task_id, states))
        row = await cur.fetchone()
        return None if row is None else record_from_row(row)

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
        attempt_reason: str | Any = UNSET,
        plan_approved: bool | Any = UNSET,
        target_slot: SlotId | Any | None = UNSET,
        events: Sequence[Event] = (),
    ) -> TaskRecord | None:
        allowed = [TaskState(s) for s in from_states]
        if not allowed:
            return None
        fields = {
            name: value
            for name, value in (
                ("result", result),
                ("slot_id", slot_id),
                ("prompt", prompt),
                ("rejection_count", rejection_count),
                ("plan_approved", int(plan_approved) if plan_approved is not UNSET else UNSET),
                ("target_slot", target_slot),
            )
            if value is not UNSET
        }
        target = TaskState(to_state)
        async with self._tx("changing a task's state", pipeline=True) as conn:
            if attempt_reason is not UNSET and attempt_reason is not None:
                # The run the task had becomes an attempt, read and written under its lock.
                cur = await conn.execute(_query(Q["lock_task"]), (task_id,))
                row = await cur.fetchone()
                if row is None or TaskState(row[2]) not in allowed:
                    return None
                fields["attempts"] = archived(record_from_row(row), attempt_reason, now_ms)
            record = await self._transition(conn, task_id, allowed, target, now_ms, fields)
            seqs = await self._log_events(conn, events) if record is not None else _NOTHING
        if record is not None:
            await self._numbered(events, seqs)
        return record

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
        requeue: Requeue | None = None,
    ) -> bool:
        values = validate_slot_fields(slot_id, dict(slot_fields))
        columns = [slot_column_value(name, value) for name, value in values.items()]
        settle_slot = Q["settle_slot"].format(
            more_assignments="".join(f", {column} = %s" for column, _ in columns)
        )
        allowed = [TaskState(s) for s in from_states]
        async with self._tx("recording a finished task", pipeline=True) as conn:
            await conn.execute(_query(Q["release_budget"]), (task_id,))
            fields: dict[str, Any] = {"result": result}
            if requeue is not None:
                cur = await conn.execute(_query(Q["lock_task"]), (task_id,))
                row = await cur.fetchone()
                if row is not None and TaskState(row[2]) in allowed:
                    fields = requeue_fields(record_from_row(row), result, requeue, now_ms)
            moved = bool(allowed) and (
                await self._transition(conn, task_id, allowed, TaskState(to_state), now_ms, fields)
                is not None
            )
            await conn.execute(
                _query(settle_slot), (spend, tasks_completed, *(v for _, v in columns), slot_id)
            )
            # The rows every worker writes (spend, event numbers) are locked last, so that
            # they stay locked for as short a time as possible.
            if spend:
                await conn.execute(_query(Q["add_spend"]), (spend,))
            logged = [*always_events, *events] if moved else list(always_events)
            seqs = await self._log_events(conn, logged)
        await self._numbered(logged, seqs)
        return moved

    async def dependent_tasks(self, task_id: TaskId) -> list[StoredTask]:
        rows = await self._fetchall(
            "listing a task's dependents", Q["dependent_tasks"], (json.dumps([task_id]),)
        )
        return [task_from_row(row) for row in rows]

    async def pending_tasks(self, created_before_ms: int | None = None) -> list[StoredTask]:
        rows = await self._fetchall(
            "listing waiting tasks", Q["pending_tasks"], (created_before_ms, created_before_ms)
        )
        return [task_from_row(row) for row in rows]

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
        recovered: list[tuple[int, str, str, TaskRecord]] = []
        logged: list[Event] = []
        async with self._tx("recovering tasks") as conn:
            for worker_id in sorted(set(dead_workers)):
                if policy == "requeue":
                    reason = f"its pool process {worker_id} died while it ran"
                    # Locked: of several survivors recovering one worker, one does it.
                    cur = await conn.execute(_query(Q["running_tasks_of_worker"]), (worker_id,))
                    for row in await cur.fetchall():
                        attempts = archived(record_from_row(row), reason, now_ms)
                        await conn.execute(
                            _query(Q["set_task_attempts"]), (*attempts_values(attempts), row[1])
                        )
                    cur = await conn.execute(_query(Q["requeue_tasks_of_worker"]), (worker_id,))
                else:
                    failure = result_values(recovery_failure(worker_id))
                    cur = await conn.execute(
                        _query(Q["fail_tasks_of_worker"]), (now_ms, *failure, worker_id)
                    )
                for row in await cur.fetchall():
                    recovered.append((int(row[0]), str(row[1]), worker_id, record_from_row(row)))
                await conn.execute(_query(Q["release_budget_of_worker"]), (worker_id,))
            recovered.sort(key=lambda item: item[0])
            if events is not None:
                for _, task_id, worker_id, record in recovered:
                    logged.extend(events(TaskId(task_id), worker_id, record))
            seqs = await self._log_events(conn, logged)
        await self._numbered(logged, seqs)
        return [TaskId(task_id) for _, task_id, _, _ in recovered]

    # ── workers ──────────────────────────────────────────────────────

    # Heartbeats are kept in the database's time: each machine's times are moved by its
    # clock's offset from the server's (measured at open), so that a machine whose clock is
    # behind does not look dead to the others, nor one whose clock is ahead alive for longer.

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None:
        await self._execute(
            "recording a heartbeat",
            Q["heartbeat_worker"],
            (worker_id, now_ms + self.clock_offset_ms),
        )

    async def remove_worker(self, worker_id: str) -> None:
        await self._execute("removing a worker", Q["remove_worker"], (worker_id,))

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        rows = await self._fetchall(
            "listing workers", Q["live_workers"], (alive_since_ms + self.clock_offset_ms,)
        )
        return [str(row[0]) for row in rows]

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        rows = await self._fetchall(
            "finding stale workers",
            Q["stale_task_owners"],
            (alive_since_ms + self.clock_offset_ms,),
        )
        return [str(row[0]) for row in rows]

    async def set_rate_limit(self, worker_id: str, state: RateLimitState | None) -> None:
        text = None if state is None else state.model_dump_json()
        await self._execute(
            "publishing the rate-limit state", Q["set_rate_limit"], (text, worker_id)
        )

    async def rate_limits(self) -> dict[str, RateLimitState]:
        rows = await self._fetchall("reading rate-limit states", Q["rate_limits"])
        return {str(row[0]): RateLimitState.model_validate_json(row[1]) for row in rows}

    # ── slots ────────────────────────────────────────────────────────

    async def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        await self._execute("saving a slot", Q["upsert_slot"], slot_values(slot, worker_id))

    async def get_slot(self, slot_id: SlotId) -> SlotRecord | None:
        row = await self._fetchone("reading a slot", Q["get_slot"], (slot_id,))
        return None if row is None else slot_from_row(row)

    async def list_slots(self, worker_id: str | None = None) -> list[SlotRecord]:
        if worker_id is None:
            rows = await self._fetchall("listing slots", Q["list_slots"])
        else:
            rows = await self._fetchall("listing slots", Q["list_slots_of_worker"], (worker_id,))
        return [slot_from_row(row) for row in rows]

    async def update_slot(self, slot_id: SlotId, **fields: Any) -> SlotRecord | None:
        values = validate_slot_fields(slot_id, fields)
        if not values:
            return await self.get_slot(slot_id)
        columns = [slot_column_value(name, value) for name, value in values.items()]
        statement = Q["update_slot"].format(
            assignments=", ".join(f"{column} = %s" for column, _ in columns)
        )
        async with self._tx("updating a slot") as conn:
            cur = await conn.execute(_query(statement), (*(v for _, v in columns), slot_id))
            row = await cur.fetchone()
        return None if row is None else slot_from_row(row)

    async def add_slot_cost(
        self, slot_id: SlotId, cost_microdollars: int, tasks_completed: int
    ) -> None:
        await self._execute(
            "adding to a slot's cost",
            Q["add_slot_cost"],
            (cost_microdollars, tasks_completed, slot_id),
        )

    async def delete_slot(self, slot_id: SlotId) -> None:
        await self._execute("deleting a slot", Q["delete_slot"], (slot_id,))

    # ── spend ────────────────────────────────────────────────────────

    async def add_spend(self, microdollars: int, *, events: Sequence[Event] = ()) -> int:
        async with self._tx("adding spend") as conn:
            row = await (await conn.execute(_query(Q["add_spend"]), (microdollars,))).fetchone()
            assert row is not None
            seqs = await self._log_events(conn, events)
        await self._numbered(events, seqs)
        return int(row[0])

    async def get_spend(self) -> int:
        row = await self._fetchone("reading spend", Q["get_spend"])
        return int(row[0])

    async def budget_state(self) -> tuple[int, int]:
        row = await self._fetchone("reading the budget", Q["budget_state"])
        return int(row[0]), int(row[1])

    async def reserve_budget(
        self, task_id: TaskId, worker_id: str, microdollars: int, limit: int, now_ms: int
    ) -> bool:
        async with self._tx("reserving budget") as conn:
            row = await (await conn.execute(_query(Q["lock_spend"]))).fetchone()
            assert row is not None
            cur = await conn.execute(
                _query(Q["reserve_budget"]),
                (task_id, worker_id, microdollars, now_ms, task_id, int(row[0]), microdollars,
                 limit),
            )  # fmt: skip
            return cur.rowcount > 0

    async def release_budget(self, task_id: TaskId) -> None:
        await self._execute("releasing budget", Q["release_budget"], (task_id,))

    # ── shared context ───────────────────────────────────────────────

    async def context_set(self, key: str, value: str, *, events: Sequence[Event] = ()) -> None:
        async with self._tx("setting context", pipeline=True) as conn:
            await conn.execute(_query(Q["context_set"]), (key, value))
            seqs = await self._log_events(conn, events)
        await self._numbered(events, seqs)

    async def context_get(self, key: str) -> str | None:
        row = await self._fetchone("reading context", Q["context_get"], (key,))
        return None if row is None else str(row[0])

    async def context_delete(self, key: str, *, events: Sequence[Event] = ()) -> bool:
        async with self._tx("deleting context") as conn:
            cur = await conn.execute(_query(Q["context_delete"]), (key,))
            deleted = cur.rowcount > 0
            seqs = await self._log_events(conn, events) if deleted else _NOTHING
        if deleted:
            await self._numbered(events, seqs)
        return deleted

    async def context_list(self) -> dict[str, str]:
        rows = await self._fetchall("listing context", Q["context_list"])
        return {str(key): str(value) for key, value in rows}

    # ── messages ─────────────────────────────────────────────────────

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int,
        *, events: Sequence[Event] = (),
    ) -> Message:  # fmt: skip
        async with self._tx("sending a message") as conn:
            cur = await conn.execute(
                _query(Q["send_message"]), (from_slot, to_slot, content, now_ms)
            )
            row = await cur.fetchone()
            assert row is not None
            seqs = await self._log_events(conn, events)
        await self._numbered(events, seqs)
        return message_from_row(row)

    async def read_messages(
        self, slot_id: str, *, drain: bool, up_to_id: int | None = None
    ) -> list[Message]:
        limit = up_to_id if up_to_id is not None else -1
        params = (slot_id, limit, limit)
        if not drain:
            rows = await self._fetchall("reading messages", Q["read_messages"], params)
            return [message_from_row(row) for row in rows]

        async def run() -> list[Message]:
            async with self._tx("draining messages") as conn:
                cur = await conn.execute(_query(Q["drain_messages"]), params)
                rows = await cur.fetchall()
            return sorted((message_from_row(row) for row in rows), key=lambda m: m.id)

        async def undo(messages: list[Message]) -> None:
            await self._execute(
                "giving back messages", Q["undeliver_messages"], ([m.id for m in messages],)
            )

        return await self._undoable(run, undo)

    # ── webhooks ─────────────────────────────────────────────────────

    async def put_webhook(self, webhook: Webhook) -> None:
        async with self._tx("saving a webhook") as conn:
            await conn.execute(
                _query(Q["upsert_webhook"]),
                (webhook.id, webhook.url, webhook.secret, webhook.source, webhook.created_at_ms),
            )
            await conn.execute(_query(Q["clear_webhook_events"]), (webhook.id,))
            await conn.execute(
                _query(Q["insert_webhook_events"]), (webhook.id, list(webhook.events))
            )

    async def delete_webhook(self, webhook_id: str) -> bool:
        async with self._tx("deleting a webhook") as conn:
            await conn.execute(_query(Q["delete_pending_deliveries"]), (webhook_id,))
            cur = await conn.execute(_query(Q["delete_webhook"]), (webhook_id,))
            return cur.rowcount > 0

    async def list_webhooks(self) -> list[Webhook]:
        rows = await self._fetchall("listing webhooks", Q["list_webhooks"])
        return [
            Webhook(
                id=hook_id, url=url, secret=secret, source=source, created_at_ms=created,
                events=list(kinds),
            )
            for hook_id, url, secret, source, created, kinds in rows
        ]  # fmt: skip

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int = 20) -> list[Delivery]:
        # Due times and leases are kept in the database server's clock, as heartbeats are: a
        # worker whose clock runs ahead must not take a delivery whose lease another holds.
        now = now_ms + self.clock_offset_ms
        rows = await self._fetch_written(
            "claiming webhook deliveries", Q["claim_deliveries"], (now + lease_ms, now, limit)
        )
        return sorted((self._delivery(row) for row in rows), key=lambda d: (d.seq, d.id))

    def _delivery(self, row: Sequence[Any]) -> Delivery:
        """A delivery with its due time in this machine's clock."""
        delivery = _delivery(row)
        delivery.next_attempt_ms -= self.clock_offset_ms
        return delivery

    async def finish_delivery(
        self,
        delivery_id: int,
        *,
        delivered: bool,
        status: int | None,
        error: str | None,
        now_ms: int,
        retry_at_ms: int | None,
    ) -> None:
        state = "delivered" if delivered else ("pending" if retry_at_ms is not None else "failed")
        await self._execute(
            "recording a webhook delivery",
            Q["finish_delivery"],
            (
                state,
                status,
                error,
                None if retry_at_ms is None else retry_at_ms + self.clock_offset_ms,
                now_ms if delivered else None,
                delivery_id,
            ),
        )

    async def prune_deliveries(self, before_ms: int) -> int:
        return await self._execute(
            "pruning webhook deliveries", Q["prune_deliveries"], (before_ms,)
        )

    async def next_delivery_due_ms(self) -> int | None:
        row = await self._fetchone("reading the webhook outbox", Q["next_delivery_due"])
        return None if row is None or row[0] is None else int(row[0]) - self.clock_offset_ms

    async def list_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []
        if webhook_id is not None:
            clauses.append(Q["delivery_of_webhook"])
            params.append(webhook_id)
        if state is not None:
            clauses.append(Q["delivery_in_state"])
            params.append(str(state))
        statement = Q["list_deliveries"].format(
            filters=f"WHERE {_all_of(clauses)}" if clauses else ""
        )
        rows = await self._fetchall(
            "listing webhook deliveries", statement, (*params, limit, offset)
        )
        return [self._delivery(row).model_copy(update={"payload": ""}) for row in rows]

    # ── events ───────────────────────────────────────────────────────

    async def append_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        async with self._tx("recording events", pipeline=True) as conn:
            seqs = await self._log_events(conn, events)
        await self._numbered(events, seqs)

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
        clauses = [Q["event_after"]]
        params: list[Any] = [after]
        for clause, value in (
            ("event_up_to", up_to),
            ("event_of_task", task_id),
            ("event_of_chain", chain_id),
            ("event_of_kinds", None if types is None else sorted(types)),
            ("event_not_from", not_from),
        ):
            if value is not None:
                clauses.append(Q[clause])
                params.append(value)
        statement = Q["read_events"].format(filters=_all_of(clauses))
        rows = await self._fetchall("reading events", statement, (*params, limit))
        events = []
        for seq, data in rows:
            event = parse_event(data)
            event.seq = int(seq)
            events.append(event)
        return events

    async def latest_event_seq(self) -> int:
        row = await self._fetchone("reading the latest event", Q["latest_event_seq"])
        return int(row[0])

    def wakeups(self) -> PostgresWakeups:
        return self._wakeups

    async def prune_events(self, before_ms: int) -> int:
        async with self._tx("pruning events") as conn:
            # Events are appended in time order, so the first one to keep bounds the rest; the
            # newest event always stays.
            keep = await (
                await conn.execute(_query(Q["first_event_since"]), (before_ms,))
            ).fetchone()
            if keep is None:
                keep = await (await conn.execute(_query(Q["last_event_id"]))).fetchone()
            if keep is None or keep[0] is None:
                return 0
            cur = await conn.execute(_query(Q["delete_events_before"]), (keep[0],))
            return cur.rowcount

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
        text = json.dumps(dict(data))
        async with self._tx("saving a chain") as conn:
            if expected_owner is not None:
                row = await (await conn.execute(_query(Q["lock_chain"]), (chain_id,))).fetchone()
                if row is None:
                    return False
                stored = json.loads(row[0])
                if not isinstance(stored, dict) or stored.get("owner") != expected_owner:
                    return False
            await conn.execute(_query(Q["upsert_chain"]), (chain_id, state, now_ms, now_ms, text))
            seqs = await self._log_events(conn, events)
        await self._numbered(events, seqs)
        return True

    async def _swap_chain_owner(
        self, chain_id: str, expected_owner: str | None, new_owner: str | None, now_ms: int
    ) -> bool:
        async with self._tx("claiming a chain") as conn:
            row = await (await conn.execute(_query(Q["lock_chain"]), (chain_id,))).fetchone()
            if row is None:
                return False
            data = json.loads(row[0])
            if not isinstance(data, dict) or data.get("owner") != expected_owner:
                return False
            data["owner"] = new_owner
            await conn.execute(_query(Q["update_chain_data"]), (json.dumps(data), now_ms, chain_id))
        return True

    async def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str, now_ms: int
    ) -> bool:
        async def run() -> bool:
            return await self._swap_chain_owner(chain_id, expected_owner, new_owner, now_ms)

        async def undo(claimed: bool) -> None:
            if claimed:
                await self._swap_chain_owner(chain_id, new_owner, expected_owner, now_ms)

        return await self._undoable(run, undo)

    async def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        row = await self._fetchone("reading a chain", Q["get_chain"], (chain_id,))
        return None if row is None else dict(json.loads(row[0]))

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        if state is None:
            rows = await self._fetchall("listing chains", Q["list_chains"], (limit, offset))
        else:
            rows = await self._fetchall(
                "listing chains", Q["list_chains_in_state"], (state, limit, offset)
            )
        return [dict(json.loads(row[0])) for row in rows]

    # ── metrics ──────────────────────────────────────────────────────

    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        clauses: list[str] = []
        params: list[Any] = []
        if filter is not None:
            for clause, value in (
                ("task_created_since", filter.since_ms),
                ("task_created_before", filter.until_ms),
                ("task_of_model", filter.model),
                ("task_with_any_tag", normalise_tags(filter.tags)),
            ):
                if value is not None:
                    clauses.append(Q[clause])
                    params.append(value)
        scope = _all_of(clauses)
        async with self._tx("computing session metrics") as conn:
            # One snapshot for both queries.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur = await conn.execute(_query(Q["metric_groups"].format(filters=scope)), params)
            groups = [MetricGroup(*row) for row in await cur.fetchall()]
            with_result = sum(g.with_result for g in groups if g.state == "completed")
            middle: list[int] = []
            if with_result:
                cur = await conn.execute(
                    _query(Q["middle_elapsed"].format(filters=scope)),
                    (*params, (with_result - 1) // 2),
                )
                middle = [int(row[0]) for row in await cur.fetchall()]
        return metrics_from_groups(groups, middle, session_start_ms, now_ms)

"""The SQLite store: :class:`SqliteStore`, one SQLite file in WAL mode, shareable by several
processes.

Threads: the stdlib ``sqlite3`` module is used directly rather than aiosqlite. Each store has
one dedicated thread (a single-worker ``ThreadPoolExecutor``) owning a connection that waits
for the file's lock (``busy_timeout``) and runs everything whose cost grows with the data,
plus the schema migrations. Short operations run on the event loop's thread on a second
connection that never waits, and go to the thread only when the file is locked (see
:class:`SqliteStore`). aiosqlite would give the thread but not this fast path, and would hide
the transaction control the store needs.

Both connections are a :class:`~claude_pool.store.sqlite.database.Database`, which holds the
transactions and the SQL; this module checks the arguments and decides where each operation
runs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from claude_pool.errors import StoreError
from claude_pool.events import Event
from claude_pool.store._common import validate_slot_fields
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
from claude_pool.store.sqlite.database import Database, is_busy, translate_error
from claude_pool.store.sqlite.wakeups import SqliteWakeups
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

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHECKPOINT_EVERY = 256
"""Quick-path write transactions between two WAL checkpoints (run on the store's thread)."""
_YIELD_EVERY = 8
"""Quick-path calls between two yields to the event loop."""


@dataclass(slots=True)
class _Write:
    """A write waiting for the next batch (see :meth:`SqliteStore._write`)."""

    operation: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


def _unnumber(args: tuple[Any, ...]) -> None:
    for arg in args:
        if isinstance(arg, list | tuple):
            for item in arg:
                if isinstance(item, Event):
                    item.seq = 0


def _pass_on(to: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if to.cancelled():
        return
    if done.cancelled():
        to.cancel()
    elif (exc := done.exception()) is not None:
        to.set_exception(exc)
    else:
        to.set_result(done.result())


class SqliteStore:
    """The :class:`~claude_pool.store.base.Store` protocol over one SQLite file.

    ``path`` may be ``":memory:"`` for a private in-memory database (one store object only).
    ``busy_timeout_ms`` is how long a write waits for another process holding the file.

    Short operations (one task, one slot, a counter...) run directly on the event loop's
    thread on a connection that never waits: they take tens of microseconds, while a hop to a
    thread and back costs about 100 µs and, under load, the GIL hand-off costs far more. When
    the file is locked by someone else such an operation goes to the store's thread, which
    waits for the lock there. Short writes asked for side by side commit together (see
    :meth:`_write`). Operations whose cost grows with the data (listing, metrics, recovery,
    bulk inserts) always run on the store's thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> None:
        raw = os.fspath(path)
        self.path = raw if raw == ":memory:" else os.path.abspath(os.path.expanduser(raw))
        self._db = Database(self.path, busy_timeout_ms)
        self._quick_db: Database | None = None
        self._quick_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._checkpoint_pending = False
        self._quick_calls = 0
        self._pending_writes: list[_Write] = []
        self._flush_scheduled = False
        self._thread_writes = 0
        """Writes sent to the store's thread and not yet done."""
        self._wakeups = SqliteWakeups(self)

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _guarded(
        self, operation: str, fn: Callable[..., T], db: Database, args: tuple[Any, ...]
    ) -> T:
        try:
            return fn(db, *args)
        except sqlite3.Error as exc:
            raise translate_error(self.path, operation, exc) from exc

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
        undo: Callable[[Database, Any], None] | None = None,
    ) -> T:
        """Run ``fn(db, *args)`` on the store's thread."""
        executor = self._executor_or_raise()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._guarded, operation, fn, self._db, args)
        return await self._outcome(operation, future, undo)

    async def _outcome(
        self,
        operation: str,
        future: asyncio.Future[T],
        undo: Callable[[Database, Any], None] | None,
    ) -> T:
        """Await an operation's future; with ``undo``, a caller who gives up after the
        operation ran gets the change taken back instead of silently kept."""
        if undo is None:
            return await future
        executor = self._executor_or_raise()
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller gave up, but the change (a claim, a drain) may be done or still be
            # completed, and nobody will act on it: take it back once it is done.
            def take_back(done: asyncio.Future[T]) -> None:
                if done.cancelled() or done.exception() is not None or not done.result():
                    return
                if self._undo_here(undo, done.result()):
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

            if future.done():
                take_back(future)  # at once, so the caller's next read sees it undone
            else:
                future.add_done_callback(take_back)
                self._background.add(future)
                future.add_done_callback(self._background.discard)
            raise

    def _undo_here(self, undo: Callable[[Database, Any], None], result: Any) -> bool:
        """Take a change back on the quick connection, if it is free; whether it was."""
        db = self._quick_db
        if db is None or not self._quick_may_write() or not self._quick_lock.acquire(False):
            return False
        try:
            undo(db, result)
        except sqlite3.Error:
            return False  # (busy, say) the store's thread tries again
        finally:
            self._quick_lock.release()
        return True

    async def _quick(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        undo: Callable[[Database, Any], None] | None = None,
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
                    if not is_busy(exc):
                        raise translate_error(self.path, operation, exc) from exc
                else:
                    if db.writes >= _CHECKPOINT_EVERY:
                        self._request_checkpoint(db)
                    return result
                finally:
                    self._quick_lock.release()
        return await self._run(operation, fn, *args, undo=undo)

    async def _write(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: Any,
        undo: Callable[[Database, Any], None] | None = None,
    ) -> T:
        """Run the short write ``fn(db, *args)``, returning once it is committed.

        The writes asked for in one turn of the event loop (a burst of submits, the
        settlements and next claims of several slots) commit together at the end of the turn,
        on the quick connection, in one transaction: a group commit, one ``BEGIN``/``COMMIT``
        for all of them instead of one each. (Running the first write of a turn at once saved
        it one turn of latency but kept it out of the batch: about 3 commits per task on the
        scheduler benchmark instead of under 2, and up to 12% less throughput.) So do the writes
        asked for while the store's thread holds the write lock (a checkpoint, or writes that
        found the file locked by another process): they commit together once it is done,
        instead of each finding the file locked and queueing on the thread one by one. A
        caller who gives up before its write ran takes it out of the batch."""
        if self._quick_db is None:
            return await self._run(operation, fn, *args, undo=undo)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        write = _Write(operation, fn, args, future)
        self._pending_writes.append(write)
        self._schedule_flush(loop)
        try:
            return await self._outcome(operation, future, undo)
        except asyncio.CancelledError:
            if any(w is write for w in self._pending_writes):
                # Not run yet: nothing to take back, and it will not run.
                self._pending_writes = [w for w in self._pending_writes if w is not write]
                future.cancel()
            raise

    async def _after_pending_writes(self) -> None:
        """Wait until the writes asked for so far are done (whatever their outcome)."""
        futures = [w.future for w in self._pending_writes]
        if futures:
            await asyncio.wait(futures)

    def _quick_may_write(self) -> bool:
        """Whether a write may go to the quick connection now: not while the store's thread
        checkpoints or has writes of its own (its connection holds the write lock then)."""
        return not self._checkpoint_pending and not self._thread_writes

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (loop or asyncio.get_running_loop()).call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        """Commit the writes waiting since the last flush, together (see :meth:`_write`);
        while the store's thread holds the write lock they keep waiting (its end flushes)."""
        self._flush_scheduled = False
        if not self._quick_may_write():
            return
        writes = [w for w in self._pending_writes if not w.future.cancelled()]
        self._pending_writes = []
        if not writes:
            return
        db = self._quick_db
        if db is None or not self._quick_lock.acquire(blocking=False):
            self._writes_to_thread(writes)
            return
        if len(writes) == 1:
            # On its own: its own transaction, and its error is its caller's.
            (write,) = writes
            try:
                result = write.fn(db, *write.args)
            except sqlite3.Error as exc:
                if is_busy(exc):
                    self._writes_to_thread(writes)
                else:
                    write.future.set_exception(translate_error(self.path, write.operation, exc))
            except Exception as exc:
                write.future.set_exception(exc)
            else:
                write.future.set_result(result)
            finally:
                self._quick_lock.release()
            self._checkpoint_if_due(db)
            return
        results: list[Any] = []
        try:
            with db.batch():
                for write in writes:
                    results.append(write.fn(db, *write.args))
        except Exception as exc:
            # Nothing of the batch was written (the file was locked, one write failed, the
            # commit failed): each write is tried again on the thread, on its own, where a
            # write that failed here fails again for its caller alone.
            if not isinstance(exc, sqlite3.Error) or not is_busy(exc):
                log.debug("SQLite store %s: a batch of writes was undone (%r)", self.path, exc)
            for write in writes:
                _unnumber(write.args)  # the events they logged are not in the log after all
            self._writes_to_thread(writes)
            return
        finally:
            self._quick_lock.release()
        self._checkpoint_if_due(db)
        for write, result in zip(writes, results, strict=True):
            if not write.future.cancelled():
                write.future.set_result(result)

    def _writes_to_thread(self, writes: list[_Write]) -> None:
        loop = asyncio.get_running_loop()
        for write in writes:
            if self._executor is None:
                if not write.future.cancelled():
                    write.future.set_exception(
                        StoreError(f"SQLite store {self.path} is not open; call open() first")
                    )
                continue
            self._thread_writes += 1
            done = loop.run_in_executor(
                self._executor, self._guarded, write.operation, write.fn, self._db, write.args
            )
            done.add_done_callback(functools.partial(self._thread_write_done, write.future))

    def _thread_write_done(self, to: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
        self._thread_writes -= 1
        _pass_on(to, done)
        if not self._thread_writes and self._pending_writes:
            self._schedule_flush()

    def _checkpoint_if_due(self, db: Database) -> None:
        if db.writes >= _CHECKPOINT_EVERY:
            self._request_checkpoint(db)

    def _request_checkpoint(self, db: Database) -> None:
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
            if self._pending_writes:
                self._schedule_flush()

        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._guarded, "checkpointing", Database.checkpoint, self._db, ()
        )
        future.add_done_callback(done)
        self._in_background(future)

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="claude-pool-sqlite")
        try:
            await self._run("opening the database", Database.connect)
            if self.path != ":memory:":
                quick = Database(self.path, 0, quick=True)
                self._guarded("opening the database", Database.connect, quick, ())
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
            await self._run("closing the database", Database.close)
        finally:
            self._executor = None
            if executor is not None:
                executor.shutdown(wait=False)

    # ── tasks ────────────────────────────────────────────────────────

    async def insert_task(self, task: StoredTask, *, events: Sequence[Event] = ()) -> StoredTask:
        return await self._write("inserting a task", Database.insert_task, task, events)

    async def insert_tasks(self, tasks: Iterable[StoredTask]) -> list[StoredTask]:
        """Insert many tasks in one transaction (imports, benchmarks); returns them with
        ``seq`` assigned. Not part of the Store protocol."""
        return await self._run("inserting tasks", Database.insert_tasks, list(tasks))

    async def get_task(self, task_id: TaskId) -> StoredTask | None:
        return await self._quick("reading a task", Database.get_task, task_id)

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
            "listing tasks", Database.list_tasks, filter, limit, offset, newest_first
        )

    async def count_tasks(self) -> dict[TaskState, int]:
        return await self._run("counting tasks", Database.count_tasks)

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
        return await self._write(
            "claiming a task",
            Database.claim_task,
            slot_id,
            role,
            name,
            worker_id,
            now_ms,
            targeted_only,
            undo=Database.unclaim_task,
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
        attempt_reason: str | Any = UNSET,
        plan_approved: bool | Any = UNSET,
        target_slot: SlotId | Any | None = UNSET,
        events: Sequence[Event] = (),
    ) -> TaskRecord | None:
        fields = {
            name: value
            for name, value in (
                ("result", result),
                ("slot_id", slot_id),
                ("prompt", prompt),
                ("rejection_count", rejection_count),
                ("attempt_reason", attempt_reason),
                ("plan_approved", int(plan_approved) if plan_approved is not UNSET else UNSET),
                ("target_slot", target_slot),
            )
            if value is not UNSET
        }
        return await self._write(
            "changing a task's state",
            Database.transition_task,
            task_id,
            list(from_states),
            TaskState(to_state),
            now_ms,
            fields,
            events,
        )

    async def dependent_tasks(self, task_id: TaskId) -> list[StoredTask]:
        return await self._quick("listing a task's dependents", Database.dependent_tasks, task_id)

    async def pending_tasks(self, created_before_ms: int | None = None) -> list[StoredTask]:
        return await self._run("listing waiting tasks", Database.pending_tasks, created_before_ms)

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
        await self._after_pending_writes()  # (its events go after theirs)
        return await self._run(
            "recovering tasks",
            Database.recover_tasks,
            sorted(set(dead_workers)),
            policy,
            now_ms,
            events,
        )

    # ── workers ──────────────────────────────────────────────────────

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None:
        await self._write("recording a heartbeat", Database.heartbeat_worker, worker_id, now_ms)

    async def remove_worker(self, worker_id: str) -> None:
        await self._quick("removing a worker", Database.remove_worker, worker_id)

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        return await self._quick("listing workers", Database.live_workers, alive_since_ms)

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        return await self._quick(
            "finding stale workers", Database.stale_task_owners, alive_since_ms
        )

    async def set_rate_limit(self, worker_id: str, state: RateLimitState | None) -> None:
        await self._quick(
            "publishing the rate-limit state", Database.set_rate_limit, worker_id, state
        )

    async def rate_limits(self) -> dict[str, RateLimitState]:
        return await self._quick("reading rate-limit states", Database.rate_limits)

    # ── slots ────────────────────────────────────────────────────────

    async def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        await self._write("saving a slot", Database.upsert_slot, slot, worker_id)

    async def get_slot(self, slot_id: SlotId) -> SlotRecord | None:
        return await self._quick("reading a slot", Database.get_slot, slot_id)

    async def list_slots(self, worker_id: str | None = None) -> list[SlotRecord]:
        return await self._quick("listing slots", Database.list_slots, worker_id)

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
        return await self._write(
            "recording a finished task",
            Database.settle_task,
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
            requeue,
        )

    async def update_slot(self, slot_id: SlotId, **fields: Any) -> SlotRecord | None:
        values = validate_slot_fields(slot_id, fields)
        return await self._write("updating a slot", Database.update_slot, slot_id, values)

    async def add_slot_cost(
        self, slot_id: SlotId, cost_microdollars: int, tasks_completed: int
    ) -> None:
        await self._write(
            "adding to a slot's cost",
            Database.add_slot_cost,
            slot_id,
            cost_microdollars,
            tasks_completed,
        )

    async def delete_slot(self, slot_id: SlotId) -> None:
        await self._quick("deleting a slot", Database.delete_slot, slot_id)

    # ── spend ────────────────────────────────────────────────────────

    async def add_spend(self, microdollars: int, *, events: Sequence[Event] = ()) -> int:
        return await self._write("adding spend", Database.add_spend, microdollars, events)

    async def get_spend(self) -> int:
        return await self._quick("reading spend", Database.get_spend)

    async def budget_state(self) -> tuple[int, int]:
        return await self._quick("reading the budget", Database.budget_state)

    async def reserve_budget(
        self, task_id: TaskId, worker_id: str, microdollars: int, limit: int, now_ms: int
    ) -> bool:
        reserved: bool = await self._write(
            "reserving budget", Database.reserve_budget, task_id, worker_id, microdollars,
            limit, now_ms,
        )  # fmt: skip
        return reserved

    async def release_budget(self, task_id: TaskId) -> None:
        await self._write("releasing budget", Database.release_budget, task_id)

    # ── shared context ───────────────────────────────────────────────

    async def context_set(self, key: str, value: str, *, events: Sequence[Event] = ()) -> None:
        await self._write("setting context", Database.context_set, key, value, events)

    async def context_get(self, key: str) -> str | None:
        return await self._quick("reading context", Database.context_get, key)

    async def context_delete(self, key: str, *, events: Sequence[Event] = ()) -> bool:
        return await self._write("deleting context", Database.context_delete, key, events)

    async def context_list(self) -> dict[str, str]:
        return await self._quick("listing context", Database.context_list)

    # ── messages ─────────────────────────────────────────────────────

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int,
        *, events: Sequence[Event] = (),
    ) -> Message:  # fmt: skip
        return await self._write(
            "sending a message",
            Database.send_message,
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
                "reading messages", Database.read_messages, slot_id, False, up_to_id
            )
        return await self._quick(
            "draining messages",
            Database.read_messages,
            slot_id,
            True,
            up_to_id,
            undo=Database.undeliver_messages,
        )

    # ── webhooks ─────────────────────────────────────────────────────

    async def put_webhook(self, webhook: Webhook) -> None:
        await self._quick("saving a webhook", Database.put_webhook, webhook)

    async def delete_webhook(self, webhook_id: str) -> bool:
        return await self._quick("deleting a webhook", Database.delete_webhook, webhook_id)

    async def list_webhooks(self) -> list[Webhook]:
        return await self._quick("listing webhooks", Database.list_webhooks)

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int = 20) -> list[Delivery]:
        return await self._quick(
            "claiming webhook deliveries", Database.claim_deliveries, now_ms, lease_ms, limit
        )

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
        await self._quick(
            "recording a webhook delivery", Database.finish_delivery, delivery_id, delivered,
            status, error, now_ms, retry_at_ms,
        )  # fmt: skip

    async def prune_deliveries(self, before_ms: int) -> int:
        return await self._quick("pruning webhook deliveries", Database.prune_deliveries, before_ms)

    async def next_delivery_due_ms(self) -> int | None:
        return await self._quick("reading the webhook outbox", Database.next_delivery_due_ms)

    async def list_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        return await self._quick(
            "listing webhook deliveries", Database.list_deliveries, webhook_id,
            None if state is None else str(state), limit, offset,
        )  # fmt: skip

    # ── events ───────────────────────────────────────────────────────

    async def append_events(self, events: Sequence[Event]) -> None:
        if events:
            await self._write("recording events", Database.append_events, events)

    def append_events_ahead(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """See :class:`~claude_pool.store.base.EventsAhead`: the append joins the writes
        waiting for the next batch (or the store's thread) now, ahead of every later one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        write = _Write("recording events", Database.append_events, (list(events),), future)
        if self._quick_db is not None:
            self._pending_writes.append(write)
            self._schedule_flush(loop)
        else:
            self._writes_to_thread([write])
        return future

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
            Database.read_events,
            after,
            up_to,
            limit,
            task_id,
            chain_id,
            sorted(types) if types is not None else None,
            not_from,
        )

    async def latest_event_seq(self) -> int:
        return await self._quick("reading the latest event", Database.latest_event_seq)

    def wakeups(self) -> SqliteWakeups:
        return self._wakeups

    async def prune_events(self, before_ms: int) -> int:
        return await self._run("pruning events", Database.prune_events, before_ms)

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
        written: bool = await self._write(
            "saving a chain",
            Database.upsert_chain,
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
            Database.claim_chain,
            chain_id,
            expected_owner,
            new_owner,
            now_ms,
            undo=Database.unclaim_chain,
        )
        return claim is not None

    async def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        return await self._quick("reading a chain", Database.get_chain, chain_id)

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        return await self._run("listing chains", Database.list_chains, state, limit, offset)

    # ── metrics ──────────────────────────────────────────────────────

    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        return await self._run(
            "computing session metrics",
            Database.session_metrics,
            filter,
            session_start_ms,
            now_ms,
        )

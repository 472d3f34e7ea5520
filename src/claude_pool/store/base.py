"""The storage seam: small async protocols, one per role, that every store implements.

Queue *rules* live in the engine; a store only stores, but it does the few things that must be
atomic where the data is: claiming the next task (priority, then FIFO, honouring the task's
target), compare-and-set state transitions, and counter increments. No method overwrites a whole
record from a snapshot: updates name the fields they change.

The roles: :class:`TaskQueueStore` (tasks and claims), :class:`MemberStore` (the pool processes
sharing the store), :class:`SlotStore`, :class:`LedgerStore` (spend), :class:`NoteStore` (shared
context and messages), :class:`EventLogStore` (the numbered domain events, plus the wake-up
channel through which one process learns what others did), :class:`ChainStore`,
:class:`MetricsStore` and :class:`OutboxStore` (webhooks and their durable delivery outbox).
:class:`Store` is all of them together.

Events and state changes go together: a method that changes state takes ``events`` and appends
them to the event log in the same atomic write, in order, setting each event's ``seq``. So an
event is in the log exactly when its change is in the store, even if the process dies a moment
later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from claude_pool.events import Event
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


@dataclass(frozen=True)
class TaskTarget:
    """Where a task may run: a specific slot, any slot with a role, or a slot with a name."""

    slot_id: SlotId | None = None
    role: str | None = None
    name: str | None = None

    def matches(self, slot_id: SlotId, role: str | None, name: str | None) -> bool:
        return (
            (self.slot_id is None or self.slot_id == slot_id)
            and (self.role is None or self.role == role)
            and (self.name is None or self.name == name)
        )

    def describe(self) -> str | None:
        parts = [
            f"{k}={v}"
            for k, v in (("slot", self.slot_id), ("role", self.role), ("name", self.name))
            if v is not None
        ]
        return ", ".join(parts) or None


@dataclass
class StoredTask:
    """A task record plus the scheduling facts the seed's TaskRecord has no fields for."""

    record: TaskRecord
    priority: int = 0
    """Higher runs first; equal priorities run in submission order."""
    target: TaskTarget = field(default_factory=TaskTarget)
    timeout_secs: float | None = None
    """Per-task run-time limit; None means the pool default."""
    assignment_timeout_secs: float | None = None
    """How long it may wait for a slot; None means the pool/slot default."""
    fresh_session: bool = False
    """Run in a new conversation even on a persistent slot."""
    cwd: str | None = None
    """Working directory for this task (e.g. a chain's worktree); None is the slot's own.
    A task in another directory than its slot's always starts a new conversation."""
    claimed_by: str | None = None
    """Id of the worker (pool process) that claimed it while running."""
    seq: int = 0
    """Submission order, assigned by the store on insert."""


@dataclass(frozen=True)
class Requeue:
    """How a settled run sends its task back to the queue instead of ending it (a failed
    verification): the run, with its result, becomes one of the task's ``attempts`` (as
    failed, for ``reason``); the task is pending again with ``prompt`` and
    ``rejection_count``, its result and slot cleared, and its ``original_prompt`` kept (set
    to the prompt it ran with, when it had none). With ``slot_id``, only that slot may run it
    from then on (its conversation and worktree hold the work being fixed)."""

    reason: str
    prompt: str
    rejection_count: int
    slot_id: SlotId | None = None


@dataclass(frozen=True)
class Message:
    id: int
    from_slot: str
    to_slot: str
    content: str
    created_at_ms: int


class _Unset:
    pass


UNSET: Any = _Unset()
"""Marker for "leave this field alone" in partial updates."""

RecoveryPolicy = Literal["requeue", "fail"]

RecoveryEvents = Callable[[TaskId, str, TaskRecord], Sequence[Event]]
"""``(task id, dead worker id, the task's record after recovery) -> events`` to log with it."""


@runtime_checkable
class TaskQueueStore(Protocol):
    """Tasks: the queue, atomic claims and compare-and-set state changes."""

    async def insert_task(self, task: StoredTask, *, events: Sequence[Event] = ()) -> StoredTask:
        """Insert a new task; returns it with ``seq`` assigned. Duplicate ids are an error."""

    async def get_task(self, task_id: TaskId) -> StoredTask | None: ...

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        """Tasks matching ``filter`` in submission order (oldest first, or newest first). A
        tag filter matches tasks with any of its tags; an empty tag list is no filter."""

    async def count_tasks(self) -> dict[TaskState, int]:
        """Number of tasks in each state (states with none may be omitted)."""

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
        """Atomically take the best pending task this slot may run (highest priority, then
        lowest ``seq``; target must match), marking it running on this slot, stamping
        ``started_at_ms`` and ``claimed_by``, and marking the slot (if stored) busy with it.
        With ``targeted_only``, only tasks aimed at this slot (by id, role or name) qualify.
        A task with ``depends_on`` qualifies only once every dependency has completed (with
        ``on_dependency_failure="run"``: has completed, failed or been cancelled); the check
        is part of the same atomic claim. None when there is nothing for this slot."""

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
        """Compare-and-set: move the task to ``to_state`` only if it is in one of
        ``from_states``; set the given fields; stamp ``started_at_ms`` (running) or
        ``completed_at_ms`` (any other non-pending state), clear ``claimed_by`` unless running.
        Moving back to pending (a re-queue) clears both stamps. ``target_slot`` replaces the
        slot the task is aimed at (None: any). With ``attempt_reason``, the
        run the task had (its state and result, what it cost) is first added to its
        ``attempts`` for that reason, so that running it again loses none of its spend.
        Returns the updated record, or None if the task does not exist or was not in an
        allowed state (then ``events`` are not logged either)."""

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
        """Record a finished run in one atomic write: add ``spend`` to the pool's total and to
        the slot's cost (with ``tasks_completed``), set the slot's ``slot_fields``, and
        compare-and-set the task to ``to_state`` with ``result`` (as ``transition_task``);
        with ``requeue``, ``to_state`` is pending and the task is queued again as it says.
        Returns whether the task moved. The spend, the slot changes and ``always_events`` apply
        even when it had left ``from_states`` (money spent is spent); ``events`` are logged
        only when it moved, after ``always_events``. The task's budget reservation is dropped
        in the same write."""

    async def dependent_tasks(self, task_id: TaskId) -> list[StoredTask]:
        """Pending tasks whose ``depends_on`` names ``task_id``, oldest first."""

    async def pending_tasks(self, created_before_ms: int | None = None) -> list[StoredTask]:
        """Pending tasks (submitted before the given time, when given), oldest first."""

    async def recover_tasks(
        self,
        dead_workers: Collection[str],
        policy: RecoveryPolicy,
        now_ms: int,
        *,
        events: RecoveryEvents | None = None,
    ) -> list[TaskId]:
        """Tasks left running by the given workers are re-queued (pending, slot cleared; the
        interrupted run added to their ``attempts``) or failed with a clear reason, in one
        atomic write that also logs ``events(task id, worker, record)`` for each and drops the
        workers' budget reservations. Returns their ids."""


@runtime_checkable
class MemberStore(Protocol):
    """The pool processes (workers) sharing the store, by heartbeat."""

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None: ...

    async def remove_worker(self, worker_id: str) -> None: ...

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        """Workers whose last heartbeat is at or after ``alive_since_ms``."""

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        """Worker ids that hold running tasks but have not heartbeated since the given time
        (including ids with no heartbeat row at all)."""

    async def set_rate_limit(self, worker_id: str, state: RateLimitState | None) -> None:
        """Publish (None: clear) a worker's rate-limit hold, for other processes to show. A
        worker that is not registered (no heartbeat yet, or removed) is left alone."""

    async def rate_limits(self) -> dict[str, RateLimitState]:
        """The rate-limit holds registered workers have published, by worker id (whether those
        workers are still alive is for the caller to judge)."""


@runtime_checkable
class SlotStore(Protocol):
    async def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None: ...

    async def get_slot(self, slot_id: SlotId) -> SlotRecord | None: ...

    async def list_slots(self, worker_id: str | None = None) -> list[SlotRecord]: ...

    async def update_slot(self, slot_id: SlotId, **fields: Any) -> SlotRecord | None:
        """Set only the named SlotRecord fields; None if the slot does not exist."""

    async def add_slot_cost(
        self, slot_id: SlotId, cost_microdollars: int, tasks_completed: int
    ) -> None:
        """Atomic increments of the slot's spend and completed-task count."""

    async def delete_slot(self, slot_id: SlotId) -> None: ...


@runtime_checkable
class LedgerStore(Protocol):
    """The pool's total spend, and the budget reserved for running tasks (shared by every
    worker on the store, so that together they keep one budget)."""

    async def add_spend(self, microdollars: int, *, events: Sequence[Event] = ()) -> int:
        """Atomically add to the pool's total spend; returns the new total."""

    async def get_spend(self) -> int: ...

    async def budget_state(self) -> tuple[int, int]:
        """``(spent, reserved)``: the total spend, and the sum of every task's reservation."""

    async def reserve_budget(
        self, task_id: TaskId, worker_id: str, microdollars: int, limit: int, now_ms: int
    ) -> bool:
        """Atomically (across processes) reserve ``microdollars`` for the task if the spend,
        every reservation and this one together stay within ``limit``; whether it did. A task
        holds at most one reservation (a second replaces the first)."""

    async def release_budget(self, task_id: TaskId) -> None:
        """Drop the task's reservation, if it has one. (Settling a task and recovering it
        drop it too, in the same write.)"""


@runtime_checkable
class NoteStore(Protocol):
    """Shared context (key/value notes) and messages between slots."""

    async def context_set(self, key: str, value: str, *, events: Sequence[Event] = ()) -> None: ...

    async def context_get(self, key: str) -> str | None: ...

    async def context_delete(self, key: str, *, events: Sequence[Event] = ()) -> bool:
        """Whether the key existed (``events`` are logged only then)."""

    async def context_list(self) -> dict[str, str]: ...

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int,
        *, events: Sequence[Event] = (),
    ) -> Message: ...  # fmt: skip

    async def read_messages(
        self, slot_id: str, *, drain: bool, up_to_id: int | None = None
    ) -> list[Message]:
        """Unread messages for the slot, oldest first; ``drain`` marks them read atomically.
        With ``up_to_id``, only messages up to that id are read (and marked): the ones that
        were delivered, not those that arrived since."""


@runtime_checkable
class Wakeups(Protocol):
    """How one process learns that others appended events, without reading per waiter."""

    async def wait(self, after_seq: int, timeout: float) -> int:
        """The latest sequence number in the event log once it is past ``after_seq``, or
        whatever it is when ``timeout`` seconds have passed. Any number of callers may wait
        at once; the store checks for all of them together."""


@runtime_checkable
class EventLogStore(Protocol):
    """The numbered log of domain events."""

    async def append_events(self, events: Sequence[Event]) -> None:
        """Append in order, setting each event's ``seq`` (which only grows)."""

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
        """Events with ``after < seq <= up_to``, oldest first, at most ``limit``; only those
        about ``task_id`` / ``chain_id`` / of the given ``types`` when given, and not those
        published by worker ``not_from``. Each is a private copy."""

    async def latest_event_seq(self) -> int:
        """The highest ``seq`` in the log (0 when empty): one cheap read."""

    def wakeups(self) -> Wakeups:
        """The store's wake-up channel (one per store object, shared by its users)."""

    async def prune_events(self, before_ms: int) -> int:
        """Delete events older than ``before_ms`` (never the newest one); returns how many."""


@runtime_checkable
class EventsAhead(Protocol):
    """A store that can place events in its log ahead of every later write, without waiting.

    Optional: the event log uses it, where a store has it, for the events it buffers (a claim,
    a task start): they are appended on their own, ahead of the write that would otherwise
    carry them, so that no write waits for another to learn whether it logged them.
    """

    def append_events_ahead(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Append ``events`` (setting each ``seq``) before the events of every write asked for
        after this call returns; the call does not wait. The future is done once they are
        stored, or fails with the store's error."""


@runtime_checkable
class ChainStore(Protocol):
    """Chain progress documents, with compare-and-set ownership."""

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
        """Create or replace a chain's progress document (JSON-serialisable) and its state.
        The first upsert of an id stamps its creation time, which orders :meth:`list_chains`;
        later ones replace the document and state and keep that place. The document's
        ``owner`` key, when present, is the id of the worker driving the chain (see
        :meth:`claim_chain`).

        With ``expected_owner``, the save is conditional, checked and written atomically
        (across processes): only if the chain is stored and its owner is ``expected_owner``
        is it replaced; otherwise (the chain was taken over by another worker, or is
        unknown) nothing changes and ``events`` are not logged. Returns whether the document
        was written (always True without ``expected_owner``)."""

    async def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str, now_ms: int
    ) -> bool:
        """Compare-and-set the chain's owner, the ``owner`` key of its document (missing or
        null: no owner): only if it is ``expected_owner`` (None: missing or null) is it set
        to ``new_owner``, the rest of the document and the state left as they are. Returns
        whether it was; False for an unknown chain. Of several workers taking over one
        orphaned chain, exactly one succeeds."""

    async def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        """The document last upserted for the chain, as it reads back from JSON (a private
        copy), or None."""

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Chain documents in creation order (oldest first); with ``state``, only the chains
        last upserted with that state."""


@runtime_checkable
class MetricsStore(Protocol):
    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        """Aggregates computed where the data lives (SQL for database stores), by the rules
        of :mod:`claude_pool.store.metrics`: the tasks in scope are those created in
        ``since_ms <= created_at_ms < until_ms`` (each bound only when set), with any of the
        filter's tags, whose result's ``model`` is ``model`` when set."""


# ── webhooks ─────────────────────────────────────────────────────────


class DeliveryState(StrEnum):
    """Where one webhook delivery is: waiting (for its first try or a retry), made, or given
    up after the last attempt."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Webhook(BaseModel):
    """Where to POST events: ``url``, which event types (``"*"``: every one), and the secret
    the body is signed with (never shown by the API). ``source`` says whether it came from
    the configuration file (replaced at each start) or from the API."""

    id: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["*"])
    secret: str | None = Field(default=None, repr=False)
    source: Literal["config", "api"] = "api"
    created_at_ms: int = 0

    def wants(self, event_type: str) -> bool:
        return "*" in self.events or event_type in self.events


class Delivery(BaseModel):
    """One event to POST to one webhook, and how that has gone so far."""

    id: int
    webhook_id: str
    seq: int
    """The event's sequence number in the log."""
    event_type: str
    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt_ms: int = 0
    """When it is due (pending), or when it was last claimed until (under way)."""
    last_status: int | None = None
    """The HTTP status of the latest attempt (None: no answer)."""
    last_error: str | None = None
    created_at_ms: int = 0
    delivered_at_ms: int | None = None
    payload: str = Field(default="", exclude=True)
    """The event's JSON as logged (what the body is made from)."""


@runtime_checkable
class OutboxStore(Protocol):
    """Webhooks and the durable outbox of their deliveries.

    The one rule a store keeps: whenever it logs events (``append_events`` and every write
    taking ``events=``), it adds, in the same atomic write, one pending delivery, due at
    once, for each stored webhook that :meth:`Webhook.wants` the event's type. So a
    delivery exists exactly when its event does, even if the process dies a moment later.
    Retries and their timing are the engine's (:mod:`claude_pool.webhooks`)."""

    async def put_webhook(self, webhook: Webhook) -> None:
        """Add a webhook, or replace the one with its id (its deliveries stay)."""

    async def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a webhook and its pending deliveries; False if there was none."""

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook, oldest first."""

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int = 20) -> list[Delivery]:
        """Take pending deliveries due by ``now_ms`` (oldest event first, at most ``limit``)
        atomically: each one's ``next_attempt_ms`` becomes ``now_ms + lease_ms``, so no other
        claimant takes it until then, and a claimant that dies leaves it due again. The
        returned copies carry ``payload``."""

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
        """Record an attempt (``attempts`` + 1, ``last_status``, ``last_error``): delivered,
        or pending again due at ``retry_at_ms``, or (no ``retry_at_ms``) failed."""

    async def next_delivery_due_ms(self) -> int | None:
        """When the earliest pending delivery is due (None: none is pending)."""

    async def list_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        """Deliveries, newest first, by webhook and state when given (without payload)."""

    async def prune_deliveries(self, before_ms: int) -> int:
        """Delete delivered and failed deliveries created before ``before_ms`` (never pending
        ones); returns how many."""


@runtime_checkable
class Store(
    TaskQueueStore,
    MemberStore,
    SlotStore,
    LedgerStore,
    NoteStore,
    EventLogStore,
    ChainStore,
    MetricsStore,
    OutboxStore,
    Protocol,
):
    """Durable state of a pool: every role. Every method is atomic on its own."""

    async def open(self) -> None:
        """Create or migrate the schema; idempotent."""

    async def close(self) -> None: ...

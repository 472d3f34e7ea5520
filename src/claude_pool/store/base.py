"""The storage seam: a small async protocol every store implements.

Queue *rules* live in the engine; a store only stores, but it does the few things that must be
atomic where the data is: claiming the next task (priority, then FIFO, honouring the task's
target), compare-and-set state transitions, and counter increments. No method overwrites a whole
record from a snapshot: updates name the fields they change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from claude_pool.types import (
    MetricsFilter,
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
class Message:
    id: int
    from_slot: str
    to_slot: str
    content: str
    created_at_ms: int


@dataclass(frozen=True)
class EventRecord:
    id: int
    kind: str
    task_id: str | None
    slot_id: str | None
    data: Mapping[str, Any]
    created_at_ms: int


class _Unset:
    pass


UNSET: Any = _Unset()
"""Marker for "leave this field alone" in partial updates."""

RecoveryPolicy = Literal["requeue", "fail"]


@runtime_checkable
class Store(Protocol):
    """Durable state of a pool. Every method is atomic on its own."""

    async def open(self) -> None:
        """Create or migrate the schema; idempotent."""

    async def close(self) -> None: ...

    # ── tasks ────────────────────────────────────────────────────────

    async def insert_task(self, task: StoredTask) -> StoredTask:
        """Insert a new task; returns it with ``seq`` assigned. Duplicate ids are an error."""

    async def get_task(self, task_id: TaskId) -> StoredTask | None: ...

    async def list_tasks(
        self, filter: TaskFilter | None = None, limit: int = 100, offset: int = 0
    ) -> list[TaskRecord]:
        """Tasks matching ``filter`` in submission order (oldest first). A tag filter matches
        tasks with any of its tags; an empty tag list is no filter."""

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
        None when there is nothing for this slot."""

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
    ) -> TaskRecord | None:
        """Compare-and-set: move the task to ``to_state`` only if it is in one of
        ``from_states``; set the given fields; stamp ``started_at_ms`` (running) or
        ``completed_at_ms`` (any other non-pending state), clear ``claimed_by`` unless running.
        Moving back to pending (a re-queue) clears both stamps. Returns the updated record, or
        None if the task does not exist or was not in an allowed state."""

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
    ) -> bool:
        """Record a finished run in one atomic write: add ``spend`` to the pool's total and to
        the slot's cost (with ``tasks_completed``), set the slot's ``slot_fields``, and
        compare-and-set the task to ``to_state`` with ``result`` (as ``transition_task``).
        Returns whether the task moved. The spend and slot changes apply even when it had
        left ``from_states``: money spent is spent."""

    async def pending_tasks_older_than(self, created_before_ms: int) -> list[StoredTask]:
        """Pending tasks submitted before the given time (for assignment timeouts)."""

    async def recover_tasks(
        self, dead_workers: Collection[str], policy: RecoveryPolicy, now_ms: int
    ) -> list[TaskId]:
        """Tasks left running by the given workers are re-queued (pending, slot cleared) or
        failed with a clear reason. Returns their ids."""

    # ── workers (pool processes sharing the store) ───────────────────

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None: ...

    async def remove_worker(self, worker_id: str) -> None: ...

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        """Workers whose last heartbeat is at or after ``alive_since_ms``."""

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        """Worker ids that hold running tasks but have not heartbeated since the given time
        (including ids with no heartbeat row at all)."""

    # ── slots ────────────────────────────────────────────────────────

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

    # ── spend ────────────────────────────────────────────────────────

    async def add_spend(self, microdollars: int) -> int:
        """Atomically add to the pool's total spend; returns the new total."""

    async def get_spend(self) -> int: ...

    # ── shared context ───────────────────────────────────────────────

    async def context_set(self, key: str, value: str) -> None: ...

    async def context_get(self, key: str) -> str | None: ...

    async def context_delete(self, key: str) -> bool: ...

    async def context_list(self) -> dict[str, str]: ...

    # ── messages ─────────────────────────────────────────────────────

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int
    ) -> Message: ...

    async def read_messages(
        self, slot_id: str, *, drain: bool, up_to_id: int | None = None
    ) -> list[Message]:
        """Unread messages for the slot, oldest first; ``drain`` marks them read atomically.
        With ``up_to_id``, only messages up to that id are read (and marked): the ones that
        were delivered, not those that arrived since."""

    # ── events ───────────────────────────────────────────────────────

    async def append_event(
        self,
        kind: str,
        task_id: str | None,
        slot_id: str | None,
        data: Mapping[str, Any],
        now_ms: int,
    ) -> int: ...

    async def list_events(
        self, *, task_id: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[EventRecord]: ...

    # ── chains ───────────────────────────────────────────────────────

    async def upsert_chain(
        self,
        chain_id: str,
        data: Mapping[str, Any],
        state: str,
        now_ms: int,
        *,
        expected_owner: str | None = None,
    ) -> bool:
        """Create or replace a chain's progress document (JSON-serialisable) and its state.
        The first upsert of an id stamps its creation time, which orders :meth:`list_chains`;
        later ones replace the document and state and keep that place. The document's
        ``owner`` key, when present, is the id of the worker driving the chain (see
        :meth:`claim_chain`).

        With ``expected_owner``, the save is conditional, checked and written atomically
        (across processes): only if the chain is stored and its owner is ``expected_owner``
        is it replaced; otherwise (the chain was taken over by another worker, or is
        unknown) nothing changes. Returns whether the document was written (always True
        without ``expected_owner``)."""

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

    # ── metrics ──────────────────────────────────────────────────────

    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        """Aggregates computed where the data lives (SQL for database stores).

        Tasks in scope: ``since_ms <= created_at_ms < until_ms`` (each bound only when set; a
        task without ``created_at_ms`` is out of scope when a bound is set), with any of the
        filter's tags (empty list: no filter), whose result's ``model`` equals ``model`` when
        set. Over the tasks in scope:

        - ``total_tasks``: all of them (every state, pending_review included); the five state
          counts: tasks in that state.
        - ``total_spend_microdollars``: sum of ``result.cost_microdollars`` over every task with
          a result, whatever its state.
        - "completed" figures use tasks in state completed that have a result:
          ``avg_cost`` = sum // count, ``max_cost``; ``avg_elapsed`` = sum // count,
          ``min/max_elapsed``, ``median_elapsed`` = the middle value, or for an even count
          the floor of the mean of the two middle values; ``avg_turns`` = sum / count (float).
          All are 0 when there is none.
        - ``tasks_by_model`` and ``model_breakdown``: tasks (any state) whose result names a
          model; per model ``task_count``, ``total_cost``, ``avg_cost`` = total // count,
          ``avg_elapsed_ms`` = sum // count, ``total_turns``. ``model_breakdown`` is ordered by
          total cost, highest first, then model name.
        - ``session_start_ms`` as given; ``session_duration_ms`` = max(0, now - start).
        """

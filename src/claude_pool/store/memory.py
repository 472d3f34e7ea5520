"""A complete store kept in process memory, for tests and throwaway pools.

It is safe for any number of tasks on one event loop: no method awaits in the middle of an
update, so every method is atomic. Records go in and come out as private copies, so a caller
changing an object it holds never changes the store (the same as a database store).
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import json
from collections import Counter, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from claude_pool.errors import StoreError
from claude_pool.events import Event, parse_event
from claude_pool.store._common import (
    archived,
    recovery_failure,
    requeue_fields,
    stored_slot,
    validate_slot_fields,
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
from claude_pool.store.metrics import groups_of, metrics_from_groups, normalise_tags
from claude_pool.types import (
    MetricsFilter,
    RateLimitState,
    SessionMetrics,
    SlotId,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskState,
)

MAX_EVENTS = 100_000
"""Events the memory store keeps; older ones are forgotten (a long-lived in-memory pool
would otherwise grow without bound)."""


def copy_record(record: TaskRecord) -> TaskRecord:
    """A private copy of a task record. Its mutable parts (tags, result, overrides) are copied;
    everything else is immutable, so this is as good as a deep copy, at a fraction of its cost
    (the memory store copies every record that goes in or out)."""
    update: dict[str, Any] = {"tags": list(record.tags)}
    if record.result is not None:
        update["result"] = record.result.model_copy()
    if record.config is not None:
        update["config"] = record.config.model_copy(deep=True)
    if record.attempts:
        update["attempts"] = [attempt.model_copy() for attempt in record.attempts]
    if record.depends_on:
        update["depends_on"] = list(record.depends_on)
    return record.model_copy(update=update)


def _copy_task(task: StoredTask) -> StoredTask:
    return replace(task, record=copy_record(task.record))


class MemoryStore:
    """The :class:`~claude_pool.store.base.Store` protocol over dictionaries."""

    def __init__(self) -> None:
        self._tasks: dict[TaskId, StoredTask] = {}
        # Pending tasks in claim order: (-priority, seq, id).
        self._queue: list[tuple[int, int, TaskId]] = []
        # Who names a task in depends_on, oldest first: finding a finished task's dependents
        # must not walk every stored task (that made a batch quadratic in its size).
        self._dependents: dict[TaskId, list[TaskId]] = {}
        self._next_seq = 1
        self._workers: dict[str, int] = {}
        self._rate_limits: dict[str, RateLimitState] = {}
        self._slots: dict[SlotId, tuple[SlotRecord, str]] = {}
        self._spend = 0
        self._reservations: dict[TaskId, tuple[str, int]] = {}
        self._context: dict[str, str] = {}
        self._messages: list[Message] = []
        self._delivered: set[int] = set()
        self._next_message_id = 1
        self._events: deque[tuple[int, str, Event]] = deque(maxlen=MAX_EVENTS)
        self._last_seq = 0
        self._wakeups = _MemoryWakeups(self)
        # Chain id -> (state, JSON text of the document); dicts keep creation order.
        self._chains: dict[str, tuple[str, str]] = {}
        self._webhooks: dict[str, Webhook] = {}
        self._deliveries: dict[int, Delivery] = {}
        self._next_delivery_id = 1
        self._closed = False

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the memory store is closed; open() it again before using it")

    # ── tasks ────────────────────────────────────────────────────────

    def _enqueue(self, task: StoredTask) -> None:
        bisect.insort(self._queue, (-task.priority, task.seq, task.record.id))

    def _dequeue(self, task: StoredTask) -> None:
        key = (-task.priority, task.seq, task.record.id)
        index = bisect.bisect_left(self._queue, key)
        if index < len(self._queue) and self._queue[index] == key:
            del self._queue[index]

    async def insert_task(self, task: StoredTask, *, events: Sequence[Event] = ()) -> StoredTask:
        self._check_open()
        if task.record.id in self._tasks:
            raise StoreError(
                f"a task with id {task.record.id!r} already exists; give each task a new id "
                "(claude_pool.types.new_task_id)"
            )
        stored = _copy_task(task)
        stored.seq = self._next_seq
        self._next_seq += 1
        self._tasks[stored.record.id] = stored
        for dependency_id in stored.record.depends_on:
            self._dependents.setdefault(dependency_id, []).append(stored.record.id)
        if stored.record.state is TaskState.PENDING:
            self._enqueue(stored)
        self._log(events)
        return _copy_task(stored)

    async def get_task(self, task_id: TaskId) -> StoredTask | None:
        self._check_open()
        stored = self._tasks.get(task_id)
        return None if stored is None else _copy_task(stored)

    async def list_tasks(
        self,
        filter: TaskFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        self._check_open()
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        tags = normalise_tags(filter.tags) if filter else None
        out: list[TaskRecord] = []
        skipped = 0
        tasks = self._tasks.values()
        for stored in reversed(tasks) if newest_first else tasks:
            if len(out) >= limit:
                break
            record = stored.record
            if filter is not None:
                if filter.state is not None and record.state is not filter.state:
                    continue
                if filter.slot_id is not None and record.slot_id != filter.slot_id:
                    continue
                if tags is not None and not any(tag in record.tags for tag in tags):
                    continue
            if skipped < offset:
                skipped += 1
                continue
            out.append(copy_record(record))
        return out

    async def count_tasks(self) -> dict[TaskState, int]:
        self._check_open()
        return dict(Counter(stored.record.state for stored in self._tasks.values()))

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
        self._check_open()
        for index, (_, _, task_id) in enumerate(self._queue):
            stored = self._tasks[task_id]
            if not stored.target.matches(slot_id, role, name):
                continue
            if targeted_only and stored.target.describe() is None:
                continue
            if stored.record.depends_on and self._blocked(stored.record):
                continue
            del self._queue[index]
            record = stored.record
            record.state = TaskState.RUNNING
            record.slot_id = slot_id
            record.started_at_ms = now_ms
            stored.claimed_by = worker_id
            entry = self._slots.get(slot_id)
            if entry is not None:
                slot, owner = entry
                busy = {"state": SlotState.BUSY, "current_task": task_id}
                self._slots[slot_id] = (slot.model_copy(update=busy), owner)
            return _copy_task(stored)
        return None

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
        self._check_open()
        fields = {
            "result": result,
            "slot_id": slot_id,
            "prompt": prompt,
            "rejection_count": rejection_count,
            "plan_approved": plan_approved,
            "target_slot": target_slot,
        }
        stored = self._tasks.get(task_id)
        if (
            attempt_reason is not UNSET
            and stored is not None
            and stored.record.state in from_states
        ):
            stored.record.attempts = archived(stored.record, attempt_reason, now_ms)
        record = self._transition(
            task_id,
            from_states,
            to_state,
            now_ms,
            {k: v for k, v in fields.items() if v is not UNSET},
        )
        if record is not None:
            self._log(events)
        return record

    def _transition(
        self,
        task_id: TaskId,
        from_states: Collection[TaskState],
        to_state: TaskState,
        now_ms: int,
        fields: Mapping[str, Any],
    ) -> TaskRecord | None:
        stored = self._tasks.get(task_id)
        if stored is None or stored.record.state not in from_states:
            return None
        record = stored.record
        if record.state is TaskState.PENDING:
            self._dequeue(stored)
        record.state = to_state
        if "result" in fields:
            result = fields["result"]
            record.result = None if result is None else result.model_copy(deep=True)
        if "slot_id" in fields:
            record.slot_id = fields["slot_id"]
        if "prompt" in fields:
            record.prompt = fields["prompt"]
        if "rejection_count" in fields:
            record.rejection_count = fields["rejection_count"]
        if "original_prompt" in fields:
            record.original_prompt = fields["original_prompt"]
        if "target_slot" in fields:
            stored.target = replace(stored.target, slot_id=fields["target_slot"])
        if "plan_approved" in fields:
            record.plan_approved = bool(fields["plan_approved"])
        if to_state is TaskState.RUNNING:
            record.started_at_ms = now_ms
        else:
            stored.claimed_by = None
            if to_state is TaskState.PENDING:
                record.started_at_ms = None
                record.completed_at_ms = None
                self._enqueue(stored)
            else:
                record.completed_at_ms = now_ms
        return copy_record(record)

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
        self._check_open()
        values = validate_slot_fields(slot_id, dict(slot_fields))
        # No await below: the whole settlement happens at once.
        self._spend += spend
        self._reservations.pop(task_id, None)
        entry = self._slots.get(slot_id)
        if entry is not None:
            slot, owner = entry
            slot = slot.model_copy(update=copy.deepcopy(values))
            slot.cost_microdollars += spend
            slot.tasks_completed += tasks_completed
            self._slots[slot_id] = (slot, owner)
        fields: dict[str, Any] = {"result": result}
        stored = self._tasks.get(task_id)
        if requeue is not None and stored is not None and stored.record.state in from_states:
            fields = requeue_fields(stored.record, result, requeue, now_ms)
            stored.record.attempts = fields.pop("attempts")
        moved = self._transition(task_id, from_states, to_state, now_ms, fields)
        self._log([*always_events, *events] if moved is not None else always_events)
        return moved is not None

    def _blocked(self, record: TaskRecord) -> bool:
        for dependency_id in record.depends_on:
            dependency = self._tasks.get(dependency_id)
            state = dependency.record.state if dependency is not None else None
            if state is TaskState.COMPLETED:
                continue
            if record.on_dependency_failure == "run" and state in (
                TaskState.FAILED,
                TaskState.CANCELLED,
            ):
                continue
            return True
        return False

    async def dependent_tasks(self, task_id: TaskId) -> list[StoredTask]:
        self._check_open()
        dependents = (self._tasks[i] for i in self._dependents.get(task_id, ()))
        return [
            _copy_task(stored)
            for stored in dependents
            if stored.record.state is TaskState.PENDING and task_id in stored.record.depends_on
        ]

    async def pending_tasks(self, created_before_ms: int | None = None) -> list[StoredTask]:
        self._check_open()
        return [
            _copy_task(stored)
            for stored in self._tasks.values()
            if stored.record.state is TaskState.PENDING
            and (
                created_before_ms is None
                or (
                    stored.record.created_at_ms is not None
                    and stored.record.created_at_ms < created_before_ms
                )
            )
        ]

    async def recover_tasks(
        self,
        dead_workers: Collection[str],
        policy: RecoveryPolicy,
        now_ms: int,
        *,
        events: RecoveryEvents | None = None,
    ) -> list[TaskId]:
        self._check_open()
        dead = set(dead_workers)
        recovered: list[TaskId] = []
        for stored in self._tasks.values():
            record = stored.record
            if record.state is not TaskState.RUNNING or stored.claimed_by not in dead:
                continue
            worker_id = stored.claimed_by
            stored.claimed_by = None
            self._reservations.pop(record.id, None)
            if policy == "requeue":
                reason = f"its pool process {worker_id} died while it ran"
                record.attempts = archived(record, reason, now_ms)
                record.state = TaskState.PENDING
                record.slot_id = None
                record.started_at_ms = None
                self._enqueue(stored)
            else:
                record.state = TaskState.FAILED
                record.result = recovery_failure(worker_id)
                record.completed_at_ms = now_ms
            recovered.append(record.id)
            if events is not None:
                self._log(events(record.id, worker_id, copy_record(record)))
        return recovered

    # ── workers ──────────────────────────────────────────────────────

    async def heartbeat_worker(self, worker_id: str, now_ms: int) -> None:
        self._check_open()
        self._workers[worker_id] = now_ms

    async def remove_worker(self, worker_id: str) -> None:
        self._check_open()
        self._workers.pop(worker_id, None)
        self._rate_limits.pop(worker_id, None)

    async def set_rate_limit(self, worker_id: str, state: RateLimitState | None) -> None:
        self._check_open()
        if worker_id not in self._workers:
            return
        if state is None:
            self._rate_limits.pop(worker_id, None)
        else:
            self._rate_limits[worker_id] = state.model_copy(deep=True)

    async def rate_limits(self) -> dict[str, RateLimitState]:
        self._check_open()
        return {w: s.model_copy(deep=True) for w, s in sorted(self._rate_limits.items())}

    async def live_workers(self, alive_since_ms: int) -> list[str]:
        self._check_open()
        return sorted(w for w, seen in self._workers.items() if seen >= alive_since_ms)

    async def stale_task_owners(self, alive_since_ms: int) -> list[str]:
        self._check_open()
        owners = {
            stored.claimed_by
            for stored in self._tasks.values()
            if stored.record.state is TaskState.RUNNING and stored.claimed_by is not None
        }
        never = alive_since_ms - 1
        return sorted(o for o in owners if self._workers.get(o, never) < alive_since_ms)

    # ── slots ────────────────────────────────────────────────────────

    async def upsert_slot(self, slot: SlotRecord, worker_id: str) -> None:
        self._check_open()
        self._slots[slot.id] = (stored_slot(slot), worker_id)

    async def get_slot(self, slot_id: SlotId) -> SlotRecord | None:
        self._check_open()
        entry = self._slots.get(slot_id)
        return None if entry is None else entry[0].model_copy(deep=True)

    async def list_slots(self, worker_id: str | None = None) -> list[SlotRecord]:
        self._check_open()
        return [
            slot.model_copy(deep=True)
            for slot, owner in self._slots.values()
            if worker_id is None or owner == worker_id
        ]

    async def update_slot(self, slot_id: SlotId, **fields: Any) -> SlotRecord | None:
        self._check_open()
        values = validate_slot_fields(slot_id, fields)
        entry = self._slots.get(slot_id)
        if entry is None:
            return None
        slot, owner = entry
        updated = slot.model_copy(update=copy.deepcopy(values))
        self._slots[slot_id] = (updated, owner)
        return updated.model_copy(deep=True)

    async def add_slot_cost(
        self, slot_id: SlotId, cost_microdollars: int, tasks_completed: int
    ) -> None:
        self._check_open()
        entry = self._slots.get(slot_id)
        if entry is None:
            return
        slot, _ = entry
        slot.cost_microdollars += cost_microdollars
        slot.tasks_completed += tasks_completed

    async def delete_slot(self, slot_id: SlotId) -> None:
        self._check_open()
        self._slots.pop(slot_id, None)

    # ── spend ────────────────────────────────────────────────────────

    async def add_spend(self, microdollars: int, *, events: Sequence[Event] = ()) -> int:
        self._check_open()
        self._spend += microdollars
        self._log(events)
        return self._spend

    async def get_spend(self) -> int:
        self._check_open()
        return self._spend

    async def budget_state(self) -> tuple[int, int]:
        self._check_open()
        return self._spend, sum(amount for _, amount in self._reservations.values())

    async def reserve_budget(
        self, task_id: TaskId, worker_id: str, microdollars: int, limit: int, now_ms: int
    ) -> bool:
        self._check_open()
        others = sum(a for t, (_, a) in self._reservations.items() if t != task_id)
        if self._spend + others + microdollars > limit:
            return False
        self._reservations[task_id] = (worker_id, microdollars)
        return True

    async def release_budget(self, task_id: TaskId) -> None:
        self._check_open()
        self._reservations.pop(task_id, None)

    # ── shared context ───────────────────────────────────────────────

    async def context_set(self, key: str, value: str, *, events: Sequence[Event] = ()) -> None:
        self._check_open()
        self._context[key] = value
        self._log(events)

    async def context_get(self, key: str) -> str | None:
        self._check_open()
        return self._context.get(key)

    async def context_delete(self, key: str, *, events: Sequence[Event] = ()) -> bool:
        self._check_open()
        if self._context.pop(key, None) is None:
            return False
        self._log(events)
        return True

    async def context_list(self) -> dict[str, str]:
        self._check_open()
        return dict(sorted(self._context.items()))

    # ── messages ─────────────────────────────────────────────────────

    async def send_message(
        self, from_slot: str, to_slot: str, content: str, now_ms: int,
        *, events: Sequence[Event] = (),
    ) -> Message:  # fmt: skip
        self._check_open()
        message = Message(self._next_message_id, from_slot, to_slot, content, now_ms)
        self._next_message_id += 1
        self._messages.append(message)
        self._log(events)
        return message

    async def read_messages(
        self, slot_id: str, *, drain: bool, up_to_id: int | None = None
    ) -> list[Message]:
        self._check_open()
        unread = [
            m
            for m in self._messages
            if m.to_slot == slot_id
            and m.id not in self._delivered
            and (up_to_id is None or m.id <= up_to_id)
        ]
        if drain:
            self._delivered.update(m.id for m in unread)
        return unread

    # ── events ───────────────────────────────────────────────────────

    def _log(self, events: Sequence[Event]) -> None:
        """Append events (no await: part of the caller's atomic change)."""
        for event in events:
            self._last_seq += 1
            event.seq = self._last_seq
            # Kept as JSON, so that what is read back is exactly what a database keeps.
            self._events.append((self._last_seq, event.model_dump_json(exclude={"seq"}), event))
            self._enqueue_deliveries(event)
        if events:
            self._wakeups.notify(self._last_seq)

    def _enqueue_deliveries(self, event: Event) -> None:
        payload: str | None = None
        for hook in self._webhooks.values():
            if hook.wants(event.type):
                payload = payload or event.model_dump_json()
                delivery = Delivery(
                    id=self._next_delivery_id, webhook_id=hook.id, seq=event.seq,
                    event_type=event.type, next_attempt_ms=event.at_ms,
                    created_at_ms=event.at_ms, payload=payload,
                )  # fmt: skip
                self._deliveries[delivery.id] = delivery
                self._next_delivery_id += 1

    async def append_events(self, events: Sequence[Event]) -> None:
        self._check_open()
        self._log(events)

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
        self._check_open()
        out: list[Event] = []
        start = 0
        if self._events:
            # Sequence numbers are consecutive here: index from the first one kept.
            start = max(0, after + 1 - self._events[0][0])
        for index in range(start, len(self._events)):
            if len(out) >= limit:
                break
            seq, text, original = self._events[index]
            if up_to is not None and seq > up_to:
                break
            if (
                (task_id is not None and original.task_id != task_id)
                or (chain_id is not None and original.chain_id != chain_id)
                or (types is not None and original.type not in types)
                or (not_from is not None and original.worker_id == not_from)
            ):
                continue
            event = parse_event(text)
            event.seq = seq
            out.append(event)
        return out

    async def latest_event_seq(self) -> int:
        self._check_open()
        return self._last_seq

    def wakeups(self) -> _MemoryWakeups:
        return self._wakeups

    async def prune_events(self, before_ms: int) -> int:
        self._check_open()
        pruned = 0
        while len(self._events) > 1 and self._events[0][2].at_ms < before_ms:
            self._events.popleft()
            pruned += 1
        return pruned

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
        self._check_open()
        if expected_owner is not None:
            entry = self._chains.get(chain_id)
            if entry is None or json.loads(entry[1]).get("owner") != expected_owner:
                return False
        # Kept as JSON text, so that what is stored is exactly what a database store keeps.
        self._chains[chain_id] = (state, json.dumps(dict(data)))
        self._log(events)
        return True

    async def claim_chain(
        self, chain_id: str, expected_owner: str | None, new_owner: str, now_ms: int
    ) -> bool:
        self._check_open()
        entry = self._chains.get(chain_id)
        if entry is None:
            return False
        state, text = entry
        data = json.loads(text)
        if data.get("owner") != expected_owner:
            return False
        data["owner"] = new_owner
        self._chains[chain_id] = (state, json.dumps(data))
        return True

    async def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        self._check_open()
        entry = self._chains.get(chain_id)
        return None if entry is None else dict(json.loads(entry[1]))

    async def list_chains(
        self, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        self._check_open()
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        matching = [text for s, text in self._chains.values() if state is None or s == state]
        return [dict(json.loads(text)) for text in matching[offset : offset + limit]]

    # ── metrics ──────────────────────────────────────────────────────

    async def session_metrics(
        self, filter: MetricsFilter | None, session_start_ms: int, now_ms: int
    ) -> SessionMetrics:
        self._check_open()
        groups, middle = groups_of((stored.record for stored in self._tasks.values()), filter)
        return metrics_from_groups(groups, middle, session_start_ms, now_ms)

    # ── webhooks ─────────────────────────────────────────────────────

    async def put_webhook(self, webhook: Webhook) -> None:
        self._check_open()
        self._webhooks[webhook.id] = webhook.model_copy(deep=True)

    async def delete_webhook(self, webhook_id: str) -> bool:
        self._check_open()
        if self._webhooks.pop(webhook_id, None) is None:
            return False
        for delivery in list(self._deliveries.values()):
            if delivery.webhook_id == webhook_id and delivery.state is DeliveryState.PENDING:
                del self._deliveries[delivery.id]
        return True

    async def list_webhooks(self) -> list[Webhook]:
        self._check_open()
        return [hook.model_copy(deep=True) for hook in self._webhooks.values()]

    async def claim_deliveries(self, now_ms: int, lease_ms: int, limit: int = 20) -> list[Delivery]:
        self._check_open()
        due = sorted(
            (d for d in self._deliveries.values()
             if d.state is DeliveryState.PENDING and d.next_attempt_ms <= now_ms),
            key=lambda d: (d.seq, d.id),
        )[:limit]  # fmt: skip
        for delivery in due:
            delivery.next_attempt_ms = now_ms + lease_ms
        return [d.model_copy() for d in due]

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
        self._check_open()
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or delivery.state is not DeliveryState.PENDING:
            return
        delivery.attempts += 1
        delivery.last_status = status
        delivery.last_error = error
        if delivered:
            delivery.state = DeliveryState.DELIVERED
            delivery.delivered_at_ms = now_ms
        elif retry_at_ms is not None:
            delivery.next_attempt_ms = retry_at_ms
        else:
            delivery.state = DeliveryState.FAILED

    async def next_delivery_due_ms(self) -> int | None:
        self._check_open()
        return min(
            (d.next_attempt_ms for d in self._deliveries.values()
             if d.state is DeliveryState.PENDING),
            default=None,
        )  # fmt: skip

    async def list_deliveries(
        self,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        self._check_open()
        chosen = [
            d for d in reversed(self._deliveries.values())
            if (webhook_id is None or d.webhook_id == webhook_id)
            and (state is None or d.state is state)
        ]  # fmt: skip
        return [d.model_copy(update={"payload": ""}) for d in chosen[offset : offset + limit]]

    async def prune_deliveries(self, before_ms: int) -> int:
        self._check_open()
        old = [
            d.id for d in self._deliveries.values()
            if d.state is not DeliveryState.PENDING and d.created_at_ms < before_ms
        ]  # fmt: skip
        for delivery_id in old:
            del self._deliveries[delivery_id]
        return len(old)


class _MemoryWakeups:
    """Wakes waiters at once when the memory store logs an event (every user of one memory
    store is in this process)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []

    def notify(self, latest: int) -> None:
        keep = []
        for after, future in self._waiters:
            if future.done():
                continue
            if latest > after:
                future.set_result(latest)
            else:
                keep.append((after, future))
        self._waiters = keep

    async def wait(self, after_seq: int, timeout: float) -> int:
        latest = self._store._last_seq
        if latest > after_seq:
            return latest
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (after_seq, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return self._store._last_seq
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

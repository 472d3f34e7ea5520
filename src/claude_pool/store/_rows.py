"""Rows to models and back: how the database stores (SQLite and PostgreSQL) lay out a task, a
slot, a message and an event in their tables. Both lay them out alike.

A row read here has the columns of the matching column list in each store's
``sql/queries.sql`` (``task_columns``, ``slot_columns``, ``message_columns``), in that order;
the values built here are the parameters of the statement named in each function's docstring.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from claude_pool.events import Event
from claude_pool.store.base import Message, StoredTask, TaskTarget
from claude_pool.types import (
    SlotConfig,
    SlotRecord,
    SlotState,
    TaskAttempt,
    TaskOverrides,
    TaskRecord,
    TaskResult,
)


def record_from_row(row: Sequence[Any]) -> TaskRecord:
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
            "attempts": [] if row[24] is None else json.loads(row[24]),
            "depends_on": [] if row[25] is None else json.loads(row[25]),
            "on_dependency_failure": row[26],
            "plan_first": bool(row[27]),
            "plan_approved": bool(row[28]),
        }
    )


def task_from_row(row: Sequence[Any]) -> StoredTask:
    return StoredTask(
        record=record_from_row(row),
        priority=row[3],
        target=TaskTarget(slot_id=row[5], role=row[6], name=row[7]),
        timeout_secs=row[15],
        assignment_timeout_secs=row[16],
        fresh_session=bool(row[17]),
        claimed_by=row[8],
        seq=row[0],
        cwd=row[23],
    )


def result_values(result: TaskResult | None) -> tuple[Any, ...]:
    """The parameters of ``result_assignments``: the full result and the figures queries use."""
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


def attempts_values(attempts: Sequence[TaskAttempt]) -> tuple[Any, ...]:
    """The parameters of ``attempts_assignments``."""
    if not attempts:
        return (None, 0)
    text = json.dumps([a.model_dump(mode="json") for a in attempts])
    return (text, sum(a.cost_microdollars for a in attempts))


def task_values(task: StoredTask) -> tuple[Any, ...]:
    """The parameters of ``insert_task`` (``insert_numbered_task`` takes the seq first)."""
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
        *result_values(record.result),
        task.cwd,
        *attempts_values(record.attempts),
        json.dumps(record.depends_on) if record.depends_on else None,
        record.on_dependency_failure,
        int(record.plan_first),
        int(record.plan_approved),
    )


def slot_from_row(row: Sequence[Any]) -> SlotRecord:
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
        session_host=row[10],
    )


def slot_values(slot: SlotRecord, worker_id: str) -> tuple[Any, ...]:
    """The parameters of ``upsert_slot``."""
    return (
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
        slot.session_host,
    )


def slot_column_value(name: str, value: Any) -> tuple[str, Any]:
    """The column a slot field is stored in, and the value it is stored as."""
    if name == "config":
        return "config_json", value.model_dump_json()
    if name == "state":
        return "state", value.value
    return name, value


def message_from_row(row: Sequence[Any]) -> Message:
    return Message(
        id=row[0], from_slot=row[1], to_slot=row[2], content=row[3], created_at_ms=row[4]
    )


def event_values(event: Event) -> tuple[Any, ...]:
    """The parameters of ``insert_event``: the columns events are found by, and the event."""
    return (
        event.type,
        event.task_id,
        event.slot_id,
        event.chain_id,
        event.worker_id,
        event.at_ms,
        event.model_dump_json(exclude={"seq"}),
    )

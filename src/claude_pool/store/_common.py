"""Rules every store applies the same way: which slot fields are stored, how partial updates
are validated, what a task failed by recovery says."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from claude_pool.store.base import Requeue
from claude_pool.types import (
    SlotConfig,
    SlotId,
    SlotRecord,
    TaskAttempt,
    TaskRecord,
    TaskResult,
    TaskState,
)

SLOT_UPDATABLE_FIELDS = frozenset(SlotRecord.model_fields) - {"id", "mcp_config_path"}
"""SlotRecord fields ``update_slot`` may set. ``mcp_config_path`` is runtime-only (the seed
never serialises it), so no store keeps it."""


def validate_slot_fields(slot_id: SlotId, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check the names of a partial slot update and validate its values with the model."""
    unknown = set(fields) - SLOT_UPDATABLE_FIELDS
    if unknown:
        raise ValueError(
            f"update_slot cannot set {', '.join(sorted(unknown))}: the stored fields are "
            f"{', '.join(sorted(SLOT_UPDATABLE_FIELDS))}"
        )
    # The config a partial update leaves out is not validated again: an empty one stands in.
    validated = SlotRecord.model_validate({"id": slot_id, "config": _EMPTY_CONFIG, **fields})
    return {name: getattr(validated, name) for name in fields}


_EMPTY_CONFIG = SlotConfig()


def stored_slot(slot: SlotRecord) -> SlotRecord:
    """The slot as a store keeps it: a private copy without runtime-only fields."""
    return slot.model_copy(deep=True, update={"mcp_config_path": None})


def recovery_failure(worker_id: str) -> TaskResult:
    return TaskResult.failure(
        f"the pool process {worker_id!r} that was running this task stopped (no heartbeat) "
        "before it finished, so the task was marked failed on recovery; submit it again to "
        "re-run it"
    )


ATTEMPT_OUTPUT_CHARS = 500
"""How much of an earlier attempt's answer a task keeps."""


def archived(record: TaskRecord, reason: str, now_ms: int) -> list[TaskAttempt]:
    """The task's attempts with its current run added, as it is queued again for ``reason``."""
    result = record.result
    output = result.output if result is not None else ""
    attempt = TaskAttempt(
        attempt=len(record.attempts) + 1,
        reason=reason,
        state=record.state,
        cost_microdollars=result.cost_microdollars if result is not None else 0,
        turns_used=result.turns_used if result is not None else 0,
        elapsed_ms=result.elapsed_ms if result is not None else 0,
        model=result.model if result is not None else None,
        output=output if len(output) <= ATTEMPT_OUTPUT_CHARS else output[:ATTEMPT_OUTPUT_CHARS],
        ended_at_ms=record.completed_at_ms or now_ms,
        verification=result.verifications[-1]
        if result is not None and result.verifications and not result.verifications[-1].passed
        else None,
        commits=result.commits if result is not None else [],
    )
    return [*record.attempts, attempt]


def requeue_fields(
    record: TaskRecord, result: TaskResult, requeue: Requeue, now_ms: int
) -> dict[str, Any]:
    """The task fields a settlement with ``requeue`` writes (``record``: the task as stored,
    still running)."""
    run = record.model_copy(
        update={"result": result, "state": TaskState.FAILED, "completed_at_ms": now_ms}
    )
    fields: dict[str, Any] = {
        "result": None,
        "slot_id": None,
        "prompt": requeue.prompt,
        "original_prompt": record.original_prompt or record.prompt,
        "rejection_count": requeue.rejection_count,
        "attempts": archived(run, requeue.reason, now_ms),
    }
    if requeue.slot_id is not None:
        fields["target_slot"] = requeue.slot_id
    return fields

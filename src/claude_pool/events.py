"""The pool's domain events: everything that happens, as typed records.

The engine publishes one event for every change of the pool's state (tasks, slots, spend,
rate limits, chains, worktrees, shared notes, members). Every event is written to the store's
event log, which gives it ``seq``: a number that only grows, so a consumer can resume from
"everything after N" (server-sent events, webhooks after a restart, a CLI that reconnects).
Events are JSON documents with a ``type`` field; :func:`parse_event` reads one back.

Events are facts, not commands: faces and side effects subscribe to them (see
:mod:`claude_pool.bus`) instead of polling the store. :func:`describe` renders any event as one
line of text, the same in every face (MCP progress, the CLI, the demo).

Payloads never carry secrets: prompts and outputs appear only as short previews, shared
context changes only by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from claude_pool.redaction import redact
from claude_pool.types import (
    ReviewKind,
    TaskRecord,
    TaskResult,
    TaskState,
    microdollars_to_usd,
    now_ms,
)

PREVIEW_CHARS = 200
"""Longest prompt, output or text preview an event carries."""


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Event(BaseModel):
    """What every event has. ``seq`` is 0 until the event log has stored it."""

    model_config = ConfigDict(extra="forbid")

    type: str
    seq: int = 0
    """Position in the store's event log (1, 2, 3...; 0 before it is stored)."""
    at_ms: int = Field(default_factory=now_ms)
    worker_id: str | None = None
    """The pool process that published it."""
    task_id: str | None = None
    slot_id: str | None = None
    chain_id: str | None = None


# ── tasks ────────────────────────────────────────────────────────────


class TaskTargetInfo(BaseModel):
    """Where a task may run (all None: any slot)."""

    model_config = ConfigDict(extra="forbid")

    slot_id: str | None = None
    role: str | None = None
    name: str | None = None


class TaskQueued(Event):
    type: Literal["task_queued"] = "task_queued"
    task_id: str
    prompt: str = ""
    """A preview of the prompt."""
    priority: int = 0
    tags: list[str] = Field(default_factory=list)
    target: TaskTargetInfo = Field(default_factory=TaskTargetInfo)
    review: bool = False
    plan_first: bool = False
    assignment_timeout_secs: float | None = None
    """How long it may wait for a slot, when the submitter set it (else the pool default)."""
    depends_on: list[str] = Field(default_factory=list)
    """Tasks it waits for (it may run once they have completed)."""


class TaskClaimed(Event):
    type: Literal["task_claimed"] = "task_claimed"
    task_id: str
    slot_id: str


class TaskStarted(Event):
    """The task's Claude Code process got its prompt."""

    type: Literal["task_started"] = "task_started"
    task_id: str
    slot_id: str
    model: str | None = None
    resumed_session: bool = False
    """It continues the slot's conversation (else a fresh one)."""


class TaskProgress(Event):
    """Base of the events a running task streams (text, tools, turns, API retries)."""

    task_id: str
    slot_id: str


class TaskText(TaskProgress):
    type: Literal["task_text"] = "task_text"
    text: str


class TaskToolUse(TaskProgress):
    type: Literal["task_tool_use"] = "task_tool_use"
    tool: str
    detail: str = ""
    """The tool's main argument (command, path, pattern...), shortened."""


class TaskTurn(TaskProgress):
    type: Literal["task_turn"] = "task_turn"
    turn: int


class TaskApiRetry(TaskProgress):
    type: Literal["task_api_retry"] = "task_api_retry"
    status: int | None = None
    attempt: int | None = None
    max_retries: int | None = None
    delay_ms: int = 0
    error: str = ""


class TaskPermissionDenied(TaskProgress):
    type: Literal["task_permission_denied"] = "task_permission_denied"
    tool: str
    reason: str = ""


class TaskFinished(Event):
    """The task ran and ended ``completed`` or ``failed`` (or never found a slot)."""

    type: Literal["task_finished"] = "task_finished"
    task_id: str
    state: TaskState
    success: bool
    cost_microdollars: int = 0
    turns_used: int = 0
    elapsed_ms: int = 0
    model: str | None = None
    output: str = ""
    """A preview of the output (for a failure: why)."""


class TaskCancelled(Event):
    type: Literal["task_cancelled"] = "task_cancelled"
    task_id: str
    reason: str = "cancelled"
    cost_microdollars: int = 0
    """What it spent before it stopped."""
    was_running: bool = False


class TaskHeldForReview(Event):
    type: Literal["task_held_for_review"] = "task_held_for_review"
    task_id: str
    kind: ReviewKind = "result"
    """``plan``: a plan awaits approval before the task carries it out."""
    cost_microdollars: int = 0
    turns_used: int = 0
    elapsed_ms: int = 0
    model: str | None = None
    output: str = ""


class TaskApproved(Event):
    type: Literal["task_approved"] = "task_approved"
    task_id: str
    kind: ReviewKind = "result"
    """``plan``: its plan was approved, and it is queued again to carry it out."""
    target: TaskTargetInfo | None = None
    """With ``plan``: where it may run (the slot that made the plan)."""


class TaskRejected(Event):
    type: Literal["task_rejected"] = "task_rejected"
    task_id: str
    feedback: str = ""
    requeued: bool
    """Queued again for another attempt; False: it failed, out of attempts."""
    attempt: int
    max_attempts: int
    target: TaskTargetInfo = Field(default_factory=TaskTargetInfo)


class TaskVerified(Event):
    """The task's verification command ran after its run succeeded."""

    type: Literal["task_verified"] = "task_verified"
    task_id: str
    command: str
    passed: bool
    exit_code: int | None = None
    """None when it was killed (timed out, cancelled) or could not start."""
    output: str = ""
    """A preview of the end of its output."""
    elapsed_ms: int = 0
    attempt: int = 1
    max_attempts: int = 1


class TaskRequeued(Event):
    """A task is back in the queue (its worker died, or it was found running nowhere)."""

    type: Literal["task_requeued"] = "task_requeued"
    task_id: str
    reason: str
    target: TaskTargetInfo | None = None
    """Where it may run; None when the publisher did not know (every idle slot looks)."""


# ── slots ────────────────────────────────────────────────────────────


class SlotAdded(Event):
    type: Literal["slot_added"] = "slot_added"
    slot_id: str
    name: str | None = None
    role: str | None = None
    adopted: bool = False
    """It took over a slot record (and its conversation) from an earlier pool."""


class SlotRemoved(Event):
    type: Literal["slot_removed"] = "slot_removed"
    slot_id: str


class SlotStateChanged(Event):
    """A slot's state changed other than by running tasks: it errored, stopped or came back.
    (A slot is busy from its ``task_claimed`` event and idle again from the event that ends
    that task's run; those routine changes have no event of their own.)"""

    type: Literal["slot_state_changed"] = "slot_state_changed"
    slot_id: str
    state: str
    previous: str | None = None
    current_task: str | None = None


class SlotRestarted(Event):
    type: Literal["slot_restarted"] = "slot_restarted"
    slot_id: str
    restart_count: int
    reason: str


# ── money and the API ────────────────────────────────────────────────


class SpendRecorded(Event):
    type: Literal["spend_recorded"] = "spend_recorded"
    microdollars: int


class RateLimitHeld(Event):
    type: Literal["rate_limit_held"] = "rate_limit_held"
    until_ms: int
    status: int | None = None


class RateLimitCleared(Event):
    type: Literal["rate_limit_cleared"] = "rate_limit_cleared"


# ── chains ───────────────────────────────────────────────────────────


class ChainStarted(Event):
    type: Literal["chain_started"] = "chain_started"
    chain_id: str
    name: str | None = None
    steps: list[str] = Field(default_factory=list)


class ChainStepStarted(Event):
    type: Literal["chain_step_started"] = "chain_step_started"
    chain_id: str
    step: str
    index: int
    attempt: int = 1
    recovery: bool = False


class ChainStepFinished(Event):
    type: Literal["chain_step_finished"] = "chain_step_finished"
    chain_id: str
    step: str
    index: int
    state: str
    cost_microdollars: int = 0
    error: str | None = None


class ChainFinished(Event):
    type: Literal["chain_finished"] = "chain_finished"
    chain_id: str
    state: str
    cost_microdollars: int = 0
    error: str | None = None


# ── worktrees ────────────────────────────────────────────────────────


class WorktreeKept(Event):
    """Work in a worktree (or clone) was kept: on its branch, or in the directory itself."""

    type: Literal["worktree_kept"] = "worktree_kept"
    path: str
    branch: str | None = None
    """The branch holding work found on no other branch."""
    reason: str = ""
    directory_removed: bool = False


class WorktreeRemoved(Event):
    type: Literal["worktree_removed"] = "worktree_removed"
    path: str
    branch: str | None = None


# ── shared notes and members ─────────────────────────────────────────


class ContextChanged(Event):
    """A shared context note was set or deleted (its value is not carried)."""

    type: Literal["context_changed"] = "context_changed"
    key: str
    deleted: bool = False


class MessageSent(Event):
    type: Literal["message_sent"] = "message_sent"
    from_slot: str
    to_slot: str


class WorkerJoined(Event):
    type: Literal["worker_joined"] = "worker_joined"
    slots: int = 0


class WorkerLeft(Event):
    type: Literal["worker_left"] = "worker_left"


class WorkerLost(Event):
    """A pool process was found dead; its running tasks were re-queued or failed."""

    type: Literal["worker_lost"] = "worker_lost"
    lost_worker: str
    tasks: list[str] = Field(default_factory=list)
    policy: str = "requeue"


AnyEvent = Annotated[
    TaskQueued
    | TaskClaimed
    | TaskStarted
    | TaskText
    | TaskToolUse
    | TaskTurn
    | TaskApiRetry
    | TaskPermissionDenied
    | TaskFinished
    | TaskCancelled
    | TaskHeldForReview
    | TaskApproved
    | TaskRejected
    | TaskRequeued
    | TaskVerified
    | SlotAdded
    | SlotRemoved
    | SlotStateChanged
    | SlotRestarted
    | SpendRecorded
    | RateLimitHeld
    | RateLimitCleared
    | ChainStarted
    | ChainStepStarted
    | ChainStepFinished
    | ChainFinished
    | WorktreeKept
    | WorktreeRemoved
    | ContextChanged
    | MessageSent
    | WorkerJoined
    | WorkerLeft
    | WorkerLost,
    Field(discriminator="type"),
]
"""Any domain event, told apart by its ``type``."""

_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)

EVENT_CLASSES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        TaskQueued, TaskClaimed, TaskStarted, TaskText, TaskToolUse, TaskTurn, TaskApiRetry,
        TaskPermissionDenied, TaskFinished, TaskCancelled, TaskHeldForReview, TaskApproved,
        TaskRejected, TaskRequeued, TaskVerified, SlotAdded, SlotRemoved, SlotStateChanged,
        SlotRestarted,
        SpendRecorded, RateLimitHeld, RateLimitCleared, ChainStarted, ChainStepStarted,
        ChainStepFinished, ChainFinished, WorktreeKept, WorktreeRemoved, ContextChanged,
        MessageSent, WorkerJoined, WorkerLeft, WorkerLost,
    )
}  # fmt: skip
"""Every event class by its ``type``."""

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)
"""Every event ``type``, in the order above."""


class UnknownEvent(Event):
    """An event of a type this version does not know (written by a newer claude-pool)."""

    model_config = ConfigDict(extra="allow")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def public_payload(event: Event) -> dict[str, Any]:
    """The event's JSON as it leaves the process (server-sent events, webhooks), every text
    passed through the secret redaction of :mod:`claude_pool.redaction`: previews of prompts
    and outputs may quote a key someone pasted."""
    data: dict[str, Any] = _redacted(event.model_dump(mode="json"))
    return data


def parse_event(data: str | bytes | Mapping[str, Any]) -> Event:
    """The event in a JSON document (text or parsed). A type this version does not know
    comes back as :class:`UnknownEvent` rather than failing, so a newer writer on a shared
    store does not break an older reader."""
    if isinstance(data, str | bytes):
        try:
            return _ADAPTER.validate_json(data)
        except ValueError:
            return UnknownEvent.model_validate_json(data)
    try:
        return _ADAPTER.validate_python(dict(data))
    except ValueError:
        return UnknownEvent.model_validate(dict(data))


def finished(
    task_id: str, state: TaskState, result: TaskResult, slot_id: str | None = None
) -> TaskFinished:
    """The ``task_finished`` event of a run that ended ``state`` with ``result``."""
    return TaskFinished(
        task_id=task_id,
        slot_id=slot_id,
        state=state,
        success=result.success and state is TaskState.COMPLETED,
        cost_microdollars=result.cost_microdollars,
        turns_used=result.turns_used,
        elapsed_ms=result.elapsed_ms,
        model=result.model,
        output=preview(result.output),
    )


def outcome_of(record: TaskRecord) -> Event | None:
    """The event that ended a task's run or review, rebuilt from its record (for a face that
    joins after it was published); None while the task is pending or running."""
    result = record.result or TaskResult.failure(f"ended {record.state}")
    at = record.completed_at_ms or now_ms()
    match record.state:
        case TaskState.CANCELLED:
            return TaskCancelled(
                task_id=record.id, slot_id=record.slot_id, at_ms=at,
                reason=preview(result.output) or "cancelled",
                cost_microdollars=result.cost_microdollars,
            )  # fmt: skip
        case TaskState.PENDING_REVIEW:
            return TaskHeldForReview(
                task_id=record.id, slot_id=record.slot_id, at_ms=at,
                kind=record.review_kind or "result",
                cost_microdollars=result.cost_microdollars, turns_used=result.turns_used,
                elapsed_ms=result.elapsed_ms, model=result.model, output=preview(result.output),
            )  # fmt: skip
        case TaskState.COMPLETED | TaskState.FAILED:
            event = finished(record.id, record.state, result, record.slot_id)
            event.at_ms = at
            return event
    return None


TASK_STATE_TYPES = frozenset(
    {
        "task_finished", "task_cancelled", "task_held_for_review", "task_approved",
        "task_rejected", "task_requeued",
    }
)  # fmt: skip
"""The event types that tell a task's new state (see :func:`task_state_after`)."""


def task_state_after(event: Event) -> TaskState | None:
    """The state a task is in after ``event``, for the events that end a run or a review
    (None for every other event)."""
    match event:
        case TaskFinished(state=state):
            return state
        case TaskCancelled():
            return TaskState.CANCELLED
        case TaskHeldForReview():
            return TaskState.PENDING_REVIEW
        case TaskApproved(kind="plan"):
            return TaskState.PENDING
        case TaskApproved():
            return TaskState.COMPLETED
        case TaskRejected(requeued=requeued):
            return TaskState.PENDING if requeued else TaskState.FAILED
        case TaskRequeued():
            return TaskState.PENDING
    return None


def ends_wait(event: Event) -> bool:
    """Whether ``event`` is one a waiter for its task wakes on: the task ended or awaits
    review (``Pool.wait`` returns then)."""
    state = task_state_after(event)
    return state is not None and (state.is_terminal or state is TaskState.PENDING_REVIEW)


# ── one line of text per event ───────────────────────────────────────


def _usd(microdollars: int) -> str:
    return f"${microdollars_to_usd(microdollars):.4f}"


def _secs(ms: int) -> str:
    return f"{ms / 1000:.1f}s"


def _target(target: TaskTargetInfo) -> str:
    parts = [
        f"{k}={v}"
        for k, v in (("slot", target.slot_id), ("role", target.role), ("name", target.name))
        if v is not None
    ]
    return ", ".join(parts)


def describe(event: Event, *, subject: bool = True) -> str:
    """``event`` as one line of text: what every face shows for it. ``subject=False`` leaves
    out the task id it starts with, for a face that shows the task beside it."""
    line = _describe(event)
    task = event.task_id
    if not subject and task and line.startswith(task):
        return line[len(task) :].removeprefix(":").strip()
    return line


def _describe(event: Event) -> str:
    task = event.task_id or ""
    match event:
        case TaskQueued():
            extras = [f"priority {event.priority}"] if event.priority else []
            if target := _target(event.target):
                extras.append(target)
            if event.review:
                extras.append("held for review")
            if event.depends_on:
                extras.append(f"after {', '.join(event.depends_on)}")
            suffix = f" ({', '.join(extras)})" if extras else ""
            return f"{task} queued{suffix}: {preview(event.prompt, 80)}"
        case TaskClaimed():
            return f"{task} claimed by slot {event.slot_id}"
        case TaskStarted():
            how = "continuing its conversation" if event.resumed_session else "fresh session"
            model = f", {event.model}" if event.model else ""
            return f"{task} started on slot {event.slot_id} ({how}{model})"
        case TaskText():
            return f"{task}: {preview(event.text, 160)}"
        case TaskToolUse():
            detail = f" {event.detail}" if event.detail else ""
            return f"{task}: using {event.tool}{detail}"
        case TaskTurn():
            return f"{task}: turn {event.turn} done"
        case TaskApiRetry():
            return (
                f"{task}: API answered HTTP {event.status or '?'}, retrying in "
                f"{_secs(event.delay_ms)} (attempt {event.attempt or '?'} of "
                f"{event.max_retries or '?'})"
            )
        case TaskPermissionDenied():
            return f"{task}: permission denied for {event.tool}"
        case TaskFinished():
            where = f" on slot {event.slot_id}" if event.slot_id else ""
            figures = f"{_usd(event.cost_microdollars)}, {event.turns_used} turns, " + _secs(
                event.elapsed_ms
            )
            if event.success:
                return f"{task} {event.state}{where} ({figures})"
            return f"{task} {event.state}{where} ({figures}): {preview(event.output, 120)}"
        case TaskCancelled():
            spent = f", spent {_usd(event.cost_microdollars)}" if event.cost_microdollars else ""
            return f"{task} cancelled ({preview(event.reason, 120)}{spent})"
        case TaskHeldForReview(kind="plan"):
            return f"{task} awaits approval of its plan: {preview(event.output, 100)}"
        case TaskHeldForReview():
            return (
                f"{task} awaits review ({_usd(event.cost_microdollars)}, {event.turns_used} "
                f"turns): {preview(event.output, 100)}"
            )
        case TaskApproved(kind="plan"):
            return f"{task} plan approved: carrying it out"
        case TaskApproved():
            return f"{task} approved"
        case TaskRejected():
            if event.requeued:
                return f"{task} rejected; attempt {event.attempt} of {event.max_attempts} queued"
            return f"{task} rejected {event.attempt} time(s), the limit: failed"
        case TaskRequeued():
            return f"{task} queued again: {event.reason}"
        case TaskVerified():
            how = (
                "passed"
                if event.passed
                else (
                    "timed out" if event.exit_code is None else f"failed (exit {event.exit_code})"
                )
            )
            return (
                f"{task} verification `{preview(event.command, 60)}` {how} "
                f"(attempt {event.attempt} of {event.max_attempts}, {_secs(event.elapsed_ms)})"
            )
        case SlotAdded():
            label = event.name or event.role
            kind = "adopted" if event.adopted else "added"
            return f"slot {event.slot_id} {kind}" + (f" ({label})" if label else "")
        case SlotRemoved():
            return f"slot {event.slot_id} removed"
        case SlotStateChanged():
            doing = f" with {event.current_task}" if event.current_task else ""
            return f"slot {event.slot_id} {event.state}{doing}"
        case SlotRestarted():
            return f"slot {event.slot_id} restarted ({event.reason}; restart {event.restart_count})"
        case SpendRecorded():
            return f"{task or 'pool'}: spent {_usd(event.microdollars)}"
        case RateLimitHeld():
            wait = max(0, event.until_ms - event.at_ms)
            return (
                f"rate limited (HTTP {event.status or '?'}): dispatch waits while the CLI "
                f"retries (next try in about {_secs(wait)})"
            )
        case RateLimitCleared():
            return "rate limit cleared: dispatch resumed"
        case ChainStarted():
            name = f" {event.name}" if event.name else ""
            return f"chain {event.chain_id}{name} started ({len(event.steps)} steps)"
        case ChainStepStarted():
            kind = "recovery of step" if event.recovery else "step"
            again = f", attempt {event.attempt}" if event.attempt > 1 else ""
            return f"chain {event.chain_id}: {kind} {event.step} started ({task}{again})"
        case ChainStepFinished():
            error = f": {preview(event.error, 100)}" if event.error else ""
            return (
                f"chain {event.chain_id}: step {event.step} {event.state} "
                f"({_usd(event.cost_microdollars)}){error}"
            )
        case ChainFinished():
            error = f": {preview(event.error, 100)}" if event.error else ""
            return f"chain {event.chain_id} {event.state} ({_usd(event.cost_microdollars)}){error}"
        case WorktreeKept():
            branch = f" on branch {event.branch}" if event.branch else ""
            return f"worktree {event.path} kept{branch}: {event.reason}"
        case WorktreeRemoved():
            return f"worktree {event.path} removed"
        case ContextChanged():
            return f"context {event.key!r} {'deleted' if event.deleted else 'set'}"
        case MessageSent():
            return f"message from {event.from_slot} to {event.to_slot}"
        case WorkerJoined():
            return f"pool process {event.worker_id} joined ({event.slots} slots)"
        case WorkerLeft():
            return f"pool process {event.worker_id} left"
        case WorkerLost():
            return (
                f"pool process {event.lost_worker} found dead; {len(event.tasks)} task(s) "
                f"{'re-queued' if event.policy == 'requeue' else 'failed'}"
            )
    return f"{event.type}" + (f" {task}" if task else "")


__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "PREVIEW_CHARS",
    "TASK_STATE_TYPES",
    "AnyEvent",
    "ChainFinished",
    "ChainStarted",
    "ChainStepFinished",
    "ChainStepStarted",
    "ContextChanged",
    "Event",
    "MessageSent",
    "RateLimitCleared",
    "RateLimitHeld",
    "SlotAdded",
    "SlotRemoved",
    "SlotRestarted",
    "SlotStateChanged",
    "SpendRecorded",
    "TaskApiRetry",
    "TaskApproved",
    "TaskCancelled",
    "TaskClaimed",
    "TaskFinished",
    "TaskHeldForReview",
    "TaskPermissionDenied",
    "TaskProgress",
    "TaskQueued",
    "TaskRejected",
    "TaskRequeued",
    "TaskStarted",
    "TaskTargetInfo",
    "TaskText",
    "TaskToolUse",
    "TaskTurn",
    "TaskVerified",
    "UnknownEvent",
    "WorkerJoined",
    "WorkerLeft",
    "WorkerLost",
    "WorktreeKept",
    "WorktreeRemoved",
    "describe",
    "ends_wait",
    "finished",
    "outcome_of",
    "parse_event",
    "preview",
    "public_payload",
    "task_state_after",
]

"""What the engine's MCP tools and resources give back: the result models.

The models are the tools' JSON schemas, so field descriptions are written for the model that
reads them. Domain types (``TaskResult``, ``SlotRecord``, ``PoolStatus``...) are reused as they
are, so the JSON a coordinator sees is the JSON the rest of claude-pool writes. Chains, skills
and workflows keep their results with their tools (:mod:`claude_pool.mcp.tools`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from claude_pool.queue import FanOutItem
from claude_pool.store import Message
from claude_pool.types import SlotRecord, TaskOverrides, TaskRecord, TaskResult, TaskState

PREVIEW_CHARS = 300


def _preview(text: str | None, limit: int = PREVIEW_CHARS) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TaskOutcome(BaseModel):
    """A task's state and, once it has finished, its result."""

    task_id: str
    state: TaskState
    finished: bool = Field(
        description="True once the task has ended or awaits review (its result is final)."
    )
    awaiting_review: bool = False
    review_kind: Literal["plan", "result"] | None = Field(
        None, description="What awaits review: the task's plan, or its result."
    )
    slot_id: str | None = None
    result: TaskResult | None = None
    tags: list[str] = Field(default_factory=list)
    rejection_count: int = 0
    max_rejections: int | None = None
    created_at_ms: int | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    depends_on: list[str] = Field(
        default_factory=list, description="Tasks that had to complete before this one ran."
    )
    note: str | None = Field(None, description="What to do next, when there is something.")

    @classmethod
    def of(cls, record: TaskRecord, note: str | None = None) -> TaskOutcome:
        awaiting = record.state is TaskState.PENDING_REVIEW
        finished = record.state.is_terminal or awaiting
        if note is None and awaiting and record.review_kind == "plan":
            note = (
                "a plan awaits approval: pool_approve_result has it carried out, "
                "pool_reject_result with feedback asks for a new plan"
            )
        elif note is None and awaiting:
            note = "approve with pool_approve_result or send back with pool_reject_result"
        elif note is None and not finished:
            note = "not finished yet; call pool_result with wait=true to wait for it"
        return cls(
            task_id=record.id,
            state=record.state,
            finished=finished,
            awaiting_review=awaiting,
            review_kind=record.review_kind,
            slot_id=record.slot_id,
            result=record.result if finished else None,
            tags=record.tags,
            rejection_count=record.rejection_count,
            max_rejections=record.max_rejections if record.review_required else None,
            created_at_ms=record.created_at_ms,
            started_at_ms=record.started_at_ms,
            completed_at_ms=record.completed_at_ms,
            depends_on=list(record.depends_on),
            note=note,
        )


class Submitted(BaseModel):
    task_id: str
    state: TaskState = TaskState.PENDING
    review_required: bool = False
    note: str = "queued; collect the result with pool_result (wait=true blocks until it ends)"


class FanOutResult(BaseModel):
    items: list[FanOutItem] = Field(description="One item per prompt, in input order.")
    succeeded: int
    failed: int
    total_cost_microdollars: int


class TaskSummary(BaseModel):
    task_id: str
    state: TaskState
    slot_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    prompt_preview: str
    success: bool | None = None
    cost_microdollars: int = 0
    output_preview: str | None = Field(
        None, description="Start of the output; pool_result has all of it."
    )
    created_at_ms: int | None = None
    completed_at_ms: int | None = None
    waiting_for: list[str] = Field(
        default_factory=list,
        description="Dependencies this pending task still waits for (not yet completed).",
    )

    @classmethod
    def of(cls, record: TaskRecord, waiting_for: list[str] | None = None) -> TaskSummary:
        result = record.result
        return cls(
            task_id=record.id,
            state=record.state,
            slot_id=record.slot_id,
            tags=record.tags,
            prompt_preview=_preview(record.prompt) or "",
            success=result.success if result else None,
            cost_microdollars=result.cost_microdollars if result else 0,
            output_preview=_preview(result.output) if result else None,
            created_at_ms=record.created_at_ms,
            completed_at_ms=record.completed_at_ms,
            waiting_for=waiting_for or [],
        )


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    limit: int
    offset: int
    more: bool = Field(description="True when there may be more tasks past this page.")


class RejectResult(BaseModel):
    task_id: str
    requeued: bool = Field(
        description="True: queued again with your feedback. False: rejected too often, failed."
    )
    attempt: int = Field(description="With requeued, the attempt now queued; else rejections.")
    max_attempts: int
    state: TaskState
    note: str


class ScaleResult(BaseModel):
    changed: list[str] = Field(description="Ids of the slots added or removed.")
    slot_count: int
    slots: list[SlotRecord]
    note: str | None = None


class SlotList(BaseModel):
    slots: list[SlotRecord]


class ClaimResult(BaseModel):
    claimed: bool
    task_id: str | None = None
    prompt: str | None = Field(None, description="The work to do yourself.")
    overrides: TaskOverrides | None = None
    tags: list[str] = Field(default_factory=list)
    review_required: bool = False
    note: str


class ContextEntry(BaseModel):
    key: str
    value: str | None
    found: bool = True


class ContextDeleted(BaseModel):
    key: str
    deleted: bool


class ContextListing(BaseModel):
    entries: dict[str, str]


class MessageView(BaseModel):
    id: int
    from_slot: str
    to_slot: str
    content: str
    created_at_ms: int

    @classmethod
    def of(cls, message: Message) -> MessageView:
        return cls(
            id=message.id,
            from_slot=message.from_slot,
            to_slot=message.to_slot,
            content=message.content,
            created_at_ms=message.created_at_ms,
        )


class MessageList(BaseModel):
    messages: list[MessageView]


class Budget(BaseModel):
    budget_microdollars: int | None = Field(description="None: no pool budget.")
    spend_microdollars: int
    remaining_microdollars: int | None
    exhausted: bool

"""What the MCP tools take and give back: argument types with their limits, and result models.

The models are the tools' JSON schemas, so field descriptions are written for the model that
reads them. Domain types (``TaskResult``, ``SlotRecord``, ``PoolStatus``...) are reused as they
are, so the JSON a coordinator sees is the JSON the rest of claude-pool writes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from claude_pool.queue import FanOutItem
from claude_pool.store import Message
from claude_pool.types import (
    Effort,
    PermissionMode,
    SlotRecord,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
)

MAX_PROMPT_CHARS = 1_000_000
"""Longest prompt (or claimed output) a tool accepts, about 1 MB of text."""
MAX_NOTE_CHARS = 100_000
"""Longest context value, message or review feedback: these are copied into other prompts."""
MAX_NAME_CHARS = 256
"""Longest id, key, tag, name or role."""
MAX_LIST_ITEMS = 1_000
"""Most items in a list argument (prompts of a fan-out, tags, tool names)."""
PREVIEW_CHARS = 300
MAX_EPOCH_MS = 2**53 - 1
"""Latest timestamp (epoch ms) a tool accepts: the largest integer JSON carries exactly."""
MAX_OFFSET = 1_000_000_000
"""Most list entries a page may skip."""


def _not_a_bool(value: Any) -> Any:
    # Python (and so pydantic's lax mode) counts true as 1; a caller sending true for a count
    # or a time almost certainly meant something else. Strict mode would refuse it too, but
    # would also refuse "5": Claude Code has sent numeric arguments as strings, so stay lax.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


NOT_BOOL = BeforeValidator(_not_a_bool)
"""Put after the ``Field`` of every int or float argument: ``Annotated[int, Field(ge=..,
le=..), NOT_BOOL]`` (after it, so the bounds still apply to the number inside ``| None``)."""


def _limit(what: str, limit: int, advice: str) -> Any:
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(
                f"{what} is {len(value):,} characters, over the {limit:,}-character limit; {advice}"
            )
        return value

    return AfterValidator(check)


Prompt = Annotated[
    str,
    Field(
        min_length=1,
        description=(
            "What the slot should do, as you would say it to Claude Code. At most "
            f"{MAX_PROMPT_CHARS:,} characters: put large inputs in files and name them."
        ),
        json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
    ),
    _limit(
        "the prompt",
        MAX_PROMPT_CHARS,
        "write large inputs to a file the slot can read and refer to it in the prompt",
    ),
]
Note = Annotated[
    str,
    Field(json_schema_extra={"maxLength": MAX_NOTE_CHARS}),
    _limit("the text", MAX_NOTE_CHARS, "keep it short, or put the details in a file"),
]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
TaskIdArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="A task id as returned by pool_submit or pool_run (e.g. task-1f2e3d4c).",
    ),
]
SlotIdArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="A slot id (e.g. slot-1a2b3c4d); see pool_find_slots or pool://slots.",
    ),
]
Tags = Annotated[
    list[Name],
    Field(
        max_length=MAX_LIST_ITEMS,
        description="Labels for finding the task later (pool_list_tasks, metrics).",
    ),
]
TimeoutSecs = Annotated[
    float | None,
    Field(
        gt=0,
        le=86_400,
        description="Run-time limit for the task in seconds (default: the pool's task timeout).",
    ),
    NOT_BOOL,
]
ToolNames = Annotated[list[Name], Field(max_length=MAX_LIST_ITEMS)]


class TaskOverridesArg(BaseModel):
    """Per-task settings; anything left out comes from the slot, then from the pool."""

    model_config = ConfigDict(extra="forbid")

    model: Name | None = Field(None, description='Model for this task, e.g. "claude-sonnet-4-5".')
    permission_mode: PermissionMode | None = Field(
        None,
        description=(
            "What the slot may do without asking: plan (read-only, the default), acceptEdits "
            "(edit files), bypassPermissions (anything), dontAsk (refuse what is not allowed)."
        ),
    )
    max_turns: Annotated[
        int | None, Field(ge=1, le=10_000, description="Most agent turns."), NOT_BOOL
    ] = None
    system_prompt: Note | None = Field(
        None, description="Extra system prompt, appended to Claude Code's own."
    )
    allowed_tools: ToolNames | None = Field(
        None, description='Tools allowed without asking, e.g. ["Read", "Bash(git diff:*)"].'
    )
    disallowed_tools: ToolNames | None = Field(None, description="Tools this task may not use.")
    tools: ToolNames | None = Field(
        None, description='Built-in tools available at all, e.g. ["Read", "Grep"].'
    )
    mcp_servers: dict[Name, dict[str, Any]] | None = Field(
        None, description="Extra MCP servers for this task, by name, as in .mcp.json."
    )
    effort: Effort | None = Field(None, description="Reasoning effort.")
    fallback_model: Name | None = Field(
        None, description="Model to use when the main one is overloaded."
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="JSON schema the final answer must follow (structured output)."
    )
    max_budget_usd: Annotated[
        float | None,
        Field(gt=0, le=10_000, description="Spend cap for this task in USD."),
        NOT_BOOL,
    ] = None

    def to_overrides(self) -> TaskOverrides:
        return TaskOverrides.model_validate(self.model_dump(exclude_unset=True))


def overrides_of(arg: TaskOverridesArg | None) -> TaskOverrides | None:
    return arg.to_overrides() if arg is not None else None


# ── results ─────────────────────────────────────────────────────────


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
    slot_id: str | None = None
    result: TaskResult | None = None
    tags: list[str] = Field(default_factory=list)
    rejection_count: int = 0
    max_rejections: int | None = None
    created_at_ms: int | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    note: str | None = Field(None, description="What to do next, when there is something.")

    @classmethod
    def of(cls, record: TaskRecord, note: str | None = None) -> TaskOutcome:
        awaiting = record.state is TaskState.PENDING_REVIEW
        finished = record.state.is_terminal or awaiting
        if note is None and awaiting:
            note = "approve with pool_approve_result or send back with pool_reject_result"
        elif note is None and not finished:
            note = "not finished yet; call pool_result with wait=true to wait for it"
        return cls(
            task_id=record.id,
            state=record.state,
            finished=finished,
            awaiting_review=awaiting,
            slot_id=record.slot_id,
            result=record.result if finished else None,
            tags=record.tags,
            rejection_count=record.rejection_count,
            max_rejections=record.max_rejections if record.review_required else None,
            created_at_ms=record.created_at_ms,
            started_at_ms=record.started_at_ms,
            completed_at_ms=record.completed_at_ms,
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

    @classmethod
    def of(cls, record: TaskRecord) -> TaskSummary:
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

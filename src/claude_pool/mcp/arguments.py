"""What the MCP tools take: argument types with their limits, shared by the tool modules.

The types are the tools' JSON schemas, so their descriptions are written for the model that
reads them. A type only one area of tools uses lives with that area's tools.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from claude_pool.queue import PRIORITY_LIMIT
from claude_pool.types import Effort, PermissionMode, TaskOverrides

MAX_PROMPT_CHARS = 1_000_000
"""Longest prompt (or claimed output) a tool accepts, about 1 MB of text."""
MAX_NOTE_CHARS = 100_000
"""Longest context value, message or review feedback: these are copied into other prompts."""
MAX_NAME_CHARS = 256
"""Longest id, key, tag, name or role."""
MAX_LIST_ITEMS = 1_000
"""Most items in a list argument (prompts of a fan-out, tags, tool names)."""
MAX_EPOCH_MS = 2**53 - 1
"""Latest timestamp (epoch ms) a tool accepts: the largest integer JSON carries exactly."""
MAX_OFFSET = 1_000_000_000
"""Most list entries a page may skip."""
DEFAULT_WAIT_SECS = 300.0
"""How long a waiting result call (pool_result, pool_chain_result) waits unless told."""
MAX_WAIT_SECS = 3_600.0
"""Longest a tool waits in one call (a result, a drain's grace period)."""


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
    verify: Note | None = Field(
        None,
        description=(
            "Shell command run in the task's directory once it completes (e.g. the test "
            "command). Non-zero exit sends the task back to its slot with the command's "
            "output as feedback, up to max_rejections times."
        ),
    )

    def to_overrides(self) -> TaskOverrides:
        return TaskOverrides.model_validate(self.model_dump(exclude_unset=True))


def overrides_of(arg: TaskOverridesArg | None) -> TaskOverrides | None:
    return arg.to_overrides() if arg is not None else None


Overrides = Annotated[
    TaskOverridesArg | None,
    Field(description="Per-task settings (model, permission mode, tools, budget...)."),
]
SlotTarget = Annotated[
    Name | None, Field(description="Run only on this slot (a slot id from pool_find_slots).")
]
RoleTarget = Annotated[
    Name | None, Field(description="Run only on a slot with this role (see pool_configure_slot).")
]
NameTarget = Annotated[Name | None, Field(description="Run only on the slot with this name.")]
FreshSession = Annotated[
    bool,
    Field(
        description=(
            "Start a new conversation instead of continuing the slot's previous one. Use it for "
            "work unrelated to what the slot did before."
        )
    ),
]
DependsOn = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]] | None,
    Field(
        max_length=MAX_LIST_ITEMS,
        description=(
            "Task ids (already submitted) that must complete before this task may run. The "
            "prompt may use {{<task id>.output}} for a dependency's output. If a dependency "
            "fails or is cancelled, this task is cancelled too (see on_dependency_failure)."
        ),
    ),
]
Verify = Annotated[
    Note | None,
    Field(
        description=(
            "Shell command run in the task's directory once it completes, e.g. the project's "
            "test command. A non-zero exit sends the task back to the same slot with the "
            "command's output as feedback (up to 3 attempts); the result lists each run."
        )
    ),
]
OnDependencyFailure = Annotated[
    Literal["cancel", "run"],
    Field(
        description=(
            "When a dependency fails or is cancelled: 'cancel' this task (default) or 'run' "
            "it anyway."
        )
    ),
]
WaitSecs = Annotated[
    float | None,
    Field(
        gt=0,
        le=MAX_WAIT_SECS,
        description=f"Most seconds to wait (default {DEFAULT_WAIT_SECS:g}).",
    ),
    NOT_BOOL,
]
Priority = Annotated[
    int,
    Field(ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, description="Higher runs first; default 0."),
    NOT_BOOL,
]
Wait = Annotated[
    bool,
    Field(description="Wait for the result (default). False: return at once with the id."),
]

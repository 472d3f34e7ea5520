"""The domain model, kept field for field from the original seed (``types.rs``).

Every model round-trips the JSON the original Rust types write: snake_case fields, snake_case enum
values (the CLI's own spellings for ``PermissionMode`` and ``Effort``), ids as plain strings,
``null`` for unset optionals except where the seed skips them (``TaskResult``'s failure details,
``model`` and ``budget_exceeded``). Money is integer microdollars.
"""

from __future__ import annotations

import math
import secrets
import time
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Literal, NewType, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskId = NewType("TaskId", str)
SlotId = NewType("SlotId", str)


def now_ms() -> int:
    """Current time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def new_task_id() -> TaskId:
    """A random, collision-resistant task id (never derived from the clock)."""
    return TaskId(f"task-{secrets.token_hex(8)}")


def new_slot_id() -> SlotId:
    """A random slot id."""
    return SlotId(f"slot-{secrets.token_hex(4)}")


def usd_to_microdollars(usd: float) -> int:
    """Convert a USD amount to integer microdollars, rounding halves up (never below zero).

    Rounds the amount as written (``repr``), so 0.0000025 is 3 microdollars as with Rust's
    ``f64::round``, not 2 as Python's half-to-even ``round`` would make it.
    """
    if not math.isfinite(usd):
        raise ValueError(f"not a finite amount of USD: {usd!r}")
    micro = (Decimal(repr(float(usd))) * 1_000_000).to_integral_value(ROUND_HALF_UP)
    return max(0, int(micro))


def microdollars_to_usd(micro: int) -> float:
    return micro / 1_000_000


def unusable_text(value: str) -> str | None:
    """Why ``value`` cannot reach a process's arguments, its environment or a file (a NUL
    character, or an unpaired surrogate that no encoding can write), or None when it can."""
    if "\x00" in value:
        return (
            "contains a NUL character (\\x00), which no command line, environment or file can carry"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains {value[exc.start]!r} at position {exc.start}, an unpaired surrogate that "
            "is not valid text"
        )
    return None


class UnusableText(ValueError):
    """Text that cannot reach a process; ``field`` names where it was given."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}; remove it")


def check_text(value: str, field: str) -> str:
    """``value`` if it is usable text (see :func:`unusable_text`); otherwise
    :class:`UnusableText` (a ``ValueError``) naming ``field``."""
    problem = unusable_text(value)
    if problem is not None:
        raise UnusableText(field, problem)
    return value


def check_texts(value: Any, where: str) -> None:
    """:func:`check_text` on every string in ``value`` (nested dicts and lists too)."""
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, f"{where} key")
            check_texts(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_texts(item, f"{where}[{index}]")


def _is_none_value(value: object) -> bool:
    # Fields beyond the seed's are left out of its JSON while unset.
    return value is None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=False, populate_by_name=True)


class _Settings(_Model):
    """Configuration: a misspelled key is an error, never silently ignored, and every text in
    it must be able to reach the CLI's command line, environment and files."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _usable_texts(self) -> Self:
        for name, value in self.__dict__.items():
            if value is not None and not isinstance(value, bool | int | float | StrEnum):
                check_texts(value, name)
        return self


# ── Enums ────────────────────────────────────────────────────────────


class PermissionMode(StrEnum):
    """Claude Code permission modes, spelled as the CLI spells them."""

    DEFAULT = "default"
    ACCEPT_EDITS = "acceptEdits"
    BYPASS_PERMISSIONS = "bypassPermissions"
    DONT_ASK = "dontAsk"
    PLAN = "plan"
    AUTO = "auto"


class Effort(StrEnum):
    """Reasoning effort (maps to ``--effort``)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"
    MAX = "max"


class SlotMode(StrEnum):
    """Persistent slots stay alive across tasks, resuming sessions; ephemeral slots are
    created per task and destroyed after."""

    PERSISTENT = "persistent"
    EPHEMERAL = "ephemeral"


class SlotState(StrEnum):
    """What a slot is doing: idle, busy with a task, stopped, or errored (it kept crashing)."""

    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"
    ERRORED = "errored"


class TaskState(StrEnum):
    """Where a task is: queued (pending), running, held for review (pending_review), or ended
    (completed, failed, cancelled)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PENDING_REVIEW = "pending_review"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed and cancelled never change again (pending_review may)."""
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


# ── Configuration ────────────────────────────────────────────────────


class ScalingConfig(_Settings):
    """The bounds the number of slots stays within, scaled by hand or automatically."""

    min_slots: int = Field(default=1, ge=0)
    """Fewest slots: scaling down and auto-scaling stop here."""
    max_slots: int = Field(default=16, ge=1)
    """Most slots: scaling up and auto-scaling stop here."""


class PoolConfig(_Settings):
    """Configuration that applies to all slots by default (slots override via SlotConfig)."""

    model: str | None = None
    """Claude model to use (e.g. "claude-haiku-4-5-20251001"); none leaves the CLI's default."""
    permission_mode: PermissionMode | None = PermissionMode.PLAN
    """Default permission mode of tasks; plan is read-only. With ``unattended_mode`` and no mode
    set anywhere, dontAsk."""
    max_turns: int | None = Field(default=None, ge=1)
    """Default turn limit per task; none means no limit."""
    system_prompt: str | None = None
    """Appended to Claude Code's own system prompt for every task."""
    allowed_tools: list[str] = Field(default_factory=list)
    """Tools every task may use without asking; a slot's and a task's add to these."""
    mcp_servers: dict[str, Any] = Field(default_factory=dict)
    """MCP servers every slot gets, by name; a slot's and a task's merge over these."""
    effort: Effort | None = None
    """Default reasoning effort; none leaves the CLI's default."""
    fallback_model: str | None = None
    """Model the CLI switches to when the default one is overloaded."""
    budget_microdollars: int | None = Field(default=None, ge=0)
    """Hard cap on the pool's total spend; new work is refused once reached."""
    slot_mode: SlotMode = SlotMode.PERSISTENT
    """persistent: a slot keeps one CLI process and conversation from task to task; ephemeral:
    a fresh process and session for every task."""
    max_restarts: int = Field(default=3, ge=0)
    """Crashes in a row after which a slot is errored (and times the supervisor restores it)."""
    worktree_isolation: bool = False
    """Each slot works in its own git worktree, on branch ``claude-pool/<slot>``."""
    slot_assignment_timeout_secs: int = Field(default=300, ge=0)
    """Seconds a queued task waits for a slot that may run it before failing with
    NoSlotAvailable."""
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    unattended_mode: bool = False
    """When true, the default permission mode is ``dontAsk`` if none is set anywhere."""
    detect_permission_prompts: bool = True
    """Recognise the CLI's permission refusals, so a failed task names the tool that needed
    permission."""
    supervisor_enabled: bool = False
    """Run the supervisor: it restores errored slots, stops stuck tasks and reconciles the store
    with what really runs."""
    supervisor_interval_secs: int = Field(default=30, ge=1)
    """Seconds between the supervisor's checks."""
    strict_mcp_config: bool = True
    """Slots use only the MCP servers the pool gives them, never the project's ``.mcp.json``."""
    worktree_base_dir: str | None = None
    """Where slot and chain worktrees are made; none is ``<repository>/.pool-worktrees`` (kept out
    of ``git status`` through ``.git/info/exclude``)."""
    verify: str | None = Field(default=None, exclude_if=_is_none_value)
    """Default verification command of tasks (a shell command run in the task's working
    directory after it completes; non-zero exit sends it back with the output as feedback)."""
    verify_timeout_secs: int = Field(default=600, ge=1, exclude_if=lambda v: v == 600)
    """Longest a verification command may run; past it, it is killed and counts as failed.
    Not part of the task's own timeout, which bounds each Claude Code run."""

    @model_validator(mode="after")
    def _unattended_default_mode(self) -> Self:
        # The seed's default mode is plan, yet unattended mode must choose dontAsk when no mode
        # was given. Recording that choice here, not only when layering, keeps it stable across
        # JSON round trips (a dumped config reloads with the mode it actually ran with).
        if self.unattended_mode and "permission_mode" not in self.model_fields_set:
            self.permission_mode = PermissionMode.DONT_ASK
        return self


class SlotConfig(_Settings):
    """Per-slot overrides plus the slot's identity (name, role, description)."""

    model: str | None = None
    """This slot's model, over the pool's."""
    permission_mode: PermissionMode | None = None
    """This slot's permission mode, over the pool's."""
    max_turns: int | None = Field(default=None, ge=1)
    """This slot's turn limit per task, over the pool's."""
    system_prompt: str | None = None
    """This slot's system prompt, over the pool's (appended to Claude Code's own)."""
    allowed_tools: list[str] | None = None
    """Tools this slot may use, added to the pool's."""
    mcp_servers: dict[str, Any] | None = None
    """MCP servers this slot gets, merged by name over the pool's."""
    effort: Effort | None = None
    """This slot's reasoning effort, over the pool's."""
    fallback_model: str | None = None
    """This slot's fallback model, over the pool's."""
    role: str | None = None
    """A role tasks can target (``submit(..., role=...)``), e.g. "review"."""
    name: str | None = None
    """A name tasks can target (``submit(..., name=...)``)."""
    description: str | None = None
    """What this slot is for, in words, kept with its record."""
    slot_assignment_timeout_secs: int | None = Field(default=None, ge=0)
    """How long tasks this slot may run wait for a slot, over the pool's."""
    verify: str | None = Field(default=None, exclude_if=_is_none_value)
    """Verification command of the tasks this slot runs, over the pool's."""


class TaskOverrides(_Settings):
    """Per-task execution knobs, applied on top of the slot and pool config."""

    model: str | None = None
    permission_mode: PermissionMode | None = None
    max_turns: int | None = Field(default=None, ge=1)
    system_prompt: str | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    tools: list[str] | None = None
    mcp_servers: dict[str, Any] | None = None
    effort: Effort | None = None
    fallback_model: str | None = None
    json_schema: Any | None = None
    max_budget_usd: float | None = Field(default=None, gt=0)
    verify: str | None = Field(default=None, exclude_if=_is_none_value)
    """Verification command (see ``PoolConfig.verify``), over the slot's and the pool's."""


# ── Slots ────────────────────────────────────────────────────────────


class SlotRecord(_Model):
    """A slot as the store keeps it: state, configuration, current task, Claude Code session
    and totals."""

    id: SlotId
    state: SlotState = SlotState.IDLE
    config: SlotConfig = Field(default_factory=SlotConfig)
    current_task: TaskId | None = None
    session_id: str | None = None
    tasks_completed: int = 0
    cost_microdollars: int = 0
    restart_count: int = 0
    worktree_path: str | None = None
    session_cwd: str | None = Field(default=None, exclude=True)
    """Directory the slot's ``session_id`` was recorded in (a conversation resumes only
    there); kept by stores, not part of the seed's JSON."""
    session_host: str | None = Field(default=None, exclude=True)
    """Machine the slot's ``session_id`` was recorded on (a conversation resumes only there:
    Claude Code keeps it in that machine's files); kept by stores, not part of the seed's
    JSON. None: unknown (recorded before hosts were), taken as this machine."""
    mcp_config_path: str | None = Field(default=None, exclude=True)
    """Slot-owned ``--mcp-config`` file; runtime only, never serialised (serde(skip))."""


# ── Tasks ────────────────────────────────────────────────────────────


def _is_none(value: object) -> bool:
    return value is None


def _is_false(value: object) -> bool:
    return value is False


class VerificationRun(_Model):
    """One run of a task's verification command. Not in the seed."""

    command: str
    exit_code: int | None
    """None when it was killed (timed out or cancelled) or could not start."""
    passed: bool
    output: str = ""
    """The tail of what it printed (stdout and stderr together)."""
    elapsed_ms: int = 0
    at_ms: int = 0
    """When it ended."""
    timed_out: bool = Field(default=False, exclude_if=lambda v: v is False)


class CommitRange(_Model):
    """The commits one run of a task made on its slot's worktree branch: ``base..head``. Not
    in the seed."""

    branch: str
    base: str
    """The branch's commit when the run started."""
    head: str
    """The branch's commit when it ended: what the task committed, then what it left
    uncommitted, which the pool commits for it (``base`` itself when it changed nothing)."""


class TaskResult(_Model):
    """What a task produced: output, success, cost, turns and time, and on failure the command,
    exit code and stderr of the CLI."""

    # Field-level exclusion (rather than a model serializer) mirrors serde's
    # skip_serializing_if and keeps the serialization JSON schema that MCP tools publish.
    output: str
    success: bool
    cost_microdollars: int = 0
    turns_used: int = 0
    elapsed_ms: int = 0
    model: str | None = Field(default=None, exclude_if=_is_none)
    session_id: str | None = None
    failed_command: str | None = Field(default=None, exclude_if=_is_none)
    exit_code: int | None = Field(default=None, exclude_if=_is_none)
    stderr: str | None = Field(default=None, exclude_if=_is_none)
    budget_exceeded: bool = Field(default=False, exclude_if=_is_false)
    verifications: list[VerificationRun] = Field(default_factory=list, exclude_if=lambda v: not v)
    """Each run of the task's verification command, over every attempt, oldest first (not in
    the seed; absent when the task has none)."""
    commits: list[CommitRange] = Field(default_factory=list, exclude_if=lambda v: not v)
    """With worktree isolation, the commits of each of the task's runs on its slot's branch,
    oldest first: what :meth:`Pool.merge` merges for the task (not in the seed)."""

    @classmethod
    def success_result(cls, output: str, cost_microdollars: int, turns_used: int) -> Self:
        """A successful result (the seed's ``TaskResult::success``)."""
        return cls(
            output=output, success=True, cost_microdollars=cost_microdollars, turns_used=turns_used
        )

    @classmethod
    def failure(cls, output: str) -> Self:
        """A failed result with zero cost (the seed's ``TaskResult::failure``)."""
        return cls(output=output, success=False)

    def with_model(self, model: str) -> Self:
        return self.model_copy(update={"model": model})

    def with_elapsed_ms(self, elapsed_ms: int) -> Self:
        return self.model_copy(update={"elapsed_ms": elapsed_ms})

    def with_session_id(self, session_id: str) -> Self:
        return self.model_copy(update={"session_id": session_id})

    def with_failure_details(
        self, command: str | None, exit_code: int | None, stderr: str | None
    ) -> Self:
        return self.model_copy(
            update={"failed_command": command, "exit_code": exit_code, "stderr": stderr}
        )


class _SuccessConstructor:
    """``TaskResult.success(output, cost, turns)`` on the class is the seed's constructor, while
    ``result.success`` on an instance stays the bool field (instance attributes win over this
    non-data descriptor)."""

    def __get__(self, obj: object, owner: type[TaskResult]) -> Any:
        return owner.success_result


setattr(TaskResult, "success", _SuccessConstructor())  # noqa: B010 - keeps the field's type for mypy


class TaskAttempt(_Model):
    """An earlier run of a task that ran again (rejected, queued again, recovered): what it
    cost and how it ended. Not in the seed: kept so that no attempt's spend is lost."""

    attempt: int
    """1 for the first run."""
    reason: str
    """Why the task ran again after it."""
    state: TaskState
    """What the run ended as before it was queued again."""
    cost_microdollars: int = 0
    turns_used: int = 0
    elapsed_ms: int = 0
    model: str | None = None
    output: str = ""
    """A preview of what it answered."""
    ended_at_ms: int | None = None
    verification: VerificationRun | None = Field(default=None, exclude_if=_is_none)
    """The verification that sent it back, when one did."""
    commits: list[CommitRange] = Field(default_factory=list, exclude_if=lambda v: not v)
    """The task's commits up to this run (see ``TaskResult.commits``)."""


def _is_empty(value: object) -> bool:
    return not value


DependencyFailure = Literal["cancel", "run"]
"""What a task does when one of its dependencies fails or is cancelled: ``cancel`` it too
(with a reason naming that dependency), or ``run`` it anyway."""


ReviewKind = Literal["plan", "result"]
"""What a task held for review waits for: approval of its plan, or of its result."""


def _is_cancel(value: object) -> bool:
    return value == "cancel"


class TaskRecord(_Model):
    """A task as the store keeps it: prompt, state, slot, result, tags, overrides, review state
    and timestamps."""

    id: TaskId
    prompt: str
    state: TaskState = TaskState.PENDING
    slot_id: SlotId | None = None
    result: TaskResult | None = None
    tags: list[str] = Field(default_factory=list)
    config: TaskOverrides | None = None
    review_required: bool = False
    max_rejections: int = Field(default=3, ge=0)
    rejection_count: int = 0
    original_prompt: str | None = None
    created_at_ms: int | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    attempts: list[TaskAttempt] = Field(default_factory=list, exclude_if=_is_empty)
    """Earlier runs (not the current one), with their cost; absent from the JSON when there
    are none, as in the seed."""
    depends_on: list[TaskId] = Field(default_factory=list, exclude_if=_is_empty)
    """Tasks that must complete before this one may run (not in the seed; absent from the
    JSON when there are none)."""
    on_dependency_failure: DependencyFailure = Field(default="cancel", exclude_if=_is_cancel)
    """When a dependency fails or is cancelled: ``cancel`` this task, or ``run`` it anyway."""
    plan_first: bool = Field(default=False, exclude_if=_is_false)
    """Plan in plan mode first and hold the plan for approval, then carry it out (not in the
    seed)."""
    plan_approved: bool = Field(default=False, exclude_if=_is_false)
    """With ``plan_first``: the plan was approved, the task now carries it out."""

    @property
    def review_kind(self) -> ReviewKind | None:
        """What a task held for review waits for: its ``plan`` approved, or its ``result``."""
        if self.state is not TaskState.PENDING_REVIEW:
            return None
        return "plan" if self.plan_first and not self.plan_approved else "result"

    @property
    def planning(self) -> bool:
        """It runs (or will run) to make a plan, in plan mode."""
        return self.plan_first and not self.plan_approved

    @property
    def total_cost_microdollars(self) -> int:
        """What every run of the task cost: the earlier attempts and the current result."""
        current = self.result.cost_microdollars if self.result is not None else 0
        return current + sum(a.cost_microdollars for a in self.attempts)

    @classmethod
    def new_pending(cls, id: TaskId, prompt: str) -> Self:
        return cls(id=id, prompt=prompt, created_at_ms=now_ms())

    def with_tags(self, tags: list[str]) -> Self:
        return self.model_copy(update={"tags": list(tags)})

    def with_config(self, config: TaskOverrides | None) -> Self:
        return self.model_copy(update={"config": config})

    def with_review(self, max_rejections: int) -> Self:
        return self.model_copy(
            update={
                "review_required": True,
                "max_rejections": max_rejections,
                "original_prompt": self.prompt,
            }
        )

    def transition_to(self, state: TaskState) -> None:
        """Set the state, stamping ``started_at_ms`` (running) or ``completed_at_ms`` (ended)."""
        self.state = state
        now = now_ms()
        if state is TaskState.RUNNING:
            self.started_at_ms = now
        elif state is not TaskState.PENDING:
            self.completed_at_ms = now


class TaskFilter(_Model):
    """Which tasks ``list_tasks`` returns: by state, slot and tags."""

    state: TaskState | None = None
    slot_id: SlotId | None = None
    tags: list[str] | None = None
    """Any of these tags matches."""


# ── Metrics ──────────────────────────────────────────────────────────


class ModelMetrics(_Model):
    """One model's part of the session metrics: tasks, cost, time and turns."""

    model: str = ""
    task_count: int = 0
    total_cost_microdollars: int = 0
    avg_cost_microdollars: int = 0
    avg_elapsed_ms: int = 0
    total_turns: int = 0


MetricsScope = Literal["session", "all_time", "range"]


def _is_session(value: object) -> bool:
    return value == "session"


class SessionMetrics(_Model):
    """What ``session_metrics`` reports: tasks by state, spend, cost and time statistics, and a
    breakdown by model."""

    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    cancelled_tasks: int = 0
    running_tasks: int = 0
    pending_tasks: int = 0
    total_spend_microdollars: int = 0
    avg_cost_microdollars: int = 0
    max_cost_microdollars: int = 0
    avg_elapsed_ms: int = 0
    median_elapsed_ms: int = 0
    max_elapsed_ms: int = 0
    min_elapsed_ms: int = 0
    avg_turns: float = 0.0
    tasks_by_model: dict[str, int] = Field(default_factory=dict)
    model_breakdown: list[ModelMetrics] = Field(default_factory=list)
    session_start_ms: int = 0
    session_duration_ms: int = 0
    scope: MetricsScope = Field(default="session", exclude_if=_is_session)
    """Which tasks the figures cover: ``session`` (those created since this pool opened, the
    default; left out of the JSON, as the seed has no such field), ``all_time`` (every task in
    the store) or ``range`` (the filter's ``since_ms``/``until_ms``)."""


class MetricsFilter(_Model):
    """Which tasks session metrics cover. Without ``since_ms``/``until_ms`` they cover this
    pool's session, the tasks created since it opened; ``all_time`` asks for every task in the
    store."""

    since_ms: int | None = None
    until_ms: int | None = None
    tags: list[str] | None = None
    model: str | None = None
    all_time: bool = Field(default=False, exclude_if=_is_false)
    """Not in the seed: every task in the store, not only this session's."""


class RateLimitState(_Model):
    """The API is pushing back (HTTP 429/529/5xx retries): new tasks wait until the tasks
    whose CLI is retrying have got through or ended. Not in the seed."""

    until_ms: int
    """The latest retry time the CLI announced; the hold lasts past it while a retry is still
    under way."""
    status: int | None = None
    """HTTP status the CLI is retrying (429 rate limited, 529 overloaded, 5xx)."""
    slots: dict[str, int] = Field(default_factory=dict)
    """Slots whose CLI is retrying, with the time each announced for its next try."""
    tasks: list[str] = Field(default_factory=list)
    """The retrying tasks."""
    workers: list[str] = Field(default_factory=list)
    """The pool processes that hold dispatch (several when they share a store)."""
    message: str = ""


__all__ = [
    "CommitRange",
    "DependencyFailure",
    "Effort",
    "MetricsFilter",
    "ModelMetrics",
    "PermissionMode",
    "PoolConfig",
    "RateLimitState",
    "ReviewKind",
    "ScalingConfig",
    "SessionMetrics",
    "SlotConfig",
    "SlotId",
    "SlotMode",
    "SlotRecord",
    "SlotState",
    "TaskFilter",
    "TaskId",
    "TaskOverrides",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "VerificationRun",
    "microdollars_to_usd",
    "new_slot_id",
    "new_task_id",
    "now_ms",
    "usd_to_microdollars",
]

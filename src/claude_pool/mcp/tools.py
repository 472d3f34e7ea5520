"""The pool's operations as MCP tools.

Each ``register_*`` function adds one group of tools for a :class:`Pool` to an ``MCPServer``;
:data:`POOL_TOOL_GROUPS` lists them, and a later group (chains, skills, workflows) is one more
function of the same shape. Tool bodies only translate: arguments into ``Pool`` calls, results
into the models of :mod:`claude_pool.mcp.models`, and engine errors into tool errors that say
what was wrong and what to do (see :func:`tool_error`). Docstrings are the tools' descriptions,
written for the model that reads them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from claude_pool.errors import (
    BudgetExhausted,
    ClaudePoolError,
    InvalidTaskState,
    NoSlotAvailable,
    PoolShutdown,
    ScalingError,
    SlotNotFound,
    TaskNotFound,
)
from claude_pool.mcp.models import (
    MAX_EPOCH_MS,
    MAX_LIST_ITEMS,
    MAX_OFFSET,
    MAX_PROMPT_CHARS,
    NOT_BOOL,
    ClaimResult,
    ContextDeleted,
    ContextEntry,
    ContextListing,
    FanOutResult,
    MessageList,
    MessageView,
    Name,
    Note,
    Prompt,
    RejectResult,
    ScaleResult,
    SlotIdArg,
    SlotList,
    Submitted,
    Tags,
    TaskIdArg,
    TaskList,
    TaskOutcome,
    TaskOverridesArg,
    TaskSummary,
    TimeoutSecs,
    ToolNames,
    overrides_of,
)
from claude_pool.mcp.progress import ProgressReporter, reporter_for
from claude_pool.pool import DrainSummary, Pool, PoolStatus
from claude_pool.queue import FanOutItem
from claude_pool.types import (
    Effort,
    MetricsFilter,
    PermissionMode,
    SessionMetrics,
    SlotId,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskRecord,
    TaskState,
    usd_to_microdollars,
)

log = logging.getLogger(__name__)

ToolContext = Context[Any, Any]
ToolGroup = Callable[[MCPServer[Any], Pool], None]
"""Adds a group of tools for ``pool`` to ``server``."""

_P = ParamSpec("_P")
_R = TypeVar("_R")

_CANCEL_SECS = 30.0
"""How long a cancelled pool_run / pool_fan_out call may spend cancelling its tasks."""
_DEFAULT_WAIT_SECS = 300.0
_MAX_WAIT_SECS = 3_600.0


# ── annotations: what a client may assume about each tool ─────────────

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
"""Looks, changes nothing."""
RUNS_WORK = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
"""Starts Claude Code work: spends money, and the slot may edit files (permission mode)."""
CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
"""Adds or changes pool state without losing anything."""
SETS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
"""Sets pool state; repeating the call changes nothing more."""
REMOVES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
"""Stops, removes or overwrites something; repeating the call changes nothing more."""


# ── errors ────────────────────────────────────────────────────────────

_ADVICE: tuple[tuple[type[ClaudePoolError], str], ...] = (
    (TaskNotFound, "pool_list_tasks shows the task ids this pool knows"),
    (SlotNotFound, "pool_find_slots (or the pool://slots resource) shows the slot ids"),
    (InvalidTaskState, "pool_result shows the task's current state"),
    (ScalingError, "pool_status shows how many slots there are now"),
    (NoSlotAvailable, "pool_find_slots shows which slots exist; pool_scale_up adds slots"),
    (BudgetExhausted, "pool://budget shows the spend; no new work can start in this pool"),
    (
        PoolShutdown,
        "this server's pool has been drained; restart `claude-pool serve` to run more work",
    ),
)


REFUSALS = (ClaudePoolError, ValueError, OverflowError)
"""What the engine raises for a call it refuses (bad ids, states or values): these become tool
errors saying what was wrong. ``OverflowError`` is a number too large for a store (SQLite
holds 64-bit integers); the tools' bounds should stop those first."""


def tool_error(exc: Exception) -> ToolError:
    """A tool error for a failed pool call: what went wrong and what to do about it."""
    if isinstance(exc, ClaudePoolError):
        advice = next((a for kind, a in _ADVICE if isinstance(exc, kind)), None)
        message = f"{type(exc).__name__}: {exc}"
        return ToolError(f"{message} ({advice})" if advice else message)
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return ToolError(f"invalid arguments: {problems}")
    if isinstance(exc, OverflowError):
        return ToolError(
            f"invalid arguments: a number is too large for the pool to store or use ({exc}); "
            "use a smaller value"
        )
    return ToolError(f"invalid arguments: {exc}")


def _translating_errors(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    @functools.wraps(fn)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except REFUSALS as exc:
            log.info("tool %s refused: %s", fn.__name__, exc)
            raise tool_error(exc) from exc

    return call


def pool_tool(
    server: MCPServer[Any], name: str, annotations: ToolAnnotations, title: str | None = None
) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """Register an async function as a tool with structured output; its docstring is the
    description and engine errors become tool errors."""

    def register(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        server.add_tool(
            _translating_errors(fn),
            name=name,
            title=title,
            annotations=annotations,
            structured_output=True,
        )
        return fn

    return register


# ── shared argument types ─────────────────────────────────────────────

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
WaitSecs = Annotated[
    float | None,
    Field(
        gt=0,
        le=_MAX_WAIT_SECS,
        description=f"Most seconds to wait (default {_DEFAULT_WAIT_SECS:g}).",
    ),
    NOT_BOOL,
]
Priority = Annotated[
    int, Field(ge=-1_000_000, le=1_000_000, description="Higher runs first; default 0."), NOT_BOOL
]
FromSlot = Annotated[
    Name, Field(description='Who the message is from: your own name, or "coordinator".')
]


async def _wait_reporting(
    pool: Pool, reporter: ProgressReporter, task_id: str, timeout: float | None
) -> TaskRecord:
    reporter.watch(task_id)
    record = await pool.wait(task_id, timeout)
    reporter.ended(record)
    return record


# ── running tasks ─────────────────────────────────────────────────────


def register_task_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_run, pool_submit, pool_result, pool_cancel, pool_fan_out, pool_drain."""

    @pool_tool(server, "pool_run", RUNS_WORK, "Run a task and wait for its result")
    async def pool_run(
        prompt: Prompt,
        ctx: ToolContext,
        overrides: Overrides = None,
        tags: Tags | None = None,
        timeout_secs: TimeoutSecs = None,
        slot: SlotTarget = None,
        role: RoleTarget = None,
        name: NameTarget = None,
        fresh_session: FreshSession = False,
    ) -> TaskOutcome:
        """Run one prompt on a pool slot (a background Claude Code session) and wait for the
        result. Use it for a single piece of work you need before going on; for several
        independent prompts use pool_fan_out, and for work you can collect later use
        pool_submit + pool_result, which keeps you free meanwhile.

        Returns the task's id, final state and result (output, success, cost in microdollars,
        turns, session id). A task that failed is a normal result with success=false, not an
        error. Progress notifications report the slot's tool calls and text as it works.
        Costs money (counted against the pool budget); the slot may edit files if the
        permission mode allows it (default: plan, read-only). Cancelling this call cancels
        the task."""
        task_id = await pool.submit(
            prompt,
            overrides_of(overrides),
            tags or (),
            timeout=timeout_secs,
            slot=slot,
            role=role,
            name=name,
            fresh_session=fresh_session,
        )
        async with pool.cancelled_with_caller() as mine, reporter_for(pool, ctx) as reporter:
            mine.add(task_id)
            reporter.note(f"{task_id}: queued")
            record = await _wait_reporting(pool, reporter, task_id, None)
        return TaskOutcome.of(record)

    @pool_tool(server, "pool_submit", RUNS_WORK, "Queue a task")
    async def pool_submit(
        prompt: Prompt,
        overrides: Overrides = None,
        tags: Tags | None = None,
        priority: Priority = 0,
        timeout_secs: TimeoutSecs = None,
        slot: SlotTarget = None,
        role: RoleTarget = None,
        name: NameTarget = None,
        fresh_session: FreshSession = False,
    ) -> Submitted:
        """Queue a prompt for a pool slot and return its task id at once, without waiting.
        Submit several tasks, keep working, then collect each with pool_result (wait=true to
        block until it ends). Tasks run by priority, then in submission order, on any free
        slot (or only the slot, role or name you target). Costs money when it runs; the slot
        may edit files if the permission mode allows it."""
        task_id = await pool.submit(
            prompt,
            overrides_of(overrides),
            tags or (),
            priority=priority,
            timeout=timeout_secs,
            slot=slot,
            role=role,
            name=name,
            fresh_session=fresh_session,
        )
        return Submitted(task_id=task_id)

    @pool_tool(server, "pool_result", READ_ONLY, "Get (or wait for) a task's result")
    async def pool_result(
        task_id: TaskIdArg,
        ctx: ToolContext,
        wait: Annotated[
            bool, Field(description="Wait until the task ends (bounded by timeout_secs).")
        ] = False,
        timeout_secs: WaitSecs = None,
    ) -> TaskOutcome:
        """A task's state and, once it has finished, its result. With wait=true, blocks until
        the task ends or awaits review, at most timeout_secs (default 300); if time runs out
        you get finished=false and can call again. Waiting reports the task's progress."""
        if not wait:
            return TaskOutcome.of(await pool.get_task(task_id))
        limit = timeout_secs or _DEFAULT_WAIT_SECS
        async with reporter_for(pool, ctx) as reporter:
            try:
                record = await _wait_reporting(pool, reporter, task_id, limit)
            except TimeoutError:
                record = await pool.get_task(task_id)
                return TaskOutcome.of(
                    record,
                    note=f"still {record.state} after {limit:g}s; call again to keep waiting",
                )
        return TaskOutcome.of(record)

    @pool_tool(server, "pool_cancel", REMOVES, "Cancel a task")
    async def pool_cancel(task_id: TaskIdArg) -> TaskOutcome:
        """Cancel a task. A queued task never starts; a running task's Claude Code process is
        stopped and the task ends cancelled (what it spent so far still counts); a finished
        task is left as it was. Returns the task's state afterwards."""
        return TaskOutcome.of(await pool.cancel(task_id))

    @pool_tool(server, "pool_fan_out", RUNS_WORK, "Run several prompts in parallel")
    async def pool_fan_out(
        prompts: Annotated[
            list[Prompt],
            Field(
                min_length=1,
                max_length=MAX_LIST_ITEMS,
                description="Independent prompts, one task each.",
            ),
        ],
        ctx: ToolContext,
        overrides: Overrides = None,
        tags: Tags | None = None,
        timeout_secs: TimeoutSecs = None,
    ) -> FanOutResult:
        """Run independent prompts side by side on the pool's slots and wait for all of them.
        Use it for work that splits into parts that do not depend on each other ("review each
        of these files"). Returns one item per prompt, in input order, each with its own
        success or failure: one failure never discards the others. Progress notifications
        count finished items. Each task costs money; the same overrides apply to all.
        Cancelling this call cancels the tasks."""
        total = len(prompts)
        done = 0
        async with reporter_for(pool, ctx) as reporter:
            reporter.advance(0, total, f"queueing {total} tasks")

            def finished(item: FanOutItem) -> None:
                nonlocal done
                done += 1
                what = item.task_id or "not queued"
                reporter.advance(done, total, f"{done}/{total} done: item {item.index} {what}")

            items = await pool.fan_out_items(
                prompts, overrides_of(overrides), tags or (), on_item=finished,
                timeout=timeout_secs,
            )  # fmt: skip
        return FanOutResult(
            items=items,
            succeeded=sum(1 for item in items if item.success),
            failed=sum(1 for item in items if not item.success),
            total_cost_microdollars=sum(
                item.result.cost_microdollars for item in items if item.result
            ),
        )

    @pool_tool(server, "pool_drain", REMOVES, "Drain the pool")
    async def pool_drain(
        ctx: ToolContext,
        grace_secs: Annotated[
            float | None,
            Field(
                ge=0,
                le=_MAX_WAIT_SECS,
                description="How long running tasks may finish before they are cancelled "
                "(default: the pool's drain grace period).",
            ),
            NOT_BOOL,
        ] = None,
        cancel_pending: Annotated[
            bool, Field(description="Also cancel queued tasks (else they stay queued).")
        ] = False,
    ) -> DrainSummary:
        """Shut the pool down for good: stop taking work, let running tasks finish within
        the grace period, cancel the rest, stop every slot. After this, this server answers
        questions (status, results) but runs nothing more until it is restarted. Use it only
        when the user wants all pool work to stop. Returns what was finished and cancelled."""
        running = (await pool.status()).tasks.get(str(TaskState.RUNNING), 0)
        async with reporter_for(pool, ctx) as reporter:
            reporter.note(f"draining: waiting for {running} running task(s)")
            summary = await pool.drain(grace_secs, cancel_pending=cancel_pending)
            reporter.note("drained")
        return summary


# ── inspecting ────────────────────────────────────────────────────────


def register_inspection_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_status, pool_session_metrics, pool_list_tasks."""

    @pool_tool(server, "pool_status", READ_ONLY, "Pool status")
    async def pool_status() -> PoolStatus:
        """The pool at a glance: every slot (state, current task, role, spend), how many
        tasks are in each state, total spend and budget in microdollars (1 USD = 1,000,000),
        whether it is shutting down, and any API rate limiting that is pausing new tasks."""
        return await pool.status()

    @pool_tool(server, "pool_session_metrics", READ_ONLY, "Cost and timing metrics")
    async def pool_session_metrics(
        since_ms: Annotated[
            int | None,
            Field(ge=0, le=MAX_EPOCH_MS, description="Only tasks created at or after (epoch ms)."),
            NOT_BOOL,
        ] = None,
        until_ms: Annotated[
            int | None,
            Field(ge=0, le=MAX_EPOCH_MS, description="Only tasks created before (epoch ms)."),
            NOT_BOOL,
        ] = None,
        tags: Annotated[
            list[Name] | None, Field(max_length=MAX_LIST_ITEMS, description="Any of these tags.")
        ] = None,
        model: Annotated[Name | None, Field(description="Only tasks run on this model.")] = None,
    ) -> SessionMetrics:
        """Aggregate metrics over the pool's tasks: counts by state, spend (total, average,
        max, in microdollars), elapsed times (average, median, min, max), turns, and a
        per-model breakdown. Filter by time window, tags or model."""
        return await pool.session_metrics(
            MetricsFilter(since_ms=since_ms, until_ms=until_ms, tags=tags, model=model)
        )

    @pool_tool(server, "pool_list_tasks", READ_ONLY, "List tasks")
    async def pool_list_tasks(
        state: Annotated[TaskState | None, Field(description="Only tasks in this state.")] = None,
        slot_id: Annotated[Name | None, Field(description="Only tasks run by this slot.")] = None,
        tags: Annotated[
            list[Name] | None, Field(max_length=MAX_LIST_ITEMS, description="Any of these tags.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Page size."), NOT_BOOL] = 50,
        offset: Annotated[
            int, Field(ge=0, le=MAX_OFFSET, description="Tasks to skip."), NOT_BOOL
        ] = 0,
    ) -> TaskList:
        """List tasks, oldest first, with a preview of each prompt and output (pool_result
        has the whole result). Filter by state, slot or tags; page with limit and offset."""
        records = await pool.list_tasks(
            TaskFilter(state=state, slot_id=slot_id, tags=tags), limit + 1, offset
        )
        return TaskList(
            tasks=[TaskSummary.of(r) for r in records[:limit]],
            limit=limit,
            offset=offset,
            more=len(records) > limit,
        )


# ── review gate ───────────────────────────────────────────────────────


def register_review_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_submit_with_review, pool_approve_result, pool_reject_result."""

    @pool_tool(server, "pool_submit_with_review", RUNS_WORK, "Queue a task whose result you review")
    async def pool_submit_with_review(
        prompt: Prompt,
        overrides: Overrides = None,
        tags: Tags | None = None,
        max_rejections: Annotated[
            int,
            Field(ge=1, le=100, description="Rejections allowed before the task fails."),
            NOT_BOOL,
        ] = 3,
        priority: Priority = 0,
        timeout_secs: TimeoutSecs = None,
        slot: SlotTarget = None,
        role: RoleTarget = None,
        name: NameTarget = None,
    ) -> Submitted:
        """Queue a task whose result must be approved. When it finishes it waits in
        pending_review; read it with pool_result, then pool_approve_result to accept it or
        pool_reject_result with feedback to have it redone (up to max_rejections times).
        Use it when quality matters more than speed. Costs money when it runs."""
        task_id = await pool.submit(
            prompt,
            overrides_of(overrides),
            tags or (),
            review=True,
            max_rejections=max_rejections,
            priority=priority,
            timeout=timeout_secs,
            slot=slot,
            role=role,
            name=name,
        )
        return Submitted(
            task_id=task_id,
            review_required=True,
            note="queued for review: wait with pool_result, then approve or reject it",
        )

    @pool_tool(server, "pool_approve_result", SETS, "Approve a reviewed result")
    async def pool_approve_result(task_id: TaskIdArg) -> TaskOutcome:
        """Accept the result of a task waiting in pending_review: it becomes completed."""
        return TaskOutcome.of(await pool.approve(task_id), note="approved")

    @pool_tool(server, "pool_reject_result", RUNS_WORK, "Reject a reviewed result")
    async def pool_reject_result(
        task_id: TaskIdArg,
        feedback: Annotated[
            Note, Field(min_length=1, description="What to change: specific and actionable.")
        ],
    ) -> RejectResult:
        """Send a result in pending_review back with feedback. The task is queued again with
        your feedback added to its original prompt; once it has been rejected max_rejections
        times it fails instead, carrying your last feedback. The answer says which happened
        (requeued true or false). A re-queued task costs money again."""
        outcome = await pool.reject(task_id, feedback)
        if outcome.requeued:
            note = (
                f"queued again (attempt {outcome.attempt} of {outcome.max_attempts}); "
                "wait for it with pool_result"
            )
        else:
            note = f"failed: rejected {outcome.attempt} time(s), the limit"
        return RejectResult(
            task_id=outcome.task.id,
            requeued=outcome.requeued,
            attempt=outcome.attempt,
            max_attempts=outcome.max_attempts,
            state=outcome.task.state,
            note=note,
        )


# ── slots ─────────────────────────────────────────────────────────────

SlotCount = Annotated[int, Field(ge=1, le=1_000, description="How many slots."), NOT_BOOL]


def _scaled(pool: Pool, changed: list[SlotRecord], note: str | None = None) -> ScaleResult:
    slots = pool.slots
    return ScaleResult(
        changed=[s.id for s in changed], slot_count=len(slots), slots=slots, note=note
    )


def register_slot_tools(server: MCPServer[Any], pool: Pool) -> None:
    """Scaling and slot identity."""

    @pool_tool(server, "pool_scale_up", CHANGES, "Add slots")
    async def pool_scale_up(n: SlotCount = 1) -> ScaleResult:
        """Add n slots (more tasks can run at once), within the pool's max_slots. Slots cost
        nothing while idle."""
        return _scaled(pool, await pool.scale_up(n))

    @pool_tool(server, "pool_scale_down", REMOVES, "Remove slots")
    async def pool_scale_down(n: SlotCount = 1) -> ScaleResult:
        """Remove n slots, idle and least-used first, within the pool's min_slots. A slot
        running a task is never interrupted, so fewer may be removed than asked. A removed
        slot's conversation ends."""
        removed = await pool.scale_down(n)
        note = None
        if len(removed) < n:
            note = f"removed {len(removed)} of {n}: the other slots are busy; try again later"
        return _scaled(pool, removed, note)

    @pool_tool(server, "pool_set_target_slots", REMOVES, "Scale to a number of slots")
    async def pool_set_target_slots(
        n: Annotated[int, Field(ge=0, le=1_000, description="Slots wanted."), NOT_BOOL],
    ) -> ScaleResult:
        """Add or remove slots to reach n (within min_slots..max_slots). Busy slots are never
        interrupted, so the pool may stay above n until they finish."""
        before = {s.id for s in pool.slots}
        after = await pool.set_target_slots(n)
        now = {s.id for s in after}
        changed = [s for s in after if s.id not in before]
        note = None
        if len(after) > n:
            note = f"{len(after)} slots: the rest are busy; call again once they finish"
        result = _scaled(pool, changed, note)
        result.changed += sorted(before - now)
        return result

    @pool_tool(server, "pool_find_slots", READ_ONLY, "Find slots")
    async def pool_find_slots(
        name: Annotated[Name | None, Field(description="Slot name.")] = None,
        role: Annotated[Name | None, Field(description="Slot role.")] = None,
        state: Annotated[SlotState | None, Field(description="Slot state.")] = None,
    ) -> SlotList:
        """Slots matching every given criterion (all slots when none is given), with their
        id, state, current task, configuration and spend."""
        return SlotList(slots=pool.find_slots(name, role, state))

    @pool_tool(server, "pool_configure_slot", SETS, "Configure a slot")
    async def pool_configure_slot(
        slot_id: SlotIdArg,
        name: Annotated[Name | None, Field(description="A name to target the slot by.")] = None,
        role: Annotated[
            Name | None, Field(description='A role to target by, e.g. "reviewer".')
        ] = None,
        description: Annotated[Note | None, Field(description="What the slot is for.")] = None,
        model: Annotated[Name | None, Field(description="Default model for the slot.")] = None,
        permission_mode: PermissionMode | None = None,
        max_turns: Annotated[int | None, Field(ge=1, le=10_000), NOT_BOOL] = None,
        system_prompt: Annotated[
            Note | None, Field(description="Appended to Claude Code's system prompt.")
        ] = None,
        allowed_tools: ToolNames | None = None,
        mcp_servers: Annotated[
            dict[Name, dict[str, Any]] | None,
            Field(description="Extra MCP servers for this slot, by name, as in .mcp.json."),
        ] = None,
        effort: Effort | None = None,
        fallback_model: Name | None = None,
        slot_assignment_timeout_secs: Annotated[
            int | None,
            Field(ge=0, le=86_400, description="How long tasks wait for this slot."),
            NOT_BOOL,
        ] = None,
    ) -> SlotRecord:
        """Give a slot an identity (name, role, description) and/or its own settings; fields
        left out keep their values. Takes effect from the slot's next task. Use roles to
        target work (pool_submit role=...), e.g. a "reviewer" slot with its own prompt."""
        return await pool.configure_slot(
            slot_id,
            name=name,
            role=role,
            description=description,
            model=model,
            permission_mode=permission_mode,
            max_turns=max_turns,
            system_prompt=system_prompt,
            allowed_tools=allowed_tools,
            mcp_servers=mcp_servers,
            effort=effort,
            fallback_model=fallback_model,
            slot_assignment_timeout_secs=slot_assignment_timeout_secs,
        )


# ── claiming work to do yourself ──────────────────────────────────────


def register_claim_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_claim and pool_complete_claimed."""

    @pool_tool(server, "pool_claim", CHANGES, "Take a queued task to do yourself")
    async def pool_claim(
        task_id: Annotated[
            Name | None,
            Field(description="The queued task to take; leave out to take the next one."),
        ] = None,
        claimant: Annotated[Name, Field(description="Who takes it (your name).")] = "coordinator",
    ) -> ClaimResult:
        """Take a queued task out of the queue to do it yourself instead of a slot. The
        claim is atomic: no slot and no other claimant can ever run the task too. Returns
        its prompt and settings; report the outcome with pool_complete_claimed. claimed=false
        when nothing is queued."""
        record = await pool.claim(task_id, claimant=claimant)
        if record is None:
            return ClaimResult(claimed=False, note="nothing is queued that you could claim")
        return ClaimResult(
            claimed=True,
            task_id=record.id,
            prompt=record.prompt,
            overrides=record.config,
            tags=record.tags,
            review_required=record.review_required,
            note="do the work, then report it with pool_complete_claimed",
        )

    @pool_tool(server, "pool_complete_claimed", CHANGES, "Report a claimed task's outcome")
    async def pool_complete_claimed(
        task_id: TaskIdArg,
        output: Annotated[
            str,
            Field(
                description="The task's result, as a slot would have answered.",
                json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
            ),
        ],
        success: Annotated[bool, Field(description="False if you could not do it.")] = True,
        cost_usd: Annotated[
            float, Field(ge=0, le=10_000, description="What doing it cost, in USD."), NOT_BOOL
        ] = 0.0,
        turns_used: Annotated[int, Field(ge=0, le=100_000), NOT_BOOL] = 0,
    ) -> TaskOutcome:
        """Record the outcome of a task you took with pool_claim; it ends completed (or
        pending_review if it was submitted for review) or failed."""
        if len(output) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"output is {len(output):,} characters, over the {MAX_PROMPT_CHARS:,} limit; "
                "write it to a file and report the path"
            )
        record = await pool.complete_claimed(
            task_id,
            output,
            success=success,
            cost_microdollars=usd_to_microdollars(cost_usd),
            turns_used=turns_used,
        )
        return TaskOutcome.of(record)


# ── shared context and messages ───────────────────────────────────────

ContextKey = Annotated[Name, Field(description='A short key, e.g. "repo_conventions".')]


def register_context_tools(server: MCPServer[Any], pool: Pool) -> None:
    """context_set, context_get, context_delete, context_list."""

    @pool_tool(server, "context_set", SETS, "Set a shared note")
    async def context_set(
        key: ContextKey,
        value: Annotated[Note, Field(description="The fact every task should know.")],
    ) -> ContextEntry:
        """Set a shared note that every task's system prompt carries from now on (replacing
        any note with the same key). Use it for facts all slots need: conventions, paths,
        decisions. Keep notes short: they are sent with every task."""
        await pool.context_set(key, value)
        return ContextEntry(key=key, value=value)

    @pool_tool(server, "context_get", READ_ONLY, "Read a shared note")
    async def context_get(key: ContextKey) -> ContextEntry:
        """Read one shared note; found=false when there is none with that key."""
        value = await pool.context_get(key)
        return ContextEntry(key=key, value=value, found=value is not None)

    @pool_tool(server, "context_delete", REMOVES, "Delete a shared note")
    async def context_delete(key: ContextKey) -> ContextDeleted:
        """Delete a shared note; later tasks no longer see it. deleted=false if there was none."""
        return ContextDeleted(key=key, deleted=await pool.context_delete(key))

    @pool_tool(server, "context_list", READ_ONLY, "List shared notes")
    async def context_list() -> ContextListing:
        """Every shared note, by key: what each task's system prompt carries now."""
        return ContextListing(entries=await pool.context_list())


def register_message_tools(server: MCPServer[Any], pool: Pool) -> None:
    """pool_send_message, pool_broadcast, pool_read_messages, pool_peek_messages."""

    @pool_tool(server, "pool_send_message", CHANGES, "Message a slot")
    async def pool_send_message(
        to_slot: SlotIdArg,
        content: Annotated[Note, Field(min_length=1, description="The message.")],
        from_slot: FromSlot = "coordinator",
    ) -> MessageView:
        """Leave a message for a slot. It is delivered with that slot's next task (prepended
        to the prompt), and kept until a task with it succeeds."""
        return MessageView.of(await pool.send_message(from_slot, to_slot, content))

    @pool_tool(server, "pool_broadcast", CHANGES, "Message every slot")
    async def pool_broadcast(
        content: Annotated[Note, Field(min_length=1, description="The message.")],
        from_slot: FromSlot = "coordinator",
    ) -> MessageList:
        """Leave the same message for every slot (except the sender); each gets it with its
        next task."""
        sent = await pool.broadcast(from_slot, content)
        return MessageList(messages=[MessageView.of(m) for m in sent])

    @pool_tool(server, "pool_read_messages", CHANGES, "Read and clear a slot's messages")
    async def pool_read_messages(slot_id: SlotIdArg) -> MessageList:
        """A slot's unread messages, which are then marked read (so its next task will not
        get them). pool_peek_messages looks without marking."""
        await _check_slot_exists(pool, slot_id)
        return MessageList(messages=[MessageView.of(m) for m in await pool.read_messages(slot_id)])

    @pool_tool(server, "pool_peek_messages", READ_ONLY, "Look at a slot's messages")
    async def pool_peek_messages(slot_id: SlotIdArg) -> MessageList:
        """A slot's unread messages, left unread (pool_read_messages marks them read)."""
        await _check_slot_exists(pool, slot_id)
        return MessageList(messages=[MessageView.of(m) for m in await pool.peek_messages(slot_id)])


async def _check_slot_exists(pool: Pool, slot_id: str) -> None:
    """``SlotNotFound`` unless ``slot_id`` is a slot of this pool or of the store (a worker's
    slot sharing it): the rule ``Pool.send_message`` applies, so that a typo is an error
    rather than an empty inbox."""
    try:
        pool.slot(slot_id)
    except SlotNotFound:
        if await pool.store.get_slot(SlotId(slot_id)) is None:
            raise


POOL_TOOL_GROUPS: tuple[ToolGroup, ...] = (
    register_task_tools,
    register_inspection_tools,
    register_review_tools,
    register_slot_tools,
    register_claim_tools,
    register_context_tools,
    register_message_tools,
)
"""Every tool group of the pool engine, in the order they are listed to clients."""

__all__ = [
    "CHANGES",
    "POOL_TOOL_GROUPS",
    "READ_ONLY",
    "REFUSALS",
    "REMOVES",
    "RUNS_WORK",
    "SETS",
    "ToolGroup",
    "pool_tool",
    "register_claim_tools",
    "register_context_tools",
    "register_inspection_tools",
    "register_message_tools",
    "register_review_tools",
    "register_slot_tools",
    "register_task_tools",
    "tool_error",
]

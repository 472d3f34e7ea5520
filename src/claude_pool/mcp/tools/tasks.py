"""Running tasks: pool_run, pool_submit, pool_result, pool_cancel, pool_fan_out, pool_drain."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import (
    DEFAULT_WAIT_SECS,
    MAX_LIST_ITEMS,
    MAX_WAIT_SECS,
    NOT_BOOL,
    DependsOn,
    FreshSession,
    NameTarget,
    OnDependencyFailure,
    Overrides,
    Priority,
    Prompt,
    RoleTarget,
    SlotTarget,
    Tags,
    TaskIdArg,
    TimeoutSecs,
    Verify,
    WaitSecs,
    overrides_of,
)
from claude_pool.mcp.models import FanOutResult, Submitted, TaskOutcome
from claude_pool.mcp.progress import ProgressReporter, reporter_for
from claude_pool.mcp.tooling import READ_ONLY, REMOVES, RUNS_WORK, ToolContext, pool_tool
from claude_pool.pool import DrainSummary, Pool
from claude_pool.queue import FanOutItem
from claude_pool.types import TaskRecord, TaskState


async def _wait_reporting(
    pool: Pool, reporter: ProgressReporter, task_id: str, timeout: float | None
) -> TaskRecord:
    reporter.watch(task_id)
    record = await pool.wait(task_id, timeout)
    reporter.ended(record)
    return record


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
        verify: Verify = None,
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
            verify=verify,
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
        depends_on: DependsOn = None,
        on_dependency_failure: OnDependencyFailure = "cancel",
        verify: Verify = None,
    ) -> Submitted:
        """Queue a prompt for a pool slot and return its task id at once, without waiting.
        Submit several tasks, keep working, then collect each with pool_result (wait=true to
        block until it ends). Tasks run by priority, then in submission order, on any free
        slot (or only the slot, role or name you target). Costs money when it runs; the slot
        may edit files if the permission mode allows it. With depends_on, the task waits
        until those tasks have completed (pool_list_tasks shows what it waits for)."""
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
            depends_on=depends_on or (),
            on_dependency_failure=on_dependency_failure,
            verify=verify,
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
        limit = timeout_secs or DEFAULT_WAIT_SECS
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
        depends_on: DependsOn = None,
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
                timeout=timeout_secs, depends_on=depends_on or (),
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
                le=MAX_WAIT_SECS,
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


__all__ = [
    "register_task_tools",
]

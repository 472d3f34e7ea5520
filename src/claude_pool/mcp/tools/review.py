"""The review gate: pool_submit_with_review, pool_approve_result, pool_reject_result."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from claude_pool.mcp.arguments import (
    NOT_BOOL,
    NameTarget,
    Note,
    Overrides,
    Priority,
    Prompt,
    RoleTarget,
    SlotTarget,
    Tags,
    TaskIdArg,
    TimeoutSecs,
    overrides_of,
)
from claude_pool.mcp.models import RejectResult, Submitted, TaskOutcome
from claude_pool.mcp.tooling import RUNS_WORK, SETS, pool_tool
from claude_pool.pool import Pool


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
        plan_first: Annotated[
            bool,
            Field(
                description=(
                    "Have the slot make a plan first, in read-only plan mode: it waits in "
                    "pending_review with review_kind 'plan'; approving it has the same "
                    "conversation carry the plan out (then the result is reviewed too), "
                    "rejecting it asks for a new plan."
                )
            ),
        ] = False,
    ) -> Submitted:
        """Queue a task whose result must be approved. When it finishes it waits in
        pending_review; read it with pool_result, then pool_approve_result to accept it or
        pool_reject_result with feedback to have it redone (up to max_rejections times).
        With plan_first, its plan is reviewed the same way before any work is done.
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
            plan_first=plan_first,
        )
        return Submitted(
            task_id=task_id,
            review_required=True,
            note="queued for review: wait with pool_result, then approve or reject it",
        )

    @pool_tool(server, "pool_approve_result", SETS, "Approve a reviewed result")
    async def pool_approve_result(task_id: TaskIdArg) -> TaskOutcome:
        """Accept the result of a task waiting in pending_review: it becomes completed. For a
        plan (review_kind 'plan'), the task is queued again to carry the plan out."""
        record = await pool.approve(task_id)
        if record.plan_approved and record.state.value == "pending":
            return TaskOutcome.of(
                record, note="plan approved: it is being carried out; wait with pool_result"
            )
        return TaskOutcome.of(record, note="approved")

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


__all__ = [
    "register_review_tools",
]

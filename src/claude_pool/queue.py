"""The task queue's rules: submitting, waiting, cancelling, the review gate, outside claims.

Every change here is one compare-and-set store write that logs its event with it (see
:mod:`claude_pool.eventlog`). Waiting never polls: a waiter is woken by the event that ends its
task's run or review — published here when this process ended it, or read from the store's
event log when another process did — and reads the task back once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from claude_pool.aio import CANCEL_SECS, cancelled_with_caller, run_shielded
from claude_pool.budget import BudgetLedger
from claude_pool.dependencies import Dependencies
from claude_pool.errors import ClaudePoolError, InvalidTaskState, PoolShutdown, TaskNotFound
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    Event,
    SpendRecorded,
    TaskApproved,
    TaskCancelled,
    TaskClaimed,
    TaskHeldForReview,
    TaskQueued,
    TaskRejected,
    TaskRequeued,
    ends_wait,
    finished,
    preview,
    task_state_after,
)
from claude_pool.lifecycle import Lifecycle
from claude_pool.outcomes import Outcomes
from claude_pool.runner import PLAN_APPROVED, TaskRunner, chain_of
from claude_pool.scheduler import Scheduler, target_info
from claude_pool.slots import SlotSet
from claude_pool.store.base import Store, StoredTask, TaskTarget
from claude_pool.types import (
    DependencyFailure,
    SlotId,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
    check_text,
    check_texts,
    new_task_id,
    now_ms,
)

log = logging.getLogger(__name__)

EXTERNAL_PREFIX = "external:"
"""Slot id prefix of tasks claimed by an outside worker (see :meth:`TaskQueue.claim`)."""

WAITING_SCAN = 200
"""How many of the oldest pending tasks :meth:`TaskQueue.waiting_for` looks at when given no
ids (``Pool.status`` reports them)."""


class RejectOutcome(BaseModel):
    """What ``reject()`` did: re-queued the task for another attempt, or failed it."""

    requeued: bool
    attempt: int
    """With ``requeued``, the attempt now queued; otherwise the number of rejections."""
    max_attempts: int
    task: TaskRecord


class FanOutItem(BaseModel):
    """One prompt of a fan-out: its task and how it ended (a failure never hides the others)."""

    index: int = Field(description="Position of the prompt in the request.")
    task_id: str | None = Field(
        None, description="None when the task could not even be queued (budget, bad input)."
    )
    state: TaskState | None = None
    success: bool
    result: TaskResult | None = None
    error: str | None = Field(None, description="Why the item failed, when it did.")

    @classmethod
    def of(cls, index: int, record: TaskRecord) -> FanOutItem:
        result = record.result
        success = record.state is TaskState.COMPLETED and bool(result and result.success)
        return cls(
            index=index,
            task_id=record.id,
            state=record.state,
            success=success,
            result=result,
            error=None if success else (result.output if result else str(record.state)),
        )

    @classmethod
    def refused(cls, index: int, error: Exception, task_id: str | None = None) -> FanOutItem:
        message = str(error) if isinstance(error, ClaudePoolError) else f"invalid task: {error}"
        return cls(index=index, task_id=task_id, success=False, error=message)

    def as_result(self) -> TaskResult:
        """The item as a plain ``TaskResult`` (a refusal becomes a failed one)."""
        return self.result or TaskResult.failure(self.error or f"task ended {self.state}")


PRIORITY_LIMIT = 1_000_000
"""Priorities go from ``-PRIORITY_LIMIT`` to ``PRIORITY_LIMIT`` (every face and store)."""


def check_priority(priority: int) -> None:
    """Refuse a priority outside ``±PRIORITY_LIMIT``, or one that is not an integer."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an integer, got {priority!r}")
    if not -PRIORITY_LIMIT <= priority <= PRIORITY_LIMIT:
        raise ValueError(
            f"priority must be between {-PRIORITY_LIMIT} and {PRIORITY_LIMIT}, got {priority}"
        )


class TaskQueue:
    def __init__(
        self,
        *,
        store: Store,
        events: EventLog,
        runner: TaskRunner,
        scheduler: Scheduler,
        slots: SlotSet,
        budget: BudgetLedger,
        outcomes: Outcomes,
        lifecycle: Lifecycle,
        dependencies: Dependencies,
        default_model: Callable[[], str | None] = lambda: None,
        only_targeted: bool = False,
    ) -> None:
        self._dependencies = dependencies
        self._store = store
        self._events = events
        self._runner = runner
        self._scheduler = scheduler
        self._slots = slots
        self._budget = budget
        self._outcomes = outcomes
        self._lifecycle = lifecycle
        self._only_targeted = only_targeted
        self._model = default_model
        self._waiters: dict[TaskId, list[asyncio.Future[None]]] = {}

    # ── submitting ───────────────────────────────────────────────────

    async def submit(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        *,
        review: bool = False,
        max_rejections: int = 3,
        priority: int = 0,
        timeout: float | None = None,
        slot: SlotId | str | None = None,
        role: str | None = None,
        name: str | None = None,
        fresh_session: bool = False,
        assignment_timeout: float | None = None,
        cwd: str | Path | None = None,
        depends_on: Iterable[TaskId | str] = (),
        on_dependency_failure: DependencyFailure = "cancel",
        verify: str | None = None,
        plan_first: bool = False,
    ) -> TaskId:
        """Queue a task and return its id at once.

        ``priority``: higher runs first, equal priorities in submission order. ``timeout``: the
        task's run-time limit in seconds (default: the pool's). ``slot``/``role``/``name``
        restrict which slots may run it. ``fresh_session`` runs it in a new conversation.
        ``cwd`` runs it in another directory than its slot's (in a fresh one-shot session).
        ``review`` holds the result for :meth:`approve` / :meth:`reject`.
        ``depends_on``: tasks (already submitted) that must complete before this one may run;
        its prompt may use ``{{<task id>.output}}`` for their outputs. If one fails or is
        cancelled, this task is cancelled too, unless ``on_dependency_failure="run"``.
        ``verify``: a shell command run in the task's directory once it completes (default:
        the slot's or pool's ``verify``); a non-zero exit sends the task back to the same
        slot with the command's output as feedback, up to ``max_rejections`` attempts.
        ``plan_first``: the slot first makes a plan in plan mode, held for review (review
        kind ``plan``); :meth:`approve` has it carried out in the same conversation, in the
        task's own permission mode, and :meth:`reject` asks for a new plan.
        """
        self._lifecycle.check_accepting()
        if not prompt or not prompt.strip():
            raise ValueError("prompt must not be empty")
        check_text(prompt, "prompt")
        tags = list(tags)
        check_texts(tags, "tags")
        check_texts([slot, role, name, str(cwd) if cwd is not None else None], "target")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_rejections < 0:
            raise ValueError(f"max_rejections must be >= 0, got {max_rejections}")
        check_priority(priority)
        if verify is not None:
            if not verify.strip():
                raise ValueError("verify must be a command, e.g. 'make test'")
            check_text(verify, "verify")
            overrides = (overrides or TaskOverrides()).model_copy(update={"verify": verify})
        verified = bool(verify or (overrides is not None and overrides.verify))
        dependencies = await self._dependencies.check(depends_on, prompt, on_dependency_failure)
        await self._budget.check(
            overrides.model if overrides is not None and overrides.model else self._model()
        )
        if self._only_targeted and not (slot or role or name) and len(self._slots):
            slot = next(iter(self._slots)).id  # this pool's own work goes to its own slot
        record = TaskRecord(
            id=new_task_id(),
            prompt=prompt,
            tags=list(tags),
            config=overrides,
            created_at_ms=now_ms(),
            review_required=review,
            max_rejections=max_rejections if review or verified or plan_first else 3,
            original_prompt=prompt if review else None,
            depends_on=dependencies,
            on_dependency_failure=on_dependency_failure,
            plan_first=plan_first,
        )
        target = TaskTarget(slot_id=SlotId(slot) if slot else None, role=role, name=name)
        stored = StoredTask(
            record=record,
            priority=priority,
            target=target,
            timeout_secs=timeout,
            assignment_timeout_secs=assignment_timeout,
            fresh_session=fresh_session,
            cwd=_real_path(cwd) if cwd is not None else None,
        )
        queued = TaskQueued(
            task_id=record.id,
            chain_id=chain_of(record),
            at_ms=record.created_at_ms or now_ms(),
            prompt=preview(prompt),
            priority=priority,
            tags=record.tags,
            target=target_info(target),
            review=review,
            plan_first=plan_first,
            assignment_timeout_secs=assignment_timeout,
            depends_on=list(dependencies),
        )
        try:
            inserted = await self._events.write(
                lambda batch: self._store.insert_task(stored, events=batch), queued
            )
            if dependencies:
                await self._dependencies.queued(inserted)
        except asyncio.CancelledError:
            # The caller never learns this id, so the task must not run: a store finishes an
            # insert it started, and a task stored before the cancel arrived is cancelled.
            await run_shielded(self._withdraw(record.id), CANCEL_SECS)
            raise
        return record.id

    async def _withdraw(self, task_id: TaskId) -> None:
        with contextlib.suppress(TaskNotFound):
            await self.cancel(task_id)

    # ── waiting ──────────────────────────────────────────────────────

    def on_event(self, event: Event) -> None:
        """Bus listener: wake the waiters of a task whose run or review ended; forget the
        final record of a task queued again."""
        if event.task_id is not None and task_state_after(event) is TaskState.PENDING:
            self._outcomes.forget(TaskId(event.task_id))
        if event.task_id is not None and ends_wait(event):
            for future in self._waiters.pop(TaskId(event.task_id), ()):
                if not future.done():
                    future.set_result(None)

    def wake_all(self) -> None:
        """The pool closed: every waiter looks once more (and finds it closed)."""
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def wait(
        self,
        task_id: TaskId | str,
        timeout: float | None = None,
        *,
        just_queued: bool = False,
        through_review: bool = False,
    ) -> TaskRecord:
        """Wait until the task ends (or awaits review); returns its record. ``TimeoutError``
        if ``timeout`` seconds pass first. ``just_queued``: the caller has just submitted it
        (no need to read it first). ``through_review``: a task held for review is waited for
        until it ends (approved, or rejected for the last time)."""
        task_id = TaskId(task_id)
        async with asyncio.timeout(timeout):
            while True:
                final = self._outcomes.final(task_id)
                if final is not None and (final.state.is_terminal or not through_review):
                    return final
                future = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(task_id, []).append(future)
                try:
                    if not just_queued:
                        stored = await self._store.get_task(task_id)
                        if stored is None:
                            raise TaskNotFound(task_id)
                        state = stored.record.state
                        if state.is_terminal or (
                            state is TaskState.PENDING_REVIEW and not through_review
                        ):
                            return stored.record
                    just_queued = False
                    if self._lifecycle.closed:
                        raise PoolShutdown("the pool closed before the task finished")
                    await future
                finally:
                    waiting = self._waiters.get(task_id)
                    if waiting is not None and future in waiting:
                        waiting.remove(future)
                        if not waiting:
                            del self._waiters[task_id]

    def cancelled_with_caller(self) -> contextlib.AbstractAsyncContextManager[set[str]]:
        """Task ids added to the yielded set are cancelled if the caller is cancelled while
        in the block (see :func:`claude_pool.aio.cancelled_with_caller`)."""
        return cancelled_with_caller(self.cancel)

    async def run(
        self,
        prompt: str,
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        **submit_options: Any,
    ) -> TaskResult:
        async with self.cancelled_with_caller() as owned:
            task_id = await self.submit(prompt, overrides, tags, **submit_options)
            owned.add(task_id)
            record = await self.wait(task_id, just_queued=True)
        error = self._outcomes.take_refusal(task_id)
        if error is not None:
            raise error
        return record.result or TaskResult.failure(f"task ended {record.state} without a result")

    async def fan_out(
        self,
        prompts: Sequence[str],
        overrides: TaskOverrides | None = None,
        tags: Iterable[str] = (),
        *,
        on_item: Callable[[FanOutItem], None] | None = None,
        **submit_options: Any,
    ) -> list[FanOutItem]:
        """Run prompts side by side: one item per prompt, in input order; a failure (even a
        refusal at submission) is reported in its own item and never discards the others.
        ``on_item`` is called as each item ends."""
        tags = list(tags)
        items: list[FanOutItem | None] = [None] * len(prompts)
        waits: dict[int, TaskId] = {}

        def done(item: FanOutItem) -> None:
            items[item.index] = item
            if on_item is not None:
                on_item(item)

        async with self.cancelled_with_caller() as owned:
            for index, prompt in enumerate(prompts):
                try:
                    waits[index] = await self.submit(prompt, overrides, tags, **submit_options)
                    owned.add(waits[index])
                except (ClaudePoolError, ValueError) as exc:
                    done(FanOutItem.refused(index, exc))

            async def collect(index: int, task_id: TaskId) -> None:
                try:
                    record = await self.wait(task_id, just_queued=True)
                except ClaudePoolError as exc:
                    done(FanOutItem.refused(index, exc, task_id))
                    return
                refusal = self._outcomes.take_refusal(task_id)
                if refusal is not None:
                    done(FanOutItem.refused(index, refusal, task_id))
                else:
                    done(FanOutItem.of(index, record))

            async with asyncio.TaskGroup() as group:
                for index, task_id in waits.items():
                    group.create_task(collect(index, task_id))
        return [item for item in items if item is not None]

    # ── cancelling ───────────────────────────────────────────────────

    async def cancel(self, task_id: TaskId | str) -> TaskRecord:
        task_id = TaskId(task_id)
        reason = "cancelled before it started"
        cancelled = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.PENDING}, TaskState.CANCELLED, now_ms=now_ms(),
                result=TaskResult.failure(reason), events=batch,
            ),
            TaskCancelled(task_id=task_id, reason=reason),
        )  # fmt: skip
        if cancelled is not None:
            self._outcomes.ended(cancelled)
            return cancelled
        stored = await self._store.get_task(task_id)
        if stored is None:
            raise TaskNotFound(task_id)
        if stored.record.state is TaskState.RUNNING:
            if self._claimed_here(stored):
                # A task claimed a moment ago is registered once the claim returns.
                await self._scheduler.claim_settled()
            running = self._runner.stop(task_id, "cancelled")
            if running is not None:
                await running.finished.wait()
            else:
                # Running in another pool process (or claimed by an outside worker): the
                # state change, and its event, are what that process reacts to.
                await self._events.write(
                    lambda batch: self._store.transition_task(
                        task_id, {TaskState.RUNNING}, TaskState.CANCELLED, now_ms=now_ms(),
                        result=TaskResult.failure("cancelled"), events=batch,
                    ),
                    TaskCancelled(task_id=task_id, slot_id=stored.record.slot_id,
                                  reason="cancelled", was_running=True),
                )  # fmt: skip
            stored = await self._store.get_task(task_id)
            assert stored is not None
        return stored.record

    def _claimed_here(self, stored: StoredTask) -> bool:
        return stored.claimed_by == self._events.worker_id and not (
            stored.record.slot_id or ""
        ).startswith(EXTERNAL_PREFIX)

    async def retry(self, task_id: TaskId | str) -> TaskRecord:
        """Queue a failed or cancelled task again, as it was first submitted (its prompt,
        overrides, target and priority); what its earlier runs spent stays spent."""
        task_id = TaskId(task_id)
        self._lifecycle.check_accepting()
        stored = await self._store.get_task(task_id)
        if stored is None:
            raise TaskNotFound(task_id)
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.FAILED, TaskState.CANCELLED}, TaskState.PENDING,
                now_ms=now_ms(), result=None, slot_id=None,
                attempt_reason="queued again on request", events=batch,
            ),
            TaskRequeued(
                task_id=task_id, reason="queued again on request",
                target=target_info(stored.target),
            ),
        )  # fmt: skip
        if updated is None:
            raise await self._wrong_state(task_id, "failed or cancelled", "requeue")
        return updated

    async def requeue(self, stored: StoredTask, reason: str) -> bool:
        """Put a running task back in the queue (it runs nowhere, though marked running)."""
        task_id = stored.record.id
        moved = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.RUNNING}, TaskState.PENDING, now_ms=now_ms(), slot_id=None,
                attempt_reason=reason, events=batch,
            ),
            TaskRequeued(task_id=task_id, reason=reason, target=target_info(stored.target)),
        )  # fmt: skip
        return moved is not None

    # ── inspection ───────────────────────────────────────────────────

    async def waiting_for(
        self, task_ids: Iterable[TaskId | str] | None = None
    ) -> dict[str, list[str]]:
        """Which of these pending tasks (None: the oldest :data:`WAITING_SCAN` pending ones)
        wait for dependencies, and for which (those not yet completed)."""
        if task_ids is None:
            records = await self.list(TaskFilter(state=TaskState.PENDING), WAITING_SCAN)
        else:
            records = [await self.get(task_id) for task_id in task_ids]
        waiting = await self._dependencies.waiting_for(records)
        return {task_id: [str(d) for d in deps] for task_id, deps in waiting.items()}

    async def get(self, task_id: TaskId | str) -> TaskRecord:
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        return stored.record

    async def result(self, task_id: TaskId | str) -> TaskResult | None:
        record = await self.get(task_id)
        if record.state.is_terminal or record.state is TaskState.PENDING_REVIEW:
            return record.result
        return None

    async def list(
        self,
        filter: TaskFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        *,
        newest_first: bool = False,
    ) -> list[TaskRecord]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        return await self._store.list_tasks(filter, limit, offset, newest_first=newest_first)

    # ── claims by an outside worker ──────────────────────────────────

    async def claim(
        self, task_id: TaskId | str | None = None, *, claimant: str = "coordinator"
    ) -> TaskRecord | None:
        self._lifecycle.check_accepting()
        slot_id = SlotId(f"{EXTERNAL_PREFIX}{claimant}")
        if task_id is None:
            stored = await self._store.claim_task(
                slot_id, None, None, self._events.worker_id, now_ms()
            )
            if stored is None:
                return None
            self._events.emit(TaskClaimed(task_id=stored.record.id, slot_id=slot_id))
            return stored.record
        claimed = await self._store.transition_task(
            TaskId(task_id), {TaskState.PENDING}, TaskState.RUNNING, now_ms=now_ms(),
            slot_id=slot_id,
        )  # fmt: skip
        if claimed is None:
            raise await self._wrong_state(task_id, "pending", "claim")
        self._events.emit(TaskClaimed(task_id=claimed.id, slot_id=slot_id))
        return claimed

    async def complete_claimed(
        self,
        task_id: TaskId | str,
        output: str,
        *,
        success: bool = True,
        cost_microdollars: int = 0,
        turns_used: int = 0,
    ) -> TaskRecord:
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        record = stored.record
        if record.state is not TaskState.RUNNING or not (record.slot_id or "").startswith(
            EXTERNAL_PREFIX
        ):
            raise InvalidTaskState(task_id, str(record.state), "running under a claim", "complete")
        result = TaskResult(
            output=output,
            success=success,
            cost_microdollars=cost_microdollars,
            turns_used=turns_used,
            elapsed_ms=max(0, now_ms() - (record.started_at_ms or now_ms())),
        )
        if cost_microdollars:
            spend = SpendRecorded(
                task_id=record.id, slot_id=record.slot_id, microdollars=cost_microdollars
            )
            await self._events.write(
                lambda batch: self._store.add_spend(cost_microdollars, events=batch), spend
            )
        if not success:
            target = TaskState.FAILED
        else:
            held = record.review_required or record.planning
            target = TaskState.PENDING_REVIEW if held else TaskState.COMPLETED
        outcome: Event = (
            TaskHeldForReview(
                task_id=record.id, slot_id=record.slot_id, cost_microdollars=cost_microdollars,
                kind="plan" if record.planning else "result",
                turns_used=turns_used, elapsed_ms=result.elapsed_ms, output=preview(output),
            )
            if target is TaskState.PENDING_REVIEW
            else finished(record.id, target, result, record.slot_id)
        )  # fmt: skip
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                record.id, {TaskState.RUNNING}, target, now_ms=now_ms(), result=result,
                events=batch,
            ),
            outcome,
        )  # fmt: skip
        if updated is None:
            raise await self._wrong_state(task_id, "running", "complete")
        if target.is_terminal:
            self._outcomes.ended(updated)
        return updated

    # ── review gate ──────────────────────────────────────────────────

    async def approve(self, task_id: TaskId | str) -> TaskRecord:
        task_id = TaskId(task_id)
        stored = await self._store.get_task(task_id)
        if stored is not None and stored.record.review_kind == "plan":
            return await self._approve_plan(stored)
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                task_id, {TaskState.PENDING_REVIEW}, TaskState.COMPLETED, now_ms=now_ms(),
                events=batch,
            ),
            TaskApproved(task_id=task_id),
        )  # fmt: skip
        if updated is None:
            raise await self._wrong_state(task_id, "pending_review", "approve")
        self._outcomes.ended(updated)
        return updated

    async def _approve_plan(self, stored: StoredTask) -> TaskRecord:
        """The plan is approved: the task is queued again, for the slot that made the plan
        (its conversation holds it), to carry it out in its own permission mode."""
        record = stored.record
        plan = record.result.output if record.result is not None else ""
        prompt = plan_approved_prompt(record.original_prompt or record.prompt, plan)
        slot = record.slot_id if not (record.slot_id or "").startswith(EXTERNAL_PREFIX) else None
        target = TaskTarget(
            slot_id=SlotId(slot) if slot else stored.target.slot_id,
            role=stored.target.role, name=stored.target.name,
        )  # fmt: skip
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                record.id, {TaskState.PENDING_REVIEW}, TaskState.PENDING, now_ms=now_ms(),
                prompt=prompt, result=None, slot_id=None, plan_approved=True,
                target_slot=target.slot_id, attempt_reason=PLAN_APPROVED, events=batch,
            ),
            TaskApproved(task_id=record.id, kind="plan", target=target_info(target)),
        )  # fmt: skip
        if updated is None:
            raise await self._wrong_state(record.id, "pending_review", "approve")
        return updated

    async def reject(self, task_id: TaskId | str, feedback: str) -> RejectOutcome:
        if not feedback.strip():
            raise ValueError("feedback must say what to change")
        check_text(feedback, "feedback")
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            raise TaskNotFound(task_id)
        record = stored.record
        if record.state is not TaskState.PENDING_REVIEW:
            raise await self._wrong_state(task_id, "pending_review", "reject")
        count = record.rejection_count + 1
        original = record.original_prompt or record.prompt
        now = now_ms()
        target = target_info(stored.target)
        if count >= record.max_rejections:
            output = f"rejected {count} time(s), the limit; last feedback: {feedback}"
            failed_result = (record.result or TaskResult.failure(output)).model_copy(
                update={"success": False, "output": output}
            )
            rejected = TaskRejected(
                task_id=record.id, feedback=preview(feedback), requeued=False, attempt=count,
                max_attempts=record.max_rejections, target=target,
            )  # fmt: skip
            updated = await self._events.write(
                lambda batch: self._store.transition_task(
                    record.id, {TaskState.PENDING_REVIEW}, TaskState.FAILED, now_ms=now,
                    result=failed_result, rejection_count=count, events=batch,
                ),
                rejected,
            )  # fmt: skip
            if updated is None:
                raise await self._wrong_state(task_id, "pending_review", "reject")
            self._outcomes.ended(updated)
            return RejectOutcome(
                requeued=False, attempt=count, max_attempts=record.max_rejections, task=updated
            )
        what = "plan" if record.review_kind == "plan" else "result"
        again = " Make a new plan." if what == "plan" else ""
        prompt = (
            f"{original}\n\n---\nA reviewer rejected your previous {what} "
            f"(attempt {count + 1} of {record.max_rejections}).{again} Feedback:\n{feedback}"
        )
        requeued = TaskRejected(
            task_id=record.id, feedback=preview(feedback), requeued=True, attempt=count + 1,
            max_attempts=record.max_rejections, target=target,
        )  # fmt: skip
        updated = await self._events.write(
            lambda batch: self._store.transition_task(
                record.id, {TaskState.PENDING_REVIEW}, TaskState.PENDING, now_ms=now,
                prompt=prompt, rejection_count=count, result=None, slot_id=None,
                attempt_reason=f"rejected: {preview(feedback, 200)}", events=batch,
            ),
            requeued,
        )  # fmt: skip
        if updated is None:
            raise await self._wrong_state(task_id, "pending_review", "reject")
        return RejectOutcome(
            requeued=True, attempt=count + 1, max_attempts=record.max_rejections, task=updated
        )

    async def _wrong_state(
        self, task_id: TaskId | str, expected: str, operation: str
    ) -> ClaudePoolError:
        stored = await self._store.get_task(TaskId(task_id))
        if stored is None:
            return TaskNotFound(task_id)
        return InvalidTaskState(task_id, str(stored.record.state), expected, operation)


def plan_approved_prompt(original: str, plan: str) -> str:
    """What a task whose plan was approved is asked next (its plan is repeated, for a slot
    that cannot continue the conversation that made it)."""
    return (
        f"Your plan was approved. Carry it out now.\n\nThe task:\n{original}\n\nThe plan:\n{plan}"
    )


def _real_path(path: str | Path) -> str:
    # One quick syscall; kept out of the async methods so linters see why it is fine.
    return os.path.realpath(path)


__all__ = ["EXTERNAL_PREFIX", "WAITING_SCAN", "FanOutItem", "RejectOutcome", "TaskQueue"]

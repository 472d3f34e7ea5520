"""The run of one claimed task on one slot, from request to settlement.

:meth:`TaskRunner.run` builds the executor request (the effective config for this task on
this slot, a budget reservation that becomes the CLI's ``--max-budget-usd``, the shared
context appended to the system prompt, the slot's unread messages put before the prompt),
executes it while translating the executor's live events into domain events, and settles:
spend, the slot's new state and the task's one terminal state, in one store write with their
events. A CLI process that died is counted against the slot (restarted with ``--resume`` for
the next task, errored past ``max_restarts``).

Runs are stopped through :meth:`TaskRunner.stop`; a task cancelled or ended by another
process sharing the store is stopped here when its event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from claude_pool.budget import BudgetLedger
from claude_pool.config import EffectiveConfig, effective_config
from claude_pool.dependencies import render_prompt
from claude_pool.errors import (
    BudgetExhausted,
    PoolShutdown,
    StoreDamaged,
    StoreError,
    WorktreeError,
)
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    ContextChanged,
    Event,
    MessageSent,
    SlotRestarted,
    SlotStateChanged,
    SpendRecorded,
    TaskApiRetry,
    TaskCancelled,
    TaskHeldForReview,
    TaskPermissionDenied,
    TaskRequeued,
    TaskStarted,
    TaskTargetInfo,
    TaskText,
    TaskToolUse,
    TaskTurn,
    TaskVerified,
    finished,
    preview,
    task_state_after,
)
from claude_pool.executor.base import (
    EventKind,
    ExecutionRequest,
    Executor,
    ExecutorEvent,
    SlotStart,
)
from claude_pool.lifecycle import Lifecycle
from claude_pool.membership import this_host
from claude_pool.notify import Signal
from claude_pool.outcomes import Outcomes
from claude_pool.ratelimit import RateLimiter
from claude_pool.slot import RunningTask, Slot
from claude_pool.slots import SlotSet
from claude_pool.store.base import Requeue, Store, StoredTask
from claude_pool.types import (
    CommitRange,
    PermissionMode,
    PoolConfig,
    SlotMode,
    SlotState,
    TaskId,
    TaskRecord,
    TaskResult,
    TaskState,
    now_ms,
    unusable_text,
)
from claude_pool.verification import feedback_prompt, verify
from claude_pool.worktree import commit_work, run_git

log = logging.getLogger(__name__)

CHAIN_TAG = "chain:"
"""Tasks of a chain step carry the tag ``chain:<chain id>``."""

SETTLE_RETRY_FIRST_SECS = 0.1
SETTLE_RETRY_MAX_SECS = 5.0
"""A settlement the store refuses is retried after 0.1 s, then twice as long each time, up to
every 5 s, until it is written."""

PLAN_APPROVED = "plan approved"
"""The reason recorded with the planning run of a task whose plan was approved."""

PREVIEW_TAIL = 400
"""A verification's event and re-queue reason show this much of the end of its output."""

_TEXT_CHARS = 2000
"""Longest assistant text a progress event carries."""

_TOOL_DETAIL_KEYS = ("command", "file_path", "path", "pattern", "url", "description")


def chain_of(record: TaskRecord) -> str | None:
    """The chain a task is a step of (from its ``chain:<id>`` tag), if any."""
    for tag in record.tags:
        if tag.startswith(CHAIN_TAG):
            return tag[len(CHAIN_TAG) :]
    return None


class _NotStarted(Exception):
    """A claimed task stopped before its CLI started (cancelled, or timed out waiting)."""


class TaskRunner:
    def __init__(
        self,
        *,
        config: PoolConfig,
        task_timeout_secs: float | None,
        store: Store,
        executor: Callable[[], Executor],
        events: EventLog,
        slots: SlotSet,
        budget: BudgetLedger,
        rate_limits: RateLimiter,
        outcomes: Outcomes,
        lifecycle: Lifecycle,
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]],
    ) -> None:
        self.config = config
        self._lifecycle = lifecycle
        self._spawn = spawn
        """Runs background work in the engine's task group (checks of other processes'
        events against the store, see :meth:`_stop_if_moved`)."""
        self._task_timeout = task_timeout_secs
        self._store = store
        self._executor_of = executor
        self._events = events
        self._slots = slots
        self._budget = budget
        self._rate_limits = rate_limits
        self._outcomes = outcomes
        self._running: dict[TaskId, RunningTask] = {}
        self._context: dict[str, str] | None = None
        self.closing = False
        """Set (:meth:`stop_retrying`) once the pool stops waiting for runs: a settlement the
        store keeps refusing is given up then."""
        self._closing_signal = Signal()
        self.settle_retry_first_secs = SETTLE_RETRY_FIRST_SECS
        self.settle_retry_max_secs = SETTLE_RETRY_MAX_SECS
        self.wants_work: Callable[[Slot], bool] = lambda slot: slot.backlog
        """Whether a slot whose task just ended should ask for more (the engine wires
        :meth:`claude_pool.scheduler.Scheduler.wants_work`)."""
        self._chains: dict[TaskId, str | None] = {}

    # ── what runs here ───────────────────────────────────────────────

    def get(self, task_id: TaskId | str) -> RunningTask | None:
        return self._running.get(TaskId(task_id))

    def running_tasks(self) -> list[RunningTask]:
        return list(self._running.values())

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._running

    def stop(self, task_id: TaskId | str, reason: str) -> RunningTask | None:
        """Ask a run here to stop; the run it was, or None if none runs here."""
        running = self._running.get(TaskId(task_id))
        if running is not None:
            running.stop(reason)
        return running

    def idle_slots(self) -> int:
        """Slots among which what is free of the budget is shared: those that could start a
        task now and those whose task has not reserved its share yet (several slots claim
        side by side), the one asking included."""
        return max(
            1,
            sum(
                1
                for s in self._slots
                if s.running is None or not self._budget.holds(s.running.task_id)
            ),
        )

    # ── one run ──────────────────────────────────────────────────────

    def start(self, slot: Slot, stored: StoredTask) -> RunningTask:
        """Register a task a slot just claimed (at once, so a cancel finds it)."""
        task = stored.record
        running = RunningTask(task_id=task.id, slot_id=slot.id)
        self._running[task.id] = running
        self._chains[task.id] = chain_of(task)
        slot.running = running
        # The claim already marked the slot busy in the store (and its task_claimed event
        # says so: a slot's routine busy/idle changes have no events of their own).
        slot.record = slot.record.model_copy(
            update={"state": SlotState.BUSY, "current_task": task.id}
        )
        slot.looking = False
        return running

    async def run(self, slot: Slot, stored: StoredTask, running: RunningTask) -> None:
        task = stored.record
        result: TaskResult | None = None
        requeue: Requeue | None = None
        try:
            request = await self._build_request(slot, stored, running)
            executor: Executor = self._executor_of()
            self._emit(
                TaskStarted(
                    task_id=task.id,
                    slot_id=slot.id,
                    model=request.config.model,
                    resumed_session=request.session_id is not None,
                )
            )
            log.info(
                "task %s started on slot %s (%s)",
                task.id, slot.id, request.config.model or "default model",
                extra={"task_id": task.id, "slot_id": slot.id},
            )  # fmt: skip
            base = await self._worktree_head(slot, request)
            result = await executor.execute(request, lambda e: self._on_executor_event(running, e))
            if (
                result.success
                and request.config.verify
                and not task.planning
                and not running.cancel.is_set()
            ):
                result, requeue = await self._verify(slot, stored, running, request, result)
            if base is not None:
                result = await self._with_commits(slot, task, base, result)
        except BudgetExhausted as exc:
            self._outcomes.refused(task.id, exc)
            result = TaskResult.failure(str(exc))
        except _NotStarted as exc:
            result = TaskResult.failure(str(exc))
        except asyncio.CancelledError:
            result = TaskResult.failure("cancelled: the pool shut down while the task ran")
            raise
        except Exception as exc:
            log.exception("task %s on slot %s: executor error", task.id, slot.id)
            result = TaskResult.failure(f"internal error while running the task: {exc!r}")
        finally:
            self._rate_limits.task_done(task.id)
            await asyncio.shield(self._settle(slot, stored, running, result, requeue))

    async def _worktree_head(self, slot: Slot, request: ExecutionRequest) -> str | None:
        """The commit the slot's worktree is at, when the task runs there (and git answers)."""
        if slot.record.worktree_path is None or request.one_off:
            return None
        try:
            return (
                await run_git("rev-parse", "HEAD", cwd=Path(slot.record.worktree_path))
            ).stdout.strip()
        except WorktreeError as exc:
            log.warning("task %s: cannot read its worktree's commit: %s", request.task_id, exc)
            return None

    async def _with_commits(
        self, slot: Slot, task: TaskRecord, base: str, result: TaskResult
    ) -> TaskResult:
        """Commit what the run left in the slot's worktree, so that the task's work is exactly
        ``base..head`` on the branch (what merging the task merges), and record that range."""
        worktree = Path(slot.record.worktree_path or "")
        message = (
            f"claude-pool: task {task.id} (attempt {len(task.attempts) + 1})\n\n"
            f"{preview(task.original_prompt or task.prompt, 500)}"
        )
        try:
            head = await commit_work(worktree, message)
            branch = (
                await run_git("symbolic-ref", "-q", "--short", "HEAD", cwd=worktree, check=False)
            ).stdout.strip()
        except WorktreeError as exc:
            log.warning("task %s: committing its work in %s failed: %s", task.id, worktree, exc)
            return result
        earlier = task.attempts[-1].commits if task.attempts else []
        run = CommitRange(branch=branch or f"claude-pool/{slot.id}", base=base, head=head)
        return result.model_copy(update={"commits": [*earlier, run]})

    async def _verify(
        self,
        slot: Slot,
        stored: StoredTask,
        running: RunningTask,
        request: ExecutionRequest,
        result: TaskResult,
    ) -> tuple[TaskResult, Requeue | None]:
        """Run the task's verification command after a successful run: the result with the
        run recorded, and how to queue the task again when it failed with attempts left (a
        failure on the last attempt fails the result)."""
        task = stored.record
        command = request.config.verify
        assert command is not None
        attempt = task.rejection_count + 1
        limit = max(1, task.max_rejections)
        if running.timeout_secs is not None:
            # The verification has its own limit, on top of the run's (the supervisor's
            # stuck-task check reads this).
            running.timeout_secs += self.config.verify_timeout_secs
        check = await verify(
            command, request.cwd, float(self.config.verify_timeout_secs), running.cancel
        )
        self._emit(
            TaskVerified(
                task_id=task.id, slot_id=slot.id, command=command, passed=check.passed,
                exit_code=check.exit_code, output=preview(check.output[-PREVIEW_TAIL:]),
                elapsed_ms=check.elapsed_ms, attempt=attempt, max_attempts=limit,
            )
        )  # fmt: skip
        earlier = [a.verification for a in task.attempts if a.verification is not None]
        result = result.model_copy(update={"verifications": [*earlier, check]})
        if check.passed or running.cancel.is_set():
            return result, None
        log.info(
            "task %s on slot %s: verification %r failed (attempt %d of %d)",
            task.id, slot.id, command, attempt, limit,
            extra={"task_id": task.id, "slot_id": slot.id},
        )  # fmt: skip
        if attempt >= limit:
            how = "timed out" if check.timed_out else f"exited with {check.exit_code}"
            output = (
                f"the verification command `{command}` {how} on attempt {attempt} of {limit}, "
                f"the last; its output ended with:\n{check.output}"
            )
            return result.model_copy(update={"success": False, "output": output}), None
        prompt = feedback_prompt(task.original_prompt or task.prompt, check, attempt + 1, limit)
        requeue = Requeue(
            reason=f"verification failed: {preview(check.output[-PREVIEW_TAIL:], 200)}",
            prompt=prompt,
            rejection_count=attempt,
            slot_id=slot.id if not running.one_shot else None,
        )
        return result, requeue

    async def slot_start(self, slot: Slot) -> SlotStart:
        """What the slot's process is started with ahead of its first task: what a task that
        overrides nothing runs with there (so that the task finds the process fitting)."""
        config = await self._with_shared_context(effective_config(self.config, slot.record.config))
        session = None if slot.mode is SlotMode.EPHEMERAL else slot.record.session_id
        return SlotStart(slot_id=slot.id, config=config, cwd=slot.cwd, session_id=session)

    async def _build_request(
        self, slot: Slot, stored: StoredTask, running: RunningTask
    ) -> ExecutionRequest:
        task = stored.record
        running.timeout_secs = (
            stored.timeout_secs if stored.timeout_secs is not None else self._task_timeout
        )
        config = effective_config(self.config, slot.record.config, task.config)
        if task.planning:
            config = replace(config, permission_mode=PermissionMode.PLAN)
        elsewhere = stored.cwd is not None and Path(stored.cwd) != slot.cwd
        # A conversation resumes only where it was recorded, so a task in another directory
        # runs one-off and leaves the slot's warm process and session alone.
        one_shot = slot.mode is SlotMode.EPHEMERAL or elsewhere
        # A run sent back by its verification, or carrying out an approved plan, continues
        # the conversation that made it.
        last = task.attempts[-1] if task.attempts else None
        fixing = last is not None and (
            last.verification is not None or last.reason == PLAN_APPROVED
        )
        fresh = one_shot or (stored.fresh_session and not fixing)
        session_id = None if fresh else slot.record.session_id
        running.one_shot = elsewhere
        executor = self._executor_of()

        def live() -> int | None:
            # What the slot's live process still allows (a one-off task gets a process of
            # its own): reserved as the cap where it fits, sparing a new process.
            budget_left = getattr(executor, "budget_left", None)
            if elsewhere or budget_left is None:
                return None
            left = budget_left(slot.id, fresh=session_id is None)
            return left if isinstance(left, int) else None

        cap = await self._await_budget(running, config.model, config.max_budget_usd, live)
        if cap is not None:
            config = replace(config, max_budget_usd=cap / 1_000_000)
        config = await self._with_shared_context(config)
        prompt = task.prompt
        if task.depends_on:
            prompt = await render_prompt(self._store, task, prompt)
        prompt = await self._with_messages(slot, running, prompt)
        return ExecutionRequest(
            task_id=task.id,
            slot_id=slot.id,
            prompt=prompt,
            config=config,
            cwd=Path(stored.cwd) if elsewhere and stored.cwd else slot.cwd,
            mode=SlotMode.EPHEMERAL if one_shot else SlotMode.PERSISTENT,
            session_id=session_id,
            one_off=elsewhere,
            timeout_secs=running.timeout_secs,
            cancel=running.cancel,
        )

    async def _await_budget(
        self,
        running: RunningTask,
        model: str | None,
        task_cap_usd: float | None,
        live: Callable[[], int | None],
    ) -> int | None:
        """Reserve the task's budget; waiting for it can be cancelled and counts against the
        task's timeout like the run itself."""
        reserve_it = self._budget.reserve(
            running.task_id, model, task_cap_usd, self.idle_slots, live
        )
        if self.config.budget_microdollars is None:  # nothing to wait for
            return await reserve_it
        reserve = asyncio.ensure_future(reserve_it)
        stop = asyncio.ensure_future(running.cancel.wait())
        try:
            await asyncio.wait(
                {reserve, stop}, timeout=running.timeout_secs,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            stop.cancel()
        if reserve.done():
            return reserve.result()
        # Nothing is reserved until reserve() returns, so stopping it here loses nothing.
        reserve.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reserve
        if running.cancel.is_set():
            raise _NotStarted("cancelled while waiting for budget")
        raise _NotStarted(
            f"timed out after {running.timeout_secs:g}s waiting for budget held by running tasks"
        )

    async def _with_shared_context(self, config: EffectiveConfig) -> EffectiveConfig:
        if self._context is None:  # forgotten whenever a note changes, here or elsewhere
            self._context = self._usable_notes(await self._store.context_list())
        context = self._context
        if not context:
            return config
        notes = "\n".join(f"- {key}: {value}" for key, value in sorted(context.items()))
        block = f"Shared context from the pool coordinator:\n{notes}"
        prompt = f"{config.system_prompt}\n\n{block}" if config.system_prompt else block
        return replace(config, system_prompt=prompt)

    @staticmethod
    def _usable_notes(context: dict[str, str]) -> dict[str, str]:
        """The shared notes that can reach a process: one stored before text was checked (a
        NUL in it, say) is left out, with a warning, instead of failing every task."""
        usable = {}
        for key, value in context.items():
            problem = unusable_text(key) or unusable_text(value)
            if problem is None:
                usable[key] = value
            else:
                log.warning(
                    "shared context %r %s; left out of prompts (set it again)", key, problem
                )
        return usable

    async def _with_messages(self, slot: Slot, running: RunningTask, prompt: str) -> str:
        if not slot.unread_messages:
            return prompt
        messages = await self._store.read_messages(slot.id, drain=False)
        running.delivered_up_to = messages[-1].id if messages else None
        if not messages:
            slot.unread_messages = False
            return prompt
        lines = "\n".join(f"- from {m.from_slot}: {m.content}" for m in messages)
        return f"Messages for you from other slots:\n{lines}\n\n{prompt}"

    # ── live events ──────────────────────────────────────────────────

    def stop_retrying(self) -> None:
        """The pool is closing: a settlement the store refuses is given up (once more, at
        once, then the task stays running in the store for recovery)."""
        self.closing = True
        self._closing_signal.notify()

    def _emit(self, event: Event) -> None:
        if event.task_id is not None:
            event.chain_id = self._chains.get(TaskId(event.task_id))
        self._events.emit(event)

    def _on_executor_event(self, running: RunningTask, event: ExecutorEvent) -> None:
        data = event.data
        base = {"task_id": event.task_id, "slot_id": event.slot_id, "at_ms": event.at_ms}
        self._rate_limits.note_event(event)
        match event.kind:
            case EventKind.ASSISTANT_TEXT:
                text = str(data.get("text") or "").strip()
                if text:
                    self._emit(TaskText(text=preview(text, _TEXT_CHARS), **base))
            case EventKind.TOOL_USE:
                self._emit(
                    TaskToolUse(
                        tool=str(data.get("name") or "a tool"), detail=_tool_detail(data), **base
                    )
                )
            case EventKind.TURN:
                self._emit(TaskTurn(turn=int(data.get("turn") or 0), **base))
            case EventKind.API_RETRY:
                status = data.get("status")
                attempt = data.get("attempt")
                retries = data.get("max_retries")
                self._emit(
                    TaskApiRetry(
                        status=status if isinstance(status, int) else None,
                        attempt=attempt if isinstance(attempt, int) else None,
                        max_retries=retries if isinstance(retries, int) else None,
                        delay_ms=int(data.get("delay_ms") or 0),
                        error=preview(str(data.get("error") or "")),
                        **base,
                    )
                )
            case EventKind.PERMISSION_DENIED:
                self._emit(
                    TaskPermissionDenied(
                        tool=str(data.get("tool") or "a tool"),
                        reason=preview(str(data.get("reason") or "")),
                        **base,
                    )
                )
            case EventKind.PROCESS_EXITED:
                running.crashed = True
            case _:
                pass

    def on_event(self, event: Event) -> None:
        """Bus listener: what other processes (and this one) changed that a run cares about."""
        match event:
            case ContextChanged():
                self._context = None
            case MessageSent(to_slot=to_slot):
                if to_slot in self._slots:
                    self._slots.get(to_slot).unread_messages = True
            case _ if event.worker_id != self._events.worker_id and event.task_id is not None:
                running = self._running.get(TaskId(event.task_id))
                state = task_state_after(event)
                if running is not None and state is not None and state is not TaskState.RUNNING:
                    with contextlib.suppress(PoolShutdown):  # closing: the drain ends it
                        self._spawn(self._stop_if_moved(running, state), "pool-event-check")

    async def _stop_if_moved(self, running: RunningTask, state: TaskState) -> None:
        """Another process's event says a task running here became ``state``: stop the run if
        the store agrees. Events of other processes arrive late, so the event may predate this
        run (the requeue by the process that recovered the task, before this one claimed it
        again): the store, not the event, says whether the run is still the task's."""
        try:
            stored = await self._store.get_task(running.task_id)
        except Exception as exc:
            log.warning("task %s: cannot read it (%s); stopping it as %s", running.task_id,
                        exc, state)  # fmt: skip
            stored = None
        else:
            if (
                stored is not None
                and stored.record.state is TaskState.RUNNING
                and stored.claimed_by == self._events.worker_id
            ):
                return  # still this run's: the event was about an earlier one
        if stored is not None and (
            stored.record.state in (TaskState.PENDING, TaskState.RUNNING)
            and stored.claimed_by != self._events.worker_id
        ):
            running.taken_away = True
        now = stored.record.state if stored is not None else state
        where = "on another run" if now is TaskState.RUNNING else "elsewhere"
        running.stop(f"task became {now} {where}")

    # ── settling ─────────────────────────────────────────────────────

    async def _settle(
        self,
        slot: Slot,
        stored: StoredTask,
        running: RunningTask,
        result: TaskResult | None,
        requeue: Requeue | None = None,
    ) -> None:
        """Record a finished run: spend, slot state, the task's one terminal state (or, with
        ``requeue``, the task back in the queue)."""
        task = stored.record
        result = result or TaskResult.failure("the task ended without a result")
        try:
            if result.success and running.delivered_up_to is not None:
                # Only what this task's prompt carried: later messages wait for the next task.
                await self._store.read_messages(
                    slot.id, drain=True, up_to_id=running.delivered_up_to
                )
            if running.cancel.is_set() and not result.success:
                # (A run that succeeded just as the cancel came stays completed: it is done.)
                target = TaskState.CANCELLED
                reason = running.cancel_reason or "cancelled"
                result = result.model_copy(
                    update={"success": False, "output": _join(reason, result.output)}
                )
            elif requeue is not None:
                target = TaskState.PENDING
            elif result.success:
                held = task.review_required or task.planning
                target = TaskState.PENDING_REVIEW if held else TaskState.COMPLETED
            else:
                target = TaskState.FAILED
            session = slot.record.session_id
            if slot.mode is SlotMode.EPHEMERAL:
                session = None
            elif result.session_id and not running.one_shot and not running.crashed:
                # A run that died may never have saved its conversation: keep the last one
                # known to be resumable.
                session = result.session_id
            slot_fields: dict[str, Any] = {
                "state": SlotState.IDLE,
                "current_task": None,
                "session_id": session,
                "session_cwd": str(slot.cwd) if session is not None else None,
                "session_host": this_host() if session is not None else None,
            }
            slot_fields.update(self._crash_accounting(slot, running, result))
            completed = 1 if result.success and requeue is None else 0
            always = self._settle_events(slot, task.id, result, slot_fields)
            outcome = [
                _outcome_event(task.id, slot.id, target, result, running, task.planning)
                if requeue is None
                else TaskRequeued(
                    task_id=task.id, slot_id=slot.id, reason=requeue.reason,
                    target=TaskTargetInfo(
                        slot_id=requeue.slot_id or stored.target.slot_id,
                        role=stored.target.role, name=stored.target.name,
                    ),
                )
            ]  # fmt: skip
            outcome[0].chain_id = self._chains.get(task.id)
            now = now_ms()

            def settle(batch: list[Event]) -> Any:
                split = len(batch) - len(outcome)
                return self._store.settle_task(
                    task.id,
                    set() if running.taken_away else {TaskState.RUNNING},
                    target,
                    now_ms=now,
                    result=result,
                    slot_id=slot.id,
                    spend=result.cost_microdollars,
                    tasks_completed=completed,
                    slot_fields=slot_fields,
                    always_events=batch[:split],
                    events=batch[split:],
                    requeue=requeue if target is TaskState.PENDING else None,
                )

            moved = await self._write_settlement(task.id, settle, [*always, *outcome])
            _log_outcome(task.id, slot.id, target, result)
            if moved and target.is_terminal:
                self._outcomes.ended(task.model_copy(update={
                    "state": target, "result": result, "slot_id": slot.id,
                    "completed_at_ms": now,
                }))  # fmt: skip
            slot.record = slot.record.model_copy(
                update={
                    **slot_fields,
                    "tasks_completed": slot.record.tasks_completed + completed,
                    "cost_microdollars": slot.record.cost_microdollars + result.cost_microdollars,
                }
            )
            if not moved and not running.taken_away:
                # Someone else ended it first (e.g. a cancel from another process): keep their
                # state, but attach what the run actually cost and said.
                await self._store.transition_task(
                    task.id,
                    {TaskState.CANCELLED},
                    TaskState.CANCELLED,
                    now_ms=now,
                    result=result.model_copy(update={"success": False}),
                )
        except StoreError as exc:
            log.error(
                "task %s: its result could not be recorded (%s); it stays running in the store "
                "until recovery re-queues or fails it",
                task.id,
                exc,
            )
        except Exception:
            log.exception("task %s: recording its result failed", task.id)
        finally:
            self._budget.settled(task.id)
            slot.running = None
            slot.looking = self.wants_work(slot)
            slot.last_active_ms = now_ms()
            self._running.pop(task.id, None)
            self._chains.pop(task.id, None)
            running.finished.set()
            self._slots.changed.notify()

    async def _write_settlement(
        self, task_id: TaskId, settle: Callable[[list[Event]], Any], events: list[Event]
    ) -> bool:
        """Write a finished run's settlement, retrying with growing pauses while the store
        fails (a full disk, a locked file): the result is kept until it is written, and the
        slot takes no other task meanwhile. One log line when it starts failing, one when it
        works again."""
        pause = self.settle_retry_first_secs
        failures = 0
        while True:
            closing = self._closing_signal.ticket()
            try:
                moved: bool = await self._events.write(settle, *events)
            except StoreDamaged as exc:
                self._lifecycle.fail(exc)  # no retry can help
                raise
            except StoreError as exc:
                failures += 1
                if self.closing:
                    raise
                if failures == 1:
                    log.error(
                        "task %s: recording its result failed (%s); retrying until it is "
                        "written, the slot waits meanwhile",
                        task_id,
                        exc,
                    )
                await Signal.wait(closing, pause)  # the pool closing ends the wait
                pause = min(pause * 2, self.settle_retry_max_secs)
                continue
            if failures:
                log.warning(
                    "task %s: its result was recorded after %d failed attempts", task_id, failures
                )
            return moved

    def _settle_events(
        self, slot: Slot, task_id: TaskId, result: TaskResult, fields: dict[str, Any]
    ) -> list[Event]:
        """Events that go with the settlement whatever the task's state became: spend, the
        slot's new state, a restart."""
        events: list[Event] = []
        chain = self._chains.get(task_id)
        if result.cost_microdollars:
            events.append(
                SpendRecorded(
                    task_id=task_id,
                    slot_id=slot.id,
                    chain_id=chain,
                    microdollars=result.cost_microdollars,
                )
            )
        if fields["state"] is not SlotState.IDLE:
            # Idle again is what the task's own ending event says; anything else is news.
            events.append(
                SlotStateChanged(
                    slot_id=slot.id,
                    state=fields["state"].value,
                    previous=slot.record.state.value,
                    current_task=None,
                )
            )
        if "restart_count" in fields:
            events.append(
                SlotRestarted(
                    slot_id=slot.id,
                    restart_count=fields["restart_count"],
                    reason="its CLI process died under a task; it resumes for the next one",
                )
            )
        return events

    def _crash_accounting(
        self, slot: Slot, running: RunningTask, result: TaskResult
    ) -> dict[str, Any]:
        """A dead CLI process is restarted (with --resume) for the next task, up to
        ``max_restarts`` crashes in a row; past that the slot is errored."""
        if not running.crashed:
            if result.success:
                slot.crash_streak = 0
            return {}
        slot.crash_streak += 1
        if slot.crash_streak > self.config.max_restarts:
            log.error(
                "slot %s: its CLI process died %d times in a row; the slot is now errored",
                slot.id,
                slot.crash_streak,
            )
            return {"state": SlotState.ERRORED}
        log.warning("slot %s: its CLI process died; it restarts for the next task", slot.id)
        return {"restart_count": slot.record.restart_count + 1}


def _outcome_event(
    task_id: TaskId,
    slot_id: str,
    state: TaskState,
    result: TaskResult,
    running: RunningTask,
    planning: bool = False,
) -> Event:
    if state is TaskState.CANCELLED:
        return TaskCancelled(
            task_id=task_id,
            slot_id=slot_id,
            reason=running.cancel_reason or "cancelled",
            cost_microdollars=result.cost_microdollars,
            was_running=True,
        )
    if state is TaskState.PENDING_REVIEW:
        return TaskHeldForReview(
            task_id=task_id,
            slot_id=slot_id,
            kind="plan" if planning else "result",
            cost_microdollars=result.cost_microdollars,
            turns_used=result.turns_used,
            elapsed_ms=result.elapsed_ms,
            model=result.model,
            output=preview(result.output),
        )
    return finished(task_id, state, result, slot_id)


def _log_outcome(task_id: TaskId, slot_id: str, state: TaskState, result: TaskResult) -> None:
    """One log line per finished run: state, cost, turns, time, and why it failed."""
    figures = (
        f"${result.cost_microdollars / 1_000_000:.6f}, {result.turns_used} turns, "
        f"{result.elapsed_ms / 1000:.1f}s"
    )
    extra = {
        "task_id": task_id,
        "slot_id": slot_id,
        "state": str(state),
        "cost_microdollars": result.cost_microdollars,
    }
    if result.success:
        log.info("task %s %s on slot %s (%s)", task_id, state, slot_id, figures, extra=extra)
    else:
        # A cancel was asked for (by a caller, a drain): worth a line, not a warning.
        level = logging.INFO if state is TaskState.CANCELLED else logging.WARNING
        log.log(
            level, "task %s %s on slot %s (%s): %s",
            task_id, state, slot_id, figures, preview(result.output, 300), extra=extra,
        )  # fmt: skip


def _tool_detail(data: dict[str, Any]) -> str:
    tool_input = data.get("input")
    if isinstance(tool_input, dict):
        for key in _TOOL_DETAIL_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str):
                return preview(value, 80)
    return ""


def _join(reason: str, output: str) -> str:
    return f"{reason}: {output}" if output and output != reason else reason


__all__ = ["CHAIN_TAG", "TaskRunner", "chain_of"]

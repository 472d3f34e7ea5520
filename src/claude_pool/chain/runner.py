"""Chains, the runner: drives each chain of one pool, step by step, as pool tasks.

It works through a small :class:`TaskPort` (submit, wait, cancel: what ``TaskQueue`` offers)
and the store's chain role, so it knows nothing of the pool facade. Each step attempt is a
task submitted with ``cwd`` = the chain's directory (so it runs one-shot there, in a fresh
session). The chain's document in the store is updated at every change, with the chain's
events, so a pool opened on the same store shows its progress and resumes chains whose pool
died (re-attaching to a step's task that is still queued or running, or taking its result).
Waiting for a chain that runs in another process wakes on its ``chain_finished`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from claude_pool.chain.model import (
    CLONE_DIR,
    ChainIsolation,
    ChainResult,
    ChainSpec,
    ChainState,
    ChainStep,
    OutputVarError,
    SkillResolver,
    StepAttempt,
    StepResult,
    StepState,
    extract_vars,
    new_chain_id,
    substitute,
)
from claude_pool.config import merge_overrides
from claude_pool.errors import (
    ChainNotFound,
    ClaudePoolError,
    PoolShutdown,
    TaskNotFound,
    WorktreeError,
)
from claude_pool.eventlog import EventLog
from claude_pool.events import (
    ChainFinished,
    ChainStarted,
    ChainStepFinished,
    ChainStepStarted,
    Event,
    TaskText,
)
from claude_pool.lifecycle import Lifecycle
from claude_pool.runner import CHAIN_TAG
from claude_pool.store.base import ChainStore
from claude_pool.task_port import TaskPort
from claude_pool.types import TaskOverrides, TaskState, now_ms
from claude_pool.worktree import WorktreeManager, WorktreeReport, worktree_event

log = logging.getLogger(__name__)

CHAIN_LISTENS_TO = frozenset({"task_text", "chain_started", "chain_step_started", "chain_finished"})
"""The event types :meth:`ChainRunner.on_event` acts on."""

ORPHAN_LOOK_EVERY_SECS = 60.0
"""How often a pool reads every unfinished chain of the store to find orphans even when no
other process's chain is known to be open (the events say so in between)."""


class _Interrupted(Exception):
    """The pool is shutting down under the chain: it stays ``running`` in the store."""


class _TakenOver(Exception):
    """A save was refused: another worker took the chain over (``claim_chain``, e.g. after
    this pool's heartbeat went stale, or ``cancel_chain`` from another pool). This runner stops
    driving it and leaves the stored document alone."""


@dataclass
class _Run:
    spec: ChainSpec
    result: ChainResult
    resolver: SkillResolver | None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    partial: list[str] = field(default_factory=list)
    started_here: set[str] = field(default_factory=set)
    """Ids of the step tasks this runner submitted (not a previous pool's)."""
    taken_over: bool = False
    """Another worker owns the chain now: this runner stopped driving it."""

    def cancelling(self) -> bool:
        # A method, not the attribute: it changes while the runner awaits.
        return self.cancel_requested

    def snapshot(self) -> ChainResult:
        return self.result.model_copy(deep=True, update={"partial_output": "\n".join(self.partial)})


Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class ChainRunner:
    """Runs the chains of one pool: in the pool's task group, one asyncio task per chain."""

    def __init__(
        self,
        *,
        tasks: TaskPort,
        store: ChainStore,
        events: EventLog,
        spawn: Spawn,
        worktrees: Callable[[], Awaitable[WorktreeManager]],
        cwd: Path,
        lifecycle: Lifecycle,
    ) -> None:
        self._tasks = tasks
        self._store = store
        self._events = events
        self._spawn = spawn
        self._worktrees = worktrees
        self._cwd = cwd
        self._lifecycle = lifecycle
        self._live: dict[str, _Run] = {}
        self._by_task: dict[str, _Run] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._foreign_open: set[str] = set()
        """Chains of other pool processes, unfinished when last seen (from the store at the last
        full look, then from their events): the only ones that can become orphans."""
        self._looked_at: float | None = None
        """When (loop time) the store's unfinished chains were last read in full."""

    def _accepting(self) -> bool:
        return self._lifecycle.accepting

    @property
    def _me(self) -> str:
        return self._events.worker_id

    # ── public operations ───────────────────────────────────────────

    async def submit(self, spec: ChainSpec, resolver: SkillResolver | None) -> str:
        if any(step.prompt is None for step in spec.steps) and resolver is None:
            raise ValueError("this chain has skill steps but no skill resolver was given")
        names = spec.step_names()
        result = ChainResult(
            id=new_chain_id(),
            name=spec.name,
            isolation=spec.isolation,
            steps=[StepResult(name=n, index=i) for i, n in enumerate(names)],
            tags=list(spec.tags),
        )
        run = _Run(spec=spec, result=result, resolver=resolver)
        started = ChainStarted(chain_id=result.id, name=spec.name, steps=names)
        await self._save(run, take=True, events=[started])
        self._start(run)
        return result.id

    def may_have_orphans(self) -> bool:
        """Whether :meth:`resume_orphans` has anything to look at: another process's chain
        that was unfinished when last seen, or a full look due (every
        ``ORPHAN_LOOK_EVERY_SECS``, in case an event was missed); otherwise the store is not
        read at all."""
        if self._foreign_open or self._looked_at is None:
            return True
        return asyncio.get_running_loop().time() - self._looked_at >= ORPHAN_LOOK_EVERY_SECS

    async def resume_orphans(
        self, live_workers: set[str], resolver: SkillResolver | None
    ) -> list[str]:
        """Resume the chains left pending or running by pool processes that are not alive.

        Each is taken over with the store's compare-and-set :meth:`~Store.claim_chain` from
        the owner it was seen with, so of several pools doing this at once (or one pool
        twice), exactly one runs it. Chains this pool owns are never taken over here: they
        are running here, or were stopped by this pool's drain."""
        me = self._me
        resumed: list[str] = []
        looked_at = asyncio.get_running_loop().time()
        still_open: set[str] = set()
        for state in (ChainState.RUNNING, ChainState.PENDING):
            for doc in await self._store.list_chains(state.value, limit=1_000_000):
                owner = doc.get("owner")
                chain_id = str(doc.get("result", {}).get("id", ""))
                if chain_id in self._live or owner == me:
                    continue
                still_open.add(chain_id)
                if owner in live_workers:
                    continue
                if not self._accepting():
                    return resumed  # draining: leave it to a pool that stays
                if not await self._store.claim_chain(chain_id, owner, me, now_ms()):
                    continue  # another pool took it over first, or its owner saved meanwhile
                fresh = await self._store.get_chain(chain_id)  # the latest progress
                try:
                    spec = ChainSpec.model_validate((fresh or {})["spec"])
                    result = ChainResult.model_validate((fresh or {})["result"])
                except (KeyError, ValueError) as exc:
                    log.error("chain %s: its stored progress is unreadable (%s)", chain_id, exc)
                    continue
                if result.state.is_terminal or chain_id in self._live:
                    continue
                log.warning(
                    "resuming chain %s left %s by pool process %s (step %s)",
                    chain_id,
                    result.state,
                    owner,
                    result.current_step_name or "none started",
                )
                run = _Run(spec=spec, result=result, resolver=resolver)
                try:
                    await self._save(run)
                except _TakenOver:
                    continue  # claimed again by another pool meanwhile
                self._start(run)
                resumed.append(chain_id)
                still_open.discard(chain_id)
        self._foreign_open = still_open
        self._looked_at = looked_at
        return resumed

    async def get(self, chain_id: str) -> ChainResult:
        run = self._live.get(chain_id)
        if run is not None:
            return run.snapshot()
        doc = await self._store.get_chain(chain_id)
        if doc is None:
            raise ChainNotFound(chain_id)
        return ChainResult.model_validate(doc["result"])

    async def list_chains(
        self, state: ChainState | None = None, limit: int = 100, offset: int = 0
    ) -> list[ChainResult]:
        docs = await self._store.list_chains(
            state.value if state is not None else None, limit, offset
        )
        results = []
        for doc in docs:
            result = ChainResult.model_validate(doc["result"])
            run = self._live.get(result.id)
            results.append(run.snapshot() if run is not None else result)
        return results

    async def wait(self, chain_id: str, timeout: float | None = None) -> ChainResult:
        """Wait until the chain ends (or, if it runs here, until it stops running here)."""
        async with asyncio.timeout(timeout):
            while True:
                run = self._live.get(chain_id)
                if run is not None:
                    await run.done.wait()
                    if not run.taken_over:
                        return run.snapshot()
                    continue  # another pool runs it now: follow the store
                # It runs in another pool process: its chain_finished event wakes this (or
                # its taking over here, after that process died).
                future = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(chain_id, []).append(future)
                try:
                    result = await self.get(chain_id)
                    if result.state.is_terminal:
                        return result
                    if self._lifecycle.closed:
                        raise PoolShutdown("the pool closed before the chain finished")
                    await future
                finally:
                    waiting = self._waiters.get(chain_id)
                    if waiting is not None and future in waiting:
                        waiting.remove(future)
                        if not waiting:
                            del self._waiters[chain_id]

    def _wake(self, chain_id: str) -> None:
        for future in self._waiters.pop(chain_id, ()):
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        """The pool closed: every waiter looks once more."""
        for chain_id in list(self._waiters):
            self._wake(chain_id)

    async def cancel(self, chain_id: str) -> ChainResult:
        run = self._live.get(chain_id)
        if run is None:
            return await self._cancel_elsewhere(chain_id)
        run.cancel_requested = True
        task_id = run.result.current_task_id
        if task_id is not None:
            await self._tasks.cancel(task_id)
        await run.done.wait()
        if run.taken_over:
            return await self._cancel_elsewhere(chain_id)
        return run.snapshot()

    async def stop(self) -> tuple[int, list[WorktreeReport]]:
        """The pool is draining: stop every chain running here. They stay ``running`` in the
        store (a pool opened on it later resumes them); their worktrees or clones are finished
        (work kept on the chain's branch, which the resumed chain continues)."""
        runs = list(self._live.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        for run in runs:
            if run.task is not None:
                await asyncio.gather(run.task, return_exceptions=True)
        reports = []
        interrupted = 0
        for run in runs:
            if run.result.state.is_terminal or run.taken_over:
                continue
            run.result.error = (
                "interrupted: the pool drained while the chain ran; a pool opened on the same "
                "store resumes it"
            )
            try:
                # Saved before the workdir is finished: a chain another pool took over keeps
                # its directory, which that pool works in.
                await self._save(run)
                report = await self._finish_workdir(run)
                await self._save(run)
            except _TakenOver:
                await self._give_up(run)
                self._forget(run)
                continue
            interrupted += 1
            if report is not None:
                reports.append(report)
            self._forget(run)
        return interrupted, reports

    # ── driving one chain ───────────────────────────────────────────

    def _start(self, run: _Run) -> None:
        self._live[run.result.id] = run
        run.task = self._spawn(self._drive(run), f"chain-{run.result.id}")
        self._wake(run.result.id)  # a waiter for a chain taken over here follows it here

    def _forget(self, run: _Run) -> None:
        self._live.pop(run.result.id, None)
        self._by_task = {k: v for k, v in self._by_task.items() if v is not run}
        run.done.set()

    async def _drive(self, run: _Run) -> None:
        result = run.result
        try:
            try:
                await self._execute(run)
            except _Interrupted:
                log.info("chain %s: interrupted by the pool shutting down", result.id)
                await self._save(run)
                return
            except (asyncio.CancelledError, _TakenOver):
                raise  # stop(): the chain's record stays as last saved
            except Exception as exc:
                log.exception("chain %s failed unexpectedly", result.id)
                try:
                    self._end(run, ChainState.FAILED, f"internal error while running it: {exc!r}")
                    await self._save(run, events=[_finished(run.result)])
                    await self._finish_workdir(run)
                    await self._save(run)
                except _TakenOver:
                    raise
                except Exception:
                    log.exception("chain %s: recording its failure failed", result.id)
        except _TakenOver:
            await self._give_up(run)
        finally:
            # An interrupted chain stays listed until the drain's stop() finishes its workdir.
            if result.state.is_terminal or run.taken_over:
                self._forget(run)

    async def _give_up(self, run: _Run) -> None:
        """Another worker took the chain over: stop driving it here, without touching its
        stored document or its directory. The step task this runner started is cancelled
        unless the new owner knows it (recorded in the stored document as an attempt of its
        current step: it re-attached to it); the new owner runs the step otherwise."""
        run.taken_over = True
        result = run.result
        mine = {
            attempt.task_id
            for step in result.steps
            for attempt in step.attempts
            if attempt.state == "running" and attempt.task_id in run.started_here
        }
        if result.current_task_id in run.started_here:
            mine.add(result.current_task_id)
        owner: object = None
        try:
            doc = await self._store.get_chain(result.id)
        except Exception:
            log.exception("chain %s: reading the new owner's progress failed", result.id)
            doc = None
            mine.clear()  # unknown whether the new owner uses them: leave them running
        if doc is not None:
            owner = doc.get("owner")
            mine -= _current_step_tasks(doc)
        log.warning(
            "chain %s was taken over by pool process %s: stopped running it here%s",
            result.id,
            owner,
            f" (cancelling its step task {', '.join(sorted(mine))})" if mine else "",
        )
        for task_id in sorted(mine):
            try:
                await self._tasks.cancel(task_id)
            except ClaudePoolError:
                log.exception("chain %s: cancelling its step task %s failed", result.id, task_id)

    async def _execute(self, run: _Run) -> None:
        result = run.result
        if result.state is ChainState.PENDING:
            result.state = ChainState.RUNNING
            result.started_at_ms = now_ms()
            await self._save(run)
        if run.cancel_requested:
            self._end(run, ChainState.CANCELLED, "cancelled before it started")
            await self._save(run, events=[_finished(result)])
            return
        try:
            workdir = await self._prepare_workdir(run)
        except (WorktreeError, OSError) as exc:
            error = f"could not prepare the chain's {result.isolation} directory: {exc}"
            self._end(run, ChainState.FAILED, error)
            await self._save(run, events=[_finished(result)])
            return
        previous = ""
        for index, step in enumerate(result.steps):
            if step.state is StepState.COMPLETED:
                previous = step.output or ""
                continue
            if run.cancelling():
                self._end(run, ChainState.CANCELLED, "cancelled")
                break
            outcome = await self._run_step(run, index, previous, workdir)
            if outcome is StepState.CANCELLED:
                why = f": {step.error}" if step.error and not run.cancelling() else ""
                self._end(run, ChainState.CANCELLED, f"cancelled during step {step.name!r}{why}")
                break
            if outcome is StepState.FAILED:
                self._end(run, ChainState.FAILED, f"step {step.name!r} failed: {step.error}")
                break
            previous = step.output or ""
        else:
            self._end(run, ChainState.COMPLETED, None)
        # The outcome is recorded before the slow git work.
        await self._save(run, events=[_finished(result)])
        await self._finish_workdir(run)
        await self._save(run)

    def _end(self, run: _Run, state: ChainState, error: str | None) -> None:
        result = run.result
        result.state = state
        result.error = error
        result.current_step = result.current_step_name = result.current_task_id = None
        result.completed_at_ms = now_ms()
        for step in result.steps:
            if step.state is StepState.PENDING:
                step.state = StepState.SKIPPED
            elif step.state is StepState.RUNNING:
                step.state = (
                    StepState.CANCELLED if state is ChainState.CANCELLED else StepState.FAILED
                )
                step.completed_at_ms = result.completed_at_ms
        run.partial.clear()

    async def _run_step(
        self, run: _Run, index: int, previous: str, workdir: Path | None
    ) -> StepState:
        result = run.result
        step = result.steps[index]
        spec = run.spec.steps[index]
        step.state = StepState.RUNNING
        step.started_at_ms = step.started_at_ms or now_ms()
        result.current_step = index
        result.current_step_name = step.name
        await self._save(run)
        while True:
            action = _next_action(spec, step.attempts)
            if action == "ok":
                step.state = StepState.COMPLETED
                step.completed_at_ms = now_ms()
                step.error = None
                self._events.emit(_step_finished(result.id, step))
                return StepState.COMPLETED
            if action == "failed":
                step.state = StepState.FAILED
                step.completed_at_ms = now_ms()
                step.error = step.attempts[-1].error if step.attempts else "no attempt ran"
                self._events.emit(_step_finished(result.id, step))
                return StepState.FAILED
            if action == "await":
                attempt = step.attempts[-1]
            else:
                attempt = await self._start_attempt(run, index, previous, workdir, action)
            if attempt.state == "running":
                await self._finish_attempt(run, index, attempt)
            step.cost_microdollars = sum(a.cost_microdollars for a in step.attempts)
            result.total_cost_microdollars = sum(s.cost_microdollars for s in result.steps)
            result.current_task_id = None
            await self._save(run)
            if attempt.state == "interrupted" and not self._accepting():
                raise _Interrupted
            if attempt.state == "cancelled":
                step.error = attempt.error
                step.state = StepState.CANCELLED
                self._events.emit(_step_finished(result.id, step))
                return StepState.CANCELLED

    async def _start_attempt(
        self, run: _Run, index: int, previous: str, workdir: Path | None, action: str
    ) -> StepAttempt:
        result = run.result
        step = result.steps[index]
        spec = run.spec.steps[index]
        recovery = action == "recover"
        step_vars = {s.name: s.vars for s in result.steps[:index]}
        attempt = StepAttempt(recovery=recovery)
        try:
            if recovery:
                assert spec.recovery_prompt is not None
                failed = [a for a in step.attempts if a.state == "failed"]
                error = failed[-1].error if failed else "unknown error"
                prompt = substitute(
                    spec.recovery_prompt,
                    previous_output=previous,
                    step_vars=step_vars,
                    error=error or "unknown error",
                )
                overrides = spec.overrides
            else:
                prompt, overrides = self._step_prompt(run, spec, previous, step_vars)
            task_id = await self._tasks.submit(
                prompt,
                overrides,
                [*run.spec.tags, f"{CHAIN_TAG}{result.id}", f"chain-step:{step.name}"],
                cwd=workdir or self._cwd,
                fresh_session=True,
                timeout=spec.timeout_secs,
                verify=spec.verify,
                depends_on=run.spec.step_dependencies(spec),
            )
        except PoolShutdown as exc:
            raise _Interrupted from exc
        except (ClaudePoolError, ValueError) as exc:
            attempt.state = "failed"
            attempt.error = str(exc)
            step.attempts.append(attempt)
            return attempt
        attempt.task_id = task_id
        run.started_here.add(task_id)
        step.attempts.append(attempt)
        result.current_task_id = task_id
        run.partial.clear()
        self._by_task[task_id] = run
        started = ChainStepStarted(
            chain_id=result.id, task_id=task_id, step=step.name, index=index,
            attempt=len(step.attempts), recovery=recovery,
        )  # fmt: skip
        await self._save(run, events=[started])
        if run.cancel_requested:
            await self._tasks.cancel(task_id)
        return attempt

    def _step_prompt(
        self,
        run: _Run,
        spec: ChainStep,
        previous: str,
        step_vars: Mapping[str, Mapping[str, Any]],
    ) -> tuple[str, TaskOverrides | None]:
        if spec.prompt is not None:
            return substitute(spec.prompt, previous_output=previous, step_vars=step_vars), (
                spec.overrides
            )
        assert spec.skill is not None
        assert run.resolver is not None
        args = {
            k: substitute(v, previous_output=previous, step_vars=step_vars)
            for k, v in spec.args.items()
        }
        try:
            prompt, skill_overrides = run.resolver(spec.skill, args)
        except ClaudePoolError as exc:
            raise ClaudePoolError(f"skill {spec.skill!r}: {exc}") from exc
        return prompt, merge_overrides(skill_overrides, spec.overrides)

    async def _finish_attempt(self, run: _Run, index: int, attempt: StepAttempt) -> None:
        assert attempt.task_id is not None
        step = run.result.steps[index]
        spec = run.spec.steps[index]
        try:
            record = await self._tasks.wait(attempt.task_id)
        except PoolShutdown as exc:
            raise _Interrupted from exc
        except TaskNotFound:
            log.warning(
                "chain %s: the task %s of step %r is gone from the store; running the step again",
                run.result.id,
                attempt.task_id,
                step.name,
            )
            attempt.state = "interrupted"
            return
        finally:
            self._by_task.pop(attempt.task_id, None)
        outcome = record.result
        attempt.cost_microdollars = outcome.cost_microdollars if outcome is not None else 0
        if record.state is TaskState.CANCELLED:
            # Cancelled by cancel_chain, or directly by someone while this pool runs it: the
            # chain is cancelled. Cancelled by a pool that stopped (this one draining, or the
            # one before a restart): the step runs again.
            if run.cancel_requested or (self._accepting() and attempt.task_id in run.started_here):
                attempt.state = "cancelled"
                attempt.error = outcome.output if outcome is not None else "cancelled"
            else:
                attempt.state = "interrupted"
            return
        if record.state is TaskState.COMPLETED and outcome is not None and outcome.success:
            try:
                values = extract_vars(outcome.output, spec.output_vars)
            except OutputVarError as exc:
                attempt.state = "failed"
                attempt.error = str(exc)
                return
            attempt.state = "completed"
            step.output = outcome.output
            step.vars = values
            step.recovered = attempt.recovery
            return
        attempt.state = "failed"
        attempt.error = (
            outcome.output if outcome is not None else f"the task ended {record.state}"
        ) or f"the task ended {record.state} with no output"

    # ── working directories ─────────────────────────────────────────

    async def _prepare_workdir(self, run: _Run) -> Path | None:
        result = run.result
        if result.isolation is ChainIsolation.NONE:
            return None
        manager = await self._worktrees()
        if result.isolation is ChainIsolation.WORKTREE:
            root = await manager.ensure(result.id)
        else:
            root = CLONE_DIR / result.id
            if not (root / ".git").exists():
                root = await manager.clone(root, result.id)
        if result.workdir != str(root):
            result.workdir = str(root)
            await self._save(run)
        return manager.workdir_in(root, self._cwd)

    async def _finish_workdir(self, run: _Run) -> WorktreeReport | None:
        result = run.result
        if result.isolation is ChainIsolation.NONE or result.workdir is None:
            return None
        label = f"chain {result.id}"
        try:
            manager = await self._worktrees()
            if result.isolation is ChainIsolation.WORKTREE:
                branch = manager.branch_for(result.id)
                report = await manager.finish(Path(result.workdir), branch, label)
            else:
                report = await manager.finish_clone(Path(result.workdir), result.id, label)
        except (WorktreeError, OSError) as exc:
            log.exception("%s: cleaning up %s failed; it is left in place", label, result.workdir)
            report = WorktreeReport(
                path=result.workdir,
                branch=WorktreeManager.branch_for(result.id),
                message=f"cleanup failed ({exc}); the directory is left in place",
            )
        result.workdir_report = report
        result.kept_branch = report.branch if report.branch_kept else None
        self._events.emit(worktree_event(report))
        return report

    # ── persistence and events ──────────────────────────────────────

    async def _save(self, run: _Run, *, take: bool = False, events: Iterable[Event] = ()) -> None:
        """Save the chain's progress (with ``events``), if this worker still owns it;
        :class:`_TakenOver` if another one does now. With ``take``, whoever owns it (a new
        chain, or cancelling one no runner here drives)."""
        result = run.snapshot()
        me = self._me
        document = {
            "result": result.model_dump(mode="json"),
            "spec": run.spec.model_dump(mode="json"),
            "owner": me,
        }
        try:
            saved = await self._events.write(
                lambda batch: self._store.upsert_chain(
                    result.id, document, result.state.value, now_ms(),
                    expected_owner=None if take else me, events=batch,
                ),
                *events,
            )  # fmt: skip
        except Exception:
            log.exception("chain %s: saving its progress failed", result.id)
            return
        if not saved:
            raise _TakenOver(result.id)

    async def _cancel_elsewhere(self, chain_id: str) -> ChainResult:
        """Cancel a chain no live runner here drives (another process, or nobody)."""
        doc = await self._store.get_chain(chain_id)
        if doc is None:
            raise ChainNotFound(chain_id)
        spec = ChainSpec.model_validate(doc["spec"])
        result = ChainResult.model_validate(doc["result"])
        if result.state.is_terminal:
            return result
        task_id = result.current_task_id
        run = _Run(spec=spec, result=result, resolver=None)
        self._end(run, ChainState.CANCELLED, "cancelled")
        await self._save(run, take=True, events=[_finished(result)])
        if task_id is not None:
            await self._tasks.cancel(task_id)
        return result

    def on_event(self, event: Event) -> None:
        """Bus listener: a running step's text (partial output), a chain that ended in
        another process (its waiters here wake), another process's chain started or moving on
        (one that may become an orphan)."""
        if isinstance(event, TaskText):
            run = self._by_task.get(event.task_id)
            if run is not None and event.text:
                run.partial.append(event.text)
        elif isinstance(event, ChainFinished):
            self._foreign_open.discard(event.chain_id)
            self._wake(event.chain_id)
        elif isinstance(event, ChainStarted | ChainStepStarted) and event.worker_id != self._me:
            self._foreign_open.add(event.chain_id)


def _finished(result: ChainResult) -> ChainFinished:
    return ChainFinished(
        chain_id=result.id,
        state=result.state.value,
        cost_microdollars=result.total_cost_microdollars,
        error=result.error,
    )


def _step_finished(chain_id: str, step: StepResult) -> ChainStepFinished:
    return ChainStepFinished(
        chain_id=chain_id,
        step=step.name,
        index=step.index,
        state=step.state.value,
        cost_microdollars=step.cost_microdollars,
        error=step.error,
    )


def _current_step_tasks(doc: Mapping[str, Any]) -> set[str]:
    """The task ids a stored chain document records for its current step (its attempts, and
    ``current_task_id``)."""
    result = doc.get("result")
    if not isinstance(result, Mapping):
        return set()
    ids: set[str] = set()
    if isinstance(result.get("current_task_id"), str):
        ids.add(result["current_task_id"])
    index, steps = result.get("current_step"), result.get("steps")
    if isinstance(index, int) and isinstance(steps, list) and 0 <= index < len(steps):
        step = steps[index]
        attempts = step.get("attempts") if isinstance(step, Mapping) else None
        for attempt in attempts if isinstance(attempts, list) else []:
            if isinstance(attempt, Mapping) and isinstance(attempt.get("task_id"), str):
                ids.add(attempt["task_id"])
    return ids


def _next_action(
    spec: ChainStep, attempts: list[StepAttempt]
) -> Literal["run", "recover", "await", "ok", "failed"]:
    """What a step does next, from its attempts so far (the same live and after a restart)."""
    if not attempts:
        return "run"
    last = attempts[-1]
    if last.state == "running":
        return "await"
    if last.state == "completed":
        return "ok"
    if last.state in ("interrupted", "cancelled"):
        # A cancelled attempt in a chain that is still running was cut off by a pool that
        # stopped: run it again.
        return "recover" if last.recovery else "run"
    if last.recovery:
        return "failed"
    failures = sum(1 for a in attempts if not a.recovery and a.state == "failed")
    if failures <= spec.retries:
        return "run"
    return "recover" if spec.recovery_prompt else "failed"


__all__ = ["CHAIN_LISTENS_TO", "ORPHAN_LOOK_EVERY_SECS", "ChainRunner"]

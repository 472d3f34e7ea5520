"""Chains: ordered steps, each run as one pool task, with their progress kept in the store.

A :class:`ChainSpec` lists :class:`ChainStep` s. A step is a ``prompt``, or a ``skill`` with
``args`` (resolved at run time by a :data:`SkillResolver`, so this module does not depend on the
skill registry), with optional :class:`~claude_pool.types.TaskOverrides`, a failure policy
(``retries``; then ``recovery_prompt``, whose success lets the chain go on) and ``output_vars``.

Placeholders (in prompts, skill arguments and recovery prompts):

- ``{previous_output}``: the output of the step before (not allowed in the first step);
- ``{steps.<step>.<var>}``: output variable ``<var>`` of an earlier step ``<step>``; a step's
  ``output_vars`` map a variable name to a dot path into the step's output parsed as JSON
  (``"files": "result.files"``; list items by index, ``"items.0"``). A path that is missing, or
  an output that is not JSON, fails the step (and goes through its failure policy);
- ``{error}``: in a recovery prompt only, why the last attempt failed.

Only these forms are replaced; every other brace is literal and kept byte for byte (JSON
examples, ``{name}``, ``{{``). To write one of the forms literally, double its braces:
``{{previous_output}}`` renders as ``{previous_output}``. Substitution is a single pass: inserted
values are never scanned for placeholders. Variables that are not strings are inserted as JSON.

Isolation (per chain): ``none`` runs the steps in the pool's directory; ``worktree`` (default)
in a git worktree of the chain's own on branch ``claude-pool/<chain id>``; ``clone`` in a
``git clone`` of the repository in a temporary directory (``origin`` keeps the repository's
origin URL). Afterwards the worktree or clone is removed without losing work: see
:mod:`claude_pool.worktree`; ``ChainResult.kept_branch`` names the branch kept.

Each step attempt is a pool task submitted with ``cwd`` = the chain's directory (so it runs
one-shot there, in a fresh session). Its real cost counts, failed and cancelled attempts
included. The chain's document in the store is updated at every change, so a pool opened on
the same store shows its progress and resumes chains whose pool died (re-attaching to a step's
task that is still queued or running, or taking its result).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claude_pool.config import merge_overrides
from claude_pool.errors import (
    ChainNotFound,
    ClaudePoolError,
    PoolShutdown,
    TaskNotFound,
    WorktreeError,
)
from claude_pool.executor.base import EventKind, ExecutorEvent
from claude_pool.types import TaskOverrides, TaskState, now_ms
from claude_pool.worktree import WorktreeManager, WorktreeReport

if TYPE_CHECKING:
    from claude_pool.pool import Pool

log = logging.getLogger(__name__)

SkillResolver = Callable[[str, Mapping[str, str]], tuple[str, TaskOverrides | None]]
"""``(skill name, arguments) -> (prompt, overrides or None)``; raises if the skill is unknown or
the arguments do not fit."""

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_REF = r"steps\.(?P<{p}step>[A-Za-z0-9_-]+)\.(?P<{p}var>[A-Za-z0-9_-]+)"
_PLACEHOLDER = re.compile(
    r"\{\{(?P<escaped>previous_output|error|" + _REF.format(p="e") + r")\}\}"
    r"|\{(?P<name>previous_output|error|" + _REF.format(p="") + r")\}"
)
CLONE_DIR = Path(tempfile.gettempdir()) / "claude-pool-clones"
"""Where ``clone`` isolation puts its clones (one directory per chain id)."""


class ChainIsolation(StrEnum):
    NONE = "none"
    WORKTREE = "worktree"
    CLONE = "clone"


class ChainState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (ChainState.COMPLETED, ChainState.FAILED, ChainState.CANCELLED)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


# ── specs ────────────────────────────────────────────────────────────


class ChainStep(BaseModel):
    """One step: a ``prompt``, or a ``skill`` invoked with ``args`` (a step with both runs the
    prompt, as a workflow step rendered with its skill does)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    """Unique within the chain; defaults to ``step-<n>`` (1-based)."""
    prompt: str | None = None
    skill: str | None = None
    args: dict[str, str] = Field(default_factory=dict)
    overrides: TaskOverrides | None = None
    retries: int = Field(default=0, ge=0)
    """Extra attempts after a failure, before the recovery prompt."""
    recovery_prompt: str | None = None
    """Run once the retries are used up; ``{error}`` is the last failure. If it succeeds, its
    output is the step's output and the chain goes on."""
    output_vars: dict[str, str] = Field(default_factory=dict)
    """Variable name → dot path into the step's JSON output."""
    timeout_secs: float | None = Field(default=None, gt=0)
    """Run-time limit of each attempt (default: the pool's task timeout)."""

    @field_validator("output_vars")
    @classmethod
    def _valid_vars(cls, output_vars: dict[str, str]) -> dict[str, str]:
        for var, path in output_vars.items():
            if not _NAME.match(var):
                raise ValueError(f"output var name {var!r} must be letters, digits, _ and -")
            if not path.strip() or any(not part for part in path.split(".")):
                raise ValueError(f"output var {var!r}: {path!r} is not a dot path")
        return output_vars

    @model_validator(mode="after")
    def _prompt_or_skill(self) -> Self:
        if self.prompt is None and self.skill is None:
            raise ValueError("a step needs a prompt or a skill")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("a step's prompt must not be empty")
        return self

    def templates(self) -> list[str]:
        return ([self.prompt] if self.prompt is not None else []) + list(self.args.values())


class ChainSpec(BaseModel):
    """What to run: ordered steps, how to isolate them, and labels."""

    model_config = ConfigDict(extra="forbid")

    steps: list[ChainStep] = Field(min_length=1)
    isolation: ChainIsolation = ChainIsolation.WORKTREE
    name: str | None = None
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names: list[str] = []
        outputs: dict[str, set[str]] = {}
        for index, step in enumerate(self.steps):
            if step.name is None:
                step.name = f"step-{index + 1}"
            if not _NAME.match(step.name):
                raise ValueError(f"step name {step.name!r} must be letters, digits, _ and -")
            if step.name in names:
                raise ValueError(f"two steps are named {step.name!r}")
            names.append(step.name)
            texts = step.templates() + ([step.recovery_prompt] if step.recovery_prompt else [])
            for text in texts:
                for match in _PLACEHOLDER.finditer(text):
                    name = match["name"]
                    if name == "previous_output" and index == 0:
                        raise ValueError(
                            f"step {step.name!r}: the first step has no {{previous_output}}"
                        )
                    if match["step"] is not None:
                        ref, var = match["step"], match["var"]
                        if ref not in outputs:
                            raise ValueError(
                                f"step {step.name!r}: {{steps.{ref}.{var}}} does not name an "
                                f"earlier step (earlier: {', '.join(outputs) or 'none'})"
                            )
                        if var not in outputs[ref]:
                            raise ValueError(
                                f"step {step.name!r}: step {ref!r} has no output var {var!r} "
                                f"(it declares: {', '.join(sorted(outputs[ref])) or 'none'})"
                            )
            outputs[step.name] = set(step.output_vars)
        return self

    def step_names(self) -> list[str]:
        return [step.name or f"step-{i + 1}" for i, step in enumerate(self.steps)]


# ── results ──────────────────────────────────────────────────────────

AttemptState = Literal["running", "completed", "failed", "cancelled", "interrupted"]


class StepAttempt(BaseModel):
    """One run of a step (a pool task), or of its recovery prompt."""

    task_id: str | None = None
    """None when the task could not even be submitted (e.g. the budget was exhausted)."""
    recovery: bool = False
    state: AttemptState = "running"
    """``interrupted``: the pool stopped under it; it is run again and does not count as a
    failure."""
    cost_microdollars: int = 0
    error: str | None = None


class StepResult(BaseModel):
    name: str
    index: int
    state: StepState = StepState.PENDING
    output: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    """The step's output variables (``{steps.<name>.<var>}``)."""
    attempts: list[StepAttempt] = Field(default_factory=list)
    cost_microdollars: int = 0
    """Every attempt's cost, failed and cancelled ones included."""
    recovered: bool = False
    """The output came from the recovery prompt."""
    error: str | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None


class ChainResult(BaseModel):
    """A chain's progress and outcome."""

    id: str
    name: str | None = None
    state: ChainState = ChainState.PENDING
    isolation: ChainIsolation = ChainIsolation.WORKTREE
    steps: list[StepResult] = Field(default_factory=list)
    current_step: int | None = None
    """Index of the running step."""
    current_step_name: str | None = None
    current_task_id: str | None = None
    partial_output: str = ""
    """Text the running step has produced so far (live in the pool running the chain)."""
    total_cost_microdollars: int = 0
    workdir: str | None = None
    """The worktree or clone the steps run in (None with isolation ``none``)."""
    kept_branch: str | None = None
    """Branch kept after the chain because it holds work found nowhere else."""
    workdir_report: WorktreeReport | None = None
    error: str | None = None
    tags: list[str] = Field(default_factory=list)
    created_at_ms: int = Field(default_factory=now_ms)
    started_at_ms: int | None = None
    completed_at_ms: int | None = None

    @property
    def success(self) -> bool:
        return self.state is ChainState.COMPLETED

    @property
    def output(self) -> str | None:
        """The last step's output once the chain completed."""
        return self.steps[-1].output if self.success and self.steps else None


def new_chain_id() -> str:
    return f"chain-{secrets.token_hex(6)}"


# ── substitution and output variables ────────────────────────────────


def substitute(
    template: str,
    *,
    previous_output: str,
    step_vars: Mapping[str, Mapping[str, Any]],
    error: str | None = None,
) -> str:
    """Fill the known placeholders of ``template`` (see the module docstring). ``{error}`` is a
    placeholder only when ``error`` is given (recovery prompts)."""

    def known(name: str) -> bool:
        return name != "error" or error is not None

    def replace(match: re.Match[str]) -> str:
        escaped = match["escaped"]
        if escaped is not None:
            return "{" + escaped + "}" if known(escaped) else match[0]
        name = match["name"]
        if name == "previous_output":
            return previous_output
        if name == "error":
            return error if error is not None else match[0]
        value = step_vars.get(match["step"], {}).get(match["var"], match[0])
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _PLACEHOLDER.sub(replace, template)


class OutputVarError(ValueError):
    """A step's output has no value at an output var's path."""


def parse_json_output(text: str) -> Any:
    """The JSON value in a step's output: the whole text, else the last fenced ```json block,
    else the first JSON object or array in the text."""
    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    fences = re.findall(r"```(?:json)?\s*\n(.*?)```", text, flags=re.DOTALL)
    for block in reversed(fences):
        try:
            return json.loads(block)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, index)[0]
            except ValueError:
                continue
    raise OutputVarError(f"the step's output is not JSON: {_preview(text)}")


def extract_vars(output: str, output_vars: Mapping[str, str]) -> dict[str, Any]:
    """Each output var's value in the step's JSON output; :class:`OutputVarError` if missing."""
    if not output_vars:
        return {}
    data = parse_json_output(output)
    values: dict[str, Any] = {}
    for var, path in output_vars.items():
        value = data
        for part in path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise OutputVarError(
                    f"output var {var!r}: path {path!r} is not in the step's JSON output "
                    f"(no {part!r} there): {_preview(output)}"
                )
        values[var] = value
    return values


def _preview(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# ── running chains ───────────────────────────────────────────────────


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
        pool: Pool,
        *,
        spawn: Spawn,
        worktrees: Callable[[], Awaitable[WorktreeManager]],
        cwd: Path,
        accepting: Callable[[], bool],
    ) -> None:
        self._pool = pool
        self._spawn = spawn
        self._worktrees = worktrees
        self._cwd = cwd
        self._accepting = accepting
        self._live: dict[str, _Run] = {}
        self._by_task: dict[str, _Run] = {}
        pool.add_listener(self._on_event)

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
        await self._save(run, take=True)
        self._start(run)
        return result.id

    async def resume_orphans(
        self, live_workers: set[str], resolver: SkillResolver | None
    ) -> list[str]:
        """Resume the chains left pending or running by pool processes that are not alive.

        Each is taken over with the store's compare-and-set :meth:`~Store.claim_chain` from
        the owner it was seen with, so of several pools doing this at once (or one pool
        twice), exactly one runs it. Chains this pool owns are never taken over here: they
        are running here, or were stopped by this pool's drain."""
        me = self._pool.worker_id
        resumed: list[str] = []
        for state in (ChainState.RUNNING, ChainState.PENDING):
            for doc in await self._pool.store.list_chains(state.value, limit=1_000_000):
                owner = doc.get("owner")
                chain_id = str(doc.get("result", {}).get("id", ""))
                if chain_id in self._live or owner == me or owner in live_workers:
                    continue
                if not self._accepting():
                    return resumed  # draining: leave it to a pool that stays
                if not await self._pool.store.claim_chain(chain_id, owner, me, now_ms()):
                    continue  # another pool took it over first, or its owner saved meanwhile
                fresh = await self._pool.store.get_chain(chain_id)  # the latest progress
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
        return resumed

    async def get(self, chain_id: str) -> ChainResult:
        run = self._live.get(chain_id)
        if run is not None:
            return run.snapshot()
        doc = await self._pool.store.get_chain(chain_id)
        if doc is None:
            raise ChainNotFound(chain_id)
        return ChainResult.model_validate(doc["result"])

    async def list_chains(
        self, state: ChainState | None = None, limit: int = 100, offset: int = 0
    ) -> list[ChainResult]:
        docs = await self._pool.store.list_chains(
            state.value if state is not None else None, limit, offset
        )
        results = []
        for doc in docs:
            result = ChainResult.model_validate(doc["result"])
            run = self._live.get(result.id)
            results.append(run.snapshot() if run is not None else result)
        return results

    async def wait(self, chain_id: str, timeout: float | None, poll_secs: float) -> ChainResult:
        """Wait until the chain ends (or, if it runs here, until it stops running here)."""
        async with asyncio.timeout(timeout):
            while True:
                run = self._live.get(chain_id)
                if run is not None:
                    await run.done.wait()
                    if not run.taken_over:
                        return run.snapshot()
                    continue  # another pool runs it now: follow the store
                result = await self.get(chain_id)
                if result.state.is_terminal:
                    return result
                await asyncio.sleep(poll_secs)  # runs in another pool process

    async def cancel(self, chain_id: str) -> ChainResult:
        run = self._live.get(chain_id)
        if run is None:
            return await self._cancel_elsewhere(chain_id)
        run.cancel_requested = True
        task_id = run.result.current_task_id
        if task_id is not None:
            await self._pool.cancel(task_id)
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
                    await self._save(run)
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
            doc = await self._pool.store.get_chain(result.id)
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
                await self._pool.cancel(task_id)
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
            await self._save(run)
            return
        try:
            workdir = await self._prepare_workdir(run)
        except (WorktreeError, OSError) as exc:
            error = f"could not prepare the chain's {result.isolation} directory: {exc}"
            self._end(run, ChainState.FAILED, error)
            await self._save(run)
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
                self._end(run, ChainState.CANCELLED, f"cancelled during step {step.name!r}")
                break
            if outcome is StepState.FAILED:
                self._end(run, ChainState.FAILED, f"step {step.name!r} failed: {step.error}")
                break
            previous = step.output or ""
        else:
            self._end(run, ChainState.COMPLETED, None)
        await self._save(run)  # the outcome is recorded before the slow git work
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
                return StepState.COMPLETED
            if action == "failed":
                step.state = StepState.FAILED
                step.completed_at_ms = now_ms()
                step.error = step.attempts[-1].error if step.attempts else "no attempt ran"
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
            task_id = await self._pool.submit(
                prompt,
                overrides,
                [*run.spec.tags, f"chain:{result.id}", f"chain-step:{step.name}"],
                cwd=workdir or self._cwd,
                fresh_session=True,
                timeout=spec.timeout_secs,
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
        await self._save(run)
        if run.cancel_requested:
            await self._pool.cancel(task_id)
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
            record = await self._pool.wait(attempt.task_id)
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
        return report

    # ── persistence and events ──────────────────────────────────────

    async def _save(self, run: _Run, *, take: bool = False) -> None:
        """Save the chain's progress, if this worker still owns it; :class:`_TakenOver` if
        another one does now. With ``take``, whoever owns it (a new chain, or cancelling one
        no runner here drives)."""
        result = run.snapshot()
        me = self._pool.worker_id
        document = {
            "result": result.model_dump(mode="json"),
            "spec": run.spec.model_dump(mode="json"),
            "owner": me,
        }
        try:
            saved = await self._pool.store.upsert_chain(
                result.id,
                document,
                result.state.value,
                now_ms(),
                expected_owner=None if take else me,
            )
        except Exception:
            log.exception("chain %s: saving its progress failed", result.id)
            return
        if not saved:
            raise _TakenOver(result.id)

    async def _cancel_elsewhere(self, chain_id: str) -> ChainResult:
        """Cancel a chain no live runner here drives (another process, or nobody)."""
        doc = await self._pool.store.get_chain(chain_id)
        if doc is None:
            raise ChainNotFound(chain_id)
        spec = ChainSpec.model_validate(doc["spec"])
        result = ChainResult.model_validate(doc["result"])
        if result.state.is_terminal:
            return result
        task_id = result.current_task_id
        run = _Run(spec=spec, result=result, resolver=None)
        self._end(run, ChainState.CANCELLED, "cancelled")
        await self._save(run, take=True)
        if task_id is not None:
            await self._pool.cancel(task_id)
        return result

    def _on_event(self, event: ExecutorEvent) -> None:
        if event.kind is not EventKind.ASSISTANT_TEXT:
            return
        run = self._by_task.get(event.task_id)
        text = event.data.get("text")
        if run is not None and isinstance(text, str) and text:
            run.partial.append(text)


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


__all__ = [
    "ChainIsolation",
    "ChainResult",
    "ChainRunner",
    "ChainSpec",
    "ChainState",
    "ChainStep",
    "SkillResolver",
    "StepAttempt",
    "StepResult",
    "StepState",
    "extract_vars",
    "new_chain_id",
    "parse_json_output",
    "substitute",
]

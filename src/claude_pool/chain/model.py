"""Chains, the model: specs, results, placeholders and output variables (no I/O here).

Chains are ordered steps, each run as one pool task, with their progress kept in the store.

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

import json
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claude_pool.types import TaskOverrides, check_texts, now_ms
from claude_pool.worktree import WorktreeReport

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
    """Where a chain's steps work: in place (none), in a git worktree, or in a clone."""

    NONE = "none"
    WORKTREE = "worktree"
    CLONE = "clone"


class ChainState(StrEnum):
    """Where a chain is: pending, running, or ended (completed, failed, cancelled)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed and cancelled never change again."""
        return self in (ChainState.COMPLETED, ChainState.FAILED, ChainState.CANCELLED)


class StepState(StrEnum):
    """Where one step of a chain is; a step is skipped when the chain ended before it ran."""

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
    verify: str | None = None
    """Verification command of the step's task, run in the chain's working directory once it
    completes (see ``Pool.submit(verify=)``); over the slot's and the pool's."""
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    """Tasks (already submitted) the step's task waits for, after the chain's own
    ``depends_on``; its prompt may use ``{{<task id>.output}}`` for their outputs (see
    ``Pool.submit(depends_on=)``)."""

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
    def _usable_texts(self) -> Self:
        for name in (
            "name", "prompt", "skill", "args", "recovery_prompt", "output_vars", "verify",
            "depends_on",
        ):  # fmt: skip
            check_texts(getattr(self, name), f"step {name}")
        return self

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
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    """Tasks (already submitted) that must complete before the chain's steps run: each step's
    task waits for them (and for its own ``depends_on``). If one fails or is cancelled, the
    step's task is cancelled with a reason naming it, and the chain ends cancelled."""

    def step_dependencies(self, step: ChainStep) -> list[str]:
        """What the task of ``step`` waits for: the chain's dependencies, then the step's."""
        return list(dict.fromkeys([*self.depends_on, *step.depends_on]))

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
    """One step's progress and outcome: state, output and output variables, attempts and what
    they cost."""

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


__all__ = [
    "CLONE_DIR",
    "AttemptState",
    "ChainIsolation",
    "ChainResult",
    "ChainSpec",
    "ChainState",
    "ChainStep",
    "OutputVarError",
    "SkillResolver",
    "StepAttempt",
    "StepResult",
    "StepState",
    "extract_vars",
    "new_chain_id",
    "parse_json_output",
    "substitute",
]

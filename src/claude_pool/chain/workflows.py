"""Workflows: named, parameterised chains, defined as data; and turning skills and workflows
into chain steps (:func:`skill_resolver`, :func:`workflow_chain`).

A :class:`Workflow` declares parameters and ordered steps. Each step is a prompt template or a
skill invocation (skill name + argument templates), with optional task overrides and
``output_vars`` (name → dot path into the step's JSON output). :meth:`Workflow.render` fills in
the parameters and returns concrete steps, in the plain shape the chain engine consumes::

    {"name": str, "prompt": str | None, "skill": str | None, "args": dict[str, str],
     "overrides": dict | None, "output_vars": dict[str, str] | None}

Templates use the skill placeholder rules (:mod:`claude_pool.skills.template`): ``{param}`` for a
declared parameter, ``{{param}}`` for literal braces around a parameter name, other braces
literal. Two forms are left for the chain engine to fill at run time: ``{previous_output}`` (the
prior step's output) and ``{steps.<step>.<var>}`` (a step's output variable). Unlike skills,
workflows are strict: any other ``{identifier}`` is a definition error, since in authored data
it is almost always a typo.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from claude_pool.chain.model import ChainSpec, ChainStep, SkillResolver
from claude_pool.config import merge_overrides
from claude_pool.errors import ClaudePoolError
from claude_pool.skills import SkillRegistry
from claude_pool.skills.template import NAME_PATTERN, TemplateValues, references, render
from claude_pool.types import TaskOverrides

log = logging.getLogger(__name__)

PREVIOUS_OUTPUT = "previous_output"
"""Filled by the chain engine with the prior step's output."""

_STEP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_PARAM_NAME = re.compile(rf"^{NAME_PATTERN}$")
_STEP_REF = re.compile(r"^steps\.(?P<step>[A-Za-z0-9_-]+)\.(?P<var>[A-Za-z0-9_-]+)$")


class WorkflowError(ClaudePoolError):
    """Base of the workflow errors (also raised for an invalid definition)."""


class WorkflowNotFound(WorkflowError):
    def __init__(self, name: str, available: Sequence[str] = ()) -> None:
        self.name = name
        self.available = list(available)
        close = difflib.get_close_matches(name, self.available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        known = f"; known workflows: {', '.join(self.available)}" if self.available else ""
        super().__init__(f"no workflow named {name!r}{hint or known}")


class WorkflowParameterError(WorkflowError, ValueError):
    """Parameters do not fit the workflow: ``missing`` required ones or ``unknown`` ones."""

    def __init__(
        self,
        workflow: str,
        *,
        missing: Sequence[str],
        unknown: Sequence[str],
        expected: Sequence[str],
    ) -> None:
        self.workflow = workflow
        self.missing = list(missing)
        self.unknown = list(unknown)
        problems = []
        if self.missing:
            problems.append(f"missing required parameter(s) {', '.join(self.missing)}")
        if self.unknown:
            problems.append(f"unknown parameter(s) {', '.join(self.unknown)}")
        super().__init__(
            f"workflow {workflow!r}: {'; '.join(problems)}; it takes: {', '.join(expected)}"
        )


class WorkflowParameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    required: bool = False
    default: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _PARAM_NAME.match(name) or name in {PREVIOUS_OUTPUT, "steps"}:
            raise ValueError(
                f"parameter name {name!r} must be an identifier (letters, digits, _ and -) and "
                f"not {PREVIOUS_OUTPUT!r} or 'steps'"
            )
        return name


class WorkflowStep(BaseModel):
    """One step: a ``prompt``, or a ``skill`` with ``args``.

    In a definition exactly one of ``prompt`` and ``skill`` is set. A step rendered with a skill
    registry has both: ``prompt`` is the skill's rendered prompt (what to run) and ``skill``
    records where it came from. Consumers run ``prompt`` when it is set and otherwise resolve
    ``skill`` with ``args``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    prompt: str | None = None
    skill: str | None = None
    args: dict[str, str] = Field(default_factory=dict)
    overrides: dict[str, Any] | None = None
    """``TaskOverrides`` fields, as a plain dict."""
    output_vars: dict[str, str] | None = None
    """Variable name → dot path into this step's JSON output (``{steps.<step>.<var>}``)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _STEP_NAME.match(name):
            raise ValueError(f"step name {name!r} must be letters, digits, _ and - only")
        return name

    @field_validator("overrides")
    @classmethod
    def _valid_overrides(cls, overrides: dict[str, Any] | None) -> dict[str, Any] | None:
        if overrides is None:
            return None
        unknown = sorted(set(overrides) - set(TaskOverrides.model_fields))
        if unknown:
            raise ValueError(f"unknown override(s) {', '.join(unknown)}")
        TaskOverrides.model_validate(overrides)
        return overrides

    @model_validator(mode="after")
    def _prompt_or_skill(self) -> Self:
        if self.prompt is None and self.skill is None:
            raise ValueError(f"step {self.name!r} needs a prompt or a skill")
        if self.args and self.skill is None:
            raise ValueError(f"step {self.name!r} has args but no skill")
        return self

    def task_overrides(self) -> TaskOverrides | None:
        return TaskOverrides.model_validate(self.overrides) if self.overrides else None

    def templates(self) -> list[str]:
        return ([self.prompt] if self.prompt is not None else []) + list(self.args.values())


class Workflow(BaseModel):
    """A named, parameterised chain of steps."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    parameters: list[WorkflowParameter] = Field(default_factory=list)
    steps: list[WorkflowStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        params = [p.name for p in self.parameters]
        _no_duplicates("parameter", params)
        _no_duplicates("step", [s.name for s in self.steps])
        outputs: dict[str, set[str]] = {}
        for index, step in enumerate(self.steps):
            if (step.prompt is None) == (step.skill is None):
                raise ValueError(f"step {step.name!r} must have either a prompt or a skill")
            for template in step.templates():
                for ref in references(template):
                    problem = _check_reference(ref, params, outputs, first=index == 0)
                    if problem:
                        raise ValueError(f"step {step.name!r}: {problem}")
            outputs[step.name] = set(step.output_vars or ())
        return self

    def render(
        self,
        params: Mapping[str, str | None] | None = None,
        *,
        skills: SkillRegistry | None = None,
    ) -> builtins.list[WorkflowStep]:
        """The steps with the parameters filled in.

        Missing required or unknown parameters raise :class:`WorkflowParameterError`. With
        ``skills``, skill steps are also resolved: ``prompt`` becomes the skill's rendered
        prompt and ``overrides`` the skill's overrides under the step's own (skill errors such
        as :class:`~claude_pool.skills.SkillArgumentError` propagate, noting the step).
        ``{previous_output}`` and ``{steps.<step>.<var>}`` stay for the chain engine.
        """
        values = TemplateValues(named=self._bind(params or {}))
        rendered: builtins.list[WorkflowStep] = []
        for step in self.steps:
            prompt = render(step.prompt, values).text if step.prompt is not None else None
            args = {}
            for key, template in step.args.items():
                text = render(template, values).text
                if text.strip():  # an empty optional parameter leaves the skill argument unset
                    args[key] = text
            concrete = step.model_copy(update={"prompt": prompt, "args": args})
            if skills is not None and step.skill is not None:
                concrete = self._resolve(concrete, skills)
            rendered.append(concrete)
        return rendered

    def _bind(self, params: Mapping[str, str | None]) -> dict[str, str | None]:
        declared = [p.name for p in self.parameters]
        unknown = [k for k in params if k not in declared]
        bound: dict[str, str | None] = {}
        missing = []
        for parameter in self.parameters:
            raw = params.get(parameter.name)
            value = raw if raw is not None and raw.strip() else parameter.default
            if value is None and parameter.required:
                missing.append(parameter.name)
            bound[parameter.name] = value
        if missing or unknown:
            raise WorkflowParameterError(
                self.name, missing=missing, unknown=unknown, expected=declared
            )
        return bound

    def _resolve(self, step: WorkflowStep, skills: SkillRegistry) -> WorkflowStep:
        assert step.skill is not None
        try:
            skill = skills.get(step.skill)
            prompt = skill.render(step.args)
        except ClaudePoolError as exc:
            exc.add_note(f"in step {step.name!r} of workflow {self.name!r}")
            raise
        merged = (
            skill.overrides.model_dump(mode="json", exclude_none=True) if skill.overrides else {}
        )
        merged.update(step.overrides or {})
        return step.model_copy(update={"prompt": prompt, "overrides": merged or None})


def _no_duplicates(what: str, names: Sequence[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{what} names used twice: {', '.join(duplicates)}")


def _check_reference(
    ref: str, params: Sequence[str], outputs: Mapping[str, set[str]], *, first: bool
) -> str | None:
    """Why ``{ref}`` is not allowed here, or None if it is."""
    if ref in params:
        return None
    if ref == PREVIOUS_OUTPUT:
        return "the first step has no {previous_output}" if first else None
    step_ref = _STEP_REF.match(ref)
    if step_ref is not None:
        step, var = step_ref["step"], step_ref["var"]
        if step not in outputs:
            return f"{{{ref}}} refers to {step!r}, which is not an earlier step"
        if var not in outputs[step]:
            return f"{{{ref}}}: step {step!r} has no output variable {var!r}"
        return None
    return (
        f"unknown placeholder {{{ref}}}; declare a parameter named {ref!r} or write "
        f"{{{{{ref}}}}} for literal braces"
    )


ChangeListener = Callable[[], None]


class WorkflowRegistry:
    """The built-in workflows plus ones added at runtime (which win over a built-in of the same
    name until removed)."""

    def __init__(self, *, builtin: bool = True) -> None:
        self._builtin = {w.name: w for w in builtin_workflows()} if builtin else {}
        self._runtime: dict[str, Workflow] = {}
        self._listeners: builtins.list[ChangeListener] = []

    def get(self, name: str) -> Workflow:
        workflow = self._runtime.get(name) or self._builtin.get(name)
        if workflow is None:
            raise WorkflowNotFound(name, sorted(self._merged()))
        return workflow

    def list(self) -> builtins.list[Workflow]:
        return sorted(self._merged().values(), key=lambda w: w.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._merged()

    def __len__(self) -> int:
        return len(self._merged())

    def is_builtin(self, name: str) -> bool:
        """Whether ``name`` currently resolves to the built-in definition."""
        return name in self._builtin and name not in self._runtime

    def add(self, workflow: Workflow | Mapping[str, Any]) -> Workflow:
        """Add (or replace) a runtime workflow, given as a model or its dict/JSON form."""
        if not isinstance(workflow, Workflow):
            workflow = Workflow.model_validate(workflow)
        self._runtime[workflow.name] = workflow
        self._changed()
        return workflow

    def remove(self, name: str) -> Workflow:
        """Remove a runtime workflow (a built-in of the same name shows again)."""
        removed = self._runtime.pop(name, None)
        if removed is None:
            if name in self._builtin:
                raise WorkflowError(f"workflow {name!r} is built in and cannot be removed")
            raise WorkflowNotFound(name, sorted(self._merged()))
        self._changed()
        return removed

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        """Call ``callback()`` after every add or remove; returns an unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def _merged(self) -> dict[str, Workflow]:
        return self._builtin | self._runtime

    def _changed(self) -> None:
        for listener in builtins.list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("workflow registry change listener %r failed", listener)


# ── built-in workflows ───────────────────────────────────────────────

_PLAN_SCHEMA = {
    "type": "object",
    "properties": {
        "branch": {"type": "string", "description": "git branch name for the work"},
        "summary": {"type": "string", "description": "one-line summary of the change"},
        "plan": {"type": "string", "description": "numbered implementation plan"},
    },
    "required": ["branch", "summary", "plan"],
    "additionalProperties": False,
}

_BUILTIN_WORKFLOWS: list[dict[str, Any]] = [
    {
        "name": "issue-to-pr",
        "description": (
            "Take a GitHub issue from plan to pull request: plan, implement on a new branch, "
            "add tests, run the pre-push checks, and open the PR."
        ),
        "parameters": [
            {"name": "issue", "description": "Issue number or URL", "required": True},
            {
                "name": "base",
                "description": "Branch to start from and merge into",
                "default": "main",
            },
            {"name": "notes", "description": "Extra guidance for the implementation"},
        ],
        "steps": [
            {
                "name": "plan",
                "prompt": (
                    "Read GitHub issue {issue} (`gh issue view {issue} --comments`) and the code "
                    "it concerns. Do not change anything yet. Produce an implementation plan: "
                    "the files to change and how, the tests to add, and the risks. Also choose a "
                    "short git branch name for the work (e.g. fix/<issue>-<slug>).\n"
                    "Extra guidance: {notes}"
                ),
                "overrides": {
                    # Read-only: planning must not touch the working tree.
                    "permission_mode": "dontAsk",
                    "allowed_tools": [
                        "Read",
                        "Grep",
                        "Glob",
                        "Bash(gh issue view:*)",
                        "Bash(git log:*)",
                    ],
                    "json_schema": _PLAN_SCHEMA,
                },
                "output_vars": {"branch": "branch", "summary": "summary", "plan": "plan"},
            },
            {
                "name": "implement",
                "skill": "implement",
                "args": {
                    "task": (
                        "Create branch {steps.plan.branch} from {base} (`git switch -c "
                        "{steps.plan.branch} {base}`), then resolve issue {issue} following this "
                        "plan, and commit the work there with a message that references the "
                        "issue.\n\nPlan:\n{steps.plan.plan}"
                    ),
                    "constraints": "{notes}",
                },
            },
            {
                "name": "tests",
                "skill": "write-tests",
                "args": {
                    "target": "the changes on this branch (`git diff {base}...HEAD`)",
                    "focus": (
                        "the behaviour issue {issue} asks for, including its edge cases; commit "
                        "the tests when they pass"
                    ),
                },
            },
            {"name": "checks", "skill": "pre-push", "args": {"fix": "yes"}},
            {
                "name": "pr",
                "skill": "create-pr",
                "args": {"base": "{base}", "issue": "{issue}", "title": "{steps.plan.summary}"},
            },
        ],
    },
    {
        "name": "refactor-and-test",
        "description": (
            "Pin current behaviour with tests, refactor towards a goal without changing "
            "behaviour, then run the project's checks."
        ),
        "parameters": [
            {"name": "target", "description": "Code to refactor", "required": True},
            {"name": "goal", "description": "What the refactor should achieve", "required": True},
            {"name": "constraints", "description": "What must not change"},
        ],
        "steps": [
            {
                "name": "pin",
                "skill": "write-tests",
                "args": {
                    "target": "{target}",
                    "focus": (
                        "characterisation tests that pin down the current behaviour of this code "
                        "(outputs, errors, side effects) so that a refactor can be checked "
                        "against them; do not change production code"
                    ),
                },
            },
            {
                "name": "refactor",
                "skill": "refactor",
                "args": {
                    "target": "{target}",
                    "goal": "{goal}",
                    "constraints": (
                        "{constraints}\nThe tests added in the previous step must keep passing "
                        "unchanged. Their summary:\n{previous_output}"
                    ),
                },
            },
            {"name": "checks", "skill": "pre-push", "args": {"fix": "yes"}},
        ],
    },
    {
        "name": "review-and-fix",
        "description": (
            "Review code, fix what the review found, and check the result with the project's "
            "checks."
        ),
        "parameters": [
            {"name": "target", "description": "What to review", "required": True},
            {"name": "focus", "description": "What the review should weigh most"},
        ],
        "steps": [
            {
                "name": "review",
                "skill": "code-review",
                "args": {"target": "{target}", "focus": "{focus}"},
            },
            {
                "name": "fix",
                "skill": "implement",
                "args": {
                    "task": (
                        "Fix the critical and major findings of this review of {target}; fix the "
                        "minor ones where the fix is small and safe, and list those you leave. "
                        "Add a test for each bug you fix.\n\nReview:\n{previous_output}"
                    ),
                },
            },
            {"name": "checks", "skill": "pre-push", "args": {"fix": "yes"}},
        ],
    },
]


def builtin_workflows() -> builtins.list[Workflow]:
    """Fresh copies of the built-in workflows."""
    return [Workflow.model_validate(data) for data in _BUILTIN_WORKFLOWS]


def skill_resolver(registry: SkillRegistry) -> SkillResolver:
    """Resolve chain skill steps with ``registry`` (its runtime skills included)."""

    def resolve(name: str, args: Mapping[str, str]) -> tuple[str, TaskOverrides | None]:
        skill = registry.get(name)
        return skill.render(dict(args)), skill.overrides

    return resolve


def workflow_chain(
    workflow: Workflow,
    params: Mapping[str, str | None],
    skills: SkillRegistry,
    overrides: TaskOverrides | None = None,
) -> ChainSpec:
    """The chain that runs ``workflow`` with ``params``: skill steps rendered by ``skills``, and
    ``overrides`` applying to every step under the step's own settings (a workflow's read-only
    planning step stays read-only). Raises the workflow's and skills' argument errors."""
    steps = [
        ChainStep(
            name=step.name,
            prompt=step.prompt,
            skill=step.skill,
            args=step.args,
            overrides=merge_overrides(overrides, step.task_overrides()),
            output_vars=step.output_vars or {},
        )
        for step in workflow.render(params, skills=skills)
    ]
    return ChainSpec(steps=steps, name=workflow.name, tags=[f"workflow:{workflow.name}"])


__all__ = [
    "PREVIOUS_OUTPUT",
    "Workflow",
    "WorkflowError",
    "WorkflowNotFound",
    "WorkflowParameter",
    "WorkflowParameterError",
    "WorkflowRegistry",
    "WorkflowStep",
    "builtin_workflows",
    "skill_resolver",
    "workflow_chain",
]

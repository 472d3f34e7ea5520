"""Workflows: definitions as data, rendering with parameters, skill resolution, the registry."""

from __future__ import annotations

from typing import Any

import pytest

from claude_pool.chain.workflows import (
    Workflow,
    WorkflowError,
    WorkflowNotFound,
    WorkflowParameterError,
    WorkflowRegistry,
    WorkflowStep,
    builtin_workflows,
)
from claude_pool.skills import SkillArgumentError, SkillNotFound, SkillRegistry

STEP_KEYS = {"name", "prompt", "skill", "args", "overrides", "output_vars"}


def workflow(
    steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None
) -> Workflow:
    return Workflow.model_validate(
        {
            "name": "wf",
            "description": "A test workflow.",
            "parameters": parameters or [],
            "steps": steps,
        }
    )


PARAMS = [
    {"name": "target", "required": True},
    {"name": "base", "default": "main"},
    {"name": "notes"},
]


def test_render_fills_parameters_and_defaults_and_keeps_chain_variables() -> None:
    wf = workflow(
        [
            {
                "name": "plan",
                "prompt": "Plan {target} against {base}.\nNotes: {notes}\nEnd.",
                "output_vars": {"branch": "result.branch"},
                "overrides": {"max_turns": 3},
            },
            {
                "name": "do",
                "prompt": "On {steps.plan.branch}: {previous_output} for {target}",
            },
        ],
        PARAMS,
    )
    steps = wf.render({"target": "app.py"})
    assert steps[0].prompt == "Plan app.py against main.\nEnd."
    assert steps[0].overrides == {"max_turns": 3}
    assert steps[0].output_vars == {"branch": "result.branch"}
    assert steps[1].prompt == "On {steps.plan.branch}: {previous_output} for app.py"
    assert set(steps[1].model_dump()) == STEP_KEYS
    assert steps[0].task_overrides() is not None
    assert steps[1].task_overrides() is None


def test_supplied_optional_parameters_override_defaults() -> None:
    wf = workflow([{"name": "a", "prompt": "{target}@{base} {notes}"}], PARAMS)
    assert wf.render({"target": "t", "base": "dev", "notes": "n"})[0].prompt == "t@dev n"


def test_missing_and_unknown_parameters_are_clear_errors() -> None:
    wf = workflow([{"name": "a", "prompt": "{target}"}], PARAMS)
    with pytest.raises(WorkflowParameterError, match="missing required parameter") as caught:
        wf.render({"notes": "x", "colour": "red"})
    assert caught.value.missing == ["target"]
    assert caught.value.unknown == ["colour"]
    assert "it takes: target, base, notes" in str(caught.value)
    with pytest.raises(WorkflowParameterError):
        wf.render({"target": "   "})


def test_literal_braces_escapes_and_values_are_not_rescanned() -> None:
    wf = workflow(
        [{"name": "a", "prompt": 'JSON {"k": [1]} {{target}} = {target}'}],
        [{"name": "target", "required": True}, {"name": "other"}],
    )
    assert wf.render({"target": "{other}", "other": "x"})[0].prompt == (
        'JSON {"k": [1]} {target} = {other}'
    )


def test_skill_steps_render_their_args_and_drop_empty_optional_ones() -> None:
    wf = workflow(
        [{"name": "r", "skill": "code-review", "args": {"target": "{target}", "focus": "{notes}"}}],
        PARAMS,
    )
    (step,) = wf.render({"target": "src/"})
    assert (step.skill, step.prompt, step.args) == ("code-review", None, {"target": "src/"})


def test_skill_steps_resolve_to_prompts_with_merged_overrides() -> None:
    wf = workflow(
        [
            {
                "name": "r",
                "skill": "code-review",
                "args": {"target": "{target}"},
                "overrides": {"model": "claude-opus-4-1", "permission_mode": "plan"},
            }
        ],
        PARAMS,
    )
    skills = SkillRegistry()
    (step,) = wf.render({"target": "src/app.py"}, skills=skills)
    assert step.skill == "code-review"
    assert step.prompt == skills.get("code-review").render({"target": "src/app.py"})
    assert step.overrides is not None
    assert step.overrides["model"] == "claude-opus-4-1"
    assert step.overrides["permission_mode"] == "plan"  # the step wins over the skill
    assert "Read" in step.overrides["allowed_tools"]  # the skill's own overrides are kept


def test_skill_errors_propagate_with_the_step_noted() -> None:
    missing_arg = workflow([{"name": "r", "skill": "code-review", "args": {"focus": "x"}}])
    with pytest.raises(SkillArgumentError) as caught:
        missing_arg.render({}, skills=SkillRegistry())
    assert "in step 'r' of workflow 'wf'" in caught.value.__notes__
    unknown_skill = workflow([{"name": "r", "skill": "no-such-skill"}])
    with pytest.raises(SkillNotFound):
        unknown_skill.render({}, skills=SkillRegistry())


@pytest.mark.parametrize(
    ("steps", "parameters", "reason"),
    [
        ([{"name": "a", "prompt": "x {previous_output}"}], [], "first step has no"),
        (
            [{"name": "a", "prompt": "{steps.b.v}"}, {"name": "b", "prompt": "y"}],
            [],
            "not an earlier",
        ),
        (
            [
                {"name": "a", "prompt": "x", "output_vars": {"v": "v"}},
                {"name": "b", "prompt": "{steps.a.w}"},
            ],
            [],
            "no output variable 'w'",
        ),
        ([{"name": "a", "prompt": "Hi {nmae}"}], [{"name": "name"}], "unknown placeholder"),
        ([{"name": "a", "prompt": "x", "skill": "implement"}], [], "either a prompt or a skill"),
        ([{"name": "a"}], [], "needs a prompt or a skill"),
        ([{"name": "a", "prompt": "x"}, {"name": "a", "prompt": "y"}], [], "step names used twice"),
        ([{"name": "a", "prompt": "x", "overrides": {"modle": "m"}}], [], "unknown override"),
        ([{"name": "a", "prompt": "x", "overrides": {"max_turns": 0}}], [], "max_turns"),
        ([{"name": "a", "prompt": "x", "args": {"k": "v"}}], [], "args but no skill"),
        ([{"name": "a b", "prompt": "x"}], [], "step name"),
        ([], [], "at least 1"),
        (
            [{"name": "a", "prompt": "x"}],
            [{"name": "p"}, {"name": "p"}],
            "parameter names used twice",
        ),
        ([{"name": "a", "prompt": "x"}], [{"name": "previous_output"}], "parameter name"),
    ],
)
def test_invalid_definitions_are_rejected(
    steps: list[dict[str, Any]], parameters: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        workflow(steps, parameters)


def test_builtin_workflows_render_and_resolve_against_the_builtin_skills() -> None:
    registry = WorkflowRegistry()
    assert {w.name for w in registry.list()} == {
        "issue-to-pr",
        "refactor-and-test",
        "review-and-fix",
    }
    skills = SkillRegistry()
    for wf in registry.list():
        params = {p.name: f"<{p.name}>" for p in wf.parameters if p.required}
        steps = wf.render(params, skills=skills)
        assert [s.name for s in steps] == [s.name for s in wf.steps]
        for step in steps:
            assert step.prompt
            assert set(step.model_dump()) == STEP_KEYS
        text = "\n".join(s.prompt or "" for s in steps)
        for value in params.values():
            assert value in text, (wf.name, value)


def test_issue_to_pr_passes_the_plan_to_later_steps_through_output_vars() -> None:
    steps = WorkflowRegistry().get("issue-to-pr").render({"issue": "42"}, skills=SkillRegistry())
    plan, implement, *_, pr = steps
    assert plan.output_vars == {"branch": "branch", "summary": "summary", "plan": "plan"}
    assert plan.overrides is not None
    assert plan.overrides["json_schema"]["required"] == ["branch", "summary", "plan"]
    assert implement.prompt is not None
    assert "{steps.plan.branch}" in implement.prompt
    assert "{steps.plan.plan}" in implement.prompt
    assert pr.prompt is not None
    assert "into `main`" in pr.prompt


def test_review_and_fix_hands_the_review_to_the_fix_step() -> None:
    review, fix, _ = WorkflowRegistry().get("review-and-fix").render({"target": "src/"})
    assert review.skill == "code-review"
    assert review.args == {"target": "src/"}
    assert "{previous_output}" in fix.args["task"]


def test_registry_runtime_workflows_shadow_builtins_until_removed() -> None:
    registry = WorkflowRegistry()
    calls: list[int] = []
    registry.on_change(lambda: calls.append(1))
    custom = registry.add(
        {"name": "review-and-fix", "description": "Mine.", "steps": [{"name": "a", "prompt": "go"}]}
    )
    assert registry.get("review-and-fix") is custom
    assert not registry.is_builtin("review-and-fix")
    registry.remove("review-and-fix")
    assert registry.is_builtin("review-and-fix")
    assert registry.get("review-and-fix").description != "Mine."
    with pytest.raises(WorkflowError, match="built in"):
        registry.remove("review-and-fix")
    with pytest.raises(WorkflowNotFound, match="did you mean issue-to-pr"):
        registry.get("issue-to-rp")
    assert calls == [1, 1]
    assert "issue-to-pr" in registry
    assert len(registry) == 3


def test_builtin_workflows_are_fresh_copies() -> None:
    first, second = builtin_workflows(), builtin_workflows()
    first[0].steps.append(WorkflowStep(name="extra", prompt="x"))
    assert len(second[0].steps) != len(first[0].steps)

"""Turning skills and workflows into runnable work, shared by the MCP tools and the CLI.

- :func:`skill_resolver`: chain skill steps resolved by a given registry (runtime skills too);
- :func:`workflow_chain`: a workflow with its parameters as a :class:`~claude_pool.chain.ChainSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping

from claude_pool.chain import ChainSpec, ChainStep, SkillResolver
from claude_pool.config import merge_overrides
from claude_pool.skills import SkillRegistry
from claude_pool.types import TaskOverrides
from claude_pool.workflows import Workflow


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


__all__ = ["skill_resolver", "workflow_chain"]

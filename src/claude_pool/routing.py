"""Auto-routing: one cheap model call decides how to run a request, then the pool runs it so.

:func:`route` asks a small model (no tools, one turn, structured output) whether a request is a
``single`` task, a ``parallel`` fan-out of independent sub-prompts, or a ``chain`` of ordered
steps. Any failure of that call - the task failing, output that is not JSON or does not fit the
schema, an empty plan - falls back to ``single`` with a ``fallback_reason``: routing can make
work cheaper or faster, never impossible. :func:`auto` routes and then runs the decision.

Plans larger than the hints allow are clamped, never truncated: extra parallel sub-prompts are
grouped so that at most ``max_parallel`` tasks run, and extra chain steps are merged into the
last allowed step, so no part of the request is dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from claude_pool.chain import ChainIsolation, ChainSpec, ChainStep, StepState
from claude_pool.errors import ClaudePoolError
from claude_pool.pool import Pool
from claude_pool.types import TaskOverrides, TaskResult

log = logging.getLogger(__name__)

ROUTING_MODEL = "claude-haiku-4-5"
"""The default model for the routing call: it only classifies, so the cheapest will do."""

ROUTING_TAG = "routing"
AUTO_TAG = "auto"
PREVIOUS_OUTPUT = "{previous_output}"


class RouteKind(StrEnum):
    SINGLE = "single"
    PARALLEL = "parallel"
    CHAIN = "chain"


class RouteHints(BaseModel):
    """Limits and guidance for the router."""

    model_config = ConfigDict(extra="forbid")

    max_parallel: int = Field(default=8, ge=1)
    """At most this many tasks side by side (larger plans are grouped down to it)."""
    max_steps: int = Field(default=6, ge=1)
    """At most this many chain steps (extra steps are merged into the last one)."""
    preference: RouteKind | None = None
    """The shape to choose when it fits the request (the router may still decide otherwise)."""
    domain: str | None = None
    """Free text about the work, e.g. "Python web backend", to help the router judge."""


class RouteStep(BaseModel):
    name: str
    prompt: str
    """May contain ``{previous_output}``, replaced by the prior step's output when run."""


class RouteDecision(BaseModel):
    """How a request will be run, and what deciding it cost."""

    kind: RouteKind
    request: str
    prompts: list[str] = Field(default_factory=list)
    """``parallel``: the independent sub-prompts, run side by side."""
    steps: list[RouteStep] = Field(default_factory=list)
    """``chain``: the ordered steps."""
    reason: str = ""
    """The router's one-sentence justification."""
    fallback_reason: str | None = None
    """Set when routing failed and the request runs as a single task instead."""
    adjustments: list[str] = Field(default_factory=list)
    """What was changed in the router's plan to fit the hints (grouping, merging)."""
    cost_microdollars: int = 0
    """Spend of the routing call itself (also on failure, when known)."""
    model: str | None = None


ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": [k.value for k in RouteKind]},
        "reason": {"type": "string", "description": "one sentence: why this shape"},
        "tasks": {
            "type": "array",
            "description": "parallel only: one self-contained prompt per independent part",
            "items": {"type": "string"},
        },
        "steps": {
            "type": "array",
            "description": "chain only: the ordered steps",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "short step name"},
                    "prompt": {"type": "string", "description": "self-contained step prompt"},
                },
                "required": ["name", "prompt"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["kind", "reason"],
    "additionalProperties": False,
}
"""The JSON schema the routing call's structured output must match."""


class _RawStep(BaseModel):
    name: str = ""
    prompt: str


class _RawDecision(BaseModel):
    """What the router answered, before clamping to the hints."""

    kind: RouteKind
    reason: str = ""
    tasks: list[str] = Field(default_factory=list)
    steps: list[_RawStep] = Field(default_factory=list)


def routing_prompt(request: str, hints: RouteHints) -> str:
    """The classification prompt for ``request`` under ``hints``."""
    lines = [
        "You route work for a pool of Claude Code workers. Decide how the request below should",
        "be run. Do NOT carry out the request and do not call tools: only classify it.",
        "",
        "Choose exactly one kind:",
        '- "single": one worker does the whole request. Choose this for small or tightly',
        "  coupled work, or whenever splitting would not clearly help. When in doubt: single.",
        '- "parallel": the request is made of independent parts that need no shared state and',
        "  no particular order (e.g. review each of several files). Give `tasks`: one",
        "  self-contained prompt per part; each worker sees only its own prompt, so repeat any",
        f"  context it needs. At most {hints.max_parallel} tasks.",
        '- "chain": the work has ordered stages, each needing the result of the one before',
        "  (e.g. investigate, then implement, then test). Give `steps`, each with a short",
        "  `name` and a self-contained `prompt`; a step's prompt may contain the literal text",
        f"  {PREVIOUS_OUTPUT} where the previous step's output should go. At most",
        f"  {hints.max_steps} steps.",
        "",
        "Keep the wording and every requirement of the request in the prompts you write; do",
        "not add work the request does not ask for.",
    ]
    if hints.preference is not None:
        lines.append(f'The caller prefers "{hints.preference}" when it fits the request.')
    if hints.domain:
        lines.append(f"Domain of the work: {hints.domain}")
    lines += [
        "",
        "Answer with the JSON object: kind, reason (one sentence), and tasks or steps.",
        "",
        "<request>",
        request,
        "</request>",
    ]
    return "\n".join(lines)


async def route(
    pool: Pool,
    request: str,
    hints: RouteHints | None = None,
    *,
    model: str | None = None,
) -> RouteDecision:
    """Classify ``request`` with one cheap, tool-less model call. Never raises for a routing
    failure: the decision is then ``single`` with ``fallback_reason`` set."""
    if not request or not request.strip():
        raise ValueError("request must not be empty")
    hints = hints or RouteHints()
    overrides = TaskOverrides(
        tools=[], max_turns=1, json_schema=ROUTE_SCHEMA, model=model or ROUTING_MODEL
    )
    try:
        result = await pool.run(
            routing_prompt(request, hints), overrides, tags=[ROUTING_TAG], fresh_session=True
        )
    except Exception as exc:  # any failure means "run it as one task", never "don't run it"
        log.warning("routing call failed; running the request as a single task", exc_info=True)
        return _fallback(request, f"the routing call failed: {exc}")
    if not result.success:
        reason = f"the routing task failed: {_first_line(result.output)}"
        return _fallback(request, reason, result)
    try:
        raw = _RawDecision.model_validate(_parse_json(result.output))
    except (ValueError, ValidationError) as exc:
        return _fallback(request, f"the router's answer did not fit the schema: {exc}", result)
    return _clamp(request, raw, hints, result)


def _fallback(request: str, reason: str, result: TaskResult | None = None) -> RouteDecision:
    return RouteDecision(
        kind=RouteKind.SINGLE,
        request=request,
        fallback_reason=reason,
        cost_microdollars=result.cost_microdollars if result else 0,
        model=result.model if result else None,
    )


def _clamp(request: str, raw: _RawDecision, hints: RouteHints, result: TaskResult) -> RouteDecision:
    decision = RouteDecision(
        kind=raw.kind,
        request=request,
        reason=raw.reason.strip(),
        cost_microdollars=result.cost_microdollars,
        model=result.model,
    )
    if raw.kind is RouteKind.PARALLEL:
        prompts = [t.strip() for t in raw.tasks if t.strip()]
        if not prompts:
            return _refused(decision, "the router chose parallel but listed no sub-prompts")
        if len(prompts) == 1 or hints.max_parallel == 1:
            return _as_single(decision, f"parallel plan of {len(prompts)} part(s) runs as one task")
        if len(prompts) > hints.max_parallel:
            decision.adjustments.append(
                f"grouped {len(prompts)} sub-prompts into {hints.max_parallel} tasks "
                f"(max_parallel={hints.max_parallel})"
            )
            prompts = [_group(chunk) for chunk in _chunks(prompts, hints.max_parallel)]
        decision.prompts = prompts
    elif raw.kind is RouteKind.CHAIN:
        steps = _clean_steps(raw.steps)
        if not steps:
            return _refused(decision, "the router chose chain but listed no steps")
        if len(steps) == 1 or hints.max_steps == 1:
            return _as_single(decision, f"chain of {len(steps)} step(s) runs as one task")
        if len(steps) > hints.max_steps:
            decision.adjustments.append(
                f"merged steps {hints.max_steps}-{len(steps)} into one to fit "
                f"max_steps={hints.max_steps}"
            )
            steps = [*steps[: hints.max_steps - 1], _merge(steps[hints.max_steps - 1 :])]
        decision.steps = steps
    return decision


def _refused(decision: RouteDecision, reason: str) -> RouteDecision:
    return decision.model_copy(update={"kind": RouteKind.SINGLE, "fallback_reason": reason})


def _as_single(decision: RouteDecision, note: str) -> RouteDecision:
    decision.adjustments.append(note)
    return decision.model_copy(update={"kind": RouteKind.SINGLE})


def _clean_steps(raw: Sequence[_RawStep]) -> list[RouteStep]:
    steps: list[RouteStep] = []
    seen: set[str] = set()
    for step in raw:
        if not step.prompt.strip():
            continue
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", step.name.strip()).strip("-").lower()
        name, suffix = base or f"step-{len(steps) + 1}", 1
        while name in seen:
            suffix += 1
            name = f"{base or 'step'}-{suffix}"
        seen.add(name)
        steps.append(RouteStep(name=name, prompt=step.prompt.strip()))
    return steps


def _chunks(items: Sequence[str], count: int) -> list[list[str]]:
    """Split into ``count`` contiguous groups of near-equal size (neighbours stay together)."""
    size, extra = divmod(len(items), count)
    groups, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        groups.append(list(items[start:end]))
        start = end
    return groups


def _group(prompts: Sequence[str]) -> str:
    if len(prompts) == 1:
        return prompts[0]
    parts = "\n\n".join(f"### Task {i}\n{p}" for i, p in enumerate(prompts, 1))
    return (
        "Do each of the following independent tasks, one after another, and report on each "
        f"under its own heading.\n\n{parts}"
    )


def _merge(steps: Sequence[RouteStep]) -> RouteStep:
    first, *rest = steps
    # Only the first merged step sees the previous task's output; later ones build on the
    # work done earlier in this same task.
    parts = [f"### Step 1: {first.name}\n{first.prompt}"]
    for index, step in enumerate(rest, 2):
        prompt = step.prompt.replace(PREVIOUS_OUTPUT, "(the result of the step above)")
        parts.append(f"### Step {index}: {step.name}\n{prompt}")
    body = "\n\n".join(parts)
    return RouteStep(
        name=f"{first.name}-to-{rest[-1].name}",
        prompt=f"Carry out these steps in order, each building on the one before.\n\n{body}",
    )


def _parse_json(output: str) -> Any:
    """The JSON object in ``output`` (tolerating a code fence or text around it)."""
    text = output.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise ValueError(f"no JSON object in the output: {_first_line(output)!r}")
    try:
        return json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the output is not valid JSON ({exc})") from exc


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "(no output)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ── running a decision ──────────────────────────────────────────────


class AutoPart(BaseModel):
    """One task that ``auto`` ran: a parallel part or a chain step."""

    name: str
    prompt: str
    result: TaskResult


class AutoResult(BaseModel):
    decision: RouteDecision
    parts: list[AutoPart]
    skipped: list[str] = Field(default_factory=list)
    """Chain steps not run because an earlier step failed."""
    success: bool
    """Every part succeeded (and, for a chain, every step ran)."""
    output: str
    """Single: the task's output. Parallel: each part's output under a heading. Chain: the
    last step's output (the failing step's, if one failed)."""
    cost_microdollars: int
    """Everything spent: the routing call plus every part."""


ChainRunner = Callable[
    [Pool, Sequence[RouteStep], TaskOverrides | None, Sequence[str]],
    Awaitable[tuple[list[AutoPart], list[str]]],
]
"""Runs chain steps in order; returns (parts run, names of steps skipped)."""


async def run_steps_sequentially(
    pool: Pool,
    steps: Sequence[RouteStep],
    overrides: TaskOverrides | None,
    tags: Sequence[str],
) -> tuple[list[AutoPart], list[str]]:
    """A minimal chain runner: each step is one ``pool.run``, its ``{previous_output}`` filled
    with the prior step's output; the first failure stops the chain.

    Kept for callers that want plain tasks without chain records; :func:`auto` runs chains
    with :func:`run_as_chain`.
    """
    parts: list[AutoPart] = []
    previous: AutoPart | None = None
    for index, step in enumerate(steps):
        prompt = step.prompt
        if previous is not None:
            if PREVIOUS_OUTPUT in prompt:
                prompt = prompt.replace(PREVIOUS_OUTPUT, previous.result.output)
            else:
                prompt = (
                    f"{prompt}\n\nOutput of the previous step ({previous.name}):\n"
                    f"{previous.result.output}"
                )
        result = await _run_part(pool, prompt, overrides, tags)
        part = AutoPart(name=step.name, prompt=prompt, result=result)
        parts.append(part)
        if not result.success:
            return parts, [s.name for s in steps[index + 1 :]]
        previous = part
    return parts, []


async def run_as_chain(
    pool: Pool,
    steps: Sequence[RouteStep],
    overrides: TaskOverrides | None,
    tags: Sequence[str],
) -> tuple[list[AutoPart], list[str]]:
    """Run the steps with the chain engine (``Pool.chain``) in the pool's own directory: its
    progress is kept in the store, visible through ``chain_result`` and resumed after a
    crash. A step that does not place ``{previous_output}`` gets the prior output appended."""
    chain_steps = [
        ChainStep(
            name=step.name,
            prompt=step.prompt
            if index == 0 or PREVIOUS_OUTPUT in step.prompt
            else f"{step.prompt}\n\nOutput of the previous step ({steps[index - 1].name}):\n"
            f"{PREVIOUS_OUTPUT}",
            overrides=overrides,
        )
        for index, step in enumerate(steps)
    ]
    spec = ChainSpec(steps=chain_steps, isolation=ChainIsolation.NONE, name="auto", tags=list(tags))
    chain = await pool.chain(spec)
    parts: list[AutoPart] = []
    skipped: list[str] = []
    for step, result in zip(chain_steps, chain.steps, strict=True):
        if result.state in (StepState.PENDING, StepState.SKIPPED):
            skipped.append(result.name)
            continue
        success = result.state is StepState.COMPLETED
        output = result.output if success else (result.error or str(result.state))
        task_result = TaskResult(
            output=output or "",
            success=success,
            cost_microdollars=result.cost_microdollars,
        )
        parts.append(AutoPart(name=result.name, prompt=step.prompt or "", result=task_result))
    return parts, skipped


async def auto(
    pool: Pool,
    request: str,
    hints: RouteHints | None = None,
    *,
    overrides: TaskOverrides | None = None,
    tags: Sequence[str] = (),
    model: str | None = None,
    chain_runner: ChainRunner = run_as_chain,
    fresh_session: bool = False,
) -> AutoResult:
    """Route ``request`` (see :func:`route`) and run it that way, with ``overrides`` and
    ``tags`` on every task it runs. Task failures (including pool errors such as a spent
    budget) are reported in the parts, not raised. ``fresh_session`` runs a single task or
    parallel tasks in new conversations (chain steps always start one)."""
    decision = await route(pool, request, hints, model=model)
    run_tags = [*tags, AUTO_TAG, f"{AUTO_TAG}:{decision.kind}"]
    skipped: list[str] = []
    if decision.kind is RouteKind.PARALLEL:
        items = await pool.fan_out_items(
            decision.prompts, overrides, run_tags, fresh_session=fresh_session
        )
        results = [item.as_result() for item in items]
        parts = [
            AutoPart(name=f"part-{i}", prompt=p, result=r)
            for i, (p, r) in enumerate(zip(decision.prompts, results, strict=True), 1)
        ]
        output = "\n\n".join(f"## {p.name}\n{p.result.output}" for p in parts)
    elif decision.kind is RouteKind.CHAIN:
        parts, skipped = await chain_runner(pool, decision.steps, overrides, run_tags)
        output = parts[-1].result.output if parts else ""
    else:
        result = await _run_part(pool, request, overrides, run_tags, fresh_session=fresh_session)
        parts = [AutoPart(name="single", prompt=request, result=result)]
        output = result.output
    return AutoResult(
        decision=decision,
        parts=parts,
        skipped=skipped,
        success=bool(parts) and not skipped and all(p.result.success for p in parts),
        output=output,
        cost_microdollars=decision.cost_microdollars
        + sum(p.result.cost_microdollars for p in parts),
    )


async def _run_part(
    pool: Pool,
    prompt: str,
    overrides: TaskOverrides | None,
    tags: Sequence[str],
    *,
    fresh_session: bool = False,
) -> TaskResult:
    try:
        return await pool.run(prompt, overrides, tags, fresh_session=fresh_session)
    except ClaudePoolError as exc:
        return TaskResult.failure(str(exc))


__all__ = [
    "AUTO_TAG",
    "ROUTE_SCHEMA",
    "ROUTING_MODEL",
    "ROUTING_TAG",
    "AutoPart",
    "AutoResult",
    "ChainRunner",
    "RouteDecision",
    "RouteHints",
    "RouteKind",
    "RouteStep",
    "auto",
    "route",
    "routing_prompt",
    "run_as_chain",
    "run_steps_sequentially",
]

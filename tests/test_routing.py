"""Auto-routing through the public seams: Pool + MemoryStore + a scripted FakeExecutor."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from claude_pool import Pool, PoolConfig, TaskFilter, TaskOverrides, TaskResult
from claude_pool.executor import ClaudeCliExecutor
from claude_pool.executor.base import ExecutionRequest
from claude_pool.routing import (
    ROUTE_SCHEMA,
    ROUTING_MODEL,
    AutoPart,
    RouteHints,
    RouteKind,
    RouteStep,
    auto,
    route,
    routing_prompt,
)
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.testing.mock_api import (
    STRUCTURED_OUTPUT_TOOL,
    MockAnthropicAPI,
    Reply,
    structured,
)

ROUTE_COST = 700
WORK_COST = 1000


def scripted(
    answer: dict[str, Any] | str | TaskResult,
    work: Callable[[ExecutionRequest], TaskResult] | None = None,
) -> FakeExecutor:
    """The routing call (the one with a JSON schema) gets ``answer``; other tasks ``work``."""

    def handler(request: ExecutionRequest) -> TaskResult:
        if request.config.json_schema is not None:
            if isinstance(answer, TaskResult):
                return answer
            text = answer if isinstance(answer, str) else json.dumps(answer)
            return TaskResult.success_result(text, cost_microdollars=ROUTE_COST, turns_used=1)
        if work is not None:
            return work(request)
        return TaskResult.success_result(
            f"did: {request.prompt}", cost_microdollars=WORK_COST, turns_used=1
        )

    return FakeExecutor(handler=handler)


def make_pool(executor: FakeExecutor, config: PoolConfig | None = None) -> Pool:
    return Pool(config or PoolConfig(), slots=2, store=MemoryStore(), executor=executor)


def work_prompts(executor: FakeExecutor) -> list[str]:
    return [r.prompt for r in executor.requests if r.config.json_schema is None]


# ── route ────────────────────────────────────────────────────────────


async def test_route_makes_one_cheap_toolless_structured_call() -> None:
    executor = scripted({"kind": "single", "reason": "small job"})
    async with make_pool(executor) as pool:
        decision = await route(pool, "Rename foo to bar in utils.py")
        (task,) = await pool.list_tasks(TaskFilter(tags=["routing"]))
    assert decision.kind is RouteKind.SINGLE
    assert decision.reason == "small job"
    assert decision.fallback_reason is None
    assert decision.cost_microdollars == ROUTE_COST
    assert decision.model == ROUTING_MODEL
    (request,) = executor.requests
    assert request.config.tools == ()
    assert request.config.max_turns == 1
    assert request.config.json_schema == ROUTE_SCHEMA
    assert request.config.model == ROUTING_MODEL
    assert "Rename foo to bar in utils.py" in request.prompt
    assert task.tags == ["routing"]


async def test_route_uses_the_model_it_is_given() -> None:
    executor = scripted({"kind": "single", "reason": "r"})
    async with make_pool(executor) as pool:
        await route(pool, "x", model="claude-sonnet-4-5")
    assert executor.requests[0].config.model == "claude-sonnet-4-5"


async def test_route_parallel_lists_the_independent_sub_prompts() -> None:
    answer = {
        "kind": "parallel",
        "reason": "independent files",
        "tasks": ["Review a.py", " ", "Review b.py"],
    }
    async with make_pool(scripted(answer)) as pool:
        decision = await route(pool, "Review a.py and b.py")
    assert decision.kind is RouteKind.PARALLEL
    assert decision.prompts == ["Review a.py", "Review b.py"]
    assert decision.fallback_reason is None


async def test_route_chain_lists_ordered_named_steps() -> None:
    answer = {
        "kind": "chain",
        "reason": "stages",
        "steps": [
            {"name": "Investigate Bug", "prompt": "Find the cause of the crash"},
            {"name": "fix", "prompt": "Fix it: {previous_output}"},
            {"name": "fix", "prompt": "Add a regression test"},
        ],
    }
    async with make_pool(scripted(answer)) as pool:
        decision = await route(pool, "Fix the crash and test it")
    assert decision.kind is RouteKind.CHAIN
    assert [s.name for s in decision.steps] == ["investigate-bug", "fix", "fix-2"]
    assert decision.steps[1].prompt == "Fix it: {previous_output}"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I think this should be parallel!", "did not fit the schema"),
        ('{"kind": "banana", "reason": "?"}', "did not fit the schema"),
        ('{"kind": "parallel", "reason": "r", "tasks": "not a list"}', "did not fit the schema"),
        ('{"kind": "parallel", "reason": "r", "tasks": []}', "listed no sub-prompts"),
        ('{"kind": "chain", "reason": "r", "steps": [{"name": "a", "prompt": " "}]}', "no steps"),
        ("", "did not fit the schema"),
    ],
)
async def test_bad_router_answers_fall_back_to_single_and_keep_the_cost(
    answer: str, reason: str
) -> None:
    async with make_pool(scripted(answer)) as pool:
        decision = await route(pool, "do the thing")
    assert decision.kind is RouteKind.SINGLE
    assert decision.fallback_reason is not None
    assert reason in decision.fallback_reason
    assert decision.cost_microdollars == ROUTE_COST


async def test_a_fenced_json_answer_is_accepted() -> None:
    answer = 'Here you go:\n```json\n{"kind": "parallel", "reason": "r", "tasks": ["a", "b"]}\n```'
    async with make_pool(scripted(answer)) as pool:
        decision = await route(pool, "a and b")
    assert decision.kind is RouteKind.PARALLEL
    assert decision.prompts == ["a", "b"]


async def test_a_failed_routing_task_falls_back_to_single_with_its_spend() -> None:
    failed = TaskResult.failure("API error 529 overloaded").model_copy(
        update={"cost_microdollars": 55}
    )
    async with make_pool(scripted(failed)) as pool:
        decision = await route(pool, "do the thing")
    assert decision.kind is RouteKind.SINGLE
    assert decision.fallback_reason == "the routing task failed: API error 529 overloaded"
    assert decision.cost_microdollars == 55


async def test_a_routing_call_that_raises_falls_back_to_single() -> None:
    executor = scripted({"kind": "parallel", "reason": "r", "tasks": ["a", "b"]})
    async with make_pool(executor, PoolConfig(budget_microdollars=0)) as pool:
        decision = await route(pool, "do the thing")
    assert decision.kind is RouteKind.SINGLE
    assert decision.fallback_reason is not None
    assert "budget exhausted" in decision.fallback_reason
    assert decision.cost_microdollars == 0
    assert executor.requests == []


async def test_an_empty_request_is_a_caller_error() -> None:
    async with make_pool(scripted({"kind": "single", "reason": "r"})) as pool:
        with pytest.raises(ValueError, match="must not be empty"):
            await route(pool, "  ")


async def test_parallel_over_max_parallel_is_grouped_without_dropping_work() -> None:
    tasks = [f"Review file{i}.py" for i in range(5)]
    async with make_pool(scripted({"kind": "parallel", "reason": "r", "tasks": tasks})) as pool:
        decision = await route(pool, "review them", RouteHints(max_parallel=2))
    assert decision.kind is RouteKind.PARALLEL
    assert len(decision.prompts) == 2
    assert "Review file0.py" in decision.prompts[0]
    assert "Review file2.py" in decision.prompts[0]
    assert "Review file4.py" in decision.prompts[1]
    for task in tasks:
        assert sum(task in p for p in decision.prompts) == 1
    assert decision.adjustments == ["grouped 5 sub-prompts into 2 tasks (max_parallel=2)"]
    assert decision.fallback_reason is None


async def test_chain_over_max_steps_merges_the_tail_into_the_last_step() -> None:
    steps = [{"name": f"s{i}", "prompt": f"do {i} after {{previous_output}}"} for i in range(5)]
    async with make_pool(scripted({"kind": "chain", "reason": "r", "steps": steps})) as pool:
        decision = await route(pool, "five stages", RouteHints(max_steps=3))
    assert [s.name for s in decision.steps] == ["s0", "s1", "s2-to-s4"]
    merged = decision.steps[2].prompt
    assert "do 2 after {previous_output}" in merged  # the merged step still gets s1's output
    assert "do 3 after (the result of the step above)" in merged
    assert "do 4" in merged
    assert decision.adjustments == ["merged steps 3-5 into one to fit max_steps=3"]


@pytest.mark.parametrize(
    ("answer", "hints"),
    [
        ({"kind": "parallel", "reason": "r", "tasks": ["only one"]}, RouteHints()),
        ({"kind": "parallel", "reason": "r", "tasks": ["a", "b"]}, RouteHints(max_parallel=1)),
        ({"kind": "chain", "reason": "r", "steps": [{"name": "a", "prompt": "x"}]}, RouteHints()),
        (
            {
                "kind": "chain",
                "reason": "r",
                "steps": [{"name": "a", "prompt": "x"}, {"name": "b", "prompt": "y"}],
            },
            RouteHints(max_steps=1),
        ),
    ],
)
async def test_plans_that_cannot_be_split_under_the_hints_run_as_single(
    answer: dict[str, Any], hints: RouteHints
) -> None:
    async with make_pool(scripted(answer)) as pool:
        decision = await route(pool, "request", hints)
    assert decision.kind is RouteKind.SINGLE
    assert decision.fallback_reason is None
    assert decision.adjustments
    assert decision.prompts == []
    assert decision.steps == []


def test_routing_prompt_carries_the_hints_and_fences_the_request() -> None:
    prompt = routing_prompt(
        "Fix {previous_output} handling",
        RouteHints(max_parallel=3, max_steps=4, preference=RouteKind.CHAIN, domain="Rust CLI"),
    )
    assert "At most 3 tasks" in prompt
    assert "At most\n  4 steps" in prompt
    assert 'prefers "chain"' in prompt
    assert "Domain of the work: Rust CLI" in prompt
    assert prompt.endswith("<request>\nFix {previous_output} handling\n</request>")
    assert "preference" not in routing_prompt("x", RouteHints()).lower().split("request")[0]


def test_hints_reject_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_parallel"):
        RouteHints(max_parallel=0)


# ── auto ─────────────────────────────────────────────────────────────


async def test_auto_single_runs_the_request_as_one_task_and_sums_costs() -> None:
    executor = scripted({"kind": "single", "reason": "small"})
    async with make_pool(executor) as pool:
        result = await auto(pool, "Rename foo", tags=["mine"])
        tasks = await pool.list_tasks(TaskFilter(tags=["auto:single"]))
    assert result.decision.kind is RouteKind.SINGLE
    assert [p.name for p in result.parts] == ["single"]
    assert result.output == "did: Rename foo"
    assert result.success
    assert result.cost_microdollars == ROUTE_COST + WORK_COST
    assert work_prompts(executor) == ["Rename foo"]
    assert tasks[0].tags == ["mine", "auto", "auto:single"]


async def test_auto_parallel_fans_out_and_keeps_every_result() -> None:
    def work(request: ExecutionRequest) -> TaskResult:
        if "b.py" in request.prompt:
            return TaskResult.failure("b.py does not exist").model_copy(
                update={"cost_microdollars": 10}
            )
        return TaskResult.success_result(
            f"ok {request.prompt}", cost_microdollars=WORK_COST, turns_used=1
        )

    answer = {
        "kind": "parallel",
        "reason": "r",
        "tasks": ["Review a.py", "Review b.py", "Review c.py"],
    }
    executor = scripted(answer, work)
    async with make_pool(executor) as pool:
        result = await auto(pool, "Review a.py, b.py, c.py")
    assert result.decision.kind is RouteKind.PARALLEL
    assert [p.prompt for p in result.parts] == ["Review a.py", "Review b.py", "Review c.py"]
    assert [p.result.success for p in result.parts] == [True, False, True]
    assert not result.success
    assert result.cost_microdollars == ROUTE_COST + 2 * WORK_COST + 10
    assert "## part-1\nok Review a.py" in result.output
    assert "## part-2\nb.py does not exist" in result.output
    assert sorted(work_prompts(executor)) == ["Review a.py", "Review b.py", "Review c.py"]


async def test_auto_chain_runs_steps_in_order_passing_the_previous_output() -> None:
    answer = {
        "kind": "chain",
        "reason": "stages",
        "steps": [
            {"name": "find", "prompt": "Find the bug"},
            {"name": "fix", "prompt": "Fix this: {previous_output}"},
            {"name": "test", "prompt": "Write a regression test"},
        ],
    }
    executor = scripted(answer)
    async with make_pool(executor) as pool:
        result = await auto(pool, "Find, fix and test the bug")
    assert [p.name for p in result.parts] == ["find", "fix", "test"]
    assert work_prompts(executor) == [
        "Find the bug",
        "Fix this: did: Find the bug",
        "Write a regression test\n\nOutput of the previous step (fix):\n"
        "did: Fix this: did: Find the bug",
    ]
    assert result.output == result.parts[-1].result.output
    assert result.success
    assert result.skipped == []
    assert result.cost_microdollars == ROUTE_COST + 3 * WORK_COST


async def test_auto_chain_stops_at_a_failed_step_and_counts_its_spend() -> None:
    def work(request: ExecutionRequest) -> TaskResult:
        if request.prompt.startswith("Fix"):
            return TaskResult.failure("tests still fail").model_copy(
                update={"cost_microdollars": 300}
            )
        return TaskResult.success_result("fine", cost_microdollars=WORK_COST, turns_used=1)

    steps = [
        {"name": n, "prompt": p}
        for n, p in [("find", "Find"), ("fix", "Fix it"), ("pr", "Open PR")]
    ]
    executor = scripted({"kind": "chain", "reason": "r", "steps": steps}, work)
    async with make_pool(executor) as pool:
        result = await auto(pool, "find fix pr")
    assert [p.name for p in result.parts] == ["find", "fix"]
    assert result.skipped == ["pr"]
    assert not result.success
    assert result.output == "tests still fail"
    assert result.cost_microdollars == ROUTE_COST + WORK_COST + 300
    assert "Open PR" not in " ".join(work_prompts(executor))


async def test_auto_falls_back_to_single_when_routing_fails() -> None:
    executor = scripted("not json at all")
    async with make_pool(executor) as pool:
        result = await auto(pool, "Just do it")
    assert result.decision.kind is RouteKind.SINGLE
    assert result.decision.fallback_reason
    assert result.output == "did: Just do it"
    assert result.cost_microdollars == ROUTE_COST + WORK_COST


async def test_auto_reports_pool_errors_in_the_result_instead_of_raising() -> None:
    async with make_pool(
        scripted({"kind": "single", "reason": "r"}), PoolConfig(budget_microdollars=0)
    ) as pool:
        result = await auto(pool, "anything")
    assert not result.success
    assert "budget exhausted" in result.output
    assert result.cost_microdollars == 0


async def test_auto_passes_overrides_to_the_work_but_not_to_the_router() -> None:
    answer = {"kind": "parallel", "reason": "r", "tasks": ["a", "b"]}
    executor = scripted(answer)
    async with make_pool(executor) as pool:
        await auto(pool, "a and b", overrides=TaskOverrides(model="claude-opus-4-1", max_turns=7))
    work = [r for r in executor.requests if r.config.json_schema is None]
    assert {(r.config.model, r.config.max_turns) for r in work} == {("claude-opus-4-1", 7)}
    (routing,) = [r for r in executor.requests if r.config.json_schema is not None]
    assert routing.config.model == ROUTING_MODEL


async def test_auto_uses_the_chain_runner_it_is_given() -> None:
    seen: list[list[str]] = []

    async def runner(
        pool: Pool, steps: Sequence[RouteStep], overrides: TaskOverrides | None, tags: Sequence[str]
    ) -> tuple[list[AutoPart], list[str]]:
        seen.append([s.name for s in steps])
        result = TaskResult.success_result("chained", cost_microdollars=5, turns_used=1)
        return [AutoPart(name="all", prompt="p", result=result)], []

    steps = [{"name": "a", "prompt": "x"}, {"name": "b", "prompt": "y"}]
    async with make_pool(scripted({"kind": "chain", "reason": "r", "steps": steps})) as pool:
        result = await auto(pool, "a then b", chain_runner=runner)
    assert seen == [["a", "b"]]
    assert result.output == "chained"
    assert result.cost_microdollars == ROUTE_COST + 5


# ── against the real CLI ─────────────────────────────────────────────


@pytest.mark.cli
async def test_route_works_through_the_real_cli_with_one_turn_and_no_tools(
    claude_bin: Path, cli_env: dict[str, str], mock_api: MockAnthropicAPI, tmp_path: Path
) -> None:
    answer = {"kind": "parallel", "reason": "independent", "tasks": ["Review a.py", "Review b.py"]}
    mock_api.enqueue(Reply([structured(answer)]))
    executor = ClaudeCliExecutor(claude_bin, env=cli_env, work_dir=tmp_path / "executor")
    pool = Pool(PoolConfig(), slots=1, store=MemoryStore(), executor=executor, cwd=tmp_path)
    async with pool:
        decision = await route(pool, "Review a.py and b.py")
    assert decision.fallback_reason is None, decision
    assert decision.kind is RouteKind.PARALLEL
    assert decision.prompts == ["Review a.py", "Review b.py"]
    assert decision.cost_microdollars > 0
    (request,) = [r for r in mock_api.requests if STRUCTURED_OUTPUT_TOOL in r.tool_names]
    assert request.model == ROUTING_MODEL
    assert request.available_tool_names == [STRUCTURED_OUTPUT_TOOL]

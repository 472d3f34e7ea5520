"""Skills, workflows, routing and chains through the MCP server, with an in-process client.

The pool is a real ``Pool`` on the memory store with the fake executor, working in a temporary
directory (its project skills) with a temporary HOME (its global skills).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.client.session import IncomingMessage
from mcp.types import PromptListChangedNotification, TextContent

from claude_pool import Pool, PoolConfig, ScalingConfig, Settings, TaskResult
from claude_pool.executor.base import ExecutionRequest
from claude_pool.mcp import build_server
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor, echo_handler
from claude_pool.testing.mcp_client import WAIT
from claude_pool.testing.mcp_client import Served as BaseServed

SKILL_TOOLS = {
    "pool_skill_list",
    "pool_skill_get",
    "pool_skill_add",
    "pool_skill_remove",
    "pool_skill_save",
    "pool_skill_eject",
    "pool_skill_run",
    "pool_workflow_list",
    "pool_invoke_workflow",
    "pool_route",
    "pool_auto",
}
CHAIN_TOOLS = {
    "pool_chain",
    "pool_submit_chain",
    "pool_fan_out_chains",
    "pool_chain_result",
    "pool_cancel_chain",
}

EXPLAIN = """\
---
name: explain
description: Explain code to a given reader.
argument-hint: <path> [reader]
arguments:
  - {name: path, description: File to explain, required: true}
  - {name: reader, description: Who reads it}
overrides:
  permission_mode: dontAsk
  allowed_tools: [Read, Grep]
---
Explain {path}.
Write for: {reader}
"""


@dataclass
class Served(BaseServed):
    notifications: list[IncomingMessage] = field(default_factory=list)

    async def prompt_names(self) -> set[str]:
        return {p.name for p in (await self.client.list_prompts()).prompts}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def is_file(path: str) -> bool:
    return Path(path).is_file()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pool's directory, with HOME (global skills) beside it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    return work


@asynccontextmanager
async def serving(
    cwd: Path, executor: FakeExecutor | None = None, *, mode: str = "legacy"
) -> AsyncIterator[Served]:
    executor = executor or FakeExecutor()
    config = PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=4))
    pool = Pool(
        config,
        slots=2,
        store=MemoryStore(),
        executor=executor,
        settings=Settings(pool=config, drain_grace_secs=2),
        cwd=cwd,
    )
    served: Served | None = None

    async def on_message(message: IncomingMessage) -> None:
        if served is not None:
            served.notifications.append(message)

    async with pool, Client(build_server(pool), mode=mode, message_handler=on_message) as client:
        served = Served(client, pool, executor)
        yield served


def routed(answer: dict[str, Any]) -> FakeExecutor:
    """The routing call (the one with a JSON schema) answers ``answer``; other tasks echo."""

    def handler(request: ExecutionRequest) -> TaskResult:
        if request.config.json_schema is not None:
            return TaskResult.success_result(json.dumps(answer), 700, 1)
        return echo_handler(request)

    return FakeExecutor(handler=handler)


# ── the catalogue ─────────────────────────────────────────────────────


async def test_skill_workflow_routing_and_chain_tools_are_listed_with_schemas(
    project: Path,
) -> None:
    async with serving(project) as served:
        tools = {t.name: t for t in (await served.client.list_tools()).tools}
    assert set(tools) >= SKILL_TOOLS | CHAIN_TOOLS
    for name in SKILL_TOOLS | CHAIN_TOOLS:
        tool = tools[name]
        assert len(tool.description or "") > 80, name
        assert tool.input_schema["type"] == "object", name
        assert tool.output_schema is not None, name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is not None, name
    read_only = {n for n in SKILL_TOOLS | CHAIN_TOOLS if tools[n].annotations.read_only_hint}  # type: ignore[union-attr]
    assert read_only == {
        "pool_skill_list",
        "pool_skill_get",
        "pool_workflow_list",
        "pool_chain_result",
    }
    assert tools["pool_skill_remove"].annotations.destructive_hint  # type: ignore[union-attr]
    assert tools["pool_cancel_chain"].annotations.destructive_hint  # type: ignore[union-attr]
    assert tools["pool_skill_run"].annotations.open_world_hint  # type: ignore[union-attr]


async def test_every_skill_is_an_mcp_prompt_with_its_arguments(project: Path) -> None:
    async with serving(project) as served:
        prompts = {p.name: p for p in (await served.client.list_prompts()).prompts}
        skills = {s.name for s in served.pool.skills}
    assert set(prompts) == skills
    review = prompts["code-review"]
    arguments = {a.name: a.required for a in review.arguments or []}
    assert arguments["target"] is True
    assert arguments["focus"] is False
    assert "pool_skill_run" in (review.description or "")


async def test_a_prompt_renders_the_skill_with_its_arguments(project: Path) -> None:
    async with serving(project) as served:
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        rendered = await served.client.get_prompt("explain", {"path": "src/app.py"})
        with pytest.raises(MCPError) as missing:
            await served.client.get_prompt("explain", {"reader": "nobody"})
    [message] = rendered.messages
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    assert message.content.text == "Explain src/app.py.\n"
    assert "path" in str(missing.value)


# ── managing skills ───────────────────────────────────────────────────


async def test_skill_list_filters_by_scope_and_source(project: Path) -> None:
    async with serving(project) as served:
        everything = await served.call("pool_skill_list")
        coordinator = await served.call("pool_skill_list", scope="coordinator")
        builtin = await served.call("pool_skill_list", source="builtin")
        runtime = await served.call("pool_skill_list", source="runtime")
    names = [s["name"] for s in everything["skills"]]
    assert "code-review" in names
    assert names == sorted(names)
    assert {s["scope"] for s in coordinator["skills"]} == {"coordinator"}
    assert "pool-dashboard" in [s["name"] for s in coordinator["skills"]]
    assert {s["source"] for s in builtin["skills"]} == {"builtin"}
    assert runtime["skills"] == []
    assert everything["load_errors"] == []


async def test_skill_get_returns_the_template_and_an_unknown_name_suggests_close_ones(
    project: Path,
) -> None:
    async with serving(project) as served:
        skill = await served.call("pool_skill_get", name="code-review")
        error = await served.fail("pool_skill_get", name="code-reveiw")
    assert skill["source"] == "builtin"
    assert "{target}" in skill["body"]
    assert skill["markdown"].startswith("---\nname: code-review\n")
    assert any(a["name"] == "target" and a["required"] for a in skill["arguments"])
    assert "no skill named 'code-reveiw'" in error
    assert "code-review" in error


async def test_an_added_skill_is_listed_offered_as_a_prompt_and_announced(project: Path) -> None:
    async with serving(project) as served:
        assert "explain" not in await served.prompt_names()
        added = await served.call("pool_skill_add", skill_md=EXPLAIN)
        assert "explain" in await served.prompt_names()
        again = await served.call("pool_skill_add", skill_md=EXPLAIN.replace("Explain {", "Say {"))
        listed = await served.call("pool_skill_list", source="runtime")
        prompt = await served.client.get_prompt("explain", {"path": "x.py"})
    assert added["action"] == "added"
    assert added["now"]["source"] == "runtime"
    assert again["action"] == "replaced"
    assert [s["name"] for s in listed["skills"]] == ["explain"]
    assert isinstance(prompt.messages[0].content, TextContent)
    assert prompt.messages[0].content.text.startswith("Say x.py")
    changes = [n for n in served.notifications if isinstance(n, PromptListChangedNotification)]
    assert len(changes) == 2


async def test_adding_an_invalid_skill_is_refused_with_the_reason(project: Path) -> None:
    async with serving(project) as served:
        no_front_matter = await served.fail("pool_skill_add", skill_md="just a prompt")
        bad_name = await served.fail(
            "pool_skill_add", skill_md="---\nname: Bad Name\ndescription: x\n---\nbody\n"
        )
        still_serving = await served.call("pool_skill_list", source="runtime")
    assert "front matter" in no_front_matter
    assert "lowercase" in bad_name
    assert still_serving["skills"] == []


async def test_removing_a_runtime_skill_brings_back_the_builtin_and_updates_prompts(
    project: Path,
) -> None:
    override = "---\nname: summarize\ndescription: My summary.\n---\nSummarise $ARGUMENTS\n"
    async with serving(project) as served:
        await served.call("pool_skill_add", skill_md=override)
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        shadowing = await served.call("pool_skill_get", name="summarize")
        removed = await served.call("pool_skill_remove", name="summarize")
        gone = await served.call("pool_skill_remove", name="explain")
        prompts = await served.prompt_names()
        builtin = await served.fail("pool_skill_remove", name="code-review")
        unknown = await served.fail("pool_skill_remove", name="nothing-here")
    assert shadowing["source"] == "runtime"
    assert shadowing["shadows"] == ["builtin"]
    assert removed["now"]["source"] == "builtin"
    assert gone["now"] is None
    assert "explain" not in prompts
    assert "summarize" in prompts
    assert "only runtime skills can be removed" in builtin
    assert "no skill named 'nothing-here'" in unknown


async def test_save_writes_the_skill_to_the_project_or_global_directory(project: Path) -> None:
    home = Path.home()
    async with serving(project) as served:
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        saved = await served.call("pool_skill_save", name="explain")
        again = await served.fail("pool_skill_save", name="explain")
        global_ = await served.call("pool_skill_save", name="explain", location="global")
        overwritten = await served.call("pool_skill_save", name="explain", overwrite=True)
    project_file = project / ".claude-pool" / "skills" / "explain" / "SKILL.md"
    assert saved["path"] == str(project_file)
    assert "Explain {path}." in read(project_file)
    assert "already exists" in again
    assert global_["path"] == str(home / ".claude-pool" / "skills" / "explain" / "SKILL.md")
    assert is_file(global_["path"])
    assert overwritten["action"] == "saved"


async def test_eject_copies_a_builtin_into_the_project_where_it_wins(project: Path) -> None:
    async with serving(project) as served:
        ejected = await served.call("pool_skill_eject", name="pre-push")
        twice = await served.fail("pool_skill_eject", name="pre-push")
        not_builtin = await served.fail("pool_skill_eject", name="explain")
    assert ejected["path"] == str(project / ".claude-pool" / "skills" / "pre-push" / "SKILL.md")
    assert ejected["now"]["source"] == "project"
    assert ejected["now"]["shadows"] == ["builtin"]
    assert "already exists" in twice
    assert "no skill named 'explain'" in not_builtin


# ── running skills ────────────────────────────────────────────────────


async def test_skill_run_renders_it_and_merges_its_overrides_with_the_calls(
    project: Path,
) -> None:
    async with serving(project) as served:
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        run = await served.call(
            "pool_skill_run",
            name="explain",
            args={"path": "src/app.py", "reader": "a new contributor"},
            overrides={"model": "claude-haiku-4-5", "allowed_tools": ["Read"]},
            tags=["docs"],
        )
    request = served.executor.requests[-1]
    assert request.prompt.endswith("Explain src/app.py.\nWrite for: a new contributor\n")
    assert request.config.model == "claude-haiku-4-5"
    assert request.config.permission_mode == "dontAsk"
    assert "Grep" not in request.config.allowed_tools
    assert run["skill"] == "explain"
    assert run["overrides"]["permission_mode"] == "dontAsk"
    outcome = run["outcome"]
    assert outcome["state"] == "completed"
    assert outcome["tags"] == ["docs", "skill:explain"]
    assert served.notes()[-1].startswith(f"{outcome['task_id']} completed on slot")


async def test_skill_run_takes_arguments_as_one_line_and_can_return_at_once(
    project: Path,
) -> None:
    executor = FakeExecutor(hold=True)
    async with serving(project, executor) as served:
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        run = await served.call(
            "pool_skill_run", name="explain", arguments='app.py "a reviewer"', wait=False
        )
        [request] = await executor.wait_running(1)
        executor.release()
        record = await served.pool.wait(run["outcome"]["task_id"], timeout=WAIT)
    assert run["outcome"]["finished"] is False
    assert request.prompt.endswith("Explain app.py.\nWrite for: a reviewer\n")
    assert record.state == "completed"


async def test_skill_run_refuses_bad_arguments_and_coordinator_skills(project: Path) -> None:
    async with serving(project) as served:
        missing = await served.fail("pool_skill_run", name="code-review")
        unknown = await served.fail(
            "pool_skill_run", name="code-review", args={"target": "x", "colour": "red"}
        )
        both = await served.fail(
            "pool_skill_run", name="code-review", args={"target": "x"}, arguments="x"
        )
        coordinator = await served.fail("pool_skill_run", name="pool-dashboard")
        unknown_skill = await served.fail("pool_skill_run", name="nope")
    assert "missing required argument(s) target" in missing
    assert "unknown argument(s) colour" in unknown
    assert "not both" in both
    assert "coordinator skill" in coordinator
    assert "no skill named 'nope'" in unknown_skill
    assert served.executor.requests == []


# ── routing ───────────────────────────────────────────────────────────


async def test_route_classifies_without_running_the_request(project: Path) -> None:
    executor = routed({"kind": "parallel", "reason": "independent", "tasks": ["a", "b", "c"]})
    async with serving(project, executor) as served:
        decision = await served.call(
            "pool_route", request="review a, b and c", max_parallel=2, preference="parallel"
        )
        empty = await served.fail("pool_route", request="")
    assert decision["kind"] == "parallel"
    assert len(decision["prompts"]) == 2
    assert decision["adjustments"]
    assert len(executor.requests) == 1
    assert "prefers" in executor.requests[0].prompt
    assert "request" in empty


async def test_auto_routes_then_runs_the_parts_and_reports_them(project: Path) -> None:
    executor = routed({"kind": "parallel", "reason": "independent", "tasks": ["a", "b"]})
    async with serving(project, executor) as served:
        result = await served.call("pool_auto", request="do a and b", tags=["mine"])
        work = await served.pool.list_tasks()
    assert result["decision"]["kind"] == "parallel"
    assert result["success"] is True
    assert [p["result"]["output"] for p in result["parts"]] == ["done: a", "done: b"]
    assert result["cost_microdollars"] == 700 + 2 * 1000
    notes = served.notes()
    assert notes[0] == "routing the request"
    assert notes[-1] == "ran as parallel: succeeded"
    parts = [r for r in work if "mine" in r.tags]
    assert len(parts) == 2
    assert all(any(n.startswith(f"{r.id} queued") for n in notes) for r in parts)


async def test_auto_falls_back_to_one_task_when_routing_fails(project: Path) -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        if request.config.json_schema is not None:
            return TaskResult.success_result("not json at all", 500, 1)
        return echo_handler(request)

    async with serving(project, FakeExecutor(handler=handler)) as served:
        result = await served.call("pool_auto", request="just this")
    assert result["decision"]["kind"] == "single"
    assert result["decision"]["fallback_reason"]
    assert result["output"] == "done: just this"


# ── workflows ─────────────────────────────────────────────────────────


async def test_workflow_list_shows_parameters_and_steps(project: Path) -> None:
    async with serving(project) as served:
        listed = await served.call("pool_workflow_list")
    workflows = {w["name"]: w for w in listed["workflows"]}
    assert {"issue-to-pr", "refactor-and-test", "review-and-fix"} <= set(workflows)
    review = workflows["review-and-fix"]
    assert [s["name"] for s in review["steps"]] == ["review", "fix", "checks"]
    assert any(p["name"] == "target" and p["required"] for p in review["parameters"])


async def test_invoke_workflow_runs_its_steps_as_a_chain(project: Path) -> None:
    async with serving(project) as served:
        run = await served.call(
            "pool_invoke_workflow",
            name="review-and-fix",
            params={"target": "src/app.py"},
            overrides={"model": "claude-haiku-4-5"},
            isolation="none",
        )
    outcome = run["outcome"]
    assert run["engine"] == "chain"
    assert outcome["state"] == "completed", outcome["error"]
    steps = outcome["chain"]["steps"]
    assert [s["name"] for s in steps] == ["review", "fix", "checks"]
    prompts = [r.prompt for r in served.executor.requests]
    assert "src/app.py" in prompts[0]
    assert steps[0]["output"] in prompts[1]  # {previous_output}
    assert all(r.config.model == "claude-haiku-4-5" for r in served.executor.requests)
    # the review skill's own read-only settings still apply to its step
    assert served.executor.requests[0].config.permission_mode == "dontAsk"
    assert outcome["total_cost_microdollars"] == 3000
    assert any(": step fix completed" in n for n in served.notes())


async def test_invoke_workflow_refuses_unknown_workflows_and_bad_parameters(
    project: Path,
) -> None:
    async with serving(project) as served:
        unknown = await served.fail("pool_invoke_workflow", name="review-and-fx")
        missing = await served.fail("pool_invoke_workflow", name="review-and-fix")
        extra = await served.fail(
            "pool_invoke_workflow", name="review-and-fix", params={"target": "x", "when": "now"}
        )
    assert "review-and-fix" in unknown
    assert "missing required parameter(s) target" in missing
    assert "unknown parameter(s) when" in extra
    assert served.executor.requests == []


# ── chains ────────────────────────────────────────────────────────────


def json_steps(request: ExecutionRequest) -> TaskResult:
    if "plan" in request.prompt:
        return TaskResult.success_result('{"branch": "fix/42", "files": ["a.py"]}', 1000, 1)
    return echo_handler(request)


async def test_chain_runs_steps_in_order_with_outputs_and_variables(project: Path) -> None:
    async with serving(project, FakeExecutor(handler=json_steps)) as served:
        outcome = await served.call(
            "pool_chain",
            steps=[
                {"name": "plan", "prompt": "plan it", "output_vars": {"branch": "branch"}},
                {"name": "build", "prompt": "build on {steps.plan.branch}"},
                {"skill": "summarize", "args": {"target": "{previous_output}"}},
            ],
            isolation="none",
            name="demo",
        )
        resource = await served.client.read_resource(f"pool://chains/{outcome['chain_id']}")
    assert outcome["state"] == "completed"
    assert outcome["success"] is True
    steps = outcome["chain"]["steps"]
    assert steps[0]["vars"] == {"branch": "fix/42"}
    assert steps[1]["output"] == "done: build on fix/42"
    assert outcome["output"].startswith("done: ")
    assert "done: build on fix/42" in outcome["output"]
    assert outcome["total_cost_microdollars"] == 3000
    [contents] = resource.contents
    assert json.loads(contents.text)["id"] == outcome["chain_id"]  # type: ignore[union-attr]


async def test_chain_arguments_are_checked_before_anything_runs(project: Path) -> None:
    async with serving(project) as served:
        previous_first = await served.fail(
            "pool_chain", steps=[{"prompt": "use {previous_output}"}], isolation="none"
        )
        bad_reference = await served.fail(
            "pool_chain",
            steps=[{"name": "a", "prompt": "x"}, {"prompt": "{steps.a.nothing}"}],
            isolation="none",
        )
        no_steps = await served.fail("pool_chain", steps=[])
        unknown_chain = await served.fail("pool_chain_result", chain_id="chain-nope")
        with pytest.raises(MCPError):
            await served.client.read_resource("pool://chains/chain-nope")
    assert "first step has no {previous_output}" in previous_first
    assert "no output var 'nothing'" in bad_reference
    assert "steps" in no_steps
    assert "no chain with id 'chain-nope'" in unknown_chain
    assert served.executor.requests == []


async def test_a_submitted_chain_is_followed_and_cancelled_mid_step(project: Path) -> None:
    executor = FakeExecutor(hold=True)
    async with serving(project, executor) as served:
        submitted = await served.call(
            "pool_submit_chain",
            steps=[{"prompt": "first"}, {"prompt": "second"}],
            isolation="none",
        )
        chain_id = submitted["chain_id"]
        await executor.wait_running(1)
        running = await served.call("pool_chain_result", chain_id=chain_id)
        waited = await served.call(
            "pool_chain_result", chain_id=chain_id, wait=True, timeout_secs=0.3
        )
        cancelled = await served.call("pool_cancel_chain", chain_id=chain_id)
    assert running["finished"] is False
    assert running["current_step"] == "step-1"
    assert waited["finished"] is False
    assert "call again" in waited["note"]
    assert cancelled["state"] == "cancelled"
    assert [s["state"] for s in cancelled["chain"]["steps"]] == ["cancelled", "skipped"]


async def test_chain_result_waits_for_the_end(project: Path) -> None:
    executor = FakeExecutor(hold=True)
    async with serving(project, executor) as served:
        submitted = await served.call(
            "pool_submit_chain", steps=[{"prompt": "only"}], isolation="none"
        )
        await executor.wait_running(1)
        waiting = asyncio.create_task(
            served.call("pool_chain_result", chain_id=submitted["chain_id"], wait=True)
        )
        executor.release()
        outcome = await waiting
    assert outcome["finished"] is True
    assert outcome["output"] == "done: only"


async def test_fan_out_chains_keeps_each_chains_outcome(project: Path) -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        if "bad" in request.prompt:
            return TaskResult.failure("could not")
        return echo_handler(request)

    async with serving(project, FakeExecutor(handler=handler)) as served:
        result = await served.call(
            "pool_fan_out_chains",
            chains=[
                {
                    "steps": [{"prompt": "good one"}, {"prompt": "then {previous_output}"}],
                    "isolation": "none",
                },
                {"steps": [{"prompt": "bad one"}, {"prompt": "never"}], "isolation": "none"},
            ],
        )
    first, second = result["chains"]
    assert first["success"] is True
    assert first["output"] == "done: then done: good one"
    assert second["state"] == "failed"
    assert [s["state"] for s in second["chain"]["steps"]] == ["failed", "skipped"]
    assert (result["succeeded"], result["failed"]) == (1, 1)
    assert result["total_cost_microdollars"] == 2000
    assert served.progress[-1][1] == 2


async def test_skill_tools_work_over_the_modern_protocol_too(project: Path) -> None:
    async with serving(project, mode="auto") as served:
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        prompts = await served.prompt_names()
        run = await served.call("pool_skill_run", name="explain", args={"path": "a.py"})
    assert "explain" in prompts
    assert run["outcome"]["result"]["output"].endswith("Explain a.py.\n")


async def test_modern_clients_listening_hear_that_the_prompts_changed(project: Path) -> None:
    async with (
        serving(project, mode="auto") as served,
        served.client.listen(prompts_list_changed=True) as subscription,
    ):
        await served.call("pool_skill_add", skill_md=EXPLAIN)
        event = await asyncio.wait_for(anext(aiter(subscription)), WAIT)
    assert type(event).__name__ == "PromptsListChanged"


async def test_older_protocol_clients_are_told_the_prompt_list_can_change(
    project: Path,
) -> None:
    async with serving(project, mode="legacy") as served:
        prompts = served.client.server_capabilities.prompts
    assert prompts is not None
    assert prompts.list_changed is True


async def test_every_connected_client_hears_that_the_prompts_changed(project: Path) -> None:
    heard = asyncio.Event()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, PromptListChangedNotification):
            heard.set()

    async with serving(project, mode="legacy") as served:
        server = build_server(served.pool)
        async with (
            Client(server, mode="legacy", message_handler=on_message) as watcher,
            Client(server, mode="legacy") as editor,
        ):
            result = await asyncio.wait_for(
                editor.call_tool("pool_skill_add", {"skill_md": EXPLAIN}), WAIT
            )
            await asyncio.wait_for(heard.wait(), WAIT)
            listed = await watcher.list_prompts(cache_mode="refresh")
    assert not result.is_error
    assert "explain" in {p.name for p in listed.prompts}


async def test_a_skill_added_through_the_library_becomes_a_prompt(project: Path) -> None:
    async with serving(project) as served:
        served.pool.skills.add(EXPLAIN)
        after_add = await served.client.list_prompts(cache_mode="refresh")
        served.pool.skills.remove("explain")
        after_remove = await served.client.list_prompts(cache_mode="refresh")
    assert "explain" in {p.name for p in after_add.prompts}
    assert "explain" not in {p.name for p in after_remove.prompts}


async def test_cancelling_a_waiting_skill_run_cancels_its_task(project: Path) -> None:
    executor = FakeExecutor(hold=True)
    async with serving(project, executor) as served:
        call = asyncio.create_task(
            served.client.call_tool("pool_skill_run", {"name": "summarize", "arguments": "x"})
        )
        [request] = await executor.wait_running(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        record = await served.pool.wait(request.task_id, timeout=WAIT)
    assert record.state == "cancelled"


async def test_cancelling_a_pool_chain_call_cancels_the_chain(project: Path) -> None:
    executor = FakeExecutor(hold=True)
    async with serving(project, executor) as served:
        call = asyncio.create_task(
            served.client.call_tool(
                "pool_chain", {"steps": [{"prompt": "a"}, {"prompt": "b"}], "isolation": "none"}
            )
        )
        await executor.wait_running(1)
        [chain] = await served.pool.list_chains()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        result = await served.pool.wait_chain(chain.id, timeout=WAIT)
    assert result.state == "cancelled"
    assert [s.state for s in result.steps] == ["cancelled", "skipped"]

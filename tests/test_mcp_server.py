"""The MCP server's tools and resources, through an in-process MCP client session.

The pool behind the server is a real ``Pool`` on the memory store with the fake executor, so
these tests check the translation (arguments in, structured results out, errors as tool
errors, progress as notifications), not the engine's rules, which have their own tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import TextResourceContents

from claude_pool import Pool, PoolConfig, ScalingConfig, Settings, TaskOverrides, TaskResult
from claude_pool.executor.base import EventKind, ExecutionRequest
from claude_pool.mcp import DEFAULT_TOOL_GROUPS, INSTRUCTIONS, build_server, pool_tool
from claude_pool.mcp.arguments import MAX_PROMPT_CHARS, TaskOverridesArg
from claude_pool.mcp.models import Submitted
from claude_pool.mcp.tooling import READ_ONLY
from claude_pool.store import MemoryStore, SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor, echo_handler
from claude_pool.testing.mcp_client import WAIT, Served

ALL_TOOLS = {
    "pool_run",
    "pool_submit",
    "pool_result",
    "pool_cancel",
    "pool_fan_out",
    "pool_status",
    "pool_session_metrics",
    "pool_list_tasks",
    "pool_drain",
    "pool_submit_with_review",
    "pool_approve_result",
    "pool_reject_result",
    "pool_scale_up",
    "pool_scale_down",
    "pool_set_target_slots",
    "pool_find_slots",
    "pool_configure_slot",
    "pool_claim",
    "pool_complete_claimed",
    "context_set",
    "context_get",
    "context_delete",
    "context_list",
    "pool_send_message",
    "pool_broadcast",
    "pool_read_messages",
    "pool_peek_messages",
    "pool_merge",
    # chains, skills, workflows, routing (tests/test_mcp_skills.py)
    "pool_chain",
    "pool_submit_chain",
    "pool_fan_out_chains",
    "pool_chain_result",
    "pool_cancel_chain",
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


@asynccontextmanager
async def serving(
    executor: FakeExecutor | None = None,
    *,
    slots: int = 2,
    config: PoolConfig | None = None,
    mode: str = "legacy",
) -> AsyncIterator[Served]:
    executor = executor or FakeExecutor()
    config = config or PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=4))
    pool = Pool(
        config,
        slots=slots,
        store=MemoryStore(),
        executor=executor,
        settings=Settings(pool=config, drain_grace_secs=2),
    )
    async with pool, Client(build_server(pool), mode=mode) as client:
        yield Served(client, pool, executor)


def scripted(events: Iterable[tuple[EventKind, dict[str, Any]]]) -> Any:
    script = list(events)
    return lambda request: script


# ── the catalogue ─────────────────────────────────────────────────────


async def test_every_tool_is_listed_with_description_schemas_and_annotations() -> None:
    async with serving() as served:
        tools = {t.name: t for t in (await served.client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    for tool in tools.values():
        assert len(tool.description or "") > 40, tool.name
        assert tool.input_schema["type"] == "object", tool.name
        assert tool.output_schema is not None, tool.name
        hints = tool.annotations
        assert hints is not None, tool.name
        assert hints.read_only_hint is not None, tool.name
        assert hints.destructive_hint is not None, tool.name
        assert hints.idempotent_hint is not None, tool.name
    read_only = {
        name for name, t in tools.items() if t.annotations and t.annotations.read_only_hint
    }
    assert read_only == {
        "pool_result",
        "pool_status",
        "pool_session_metrics",
        "pool_list_tasks",
        "pool_find_slots",
        "context_get",
        "context_list",
        "pool_peek_messages",
        "pool_chain_result",
        "pool_skill_list",
        "pool_skill_get",
        "pool_workflow_list",
    }
    for destructive in ("pool_cancel", "pool_drain", "pool_scale_down", "context_delete"):
        hints = tools[destructive].annotations
        assert hints is not None, destructive
        assert hints.destructive_hint, destructive
    assert tools["pool_run"].input_schema["properties"]["prompt"]["maxLength"] == MAX_PROMPT_CHARS


async def test_the_server_tells_the_coordinator_how_to_use_the_pool() -> None:
    async with serving() as served:
        instructions = served.client.instructions
        server_info = served.client.server_info
    assert instructions == INSTRUCTIONS
    assert server_info is not None
    assert server_info.name == "claude-pool"
    for topic in ("pool_submit", "pool_fan_out", "budget", "review", "role", "context_set"):
        assert topic in INSTRUCTIONS


def test_the_overrides_argument_offers_every_task_override() -> None:
    assert set(TaskOverridesArg.model_fields) == set(TaskOverrides.model_fields)


# ── running work ──────────────────────────────────────────────────────


async def test_pool_run_returns_the_result_and_reports_the_slots_progress() -> None:
    executor = FakeExecutor(
        events=scripted(
            [
                (EventKind.TOOL_USE, {"name": "Bash", "input": {"command": "ls -la"}}),
                (EventKind.ASSISTANT_TEXT, {"text": "Reading the files now"}),
            ]
        )
    )
    async with serving(executor) as served:
        outcome = await served.call("pool_run", prompt="list the files", tags=["ls"])
    assert outcome["state"] == "completed"
    assert outcome["finished"] is True
    assert outcome["tags"] == ["ls"]
    assert outcome["result"]["output"] == "done: list the files"
    assert outcome["result"]["cost_microdollars"] == 1000
    notes = served.notes()
    task_id = outcome["task_id"]
    assert notes[0] == f"{task_id}: queued"
    assert f"{task_id}: using Bash ls -la" in notes
    assert f"{task_id}: Reading the files now" in notes
    assert notes[-1].startswith(f"{task_id} completed on slot")
    values = [p for p, _, _ in served.progress]
    assert values == sorted(set(values))


async def test_pool_run_hands_overrides_and_targeting_to_the_engine() -> None:
    async with serving() as served:
        [first, second] = served.pool.slots
        await served.call("pool_configure_slot", slot_id=second.id, role="reviewer")
        outcome = await served.call(
            "pool_run",
            prompt="review it",
            role="reviewer",
            timeout_secs=30,
            fresh_session=True,
            overrides={
                "model": "claude-haiku-4-5",
                "permission_mode": "acceptEdits",
                "allowed_tools": ["Read"],
                "max_budget_usd": 0.5,
                "json_schema": {"type": "object"},
            },
        )
    request = served.executor.requests[-1]
    assert outcome["slot_id"] == second.id
    assert request.slot_id == second.id
    assert request.config.model == "claude-haiku-4-5"
    assert request.config.permission_mode == "acceptEdits"
    assert "Read" in request.config.allowed_tools
    assert request.config.json_schema == {"type": "object"}
    assert request.timeout_secs == 30
    assert request.session_id is None
    del first


async def test_a_failed_task_is_a_result_with_success_false_not_a_tool_error() -> None:
    executor = FakeExecutor(handler=lambda request: TaskResult.failure("the CLI crashed"))
    async with serving(executor) as served:
        outcome = await served.call("pool_run", prompt="do it")
    assert outcome["state"] == "failed"
    assert outcome["result"]["success"] is False
    assert outcome["result"]["output"] == "the CLI crashed"


async def test_submit_returns_at_once_and_result_waits_with_progress() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor) as served:
        submitted = await served.call("pool_submit", prompt="slow work", priority=3)
        task_id = submitted["task_id"]
        await executor.wait_running(1)
        early = await served.call("pool_result", task_id=task_id)
        assert early["finished"] is False
        assert early["result"] is None
        assert "pool_result" in early["note"]
        waiting = asyncio.create_task(served.call("pool_result", task_id=task_id, wait=True))
        executor.release()
        outcome = await waiting
    assert outcome["finished"] is True
    assert outcome["result"]["output"] == "done: slow work"
    assert served.notes()[-1].startswith(f"{task_id} completed on slot")


async def test_waiting_for_a_result_gives_up_after_the_timeout_with_the_unfinished_task() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor) as served:
        task_id = (await served.call("pool_submit", prompt="never ends"))["task_id"]
        await executor.wait_running(1)
        outcome = await served.call("pool_result", task_id=task_id, wait=True, timeout_secs=0.2)
        executor.release()
    assert outcome["finished"] is False
    assert outcome["state"] == "running"
    assert "call again" in outcome["note"]


async def test_cancel_stops_a_running_task() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor) as served:
        task_id = (await served.call("pool_submit", prompt="long job"))["task_id"]
        await executor.wait_running(1)
        outcome = await served.call("pool_cancel", task_id=task_id)
    assert outcome["state"] == "cancelled"
    assert outcome["finished"] is True


async def test_cancelling_a_pool_run_call_cancels_its_task() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor) as served:
        call = asyncio.create_task(served.client.call_tool("pool_run", {"prompt": "abandoned"}))
        [request] = await executor.wait_running(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        record = await served.pool.wait(request.task_id, timeout=WAIT)
    assert record.state == "cancelled"


async def test_fan_out_keeps_every_items_outcome_in_input_order() -> None:
    def handler(request: ExecutionRequest) -> TaskResult:
        if "bad" in request.prompt:
            return TaskResult.failure("could not do the bad one")
        return echo_handler(request)

    async with serving(FakeExecutor(handler=handler)) as served:
        result = await served.call("pool_fan_out", prompts=["one", "bad", "three", "   "])
    items = result["items"]
    assert [item["index"] for item in items] == [0, 1, 2, 3]
    assert [item["success"] for item in items] == [True, False, True, False]
    assert items[0]["result"]["output"] == "done: one"
    assert items[1]["error"] == "could not do the bad one"
    assert items[3]["task_id"] is None
    assert "prompt must not be empty" in items[3]["error"]
    assert (result["succeeded"], result["failed"]) == (2, 2)
    assert result["total_cost_microdollars"] == 2000
    assert [total for _, total, _ in served.progress] == [4.0] * len(served.progress)
    assert served.progress[-1][0] == 4.0


# ── inspecting ────────────────────────────────────────────────────────


async def test_status_metrics_and_task_listing() -> None:
    async with serving() as served:
        for prompt in ("a", "b", "c"):
            await served.call("pool_run", prompt=prompt, tags=[f"t-{prompt}"])
        status = await served.call("pool_status")
        metrics = await served.call("pool_session_metrics", tags=["t-a", "t-b"])
        page = await served.call("pool_list_tasks", limit=2)
        rest = await served.call("pool_list_tasks", limit=2, offset=2)
        tagged = await served.call("pool_list_tasks", tags=["t-c"], state="completed")
    assert len(status["slots"]) == 2
    assert status["tasks"] == {"completed": 3}
    assert status["spend_microdollars"] == 3000
    assert metrics["total_tasks"] == 2
    assert metrics["total_spend_microdollars"] == 2000
    assert [t["prompt_preview"] for t in page["tasks"]] == ["a", "b"]
    assert page["more"] is True
    assert [t["prompt_preview"] for t in rest["tasks"]] == ["c"]
    assert rest["more"] is False
    assert [t["output_preview"] for t in tagged["tasks"]] == ["done: c"]


# ── review gate ───────────────────────────────────────────────────────


async def test_review_gate_approves_and_rejects_until_the_limit() -> None:
    async with serving() as served:
        approved_id = (await served.call("pool_submit_with_review", prompt="draft"))["task_id"]
        held = await served.call("pool_result", task_id=approved_id, wait=True)
        assert held["state"] == "pending_review"
        assert held["awaiting_review"] is True
        approved = await served.call("pool_approve_result", task_id=approved_id)
        assert approved["state"] == "completed"

        task_id = (await served.call("pool_submit_with_review", prompt="essay", max_rejections=2))[
            "task_id"
        ]
        await served.call("pool_result", task_id=task_id, wait=True)
        first = await served.call("pool_reject_result", task_id=task_id, feedback="shorter")
        assert first["requeued"] is True
        assert (first["attempt"], first["max_attempts"]) == (2, 2)
        again = await served.call("pool_result", task_id=task_id, wait=True)
        assert again["state"] == "pending_review"
        assert "shorter" in served.executor.requests[-1].prompt
        last = await served.call("pool_reject_result", task_id=task_id, feedback="still long")
        assert last["requeued"] is False
        assert last["state"] == "failed"
        error = await served.fail("pool_approve_result", task_id=task_id)
    assert "InvalidTaskState" in error
    assert "pool_result" in error


# ── slots ─────────────────────────────────────────────────────────────


async def test_scaling_tools_change_the_slot_count_within_bounds() -> None:
    async with serving() as served:
        up = await served.call("pool_scale_up", n=1)
        assert up["slot_count"] == 3
        assert len(up["changed"]) == 1
        down = await served.call("pool_scale_down", n=2)
        assert down["slot_count"] == 1
        target = await served.call("pool_set_target_slots", n=4)
        assert target["slot_count"] == 4
        assert len(target["changed"]) == 3
        error = await served.fail("pool_set_target_slots", n=9)
        idle = await served.call("pool_find_slots", state="idle")
    assert "ScalingError" in error
    assert "1..4" in error
    assert len(idle["slots"]) == 4


async def test_a_configured_slot_is_found_by_name_and_role() -> None:
    async with serving() as served:
        slot_id = served.pool.slots[0].id
        slot = await served.call(
            "pool_configure_slot",
            slot_id=slot_id,
            name="ada",
            role="reviewer",
            description="reviews diffs",
            model="claude-opus-4-1",
            permission_mode="plan",
        )
        by_role = await served.call("pool_find_slots", role="reviewer")
        by_name = await served.call("pool_find_slots", name="nobody")
    assert slot["config"]["name"] == "ada"
    assert slot["config"]["model"] == "claude-opus-4-1"
    assert [s["id"] for s in by_role["slots"]] == [slot_id]
    assert by_name["slots"] == []


# ── claiming ──────────────────────────────────────────────────────────


async def test_a_claimed_task_is_done_by_the_caller_and_never_by_a_slot() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor, slots=1) as served:
        await served.call("pool_submit", prompt="keeps the slot busy")
        await executor.wait_running(1)
        queued = (await served.call("pool_submit", prompt="do this yourself"))["task_id"]
        claim = await served.call("pool_claim", claimant="coordinator")
        assert claim["claimed"] is True
        assert claim["task_id"] == queued
        assert claim["prompt"] == "do this yourself"
        nothing = await served.call("pool_claim")
        assert nothing["claimed"] is False
        done = await served.call(
            "pool_complete_claimed", task_id=queued, output="did it", cost_usd=0.25
        )
        twice = await served.fail("pool_claim", task_id=queued)
        executor.release()
    assert done["state"] == "completed"
    assert done["result"]["output"] == "did it"
    assert done["result"]["cost_microdollars"] == 250_000
    assert "InvalidTaskState" in twice
    assert [r.prompt for r in executor.requests] == ["keeps the slot busy"]


# ── context and messages ──────────────────────────────────────────────


async def test_context_notes_round_trip_and_reach_every_tasks_system_prompt() -> None:
    async with serving() as served:
        await served.call("context_set", key="style", value="use tabs")
        await served.call("context_set", key="repo", value="/src/app")
        got = await served.call("context_get", key="style")
        missing = await served.call("context_get", key="nope")
        listing = await served.call("context_list")
        await served.call("pool_run", prompt="format it")
        deleted = await served.call("context_delete", key="repo")
        deleted_again = await served.call("context_delete", key="repo")
    assert got == {"key": "style", "value": "use tabs", "found": True}
    assert missing["found"] is False
    assert listing["entries"] == {"style": "use tabs", "repo": "/src/app"}
    system_prompt = served.executor.requests[-1].config.system_prompt or ""
    assert "style: use tabs" in system_prompt
    assert (deleted["deleted"], deleted_again["deleted"]) == (True, False)


async def test_messages_are_peeked_read_and_broadcast() -> None:
    async with serving() as served:
        first, second = (s.id for s in served.pool.slots)
        sent = await served.call("pool_send_message", to_slot=first, content="check the tests")
        peeked = await served.call("pool_peek_messages", slot_id=first)
        read = await served.call("pool_read_messages", slot_id=first)
        after = await served.call("pool_peek_messages", slot_id=first)
        broadcast = await served.call("pool_broadcast", content="stand up", from_slot=first)
    assert sent["from_slot"] == "coordinator"
    assert [m["content"] for m in peeked["messages"]] == ["check the tests"]
    assert [m["content"] for m in read["messages"]] == ["check the tests"]
    assert after["messages"] == []
    assert [m["to_slot"] for m in broadcast["messages"]] == [second]


# ── draining ──────────────────────────────────────────────────────────


async def test_drain_stops_the_pool_and_new_work_is_refused_with_advice() -> None:
    async with serving() as served:
        await served.call("pool_run", prompt="before")
        summary = await served.call("pool_drain", grace_secs=1)
        error = await served.fail("pool_submit", prompt="after")
        status = await served.call("pool_status")
    assert summary["slots_stopped"] == 2
    assert summary["total_spend_microdollars"] == 1000
    assert "PoolShutdown" in error
    assert "restart" in error
    assert status["shutting_down"] is True
    assert served.notes()[-1] == "drained"


# ── bad input ─────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("pool_run", {}, "prompt"),
        ("pool_run", {"prompt": 42}, "prompt"),
        ("pool_run", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "1,000,000-character limit"),
        ("pool_run", {"prompt": "hi", "overrides": {"modle": "x"}}, "modle"),
        ("pool_run", {"prompt": "hi", "overrides": {"permission_mode": "yolo"}}, "acceptEdits"),
        ("pool_submit", {"prompt": "hi", "timeout_secs": -5}, "timeout_secs"),
        ("pool_submit", {"prompt": "   "}, "prompt must not be empty"),
        ("pool_fan_out", {"prompts": []}, "prompts"),
        ("pool_result", {"task_id": "task-nope"}, "TaskNotFound"),
        ("pool_cancel", {"task_id": "task-nope"}, "pool_list_tasks"),
        ("pool_list_tasks", {"limit": -1}, "limit"),
        ("pool_list_tasks", {"state": "sleeping"}, "state"),
        ("pool_scale_up", {"n": -2}, "greater than or equal to 1"),
        ("pool_scale_up", {"n": "many"}, "n"),
        ("pool_configure_slot", {"slot_id": "slot-nope", "role": "x"}, "SlotNotFound"),
        ("pool_send_message", {"to_slot": "slot-nope", "content": "hi"}, "pool_find_slots"),
        ("pool_reject_result", {"task_id": "task-nope", "feedback": ""}, "feedback"),
        ("pool_complete_claimed", {"task_id": "task-nope", "output": "x"}, "TaskNotFound"),
        ("context_set", {"key": "", "value": "v"}, "key"),
        ("context_set", {"key": "k", "value": "v" * 100_001}, "100,000-character limit"),
        ("context_get", {"key": ""}, ("key", "at least 1 character")),
        ("context_get", {}, ("key", "Field required")),
        ("context_delete", {"key": "k" * 257}, ("key", "at most 256 characters")),
        (
            "pool_submit",
            {"prompt": "hi", "priority": True},
            ("priority", "must be a number, not true"),
        ),
        ("pool_list_tasks", {"offset": 10**20}, ("offset", "less than or equal to 1000000000")),
        ("pool_list_tasks", {"limit": True}, ("limit", "must be a number, not true")),
        (
            "pool_session_metrics",
            {"since_ms": 10**20},
            ("since_ms", "less than or equal to 9007199254740991"),
        ),
        ("pool_session_metrics", {"until_ms": -1}, ("until_ms", "greater than or equal to 0")),
        ("pool_session_metrics", {"since_ms": False}, ("since_ms", "must be a number, not false")),
        ("pool_scale_down", {"n": 0}, "greater than or equal to 1"),
        ("pool_scale_down", {"n": 1_001}, "less than or equal to 1000"),
        ("pool_broadcast", {"content": ""}, ("content", "at least 1 item")),
        (
            "pool_broadcast",
            {"content": "hi", "from_slot": ""},
            ("from_slot", "at least 1 character"),
        ),
        ("pool_read_messages", {"slot_id": "slot-nope"}, "SlotNotFound"),
        ("pool_peek_messages", {"slot_id": "slot-nope"}, "SlotNotFound"),
        ("pool_peek_messages", {}, ("slot_id", "Field required")),
        ("pool_submit_chain", {"steps": []}, ("steps", "at least 1 item")),
        ("pool_submit_chain", {"steps": [{"name": "x"}]}, "a step needs a prompt or a skill"),
        ("pool_submit_chain", {"steps": [{"prompt": "x", "retries": 11}]}, "steps.0.retries"),
        ("pool_submit_chain", {"steps": [{"prompt": "x", "bogus": 1}]}, "steps.0.bogus"),
        (
            "pool_submit_chain",
            {"steps": [{"skill": "no-such-skill"}]},
            ("SkillNotFound", "no-such-skill"),
        ),
        (
            "pool_submit_chain",
            {"steps": [{"prompt": "x", "overrides": {"max_turns": 0}}]},
            "steps.0.overrides.max_turns",
        ),
        ("pool_fan_out_chains", {"chains": []}, ("chains", "at least 1 item")),
        ("pool_fan_out_chains", {"chains": [{"steps": []}]}, "chains.0.steps"),
        ("pool_fan_out_chains", {"chains": [{"steps": [{}]}]}, "a step needs a prompt"),
        ("pool_cancel_chain", {"chain_id": "chain-nope"}, "ChainNotFound"),
        ("pool_cancel_chain", {"chain_id": ""}, ("chain_id", "at least 1 character")),
        ("pool_chain_result", {"chain_id": "chain-nope"}, "ChainNotFound"),
        ("pool_auto", {"request": ""}, ("request", "at least 1 character")),
        (
            "pool_auto",
            {"request": "x", "max_parallel": 0},
            ("max_parallel", "greater than or equal to 1"),
        ),
        ("pool_auto", {"request": "x", "preference": "sometimes"}, "preference"),
        (
            "pool_route",
            {"request": "x", "max_steps": 51},
            ("max_steps", "less than or equal to 50"),
        ),
        (
            "pool_route",
            {"request": "x", "max_steps": True},
            ("max_steps", "must be a number, not true"),
        ),
        (
            "pool_route",
            {"request": "x", "domain": "d" * 1_001},
            ("domain", "at most 1000 characters"),
        ),
        ("pool_skill_get", {"name": "no-such-skill"}, "SkillNotFound"),
        ("pool_skill_remove", {"name": "no-such-skill"}, "SkillNotFound"),
        ("pool_skill_save", {"name": "no-such-skill"}, "SkillNotFound"),
        ("pool_skill_eject", {"name": "no-such-skill"}, "SkillNotFound"),
        ("pool_skill_run", {"name": "no-such-skill"}, "SkillNotFound"),
        ("pool_skill_list", {"scope": "everything"}, "scope"),
        ("pool_invoke_workflow", {"name": "no-such-workflow"}, "WorkflowNotFound"),
        ("no_such_tool", {}, "Unknown tool"),
    ],
)
async def test_bad_arguments_get_a_clear_tool_error_and_the_server_keeps_serving(
    tool: str, arguments: dict[str, Any], expected: str | tuple[str, ...]
) -> None:
    async with serving() as served:
        error = await served.fail(tool, **arguments)
        status = await served.call("pool_status")
        chains = await served.pool.list_chains()
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in error
    assert status["tasks"] == {}
    assert chains == []


def numbers_in(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every integer or number in a JSON schema (nested models and unions included)."""
    if isinstance(schema, dict):
        if schema.get("type") in ("integer", "number"):
            yield where, schema
        for key, value in schema.items():
            yield from numbers_in(value, f"{where}.{key}" if where else key)
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from numbers_in(value, f"{where}[{index}]")


def top_level_numbers(schema: dict[str, Any]) -> list[str]:
    return [
        name
        for name, prop in schema.get("properties", {}).items()
        if any(True for _ in numbers_in(prop))
    ]


async def test_every_number_argument_of_every_tool_has_an_upper_bound() -> None:
    async with serving() as served:
        tools = (await served.client.list_tools()).tools
    unbounded = [
        f"{tool.name}: {where}"
        for tool in tools
        for where, number in numbers_in(tool.input_schema)
        if "maximum" not in number and "exclusiveMaximum" not in number
    ]
    assert unbounded == []
    assert sum(len(top_level_numbers(t.input_schema)) for t in tools) > 20


async def test_true_is_not_taken_for_a_number_by_any_tool() -> None:
    async with serving() as served:
        tools = (await served.client.list_tools()).tools
        refused = {
            (tool.name, name): await served.fail(tool.name, **{name: True})
            for tool in tools
            for name in top_level_numbers(tool.input_schema)
        }
        status = await served.call("pool_status")
    assert refused
    for (tool, name), error in refused.items():
        assert f"{name}\n  Value error, must be a number, not true" in error, (tool, error)
    assert status["tasks"] == {}


async def test_numbers_sent_as_strings_are_still_accepted() -> None:
    async with serving() as served:
        listed = await served.call("pool_list_tasks", limit="5", offset="0")
    assert (listed["limit"], listed["offset"]) == (5, 0)


async def test_huge_numbers_get_a_clear_error_from_the_sqlite_store_too(tmp_path: Path) -> None:
    config = PoolConfig()
    store = SqliteStore(tmp_path / "pool.db")
    pool = Pool(config, slots=1, store=store, executor=FakeExecutor(), settings=Settings())
    async with pool, Client(build_server(pool), mode="legacy") as client:
        served = Served(client, pool, FakeExecutor())
        metrics = await served.fail("pool_session_metrics", since_ms=10**20)
        page = await served.fail("pool_list_tasks", offset=10**20)
        status = await served.call("pool_status")
    assert "since_ms" in metrics
    assert "less than or equal to" in metrics
    assert "offset" in page
    assert "less than or equal to" in page
    assert status["shutting_down"] is False


def overflowing_tool(server: MCPServer[Any], pool: Pool) -> None:
    @pool_tool(server, "overflow", READ_ONLY, "Overflows")
    async def overflow() -> Submitted:
        """A tool whose engine call overflows, as SQLite does for a number over 64 bits."""
        raise OverflowError("Python int too large to convert to SQLite INTEGER")


async def test_an_overflow_in_the_engine_is_a_clear_tool_error() -> None:
    config = PoolConfig()
    pool = Pool(config, slots=1, store=MemoryStore(), executor=FakeExecutor(), settings=Settings())
    server = build_server(pool, tool_groups=[*DEFAULT_TOOL_GROUPS, overflowing_tool])
    async with pool, Client(server, mode="legacy") as client:
        served = Served(client, pool, FakeExecutor())
        error = await served.fail("overflow")
        status = await served.call("pool_status")
    assert "too large" in error
    assert "use a smaller value" in error
    assert "Error executing tool overflow:" in error
    assert status["shutting_down"] is False


async def test_messages_of_a_slot_in_the_store_but_not_this_pool_can_be_read(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "shared.db")  # as a `claude-pool worker` shares it
    config = PoolConfig()
    other = Pool(config, slots=1, store=store, executor=FakeExecutor(), settings=Settings())
    pool = Pool(config, slots=1, store=store, executor=FakeExecutor(), settings=Settings())
    async with other, pool, Client(build_server(pool), mode="legacy") as client:
        served = Served(client, pool, FakeExecutor())
        [elsewhere] = other.slots
        await served.call("pool_send_message", to_slot=elsewhere.id, content="hello")
        peeked = await served.call("pool_peek_messages", slot_id=elsewhere.id)
        read = await served.call("pool_read_messages", slot_id=elsewhere.id)
        unknown = await served.fail("pool_read_messages", slot_id="slot-nope")
    assert [m["content"] for m in peeked["messages"]] == ["hello"]
    assert [m["content"] for m in read["messages"]] == ["hello"]
    assert "SlotNotFound" in unknown


async def test_spending_the_budget_refuses_new_work_and_shows_in_the_budget_resource() -> None:
    # A task costs 1000 here; what is left after two cannot pay for another call.
    config = PoolConfig(budget_microdollars=2500)
    async with serving(config=config) as served:
        await served.call("pool_run", prompt="one")
        await served.call("pool_run", prompt="two")
        error = await served.fail("pool_submit", prompt="three")
        budget = await read_json(served.client, "pool://budget")
    assert "BudgetExhausted" in error
    assert budget == {
        "budget_microdollars": 2500,
        "spend_microdollars": 2000,
        "remaining_microdollars": 500,
        "exhausted": True,
    }


# ── resources ─────────────────────────────────────────────────────────


async def read_json(client: Client, uri: str) -> Any:
    result = await asyncio.wait_for(client.read_resource(uri), WAIT)
    [content] = result.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    return json.loads(content.text)


async def test_resources_show_status_slots_budget_context_and_results() -> None:
    async with serving() as served:
        client = served.client
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        templates = {
            t.uri_template for t in (await client.list_resource_templates()).resource_templates
        }
        outcome = await served.call("pool_run", prompt="hello")
        await served.call("context_set", key="k", value="v")
        slot_id = served.pool.slots[0].id
        status = await read_json(client, "pool://status")
        slots = await read_json(client, "pool://slots")
        slot = await read_json(client, f"pool://slots/{slot_id}")
        budget = await read_json(client, "pool://budget")
        context = await read_json(client, "pool://context")
        result = await read_json(client, f"pool://results/{outcome['task_id']}")
        with pytest.raises(MCPError, match="no task"):
            await client.read_resource("pool://results/task-nope")
        with pytest.raises(MCPError, match="no slot"):
            await client.read_resource("pool://slots/slot-nope")
    assert listed == {"pool://status", "pool://slots", "pool://budget", "pool://context"}
    assert templates == {"pool://slots/{id}", "pool://results/{id}", "pool://chains/{id}"}
    assert status["tasks"] == {"completed": 1}
    assert len(slots) == 2
    assert slot["id"] == slot_id
    assert budget["budget_microdollars"] is None
    assert budget["spend_microdollars"] == 1000
    assert context == {"k": "v"}
    assert result["result"]["output"] == "done: hello"


async def test_the_modern_in_process_protocol_serves_the_same_tools() -> None:
    async with serving(mode="auto") as served:
        outcome = await served.call("pool_run", prompt="modern")
        error = await served.fail("pool_result", task_id="task-nope")
    assert outcome["result"]["output"] == "done: modern"
    assert "TaskNotFound" in error


async def test_submit_with_dependencies_waits_for_them_and_lists_what_it_waits_for() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor, slots=2) as served:
        first = (await served.call("pool_submit", prompt="first"))["task_id"]
        await executor.wait_running(1)
        after = await served.call(
            "pool_submit", prompt=f"then use {{{{{first}.output}}}}", depends_on=[first]
        )
        listed = await served.call("pool_list_tasks", state="pending")
        assert [(t["task_id"], t["waiting_for"]) for t in listed["tasks"]] == [
            (after["task_id"], [first])
        ]
        status = await served.call("pool_status")
        assert status["waiting"] == {after["task_id"]: [first]}
        executor.release()
        outcome = await served.call("pool_result", task_id=after["task_id"], wait=True)
    assert outcome["state"] == "completed"
    assert outcome["depends_on"] == [first]
    assert outcome["result"]["output"] == "done: then use done: first"


async def test_submit_refuses_an_unknown_dependency_as_a_tool_error() -> None:
    async with serving() as served:
        error = await served.fail("pool_submit", prompt="after", depends_on=["task-missing"])
    assert "no task in this store" in error


async def test_submit_with_verify_sends_a_failing_result_back_with_the_output(
    tmp_path: Path,
) -> None:
    check = f'test -f {tmp_path}/ok || {{ touch {tmp_path}/ok; echo "lint: 2 errors"; exit 1; }}'
    async with serving() as served:
        submitted = await served.call("pool_submit", prompt="tidy up", verify=check)
        outcome = await served.call("pool_result", task_id=submitted["task_id"], wait=True)
        prompts = [r.prompt for r in served.executor.requests]
    assert outcome["state"] == "completed"
    assert [v["passed"] for v in outcome["result"]["verifications"]] == [False, True]
    assert len(prompts) == 2
    assert "lint: 2 errors" in prompts[1]


async def test_a_plan_is_reviewed_as_its_own_kind_then_carried_out() -> None:
    async with serving() as served:
        submitted = await served.call(
            "pool_submit_with_review", prompt="add a cache", plan_first=True
        )
        held = await served.call("pool_result", task_id=submitted["task_id"], wait=True)
        assert (held["state"], held["review_kind"]) == ("pending_review", "plan")
        assert "plan awaits approval" in held["note"]
        approved = await served.call("pool_approve_result", task_id=submitted["task_id"])
        assert approved["state"] == "pending"
        assert "carried out" in approved["note"]
        result = await served.call("pool_result", task_id=submitted["task_id"], wait=True)
    assert (result["state"], result["review_kind"]) == ("pending_review", "result")
    assert result["result"]["output"].startswith("done: Your plan was approved.")


async def test_fan_out_with_dependencies_waits_for_them_for_every_item() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor, slots=3) as served:
        setup = (await served.call("pool_submit", prompt="set up"))["task_id"]
        await executor.wait_running(1)
        fanning = asyncio.create_task(
            served.call(
                "pool_fan_out", prompts=[f"part {i} of {{{{{setup}.output}}}}" for i in (1, 2)],
                depends_on=[setup],
            )
        )  # fmt: skip
        # Held until setup completes: each item's prompt then carries its output.
        executor.release()
        outcome = await asyncio.wait_for(fanning, 10)
    assert outcome["succeeded"] == 2
    assert sorted(i["result"]["output"] for i in outcome["items"]) == [
        "done: part 1 of done: set up", "done: part 2 of done: set up",
    ]  # fmt: skip


async def test_a_chain_over_mcp_waits_for_the_tasks_it_and_its_steps_depend_on() -> None:
    executor = FakeExecutor(hold=True)
    async with serving(executor, slots=2) as served:
        setup = (await served.call("pool_submit", prompt="set up"))["task_id"]
        extra = (await served.call("pool_submit", prompt="extra"))["task_id"]
        started = await served.call(
            "pool_submit_chain", isolation="none", depends_on=[setup],
            steps=[{"prompt": f"use {{{{{setup}.output}}}}"},
                   {"prompt": f"and {{{{{extra}.output}}}}", "depends_on": [extra]}],
        )  # fmt: skip
        refused = await served.fail(
            "pool_submit_chain", steps=[{"prompt": "x"}], depends_on=["task-missing"]
        )
        executor.release()
        done = await served.call(
            "pool_chain_result", chain_id=started["chain_id"], wait=True, timeout_secs=30
        )
    assert "no task in this store" in refused
    assert done["state"] == "completed", done
    assert done["output"] == "done: and done: extra"

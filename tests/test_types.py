"""The seed's types load and write the JSON the original Rust (serde) types write."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from claude_pool.types import (
    Effort,
    MetricsFilter,
    ModelMetrics,
    PermissionMode,
    PoolConfig,
    ScalingConfig,
    SessionMetrics,
    SlotConfig,
    SlotMode,
    SlotRecord,
    SlotState,
    TaskFilter,
    TaskId,
    TaskOverrides,
    TaskRecord,
    TaskResult,
    TaskState,
    microdollars_to_usd,
    new_slot_id,
    new_task_id,
    now_ms,
    usd_to_microdollars,
)

# ── Documents exactly as serde_json writes them from the seed's types ──

POOL_CONFIG_DEFAULT: dict[str, Any] = {
    "model": None,
    "permission_mode": "plan",
    "max_turns": None,
    "system_prompt": None,
    "allowed_tools": [],
    "mcp_servers": {},
    "effort": None,
    "fallback_model": None,
    "budget_microdollars": None,
    "slot_mode": "persistent",
    "max_restarts": 3,
    "worktree_isolation": False,
    "slot_assignment_timeout_secs": 300,
    "scaling": {"min_slots": 1, "max_slots": 16},
    "unattended_mode": False,
    "detect_permission_prompts": True,
    "supervisor_enabled": False,
    "supervisor_interval_secs": 30,
    "strict_mcp_config": True,
    "worktree_base_dir": None,
}

POOL_CONFIG_FULL: dict[str, Any] = {
    "model": "claude-haiku-4-5-20251001",
    "permission_mode": "bypassPermissions",
    "max_turns": 12,
    "system_prompt": "Be brief.",
    "allowed_tools": ["Read", "Grep", "Bash(git:*)"],
    "mcp_servers": {
        "files": {"command": "npx", "args": ["-y", "@mcp/files"], "env": {"ROOT": "/srv"}},
        "web": {"type": "http", "url": "http://localhost:8080/mcp", "timeout": 2.5},
        "odd": {"enabled": True, "retries": None, "weights": [1, 2.25, -3], "nested": {"a": []}},
    },
    "effort": "xhigh",
    "fallback_model": "claude-sonnet-4-5",
    "budget_microdollars": 18_446_744_073_709_551_615,  # u64::MAX
    "slot_mode": "ephemeral",
    "max_restarts": 0,
    "worktree_isolation": True,
    "slot_assignment_timeout_secs": 0,
    "scaling": {"min_slots": 0, "max_slots": 64},
    "unattended_mode": True,
    "detect_permission_prompts": False,
    "supervisor_enabled": True,
    "supervisor_interval_secs": 5,
    "strict_mcp_config": False,
    "worktree_base_dir": "/tmp/pool-worktrees",
}

SLOT_CONFIG_EMPTY: dict[str, Any] = {
    "model": None,
    "permission_mode": None,
    "max_turns": None,
    "system_prompt": None,
    "allowed_tools": None,
    "mcp_servers": None,
    "effort": None,
    "fallback_model": None,
    "role": None,
    "name": None,
    "description": None,
    "slot_assignment_timeout_secs": None,
}

SLOT_CONFIG_FULL: dict[str, Any] = {
    "model": "claude-opus-4-1",
    "permission_mode": "acceptEdits",
    "max_turns": 40,
    "system_prompt": "You review code.",
    "allowed_tools": ["Edit"],
    "mcp_servers": {"git": {"command": "git-mcp", "args": []}},
    "effort": "max",
    "fallback_model": "claude-haiku-4-5",
    "role": "reviewer",
    "name": "rev-1",
    "description": "Reviews pull requests",
    "slot_assignment_timeout_secs": 60,
}

TASK_OVERRIDES_EMPTY: dict[str, Any] = {
    "model": None,
    "permission_mode": None,
    "max_turns": None,
    "system_prompt": None,
    "allowed_tools": None,
    "disallowed_tools": None,
    "tools": None,
    "mcp_servers": None,
    "effort": None,
    "fallback_model": None,
    "json_schema": None,
    "max_budget_usd": None,
}

TASK_OVERRIDES_FULL: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "permission_mode": "dontAsk",
    "max_turns": 3,
    "system_prompt": "Answer in JSON.",
    "allowed_tools": ["Read"],
    "disallowed_tools": ["Bash", "WebFetch"],
    "tools": ["Read", "Grep"],
    "mcp_servers": {"db": {"command": "db-mcp", "args": ["--ro"]}},
    "effort": "low",
    "fallback_model": None,
    "json_schema": {
        "type": "object",
        "properties": {"score": {"type": "number", "minimum": 0.5}},
        "required": ["score"],
        "additionalProperties": False,
    },
    "max_budget_usd": 0.1,
}

RESULT_MINIMAL: dict[str, Any] = {
    "output": "done",
    "success": True,
    "cost_microdollars": 1234,
    "turns_used": 2,
    "elapsed_ms": 5210,
    "session_id": None,
}

RESULT_FULL: dict[str, Any] = {
    "output": "boom",
    "success": False,
    "cost_microdollars": 99,
    "turns_used": 1,
    "elapsed_ms": 17,
    "model": "claude-haiku-4-5-20251001",
    "session_id": "3f1c2a9e-0000-4000-8000-000000000000",
    "failed_command": "claude -p --output-format stream-json",
    "exit_code": -9,
    "stderr": "Error: killed\n",
    "budget_exceeded": True,
}

TASK_RECORD_PENDING: dict[str, Any] = {
    "id": "task-0001",
    "prompt": "Review src/lib.rs",
    "state": "pending",
    "slot_id": None,
    "result": None,
    "tags": [],
    "config": None,
    "review_required": False,
    "max_rejections": 3,
    "rejection_count": 0,
    "original_prompt": None,
    "created_at_ms": 1_735_689_600_000,
    "started_at_ms": None,
    "completed_at_ms": None,
}

TASK_RECORD_FULL: dict[str, Any] = {
    "id": "7b0f7c1e-ids-are-opaque",
    "prompt": "Implement issue #42\n\nFeedback: add tests",
    "state": "pending_review",
    "slot_id": "slot-3",
    "result": RESULT_FULL,
    "tags": ["batch-7", "review"],
    "config": TASK_OVERRIDES_FULL,
    "review_required": True,
    "max_rejections": 5,
    "rejection_count": 1,
    "original_prompt": "Implement issue #42",
    "created_at_ms": 1_735_689_600_000,
    "started_at_ms": 1_735_689_600_250,
    "completed_at_ms": 1_735_689_660_000,
}

SLOT_RECORD: dict[str, Any] = {
    "id": "slot-0",
    "state": "busy",
    "config": SLOT_CONFIG_FULL,
    "current_task": "task-0001",
    "session_id": "sess-1",
    "tasks_completed": 7,
    "cost_microdollars": 420_000,
    "restart_count": 1,
    "worktree_path": "/repo/.claude/pool-worktrees/slot-0",
}

SESSION_METRICS: dict[str, Any] = {
    "total_tasks": 10,
    "completed_tasks": 7,
    "failed_tasks": 1,
    "cancelled_tasks": 1,
    "running_tasks": 1,
    "pending_tasks": 0,
    "total_spend_microdollars": 700_001,
    "avg_cost_microdollars": 100_000,
    "max_cost_microdollars": 250_000,
    "avg_elapsed_ms": 4000,
    "median_elapsed_ms": 3500,
    "max_elapsed_ms": 9000,
    "min_elapsed_ms": 1200,
    "avg_turns": 2.857142857142857,
    "tasks_by_model": {"claude-haiku-4-5": 6, "claude-sonnet-4-5": 1},
    "model_breakdown": [
        {
            "model": "claude-haiku-4-5",
            "task_count": 6,
            "total_cost_microdollars": 600_001,
            "avg_cost_microdollars": 100_000,
            "avg_elapsed_ms": 3900,
            "total_turns": 17,
        }
    ],
    "session_start_ms": 1_735_689_600_000,
    "session_duration_ms": 3_600_000,
}

ROUND_TRIPS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (ScalingConfig, {"min_slots": 2, "max_slots": 4}),
    (PoolConfig, POOL_CONFIG_DEFAULT),
    (PoolConfig, POOL_CONFIG_FULL),
    (PoolConfig, {**POOL_CONFIG_DEFAULT, "permission_mode": None, "unattended_mode": True}),
    (PoolConfig, {**POOL_CONFIG_DEFAULT, "unattended_mode": True}),
    (SlotConfig, SLOT_CONFIG_EMPTY),
    (SlotConfig, SLOT_CONFIG_FULL),
    (TaskOverrides, TASK_OVERRIDES_EMPTY),
    (TaskOverrides, TASK_OVERRIDES_FULL),
    (TaskOverrides, {**TASK_OVERRIDES_EMPTY, "max_budget_usd": 5.0, "json_schema": True}),
    (TaskOverrides, {**TASK_OVERRIDES_EMPTY, "max_budget_usd": 1e-06, "json_schema": [1, "a"]}),
    (SlotRecord, SLOT_RECORD),
    (
        SlotRecord,
        {
            **SLOT_RECORD,
            "state": "idle",
            "config": SLOT_CONFIG_EMPTY,
            "current_task": None,
            "session_id": None,
            "worktree_path": None,
        },
    ),
    (TaskResult, RESULT_MINIMAL),
    (TaskResult, RESULT_FULL),
    (TaskRecord, TASK_RECORD_PENDING),
    (TaskRecord, TASK_RECORD_FULL),
    (TaskFilter, {"state": None, "slot_id": None, "tags": None}),
    (TaskFilter, {"state": "cancelled", "slot_id": "slot-1", "tags": ["a", "b"]}),
    (SessionMetrics, SESSION_METRICS),
    (SessionMetrics, {**SESSION_METRICS, "avg_turns": 0.0, "model_breakdown": []}),
    (ModelMetrics, SESSION_METRICS["model_breakdown"][0]),
    (MetricsFilter, {"since_ms": None, "until_ms": None, "tags": None, "model": None}),
    (MetricsFilter, {"since_ms": 1, "until_ms": 2, "tags": ["x"], "model": "claude-haiku"}),
]


def _round_trip(model_type: type[BaseModel], doc: dict[str, Any]) -> Any:
    loaded = model_type.model_validate_json(json.dumps(doc))
    return json.loads(loaded.model_dump_json())


@pytest.mark.parametrize(
    ("model_type", "doc"),
    ROUND_TRIPS,
    ids=[f"{t.__name__}-{i}" for i, (t, _) in enumerate(ROUND_TRIPS)],
)
def test_serde_document_loads_and_writes_back_unchanged(
    model_type: type[BaseModel], doc: dict[str, Any]
) -> None:
    assert _round_trip(model_type, doc) == doc


@pytest.mark.parametrize("state", list(TaskState))
def test_every_task_state_round_trips_in_a_record(state: TaskState) -> None:
    doc = {**TASK_RECORD_PENDING, "state": state.value}
    assert _round_trip(TaskRecord, doc) == doc


@pytest.mark.parametrize("mode", list(PermissionMode))
def test_every_permission_mode_round_trips_with_the_cli_spelling(mode: PermissionMode) -> None:
    doc = {**SLOT_CONFIG_EMPTY, "permission_mode": mode.value}
    assert _round_trip(SlotConfig, doc) == doc


def test_enum_values_use_cli_spellings_and_snake_case() -> None:
    assert [m.value for m in PermissionMode] == [
        "default",
        "acceptEdits",
        "bypassPermissions",
        "dontAsk",
        "plan",
        "auto",
    ]
    assert [e.value for e in Effort] == ["low", "medium", "high", "xhigh", "max"]
    assert [m.value for m in SlotMode] == ["persistent", "ephemeral"]
    assert [s.value for s in SlotState] == ["idle", "busy", "stopped", "errored"]
    assert TaskState.PENDING_REVIEW.value == "pending_review"


def test_snake_case_spelling_of_a_cli_permission_mode_is_rejected() -> None:
    with pytest.raises(ValidationError):
        SlotConfig.model_validate({"permission_mode": "accept_edits"})


def test_float_fields_keep_their_value_through_json() -> None:
    overrides = TaskOverrides.model_validate_json('{"max_budget_usd": 0.30000000000000004}')
    assert overrides.max_budget_usd == 0.30000000000000004
    metrics = SessionMetrics.model_validate_json('{"avg_turns": 1e-7}')
    assert json.loads(metrics.model_dump_json())["avg_turns"] == 1e-7


def test_mcp_servers_keep_arbitrary_json_values() -> None:
    loaded = PoolConfig.model_validate(POOL_CONFIG_FULL)
    assert loaded.mcp_servers["odd"] == {
        "enabled": True,
        "retries": None,
        "weights": [1, 2.25, -3],
        "nested": {"a": []},
    }
    assert isinstance(loaded.mcp_servers["odd"]["weights"][0], int)


# ── Defaults ──


def test_pool_config_defaults_match_the_seed_default_impl() -> None:
    assert json.loads(PoolConfig().model_dump_json()) == POOL_CONFIG_DEFAULT


def test_scaling_config_defaults_to_one_through_sixteen() -> None:
    assert ScalingConfig() == ScalingConfig(min_slots=1, max_slots=16)


def test_slot_config_and_task_overrides_default_to_all_null() -> None:
    assert json.loads(SlotConfig().model_dump_json()) == SLOT_CONFIG_EMPTY
    assert json.loads(TaskOverrides().model_dump_json()) == TASK_OVERRIDES_EMPTY


def test_task_record_without_serde_default_fields_gets_the_seed_defaults() -> None:
    defaulted = (
        "review_required",
        "max_rejections",
        "rejection_count",
        "original_prompt",
        "created_at_ms",
        "started_at_ms",
        "completed_at_ms",
    )
    old_doc = {k: v for k, v in TASK_RECORD_PENDING.items() if k not in defaulted}
    record = TaskRecord.model_validate_json(json.dumps(old_doc))
    assert record.review_required is False
    assert record.max_rejections == 3
    assert record.rejection_count == 0
    assert record.original_prompt is None
    assert (record.created_at_ms, record.started_at_ms, record.completed_at_ms) == (None,) * 3
    assert json.loads(record.model_dump_json()) == {**TASK_RECORD_PENDING, "created_at_ms": None}


def test_task_result_without_elapsed_model_or_failure_details_loads_with_defaults() -> None:
    doc = {"output": "ok", "success": True, "cost_microdollars": 5, "turns_used": 1}
    result = TaskResult.model_validate_json(json.dumps(doc))
    assert result.elapsed_ms == 0
    assert result.model is None
    assert result.budget_exceeded is False
    assert json.loads(result.model_dump_json()) == {**doc, "elapsed_ms": 0, "session_id": None}


def test_task_result_omits_unset_failure_details_but_writes_session_id_null() -> None:
    written = json.loads(TaskResult.failure("x").model_dump_json())
    assert written == {
        "output": "x",
        "success": False,
        "cost_microdollars": 0,
        "turns_used": 0,
        "elapsed_ms": 0,
        "session_id": None,
    }


def test_task_result_writes_each_skipped_field_once_set() -> None:
    result = TaskResult.failure("x").with_failure_details(None, 0, None)
    assert json.loads(result.model_dump_json())["exit_code"] == 0
    assert "failed_command" not in json.loads(result.model_dump_json())
    exceeded = result.model_copy(update={"budget_exceeded": True})
    assert json.loads(exceeded.model_dump_json())["budget_exceeded"] is True


def test_task_result_serialization_schema_lists_its_fields() -> None:
    # MCP tools publish output schemas; a whole-model serializer would erase them.
    schema = TaskResult.model_json_schema(mode="serialization")
    # verifications and commits are beyond the seed (left out of the JSON when empty).
    assert set(schema["properties"]) == {*RESULT_FULL, "verifications", "commits"}
    assert set(schema["required"]) >= {"output", "success"}


def test_slot_record_never_writes_its_mcp_config_path() -> None:
    record = SlotRecord(id=new_slot_id(), mcp_config_path="/tmp/slot.mcp.json")
    assert record.mcp_config_path == "/tmp/slot.mcp.json"
    assert "mcp_config_path" not in json.loads(record.model_dump_json())
    assert "mcp_config_path" not in record.model_dump()


def test_unknown_fields_from_a_newer_writer_are_ignored_like_serde() -> None:
    record = TaskRecord.model_validate({**TASK_RECORD_PENDING, "priority": 9})
    assert json.loads(record.model_dump_json()) == TASK_RECORD_PENDING


# ── Unattended mode and the seed's "plan" default ──


def test_unattended_pool_without_a_mode_writes_the_dont_ask_it_will_use() -> None:
    config = PoolConfig(unattended_mode=True)
    assert config.permission_mode is PermissionMode.DONT_ASK
    reloaded = PoolConfig.model_validate_json(config.model_dump_json())
    assert reloaded.permission_mode is PermissionMode.DONT_ASK


def test_unattended_pool_keeps_an_explicit_mode() -> None:
    assert PoolConfig(unattended_mode=True, permission_mode="plan").permission_mode == "plan"
    explicit_none = PoolConfig(unattended_mode=True, permission_mode=None)
    assert explicit_none.permission_mode is None


# ── Helpers ──


def test_new_pending_stamps_creation_time_and_seed_defaults() -> None:
    before = now_ms()
    record = TaskRecord.new_pending(TaskId("t-1"), "hello")
    after = now_ms()
    assert record.id == "t-1"
    assert record.prompt == "hello"
    assert record.state is TaskState.PENDING
    assert record.created_at_ms is not None
    assert before <= record.created_at_ms <= after
    assert record.started_at_ms is None
    assert record.completed_at_ms is None
    assert (record.tags, record.config, record.slot_id, record.result) == ([], None, None, None)
    assert (record.review_required, record.max_rejections, record.rejection_count) == (False, 3, 0)


def test_builder_helpers_return_updated_copies() -> None:
    base = TaskRecord.new_pending(TaskId("t-1"), "write docs")
    overrides = TaskOverrides(model="claude-haiku-4-5", max_turns=2)
    built = base.with_tags(["docs"]).with_config(overrides).with_review(5)
    assert built.tags == ["docs"]
    assert built.config == overrides
    assert built.review_required is True
    assert built.max_rejections == 5
    assert built.original_prompt == "write docs"
    assert base.tags == []
    assert base.review_required is False
    assert built.with_config(None).config is None


def test_with_tags_does_not_alias_the_callers_list() -> None:
    tags = ["a"]
    record = TaskRecord.new_pending(TaskId("t"), "p").with_tags(tags)
    tags.append("b")
    assert record.tags == ["a"]


def test_transition_to_running_stamps_started_time() -> None:
    record = TaskRecord.new_pending(TaskId("t"), "p")
    before = now_ms()
    record.transition_to(TaskState.RUNNING)
    assert record.state is TaskState.RUNNING
    assert record.started_at_ms is not None
    assert record.started_at_ms >= before
    assert record.completed_at_ms is None


@pytest.mark.parametrize(
    "state",
    [TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.PENDING_REVIEW],
)
def test_transition_to_an_ending_state_stamps_completed_time(state: TaskState) -> None:
    record = TaskRecord.new_pending(TaskId("t"), "p")
    record.transition_to(TaskState.RUNNING)
    started = record.started_at_ms
    record.transition_to(state)
    assert record.state is state
    assert record.completed_at_ms is not None
    assert started is not None
    assert record.completed_at_ms >= started
    assert record.started_at_ms == started


def test_transition_back_to_pending_stamps_nothing() -> None:
    record = TaskRecord.new_pending(TaskId("t"), "p")
    record.transition_to(TaskState.PENDING)
    assert (record.started_at_ms, record.completed_at_ms) == (None, None)
    assert json.loads(record.model_dump_json())["state"] == "pending"


def test_success_on_the_class_constructs_while_on_an_instance_it_is_the_flag() -> None:
    result = TaskResult.success("all good", 1500, 3)
    assert isinstance(result, TaskResult)
    assert result.success is True
    assert (result.output, result.cost_microdollars, result.turns_used) == ("all good", 1500, 3)
    assert (result.elapsed_ms, result.model, result.session_id) == (0, None, None)
    assert result.budget_exceeded is False
    assert TaskResult.failure("nope").success is False
    assert json.loads(result.model_dump_json())["success"] is True
    assert TaskResult.success_result("x", 1, 1) == TaskResult.success("x", 1, 1)


def test_failure_has_zero_cost_and_turns() -> None:
    result = TaskResult.failure("crashed")
    assert (result.success, result.cost_microdollars, result.turns_used) == (False, 0, 0)


def test_with_helpers_set_model_elapsed_session_and_failure_details() -> None:
    base = TaskResult.failure("crashed")
    result = (
        base.with_model("claude-haiku-4-5")
        .with_elapsed_ms(250)
        .with_session_id("sess-9")
        .with_failure_details("claude -p", 1, "boom")
    )
    assert result.model == "claude-haiku-4-5"
    assert result.elapsed_ms == 250
    assert result.session_id == "sess-9"
    assert (result.failed_command, result.exit_code, result.stderr) == ("claude -p", 1, "boom")
    assert base.model is None
    assert json.loads(result.model_dump_json()) == {
        "output": "crashed",
        "success": False,
        "cost_microdollars": 0,
        "turns_used": 0,
        "elapsed_ms": 250,
        "model": "claude-haiku-4-5",
        "session_id": "sess-9",
        "failed_command": "claude -p",
        "exit_code": 1,
        "stderr": "boom",
    }


def test_now_ms_is_milliseconds_since_the_epoch() -> None:
    assert abs(now_ms() - time.time() * 1000) < 5_000
    assert isinstance(now_ms(), int)


def test_new_task_ids_do_not_collide() -> None:
    ids = {new_task_id() for _ in range(100_000)}
    assert len(ids) == 100_000


def test_new_task_ids_are_not_derived_from_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # A frozen clock must not produce repeated ids.
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    monkeypatch.setattr(time, "time_ns", lambda: 1_700_000_000_000_000_000)
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000


def test_ids_are_plain_strings_in_json() -> None:
    task_id = new_task_id()
    record = TaskRecord.new_pending(task_id, "p")
    assert json.loads(record.model_dump_json())["id"] == task_id
    assert isinstance(task_id, str)


@pytest.mark.parametrize(
    ("usd", "micro"),
    [
        (0, 0),
        (1, 1_000_000),
        (5.0, 5_000_000),
        (0.1, 100_000),
        (0.30000000000000004, 300_000),
        (1.2345675, 1_234_568),
        (0.0000004, 0),
        (0.0000006, 1),
        (123.456789, 123_456_789),
        (1e-06, 1),
        (5e-07, 1),
        (2.5e-06, 3),
        (1.25e-05, 13),
        (1.0000005, 1_000_001),
        (-1.0, 0),
    ],
)
def test_usd_to_microdollars_rounds_half_microdollars_up(usd: float, micro: int) -> None:
    assert usd_to_microdollars(usd) == micro
    assert isinstance(usd_to_microdollars(usd), int)


def test_microdollars_convert_back_to_usd() -> None:
    assert microdollars_to_usd(1_500_000) == 1.5


@pytest.mark.parametrize("usd", [float("inf"), float("nan")])
def test_usd_to_microdollars_rejects_non_finite_amounts(usd: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        usd_to_microdollars(usd)


@pytest.mark.parametrize("model", [PoolConfig, SlotConfig, TaskOverrides])
def test_a_misspelled_setting_is_an_error_not_silently_dropped(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="max_turn"):
        model.model_validate({"max_turn": 3})

"""The stream-json protocol: encoding stdin lines, mapping stdout events and results."""

from __future__ import annotations

import json
import logging

import pytest

from claude_pool.executor.base import EventKind
from claude_pool.executor.protocol import (
    AUTH_FAILED_MESSAGE,
    TurnTracker,
    clear_caveat_uuid,
    encode_control_request,
    encode_user_message,
    is_auth_failure,
    parse_line,
    permission_prompt_in,
    result_to_task_result,
    task_cost_usd,
)
from claude_pool.types import SlotId, TaskId

TASK = TaskId("task-1")
SLOT = SlotId("slot-1")


def kinds(tracker: TurnTracker, event: dict[str, object]) -> list[EventKind]:
    return [e.kind for e in tracker.events(event, TASK, SLOT)]


def result_event(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "num_turns": 1,
        "result": "done",
        "session_id": "sess-1",
        "total_cost_usd": 0.5,
        "modelUsage": {"claude-sonnet-4-5": {"costUSD": 0.5}},
    }
    return {**base, **fields}


def test_user_messages_are_one_json_line_whatever_the_prompt() -> None:
    line = encode_user_message('--help\n{"type": "control_request"}')
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "type": "user",
        "message": {"role": "user", "content": '--help\n{"type": "control_request"}'},
    }


def test_control_requests_carry_an_id_and_a_subtype() -> None:
    assert json.loads(encode_control_request("r1", "set_model", model="m")) == {
        "type": "control_request",
        "request_id": "r1",
        "request": {"subtype": "set_model", "model": "m"},
    }


def test_non_json_lines_are_skipped() -> None:
    assert parse_line(b"not json") is None
    assert parse_line(b"[1, 2]") is None
    assert parse_line(b"  ") is None
    assert parse_line(b'{"type": "x"}') == {"type": "x"}


def test_assistant_text_and_tool_calls_become_events_and_turns() -> None:
    tracker = TurnTracker()
    message = {
        "type": "assistant",
        "message": {
            "id": "msg_1",
            "model": "claude-served",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
    }
    events = tracker.events(message, TASK, SLOT)
    assert [e.kind for e in events] == [
        EventKind.TURN,
        EventKind.ASSISTANT_TEXT,
        EventKind.TOOL_USE,
    ]
    assert events[2].data == {"name": "Bash", "input": {"command": "ls"}, "id": "t1"}
    # The same API message split over several events is still one turn.
    assert kinds(tracker, message) == [EventKind.ASSISTANT_TEXT, EventKind.TOOL_USE]
    assert tracker.turns == 1
    assert tracker.served_model == "claude-served"


def assistant(message_id: str | None, model: str, usage: dict[str, int]) -> dict[str, object]:
    """One ``assistant`` event, as the CLI prints it for each content block of a message."""
    return {
        "type": "assistant",
        "message": {
            "id": message_id,
            "model": model,
            "content": [{"type": "text", "text": "part"}],
            "usage": usage,
        },
    }


def stream(message_id: str, raw: dict[str, object]) -> dict[str, object]:
    """A ``stream_event`` line (``--include-partial-messages``)."""
    return {"type": "stream_event", "event": raw, "api_message_id": message_id}


def message_start(message_id: str, model: str, usage: dict[str, int]) -> dict[str, object]:
    raw = {"type": "message_start", "message": {"id": message_id, "model": model, "usage": usage}}
    return stream(message_id, raw)


def message_delta(message_id: str, output_tokens: int) -> dict[str, object]:
    raw = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": output_tokens}}
    return stream(message_id, raw)


START = {
    "input_tokens": 1000,
    "output_tokens": 1,
    "cache_creation_input_tokens": 200,
    "cache_read_input_tokens": 5000,
}


def test_a_message_split_over_several_events_is_counted_once_with_its_final_usage() -> None:
    tracker = TurnTracker()
    # As CLI 2.1.330 prints one message: start, one assistant event per block (all with the
    # start usage), then the delta with the real output_tokens.
    for event in (
        message_start("msg_1", "claude-sonnet-4-5", START),
        assistant("msg_1", "claude-sonnet-4-5", START),
        assistant("msg_1", "claude-sonnet-4-5", START),
        message_delta("msg_1", 300),
        assistant("msg_1", "claude-sonnet-4-5", START),  # a late repeat must not lower it
    ):
        tracker.events(event, TASK, SLOT)

    assert list(tracker.messages) == ["msg_1"]
    assert tracker.messages["msg_1"].usage == {**START, "output_tokens": 300}
    # 1000 * $3 + 300 * $15 + 200 * $3.75 + 5000 * $0.30 per million tokens
    assert tracker.estimated_cost_usd() == pytest.approx(0.00975)
    assert tracker.turns == 1


def test_every_message_id_is_counted_and_made_up_messages_are_not() -> None:
    tracker = TurnTracker()
    usage = {"input_tokens": 1_000_000, "output_tokens": 0}
    for event in (
        assistant("msg_1", "claude-sonnet-4-5", usage),
        assistant("msg_2", "claude-haiku-4-5", usage),
        # A stream that was dropped after message_start still cost its input (the CLI counts it).
        message_start("msg_3", "claude-sonnet-4-5", usage),
        # The CLI's own "<synthetic>" messages and id-less ones are no API call to count.
        assistant("msg_4", "<synthetic>", usage),
        assistant(None, "claude-sonnet-4-5", usage),
    ):
        tracker.events(event, TASK, SLOT)

    assert sorted(tracker.messages) == ["msg_1", "msg_2", "msg_3"]
    assert tracker.messages["msg_2"].served_model == "claude-haiku-4-5"
    assert tracker.estimated_cost_usd() == pytest.approx(3 + 1 + 3)


def test_a_message_is_priced_by_the_requested_model_when_the_served_one_is_unknown() -> None:
    tracker = TurnTracker()
    usage = {"input_tokens": 1_000_000}
    tracker.events({"type": "system", "subtype": "init", "model": "claude-haiku-4-5"}, TASK, SLOT)
    tracker.events(assistant("msg_1", "some-new-model", usage), TASK, SLOT)
    tracker.events(assistant("msg_2", "claude-sonnet-4-5-20250929", usage), TASK, SLOT)

    assert tracker.messages["msg_1"].requested_model == "claude-haiku-4-5"
    # msg_1 at haiku's $1 (what the CLI asked for), msg_2 at the dated sonnet id's $3.
    assert tracker.estimated_cost_usd() == pytest.approx(1 + 3)


def test_a_task_with_no_message_is_estimated_at_nothing() -> None:
    tracker = TurnTracker()
    tracker.events({"type": "system", "subtype": "init", "model": "claude-sonnet-4-5"}, TASK, SLOT)
    assert tracker.messages == {}
    assert tracker.estimated_cost_usd() == 0.0


def test_retries_rate_limits_denials_and_tool_results_are_surfaced() -> None:
    tracker = TurnTracker()
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 2,
        "max_retries": 10,
        "retry_delay_ms": 1000,
        "error_status": 429,
        "error": "rate_limit",
    }
    [event] = tracker.events(retry, TASK, SLOT)
    assert event.kind is EventKind.API_RETRY
    assert event.data == {
        "status": 429,
        "attempt": 2,
        "max_retries": 10,
        "delay_ms": 1000,
        "error": "rate_limit",
    }
    limit = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning"}}
    assert kinds(tracker, limit) == [EventKind.RATE_LIMIT]
    denied = {
        "type": "system",
        "subtype": "permission_denied",
        "tool_name": "Bash",
        "message": "no",
    }
    assert kinds(tracker, denied) == [EventKind.PERMISSION_DENIED]
    assert tracker.denied_tools == {"Bash": "no"}
    tool_result = {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    }
    assert kinds(tracker, tool_result) == [EventKind.TOOL_RESULT]


def test_unknown_event_types_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    tracker = TurnTracker()
    with caplog.at_level(logging.DEBUG, logger="claude_pool.executor.protocol"):
        assert tracker.events({"type": "hologram", "x": 1}, TASK, SLOT) == []
        assert tracker.events({"type": "system", "subtype": "new_thing"}, TASK, SLOT) == []
    assert "hologram" in caplog.text


def test_a_401_retry_is_an_authentication_failure() -> None:
    retry = {"type": "system", "subtype": "api_retry", "error_status": 401}
    assert is_auth_failure(retry)
    assert not is_auth_failure({**retry, "error_status": 429, "error": "rate_limit"})


def test_per_task_cost_comes_from_usage_since_the_last_result() -> None:
    event = result_event(
        total_cost_usd=3.0,
        model_usage_since_last_result={"a": {"costUSD": 0.25}, "b": {"costUSD": 0.5}},
    )
    assert task_cost_usd(event, previous_total_usd=1.0) == pytest.approx(0.75)


def test_per_task_cost_falls_back_to_the_difference_of_the_cumulative_figure() -> None:
    assert task_cost_usd(result_event(total_cost_usd=3.0), 1.0) == pytest.approx(2.0)
    assert task_cost_usd(result_event(total_cost_usd=3.0), None) == pytest.approx(3.0)


def test_a_successful_result_maps_every_field() -> None:
    tracker = TurnTracker(served_model="claude-served")
    result = result_to_task_result(
        result_event(num_turns=3),
        tracker,
        requested_model="claude-asked",
        structured=False,
        cost_usd=0.123456,
        elapsed_ms=50,
    )
    assert result.success
    assert result.output == "done"
    assert result.cost_microdollars == 123456
    assert result.turns_used == 3
    assert result.elapsed_ms == 50
    assert result.model == "claude-served"
    assert result.session_id == "sess-1"
    assert not result.budget_exceeded


def test_the_model_falls_back_to_usage_then_to_the_requested_one() -> None:
    def model(event: dict[str, object]) -> str | None:
        return result_to_task_result(
            event,
            TurnTracker(),
            requested_model="asked",
            structured=False,
            cost_usd=0,
            elapsed_ms=0,
        ).model

    assert model(result_event()) == "claude-sonnet-4-5"
    assert model(result_event(modelUsage={})) == "asked"


def test_structured_output_is_returned_as_json_text() -> None:
    event = result_event(result="text", structured_output={"answer": 42})
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=True, cost_usd=0, elapsed_ms=0
    )
    assert json.loads(result.output) == {"answer": 42}


def test_budget_stop_is_a_failure_marked_budget_exceeded() -> None:
    event = result_event(
        subtype="error_max_budget_usd", is_error=True, errors=["Reached maximum budget ($0.01)"]
    )
    del event["result"]
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert not result.success
    assert result.budget_exceeded
    assert "Reached maximum budget" in result.output


def test_an_api_error_reported_as_success_fails_with_the_http_status() -> None:
    # Regression: "Claude Code stopped with success: API Error ..." said the opposite.
    event = result_event(is_error=True, api_error_status=400, result="API Error: bad request")
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert not result.success
    assert result.output == "the API refused the request (HTTP 400): API Error: bad request"


def test_an_error_without_a_status_says_why_the_cli_stopped() -> None:
    event = result_event(is_error=True, subtype="error_max_turns", result="")
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert result.output.startswith("Claude Code failed: it reached its turn limit (max_turns)")


def test_a_bare_result_event_is_no_success() -> None:
    # Regression: {"type": "result"} counted as success with empty output.
    result = result_to_task_result(
        {"type": "result"}, TurnTracker(), requested_model=None, structured=False, cost_usd=0,
        elapsed_ms=0,
    )  # fmt: skip
    assert not result.success
    assert result.output == "Claude Code ended the task without a successful result (no subtype)"


def test_a_result_of_an_unknown_subtype_is_no_success() -> None:
    event = result_event(subtype="interrupted_by_gremlins")
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert not result.success
    assert "'interrupted_by_gremlins'" in result.output
    assert result.output.endswith(": done")


def test_a_401_result_says_the_credentials_are_bad() -> None:
    event = result_event(is_error=True, subtype="error_during_execution", api_error_status=401)
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert result.output == AUTH_FAILED_MESSAGE


def test_permission_denials_name_the_tool_and_how_to_allow_it() -> None:
    event = result_event(permission_denials=[{"tool_name": "Write", "tool_use_id": "t"}])
    result = result_to_task_result(
        event, TurnTracker(), requested_model=None, structured=False, cost_usd=0, elapsed_ms=0
    )
    assert "'Write'" in result.output
    assert "allowed_tools=['Write']" in result.output
    assert "permission mode" in result.output


@pytest.mark.parametrize(
    ("line", "tool"),
    [
        ("Claude requested permissions to use Bash, but you haven't granted it yet.", "Bash"),
        (
            "Claude requested permissions to write to /tmp/x.txt, but you haven't granted it",
            "/tmp/x.txt",
        ),
        ("Permission to use mcp__docs__search has been denied.", "mcp__docs__search"),
    ],
)
def test_stderr_permission_prompts_are_recognised_precisely(line: str, tool: str) -> None:
    assert permission_prompt_in(line) == (tool, line)


@pytest.mark.parametrize(
    "line",
    [
        "warning: could not set permissions on /home/u/.claude/settings.json",
        "EACCES: permission denied, open '/etc/shadow'",
        "debug: checking permission rules",
    ],
)
def test_stderr_lines_merely_mentioning_permissions_are_not_prompts(line: str) -> None:
    assert permission_prompt_in(line) is None


# ── the record of /clear in a transcript ──────────────────────────────

CAVEAT_TEXT = "<local-command-caveat>The command below was run directly in Claude Code"


def transcript_line(uuid: str, parent: str | None, content: str, **extra: object) -> str:
    entry = {"type": "user", "uuid": uuid, "parentUuid": parent, **extra}
    entry["message"] = {"role": "user", "content": content}
    return json.dumps(entry)


def test_the_caveat_of_a_clear_is_the_meta_message_before_its_record() -> None:
    lines = [
        '{"type":"mode","mode":"plan"}',
        transcript_line("c1", None, CAVEAT_TEXT, isMeta=True),
        transcript_line("clear-1", "c1", "<command-name>/clear</command-name>"),
        "not json",
    ]

    assert clear_caveat_uuid(lines, "clear-1") == "c1"


def test_no_caveat_is_found_for_another_clear_or_a_parent_that_is_no_caveat() -> None:
    lines = [
        transcript_line("p1", None, "a prompt of the user"),
        transcript_line("clear-1", "p1", "<command-name>/clear</command-name>"),
        transcript_line("m1", None, "<system-reminder>x</system-reminder>", isMeta=True),
        transcript_line("clear-2", "m1", "<command-name>/clear</command-name>"),
    ]

    assert clear_caveat_uuid(lines, "clear-1") is None
    assert clear_caveat_uuid(lines, "clear-2") is None
    assert clear_caveat_uuid(lines, "clear-3") is None

"""Fresh conversations without a new process: ``/clear`` in the slot's warm CLI process, on the
real Claude Code CLI against the mock Anthropic API (whose request log shows what the model
was sent)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from claude_pool.executor import ClaudeCliExecutor, EventKind, SlotStart
from claude_pool.testing.mock_api import MockAnthropicAPI, MockRequest, Reply
from claude_pool.types import SlotId, SlotMode
from test_executor import (
    TASK_COST,
    USAGE,
    Recorder,
    Slot,
    config,
    gone,
)

pytestmark = pytest.mark.cli

RESIDUE = ("local-command", "command-name", "command-message", "/clear")
"""What the CLI's record of ``/clear`` is made of: none of it may reach the API."""


def sent_text(request: MockRequest) -> str:
    """Everything a request showed the model: system prompt and messages."""
    return request.system + json.dumps(request.messages)


def conversation(request: MockRequest) -> list[tuple[str, list[str]]]:
    """The request's conversation exactly: each message's role and text blocks (tool blocks
    by type), with the CLI's own ``<system-reminder>`` blocks and environment messages left
    out, as they come with every request whatever the conversation."""
    shown = []
    for message in request.messages:
        if message.get("role") == "system":
            continue
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        texts = [
            str(block.get("text")) if block.get("type") == "text" else str(block.get("type"))
            for block in blocks
            if not str(block.get("text", "")).startswith("<system-reminder>")
        ]
        shown.append((str(message.get("role")), texts))
    return shown


def assert_no_residue(request: MockRequest) -> None:
    messages = json.dumps(request.messages)
    assert not [word for word in RESIDUE if word in messages], conversation(request)


@pytest.fixture
async def executor(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[ClaudeCliExecutor]:
    ex = ClaudeCliExecutor(claude_bin, env=cli_env, work_dir=tmp_path / "executor")
    yield ex
    await ex.aclose()


@pytest.fixture
def slot(executor: ClaudeCliExecutor, cli_cwd: Path, recorder: Recorder) -> Slot:
    return Slot(executor, cli_cwd, recorder)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def test_a_fresh_session_reuses_the_process_and_sends_nothing_of_the_earlier_one(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    first = await slot.run("remember the word avocado")
    second = await slot.run("and the word papaya")

    fresh = await slot.run("a new question", session_id=None)

    assert fresh.success, fresh
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    [reset] = recorder.of(EventKind.CONVERSATION_RESET)
    assert reset == {
        "pid": started["pid"],
        "previous_session": second.session_id,
        "session_id": fresh.session_id,
    }
    assert first.session_id == second.session_id != fresh.session_id
    seen = mock_api.main_requests[-1]
    assert conversation(seen) == [("user", ["a new question"])]
    assert_no_residue(seen)
    assert "avocado" not in sent_text(seen)
    assert "papaya" not in sent_text(seen)
    # The reset made no API call; the task is charged its own turn only.
    assert len(mock_api.main_requests) == 3
    assert fresh.cost_microdollars == TASK_COST
    assert fresh.turns_used == 1
    assert recorder.of(EventKind.SESSION)[-1]["session_id"] == fresh.session_id


async def test_the_new_conversation_goes_on_and_the_old_one_can_still_be_resumed(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    old = await slot.run("remember the word avocado")
    fresh = await slot.run("remember the word papaya", session_id=None)

    later = await slot.run("which word?")  # continues the new conversation, same process

    assert later.success, later
    assert later.session_id == fresh.session_id
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1
    seen = mock_api.main_requests[-1]
    assert conversation(seen) == [
        ("user", ["remember the word papaya"]),
        ("assistant", ["ok"]),
        ("user", ["which word?"]),
    ]
    assert_no_residue(seen)
    assert "avocado" not in sent_text(seen)
    assert later.cost_microdollars == TASK_COST

    back = await slot.run("and the first word?", session_id=old.session_id)

    assert back.success, back
    assert back.session_id == old.session_id
    resumed = recorder.of(EventKind.PROCESS_STARTED)[-1]
    assert resumed["resumed_session"] == old.session_id
    assert resumed["reason"] == "session_changed"
    assert mock_api.main_requests[-1].user_texts == [
        "remember the word avocado",
        "and the first word?",
    ]
    assert back.cost_microdollars == TASK_COST


async def test_ephemeral_tasks_share_one_process_and_never_each_others_conversation(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)

    results = [
        await slot.run(f"job {n}", mode=SlotMode.EPHEMERAL, session_id=None) for n in range(3)
    ]

    assert all(r.success for r in results), results
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    assert not gone(started["pid"])
    assert len({r.session_id for r in results}) == 3
    first, *later = mock_api.main_requests
    assert first.user_texts == ["job 0"]  # a new process needs no reset
    assert [conversation(r) for r in later] == [[("user", ["job 1"])], [("user", ["job 2"])]]
    for request in later:
        assert_no_residue(request)
    assert [r.cost_microdollars for r in results] == [TASK_COST] * 3


async def test_a_fresh_task_whose_flags_differ_gets_a_new_process(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    await slot.run("remember the word avocado")

    fresh = await slot.run("a new question", session_id=None, config=config(tools=("Read",)))

    assert fresh.success, fresh
    old, new = recorder.of(EventKind.PROCESS_STARTED)
    assert new["pid"] != old["pid"]
    assert new["reason"] == "config_changed"
    assert new["resumed_session"] is None
    assert gone(old["pid"])
    assert recorder.of(EventKind.CONVERSATION_RESET) == []
    assert mock_api.main_requests[-1].user_texts == ["a new question"]


async def test_a_model_change_is_made_in_place_after_the_reset(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    await slot.run("remember the word avocado")

    fresh = await slot.run(
        "a new question", session_id=None, config=config(model="claude-haiku-4-5")
    )

    assert fresh.success, fresh
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1
    assert len(recorder.of(EventKind.CONVERSATION_RESET)) == 1
    seen = mock_api.main_requests[-1]
    assert seen.model == "claude-haiku-4-5"
    assert conversation(seen) == [("user", ["a new question"])]
    assert_no_residue(seen)


async def test_a_fresh_task_gets_its_whole_budget_in_the_reused_process(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    # The CLI's --max-budget-usd counts from the start of the conversation: a second task on
    # the same conversation would fail on it at once, a fresh one after /clear does not.
    mock_api.default = Reply("ok", usage=USAGE)
    capped = config(max_budget_usd=TASK_COST * 1.5 / 1e6)
    first = await slot.run("job 1", session_id=None, config=capped)

    second = await slot.run("job 2", session_id=None, config=capped)

    assert first.success, first
    assert second.success, second
    assert not second.budget_exceeded
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1
    assert second.cost_microdollars == TASK_COST


async def test_with_clearing_off_a_fresh_session_gets_a_new_process(
    slot: Slot, executor: ClaudeCliExecutor, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    executor.clear_for_fresh_sessions = False
    mock_api.default = Reply("ok", usage=USAGE)
    await slot.run("remember the word avocado")

    fresh = await slot.run("a new question", session_id=None)

    assert fresh.success, fresh
    old, new = recorder.of(EventKind.PROCESS_STARTED)
    assert new["reason"] == "fresh_session"
    assert new["pid"] != old["pid"]
    assert mock_api.main_requests[-1].user_texts == ["a new question"]


async def test_a_one_off_task_leaves_the_slot_process_and_conversation_alone(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder, tmp_path: Path
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    first = await slot.run("remember the word avocado")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    request = slot.request("away", session_id=None, mode=SlotMode.EPHEMERAL, one_off=True)
    away = await slot.execute(dataclasses.replace(request, cwd=elsewhere))
    slot.session_id = first.session_id
    again = await slot.run("which word?")

    assert away.success, away
    assert again.success, again
    home, one_off = recorder.of(EventKind.PROCESS_STARTED)
    assert one_off["reason"] == "one_off"
    assert gone(one_off["pid"])
    assert not gone(home["pid"])
    assert mock_api.main_requests[-1].user_texts == ["remember the word avocado", "which word?"]


# ── starting a slot's process ahead of its first task ────────────────


async def test_a_slot_started_ahead_runs_its_first_task_in_that_process(
    slot: Slot, executor: ClaudeCliExecutor, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)

    ready = await executor.start_slot(SlotStart(slot.slot_id, config(), slot.cwd))
    assert ready
    assert mock_api.main_requests == []  # being ready costs no API call
    first = await slot.run("first", session_id=None)
    second = await slot.run("second")

    assert first.success, first
    assert second.success, second
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    assert started["reason"] == "started_ahead"
    assert recorder.of(EventKind.CONVERSATION_RESET) == []  # a new process needs no reset
    assert [r.user_texts for r in mock_api.main_requests] == [["first"], ["first", "second"]]
    assert [first.cost_microdollars, second.cost_microdollars] == [TASK_COST, TASK_COST]


async def test_a_task_that_does_not_fit_the_process_started_ahead_replaces_it(
    slot: Slot, executor: ClaudeCliExecutor, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    assert await executor.start_slot(SlotStart(slot.slot_id, config(), slot.cwd))

    result = await slot.run("hello", session_id=None, config=config(tools=("Read",)))

    assert result.success, result
    ahead, replaced = recorder.of(EventKind.PROCESS_STARTED)
    assert ahead["reason"] == "started_ahead"
    assert replaced["reason"] == "config_changed"
    assert gone(ahead["pid"])


async def test_starting_a_slot_in_a_missing_directory_reports_false(
    executor: ClaudeCliExecutor, tmp_path: Path
) -> None:
    start = SlotStart(SlotId("slot-x"), config(), tmp_path / "missing")

    assert not await executor.start_slot(start)

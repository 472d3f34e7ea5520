"""Pool policies with the real Claude Code CLI against the mock API: budget, review, shared
context and messages, and rate limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from claude_pool import BudgetExhausted, Pool, SlotMode, TaskState
from claude_pool.events import Event, RateLimitCleared, TaskApiRetry
from claude_pool.executor import EventKind
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    Reply,
    Usage,
    expected_cost_usd,
    read,
)
from claude_pool.testing.recording_executor import RecordingExecutor

pytestmark = pytest.mark.cli

PoolFactory = Callable[..., Pool]


async def test_concurrent_tasks_against_a_budget_never_overshoot_more_than_calls_in_flight(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    # Every task makes two API calls (a tool call, then the answer): unchecked, 8 tasks would
    # spend 16 calls, far past the budget plus one call in flight per slot.
    usage = Usage(input_tokens=1000, output_tokens=1000)
    call = round(expected_cost_usd(DEFAULT_MODEL, usage) * 1_000_000)
    mock_api.on(Reply([read("notes.txt")], usage=usage, delay=0.1), tool_result=False)
    mock_api.on(Reply("done", usage=usage), tool_result=True)
    budget = round(call * 10.5)
    slots = 4
    async with make_pool(slots=slots, budget_microdollars=budget,
                         slot_mode=SlotMode.EPHEMERAL) as pool:  # fmt: skip
        results = await pool.fan_out([f"job {i}" for i in range(8)])
        spent = (await pool.status()).spend_microdollars
        assert spent == sum(r.cost_microdollars for r in results)
        assert spent <= budget + slots * call
        assert sum(r.success for r in results) >= 4
        assert any(not r.success for r in results)
        with pytest.raises(BudgetExhausted):
            await pool.submit("one more")


async def test_a_tight_budget_completes_what_it_pays_for_and_no_task_fails_on_its_cap(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    # Regression: the budget splitter started tasks with caps below the cost of one call, and
    # they failed on their caps after paying for it.
    usage = Usage(input_tokens=1000, output_tokens=1000)
    call = round(expected_cost_usd(DEFAULT_MODEL, usage) * 1_000_000)
    mock_api.on(Reply("done", usage=usage), prompt="job")
    budget = round(call * 2.6)
    async with make_pool(slots=4, budget_microdollars=budget,
                         slot_mode=SlotMode.EPHEMERAL) as pool:  # fmt: skip
        items = await pool.fan_out_items([f"job {i}" for i in range(6)])
        status = await pool.status()
    assert sum(i.success for i in items) == 2
    assert not any(i.result is not None and i.result.budget_exceeded for i in items)
    assert all("budget exhausted" in (i.error or "") for i in items if not i.success)
    assert status.spend_microdollars <= budget
    assert len(mock_api.main_requests) == 2, "no call was made by a task that had to fail"


async def test_budgeted_tasks_on_a_slot_run_in_one_cli_process(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    # Regression: each task's --max-budget-usd differed, so every budgeted task started a
    # new CLI process.
    mock_api.default = Reply("ok", usage=Usage(input_tokens=1000, output_tokens=100))
    async with make_pool(slots=1, budget_microdollars=1_000_000) as pool:
        results = [await pool.run(f"job {i}") for i in range(4)]
        spent = (await pool.status()).spend_microdollars
    assert all(r.success for r in results), results
    assert spent == sum(r.cost_microdollars for r in results)
    [executor] = cli_events
    assert len(executor.of_kind(EventKind.PROCESS_STARTED)) == 1
    assert len({r.session_id for r in results}) == 1, "one conversation goes on"


async def test_fresh_budgeted_tasks_on_a_slot_run_in_its_live_process(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    mock_api.default = Reply("ok", usage=Usage(input_tokens=1000, output_tokens=100))
    async with make_pool(
        slots=2, budget_microdollars=1_000_000, slot_mode=SlotMode.EPHEMERAL
    ) as pool:
        slot = pool.slots[0].id
        results = [await pool.run(f"job {i}", slot=slot) for i in range(3)]
    assert all(r.success for r in results), results
    [executor] = cli_events
    started = [e for e in executor.of_kind(EventKind.PROCESS_STARTED) if e.slot_id == slot]
    assert len(started) == 1
    resets = [e for e in executor.of_kind(EventKind.CONVERSATION_RESET) if e.slot_id == slot]
    assert len(resets) == 2
    assert len({r.session_id for r in results}) == 3


async def test_a_live_process_enforces_exactly_what_its_next_task_reserved(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    # The second task runs in the first one's process, whose CLI still counts the first
    # task's call: it allows the 1.5 calls the task reserved, not the 2.5 the process was
    # started with, and stops the task after its second call.
    usage = Usage(input_tokens=1000, output_tokens=1000)
    call = round(expected_cost_usd(DEFAULT_MODEL, usage) * 1_000_000)
    budget = round(call * 2.5)
    mock_api.enqueue(
        Reply("one", usage=usage),
        Reply([read("a.txt")], usage=usage),
        Reply([read("b.txt")], usage=usage),
        Reply("done", usage=usage),
    )
    async with make_pool(slots=1, budget_microdollars=budget) as pool:
        first = await pool.run("one call")
        second = await pool.run("three calls")
        spent = (await pool.status()).spend_microdollars
        with pytest.raises(BudgetExhausted):
            await pool.submit("one more")
    assert first.success, first
    assert second.budget_exceeded, second
    assert len(mock_api.main_requests) == 3
    assert spent == 3 * call <= budget + call
    [executor] = cli_events
    assert len(executor.of_kind(EventKind.PROCESS_STARTED)) == 1


async def test_a_rejected_task_runs_again_with_the_feedback_in_its_prompt(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    async with make_pool() as pool:
        task_id = await pool.submit("write a slogan for tea", review=True, max_rejections=2)
        record = await pool.wait(task_id, timeout=30)
        assert record.state is TaskState.PENDING_REVIEW
        outcome = await pool.reject(task_id, "mention green tea")
        assert outcome.requeued
        record = await pool.wait(task_id, timeout=30)
        assert record.state is TaskState.PENDING_REVIEW
        prompt = mock_api.main_requests[-1].prompt
        assert "write a slogan for tea" in prompt
        assert "mention green tea" in prompt
        assert "attempt 2 of 2" in prompt
        assert (await pool.approve(task_id)).state is TaskState.COMPLETED


async def test_shared_context_and_messages_reach_the_cli(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    async with make_pool(system_prompt="Answer in French.") as pool:
        await pool.context_set("environment", "staging only")
        slot_id = pool.slots[0].id
        await pool.send_message("coordinator", slot_id, "the API moved to /v2")
        result = await pool.run("deploy the service")
        assert result.success, result.output
        request = mock_api.main_requests[-1]
        assert "staging only" in request.system
        assert "Answer in French." in request.system
        assert "You are Claude Code" in request.system, "Claude Code's own prompt is kept"
        assert "the API moved to /v2" in request.prompt
        assert await pool.peek_messages(slot_id) == []


async def test_a_429_storm_pauses_dispatch_and_no_task_is_lost(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    mock_api.fail(429, times=2)
    retried = asyncio.Event()
    cleared_at: list[int] = []

    def on_event(event: Event) -> None:
        if isinstance(event, TaskApiRetry):
            retried.set()
        if isinstance(event, RateLimitCleared):
            cleared_at.append(event.at_ms)

    async with make_pool(slots=2) as pool:
        pool.add_listener(on_event)
        first = await pool.submit("first")
        await asyncio.wait_for(retried.wait(), timeout=30)
        status = await pool.status()
        assert status.rate_limit is not None
        assert status.rate_limit.status == 429
        assert status.rate_limit.tasks == [first]
        later = [await pool.submit(f"later {i}") for i in range(3)]
        records = [await pool.wait(t, timeout=60) for t in [first, *later]]
        assert [r.state for r in records] == [TaskState.COMPLETED] * 4
        # Nothing started while the first task's CLI was still retrying.
        assert cleared_at, "the hold ended when the retried call got through"
        for record in records[1:]:
            assert record.started_at_ms is not None
            assert record.started_at_ms >= cleared_at[0]
        assert (await pool.status()).rate_limit is None

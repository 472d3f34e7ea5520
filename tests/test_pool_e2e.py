"""The pool end to end: the real Claude Code CLI against the mock Anthropic API."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from claude_pool import Pool, PoolConfig, SlotMode, TaskOverrides, TaskState
from claude_pool.executor import EventKind
from claude_pool.store.sqlite import SqliteStore
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    Reply,
    Usage,
    expected_cost_usd,
)
from claude_pool.testing.processes import pid_alive, processes_running, wait_until
from claude_pool.testing.recording_executor import RecordingExecutor

pytestmark = pytest.mark.cli

PoolFactory = Callable[..., Pool]


async def test_run_and_submit_return_the_cli_result_with_its_real_cost(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    usage = Usage(input_tokens=1000, output_tokens=200)
    mock_api.on(Reply("hello from the mock", usage=usage), prompt="say hello")
    mock_api.on(Reply("queued answer", usage=usage), prompt="queued work")
    async with make_pool() as pool:
        result = await pool.run("say hello")
        assert result.success, result.output
        assert result.output == "hello from the mock"
        assert result.turns_used == 1
        assert result.model == DEFAULT_MODEL
        assert result.cost_microdollars == round(expected_cost_usd(DEFAULT_MODEL, usage) * 1e6)
        task_id = await pool.submit("queued work")
        record = await pool.wait(task_id, timeout=30)
        assert record.state is TaskState.COMPLETED
        assert await pool.result(task_id) == record.result
        assert record.result is not None
        assert record.result.output == "queued answer"
        status = await pool.status()
        assert status.spend_microdollars == 2 * result.cost_microdollars


async def test_persistent_slot_keeps_the_conversation_and_ephemeral_does_not(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    async with make_pool(slot_mode=SlotMode.PERSISTENT) as pool:
        await pool.run("remember the word avocado")
        await pool.run("which word?")
    seen = mock_api.main_requests[-1]
    assert "remember the word avocado" in str(seen.messages)

    mock_api.reset()
    async with make_pool(slot_mode=SlotMode.EPHEMERAL) as pool:
        await pool.run("remember the word papaya")
        await pool.run("which word now?")
    seen = mock_api.main_requests[-1]
    assert "which word now?" in str(seen.messages)
    assert "papaya" not in str(seen.messages)


async def test_ephemeral_slot_runs_each_task_in_a_new_conversation_of_one_process(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    async with make_pool(slot_mode=SlotMode.EPHEMERAL) as pool:
        results = [await pool.run(f"job {n}: the word is w{n}x") for n in range(3)]
        [slot] = pool.slots
    assert all(r.success for r in results), results
    events = cli_events[-1]
    assert len({e.data["pid"] for e in events.of_kind(EventKind.PROCESS_STARTED)}) == 1
    resets = [e.data for e in events.of_kind(EventKind.CONVERSATION_RESET)]
    assert [r["session_id"] for r in resets] == [r.session_id for r in results[1:]]
    for n, request in enumerate(mock_api.main_requests):
        assert f"job {n}" in request.user_texts[-1]
        assert not any(f"w{m}x" in str(request.messages) for m in range(n)), request.messages
    assert slot.session_id is None  # an ephemeral slot keeps no conversation


async def test_fresh_session_task_reuses_the_slot_process_and_its_session_goes_on(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    async with make_pool() as pool:
        old = await pool.run("remember the word avocado")
        fresh = await pool.run("remember the word papaya", fresh_session=True)
        [slot] = pool.slots
        assert slot.session_id == fresh.session_id != old.session_id
        later = await pool.run("which word?")
        status = await pool.status()
    assert later.session_id == fresh.session_id
    seen = str(mock_api.main_requests[-1].messages)
    assert "papaya" in seen
    assert "avocado" not in seen
    events = cli_events[-1]
    assert len(events.of_kind(EventKind.PROCESS_STARTED)) == 1
    assert len(events.of_kind(EventKind.CONVERSATION_RESET)) == 1
    assert status.spend_microdollars == sum(r.cost_microdollars for r in (old, fresh, later))


async def test_fresh_session_task_with_other_flags_gets_a_new_process(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    async with make_pool() as pool:
        await pool.run("remember the word avocado")
        fresh = await pool.run("a new question", TaskOverrides(tools=["Read"]), fresh_session=True)
    assert fresh.success, fresh
    events = cli_events[-1]
    first, second = (e.data for e in events.of_kind(EventKind.PROCESS_STARTED))
    assert second["pid"] != first["pid"]
    assert not pid_alive(first["pid"])
    assert events.of_kind(EventKind.CONVERSATION_RESET) == []
    assert mock_api.main_requests[-1].user_texts == ["a new question"]


async def test_slots_start_their_processes_at_open_and_tasks_run_in_them(
    make_pool: PoolFactory,
    mock_api: MockAnthropicAPI,
    claude_bin: Path,
    cli_events: list[RecordingExecutor],
) -> None:
    async with make_pool(slots=2) as pool:
        await wait_until(lambda: len(processes_running(claude_bin, os.getpid())) == 2, 30)
        before = processes_running(claude_bin, os.getpid())
        assert mock_api.main_requests == []
        results = await pool.fan_out(["job 1", "job 2"])
        assert all(r.success for r in results), results
        started = cli_events[-1].of_kind(EventKind.PROCESS_STARTED)
    assert {e.data["pid"] for e in started} <= before
    assert {e.data["reason"] for e in started} == {"started_ahead"}


async def test_cancel_of_a_running_task_kills_its_cli_process(
    make_pool: PoolFactory,
    mock_api: MockAnthropicAPI,
    claude_bin: Path,
    cli_events: list[RecordingExecutor],
) -> None:
    mock_api.on(Reply("too late", delay=60), prompt="slow job")
    async with make_pool() as pool:
        task_id = await pool.submit("slow job")
        await asyncio.to_thread(mock_api.wait_for_requests, 1, 30)
        pid = int(cli_events[-1].of_kind(EventKind.PROCESS_STARTED)[-1].data["pid"])
        assert pid_alive(pid)
        record = await asyncio.wait_for(pool.cancel(task_id), timeout=30)
        assert record.state is TaskState.CANCELLED
        assert not pid_alive(pid)


# ── crash recovery through `claude-pool worker` ─────────────────────


@pytest.fixture
def worker_env(cli_env: dict[str, str], claude_bin: Path) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_HEARTBEAT_SECS"] = "0.5"
    return env


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], cli_cwd: Path, tmp_path: Path
) -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(db: Path) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "claude_pool.cli",
                "worker",
                "--store",
                str(db),
                "--slots",
                "2",
                "--model",
                DEFAULT_MODEL,
                "--permission-mode",
                "dontAsk",
            ],
            cwd=cli_cwd,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    for log in logs:
        log.close()


@pytest.fixture
async def client_of() -> AsyncIterator[Callable[[Path], Pool]]:
    opened: list[Pool] = []

    def open_client(db: Path) -> Pool:
        pool = Pool(PoolConfig(), slots=0, store=SqliteStore(db))
        opened.append(pool)
        return pool

    yield open_client
    for pool in opened:
        await pool.close()


async def test_a_pool_killed_mid_work_is_finished_by_the_next_one_with_nothing_lost(
    mock_api: MockAnthropicAPI,
    start_worker: Callable[[Path], subprocess.Popen[bytes]],
    client_of: Callable[[Path], Pool],
    claude_bin: Path,
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.db"
    slow = mock_api.on(Reply("slow finished", delay=120), prompt="slow task")
    client = client_of(db)
    await client.open()
    ids = [await client.submit(f"slow task {i}") for i in range(2)]
    ids += [await client.submit(f"quick task {i}") for i in range(3)]

    first = start_worker(db)
    await asyncio.to_thread(mock_api.wait_for_requests, 2, 30)
    running = [t for t in await client.list_tasks() if t.state is TaskState.RUNNING]
    assert len(running) == 2
    workers_children = processes_running(claude_bin, ancestor=first.pid)
    assert len(workers_children) == 2

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    await wait_until(lambda: not any(pid_alive(p) for p in workers_children), timeout=15)

    slow.times = 0  # from now on the re-queued slow tasks answer at once
    second = start_worker(db)
    records = [await client.wait(task_id, timeout=60) for task_id in ids]
    assert [r.state for r in records] == [TaskState.COMPLETED] * 5
    assert all(r.result is not None and r.result.success for r in records)

    second_children = processes_running(claude_bin, ancestor=second.pid)
    assert second_children, "persistent slots keep a warm CLI process"
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    assert not any(pid_alive(p) for p in second_children)
    prompts = [r.prompt for r in mock_api.main_requests]
    for i in range(3):
        assert prompts.count(f"quick task {i}") == 1, "a queued task ran twice"


async def test_dependencies_pending_when_a_worker_is_killed_run_in_order_on_the_next_one(
    mock_api: MockAnthropicAPI,
    start_worker: Callable[[Path], subprocess.Popen[bytes]],
    client_of: Callable[[Path], Pool],
    claude_bin: Path,
    tmp_path: Path,
) -> None:
    db = tmp_path / "pool.db"
    slow = mock_api.on(Reply("the design", delay=120), prompt="design the API")
    mock_api.on(Reply("built it"), prompt=re.compile(r"^build from"))
    client = client_of(db)
    await client.open()
    design = await client.submit("design the API")
    build = await client.submit(f"build from: {{{{{design}.output}}}}", depends_on=[design])
    check = await client.submit("check the build", depends_on=[build])

    first = start_worker(db)
    await asyncio.to_thread(mock_api.wait_for_requests, 1, 30)
    assert (await client.get_task(design)).state is TaskState.RUNNING
    assert await client.waiting_for([build, check]) == {build: [design], check: [build]}
    children = processes_running(claude_bin, ancestor=first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    await wait_until(lambda: not any(pid_alive(p) for p in children), timeout=15)

    slow.times = 0  # the re-queued design answers at once
    mock_api.on(Reply("the design"), prompt="design the API")
    second = start_worker(db)
    record = await client.wait(check, timeout=60)
    assert record.state is TaskState.COMPLETED
    assert (await client.get_task(build)).state is TaskState.COMPLETED
    prompts = [r.prompt for r in mock_api.main_requests]
    assert prompts == [
        "design the API",
        "design the API",
        "build from: the design",
        "check the build",
    ]
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0


async def test_a_crashing_slot_goes_errored_and_the_supervisor_restores_it(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, cli_events: list[RecordingExecutor]
) -> None:
    mock_api.on(Reply("never arrives", delay=60), prompt="doomed")
    async with make_pool() as pool:
        recorder = cli_events[-1]
        pool.config.max_restarts = 1
        for attempt in range(2):
            task_id = await pool.submit(f"doomed {attempt}")
            await asyncio.to_thread(mock_api.wait_for_requests, attempt + 1, 30)
            started = recorder.of_kind(EventKind.PROCESS_STARTED)
            os.kill(int(started[-1].data["pid"]), signal.SIGKILL)
            record = await pool.wait(task_id, timeout=30)
            assert record.state is TaskState.FAILED
            assert record.result is not None
            assert "exited unexpectedly" in record.result.output
        assert recorder.of_kind(EventKind.PROCESS_STARTED)[-1].data["restart"] is True
        assert pool.slots[0].state.value == "errored"
        report = await pool.supervisor.check_once()
        assert report.restored_slots == [pool.slots[0].id]
        result = await pool.run("alive again")
        assert result.success, result.output
        assert pool.slots[0].restart_count == 2

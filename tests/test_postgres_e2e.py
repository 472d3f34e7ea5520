"""Several `claude-pool worker` processes on one PostgreSQL store, end to end: the real Claude
Code CLI against the mock API, one worker killed outright mid-batch."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from claude_pool import Pool, PoolConfig, TaskState
from claude_pool.store.postgres import PostgresStore
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, MockRequest, Reply
from claude_pool.testing.processes import ancestors, pid_alive, wait_until
from claude_pool.types import TaskFilter, TaskId

pytestmark = [pytest.mark.cli, pytest.mark.postgres]

TASKS = 60
WORKERS = 3
ANSWER_DELAY_SECS = 0.4
"""How long each model turn takes: long enough that a worker always has tasks in flight."""


def answer(request: MockRequest) -> Reply:
    """Each task's own answer, from its prompt ``task N``."""
    match = re.search(r"task (\d+)", request.prompt)
    return Reply(f"answer {match[1]}" if match else "no task", delay=ANSWER_DELAY_SECS)


@pytest.fixture
def start_worker(
    cli_env: dict[str, str], claude_bin: Path, cli_cwd: Path, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_HEARTBEAT_SECS"] = "0.5"
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(url: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "claude_pool.cli", "worker", "--store", url, "--slots", "2",
             "--model", DEFAULT_MODEL, "--permission-mode", "dontAsk"],
            cwd=cli_cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    for log in logs:
        log.close()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (CLIs, their tools and helpers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid in ancestors(int(entry.name)):
            found.add(int(entry.name))
    return {p for p in found if pid_alive(p)}


def owner_pid(worker_id: str | None) -> int | None:
    """The process id in a worker id ``host:pid:start.random``."""
    if worker_id is None:
        return None
    parts = worker_id.split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None


async def test_three_workers_finish_sixty_tasks_exactly_once_when_one_is_killed_mid_batch(
    postgres_url: str,
    mock_api: MockAnthropicAPI,
    start_worker: Callable[[str], subprocess.Popen[bytes]],
    claude_bin: Path,
) -> None:
    mock_api.on(answer)
    client = Pool(PoolConfig(), slots=0, store=PostgresStore(postgres_url))
    await client.open()
    try:
        ids = [await client.submit(f"task {i}") for i in range(TASKS)]
        workers = [start_worker(postgres_url) for _ in range(WORKERS)]
        victim = workers[0]

        # Mid-batch: some work done, and the victim running tasks of its own.
        async def victims_running() -> list[TaskId]:
            running = await client.list_tasks(TaskFilter(state=TaskState.RUNNING), limit=TASKS)
            mine = []
            for record in running:
                stored = await client.store.get_task(record.id)
                if stored is not None and owner_pid(stored.claimed_by) == victim.pid:
                    mine.append(record.id)
            return mine

        in_flight: list[TaskId] = []
        async with asyncio.timeout(90):
            while True:
                done = await client.list_tasks(TaskFilter(state=TaskState.COMPLETED), limit=TASKS)
                if len(done) >= TASKS // 5 and (in_flight := await victims_running()):
                    break
                await asyncio.sleep(0.05)
        children = descendants(victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert children, "the victim ran CLI processes"
        await wait_until(lambda: not any(pid_alive(p) for p in children), timeout=15)

        records = [await client.wait(task_id, timeout=120) for task_id in ids]
    finally:
        await client.close()

    assert [r.state for r in records] == [TaskState.COMPLETED] * TASKS
    for i, record in enumerate(records):
        assert record.result is not None
        assert record.result.output == f"answer {i}", "each task has its own answer"
    recovered = {r.id for r in records if r.attempts}
    assert recovered, "the dead worker's running tasks were taken over"
    assert recovered <= set(in_flight), "only tasks the dead worker was running are re-run"
    for record in records:
        if record.id in recovered:
            (attempt,) = record.attempts  # re-run exactly once
            assert "died while it ran" in attempt.reason
    asked = Counter(r.prompt for r in mock_api.main_requests)
    for i, record in enumerate(records):
        expected = {1, 2} if record.id in recovered else {1}
        assert asked[f"task {i}"] in expected, f"task {i} reached the model {asked[f'task {i}']}x"
    assert not any(pid_alive(p) for p in children), "nothing of the dead worker survives"
    assert all(w.poll() is None for w in workers[1:]), "the survivors kept running"

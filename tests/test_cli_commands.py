"""The `claude-pool` command line, run as a real process against one store, with a worker
executing tasks on the real Claude Code CLI against the mock API."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, Reply
from claude_pool.testing.processes import pid_alive, processes_running, wait_until

pytestmark = pytest.mark.cli

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_process_env(cli_env: dict[str, str], claude_bin: Path) -> dict[str, str]:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_MODEL"] = DEFAULT_MODEL
    env["CLAUDE_POOL_HEARTBEAT_SECS"] = "0.5"
    return env


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pool.db"


@pytest.fixture
def cli(cli_process_env: dict[str, str], cli_cwd: Path, db: Path) -> Cli:
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claude_pool.cli", *args, "--store", str(db)],
            cwd=cli_cwd,
            env=cli_process_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def worker(
    cli_process_env: dict[str, str], cli_cwd: Path, db: Path, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    log: IO[bytes] = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "worker", "--store", str(db), "--slots", "2"],
        cwd=cli_cwd,
        env=cli_process_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # Ready once it says it serves the store; until then nothing it does can be timed.
    log_path = tmp_path / "worker.log"
    deadline = time.monotonic() + 60
    while b"slot(s) on" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the worker did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def test_submit_then_result_through_a_worker_in_another_process(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("the answer is 42"), prompt="what is the answer")
    submitted = cli("submit", "what is the answer", "--tag", "demo", "--json")
    assert submitted.returncode == 0, submitted.stderr
    task_id = json.loads(submitted.stdout)["task_id"]

    waited = cli("result", task_id, "--wait", "--timeout", "60", "--json")
    assert waited.returncode == 0, waited.stderr
    record = json.loads(waited.stdout)
    assert record["state"] == "completed"
    assert record["result"]["output"] == "the answer is 42"
    assert record["tags"] == ["demo"]

    listed = cli("tasks", "--state", "completed", "--json")
    assert [t["id"] for t in json.loads(listed.stdout)] == [task_id]
    table = cli("tasks")
    assert task_id in table.stdout

    status = cli("status", "--json")
    data = json.loads(status.stdout)
    assert data["tasks"] == {"completed": 1}
    assert len(data["slots"]) == 2
    assert data["spend_microdollars"] > 0


async def test_cancel_from_another_shell_stops_a_task_running_in_the_worker(
    cli: Cli,
    worker: subprocess.Popen[bytes],
    mock_api: MockAnthropicAPI,
    claude_bin: Path,
    tmp_path: Path,
) -> None:
    mock_api.on(Reply("never seen", delay=60), prompt="very slow")
    task_id = cli("submit", "very slow").stdout.strip()
    try:
        await asyncio.to_thread(mock_api.wait_for_requests, 1, 60)
    except TimeoutError:
        pytest.fail(
            "the worker never sent the task's request\n"
            f"tasks: {cli('tasks', '--json').stdout}\n"
            f"worker log:\n{(tmp_path / 'worker.log').read_text()}"
        )
    running = processes_running(claude_bin, ancestor=worker.pid)
    assert len(running) == 1, "the worker runs the task on one CLI process"
    cancelled = cli("cancel", task_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    # The worker, not just the store, stops it: its CLI process ends.
    await wait_until(lambda: not any(pid_alive(p) for p in running), timeout=15)
    waited = cli("result", task_id, "--wait", "--timeout", "30", "--json")
    assert json.loads(waited.stdout)["state"] == "cancelled"
    assert waited.returncode == 1


def test_run_without_a_worker_runs_in_process(cli: Cli, mock_api: MockAnthropicAPI) -> None:
    mock_api.on(Reply("ran here"), prompt="just do it")
    done = cli("run", "just do it", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["output"] == "ran here"


def test_exit_codes_say_what_happened(cli: Cli) -> None:
    missing = cli("result", "task-doesnotexist")
    assert missing.returncode == 3
    assert "no task with id" in missing.stderr
    bad_config = cli("submit", "x", "--permission-mode", "sometimes")
    assert bad_config.returncode == 2
    assert "permission_mode" in bad_config.stderr
    pending = cli("submit", "nobody runs this")
    waited = cli("result", pending.stdout.strip(), "--wait", "--timeout", "0.2")
    assert waited.returncode == 5


def test_worker_drains_on_sigterm(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    task_id = cli("submit", "quick one").stdout.strip()
    assert cli("result", task_id, "--wait", "--timeout", "60").returncode == 0
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    slots = json.loads(cli("status", "--json").stdout)["slots"]
    assert {s["state"] for s in slots} == {"stopped"}


def test_run_without_a_worker_leaves_other_queued_tasks_alone(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    """Regression: `claude-pool run` with no worker ran everything queued before its own task."""
    queued = [cli("submit", f"queued earlier {i}").stdout.strip() for i in range(2)]
    mock_api.on(Reply("just mine"), prompt="only my task")
    done = cli("run", "only my task", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["output"] == "just mine"
    states = {t["id"]: t["state"] for t in json.loads(cli("tasks", "--json").stdout)}
    assert [states[t] for t in queued] == ["pending", "pending"]
    assert [r.prompt for r in mock_api.main_requests] == ["only my task"]


async def test_status_in_another_shell_shows_the_workers_rate_limit_hold(
    cli: Cli, worker: subprocess.Popen[bytes], mock_api: MockAnthropicAPI
) -> None:
    """Regression: ``claude-pool status`` showed ``rate_limit: null`` while the worker's
    tasks were retrying 429s. The retried call is slow to answer, so the hold lasts past
    the announced retry time; status shows it until the call gets through."""
    mock_api.fail(429, times=1)
    mock_api.on(Reply("through at last", delay=6), prompt="storm")
    task_id = cli("submit", "storm").stdout.strip()
    await asyncio.to_thread(mock_api.wait_for_requests, 2, 60)  # the retry is under way
    during = json.loads(cli("status", "--json").stdout)
    hold = during["rate_limit"]
    assert hold is not None, during
    assert hold["status"] == 429
    assert hold["tasks"] == [task_id]
    assert "rate limited (HTTP 429)" in hold["message"]
    waited = cli("result", task_id, "--wait", "--timeout", "60", "--json")
    assert json.loads(waited.stdout)["result"]["output"] == "through at last"
    assert json.loads(cli("status", "--json").stdout)["rate_limit"] is None

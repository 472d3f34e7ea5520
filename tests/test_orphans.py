"""Nothing a pool started outlives it, even when the pool process is killed outright."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from claude_pool.executor.orphans import MARKER_ENV, reap_orphans
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, Reply, bash

SLEEPER = 'python3 -c "import time; time.sleep(4242)"'
# (The CLI refuses a bare `sleep`.)

pytestmark = pytest.mark.cli

# A pool process that runs one task whose Bash tool command sleeps; it prints the CLI's pid.
POOL_SCRIPT = """
import asyncio, sys
from pathlib import Path
from claude_pool.config import EffectiveConfig
from claude_pool.executor import ClaudeCliExecutor, EventKind, ExecutionRequest
from claude_pool.types import PermissionMode, SlotId, TaskId

async def main() -> None:
    executor = ClaudeCliExecutor(sys.argv[1])
    config = EffectiveConfig(model=sys.argv[2], permission_mode=PermissionMode.BYPASS_PERMISSIONS)
    request = ExecutionRequest(TaskId("t"), SlotId("s"), "run the tool", config, Path.cwd())

    def started(event):
        if event.kind is EventKind.PROCESS_STARTED:
            print(event.data["pid"], flush=True)

    await executor.execute(request, started)

asyncio.run(main())
"""


def marked(marker_prefix: str) -> list[int]:
    """Live processes whose environment carries a marker starting with ``marker_prefix``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and f"{MARKER_ENV}={marker_prefix}".encode() in environ:
            found.append(int(entry.name))
    return found


def sleepers_of(pid: int) -> list[int]:
    """The tool processes started under the pool process ``pid`` (by their marker)."""
    return [p for p in marked(f"{pid}:") if "time.sleep(4242)" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - other processes have no event to await
            await asyncio.sleep(0.05)


async def start_pool_running_a_sleeping_tool(
    claude_bin: Path, cli_env: dict[str, str], cli_cwd: Path, tmp_path: Path
) -> tuple[asyncio.subprocess.Process, int]:
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    pool = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(claude_bin), DEFAULT_MODEL,
        cwd=cli_cwd, env=cli_env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert pool.stdout is not None
    cli_pid = int(await pool.stdout.readline())
    await wait_for(lambda: bool(sleepers_of(pool.pid)))
    return pool, cli_pid


def watchdog_of(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        command = _cmdline(int(entry.name)) if entry.name.isdigit() else ""
        if "watchdog.py" in command and f" {pid}:" in command:
            return int(entry.name)
    return None


async def test_tool_processes_of_a_pool_killed_outright_die_with_it(
    claude_bin: Path,
    cli_env: dict[str, str],
    cli_cwd: Path,
    mock_api: MockAnthropicAPI,
    tmp_path: Path,
) -> None:
    """Regression: SIGKILL of the pool killed the CLI, but the commands its Bash tool started
    (in sessions of their own) kept running until a new pool happened to start."""
    mock_api.on(Reply([bash(SLEEPER)]), tool_result=False)
    pool, cli_pid = await start_pool_running_a_sleeping_tool(claude_bin, cli_env, cli_cwd, tmp_path)
    try:
        assert watchdog_of(pool.pid) is not None
        pool.kill()
        await pool.wait()
        # No other pool starts: the killed pool's watchdog ends them.
        await wait_for(lambda: start_time_of(cli_pid) is None)
        await wait_for(lambda: not sleepers_of(pool.pid))
        await wait_for(lambda: watchdog_of(pool.pid) is None)
    finally:
        if pool.returncode is None:
            pool.kill()
            await pool.wait()
        for pid in sleepers_of(pool.pid):
            os.kill(pid, 9)


async def test_tool_processes_of_a_pool_killed_with_its_watchdog_are_killed_by_the_next_pool(
    claude_bin: Path,
    cli_env: dict[str, str],
    cli_cwd: Path,
    mock_api: MockAnthropicAPI,
    tmp_path: Path,
) -> None:
    mock_api.on(Reply([bash(SLEEPER)]), tool_result=False)
    pool, cli_pid = await start_pool_running_a_sleeping_tool(claude_bin, cli_env, cli_cwd, tmp_path)
    try:
        watchdog = watchdog_of(pool.pid)
        assert watchdog is not None
        os.kill(watchdog, 9)
        pool.kill()
        await pool.wait()
        await wait_for(lambda: start_time_of(cli_pid) is None)
        survivors = sleepers_of(pool.pid)
        assert survivors, "the tool outlived the CLI (what this guards)"

        killed = reap_orphans()
        assert set(survivors) <= set(killed)
        await wait_for(lambda: not sleepers_of(pool.pid))
    finally:
        if pool.returncode is None:
            pool.kill()
            await pool.wait()
        for pid in sleepers_of(pool.pid):
            os.kill(pid, 9)


async def test_tearing_a_cli_down_ends_the_tool_commands_it_started(
    claude_bin: Path, cli_env: dict[str, str], cli_cwd: Path, mock_api: MockAnthropicAPI
) -> None:
    from claude_pool.config import EffectiveConfig
    from claude_pool.executor import ClaudeCliExecutor, ExecutionRequest
    from claude_pool.types import PermissionMode, SlotId, TaskId

    mock_api.on(Reply([bash(SLEEPER)]), tool_result=False)
    executor = ClaudeCliExecutor(claude_bin, env=cli_env)
    config = EffectiveConfig(model=DEFAULT_MODEL, permission_mode=PermissionMode.BYPASS_PERMISSIONS)
    request = ExecutionRequest(TaskId("t"), SlotId("s"), "run the tool", config, cli_cwd)
    task = asyncio.create_task(executor.execute(request))
    try:
        await wait_for(lambda: bool(sleepers_of(os.getpid())))
        request.cancel.set()
        result = await asyncio.wait_for(task, timeout=30)
        assert not result.success
        assert sleepers_of(os.getpid()) == []
    finally:
        await executor.aclose()
        for pid in sleepers_of(os.getpid()):
            os.kill(pid, 9)


def start_time_of(pid: int) -> int | None:
    from claude_pool.executor.orphans import start_time

    return start_time(pid)

"""The executor on the real Claude Code CLI against the mock Anthropic API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from claude_pool.config import EffectiveConfig
from claude_pool.executor import ClaudeCliExecutor, EventKind, ExecutionRequest, ExecutorEvent
from claude_pool.executor.process import live_processes
from claude_pool.executor.protocol import AUTH_FAILED_MESSAGE
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    Reply,
    Usage,
    bash,
    expected_cost_usd,
    mcp_tool,
    structured,
)
from claude_pool.types import (
    PermissionMode,
    SlotId,
    SlotMode,
    TaskId,
    TaskResult,
    usd_to_microdollars,
)

pytestmark = pytest.mark.cli

SLOT = SlotId("slot-a")
USAGE = Usage(input_tokens=1000, output_tokens=100)
TASK_COST = round(expected_cost_usd(DEFAULT_MODEL, USAGE) * 1_000_000)
SLOW = 30.0
"""A reply delay no test waits for: the task is stopped long before."""


def config(**fields: Any) -> EffectiveConfig:
    return EffectiveConfig(**{"model": DEFAULT_MODEL, **fields})


def gone(pid: int) -> bool:
    """The process has exited (a zombie left for an init that does not reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(pid: int, timeout: float) -> None:
    """Wait (without polling) until process ``pid`` exits."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def group_empty(pgid: int) -> bool:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return False
    return True


def claude_processes(claude_bin: Path, home: Path) -> list[int]:
    """Live CLI processes running with ``home`` as HOME (i.e. started by this test)."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = exe == os.path.realpath(claude_bin) and f"HOME={home}".encode() in environ
        if mine and not gone(int(pid)):
            found.append(int(pid))
    return found


class Recorder:
    """Collects executor events; lets a test wait for one without sleeping."""

    def __init__(self) -> None:
        self.events: list[ExecutorEvent] = []
        self._changed = asyncio.Event()
        self.hooks: list[Callable[[ExecutorEvent], None]] = []

    def __call__(self, event: ExecutorEvent) -> None:
        self.events.append(event)
        self._changed.set()
        for hook in self.hooks:
            hook(event)

    def of(self, kind: EventKind) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind is kind]

    async def wait_for(self, kind: EventKind, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not self.of(kind):
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind)[-1]


@pytest.fixture
async def executor(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> AsyncIterator[ClaudeCliExecutor]:
    ex = ClaudeCliExecutor(
        claude_bin, env=cli_env, work_dir=tmp_path / "executor", interrupt_grace_secs=5
    )
    yield ex
    await ex.aclose()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


class Slot:
    """Runs tasks on one slot, passing the session along like the pool does."""

    def __init__(
        self,
        executor: ClaudeCliExecutor,
        cwd: Path,
        recorder: Recorder,
        slot_id: SlotId = SLOT,
    ) -> None:
        self.slot_id = slot_id
        self.executor = executor
        self.cwd = cwd
        self.recorder = recorder
        self.session_id: str | None = None
        self.count = 0

    def request(self, prompt: str, **fields: Any) -> ExecutionRequest:
        self.count += 1
        fields.setdefault("config", config())
        fields.setdefault("session_id", self.session_id)
        return ExecutionRequest(
            task_id=TaskId(f"task-{self.count}"),
            slot_id=self.slot_id,
            prompt=prompt,
            cwd=self.cwd,
            **fields,
        )

    async def run(self, prompt: str, **fields: Any) -> TaskResult:
        return await self.execute(self.request(prompt, **fields))

    async def execute(self, request: ExecutionRequest) -> TaskResult:
        result = await self.executor.execute(request, self.recorder)
        if result.session_id:
            self.session_id = result.session_id
        return result


@pytest.fixture
def slot(executor: ClaudeCliExecutor, cli_cwd: Path, recorder: Recorder) -> Slot:
    return Slot(executor, cli_cwd, recorder)


# ── one task ──────────────────────────────────────────────────────────


async def test_one_shot_task_returns_the_result_and_its_process_is_gone(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.on(Reply("the answer", usage=USAGE), prompt="question")

    result = await slot.run("a question", mode=SlotMode.EPHEMERAL, one_off=True)

    assert result.success, result
    assert result.output == "the answer"
    assert result.cost_microdollars == TASK_COST
    assert result.turns_used == 1
    assert result.model == DEFAULT_MODEL
    assert result.session_id
    assert result.elapsed_ms > 0
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    assert started["restart"] is False
    assert gone(started["pid"])
    assert recorder.of(EventKind.ASSISTANT_TEXT) == [{"text": "the answer"}]
    assert recorder.of(EventKind.SESSION)[0]["session_id"] == result.session_id
    assert mock_api.last_request.prompt == "a question"


async def test_a_prompt_that_looks_like_a_flag_is_just_a_prompt(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    result = await slot.run("--version", mode=SlotMode.EPHEMERAL, one_off=True)

    assert result.success, result
    assert mock_api.last_request.prompt == "--version"


# ── warm processes ────────────────────────────────────────────────────


async def test_warm_slot_keeps_one_process_and_the_conversation_grows(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)

    results = [await slot.run(f"prompt {n}") for n in range(3)]

    assert all(r.success for r in results), results
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1
    assert [r.user_texts for r in mock_api.main_requests] == [
        ["prompt 0"],
        ["prompt 0", "prompt 1"],
        ["prompt 0", "prompt 1", "prompt 2"],
    ]
    # The CLI's total_cost_usd grows with the process; each task is charged its own turn only.
    totals = [e["total_cost_usd"] for e in recorder.of(EventKind.RESULT)]
    assert totals == pytest.approx([n * TASK_COST / 1e6 for n in (1, 2, 3)])
    assert [r.cost_microdollars for r in results] == [TASK_COST] * 3
    assert len({r.session_id for r in results}) == 1


async def test_new_tools_restart_the_warm_process_resuming_the_conversation(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    first = await slot.run("remember the number 7")
    second = await slot.run("what was it?", config=config(tools=("Read",)))

    assert first.success, first
    assert second.success, second
    old, new = recorder.of(EventKind.PROCESS_STARTED)
    assert new["resumed_session"] == first.session_id
    assert new["restart"] is False
    assert gone(old["pid"])
    assert mock_api.last_request.user_texts == ["remember the number 7", "what was it?"]
    assert mock_api.last_request.tool_names == ["Read"]
    assert second.session_id == first.session_id


async def test_a_model_change_is_made_in_place_without_a_new_process(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    await slot.run("first")
    result = await slot.run("second", config=config(model="claude-haiku-4-5"))

    assert result.success, result
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1
    assert mock_api.last_request.model == "claude-haiku-4-5"
    assert result.model == "claude-haiku-4-5"
    assert "first" in mock_api.last_request.user_texts


async def test_a_session_that_was_never_saved_gives_way_to_a_new_conversation(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    """Regression: a task killed before its first turn left a session id that no CLI could
    resume, and every later task on the slot failed with "No conversation found"."""
    result = await slot.run("carry on", session_id="3f1c2d9e-0000-4000-8000-000000000000")

    assert result.success, result.output
    assert result.session_id != "3f1c2d9e-0000-4000-8000-000000000000"
    assert mock_api.last_request.user_texts == ["carry on"]


async def test_a_per_task_budget_gets_a_process_of_its_own(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    await slot.run("spend some")
    # The CLI's cap counts from the process start: in the old process this would trip at once.
    result = await slot.run("spend more", config=config(max_budget_usd=TASK_COST * 1.5 / 1e6))

    assert result.success, result
    assert result.cost_microdollars == TASK_COST
    assert recorder.of(EventKind.PROCESS_STARTED)[-1]["reason"] == "budget"


async def test_a_task_capped_at_what_the_live_process_still_allows_runs_in_it(
    slot: Slot, executor: ClaudeCliExecutor, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("ok", usage=USAGE)
    cap = 10 * TASK_COST
    await slot.run("spend some", config=config(max_budget_usd=cap / 1e6))
    left = executor.budget_left(SLOT, fresh=False)
    assert left == cap - TASK_COST
    assert executor.budget_left(SLOT, fresh=True) == cap, "a /clear starts the count again"

    same = await slot.run("spend more", config=config(max_budget_usd=left / 1e6))
    other = await slot.run("and more", config=config(max_budget_usd=left / 1e6))

    assert same.success, same
    assert other.success, other
    # The second task ran in the first one's process; the third would have been allowed less
    # than its cap there.
    _, restarted = recorder.of(EventKind.PROCESS_STARTED)
    assert restarted["reason"] == "budget"
    assert executor.budget_left(SLOT, fresh=False) == left - TASK_COST


# ── stopping tasks ────────────────────────────────────────────────────


async def test_timeout_kills_the_process_group(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("too late", delay=SLOW)

    result = await slot.run("take forever", timeout_secs=1)

    assert not result.success
    assert result.output == "timed out after 1s"
    assert result.failed_command is not None
    assert "--model" in result.failed_command
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    assert gone(started["pid"])
    assert group_empty(started["pid"])


async def test_cancel_mid_task_stops_the_process_and_counts_the_spend_so_far(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.enqueue(Reply([bash("echo step-one")], usage=USAGE), Reply("never", delay=SLOW))
    request = slot.request(
        "two steps", config=config(permission_mode=PermissionMode.BYPASS_PERMISSIONS)
    )
    # Cancel once the first (paid) turn's tool ran and the second API call is under way.
    recorder.hooks.append(
        lambda e: request.cancel.set() if e.kind is EventKind.TOOL_RESULT else None
    )

    result = await slot.execute(request)

    assert not result.success
    assert "cancelled" in result.output
    assert result.cost_microdollars == TASK_COST
    [started] = recorder.of(EventKind.PROCESS_STARTED)
    assert gone(started["pid"])
    assert group_empty(started["pid"])


async def test_cancelling_the_calling_task_tears_the_process_down(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.default = Reply("never", delay=SLOW)
    task = asyncio.create_task(slot.run("hang"))
    started = await recorder.wait_for(EventKind.PROCESS_STARTED)
    await asyncio.to_thread(mock_api.wait_for_requests, 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert gone(started["pid"])
    assert all(p.pid != started["pid"] for p in live_processes())


async def test_a_crash_mid_task_is_reported_and_the_next_task_resumes(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    await slot.run("before the crash")
    mock_api.on(Reply("never", delay=SLOW), prompt="doomed", times=1)
    task = asyncio.create_task(slot.run("doomed"))
    await asyncio.to_thread(mock_api.wait_for_requests, 2)
    os.kill(recorder.of(EventKind.PROCESS_STARTED)[0]["pid"], signal.SIGKILL)

    crashed = await task
    after = await slot.run("after the crash")

    assert not crashed.success
    assert "exited unexpectedly" in crashed.output
    assert "SIGKILL" in crashed.output
    assert crashed.exit_code == -signal.SIGKILL
    assert after.success, after
    restarted = recorder.of(EventKind.PROCESS_STARTED)[-1]
    assert restarted["restart"] is True
    assert restarted["resumed_session"] == crashed.session_id
    assert "before the crash" in mock_api.last_request.user_texts


# ── the spend of tasks that never got a result ────────────────────────


async def wait_for_fifo(path: Path, timeout: float = 20.0) -> bytes:
    """Wait (without polling) until something writes to the named pipe ``path``; our end is
    opened at once, so the writer never blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await readable
        return os.read(fd, 4096)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def start_task_stuck_in_a_tool(
    slot: Slot, mock_api: MockAnthropicAPI, tmp_path: Path, **fields: Any
) -> tuple[ExecutionRequest, asyncio.Task[TaskResult], int]:
    """Start a task whose first API call (``USAGE``) asks for a Bash command that signals it
    started, then sleeps; returns once the command runs (the call is complete and paid)."""
    started = tmp_path / "tool-started"
    os.mkfifo(started)
    mock_api.enqueue(
        Reply([bash(f"echo started > {started}; sleep {SLOW:g}")], usage=USAGE),
        Reply("never reached"),
    )
    fields.setdefault("config", config(permission_mode=PermissionMode.BYPASS_PERMISSIONS))
    request = slot.request("run the slow tool", **fields)
    opened = asyncio.ensure_future(wait_for_fifo(started))
    task = asyncio.create_task(slot.execute(request))
    assert await opened == b"started\n"
    pid = slot.recorder.of(EventKind.PROCESS_STARTED)[-1]["pid"]
    return request, task, pid


async def test_a_cli_killed_mid_task_still_charges_the_api_calls_it_made(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder, tmp_path: Path
) -> None:
    """Regression: a task whose CLI died got no result event and reported a cost of 0, so the
    calls it had made were missing from the pool's spend and budget."""
    bypass = config(permission_mode=PermissionMode.BYPASS_PERMISSIONS)
    earlier = await slot.run("an earlier task in the same warm process", config=bypass)
    _, task, pid = await start_task_stuck_in_a_tool(slot, mock_api, tmp_path, config=bypass)

    os.kill(pid, signal.SIGKILL)
    result = await task

    assert earlier.success, earlier
    assert not result.success
    assert "exited unexpectedly" in result.output
    # Exactly the one completed call, priced as the CLI prices it (its final output_tokens
    # included), and not the warm process's earlier spend.
    assert result.cost_microdollars == usd_to_microdollars(expected_cost_usd(DEFAULT_MODEL, USAGE))
    assert "is an estimate" in result.output
    assert result.turns_used == 1
    assert len(recorder.of(EventKind.PROCESS_STARTED)) == 1


@pytest.mark.parametrize("stop", ["timeout", "cancel"])
async def test_a_cli_that_ignores_the_interrupt_is_killed_and_its_calls_are_still_charged(
    stop: str,
    claude_bin: Path,
    cli_env: dict[str, str],
    cli_cwd: Path,
    mock_api: MockAnthropicAPI,
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    executor = ClaudeCliExecutor(
        claude_bin,
        env=cli_env,
        work_dir=tmp_path / "executor",
        interrupt_grace_secs=0.5,
        terminate_grace_secs=0.5,
    )
    slot = Slot(executor, cli_cwd, recorder)
    try:
        # Long enough for the CLI to start and make its first call, even on a busy machine.
        timeout = {"timeout_secs": 5.0} if stop == "timeout" else {}
        request, task, pid = await start_task_stuck_in_a_tool(slot, mock_api, tmp_path, **timeout)
        # A stopped CLI cannot answer the interrupt (nor SIGTERM): only SIGKILL ends it.
        os.kill(pid, signal.SIGSTOP)
        if stop == "cancel":
            request.cancel.set()
        result = await task
    finally:
        await executor.aclose()

    assert not result.success
    expected = "timed out after 5s" if stop == "timeout" else "cancelled while running"
    assert result.output.startswith(expected)
    assert result.cost_microdollars == usd_to_microdollars(expected_cost_usd(DEFAULT_MODEL, USAGE))
    assert "is an estimate" in result.output
    assert gone(pid)
    assert group_empty(pid)


# ── API errors ────────────────────────────────────────────────────────


async def test_bad_credentials_fail_fast_with_a_clear_message(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.fail(401, times=1000)

    # The CLI would retry a 401 for minutes; the executor must not wait for the timeout.
    result = await slot.run("hello", timeout_secs=25)

    assert not result.success
    assert result.output == AUTH_FAILED_MESSAGE
    assert gone(recorder.of(EventKind.PROCESS_STARTED)[0]["pid"])


async def test_rate_limit_retries_are_surfaced_as_api_retry_events(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder
) -> None:
    mock_api.fail(429, times=2, retry_after=0)

    result = await slot.run("hello")

    assert result.success, result
    retries = recorder.of(EventKind.API_RETRY)
    assert [r["status"] for r in retries] == [429, 429]
    assert [r["attempt"] for r in retries] == [1, 2]


async def test_a_request_the_api_refuses_fails_saying_so_not_success(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    # Regression: the CLI reports a 400 as subtype "success" with is_error, and the task
    # failed as "Claude Code stopped with success: ...".
    mock_api.fail(400, times=5, message="prompt is too long")

    result = await slot.run("hello")

    assert not result.success
    assert result.output.startswith("the API refused the request (HTTP 400): ")
    assert "success" not in result.output


async def test_a_task_timed_out_in_an_api_error_storm_says_what_the_api_did(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    # Regression: it said only "timed out after 4s".
    mock_api.fail(529, times=1000)

    result = await slot.run("hello", timeout_secs=4)

    assert not result.success
    assert result.output.startswith("timed out after 4s; the API kept failing while it ran: ")
    assert "HTTP 529" in result.output
    assert "retries in all" in result.output or "1 retry in all" in result.output
    assert "next retry announced in" in result.output


async def test_budget_exceeded_is_reported(slot: Slot, mock_api: MockAnthropicAPI) -> None:
    mock_api.default = Reply("pricey", usage=Usage(input_tokens=100_000, output_tokens=10_000))

    result = await slot.run("spend", config=config(max_budget_usd=0.01))

    assert not result.success
    assert result.budget_exceeded
    assert result.cost_microdollars > 10_000


# ── results ───────────────────────────────────────────────────────────


async def test_structured_output_is_returned_as_json(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    mock_api.enqueue(Reply([structured({"answer": 42})]))

    result = await slot.run("answer", config=config(json_schema=schema))

    assert result.success, result
    assert json.loads(result.output) == {"answer": 42}


async def test_the_model_is_the_one_that_actually_served_the_task(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    mock_api.default = Reply("from another model", model="claude-haiku-4-5")

    result = await slot.run("hello")

    assert mock_api.last_request.model == DEFAULT_MODEL
    assert result.model == "claude-haiku-4-5"


async def test_a_denied_tool_is_named_with_how_to_allow_it(
    slot: Slot, mock_api: MockAnthropicAPI, recorder: Recorder, cli_cwd: Path
) -> None:
    mock_api.enqueue(Reply([bash(f"touch {cli_cwd}/made")]), Reply("could not do it"))

    result = await slot.run("make a file", config=config(permission_mode=PermissionMode.DEFAULT))

    assert not (cli_cwd / "made").exists()
    assert "'Bash'" in result.output
    assert "allowed_tools=['Bash']" in result.output
    assert recorder.of(EventKind.PERMISSION_DENIED)[0]["tool"] == "Bash"


async def test_a_multi_megabyte_result_line_is_read_whole(
    slot: Slot, mock_api: MockAnthropicAPI
) -> None:
    big = "0123456789abcdef" * 150_000  # 2.4 MB
    mock_api.default = Reply([big])

    result = await slot.run("big", mode=SlotMode.EPHEMERAL, one_off=True)

    assert result.success, result
    assert result.output == big


async def test_mcp_servers_come_from_a_slot_owned_config_file(
    slot: Slot,
    executor: ClaudeCliExecutor,
    mock_api: MockAnthropicAPI,
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    server = tmp_path / "shout_server.py"
    server.write_text(
        textwrap.dedent(
            """
            from mcp.server.mcpserver import MCPServer

            app = MCPServer("shout")

            @app.tool()
            def shout(text: str) -> str:
                return text.upper() + "!"

            app.run("stdio")
            """
        )
    )
    servers = {"shout": {"command": sys.executable, "args": [str(server)]}}
    mock_api.enqueue(
        Reply([mcp_tool("shout", "shout", {"text": "hey"})]),
        lambda request: Reply(f"tool said {request.tool_result_text()}"),
    )

    result = await slot.run(
        "call it",
        config=config(
            mcp_servers=servers,
            allowed_tools=("mcp__shout__shout",),
            permission_mode=PermissionMode.DEFAULT,
        ),
    )

    assert result.success, result
    assert "HEY!" in result.output
    [server_status] = recorder.of(EventKind.SESSION)[0]["mcp_servers"]
    assert server_status["name"] == "shout"
    assert server_status["status"] == "connected"
    [config_file] = (tmp_path / "executor").glob("*/mcp-config-*.json")
    assert json.loads(config_file.read_text()) == {"mcpServers": servers}
    await executor.release_slot(SLOT)
    assert not config_file.exists()


# ── robustness ────────────────────────────────────────────────────────

FAKE_CLI = """\
#!{python}
import json, sys
if "--version" in sys.argv:
    print("2.1.330 (Claude Code)")
    sys.exit(0)
line = sys.stdin.readline()
for event in (
    {{"type": "hologram", "payload": [1, 2, 3]}},
    {{"type": "system", "subtype": "brand_new_subtype"}},
    "not json at all",
    {{"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
      "result": "survived", "session_id": "s-1", "total_cost_usd": 0.01}},
):
    print(event if isinstance(event, str) else json.dumps(event), flush=True)
sys.stdin.read()
"""


async def test_unknown_event_types_are_skipped(tmp_path: Path, recorder: Recorder) -> None:
    fake = tmp_path / "claude"
    fake.write_text(FAKE_CLI.format(python=sys.executable))
    fake.chmod(0o755)
    executor = ClaudeCliExecutor(fake, work_dir=tmp_path / "executor")
    try:
        request = ExecutionRequest(TaskId("t"), SLOT, "hi", config(), tmp_path)
        result = await executor.execute(request, recorder)
    finally:
        await executor.aclose()

    assert result.success, result
    assert result.output == "survived"
    assert result.cost_microdollars == 10_000


async def test_a_missing_cli_gives_a_clear_failure(tmp_path: Path) -> None:
    executor = ClaudeCliExecutor(tmp_path / "no-such-claude")
    request = ExecutionRequest(TaskId("t"), SLOT, "hi", config(), tmp_path)

    result = await executor.execute(request)

    assert not result.success
    assert "Claude Code CLI was not found" in result.output


async def test_a_too_old_cli_gives_a_clear_failure(tmp_path: Path) -> None:
    fake = tmp_path / "claude"
    fake.write_text(f"#!{sys.executable}\nprint('1.0.3 (Claude Code)')\n")
    fake.chmod(0o755)
    executor = ClaudeCliExecutor(fake)
    request = ExecutionRequest(TaskId("t"), SLOT, "hi", config(), tmp_path)

    result = await executor.execute(request)

    assert not result.success
    assert "version 1.0.3" in result.output


async def test_check_reports_the_cli_version(executor: ClaudeCliExecutor) -> None:
    assert await executor.check() == "2.1.330"


# ── no orphans ────────────────────────────────────────────────────────


async def test_aclose_ends_running_and_idle_processes(
    executor: ClaudeCliExecutor,
    mock_api: MockAnthropicAPI,
    claude_bin: Path,
    cli_home: Path,
    cli_cwd: Path,
    recorder: Recorder,
) -> None:
    idle = Slot(executor, cli_cwd, recorder)
    await idle.run("warm me up")
    mock_api.on(Reply("never", delay=SLOW), prompt="hang")
    busy = Slot(executor, cli_cwd, Recorder(), SlotId("slot-b"))
    running = asyncio.create_task(busy.run("hang"))
    await asyncio.to_thread(mock_api.wait_for_requests, 2)
    assert len(claude_processes(claude_bin, cli_home)) == 2

    await executor.aclose()
    result = await running

    assert not result.success
    assert claude_processes(claude_bin, cli_home) == []


POOL_SCRIPT = """\
import asyncio, sys
from pathlib import Path
from claude_pool.config import EffectiveConfig
from claude_pool.executor import ClaudeCliExecutor, EventKind, ExecutionRequest
from claude_pool.types import SlotId, TaskId

def on_event(event):
    if event.kind is EventKind.PROCESS_STARTED:
        print(event.data["pid"], flush=True)

async def main():
    executor = ClaudeCliExecutor(sys.argv[1])
    request = ExecutionRequest(
        TaskId("t"), SlotId("s"), "hang", EffectiveConfig(model=sys.argv[2]), Path.cwd()
    )
    await executor.execute(request, on_event)

asyncio.run(main())
"""


async def test_no_cli_process_outlives_a_killed_pool_process(
    claude_bin: Path,
    cli_env: dict[str, str],
    cli_home: Path,
    cli_cwd: Path,
    mock_api: MockAnthropicAPI,
    tmp_path: Path,
) -> None:
    mock_api.default = Reply("never", delay=SLOW)
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    before = claude_processes(claude_bin, cli_home)
    pool = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(claude_bin),
        DEFAULT_MODEL,
        cwd=cli_cwd,
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert pool.stdout is not None
        pid = int(await pool.stdout.readline())
        await asyncio.to_thread(mock_api.wait_for_requests, 1)
        assert claude_processes(claude_bin, cli_home) == [*before, pid]

        pool.kill()
        await pool.wait()

        await wait_gone(pid, timeout=10)
        assert claude_processes(claude_bin, cli_home) == before
    finally:
        if pool.returncode is None:
            pool.kill()
            await pool.wait()

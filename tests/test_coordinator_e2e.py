"""The real Claude Code CLI as the coordinator: it calls `claude-pool serve` over MCP (stdio),
and the pool's slots, real CLIs too, do the work. One mock API serves both: requests whose
prompt is the coordinator's get the coordinator's script, the slots' prompts get theirs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from claude_pool.testing.claude_cli import run_print
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    mcp_tool,
)

pytestmark = pytest.mark.cli

SERVER = "claude-pool"
COORDINATOR_PROMPT = "COORDINATOR: hand the three greetings to the pool and report back."
SLOT_ANSWERS = {
    "slot task: greet in French": "bonjour from a slot",
    "slot task: greet in Spanish": "hola from a slot",
    "slot task: greet in German": "hallo from a slot",
}
TOOLS = ("pool_submit", "pool_result", "pool_fan_out", "pool_status")


class Coordinator:
    """The coordinator model: each turn reads the last tool result and makes the next call."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self.available: list[str] = []

    def __call__(self, request: MockRequest) -> Reply:
        if not request.tool_results:
            self.available = request.available_tool_names
            prompt = next(iter(SLOT_ANSWERS))
            return Reply([mcp_tool(SERVER, "pool_submit", {"prompt": prompt})])
        data = _json(request.tool_result_text())
        if request.tool_results[0].get("is_error"):
            return Reply(f"a tool failed: {request.tool_result_text()}")
        step = len(self.seen)
        if step == 0:
            self.seen["submitted"] = data
            args = {"task_id": data["task_id"], "wait": True, "timeout_secs": 60}
            return Reply([mcp_tool(SERVER, "pool_result", args)])
        if step == 1:
            self.seen["result"] = data
            prompts = list(SLOT_ANSWERS)[1:]
            return Reply([mcp_tool(SERVER, "pool_fan_out", {"prompts": prompts})])
        if step == 2:
            self.seen["fan_out"] = data
            return Reply([mcp_tool(SERVER, "pool_status", {})])
        self.seen["status"] = data
        outputs = [self.seen["result"]["result"]["output"]] + [
            item["result"]["output"] for item in self.seen["fan_out"]["items"]
        ]
        spent = data["spend_microdollars"]
        return Reply(
            f"Report: the pool answered {' | '.join(outputs)}; "
            f"{len(data['slots'])} slots, {spent} microdollars spent."
        )


def _json(text: str) -> Any:
    value = json.loads(text)
    # MCPServer tools returning a model come back as its JSON; plain values are wrapped.
    return value.get("result", value) if isinstance(value, dict) and len(value) == 1 else value


def test_claude_code_coordinates_a_pool_through_the_mcp_server(
    claude_bin: Path,
    mock_api: MockAnthropicAPI,
    cli_env: dict[str, str],
    cli_cwd: Path,
    tmp_path: Path,
) -> None:
    coordinator = Coordinator()
    mock_api.on(coordinator, prompt=COORDINATOR_PROMPT)
    for prompt, answer in SLOT_ANSWERS.items():
        mock_api.on(Reply(answer), prompt=prompt)
    slots_work = tmp_path / "slots"
    slots_work.mkdir()
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)}
    server = {
        "command": sys.executable,
        "args": [
            "-m",
            "claude_pool.cli",
            "serve",
            "--store",
            str(tmp_path / "pool.db"),
            "--slots",
            "2",
            "--model",
            DEFAULT_MODEL,
            "--task-timeout",
            "60",
            "--cwd",
            str(slots_work),
        ],
        "env": {"CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)},
    }
    mcp_config = tmp_path / "mcp.json"
    mcp_config.write_text(json.dumps({"mcpServers": {SERVER: server}}))

    run = run_print(
        claude_bin,
        [
            "--model",
            DEFAULT_MODEL,
            "--mcp-config",
            str(mcp_config),
            "--strict-mcp-config",
            "--allowedTools",
            ",".join(f"mcp__{SERVER}__{tool}" for tool in TOOLS),
            "--",
            COORDINATOR_PROMPT,
        ],
        env=env,
        cwd=cli_cwd,
        timeout=90,
    )

    final = run.result
    assert final["is_error"] is False, (final, run.stderr[-2000:])
    [init] = run.of_type("system", "init")
    assert {"name": SERVER, "status": "connected"}.items() <= init["mcp_servers"][0].items()
    assert set(TOOLS) <= {name.rsplit("__", 1)[-1] for name in coordinator.available}
    for answer in SLOT_ANSWERS.values():
        assert answer in final["result"]
    assert "2 slots" in final["result"]
    assert coordinator.seen["result"]["state"] == "completed"
    assert coordinator.seen["fan_out"]["succeeded"] == 2
    status = coordinator.seen["status"]
    assert status["tasks"] == {"completed": 3}
    assert status["spend_microdollars"] > 0
    # Three slot tasks and five coordinator turns (four tool calls, then the answer).
    prompts = [request.prompt for request in mock_api.main_requests]
    assert sorted(p for p in prompts if p in SLOT_ANSWERS) == sorted(SLOT_ANSWERS)
    assert prompts.count(COORDINATOR_PROMPT) == 5

"""The real Claude Code CLI against the mock Anthropic API: the facts the executor relies on."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from claude_pool.testing.claude_cli import CliRun
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    ErrorReply,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    Usage,
    bash,
    expected_cost_usd,
    mcp_tool,
    structured,
)

pytestmark = pytest.mark.cli

RunClaudeFn = Callable[..., CliRun]

MODEL = ["--model", DEFAULT_MODEL]


def test_plain_prompt_returns_scripted_text_and_cost(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_input_tokens=5000)
    mock_api.on(Reply("Hello from the mock", usage=usage), prompt="say hello")

    run = run_claude(*MODEL, "--", "please say hello")

    result = run.result
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["result"] == "Hello from the mock"
    assert result["num_turns"] == 1
    # 1000 * $3 + 200 * $15 + 5000 * $0.30 per million tokens
    assert result["total_cost_usd"] == pytest.approx(0.0075)
    assert result["total_cost_usd"] == pytest.approx(expected_cost_usd(DEFAULT_MODEL, usage))
    assert list(result["modelUsage"]) == [DEFAULT_MODEL]
    [request] = mock_api.requests
    assert request.path == "/v1/messages"
    assert request.query == "beta=true"
    assert request.stream is True
    assert request.model == DEFAULT_MODEL
    assert request.prompt == "please say hello"
    assert {"Bash", "Read", "Write", "Edit"} <= set(request.tool_names)


def test_bash_tool_call_runs_when_permissions_are_bypassed(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn, cli_cwd: Path
) -> None:
    mock_api.on(Reply([bash("echo made > marker.txt")]), tool_result=False)
    mock_api.on(Reply("file written"), tool_result=True)

    run = run_claude(*MODEL, "--permission-mode", "bypassPermissions", "--", "make a file")

    assert (cli_cwd / "marker.txt").read_text() == "made\n"
    assert run.result["result"] == "file written"
    assert run.result["num_turns"] == 2
    assert run.result["permission_denials"] == []
    tool_result = mock_api.last_request.tool_results[0]
    assert tool_result["is_error"] is False


def test_bash_tool_call_is_denied_without_permission(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn, cli_cwd: Path
) -> None:
    mock_api.enqueue(Reply([bash("touch denied.txt", id="toolu_denied")]), Reply("gave up"))

    run = run_claude(*MODEL, "--permission-mode", "dontAsk", "--", "make a file")

    assert not (cli_cwd / "denied.txt").exists()
    assert run.result["permission_denials"] == [
        {
            "tool_name": "Bash",
            "tool_use_id": "toolu_denied",
            "tool_input": {"command": "touch denied.txt"},
        }
    ]
    assert mock_api.last_request.tool_results[0]["is_error"] is True


def test_resume_continues_the_conversation(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    mock_api.on(Reply("the secret word is plum"), prompt="remember")
    mock_api.on(Reply("you said plum"), prompt="what was it")

    first = run_claude(*MODEL, "--", "remember the secret word")
    session_id = first.result["session_id"]
    second = run_claude(*MODEL, "--resume", session_id, "--", "what was it?")

    assert second.result["result"] == "you said plum"
    assert second.result["session_id"] == session_id
    request = mock_api.last_request
    assert request.user_texts == ["remember the secret word", "what was it?"]
    assistant = [m for m in request.messages if m["role"] == "assistant"]
    assert [b["text"] for b in assistant[0]["content"]] == ["the secret word is plum"]


MCP_SERVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from mcp.server.mcpserver import MCPServer

    server = MCPServer("marker")
    marker = Path(sys.argv[1])

    @server.tool()
    def touch_marker(text: str) -> str:
        \"\"\"Write text to the marker file.\"\"\"
        marker.write_text(text)
        return f"marker written: {text}"

    server.run()
    """
)


def test_mcp_server_tool_is_called(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn, tmp_path: Path
) -> None:
    script = tmp_path / "marker_server.py"
    script.write_text(MCP_SERVER)
    marker = tmp_path / "marker.txt"
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "marker": {"command": sys.executable, "args": [str(script), str(marker)]}
                }
            }
        )
    )
    mock_api.on(Reply([mcp_tool("marker", "touch_marker", {"text": "hi"})]), tool_result=False)
    mock_api.on(lambda r: Reply(f"tool said: {r.tool_result_text()}"), tool_result=True)

    run = run_claude(
        *MODEL,
        "--mcp-config",
        str(config),
        "--strict-mcp-config",
        "--allowedTools",
        "mcp__marker__touch_marker",
        "--",
        "call the marker tool",
    )

    assert marker.read_text() == "hi"
    # The MCP 2.x server returns structured content, which the CLI passes on as JSON text.
    assert run.result["result"] == 'tool said: {"result":"marker written: hi"}'
    # MCP tools are deferred: named in a reminder, not listed in `tools`.
    assert "mcp__marker__touch_marker" in mock_api.requests[0].deferred_tool_names
    assert "mcp__marker__touch_marker" in mock_api.requests[0].available_tool_names
    assert "mcp__marker__touch_marker" not in mock_api.requests[0].tool_names


def test_json_schema_yields_structured_output(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    mock_api.on(Reply([structured({"answer": 42})]), tool_result=False)
    mock_api.on(Reply("done"), tool_result=True)

    run = run_claude(*MODEL, "--json-schema", json.dumps(schema), "--", "answer")

    assert run.result["subtype"] == "success"
    assert run.result["structured_output"] == {"answer": 42}
    tool = next(t for t in mock_api.requests[0].tools if t["name"] == "StructuredOutput")
    assert tool["input_schema"] == schema


def test_max_turns_ends_with_error_max_turns(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    mock_api.default = Reply([bash("true")])

    run = run_claude(
        *MODEL, "--max-turns", "1", "--permission-mode", "bypassPermissions", "--", "loop"
    )

    assert run.result["subtype"] == "error_max_turns"
    assert run.result["is_error"] is True
    assert len(mock_api.main_requests) == 1


def test_max_budget_ends_with_error_max_budget_usd(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    expensive = Usage(input_tokens=100_000, output_tokens=10_000)  # $0.45 per call
    mock_api.default = Reply([bash("true")], usage=expensive)

    run = run_claude(
        *MODEL,
        "--max-budget-usd",
        "0.5",
        "--permission-mode",
        "bypassPermissions",
        "--",
        "spend",
    )

    assert run.result["subtype"] == "error_max_budget_usd"
    assert run.result["is_error"] is True
    calls = len(mock_api.main_requests)
    assert calls == 2  # the second call crosses the cap
    expected = expected_cost_usd(DEFAULT_MODEL, [expensive] * calls)
    assert run.result["total_cost_usd"] == pytest.approx(expected)


def test_rate_limit_produces_api_retry_events(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    mock_api.fail(429, times=1, retry_after=0)
    mock_api.default = Reply("after the retry")

    run = run_claude(*MODEL, "--", "hi")

    [retry] = run.of_type("system", "api_retry")
    assert retry["error_status"] == 429
    assert retry["attempt"] == 1
    assert run.result["result"] == "after the retry"
    statuses = [
        r.reply.status if isinstance(r.reply, ErrorReply) else 200 for r in mock_api.requests
    ]
    assert statuses == [429, 200]


def _read_until_result(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    events: list[dict[str, Any]] = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["type"] == "result":
            return events
    raise AssertionError(f"the CLI exited before a result: {events[-3:]}")


def test_warm_stream_json_process_answers_three_prompts(
    mock_api: MockAnthropicAPI, claude_bin: Path, cli_env: dict[str, str], cli_cwd: Path
) -> None:
    def echo(request: MockRequest) -> Reply:
        return Reply(f"echo {request.prompt}")

    mock_api.on(echo)
    command = [
        str(claude_bin),
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        *MODEL,
    ]
    with subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cli_cwd,
        env=cli_env,
    ) as proc:
        assert proc.stdin is not None
        try:
            results = []
            for prompt in ["one", "two", "three"]:
                message = {"type": "user", "message": {"role": "user", "content": prompt}}
                proc.stdin.write(json.dumps(message) + "\n")
                proc.stdin.flush()
                results.append(_read_until_result(proc)[-1])
            proc.stdin.close()
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()

    assert [r["result"] for r in results] == ["echo one", "echo two", "echo three"]
    assert len({r["session_id"] for r in results}) == 1
    # The cost is cumulative for the process.
    assert [r["total_cost_usd"] for r in results] == pytest.approx(
        [expected_cost_usd(DEFAULT_MODEL, [Usage()] * n) for n in (1, 2, 3)]
    )
    assert [len(r.messages) for r in mock_api.main_requests] == [1, 3, 5]
    assert mock_api.last_request.user_texts == ["one", "two", "three"]


def test_a_message_s_final_output_tokens_are_only_in_its_message_delta_stream_event(
    mock_api: MockAnthropicAPI, run_claude: RunClaudeFn
) -> None:
    """What the executor prices a task without a result from (``claude_pool.pricing``)."""
    usage = Usage(input_tokens=1000, output_tokens=300, cache_read_input_tokens=50)
    mock_api.enqueue(Reply(["first block", "second block"], usage=usage))

    run = run_claude(*MODEL, "--include-partial-messages", "--", "two blocks")

    assistants = run.of_type("assistant")
    # One event per content block, same message id, each with the message_start usage.
    assert len(assistants) == 2
    assert len({a["message"]["id"] for a in assistants}) == 1
    assert {a["message"]["usage"]["output_tokens"] for a in assistants} == {1}
    assert assistants[0]["message"]["usage"]["input_tokens"] == 1000
    deltas = [e for e in run.of_type("stream_event") if e["event"]["type"] == "message_delta"]
    assert [d["event"]["usage"]["output_tokens"] for d in deltas] == [300]
    assert deltas[0]["api_message_id"] == assistants[0]["message"]["id"]
    assert run.result["total_cost_usd"] == pytest.approx(expected_cost_usd(DEFAULT_MODEL, usage))

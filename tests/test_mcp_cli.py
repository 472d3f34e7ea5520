"""``claude-pool serve``: its refusals, and the whole path over stdio with the real Claude Code
CLI against the mock Anthropic API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import TextResourceContents
from typer.testing import CliRunner, Result

from claude_pool.cli import EXIT_USAGE, app
from claude_pool.config import load_settings
from claude_pool.errors import ConfigError
from claude_pool.testing.mock_api import DEFAULT_MODEL, MockAnthropicAPI, Reply

WAIT = 60.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


def test_serve_refuses_a_non_loopback_address_without_a_token() -> None:
    run = CliRunner().invoke(app, ["serve", "--http", "--host", "0.0.0.0", "--store", ":memory:"])
    assert run.exit_code == EXIT_USAGE
    assert "needs a bearer token" in run.output
    assert "--token" in run.output


def test_serve_refuses_an_mcp_config_file_that_is_not_json(tmp_path: Path) -> None:
    config = tmp_path / "servers.json"
    config.write_text("{not json")
    run = CliRunner().invoke(app, ["serve", "--store", ":memory:", "--mcp-config", str(config)])
    assert run.exit_code == EXIT_USAGE
    assert "not valid JSON" in run.output


def test_serve_refuses_settings_that_do_not_fit(tmp_path: Path) -> None:
    run = CliRunner().invoke(
        app, ["serve", "--store", ":memory:", "--slots", "5", "--max-slots", "2"]
    )
    assert run.exit_code == EXIT_USAGE
    assert "slots" in run.output


def serve_run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["serve", "--store", ":memory:", *args], env=env)


def test_serve_takes_http_and_host_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text('http = true\nhost = "0.0.0.0"\nport = 9000\n')
    run = serve_run("--config", str(config))
    assert run.exit_code == EXIT_USAGE
    assert "needs a bearer token" in run.output


def test_serve_takes_http_and_host_from_the_environment() -> None:
    run = serve_run(env={"CLAUDE_POOL_HTTP": "true", "CLAUDE_POOL_HOST": "0.0.0.0"})
    assert run.exit_code == EXIT_USAGE
    assert "needs a bearer token" in run.output


def test_serve_refuses_tokens_in_a_config_file_without_repeating_them(tmp_path: Path) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text('tokens = ["s3cret-t0ken"]\n')
    run = serve_run("--config", str(config))
    assert run.exit_code == EXIT_USAGE
    assert "CLAUDE_POOL_TOKENS" in run.output
    assert "s3cret-t0ken" not in run.output


def test_serve_passes_its_pool_flags_to_the_settings() -> None:
    run = serve_run("--recovery", "retry", "--drain-grace", "5", "--max-restarts", "2")
    assert run.exit_code == EXIT_USAGE
    assert "recovery" in run.output
    assert "from argument recovery" in run.output


def test_http_settings_come_from_file_then_environment_then_arguments(tmp_path: Path) -> None:
    config = tmp_path / "claude-pool.toml"
    config.write_text('http = true\nhost = "0.0.0.0"\nport = 9000\n')
    env = {"CLAUDE_POOL_PORT": "9001", "CLAUDE_POOL_TOKENS": "t0ken-a, t0ken-b t0ken-c"}
    from_env = load_settings(config, env=env)
    flags = load_settings(config, env=env, http=False, host="::1", tokens=["mine"])
    assert (from_env.http, from_env.host, from_env.port) == (True, "0.0.0.0", 9001)
    assert [t.get_secret_value() for t in from_env.tokens] == ["t0ken-a", "t0ken-b", "t0ken-c"]
    assert "t0ken" not in repr(from_env)
    assert (flags.http, flags.host, flags.port) == (False, "::1", 9001)
    assert [t.get_secret_value() for t in flags.tokens] == ["mine"]
    with pytest.raises(ConfigError, match="port"):
        load_settings(env={"CLAUDE_POOL_PORT": "70000"})


@pytest.mark.cli
async def test_serve_over_stdio_runs_tasks_on_the_real_cli_with_the_flags_given(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("pong from the mock"), prompt="ping")
    servers = tmp_path / "servers.json"
    servers.write_text(json.dumps({"mcpServers": {}}))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **cli_env,
        "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin),
        "CLAUDE_POOL_TOKENS": "only-for-http",
    }
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "claude_pool.cli",
            "serve",
            "--store",
            ":memory:",
            "--slots",
            "3",
            "--max-slots",
            "5",
            "--budget-usd",
            "2.5",
            "--model",
            DEFAULT_MODEL,
            "--mcp-config",
            str(servers),
            "--task-timeout",
            "45",
            "--cwd",
            str(work),
        ],
        env=env,
        cwd=str(tmp_path),
    )
    async with Client(params, mode="legacy") as client:
        status = await call(client, "pool_status")
        outcome = await call(client, "pool_run", prompt="ping")
        budget = await client.read_resource("pool://budget")
    assert len(status["slots"]) == 3
    assert status["budget_microdollars"] == 2_500_000
    assert outcome["state"] == "completed", outcome
    assert outcome["result"]["output"] == "pong from the mock"
    assert outcome["result"]["cost_microdollars"] > 0
    [request] = mock_api.main_requests
    assert request.model == DEFAULT_MODEL
    [content] = budget.contents
    assert isinstance(content, TextResourceContents)
    assert json.loads(content.text)["spend_microdollars"] == outcome["result"]["cost_microdollars"]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await asyncio.wait_for(client.call_tool(tool, arguments), WAIT)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


@pytest.mark.cli
def test_sigterm_stops_an_http_server_after_draining_the_pool(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin), "COLUMNS": "200"}
    command = [sys.executable, "-m", "claude_pool.cli", "serve", "--http", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--store", ":memory:", "--token", "t0ken"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first_line = process.stderr.readline()  # the server logs where it listens, then waits
        assert f"127.0.0.1:{port}/mcp" in first_line
        assert "bearer token required" in first_line
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "claude-pool serve stopped: 0 task(s) finished" in err
    assert out == ""


def test_an_error_naming_a_long_path_is_printed_on_one_line(tmp_path: Path) -> None:
    # Regression: the error console hard-wrapped at 80 columns when stderr was not a terminal,
    # so a long temporary path split the message ("not\nvalid JSON").
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 8)
    deep.mkdir(parents=True)
    config = deep / "servers.json"
    config.write_text("{not json")
    run = CliRunner().invoke(app, ["serve", "--store", ":memory:", "--mcp-config", str(config)])
    assert run.exit_code == EXIT_USAGE
    lines = [line for line in run.output.splitlines() if "error" in line]
    assert len(lines) == 1
    assert f"the MCP config file {config} is not valid JSON" in lines[0]


def serve_process(
    *args: str, env: dict[str, str], cwd: Path, stdin: int | None = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "claude_pool.cli", "serve", *args],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--token", ""], "a bearer token is empty"),
        (["--token-file", "missing.txt"], "cannot read the token file missing.txt"),
        (["--token-file", "empty.txt"], "the token file empty.txt holds no token"),
    ],
)
def test_serve_refuses_empty_or_unreadable_tokens_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Regression: `serve --http --host 0.0.0.0 --token ''` died with a raw traceback."""
    (tmp_path / "empty.txt").write_text("\n \n")
    process = serve_process("--http", "--store", ":memory:", *args, env={**os.environ},
                            cwd=tmp_path)  # fmt: skip
    out, err = process.communicate(timeout=WAIT)
    assert process.returncode == EXIT_USAGE, err
    assert message in err
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.cli
def test_serve_takes_its_tokens_from_a_file_and_logs_json_lines(
    claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("first-t0ken\nsecond-t0ken\n")
    port = free_port()
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)}
    process = serve_process(
        "--http", "--port", str(port), "--store", ":memory:", "--token-file", str(tokens),
        "--log-format", "json", env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        listening = json.loads(process.stderr.readline())
        assert f"127.0.0.1:{port}/mcp" in listening["message"]
        assert "bearer token required" in listening["message"]
        assert listening["level"] == "WARNING"
        assert listening["logger"] == "claude_pool.web.server"
        url = f"http://127.0.0.1:{port}/mcp"
        headers = {"accept": "application/json, text/event-stream"}
        bearer = {"authorization": "Bearer second-t0ken"}
        with httpx.Client(timeout=WAIT) as http:
            refused = http.post(url, json=INITIALIZE, headers=headers)
            accepted = http.post(url, json=INITIALIZE, headers={**headers, **bearer})
            # The REST API beside /mcp keeps the same tokens.
            api = f"http://127.0.0.1:{port}/api/v1/status"
            api_refused = http.get(api)
            api_accepted = http.get(api, headers=bearer)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (refused.status_code, accepted.status_code) == (401, 200)
    assert (api_refused.status_code, api_accepted.status_code) == (401, 200)
    assert api_accepted.json()["slots"]
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    assert any(line["message"].startswith("claude-pool serve stopped:") for line in lines)
    assert "t0ken" not in err
    assert out == ""


@pytest.mark.cli
async def test_a_server_with_no_slots_queues_for_a_worker_on_its_store(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("run by the worker"), prompt="who runs this")
    store = str(tmp_path / "pool.db")
    env = {**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin), "CLAUDE_POOL_MODEL": DEFAULT_MODEL}
    refused = serve_process("--slots", "0", "--min-slots", "1", "--store", store, env=env,
                            cwd=tmp_path)  # fmt: skip
    _, why = refused.communicate(timeout=WAIT)
    assert refused.returncode == EXIT_USAGE
    assert "slots=0: must be within scaling.min_slots..max_slots (1..16)" in why
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "claude_pool.cli", "serve", "--slots", "0", "--store", store],
        env=env,
        cwd=str(tmp_path),
    )
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "claude_pool.cli", "worker", "--slots", "1", "--store", store,
        env=env, cwd=tmp_path, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with Client(params, mode="legacy") as client:
            status = await call(client, "pool_status")
            outcome = await call(client, "pool_run", prompt="who runs this")
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), WAIT)
    assert status["slots"] == []
    assert outcome["state"] == "completed", outcome
    assert outcome["result"]["output"] == "run by the worker"

"""The README's examples work: its Python example runs against the real CLI and the mock API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool.testing.claude_cli import run_print
from claude_pool.testing.mock_api import MockAnthropicAPI, MockRequest, Reply, tool_use

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)


def run_example(
    index: int, claude_bin: Path, cli_env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run the README's ``index``-th Python block as a script against the mock API."""
    script = tmp_path / f"example_{index}.py"
    script.write_text(code_blocks("python")[index])
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run


@pytest.mark.cli
def test_the_readme_python_example_runs_and_prints_its_results(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("Hello, how are you today?"), prompt="Say hello in five words.")
    mock_api.on(Reply("Seven."), prompt="Name a prime number.")
    mock_api.on(Reply("Teal."), prompt="Name a colour.")
    run = run_example(0, claude_bin, cli_env, tmp_path)
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"Hello, how are you today\? \(\$0\.\d{4}, 1 turns\)", lines[0])
    assert lines[1:] == ["ok Seven.", "ok Teal."]
    assert len(mock_api.main_requests) == 3


@pytest.mark.cli
def test_the_readme_chain_example_runs_its_three_steps(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply('{"risks": ["data loss", "downtime"]}'), prompt="List the risks")
    mock_api.on(Reply("Back up first."), prompt="How do we avoid: data loss?")
    mock_api.on(Reply("Back up, then migrate."), prompt="Summarise in one line: Back up first.")
    run = run_example(2, claude_bin, cli_env, tmp_path)
    lines = run.stdout.splitlines()
    assert lines[:3] == [
        'plan completed {"risks": ["data loss", "downtime"]}',
        "mitigate completed Back up first.",
        "summary completed Back up, then migrate.",
    ]
    assert re.fullmatch(r"completed \$0\.\d{4}", lines[3])


@pytest.mark.cli
def test_the_readme_events_example_prints_what_happened(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("Hello!"), prompt="Say hello.")
    run = run_example(1, claude_bin, cli_env, tmp_path)
    lines = run.stdout.splitlines()
    task_lines = lines[next(i for i, line in enumerate(lines) if line.startswith("queued")) :]
    assert task_lines[0] == "queued: Say hello."
    assert task_lines[1].startswith("claimed by slot ")
    assert task_lines[2].startswith("started on slot ")
    assert "Hello!" in task_lines
    finished = [line for line in task_lines if line.startswith("completed on slot ")]
    assert len(finished) == 1
    assert re.fullmatch(
        r"completed on slot slot-\w+ \(\$0\.\d{4}, 1 turns, \d+\.\ds\)", finished[0]
    )


@pytest.mark.cli
def test_claude_code_connects_to_claude_pool_with_the_readmes_mcp_json(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    configs = [json.loads(block) for block in code_blocks("json")]
    [stdio] = [c for c in configs if c["mcpServers"]["claude-pool"].get("command") == "claude-pool"]
    [http] = [c for c in configs if "url" in c["mcpServers"]["claude-pool"]]
    assert http["mcpServers"]["claude-pool"]["url"].endswith("/mcp")
    (tmp_path / ".mcp.json").write_text(json.dumps(stdio))
    # `claude-pool` as installed next to this Python; the server inherits the CLI's env.
    scripts = Path(sys.executable).parent
    assert (scripts / "claude-pool").is_file()
    env = {
        **cli_env,
        "PATH": f"{scripts}{os.pathsep}{cli_env.get('PATH', '')}",
        "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin),
    }
    run = run_print(
        claude_bin,
        ["--mcp-config", str(tmp_path / ".mcp.json"), "--", "which tools do you have?"],
        env=env,
        cwd=tmp_path,
    )
    [init] = run.of_type("system", "init")
    [server] = init["mcp_servers"]
    assert (server["name"], server["status"]) == ("claude-pool", "connected"), server
    offered = mock_api.main_requests[0].available_tool_names
    assert "mcp__claude-pool__pool_fan_out" in offered
    assert "mcp__claude-pool__pool_submit" in offered


def test_the_readmes_uvx_and_pipx_configs_start_the_same_server_from_a_checkout() -> None:
    servers = [json.loads(block)["mcpServers"]["claude-pool"] for block in code_blocks("json")]
    by_command = {server.get("command"): server.get("args") for server in servers}
    serve = by_command["claude-pool"]
    assert by_command["uvx"] == ["--from", "/path/to/claude-pool", "claude-pool", *serve]
    assert by_command["pipx"] == ["run", "--spec", "/path/to/claude-pool", "claude-pool", *serve]
    # The commands that warm each tool's environment use the same source.
    text = README.read_text()
    assert "uvx --from /path/to/claude-pool claude-pool install-cli" in text
    assert "pipx run --spec /path/to/claude-pool claude-pool install-cli" in text


def _writes(name: str, content: str) -> Callable[[MockRequest], Reply]:
    """A reply that has Claude Code write ``name`` in its working directory."""

    def reply(request: MockRequest) -> Reply:
        found = re.search(r"Primary working directory: ([^\s\\]+)", json.dumps(request.body))
        assert found is not None, "the CLI named no working directory"
        path = f"{found[1]}/{name}"
        return Reply([tool_use("Write", {"file_path": path, "content": content})])

    return reply


@pytest.mark.cli
def test_the_readme_team_example_implements_in_two_slots_verifies_and_merges(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                              capture_output=True, text=True)  # fmt: skip
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    git("config", "user.name", "Test")
    git("config", "user.email", "test@example.com")
    (tmp_path / "Makefile").write_text("test:\n\t@echo 3 passed\n")
    # The example script and the CLI's home (tests' own files) are not the project's.
    (tmp_path / ".gitignore").write_text("example_*.py\nhome/\n")
    git("add", "Makefile", ".gitignore")
    git("commit", "-q", "-m", "initial")
    mock_api.on(Reply("Endpoint added."), prompt="/users endpoint", tool_result=True)
    mock_api.on(_writes("api.py", "ROUTES = ['/users']\n"), prompt="/users endpoint")
    mock_api.on(Reply("Command added."), prompt="users command", tool_result=True)
    mock_api.on(_writes("cli.py", "COMMANDS = ['users']\n"), prompt="users command")
    run = run_example(3, claude_bin, cli_env, tmp_path)
    assert run.stdout.splitlines() == [
        "completed (1 checked)",
        "completed (1 checked)",
        "merged 2 branch(es) into main",
    ]
    assert (tmp_path / "api.py").read_text() == "ROUTES = ['/users']\n"
    assert (tmp_path / "cli.py").read_text() == "COMMANDS = ['users']\n"
    assert git("status", "--porcelain") == ""

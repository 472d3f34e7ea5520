"""``claude-pool install-cli``: the pinned Claude Code CLI, installed with npm into the cache.

npm here is a stand-in on PATH that lays out what the real one does (``node_modules/.bin/claude``
under ``--prefix``) and logs its arguments; tests/test_packaging.py runs the real npm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from claude_pool.cli import EXIT_OK, EXIT_TASK_FAILED, app
from claude_pool.testing.claude_cli import CLAUDE_CODE_VERSION

FAKE_NPM = """\
#!{python}
import pathlib, sys
with open({log!r}, "a") as log:
    print(*sys.argv[1:], file=log)
prefix = pathlib.Path(sys.argv[sys.argv.index("--prefix") + 1])
{body}
"""
LAYS_OUT_THE_PINNED_CLI = f"""\
claude = prefix / "node_modules" / ".bin" / "claude"
claude.parent.mkdir(parents=True)
claude.write_text('#!/bin/sh\\necho "{CLAUDE_CODE_VERSION} (Claude Code)"\\n')
claude.chmod(0o755)
"""


class Machine:
    """A PATH holding only what the test puts there, and a cache directory."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.cache = root / "cache"
        self.npm_log = root / "npm.log"

    def npm(self, body: str = LAYS_OUT_THE_PINNED_CLI) -> None:
        script = self.bin / "npm"
        script.write_text(FAKE_NPM.format(python=sys.executable, log=str(self.npm_log), body=body))
        script.chmod(0o755)

    def claude_on_path(self, version: str) -> Path:
        script = self.bin / "claude"
        script.write_text(f'#!/bin/sh\necho "{version} (Claude Code)"\n')
        script.chmod(0o755)
        return script

    def npm_calls(self) -> list[str]:
        return self.npm_log.read_text().splitlines() if self.npm_log.exists() else []

    def install_cli(self, *args: str) -> Result:
        env = {
            "PATH": str(self.bin),
            "CLAUDE_POOL_CACHE_DIR": str(self.cache),
            "CLAUDE_POOL_CLAUDE_BIN": None,
            "COLUMNS": "200",
        }
        return CliRunner().invoke(app, ["install-cli", *args], env=env)


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def report(run: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run.stdout)
    return data


def test_install_cli_installs_the_pinned_cli_with_npm_into_the_cache(machine: Machine) -> None:
    machine.npm()
    run = machine.install_cli("--json")
    assert run.exit_code == EXIT_OK, run.output
    found = report(run)
    install_dir = machine.cache / "claude-cli"
    assert found == {
        "ok": True,
        "version": CLAUDE_CODE_VERSION,
        "path": str(install_dir / "node_modules" / ".bin" / "claude"),
        "install_dir": str(install_dir),
        "already_installed": False,
        "pools_use": found["path"],
    }
    assert machine.npm_calls() == [
        f"install --no-audit --no-fund --prefix {install_dir} "
        f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"
    ]


def test_install_cli_does_nothing_when_the_pinned_cli_is_already_there(machine: Machine) -> None:
    machine.npm()
    assert machine.install_cli().exit_code == EXIT_OK
    run = machine.install_cli()
    assert run.exit_code == EXIT_OK
    assert f"claude {CLAUDE_CODE_VERSION} is already installed at {machine.cache}" in run.output
    assert len(machine.npm_calls()) == 1


def test_install_cli_without_npm_says_to_install_node_js(machine: Machine) -> None:
    run = machine.install_cli()
    assert run.exit_code == EXIT_TASK_FAILED
    assert "npm is needed to install @anthropic-ai/claude-code" in run.stderr
    assert "install Node.js" in run.stderr
    as_json = machine.install_cli("--json")
    assert as_json.exit_code == EXIT_TASK_FAILED
    assert report(as_json)["ok"] is False
    assert "npm is needed" in report(as_json)["error"]


def test_install_cli_reports_what_a_failing_npm_said(machine: Machine) -> None:
    machine.npm(body='print("npm error 404 Not Found", file=sys.stderr)\nsys.exit(1)')
    run = machine.install_cli()
    assert run.exit_code == EXIT_TASK_FAILED
    assert "failed with exit code 1" in run.stderr
    assert "npm error 404 Not Found" in run.stderr


def test_install_cli_says_when_pools_would_run_another_claude_first(machine: Machine) -> None:
    machine.npm()
    other = machine.claude_on_path("2.99.0")
    run = machine.install_cli()
    assert run.exit_code == EXIT_OK
    assert f"note: pools run {other} first (from PATH)" in run.output
    assert f"CLAUDE_POOL_CLAUDE_BIN={machine.cache / 'claude-cli'}" in run.output

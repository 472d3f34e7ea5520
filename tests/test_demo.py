"""``claude-pool demo`` from a fresh shell with no API key: real CLIs against the built-in mock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from claude_pool.cli import EXIT_USAGE, app


@pytest.mark.cli
def test_demo_runs_to_completion_on_the_mock_api_without_a_key(
    claude_bin: Path, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_POOL_")) and k != "CLAUDECODE"
    }
    env |= {"CLAUDE_POOL_CLAUDE_BIN": str(claude_bin), "COLUMNS": "160", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "claude_pool.cli", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, out + run.stderr
    assert "mock API" in out
    for line in ("1/3 fan-out", "2/3 chain", "3/3 review gate", "session_metrics"):
        assert line in out
    for file in ("inventory.py", "pricing.py", "report.py"):
        assert f"✓ review {file}" in out
    # Pool.chain ran both steps; the mock writes the commit message only when the second
    # prompt carries the first step's output.
    assert "✓ chain · find-bug" in out
    assert "✓ chain · commit-message" in out
    assert "Pool.chain ran 2 steps (completed" in out
    assert "Fix shared mutable default in add_item" in out
    # The review gate: the first attempt was sent back, the second approved, and the file the
    # slot wrote with the CLI's Write tool has the line the feedback asked for.
    assert "rejecting with feedback" in out
    assert "✓ attempt 2 (held for review)" in out
    assert "approved" in out
    assert "Next steps: fix the mutable default" in out
    spend = re.search(r"spend: \$(\d+\.\d+) of the \$1\.00 budget", out)
    assert spend is not None
    assert 0 < float(spend[1]) < 1
    assert re.search(r"│\s+6 │\s+6 │\s+0 │", out), "6 tasks, 6 completed, 0 failed"
    assert "every task succeeded" in out
    project = re.search(r"project (\S+) \(inventory\.py", out)
    assert project is not None
    assert not Path(project[1]).exists(), "the demo removes its temporary project"


def test_demo_without_a_claude_cli_says_how_to_get_one(tmp_path: Path) -> None:
    run = CliRunner().invoke(
        app, ["demo", "--mock"], env={"CLAUDE_POOL_CLAUDE_BIN": str(tmp_path / "missing")}
    )
    assert run.exit_code == EXIT_USAGE
    assert "no Claude Code CLI found" in run.output
    assert "run `claude-pool install-cli`" in run.output

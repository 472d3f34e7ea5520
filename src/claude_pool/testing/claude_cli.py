"""Run the pinned Claude Code CLI offline against the mock API (for tests and the demo).

:func:`ensure_claude` finds the pinned CLI (see :mod:`claude_pool.executor.locate`), installing
it as ``claude-pool install-cli`` does if none is found.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_pool.executor.locate import (
    CLAUDE_CODE_VERSION,
    cache_dir,
    claude_version,
    clean_env,
    ensure_claude,
    find_claude,
    install_claude,
)

MOCK_API_KEY = "sk-ant-mock-0000000000000000"

__all__ = [
    "CLAUDE_CODE_VERSION",
    "MOCK_API_KEY",
    "CliRun",
    "cache_dir",
    "claude_version",
    "ensure_claude",
    "find_claude",
    "install_claude",
    "mock_cli_env",
    "run_print",
]


def mock_cli_env(
    base_url: str,
    home: Path,
    *,
    extra: Mapping[str, str] | None = None,
    parent: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for running the CLI against the mock API at ``base_url`` with HOME ``home``.

    Starts from ``parent`` (default: this process's environment) without any ``ANTHROPIC_*`` /
    ``CLAUDE_CODE_*`` variable or the markers of a parent Claude session, then points the CLI at
    the mock with a fake key and turns off everything that would reach the network.
    """
    env = clean_env(os.environ if parent is None else parent)
    env.update(
        {
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": MOCK_API_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            # `--permission-mode bypassPermissions` is refused as root unless this is set.
            "IS_SANDBOX": "1",
        }
    )
    env.pop("XDG_CONFIG_HOME", None)
    env.update(extra or {})
    return env


@dataclass
class CliRun:
    """A finished ``claude -p`` run: exit code, stderr and the stream-json events it printed."""

    returncode: int
    events: list[dict[str, Any]]
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        """The last ``result`` event; ``AssertionError`` (with stderr) if there is none."""
        results = self.of_type("result")
        if not results:
            raise AssertionError(
                f"the CLI printed no result event (exit code {self.returncode}); "
                f"stderr:\n{self.stderr[-4000:]}"
            )
        return results[-1]

    def of_type(self, type_: str, subtype: str | None = None) -> list[dict[str, Any]]:
        """The events of this type (and subtype)."""
        return [
            e
            for e in self.events
            if e.get("type") == type_ and (subtype is None or e.get("subtype") == subtype)
        ]


def run_print(
    binary: Path,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    input: str | None = None,
    timeout: float = 30.0,
) -> CliRun:
    """Run ``binary -p --output-format stream-json --verbose *args`` and parse its events.

    ``subprocess.TimeoutExpired`` if it runs longer than ``timeout``; ``ValueError`` if a
    stdout line is not JSON.
    """
    command = [str(binary), "-p", "--output-format", "stream-json", "--verbose", *args]
    proc = subprocess.run(
        command,
        input=input or "",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(env),
        timeout=timeout,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return CliRun(proc.returncode, events, proc.stderr)

"""The scripts in examples/ run as they are, against the real CLI and the mock API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from claude_pool.testing.mock_api import MockAnthropicAPI, Reply, error

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, claude_bin: Path, cli_env: dict[str, str], tmp_path: Path) -> list[str]:
    """Run ``examples/<name>`` as a script against the mock API; returns its stdout lines."""
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,
        env={**cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_every_example_is_run_by_a_test() -> None:
    tested = set(re.findall(r'run_example\(\s*"(\w+\.py)"', Path(__file__).read_text()))
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


@pytest.mark.cli
def test_the_quickstart_runs_a_task_and_reports_its_cost(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("It holds work until a worker is free."), prompt="what is a task queue")
    lines = run_example("quickstart.py", claude_bin, cli_env, tmp_path)
    assert lines[0] == "It holds work until a worker is free."
    assert re.fullmatch(r"succeeded: \$0\.\d{4}, 1 turn\(s\), \d+\.\d s", lines[1])
    assert re.fullmatch(r"the pool spent \$0\.\d{4} of its \$0\.50", lines[2])
    assert [r.model for r in mock_api.main_requests] == ["claude-haiku-4-5"]


@pytest.mark.cli
def test_the_fan_out_example_reports_a_failed_prompt_beside_the_others(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("13"), prompt="Name a prime number")
    mock_api.on(error(400, message="refused by the mock"), prompt="Name a colour")
    mock_api.on(Reply("Mars"), prompt="Name a planet")
    lines = run_example("fan_out.py", claude_bin, cli_env, tmp_path)
    finished = sorted(line for line in lines if line.startswith("  finished: "))
    assert finished == [
        "  finished: #0 (ok)",
        "  finished: #1 (failed)",
        "  finished: #2 (ok)",
    ]
    results = [line for line in lines if not line.startswith(" ")]
    assert results[0] == "#0 ok: 13"
    assert results[1].startswith("#1 failed (failed): the API refused the request (HTTP 400)")
    assert results[2:] == ["#2 ok: Mars", "2 of 3 succeeded"]


@pytest.mark.cli
def test_the_review_gate_example_rejects_once_then_approves(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The second attempt's prompt carries the feedback, so its rule comes first.
    mock_api.on(Reply("People in a queue / waiting"), prompt="Use the word 'queue'")
    mock_api.on(Reply("Silent line of folk"), prompt="Write a haiku about waiting in line.")
    lines = run_example("review_gate.py", claude_bin, cli_env, tmp_path)
    assert lines[:6] == [
        "attempt 1:",
        "Silent line of folk",
        "rejected: Use the word 'queue' in it.",
        "attempt 2:",
        "People in a queue / waiting",
        "approved",
    ]
    assert re.fullmatch(r"task-\w+: completed", lines[6])
    assert len(mock_api.main_requests) == 2


@pytest.mark.cli
def test_the_chain_example_passes_each_steps_output_on(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply('{"name": "insertion sort"}'), prompt="Pick a small")
    mock_api.on(Reply("It inserts each item in place."), prompt="Explain insertion sort to")
    mock_api.on(
        Reply("Sorting by hand"),
        prompt="Give this explanation a title: It inserts each item in place.",
    )
    lines = run_example("chain.py", claude_bin, cli_env, tmp_path)
    assert lines[:3] == [
        'pick (completed): {"name": "insertion sort"}',
        "explain (completed): It inserts each item in place.",
        "title (completed): Sorting by hand",
    ]
    assert re.fullmatch(r"chain completed, \$0\.\d{4}", lines[3])


@pytest.mark.cli
def test_the_events_example_shows_events_live_then_replays_the_log(
    claude_bin: Path, mock_api: MockAnthropicAPI, cli_env: dict[str, str], tmp_path: Path
) -> None:
    mock_api.on(Reply("Hello!"), prompt="Say hello.")
    mock_api.on(Reply("Goodbye!"), prompt="Say goodbye.")
    lines = run_example("watch_events.py", claude_bin, cli_env, tmp_path)
    live = [line.split(" ", 3)[3] for line in lines if line.startswith("live ")]
    queued = [line for line in live if " queued: " in line]
    assert [line.split(": ", 1)[1] for line in queued] == ["Say hello.", "Say goodbye."]
    finished_live = [line for line in lines if line.startswith("live ") and " completed " in line]
    replayed = [line for line in lines if line.startswith("replay ")]
    assert len(finished_live) == 2
    # The replay shows the same events, under the same numbers, from the store's log.
    assert [line.removeprefix("replay ") for line in replayed] == [
        line.removeprefix("live   ") for line in finished_live
    ]

"""`claude-pool skills`, `claude-pool workflow`, `claude-pool auto` and `claude-pool route`.

Managing skills is checked in-process (typer's runner, a temporary project and HOME); running
them goes through real `claude-pool` processes on the real Claude Code CLI against the mock API.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from claude_pool.cli import EXIT_NOT_FOUND, EXIT_USAGE, app
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    STRUCTURED_OUTPUT_TOOL,
    MockAnthropicAPI,
    Reply,
    structured,
)

EXPLAIN = """\
---
name: explain
description: Explain code to a given reader.
arguments:
  - {name: path, description: File to explain, required: true}
  - {name: reader, description: Who reads it}
overrides:
  permission_mode: dontAsk
  allowed_tools: [Read, Grep]
---
Explain {path}.
Write for: {reader}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("CLAUDE_POOL_CWD", "CLAUDE_POOL_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(work)
    return work


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ── managing skills (in-process) ──────────────────────────────────────


def test_skills_list_shows_builtins_and_filters_by_scope(project: Path) -> None:
    listed = as_json(invoke("skills", "list", "--json"))
    coordinator = as_json(invoke("skills", "list", "--scope", "coordinator", "--json"))
    table = invoke("skills", "list")
    names = [s["name"] for s in listed["skills"]]
    assert {"code-review", "implement", "summarize", "pre-push"} <= set(names)
    assert {s["source"] for s in listed["skills"]} == {"builtin"}
    assert {s["scope"] for s in coordinator["skills"]} == {"coordinator"}
    assert "code-review" in table.stdout


def test_skills_list_shows_a_description_literally_never_as_markup(project: Path) -> None:
    skill = project / ".claude-pool" / "skills" / "marked" / "SKILL.md"
    skill.parent.mkdir(parents=True)
    skill.write_text("---\nname: marked\ndescription: Say [b]x[/b].\n---\nSay x.\n")
    table = invoke("skills", "list", "--source", "project")
    assert table.exit_code == 0, table.output
    assert "Say [b]x[/b]." in table.stdout


def test_skills_show_prints_the_skill_and_its_origin(project: Path) -> None:
    shown = as_json(invoke("skills", "show", "code-review", "--json"))
    text = invoke("skills", "show", "code-review")
    missing = invoke("skills", "show", "code-reveiw")
    assert shown["source"] == "builtin"
    assert "{target}" in shown["body"]
    assert shown["markdown"].startswith("---\nname: code-review")
    assert text.stdout.startswith("---\nname: code-review")
    assert missing.exit_code == EXIT_NOT_FOUND
    assert "code-review" in missing.stderr


def test_skills_add_writes_a_project_skill_that_then_lists_and_can_be_removed(
    project: Path, tmp_path: Path
) -> None:
    source = tmp_path / "explain.md"
    source.write_text(EXPLAIN)
    added = as_json(invoke("skills", "add", str(source), "--json"))
    target = project / ".claude-pool" / "skills" / "explain" / "SKILL.md"
    assert added == {"name": "explain", "action": "added", "path": str(target)}
    assert target.read_text() == EXPLAIN
    again = invoke("skills", "add", str(source))
    assert again.exit_code == EXIT_USAGE
    assert "already exists" in again.stderr
    listed = as_json(invoke("skills", "list", "--source", "project", "--json"))
    assert [s["name"] for s in listed["skills"]] == ["explain"]
    removed = as_json(invoke("skills", "remove", "explain", "--json"))
    assert removed["action"] == "removed"
    assert not target.parent.exists()
    builtin = invoke("skills", "remove", "code-review")
    assert builtin.exit_code == EXIT_NOT_FOUND
    assert "builtin" in builtin.stderr


def test_skills_add_from_stdin_to_the_global_directory_and_refuses_bad_skills(
    project: Path,
) -> None:
    added = as_json(invoke("skills", "add", "-", "--global", "--json", input=EXPLAIN))
    assert added["path"] == str(Path.home() / ".claude-pool" / "skills" / "explain" / "SKILL.md")
    shown = as_json(invoke("skills", "show", "explain", "--json"))
    assert shown["source"] == "global"
    bad = invoke("skills", "add", "-", input="no front matter")
    assert bad.exit_code == EXIT_USAGE
    assert "front matter" in bad.stderr


def test_skills_eject_and_save_copy_skills_where_they_win(project: Path) -> None:
    ejected = as_json(invoke("skills", "eject", "pre-push", "--json"))
    assert ejected["path"] == str(project / ".claude-pool" / "skills" / "pre-push" / "SKILL.md")
    shown = as_json(invoke("skills", "show", "pre-push", "--json"))
    assert shown["source"] == "project"
    assert shown["shadows"] == ["builtin"]
    twice = invoke("skills", "eject", "pre-push")
    assert twice.exit_code == EXIT_USAGE
    saved = as_json(invoke("skills", "save", "pre-push", "--global", "--json"))
    assert Path(saved["path"]).is_file()
    shown = as_json(invoke("skills", "show", "pre-push", "--json"))
    assert shown["shadows"] == ["builtin", "global"]


def test_skills_run_refuses_bad_arguments_before_running_anything(project: Path) -> None:
    missing = invoke("skills", "run", "code-review", "--store", ":memory:")
    coordinator = invoke("skills", "run", "pool-dashboard", "--store", ":memory:")
    unknown = invoke("skills", "run", "nope", "--store", ":memory:")
    assert missing.exit_code == EXIT_USAGE
    assert "missing required argument(s) target" in missing.stderr
    assert coordinator.exit_code == EXIT_USAGE
    assert "coordinator skill" in coordinator.stderr
    assert unknown.exit_code == EXIT_NOT_FOUND


def test_workflow_list_and_bad_parameters(project: Path) -> None:
    listed = as_json(invoke("workflow", "list", "--json"))
    missing = invoke("workflow", "run", "review-and-fix", "--store", ":memory:")
    not_kv = invoke("workflow", "run", "review-and-fix", "src", "--store", ":memory:")
    unknown = invoke("workflow", "run", "nope", "--store", ":memory:")
    assert {"issue-to-pr", "refactor-and-test", "review-and-fix"} <= {w["name"] for w in listed}
    assert missing.exit_code == EXIT_USAGE
    assert "missing required parameter(s) target" in missing.stderr
    assert not_kv.exit_code == EXIT_USAGE
    assert unknown.exit_code == EXIT_NOT_FOUND


# ── running (real CLI against the mock API) ──────────────────────────

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(cli_env: dict[str, str], claude_bin: Path, cli_cwd: Path, tmp_path: Path) -> Cli:
    env = {k: v for k, v in cli_env.items() if not k.startswith("CLAUDE_POOL_")}
    env["CLAUDE_POOL_CLAUDE_BIN"] = str(claude_bin)
    env["CLAUDE_POOL_MODEL"] = DEFAULT_MODEL
    db = tmp_path / "pool.db"

    def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "claude_pool.cli", *args, "--store", str(db)],
            cwd=cli_cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.mark.cli
def test_skills_run_renders_the_skill_and_runs_it_with_its_settings(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("a short summary"), prompt="Summarise: README.md")
    done = cli("skills", "run", "summarize", "target=README.md", "audience=a newcomer", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["state"] == "completed"
    assert record["result"]["output"] == "a short summary"
    assert record["tags"] == ["skill:summarize"]
    assert record["config"]["permission_mode"] == "dontAsk"
    prompt = mock_api.main_requests[-1].prompt
    assert "README.md" in prompt
    assert "a newcomer" in prompt


@pytest.mark.cli
def test_workflow_run_runs_each_step_on_the_real_cli(cli: Cli, mock_api: MockAnthropicAPI) -> None:
    mock_api.on(Reply("found: an off-by-one in app.py"), prompt="What to review: app.py")
    mock_api.on(Reply("fixed the off-by-one"), prompt="Fix the critical")
    mock_api.on(Reply("all checks pass"), prompt="pre-push checks")
    done = cli(
        "workflow", "run", "review-and-fix", "target=app.py", "--isolation", "none", "--json",
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    chain = json.loads(done.stdout)
    assert chain["state"] == "completed", chain["error"]
    assert [s["name"] for s in chain["steps"]] == ["review", "fix", "checks"]
    assert [s["state"] for s in chain["steps"]] == ["completed"] * 3
    assert chain["steps"][0]["output"] == "found: an off-by-one in app.py"
    fix_prompt = next(r.prompt for r in mock_api.main_requests if "Fix the critical" in r.prompt)
    assert "found: an off-by-one in app.py" in fix_prompt
    assert chain["total_cost_microdollars"] > 0


@pytest.mark.cli
def test_auto_routes_with_one_structured_call_and_runs_the_parts(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    answer = {"kind": "parallel", "reason": "independent", "tasks": ["Review a.py", "Review b.py"]}
    mock_api.on(Reply([structured(answer)]), when=lambda r: STRUCTURED_OUTPUT_TOOL in r.tool_names)
    mock_api.on(Reply("a.py is fine"), prompt="Review a.py")
    mock_api.on(Reply("b.py is fine"), prompt="Review b.py")
    done = cli("auto", "Review a.py and b.py", "--json", timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["decision"]["kind"] == "parallel"
    assert [p["result"]["output"] for p in result["parts"]] == ["a.py is fine", "b.py is fine"]
    assert result["success"] is True


@pytest.mark.cli
def test_route_prints_the_decision_without_running_it_and_passes_the_hints(
    cli: Cli, mock_api: MockAnthropicAPI
) -> None:
    answer = {
        "kind": "chain",
        "reason": "staged",
        "steps": [
            {"name": "fix", "prompt": "Fix the bug"},
            {"name": "test", "prompt": "Test it"},
            {"name": "docs", "prompt": "Document it"},
        ],
    }
    mock_api.on(Reply([structured(answer)]), when=lambda r: STRUCTURED_OUTPUT_TOOL in r.tool_names)
    args = ["Fix the bug, test it, document it", "--domain", "Python web backend"]
    done = cli("route", *args, "--max-steps", "2", "--prefer", "chain", "--json")
    shown = cli("route", *args)
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert decision["kind"] == "chain"
    assert [s["name"] for s in decision["steps"]] == ["fix", "test-to-docs"]
    assert decision["adjustments"]
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("chain: staged")
    assert "Fix the bug" in shown.stdout
    prompts = [r.prompt for r in mock_api.main_requests]
    assert len(prompts) == 2  # the two routing calls: nothing was run
    assert "Domain of the work: Python web backend" in prompts[0]
    assert 'prefers "chain"' in prompts[0]
    assert "  2 steps." in prompts[0]


def test_route_and_auto_refuse_an_empty_request_and_out_of_range_hints(project: Path) -> None:
    empty = invoke("route", "  ", "--store", ":memory:")
    too_many = invoke("auto", "x", "--max-parallel", "101", "--store", ":memory:")
    no_steps = invoke("route", "x", "--max-steps", "0", "--store", ":memory:")
    assert empty.exit_code == EXIT_USAGE
    assert "request is empty" in empty.output
    assert too_many.exit_code == EXIT_USAGE
    assert no_steps.exit_code == EXIT_USAGE


@pytest.mark.cli
def test_skills_run_gives_extra_words_to_the_last_argument(
    cli: Cli, cli_cwd: Path, mock_api: MockAnthropicAPI
) -> None:
    skills = cli_cwd / ".claude-pool" / "skills"
    skills.mkdir(parents=True)
    (skills / "pair.md").write_text(
        "---\nname: pair\ndescription: Two things.\narguments:\n  - {name: a, required: true}\n"
        "  - {name: b, required: true}\n---\nFirst {a}; then {b}.\n"
    )
    done = cli("skills", "run", "pair", "x", "y", "z", "--json")
    assert done.returncode == 0, done.stderr
    assert mock_api.main_requests[-1].prompt.startswith("First x; then y z.")

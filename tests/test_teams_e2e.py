"""Teams of tasks end to end: the real Claude Code CLI against the mock Anthropic API, in git
worktrees where the work happens in one."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_pool import PermissionMode, Pool, TaskFilter, TaskOverrides, TaskState
from claude_pool.merging import RESOLVE_TAG
from claude_pool.store import SqliteStore
from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    read,
    write,
)

pytestmark = pytest.mark.cli

PoolFactory = Callable[..., Pool]

CHECK = 'test -f checked || { touch checked; echo "FAILED test_total: expected 3, got 2"; exit 1; }'
"""Fails the first time it runs in a directory (saying why), passes after."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(cli_cwd: Path) -> Path:
    """The CLI's working directory as a git repository with one commit."""
    git(cli_cwd, "init", "-q", "-b", "main")
    git(cli_cwd, "config", "user.name", "Test")
    git(cli_cwd, "config", "user.email", "test@example.com")
    (cli_cwd / "total.py").write_text("TOTAL = 2\n")
    git(cli_cwd, "add", "total.py")
    git(cli_cwd, "commit", "-q", "-m", "initial")
    return cli_cwd.resolve()


async def test_a_verification_that_fails_once_reruns_the_task_once_in_its_conversation(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    # Rules are tried in order; the re-run's prompt holds the first one's too.
    mock_api.on(Reply("now the test passes"), prompt="FAILED test_total")
    mock_api.on(Reply("fixed the total"), prompt="fix the total")
    async with make_pool(slots=1, worktree_isolation=True) as pool:
        task = await pool.submit("fix the total", verify=CHECK)
        record = await pool.wait(task, timeout=60)
        slot = pool.slots[0].id
    assert record.state is TaskState.COMPLETED, record.result
    assert record.result is not None
    assert record.result.output == "now the test passes"
    assert [(c.passed, c.exit_code) for c in record.result.verifications] == [(False, 1), (True, 0)]
    first, rerun = mock_api.main_requests
    assert first.prompt == "fix the total"
    assert "FAILED test_total: expected 3, got 2" in rerun.prompt
    assert "attempt 2 of 3" in rerun.prompt
    # The same conversation: the re-run's request carries the first exchange.
    assert "fix the total" in rerun.user_texts[0]
    assert len(rerun.messages) > len(first.messages)
    # It ran in the slot's worktree, not in the repository the pool was opened in.
    # (Closing the pool committed what the worktree held onto the slot's kept branch.)
    assert "checked" in git(repo, "ls-tree", "--name-only", f"claude-pool/{slot}").split()
    assert not (repo / "checked").exists()


async def test_a_plan_approved_is_carried_out_in_the_same_session_in_the_tasks_own_mode(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI
) -> None:
    mock_api.on(Reply("Done: added the cache."), prompt="Your plan was approved")
    mock_api.on(Reply("Plan: 1. add cache.py 2. wire it in"), prompt="add a cache")
    edits = TaskOverrides(permission_mode=PermissionMode.ACCEPT_EDITS)
    async with make_pool(slots=1) as pool:
        task = await pool.submit("add a cache", edits, plan_first=True)
        held = await pool.wait(task, timeout=60)
        assert held.review_kind == "plan", held.result
        assert held.result is not None
        session = held.result.session_id
        await pool.approve(task)
        done = await pool.wait(task, timeout=60)
    assert done.state is TaskState.COMPLETED, done.result
    assert done.result is not None
    assert done.result.output == "Done: added the cache."
    assert done.result.session_id == session, "one conversation: the plan, then the work"
    planning, doing = mock_api.main_requests
    assert planning.prompt == "add a cache"
    assert doing.prompt.startswith("Your plan was approved")
    assert "Plan: 1. add cache.py" in " ".join(str(m) for m in doing.messages[:-1])
    # The CLI itself tells the model that the conversation left plan mode.
    assert "You have exited plan mode" in str(doing.messages[-1])


def _workdir(request: MockRequest) -> str:
    found = re.search(r"Primary working directory: ([^\s\\]+)", json.dumps(request.body))
    assert found is not None, "the CLI named no working directory"
    return found[1]


def writes(name: str, content: str) -> Callable[[MockRequest], Reply]:
    """A reply that writes ``content`` into a new file ``name`` of the CLI's directory."""
    return lambda request: Reply([write(f"{_workdir(request)}/{name}", content)])


def edits(name: str, content: str, answer: str) -> Callable[[MockRequest], Reply]:
    """Replies that read ``name`` in the CLI's directory (the CLI writes only files it has
    read), then write ``content`` into it, then answer."""

    def reply(request: MockRequest) -> Reply:
        path = f"{_workdir(request)}/{name}"
        turns = request.assistant_turns
        if turns == 0:
            return Reply([read(path)])
        return Reply([write(path, content)]) if turns == 1 else Reply(answer)

    return reply


SUM_CHECK = 'grep -q "SUM = 7" sum.py || { echo "FAILED: expected 7, got $(cat sum.py)"; exit 1; }'


async def test_a_merge_conflict_is_handed_to_a_slot_whose_resolution_passes_its_verification(
    make_pool: PoolFactory, mock_api: MockAnthropicAPI, repo: Path
) -> None:
    # Two slots write the same new file: merging both conflicts.
    for n in ("3", "4"):
        mock_api.on(Reply(f"Wrote {n}."), prompt=f"write the sum {n}", tool_result=True)
        mock_api.on(writes("sum.py", f"SUM = {n}\n"), prompt=f"write the sum {n}")
    # The resolving task's first try fails the check; the re-run (its prompt carries the
    # check's output) passes it. Rules are tried in order.
    mock_api.on(edits("sum.py", "SUM = 3 + 4\nSUM = 7\n", "Summed."), prompt="FAILED: expected 7")
    mock_api.on(edits("sum.py", "SUM = 3 + 4\n", "Kept both."), prompt="Resolve the merge")
    async with make_pool(slots=2, worktree_isolation=True, permission_mode="acceptEdits") as pool:
        three = await pool.submit("write the sum 3", slot=pool.slots[0].id)
        four = await pool.submit("write the sum 4", slot=pool.slots[1].id)
        for task in (three, four):
            assert (await pool.wait(task, timeout=60)).state is TaskState.COMPLETED
        report = await pool.merge([three, four], resolve_conflicts=True, verify=SUM_CHECK)
        (resolver,) = await pool.list_tasks(TaskFilter(tags=[RESOLVE_TAG]))
    assert report.conflict is None, report.message
    assert [(m.source, m.resolved_by) for m in report.merged] == [
        (three, None), (four, resolver.id),
    ]  # fmt: skip
    assert (repo / "sum.py").read_text() == "SUM = 3 + 4\nSUM = 7\n"
    assert resolver.state is TaskState.COMPLETED
    assert resolver.result is not None
    checks = [(c.passed, c.exit_code) for c in resolver.result.verifications]
    assert checks == [(False, 1), (True, 0)]
    handed = [r for r in mock_api.main_requests if "Resolve the merge conflicts" in r.prompt]
    assert "- sum.py" in handed[0].prompt
    assert "FAILED: expected 7, got" in handed[-1].prompt
    # main moved by a fast-forward; nothing is left conflicted, nor the temporary worktree.
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".git" / "MERGE_HEAD").exists()
    assert "merge-" not in git(repo, "worktree", "list")
    assert git(repo, "log", "-1", "--format=%s", "main") == (
        f"Merge {report.merged[1].branch} ({four}) into main"
    )


async def test_the_command_line_merge_hands_a_conflict_to_a_slot_of_its_own(
    make_pool: PoolFactory,
    mock_api: MockAnthropicAPI,
    repo: Path,
    claude_bin: Path,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    for n in ("3", "4"):
        mock_api.on(Reply(f"Wrote {n}."), prompt=f"write the sum {n}", tool_result=True)
        mock_api.on(writes("sum.py", f"SUM = {n}\n"), prompt=f"write the sum {n}")
    mock_api.on(edits("sum.py", "SUM = 7\n", "Summed both."), prompt="Resolve the merge")
    db = tmp_path / "pool.db"
    pool = make_pool(
        slots=2, store=SqliteStore(db), worktree_isolation=True, permission_mode="acceptEdits"
    )
    async with pool:
        three = await pool.submit("write the sum 3", slot=pool.slots[0].id)
        four = await pool.submit("write the sum 4", slot=pool.slots[1].id)
        for task in (three, four):
            assert (await pool.wait(task, timeout=60)).state is TaskState.COMPLETED
    env = {
        **cli_env, "CLAUDE_POOL_CLAUDE_BIN": str(claude_bin), "CLAUDE_POOL_MODEL": DEFAULT_MODEL,
        "CLAUDE_POOL_PERMISSION_MODE": "acceptEdits",
    }  # fmt: skip
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "claude_pool.cli", "merge", three, four, "--resolve",
         "--verify", "grep -q 'SUM = 7' sum.py", "--store", str(db), "--json"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads(run.stdout)
    assert [m["source"] for m in report["merged"]] == [three, four]
    assert report["merged"][1]["resolved_by"].startswith("task-")
    assert (repo / "sum.py").read_text() == "SUM = 7\n"
    assert git(repo, "status", "--porcelain") == ""
    assert "merge-" not in git(repo, "worktree", "list")

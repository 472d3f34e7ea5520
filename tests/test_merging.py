"""Merging kept worktree branches, with real git and the fake executor."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client

from claude_pool import Pool, PoolConfig, SlotConfig, TaskFilter, TaskResult, TaskState
from claude_pool.events import TaskQueued
from claude_pool.executor.base import ExecutionRequest
from claude_pool.mcp import build_server
from claude_pool.merging import RESOLVE_TAG
from claude_pool.store import MemoryStore, SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.web import create_app


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    (root / "shared.txt").write_text("original\n")
    git(root, "add", "shared.txt")
    git(root, "commit", "-q", "-m", "initial")
    return root.resolve()


def editor(request: ExecutionRequest) -> TaskResult:
    """``write FILE TEXT``: write TEXT into FILE of the task's directory, like an agent; a
    conflict handed over is resolved by writing both sides' lines into the conflicted file."""
    if request.prompt.startswith("Resolve the merge conflicts"):
        (name,) = re.findall(r"^- (\S+)$", request.prompt, re.MULTILINE)
        conflicted = (request.cwd / name).read_text().splitlines()
        kept = [
            line for line in conflicted if not line.startswith(("<<<<<<<", "=======", ">>>>>>>"))
        ]
        (request.cwd / name).write_text("".join(f"{line}\n" for line in kept))
        return TaskResult.success_result(f"kept both sides in {name}", 100, 1)
    if not request.prompt.startswith("write "):
        return TaskResult.success_result("nothing to do", 100, 1)
    _, name, text = request.prompt.split(" ", 2)
    (request.cwd / name).write_text(f"{text}\n")
    return TaskResult.success_result(f"wrote {name}", 100, 1)


def team(repo: Path) -> Pool:
    return Pool(
        PoolConfig(worktree_isolation=True), slots=2, store=MemoryStore(),
        executor=FakeExecutor(handler=editor), cwd=repo,
        slot_configs=[SlotConfig(name="a"), SlotConfig(name="b")],
    )  # fmt: skip


def clean(repo: Path) -> bool:
    """No changes, and no merge under way, in the user's working tree."""
    merging = (repo / ".git" / "MERGE_HEAD").exists()
    return git(repo, "status", "--porcelain") == "" and not merging


async def test_two_branches_merge_into_main_in_order_and_the_working_tree_follows(
    repo: Path,
) -> None:
    async with team(repo) as pool:
        api = await pool.submit("write api.py ROUTES = ['/users']", name="a")
        cli = await pool.submit("write cli.py COMMANDS = ['users']", name="b")
        for task in (api, cli):
            await pool.wait(task, timeout=10)
        await pool.drain()  # the slots stop: their work is committed onto their branches
        report = await pool.merge([api, cli], into="main")
    assert [m.source for m in report.merged] == [api, cli]
    assert report.skipped == []
    assert report.conflict is None
    assert report.head == git(repo, "rev-parse", "main")
    assert (repo / "api.py").read_text() == "ROUTES = ['/users']\n"
    assert (repo / "cli.py").read_text() == "COMMANDS = ['users']\n"
    assert clean(repo)
    assert git(repo, "worktree", "list").count("\n") == 0, "the temporary worktree is gone"


async def test_a_conflict_stops_the_merge_reports_it_and_leaves_main_clean(repo: Path) -> None:
    async with team(repo) as pool:
        first = await pool.submit("write shared.txt from slot a", name="a")
        second = await pool.submit("write shared.txt from slot b", name="b")
        for task in (first, second):
            await pool.wait(task, timeout=10)
        await pool.drain()
        report = await pool.merge([first, second])
    assert [m.source for m in report.merged] == [first]
    assert report.conflict is not None
    assert (report.conflict.source, report.conflict.files) == (second, ["shared.txt"])
    assert "stopped at a conflict" in report.message
    assert (repo / "shared.txt").read_text() == "from slot a\n"
    assert clean(repo)
    assert git(repo, "rev-parse", "main") == report.merged[0].commit


async def test_a_conflict_handed_to_a_slot_is_resolved_and_the_merge_goes_on(repo: Path) -> None:
    async with team(repo) as pool:
        first = await pool.submit("write shared.txt from slot a", name="a")
        second = await pool.submit("write shared.txt from slot b", name="b")
        third = await pool.submit("write notes.md after the conflict", name="b")
        for task in (first, second, third):
            await pool.wait(task, timeout=10)
        report = await pool.merge([first, second, third], resolve_conflicts=True)
        (resolver,) = await pool.list_tasks(TaskFilter(tags=[RESOLVE_TAG]))
    assert report.conflict is None, report.message
    assert [(m.source, m.resolved_by) for m in report.merged] == [
        (first, None), (second, resolver.id), (third, None),
    ]  # fmt: skip
    assert resolver.state is TaskState.COMPLETED
    assert f"branch {report.merged[1].branch} ({second}) onto main" in resolver.prompt
    assert (repo / "shared.txt").read_text() == "from slot a\nfrom slot b\n"
    assert (repo / "notes.md").exists()
    assert f"conflicts resolved by {resolver.id}" in report.message
    assert clean(repo)
    assert git(repo, "worktree", "list").count("\n") == 0


async def test_a_resolution_that_leaves_conflict_markers_is_not_taken(repo: Path) -> None:
    def lazy(request: ExecutionRequest) -> TaskResult:
        if request.prompt.startswith("Resolve"):
            return TaskResult.success_result("done (it was not)", 100, 1)
        return editor(request)

    pool = Pool(
        PoolConfig(worktree_isolation=True), slots=2, store=MemoryStore(),
        executor=FakeExecutor(handler=lazy), cwd=repo,
        slot_configs=[SlotConfig(name="a"), SlotConfig(name="b")],
    )  # fmt: skip
    async with pool:
        first = await pool.submit("write shared.txt from slot a", name="a")
        second = await pool.submit("write shared.txt from slot b", name="b")
        for task in (first, second):
            await pool.wait(task, timeout=10)
        report = await pool.merge([first, second], resolve_conflicts=True)
    assert [m.source for m in report.merged] == [first]
    assert report.conflict is not None
    assert report.conflict.resolution_task is not None
    assert report.conflict.resolution_error == "conflict markers are left in shared.txt"
    assert "did not resolve it: conflict markers are left" in report.message
    assert (repo / "shared.txt").read_text() == "from slot a\n"
    assert clean(repo)


async def test_what_cannot_be_merged_is_skipped_with_the_reason(repo: Path) -> None:
    async with team(repo) as pool:
        done = await pool.submit("write notes.md notes", name="a")
        idle = await pool.submit("say hello", name="b")
        for task in (done, idle):
            await pool.wait(task, timeout=10)
        first = await pool.merge([done, done, idle])
        again = await pool.merge([done])
    assert [m.source for m in first.merged] == [done]
    assert [s.reason for s in first.skipped] == ["listed twice", "the task changed nothing"]
    assert [s.reason for s in again.skipped] == ["already in main"]
    assert clean(repo)


async def test_a_task_merges_exactly_its_own_commits_not_its_slots_other_work(
    repo: Path,
) -> None:
    async with team(repo) as pool:
        first = await pool.run("write one.txt the first task", name="a")
        second = await pool.submit("write two.txt the second task", name="a")
        await pool.wait(second, timeout=10)
        assert first.success
        # The slot's branch holds both tasks; merging the second brings only its work.
        only_second = await pool.merge([second])
        assert [m.source for m in only_second.merged] == [second]
        assert (repo / "two.txt").exists()
        assert not (repo / "one.txt").exists(), "the earlier task's work came along"
        tasks = await pool.list_tasks()
        merged_first = await pool.merge([tasks[0].id])
        assert (repo / "one.txt").read_text() == "the first task\n"
        again = await pool.merge([second, tasks[0].id])
    assert [m.source for m in merged_first.merged] == [tasks[0].id]
    assert [s.reason for s in again.skipped] == ["already in main", "already in main"]
    assert clean(repo)


async def test_a_later_task_of_the_slot_stays_out_of_an_earlier_tasks_merge(repo: Path) -> None:
    async with team(repo) as pool:
        earlier = await pool.submit("write one.txt the first task", name="a")
        await pool.wait(earlier, timeout=10)
        later = await pool.submit("write two.txt the second task", name="a")
        await pool.wait(later, timeout=10)
        report = await pool.merge([earlier])
        record = await pool.get_task(earlier)
    assert [m.source for m in report.merged] == [earlier]
    assert (repo / "one.txt").exists()
    assert not (repo / "two.txt").exists()
    assert record.result is not None
    (commits,) = record.result.commits
    assert commits.branch.startswith("claude-pool/slot-")
    assert git(repo, "log", "--format=%s", f"{commits.base}..{commits.head}").startswith(
        f"claude-pool: task {earlier}"
    )
    assert clean(repo)


async def test_a_dirty_working_tree_on_main_is_left_alone_and_the_merge_is_named(
    repo: Path,
) -> None:
    async with team(repo) as pool:
        task = await pool.submit("write shared.txt from slot a", name="a")
        await pool.wait(task, timeout=10)
        await pool.drain()
        (repo / "shared.txt").write_text("the user's own edit\n")
        before = git(repo, "rev-parse", "main")
        report = await pool.merge([task])
    assert report.error is not None
    assert "could not be fast-forwarded" in report.error
    assert git(repo, "rev-parse", "main") == before
    assert (repo / "shared.txt").read_text() == "the user's own edit\n"
    assert not (repo / ".git" / "MERGE_HEAD").exists()


async def _two_tasks_on_a_sqlite_store(repo: Path, db: Path) -> tuple[str, str]:
    pool = Pool(
        PoolConfig(worktree_isolation=True), slots=2, store=SqliteStore(db),
        executor=FakeExecutor(handler=editor), cwd=repo,
        slot_configs=[SlotConfig(name="a"), SlotConfig(name="b")],
    )  # fmt: skip
    async with pool:
        api = await pool.submit("write api.py ROUTES = ['/users']", name="a")
        cli = await pool.submit("write cli.py COMMANDS = ['users']", name="b")
        for task in (api, cli):
            await pool.wait(task, timeout=10)
    return api, cli


async def test_the_command_line_merges_what_a_closed_pool_left_on_its_branches(
    repo: Path, tmp_path: Path
) -> None:
    db = tmp_path / "pool.db"
    api, cli = await _two_tasks_on_a_sqlite_store(repo, db)
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "claude_pool.cli", "merge", api, cli, "--into", "main",
         "--store", str(db), "--json"],
        cwd=repo, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [m["source"] for m in report["merged"]] == [api, cli]
    assert (repo / "api.py").exists()
    assert (repo / "cli.py").exists()
    assert clean(repo)


async def test_pool_merge_over_mcp_reports_what_it_merged(repo: Path, tmp_path: Path) -> None:
    db = tmp_path / "pool.db"
    api, cli = await _two_tasks_on_a_sqlite_store(repo, db)
    pool = Pool(PoolConfig(), slots=0, store=SqliteStore(db), executor=FakeExecutor(), cwd=repo)
    async with pool, Client(build_server(pool), mode="legacy") as client:
        result = await client.call_tool("pool_merge", {"ids": [api, cli]})
    report = result.structured_content
    assert report is not None
    assert [m["source"] for m in report["merged"]] == [api, cli]
    assert report["conflict"] is None
    assert clean(repo)


async def _conflicting_tasks(pool: Pool) -> tuple[str, str]:
    first = await pool.submit("write shared.txt from slot a", name="a")
    second = await pool.submit("write shared.txt from slot b", name="b")
    for task in (first, second):
        await pool.wait(task, timeout=10)
    return first, second


async def test_pool_merge_over_mcp_hands_a_conflict_to_a_slot_when_asked(repo: Path) -> None:
    async with team(repo) as pool, Client(build_server(pool), mode="legacy") as client:
        first, second = await _conflicting_tasks(pool)
        result = await client.call_tool(
            "pool_merge", {"ids": [first, second], "resolve_conflicts": True}
        )
    report = result.structured_content
    assert report is not None
    assert report["conflict"] is None, report["message"]
    assert [m["source"] for m in report["merged"]] == [first, second]
    assert report["merged"][1]["resolved_by"].startswith("task-")
    assert (repo / "shared.txt").read_text() == "from slot a\nfrom slot b\n"
    assert clean(repo)


async def test_the_rest_merge_hands_a_conflict_to_a_slot_and_its_review_gates_it(
    repo: Path,
) -> None:
    async with team(repo) as pool:
        first, second = await _conflicting_tasks(pool)
        face = create_app(pool)
        transport = httpx.ASGITransport(app=face)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            handed: asyncio.Queue[str] = asyncio.Queue()
            pool.add_listener(
                lambda e: (
                    handed.put_nowait(e.task_id or "")
                    if isinstance(e, TaskQueued) and RESOLVE_TAG in e.tags
                    else None
                )
            )
            body = {"ids": [first, second], "resolve_conflicts": True, "review": True}
            merging = asyncio.create_task(client.post("/api/v1/merge", json=body))
            # The resolution waits for its review; approving it lets the merge go on.
            held = await pool.wait(await asyncio.wait_for(handed.get(), 10), timeout=10)
            assert held.state is TaskState.PENDING_REVIEW
            assert not merging.done()
            assert (await client.post(f"/api/v1/tasks/{held.id}/approve")).status_code == 200
            answer = await asyncio.wait_for(merging, timeout=10)
        face.close()
    assert answer.status_code == 200
    report = answer.json()
    assert [m["resolved_by"] for m in report["merged"]] == [None, held.id]
    assert (repo / "shared.txt").read_text() == "from slot a\nfrom slot b\n"
    assert clean(repo)

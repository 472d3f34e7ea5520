"""Worktree isolation for slots and chains, with real git and the fake executor."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from claude_pool import Pool, PoolConfig, WorktreeError
from claude_pool.chain import ChainState
from claude_pool.executor.base import ExecutionRequest
from claude_pool.membership import this_host
from claude_pool.store import MemoryStore, SqliteStore
from claude_pool.testing.fake_executor import FakeExecutor
from claude_pool.types import SlotId, SlotRecord, TaskResult
from claude_pool.worktree import WorktreeManager

DEAD_OWNER = f"{this_host()}:999999999:dead00"
"""A worker id of this host whose process is gone (no pid is that high)."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit (and a local identity)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.com")
    (root / "shared.txt").write_text("original\n")
    git(root, "add", "shared.txt")
    git(root, "commit", "-q", "-m", "initial")
    return root.resolve()


def exists(path: str | Path | None) -> bool:
    return path is not None and Path(path).exists()


def branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--format=%(refname:short)").splitlines()


def writer(request: ExecutionRequest) -> TaskResult:
    """Write the prompt into shared.txt of the task's directory, like an editing agent."""
    (request.cwd / "shared.txt").write_text(f"{request.prompt}\n")
    return TaskResult.success_result(f"edited in {request.cwd}", 100, 1).with_session_id("s-1")


def isolated_pool(repo: Path, executor: FakeExecutor, slots: int = 2, **kwargs: Any) -> Pool:
    kwargs.setdefault("store", MemoryStore())
    return Pool(
        PoolConfig(worktree_isolation=True),
        slots=slots,
        executor=executor,
        cwd=repo,
        **kwargs,
    )


async def test_worktree_isolation_outside_a_git_repository_fails_at_open(tmp_path: Path) -> None:
    pool = isolated_pool(tmp_path, FakeExecutor())
    with pytest.raises(WorktreeError, match="not inside a git repository"):
        await pool.open()


async def test_each_slot_works_in_its_own_worktree_and_drain_keeps_unsaved_work(
    repo: Path,
) -> None:
    executor = FakeExecutor(handler=writer)
    pool = isolated_pool(repo, executor)
    await pool.open()
    paths = {s.id: Path(s.worktree_path or "") for s in pool.slots}
    assert all(p.parent == repo / ".pool-worktrees" for p in paths.values())
    assert {p.name for p in paths.values()} == set(paths)
    assert sorted(branches(repo)) == sorted(["main", *(f"claude-pool/{s}" for s in paths)])
    busy, idle = list(paths)
    await pool.run("from the busy slot", slot=busy)
    assert executor.requests[0].cwd == paths[busy]
    assert (paths[busy] / "shared.txt").read_text() == "from the busy slot\n"
    assert (repo / "shared.txt").read_text() == "original\n"
    assert git(repo, "status", "--porcelain") == ""  # the worktrees are not untracked files
    # The task's work was committed when it ended; an edit made since is not yet.
    assert git(paths[busy], "status", "--porcelain") == ""
    (paths[busy] / "later.txt").write_text("edited after the task\n")

    summary = await pool.drain()
    await pool.close()
    assert summary.kept_branches == [f"claude-pool/{busy}"]
    reports = {r.branch: r for r in summary.worktrees}
    kept = reports[f"claude-pool/{busy}"]
    assert (kept.removed, kept.saved_uncommitted, kept.unique_commits) == (True, True, 2)
    assert reports[f"claude-pool/{idle}"].branch_kept is False
    assert not any(p.exists() for p in paths.values())
    assert branches(repo) == ["claude-pool/" + busy, "main"]
    assert git(repo, "show", f"claude-pool/{busy}:shared.txt") == "from the busy slot"
    assert "uncommitted work" in git(repo, "log", "-1", "--format=%s", f"claude-pool/{busy}")


async def test_scale_down_removes_the_slot_worktree_and_its_empty_branch(repo: Path) -> None:
    async with isolated_pool(repo, FakeExecutor()) as pool:
        (removed,) = await pool.scale_down(1)
        assert removed.worktree_path is not None
        assert not exists(removed.worktree_path)
        (report,) = pool.worktree_reports
        assert report.removed
        assert not report.branch_kept
        assert f"claude-pool/{removed.id}" not in branches(repo)


async def test_commits_left_on_a_slot_branch_are_kept(repo: Path) -> None:
    def committer(request: ExecutionRequest) -> TaskResult:
        (request.cwd / "new.txt").write_text("new work\n")
        git(request.cwd, "add", "new.txt")
        git(request.cwd, "commit", "-q", "-m", "agent work")
        return TaskResult.success_result("committed", 1, 1)

    async with isolated_pool(repo, FakeExecutor(handler=committer), slots=1) as pool:
        await pool.run("commit something")
        (slot,) = pool.slots
    assert f"claude-pool/{slot.id}" in branches(repo)
    assert git(repo, "log", "-1", "--format=%s", f"claude-pool/{slot.id}") == "agent work"


async def test_an_adopted_slot_reuses_its_worktree_and_resumes_its_session(
    repo: Path, tmp_path: Path
) -> None:
    db = tmp_path / "pool.db"
    async with isolated_pool(repo, FakeExecutor(handler=writer), 1, store=SqliteStore(db)) as p:
        await p.run("first")
        (before,) = p.slots
    second = FakeExecutor(handler=writer)
    async with isolated_pool(repo, second, 1, store=SqliteStore(db)) as pool:
        (after,) = pool.slots
        await pool.run("second")
    assert after.id == before.id
    assert after.worktree_path == before.worktree_path
    (request,) = second.requests
    assert request.cwd == Path(before.worktree_path or "")
    assert request.session_id == "s-1"  # recorded in this very directory
    # The work of the first pool was kept on the branch and the worktree continued it.
    assert git(repo, "rev-list", "--count", f"claude-pool/{after.id}") == "3"


async def test_a_slot_that_moves_out_of_its_worktree_starts_a_new_session(
    repo: Path, tmp_path: Path
) -> None:
    db = tmp_path / "pool.db"
    async with isolated_pool(repo, FakeExecutor(handler=writer), 1, store=SqliteStore(db)) as p:
        await p.run("first")
    plain = FakeExecutor()
    async with Pool(PoolConfig(), slots=1, executor=plain, cwd=repo, store=SqliteStore(db)) as pool:
        await pool.run("no isolation now")
        (slot,) = pool.slots
    assert plain.requests[0].session_id is None
    assert plain.requests[0].cwd == repo
    assert slot.worktree_path is None


async def test_leftovers_of_a_crashed_pool_are_cleaned_at_open_without_losing_work(
    repo: Path,
) -> None:
    crashed = await WorktreeManager.for_directory(repo, None, DEAD_OWNER)
    dirty = await crashed.ensure("slot-dead0001")
    (dirty / "shared.txt").write_text("unsaved edit\n")
    clean = await crashed.ensure("slot-dead0002")
    async with isolated_pool(repo, FakeExecutor(), slots=1) as pool:
        reports = {r.branch: r for r in pool.worktree_reports}
        assert set(reports) == {"claude-pool/slot-dead0001", "claude-pool/slot-dead0002"}
        assert reports["claude-pool/slot-dead0001"].branch_kept
        assert reports["claude-pool/slot-dead0001"].saved_uncommitted
        assert not reports["claude-pool/slot-dead0002"].branch_kept
        assert not dirty.exists()
        assert not clean.exists()
    assert git(repo, "show", "claude-pool/slot-dead0001:shared.txt") == "unsaved edit"
    assert "claude-pool/slot-dead0002" not in branches(repo)


async def test_leftovers_under_the_old_default_directory_are_cleaned_without_losing_work(
    repo: Path,
) -> None:
    # Earlier versions put worktrees under .claude/, where Claude Code refuses edits.
    crashed = await WorktreeManager.for_directory(repo, ".claude/pool-worktrees", DEAD_OWNER)
    dirty = await crashed.ensure("slot-dead0003")
    (dirty / "shared.txt").write_text("unsaved edit under .claude\n")
    async with isolated_pool(repo, FakeExecutor(), slots=1) as pool:
        (report,) = pool.worktree_reports
        assert (report.branch, report.branch_kept) == ("claude-pool/slot-dead0003", True)
        assert not dirty.exists()
        assert Path(pool.slots[0].worktree_path or "").parent == repo / ".pool-worktrees"
    assert git(repo, "show", "claude-pool/slot-dead0003:shared.txt") == "unsaved edit under .claude"
    assert git(repo, "status", "--porcelain") == ""


async def test_worktrees_of_a_live_pool_are_left_alone(repo: Path) -> None:
    async with isolated_pool(repo, FakeExecutor(), slots=1) as first:
        (theirs,) = first.slots
        async with isolated_pool(repo, FakeExecutor(), slots=1) as second:
            (mine,) = second.slots
            assert mine.id != theirs.id
            assert not second.worktree_reports
            assert exists(theirs.worktree_path)


async def test_a_chain_worktree_with_work_is_kept_on_its_branch_and_reported(repo: Path) -> None:
    async with isolated_pool(repo, FakeExecutor(handler=writer), slots=1) as pool:
        result = await pool.chain({"steps": [{"prompt": "chain edit"}]})
    assert result.state is ChainState.COMPLETED, result.error
    branch = f"claude-pool/{result.id}"
    assert result.workdir == str(repo / ".pool-worktrees" / result.id)
    assert result.kept_branch == branch
    assert result.workdir_report is not None
    assert result.workdir_report.saved_uncommitted
    assert git(repo, "show", f"{branch}:shared.txt") == "chain edit"
    assert not exists(result.workdir)
    assert (repo / "shared.txt").read_text() == "original\n"


async def test_a_chain_that_changed_nothing_leaves_no_branch(repo: Path) -> None:
    async with Pool(
        PoolConfig(), slots=1, executor=FakeExecutor(), cwd=repo, store=MemoryStore()
    ) as pool:
        result = await pool.chain({"steps": [{"prompt": "read only"}]})
    assert result.state is ChainState.COMPLETED
    assert result.kept_branch is None
    assert result.workdir_report is not None
    assert result.workdir_report.removed
    assert branches(repo) == ["main"]


async def test_a_worktree_chain_outside_a_git_repository_fails_clearly(tmp_path: Path) -> None:
    async with Pool(
        PoolConfig(), slots=1, executor=FakeExecutor(), cwd=tmp_path, store=MemoryStore()
    ) as pool:
        result = await pool.chain({"steps": [{"prompt": "x"}]})
    assert result.state is ChainState.FAILED
    assert result.error is not None
    assert "not inside a git repository" in result.error
    assert [s.state for s in result.steps] == ["skipped"]


async def test_a_clone_chain_keeps_the_origin_url_and_brings_its_work_back(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://example.invalid/team/project.git")
    seen: list[tuple[Path, str]] = []

    def in_clone(request: ExecutionRequest) -> TaskResult:
        seen.append((request.cwd, git(request.cwd, "remote", "get-url", "origin")))
        (request.cwd / "cloned.txt").write_text("made in the clone\n")
        return TaskResult.success_result("ok", 1, 1)

    async with Pool(
        PoolConfig(),
        slots=1,
        executor=FakeExecutor(handler=in_clone),
        cwd=repo,
        store=MemoryStore(),
    ) as pool:
        result = await pool.chain({"isolation": "clone", "steps": [{"prompt": "x"}]})
    assert result.state is ChainState.COMPLETED, result.error
    ((cwd, origin),) = seen
    assert origin == "https://example.invalid/team/project.git"
    assert cwd != repo
    assert not cwd.exists()
    assert result.kept_branch == f"claude-pool/{result.id}"
    assert git(repo, "show", f"{result.kept_branch}:cloned.txt") == "made in the clone"


# ── git-ignored files ───────────────────────────────────────────────


@pytest.fixture
def ignoring_repo(repo: Path) -> Path:
    (repo / ".gitignore").write_text("*.log\nnotes/\nnode_modules/\n__pycache__/\nbuild/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore things")
    return repo


async def test_git_ignored_files_are_never_deleted_silently_the_worktree_is_kept_for_them(
    ignoring_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = await WorktreeManager.for_directory(ignoring_repo, None, "me:1:abc")
    tree = await manager.ensure("slot-a")
    (tree / "notes").mkdir()
    (tree / "notes" / "plan.md").write_text("important\n")
    (tree / "run.log").write_text("results\n")
    (tree / "node_modules").mkdir()
    (tree / "node_modules" / "dep.js").write_text("regenerable\n")
    (tree / "shared.txt").write_text("tracked edit\n")
    report = await manager.finish(tree, manager.branch_for("slot-a"), "slot a")

    assert report.kept_for_ignored
    assert not report.removed
    assert report.ignored_files == ["notes/", "run.log", "node_modules/"]  # precious ones first
    assert report.ignored_total == 3
    assert (tree / "notes" / "plan.md").read_text() == "important\n"
    assert (tree / "run.log").read_text() == "results\n"
    assert "notes/, run.log" in report.message
    assert "notes/, run.log" in caplog.text  # logged as a warning, not only reported
    assert any(r.levelname == "WARNING" for r in caplog.records)
    # The rest of the work was still committed onto the branch, which stays checked out.
    assert report.saved_uncommitted
    assert report.branch_kept
    assert git(ignoring_repo, "show", "claude-pool/slot-a:shared.txt") == "tracked edit"

    # Once the precious files are moved away, finishing it again removes it.
    (tree / "run.log").unlink()
    (tree / "notes" / "plan.md").unlink()
    (tree / "notes").rmdir()
    again = await manager.finish(tree, manager.branch_for("slot-a"), "slot a")
    assert again.removed
    assert not again.kept_for_ignored
    assert not tree.exists()


async def test_regenerable_ignored_files_go_with_the_worktree_and_are_reported(
    ignoring_repo: Path,
) -> None:
    manager = await WorktreeManager.for_directory(ignoring_repo, None, "me:1:abc")
    tree = await manager.ensure("slot-b")
    for relative in ("node_modules/dep/index.js", "pkg/__pycache__/m.cpython-311.pyc",
                     "build/out.bin"):  # fmt: skip
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text("x")
    report = await manager.finish(tree, manager.branch_for("slot-b"), "slot b")
    assert report.removed
    assert not report.kept_for_ignored
    assert report.ignored_files == ["build/", "node_modules/", "pkg/__pycache__/"]
    assert "3 git-ignored path(s), all regenerable, were deleted" in report.message
    assert "claude-pool/slot-b" not in branches(ignoring_repo)


async def test_a_long_list_of_ignored_files_is_capped_and_the_rest_counted(
    ignoring_repo: Path,
) -> None:
    manager = await WorktreeManager.for_directory(ignoring_repo, None, "me:1:abc")
    tree = await manager.ensure("slot-c")
    for i in range(25):
        (tree / f"run-{i:02}.log").write_text("x")
    report = await manager.finish(tree, manager.branch_for("slot-c"), "slot c")
    assert report.kept_for_ignored
    assert report.ignored_total == 25
    assert report.ignored_files == [f"run-{i:02}.log" for i in range(20)]
    assert "run-19.log and 5 more" in report.message


async def test_a_chain_that_leaves_ignored_notes_keeps_its_worktree_and_says_so(
    ignoring_repo: Path,
) -> None:
    def note_taker(request: ExecutionRequest) -> TaskResult:
        (request.cwd / "notes").mkdir()
        (request.cwd / "notes" / "findings.md").write_text("what I found\n")
        return TaskResult.success_result("noted", 1, 1)

    async with Pool(
        PoolConfig(), slots=1, executor=FakeExecutor(handler=note_taker), cwd=ignoring_repo,
        store=MemoryStore(),
    ) as pool:  # fmt: skip
        result = await pool.chain({"steps": [{"prompt": "take notes"}]})
    assert result.state is ChainState.COMPLETED, result.error
    report = result.workdir_report
    assert report is not None
    assert report.kept_for_ignored
    assert report.ignored_files == ["notes/"]
    assert result.workdir is not None
    assert (Path(result.workdir) / "notes" / "findings.md").read_text() == "what I found\n"


async def test_a_clone_holding_ignored_notes_is_kept(ignoring_repo: Path, tmp_path: Path) -> None:
    manager = await WorktreeManager.for_directory(ignoring_repo, None, "me:1:abc")
    clone = await manager.clone(tmp_path / "clones" / "chain-x", "chain-x")
    (clone / "debug.log").write_text("trace\n")
    report = await manager.finish_clone(clone, "chain-x", "chain x")
    assert report.kept_for_ignored
    assert not report.removed
    assert (clone / "debug.log").read_text() == "trace\n"
    assert report.ignored_files == ["debug.log"]


# ── slots left by a crashed pool ────────────────────────────────────


async def test_worktrees_of_stored_slots_a_pool_does_not_adopt_are_cleaned_without_losing_work(
    repo: Path,
) -> None:
    store = MemoryStore()
    await store.open()
    crashed = await WorktreeManager.for_directory(repo, None, DEAD_OWNER)
    ids = [SlotId(f"slot-dead000{i}") for i in range(3)]
    for slot_id in ids:
        tree = await crashed.ensure(slot_id)
        (tree / "shared.txt").write_text(f"unsaved work of {slot_id}\n")
        await store.upsert_slot(SlotRecord(id=slot_id, worktree_path=str(tree)), DEAD_OWNER)

    async with isolated_pool(repo, FakeExecutor(), slots=1, store=store) as pool:
        (adopted,) = pool.slots
        assert adopted.id in ids
        others = [i for i in ids if i != adopted.id]
        # The adopted slot continues in its worktree, work in place.
        assert (Path(adopted.worktree_path or "") / "shared.txt").read_text() == (
            f"unsaved work of {adopted.id}\n"
        )
        # The others were finished like any leftover: directory gone, work on their branches.
        reports = {r.branch: r for r in pool.worktree_reports}
        assert set(reports) == {f"claude-pool/{i}" for i in others}
        for slot_id in others:
            assert not crashed.path_for(slot_id).exists()
            assert reports[f"claude-pool/{slot_id}"].branch_kept
            assert git(repo, "show", f"claude-pool/{slot_id}:shared.txt") == (
                f"unsaved work of {slot_id}"
            )

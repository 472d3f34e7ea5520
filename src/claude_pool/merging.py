"""Merging results: the kept worktree branches of tasks and chains, into a target branch.

:func:`merge_branches` merges the branches in order in a temporary worktree of its own,
detached at the target branch, and only when every merge went through moves the target branch
there: by a fast-forward of the working tree that has it checked out (git refuses, and changes
nothing, when that working tree has changes in the way), or by a compare-and-set of the branch
ref when none has. So neither the target branch nor the user's working tree is ever left in a
conflicted state. At the first conflict it stops: that merge is aborted, the branches merged
before it still land, and the report names the conflicting branch and files; the branches after
it are reported as skipped.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from pathlib import Path

from pydantic import BaseModel, Field

from claude_pool.errors import WorktreeError
from claude_pool.worktree import run_git

log = logging.getLogger(__name__)


class MergeSource(BaseModel):
    """A branch to merge and what it holds the work of."""

    source: str
    """The task or chain id it was asked for."""
    branch: str | None = None
    """None: the source kept no branch (the reason is in ``reason``)."""
    reason: str = ""


class MergedBranch(BaseModel):
    source: str
    branch: str
    commit: str
    """The target's commit after merging it."""


class SkippedBranch(BaseModel):
    source: str
    branch: str | None = None
    reason: str


class MergeConflict(BaseModel):
    source: str
    branch: str
    files: list[str] = Field(default_factory=list)
    """Paths that conflicted."""


class MergeReport(BaseModel):
    """What ``merge`` did: merged, skipped (and why), the conflict it stopped at."""

    into: str
    merged: list[MergedBranch] = Field(default_factory=list)
    skipped: list[SkippedBranch] = Field(default_factory=list)
    conflict: MergeConflict | None = None
    head: str | None = None
    """The target branch's commit afterwards."""
    error: str | None = None
    """Why the target was not moved although merges went through (its working tree had
    changes in the way): the merged commit is named, for a fast-forward by hand."""
    message: str = ""


async def _git(cwd: Path, *args: str, check: bool = True) -> str:
    return (await run_git(*args, cwd=cwd, check=check)).stdout.strip()


async def _branch_exists(root: Path, branch: str) -> bool:
    found = await run_git(
        "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=root, check=False
    )
    return found.returncode == 0


async def _checked_out_at(root: Path, branch: str) -> Path | None:
    """The working tree that has ``branch`` checked out, if one has."""
    listing = await _git(root, "worktree", "list", "--porcelain")
    path: Path | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree ") :])
        elif line == f"branch refs/heads/{branch}" and path is not None:
            return path
    return None


async def merge_branches(root: Path, sources: list[MergeSource], into: str) -> MergeReport:
    """Merge the sources' branches into ``into`` (see the module docstring)."""
    report = MergeReport(into=into)
    ref = f"refs/heads/{into}"
    start = await run_git("rev-parse", "--verify", "--quiet", ref, cwd=root, check=False)
    if start.returncode != 0:
        raise WorktreeError(f"there is no branch {into!r} to merge into", path=str(root))
    old = start.stdout.strip()
    todo: list[MergeSource] = []
    seen: set[str] = set()
    for source in sources:
        if source.branch is None:
            report.skipped.append(SkippedBranch(source=source.source, reason=source.reason))
        elif source.branch in seen:
            report.skipped.append(
                SkippedBranch(source=source.source, branch=source.branch, reason="listed twice")
            )
        elif not await _branch_exists(root, source.branch):
            report.skipped.append(
                SkippedBranch(source=source.source, branch=source.branch, reason="no such branch")
            )
        else:
            seen.add(source.branch)
            todo.append(source)
    if not todo:
        report.head = old
        report.message = _summary(report)
        return report
    common = Path(await _git(root, "rev-parse", "--git-common-dir"))
    scratch = (root / common if not common.is_absolute() else common) / (
        f"claude-pool-merge-{secrets.token_hex(4)}"
    )
    await _git(root, "worktree", "add", "--detach", str(scratch), old)
    try:
        for index, source in enumerate(todo):
            branch = source.branch
            assert branch is not None
            where = await _checked_out_at(root, branch)
            if where is not None and await _git(where, "status", "--porcelain"):
                report.skipped.append(
                    SkippedBranch(
                        source=source.source, branch=branch,
                        reason=f"uncommitted changes in its worktree {where} (they are "
                        "committed onto the branch when the slot stops: drain the pool first)",
                    )
                )  # fmt: skip
                continue
            ahead = await _git(scratch, "rev-list", "--count", f"HEAD..{branch}")
            if ahead == "0":
                report.skipped.append(
                    SkippedBranch(source=source.source, branch=branch, reason=f"already in {into}")
                )
                continue
            merged = await run_git(
                "merge", "--no-ff", "--no-edit", "-m",
                f"Merge {branch} ({source.source}) into {into}", branch,
                cwd=scratch, check=False,
            )  # fmt: skip
            if merged.returncode == 0:
                head = await _git(scratch, "rev-parse", "HEAD")
                report.merged.append(MergedBranch(source=source.source, branch=branch, commit=head))
                continue
            files = await _git(scratch, "diff", "--name-only", "--diff-filter=U")
            await run_git("merge", "--abort", cwd=scratch, check=False)
            report.conflict = MergeConflict(
                source=source.source, branch=branch, files=files.splitlines()
            )
            for rest in todo[index + 1 :]:
                report.skipped.append(
                    SkippedBranch(
                        source=rest.source, branch=rest.branch,
                        reason=f"not tried: stopped at the conflict with {branch}",
                    )
                )  # fmt: skip
            break
        new = await _git(scratch, "rev-parse", "HEAD")
    finally:
        with contextlib.suppress(WorktreeError):
            await _git(root, "worktree", "remove", "--force", str(scratch))
    report.head = old
    if report.merged:
        await _move_target(root, into, old, new, report)
    report.message = _summary(report)
    log.info("merge into %s: %s", into, report.message)
    return report


async def _move_target(root: Path, into: str, old: str, new: str, report: MergeReport) -> None:
    """Move ``into`` from ``old`` to ``new`` (a descendant): never a conflicted state."""
    checked_out = await _checked_out_at(root, into)
    if checked_out is None:
        await _git(root, "update-ref", f"refs/heads/{into}", new, old)
        report.head = new
        return
    moved = await run_git("merge", "--ff-only", "--quiet", new, cwd=checked_out, check=False)
    if moved.returncode != 0:
        # git changed nothing: the merged work stays reachable at ``new`` for the user.
        why = moved.stderr.strip() or moved.stdout.strip()
        report.error = (
            f"the merges went through (commit {new}) but {into} could not be fast-forwarded "
            f"in {checked_out} ({why}); commit or stash the changes there, then run: "
            f"git -C {checked_out} merge --ff-only {new}"
        )
        return
    report.head = new


def _summary(report: MergeReport) -> str:
    if report.error is not None:
        return report.error
    parts = [f"merged {len(report.merged)} branch(es) into {report.into}"]
    if report.skipped:
        parts.append(f"skipped {len(report.skipped)}")
    if report.conflict is not None:
        files = ", ".join(report.conflict.files) or "unknown files"
        parts.append(f"stopped at a conflict with {report.conflict.branch} in {files}")
    return "; ".join(parts)


__all__ = [
    "MergeConflict",
    "MergeReport",
    "MergeSource",
    "MergedBranch",
    "SkippedBranch",
    "merge_branches",
]

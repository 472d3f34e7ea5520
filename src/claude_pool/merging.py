"""Merging results: the work of tasks and chains, into a target branch.

:func:`merge_branches` works in a temporary worktree of its own (under the pool's worktree
directory, detached at the target branch) and only when every merge went through moves the
target branch there: by a fast-forward of the working tree that has it checked out (git refuses,
and changes nothing, when that working tree has changes in the way), or by a compare-and-set of
the branch ref when none has. So neither the target branch nor the user's working tree is ever
left in a conflicted state.

What a source brings:

- a task that ran on its slot's worktree brings exactly its own commits, the ranges recorded in
  ``TaskResult.commits`` (each run of the task committed its work when it ended). When the
  target already has what the slot's branch held before the task, the task's last commit is
  merged as it is; otherwise (the slot did other tasks before it that are not merged) each
  range's changes are applied onto the target (a three-way merge of that range alone) and the
  result is merged, so the tasks before it on the slot's branch do not come along;
- a chain brings its kept branch, and a task from before commits were recorded its slot's
  whole branch.

At a conflict, without a resolver, it stops: that merge is aborted, the sources merged before it
still land, the report names the conflicting branch and files, and the sources after it are
reported as skipped. With a resolver (``Pool.merge(..., resolve_conflicts=True)``), the
conflicted worktree is handed to it — the pool runs a task there, "resolve the conflicts of
branch X onto main", whose result goes through the task gates (verification, review) — and
when it succeeds, with no conflict marker left in the files that conflicted, the resolution is
committed and the merge goes on. A resolution that fails stops the merge as a conflict does,
naming the task and why.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from claude_pool.chain.model import ChainResult, ChainState
from claude_pool.errors import WorktreeError
from claude_pool.task_port import TaskPort
from claude_pool.types import CommitRange, TaskOverrides, TaskRecord, TaskState
from claude_pool.worktree import WorktreeManager, identity_args, run_git

log = logging.getLogger(__name__)

_MARKERS = ("<<<<<<< ", ">>>>>>> ", "=======\n", "=======\r\n")


class MergeSource(BaseModel):
    """What to merge for one task or chain id."""

    source: str
    """The task or chain id it was asked for."""
    branch: str | None = None
    """None: the source kept nothing to merge (the reason is in ``reason``)."""
    reason: str = ""
    commits: list[CommitRange] = Field(default_factory=list)
    """The task's own commits on ``branch``; empty: the whole branch."""


class MergedBranch(BaseModel):
    source: str
    branch: str
    commit: str
    """The target's commit after merging it."""
    resolved_by: str | None = None
    """The task that resolved its conflicts, when one did."""


class SkippedBranch(BaseModel):
    source: str
    branch: str | None = None
    reason: str


class MergeConflict(BaseModel):
    source: str
    branch: str
    files: list[str] = Field(default_factory=list)
    """Paths that conflicted."""
    resolution_task: str | None = None
    """The task that was asked to resolve it, when one was."""
    resolution_error: str | None = None
    """Why its resolution was not taken."""


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


@dataclass(frozen=True)
class Conflict:
    """A conflict handed to a resolver: ``workdir`` is a worktree with the merge (or the
    application of a task's commits) stopped in it, the conflicted ``files`` marked."""

    workdir: Path
    source: str
    branch: str
    files: list[str]
    into: str


class Resolution(BaseModel):
    """What a resolver did: ``resolved`` when its work should be committed."""

    resolved: bool
    task_id: str | None = None
    reason: str = ""


Resolver = Callable[[Conflict], Awaitable[Resolution]]

RESOLVE_TAG = "merge:resolve"
"""The tag of the tasks that resolve merge conflicts."""


def conflict_resolver(
    tasks: TaskPort,
    *,
    verify: str | None = None,
    review: bool = False,
    overrides: TaskOverrides | None = None,
    timeout: float | None = None,
) -> Resolver:
    """A resolver that hands each conflict to a slot as a task run in the conflicted worktree
    (with ``verify``, default the pool's or slot's; ``review``; ``overrides``; ``timeout``, its
    run-time limit), and takes its work when the task completes, through its gates. The merge
    waits for it, a review included; cancelling the merge cancels the task."""

    async def resolve(conflict: Conflict) -> Resolution:
        async with tasks.cancelled_with_caller() as mine:
            task_id = await tasks.submit(
                resolve_prompt(conflict), overrides, [RESOLVE_TAG], review=review,
                timeout=timeout, cwd=conflict.workdir, verify=verify, fresh_session=True,
            )  # fmt: skip
            mine.add(task_id)
            log.info(
                "merge into %s: conflict with %s handed to task %s",
                conflict.into, conflict.branch, task_id,
            )  # fmt: skip
            record = await tasks.wait(task_id, through_review=True)
        if record.state is TaskState.COMPLETED:
            return Resolution(resolved=True, task_id=task_id)
        output = record.result.output if record.result is not None else ""
        return Resolution(
            resolved=False, task_id=task_id, reason=f"the task {record.state}: {output}"[:2000]
        )

    return resolve


def resolve_prompt(conflict: Conflict) -> str:
    """The task prompt that hands a conflict to a slot."""
    files = "\n".join(f"- {name}" for name in conflict.files) or "- (git named no file)"
    return (
        f"Resolve the merge conflicts of branch {conflict.branch} ({conflict.source}) onto "
        f"{conflict.into}.\n\n"
        f"This directory ({conflict.workdir}) is a temporary git worktree in which merging "
        f"that work into {conflict.into} stopped with conflicts in:\n{files}\n\n"
        "Edit each of these files so that it keeps what both sides meant, and leave no "
        "conflict marker (<<<<<<<, =======, >>>>>>>) in them. Do not commit, abort the merge "
        "or switch branches: claude-pool commits your resolution once its checks pass. Answer "
        "with a short account of how you resolved each conflict."
    )


async def _git(cwd: Path, *args: str, check: bool = True) -> str:
    return (await run_git(*args, cwd=cwd, check=check)).stdout.strip()


async def _branch_exists(root: Path, branch: str) -> bool:
    found = await run_git(
        "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=root, check=False
    )
    return found.returncode == 0


async def _is_ancestor(cwd: Path, older: str, newer: str) -> bool:
    done = await run_git("merge-base", "--is-ancestor", older, newer, cwd=cwd, check=False)
    return done.returncode == 0


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


class _Stop(Exception):
    """The merge stops at this source (its conflict is in the report)."""


class _Merger:
    """One ``merge_branches`` call, working in ``scratch``."""

    def __init__(
        self, root: Path, scratch: Path, report: MergeReport, resolver: Resolver | None
    ) -> None:
        self.root = root
        self.scratch = scratch
        self.report = report
        self.resolver = resolver
        self.resolved_by: str | None = None

    async def git(self, *args: str, check: bool = True) -> str:
        return await _git(self.scratch, *args, check=check)

    async def merge(self, source: MergeSource) -> None:
        """Merge one source at the scratch HEAD, or add why not to the report; ``_Stop`` at a
        conflict that was not resolved."""
        self.resolved_by = None
        if source.commits:
            await self._merge_commits(source)
        else:
            await self._merge_branch(source)

    def _skip(self, source: MergeSource, reason: str) -> None:
        self.report.skipped.append(
            SkippedBranch(source=source.source, branch=source.branch, reason=reason)
        )

    async def _merged(self, source: MergeSource) -> None:
        assert source.branch is not None
        if await self.git("rev-parse", "HEAD^{tree}") == await self.git(
            "rev-parse", "HEAD^1^{tree}"
        ):
            # Its changes were in the target already (merged by another way): no empty merge.
            await self.git("reset", "--hard", "--quiet", "HEAD^1")
            return self._skip(source, f"already in {self.report.into}")
        self.report.merged.append(
            MergedBranch(
                source=source.source, branch=source.branch,
                commit=await self.git("rev-parse", "HEAD"), resolved_by=self.resolved_by,
            )
        )  # fmt: skip

    def _message(self, source: MergeSource) -> str:
        return f"Merge {source.branch} ({source.source}) into {self.report.into}"

    async def _merge_branch(self, source: MergeSource) -> None:
        branch = source.branch
        assert branch is not None
        where = await _checked_out_at(self.root, branch)
        if where is not None and await _git(where, "status", "--porcelain"):
            return self._skip(
                source,
                f"uncommitted changes in its worktree {where} (they are committed onto the "
                "branch when the slot stops: drain the pool first)",
            )
        if await _is_ancestor(self.scratch, branch, "HEAD"):
            return self._skip(source, f"already in {self.report.into}")
        await self._run("merge", "--no-ff", "--no-edit", "-m", self._message(source), branch,
                        source=source)  # fmt: skip
        await self._merged(source)

    async def _merge_commits(self, source: MergeSource) -> None:
        ranges = source.commits
        tip = ranges[-1].head
        if all(r.base == r.head for r in ranges):
            return self._skip(source, "the task changed nothing")
        if await _is_ancestor(self.scratch, tip, "HEAD"):
            return self._skip(source, f"already in {self.report.into}")
        contiguous = all(b.base == a.head for a, b in itertools.pairwise(ranges))
        if contiguous and await _is_ancestor(self.scratch, ranges[0].base, "HEAD"):
            # The target has everything before the task: its commits merge as they are.
            await self._run("merge", "--no-ff", "--no-edit", "-m", self._message(source), tip,
                            source=source)  # fmt: skip
            return await self._merged(source)
        # Earlier work of the slot is not in the target: apply the task's ranges alone.
        before = await self.git("rev-parse", "HEAD")
        for run in ranges:
            if run.base == run.head:
                continue
            squashed = await self.git(
                *await identity_args(self.scratch), "commit-tree", f"{run.head}^{{tree}}",
                "-p", run.base, "-m",
                f"The work of {source.source} ({run.base[:10]}..{run.head[:10]} on {run.branch})",
            )  # fmt: skip
            await self._run("cherry-pick", "--allow-empty", "--keep-redundant-commits",
                            squashed, source=source)  # fmt: skip
        picked = await self.git("rev-parse", "HEAD")
        same = await self.git("rev-parse", f"{picked}^{{tree}}") == await self.git(
            "rev-parse", f"{before}^{{tree}}"
        )
        await self.git("reset", "--hard", "--quiet", before)
        if same:
            return self._skip(source, f"already in {self.report.into}")
        await self._run("merge", "--no-ff", "--no-edit", "-m", self._message(source), picked,
                        source=source)  # fmt: skip
        await self._merged(source)

    async def _run(self, *args: str, source: MergeSource) -> None:
        """Run a merge or cherry-pick; at a conflict, have it resolved or stop."""
        before = await self.git("rev-parse", "HEAD")
        identity = await identity_args(self.scratch)
        done = await run_git(*identity, *args, cwd=self.scratch, check=False)
        if done.returncode == 0:
            return
        files = (await self.git("diff", "--name-only", "--diff-filter=U")).splitlines()
        if not files and not await self._in_progress():
            raise WorktreeError(
                f"git {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}",
                path=str(self.scratch),
            )
        conflict = MergeConflict(source=source.source, branch=source.branch or "", files=files)
        if self.resolver is not None:
            resolution = await self.resolver(
                Conflict(self.scratch, source.source, conflict.branch, files, self.report.into)
            )
            conflict.resolution_task = resolution.task_id
            if resolution.resolved:
                problem = await self._commit_resolution(before, files)
                if problem is None:
                    self.resolved_by = resolution.task_id
                    log.info(
                        "merge into %s: task %s resolved the conflicts of %s in %s",
                        self.report.into, resolution.task_id, conflict.branch, ", ".join(files),
                    )  # fmt: skip
                    return
                conflict.resolution_error = problem
            else:
                conflict.resolution_error = resolution.reason or "the conflict was not resolved"
        await self._abandon(before)
        self.report.conflict = conflict
        raise _Stop

    async def _in_progress(self) -> bool:
        for name in ("MERGE_HEAD", "CHERRY_PICK_HEAD"):
            path = await self.git("rev-parse", "--git-path", name)
            if (self.scratch / path).exists():
                return True
        return False

    async def _commit_resolution(self, before: str, files: list[str]) -> str | None:
        """Commit a resolver's work; what is wrong with it instead, if anything is."""
        for name in files:
            try:
                lines = (self.scratch / name).read_text(errors="replace").splitlines(True)
            except FileNotFoundError:
                continue  # resolved by deleting it
            if any(line.startswith(_MARKERS) for line in lines):
                return f"conflict markers are left in {name}"
        if await self._in_progress():
            await self.git("add", "-A")
            await self.git(
                *await identity_args(self.scratch), "commit", "--no-edit", "--no-verify",
                "--quiet", "--allow-empty",
            )  # fmt: skip
            return None
        if await self.git("rev-parse", "HEAD") == before:
            return "the merge was abandoned: nothing was committed"
        if await self.git("status", "--porcelain"):
            await self.git("add", "-A")
            await self.git(
                *await identity_args(self.scratch), "commit", "--no-verify", "--quiet", "-m",
                "Finish the resolution of the merge conflicts",
            )  # fmt: skip
        return None

    async def _abandon(self, before: str) -> None:
        for command in ("merge", "cherry-pick"):
            await self.git(command, "--abort", check=False)
        await self.git("reset", "--hard", "--quiet", before)
        await self.git("clean", "-fdq")


async def merge_branches(
    root: Path,
    sources: list[MergeSource],
    into: str,
    *,
    scratch_dir: Path | None = None,
    lock_reason: str = "claude-pool merge",
    resolver: Resolver | None = None,
) -> MergeReport:
    """Merge the sources into ``into`` (see the module docstring). The temporary worktree is
    made in ``scratch_dir`` (default: the repository's git directory), locked with
    ``lock_reason``."""
    report = MergeReport(into=into)
    ref = f"refs/heads/{into}"
    start = await run_git("rev-parse", "--verify", "--quiet", ref, cwd=root, check=False)
    if start.returncode != 0:
        raise WorktreeError(f"there is no branch {into!r} to merge into", path=str(root))
    old = start.stdout.strip()
    todo: list[MergeSource] = []
    seen: set[str] = set()
    for source in sources:
        key = f"{source.branch}@{source.commits[-1].head if source.commits else ''}"
        if source.branch is None:
            report.skipped.append(SkippedBranch(source=source.source, reason=source.reason))
        elif key in seen or source.source in (s.source for s in todo):
            report.skipped.append(
                SkippedBranch(source=source.source, branch=source.branch, reason="listed twice")
            )
        elif not source.commits and not await _branch_exists(root, source.branch):
            report.skipped.append(
                SkippedBranch(source=source.source, branch=source.branch, reason="no such branch")
            )
        else:
            seen.add(key)
            todo.append(source)
    if not todo:
        report.head = old
        report.message = _summary(report)
        return report
    if scratch_dir is None:
        common = Path(await _git(root, "rev-parse", "--git-common-dir"))
        scratch_dir = root / common if not common.is_absolute() else common
    scratch = scratch_dir / f"merge-{secrets.token_hex(4)}"
    scratch_dir.mkdir(parents=True, exist_ok=True)
    await _git(root, "worktree", "add", "--quiet", "--detach", "--lock", "--reason",
               lock_reason, str(scratch), old)  # fmt: skip
    merger = _Merger(root, scratch, report, resolver)
    try:
        for index, source in enumerate(todo):
            try:
                await merger.merge(source)
            except _Stop:
                for rest in todo[index + 1 :]:
                    report.skipped.append(
                        SkippedBranch(
                            source=rest.source, branch=rest.branch,
                            reason=f"not tried: stopped at the conflict with {source.branch}",
                        )
                    )  # fmt: skip
                break
        new = await _git(scratch, "rev-parse", "HEAD")
    finally:
        with contextlib.suppress(WorktreeError):
            await _git(root, "worktree", "remove", "--force", "--force", str(scratch))
    report.head = old
    if report.merged:
        await _move_target(root, into, old, new, report)
    report.message = _summary(report)
    log.info("merge into %s: %s", into, report.message)
    return report


async def merge_work(
    ids: Sequence[str],
    into: str,
    *,
    cwd: Path,
    base_dir: str | Path | None,
    owner: str,
    get_task: Callable[[str], Awaitable[TaskRecord]],
    get_chain: Callable[[str], Awaitable[ChainResult]],
    resolver: Resolver | None = None,
) -> MergeReport:
    """Merge the work of these task and chain ids into ``into`` (:func:`merge_branches` in the
    repository holding ``cwd``, scratch worktrees under ``base_dir``, locked for ``owner``)."""
    manager = await WorktreeManager.for_directory(cwd, base_dir, owner)
    sources = [await merge_source(str(source), get_task, get_chain) for source in ids]
    return await merge_branches(
        manager.repo_root, sources, into, scratch_dir=manager.base_dir,
        lock_reason=manager.lock_reason, resolver=resolver,
    )  # fmt: skip


async def merge_source(
    source: str,
    get_task: Callable[[str], Awaitable[TaskRecord]],
    get_chain: Callable[[str], Awaitable[ChainResult]],
) -> MergeSource:
    """What a task or chain id brings (see the module docstring), or why it brings nothing."""
    if source.startswith("chain-"):  # the shape of new_chain_id()
        chain = await get_chain(source)
        if chain.state is not ChainState.COMPLETED:
            return MergeSource(source=source, reason=f"the chain is {chain.state}")
        if chain.kept_branch is None:
            return MergeSource(
                source=source, reason="the chain kept no branch (it changed nothing)"
            )
        return MergeSource(source=source, branch=chain.kept_branch)
    record = await get_task(source)
    if record.state is not TaskState.COMPLETED:
        return MergeSource(source=source, reason=f"the task is {record.state}")
    if record.result is not None and record.result.commits:
        commits = record.result.commits
        return MergeSource(source=source, branch=commits[-1].branch, commits=commits)
    if record.slot_id is None:
        return MergeSource(source=source, reason="the task ran on no slot")
    # A task from before tasks recorded their commits: its slot's whole branch.
    return MergeSource(source=source, branch=WorktreeManager.branch_for(record.slot_id))


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
    resolved = [m.resolved_by for m in report.merged if m.resolved_by]
    if resolved:
        parts.append(f"conflicts resolved by {', '.join(resolved)}")
    if report.skipped:
        parts.append(f"skipped {len(report.skipped)}")
    if report.conflict is not None:
        files = ", ".join(report.conflict.files) or "unknown files"
        parts.append(f"stopped at a conflict with {report.conflict.branch} in {files}")
        if report.conflict.resolution_task is not None:
            why = report.conflict.resolution_error or "not resolved"
            parts.append(f"task {report.conflict.resolution_task} did not resolve it: {why}")
    return "; ".join(parts)


__all__ = [
    "RESOLVE_TAG",
    "Conflict",
    "MergeConflict",
    "MergeReport",
    "MergeSource",
    "MergedBranch",
    "Resolution",
    "Resolver",
    "SkippedBranch",
    "conflict_resolver",
    "merge_branches",
    "merge_source",
    "merge_work",
    "resolve_prompt",
]

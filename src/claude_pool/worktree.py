"""Git worktrees (and clones) that give slots and chains a directory of their own.

A worktree named ``<name>`` lives at ``<base>/<name>`` on branch ``claude-pool/<name>``. The base
is ``PoolConfig.worktree_base_dir`` or ``<repo root>/.pool-worktrees`` (added to the
repository's ``.git/info/exclude`` so that the main checkout does not see it as untracked). The
default used to be ``<repo root>/.claude/pool-worktrees``, but Claude Code refuses to edit files
under ``.claude/``, so a slot could not work there; with the default base, leftovers under the
old one are still found and cleaned like any other (their work kept on their branches).

Every worktree is locked (``git worktree lock``) with the reason ``claude-pool worker <id>``:
``git worktree prune`` leaves it alone, and a pool cleaning up after a crashed one can tell a
worktree whose owner is still alive (left alone) from one whose owner died (cleaned).

Work is never silently deleted. Finishing a worktree (:meth:`WorktreeManager.finish`):

1. uncommitted changes (untracked files included) are committed onto its branch, in a commit
   whose message says so;
2. the directory is removed;
3. the branch is deleted only if every commit on it is also on another branch, a
   remote-tracking branch or a tag (a clean worktree with no new commits, or work already
   pushed or merged); otherwise it is kept and the :class:`WorktreeReport` says so (and a
   warning is logged). Commits made on a detached HEAD are saved on a branch of their own.

Git-ignored files are never committed (``git add -A`` skips them), so removing the directory
would delete them. Before that, they are listed (``git status --ignored=matching``: a directory
that matches an ignore pattern is one entry, ``dir/``) and the rule is:

- an ignored path is *regenerable* when one of its components is a well-known dependency, build
  or cache directory (:data:`REGENERABLE_NAMES`: ``node_modules``, ``.venv``, ``__pycache__``,
  ``target``, ``dist``, ``build``, ``.pytest_cache``, ...) or ends in ``.pyc``, ``.pyo`` or
  ``.egg-info``;
- if every ignored path is regenerable, the directory is removed as above and the report still
  lists them (:attr:`WorktreeReport.ignored_files`, at most :data:`IGNORED_LIST_LIMIT`, with
  :attr:`WorktreeReport.ignored_total`);
- if any is not (notes, ``.env`` files, logs, data: anything else), the directory is **left in
  place** (its other work is still committed onto the branch, which stays checked out there),
  :attr:`WorktreeReport.kept_for_ignored` is set, the report and a logged warning list those
  paths first, and say how to remove the directory once they are safe. A leftover kept this way
  is looked at again (and kept again) by the next pool that cleans up leftovers.

Clones (:meth:`WorktreeManager.clone`) follow the same rules: unpushed work is fetched back into
the original repository as branch ``claude-pool/<name>`` before the clone is deleted, and a clone
holding ignored files that are not regenerable is kept.

git runs through ``asyncio.create_subprocess_exec`` (never a shell), with a bounded timeout,
no terminal prompts, and ``GIT_DIR``-style variables from the caller's environment removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from claude_pool.errors import WorktreeError
from claude_pool.events import WorktreeKept, WorktreeRemoved
from claude_pool.types import CommitRange

log = logging.getLogger(__name__)

BRANCH_PREFIX = "claude-pool/"
DEFAULT_BASE_DIR = Path(".pool-worktrees")
"""Where worktrees go when ``worktree_base_dir`` is not set, relative to the repository root."""
LEGACY_BASE_DIR = Path(".claude") / "pool-worktrees"
"""The default of earlier versions (under ``.claude/``, where Claude Code refuses edits): with
the default base, worktrees left there are cleaned up too."""

GIT_TIMEOUT_SECS = 60.0
"""Limit for one git command (a clone of a big repository included)."""

IGNORED_LIST_LIMIT = 20
"""At most this many ignored paths are named in a report (the rest are counted)."""

REGENERABLE_NAMES = frozenset(
    {
        "node_modules", ".venv", "venv", "__pycache__", "target", "dist", "build",
        ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox", ".gradle", ".next",
        ".turbo", ".parcel-cache", "htmlcov", ".coverage", ".DS_Store",
    }
)  # fmt: skip
"""Names of files and directories that tools regenerate: git-ignored paths under them may be
deleted with a worktree (see the module docstring)."""
_REGENERABLE_SUFFIXES = (".pyc", ".pyo", ".egg-info")

_LOCK_PREFIX = "claude-pool worker "
_LOCK_OWNER = re.compile(re.escape(_LOCK_PREFIX) + r"(\S+)")
_FALLBACK_IDENTITY = ("-c", "user.name=claude-pool", "-c", "user.email=claude-pool@localhost")
# Variables that would point git at another repository than the one we name with -C.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX")


class WorktreeReport(BaseModel):
    """What finishing a worktree (or clone) did with it and with the work in it."""

    path: str
    branch: str
    removed: bool = False
    """The directory is gone."""
    branch_kept: bool = False
    """The branch holds work found on no other branch, remote-tracking branch or tag."""
    saved_uncommitted: bool = False
    """Uncommitted changes were committed onto the branch before the directory was removed."""
    unique_commits: int = 0
    """Commits on the branch that no other ref has (the saving commit included)."""
    extra_branches: list[str] = []
    """Further branches created to keep work (commits made on a detached HEAD)."""
    ignored_files: list[str] = []
    """Git-ignored paths that were in the directory (``dir/`` for a directory ignored as a
    whole), those not known to be regenerable first; at most :data:`IGNORED_LIST_LIMIT`."""
    ignored_total: int = 0
    """How many git-ignored paths there were in all."""
    kept_for_ignored: bool = False
    """The directory was left in place: removing it would have deleted git-ignored files that
    are not known to be regenerable (the first of :attr:`ignored_files`)."""
    message: str = ""

    @property
    def kept_branches(self) -> list[str]:
        return ([self.branch] if self.branch_kept else []) + self.extra_branches


def worktree_event(report: WorktreeReport) -> WorktreeKept | WorktreeRemoved:
    """The event for what finishing a worktree (or clone) did: removed with nothing to keep,
    or kept (its branch holds work found nowhere else, or the directory stayed in place)."""
    if report.removed and not report.kept_branches:
        return WorktreeRemoved(path=report.path, branch=report.branch)
    return WorktreeKept(
        path=report.path,
        branch=report.branch if report.branch_kept else None,
        reason=report.message,
        directory_removed=report.removed,
    )


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class WorktreeEntry:
    """One entry of ``git worktree list --porcelain``."""

    path: Path
    head: str | None
    branch: str | None
    locked: bool
    lock_reason: str

    @property
    def owner(self) -> str | None:
        """The worker id in a claude-pool lock reason."""
        match = _LOCK_OWNER.search(self.lock_reason)
        return match[1] if match else None


def is_regenerable(path: str) -> bool:
    """True when a git-ignored ``path`` (relative, ``/``-separated) is under, or is, a
    well-known dependency, build or cache directory (:data:`REGENERABLE_NAMES`)."""
    return any(
        part in REGENERABLE_NAMES or part.endswith(_REGENERABLE_SUFFIXES)
        for part in path.split("/")
        if part
    )


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_OPTIONAL_LOCKS", "0")
    return env


async def run_git(
    *args: str, cwd: Path, timeout: float = GIT_TIMEOUT_SECS, check: bool = True
) -> GitResult:
    """Run ``git -C cwd *args``; with ``check``, a non-zero exit raises :class:`WorktreeError`."""
    command = ["git", "-C", str(cwd), *args]
    shown = " ".join(command)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_git_env(),
        )
    except OSError as exc:
        raise WorktreeError(
            f"cannot run git ({exc}); install git or put it on PATH", command=shown
        ) from exc
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        await _kill(process)
        raise WorktreeError(
            f"git did not finish within {timeout:g}s: {shown}", path=str(cwd), command=shown
        ) from None
    except BaseException:
        await _kill(process)  # cancelled: never leave the git process behind
        raise
    result = GitResult(
        process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise WorktreeError(
            f"git failed (exit {result.returncode}): {shown}: {result.stderr.strip()}",
            path=str(cwd),
            command=shown,
            stderr=result.stderr,
        )
    return result


MAX_DIFF_CHARS = 200_000


async def worktree_diff(worktree: Path, repo_root: Path, max_chars: int = MAX_DIFF_CHARS) -> str:
    """What the work in ``worktree`` changed since it left ``repo_root``'s HEAD: committed and
    uncommitted changes to tracked files as one diff, then the untracked files by name. Cut
    to ``max_chars``."""
    base = (await run_git("rev-parse", "HEAD", cwd=repo_root)).stdout.strip()
    fork = await run_git("merge-base", "HEAD", base, cwd=worktree, check=False)
    since = fork.stdout.strip() if fork.returncode == 0 and fork.stdout.strip() else "HEAD"
    diff = (await run_git("diff", "--no-color", since, cwd=worktree)).stdout
    untracked = (
        await run_git("ls-files", "--others", "--exclude-standard", cwd=worktree)
    ).stdout.split()
    text = diff + "".join(f"new file (untracked): {name}\n" for name in untracked)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... cut at {max_chars} characters\n"
    return text


async def identity_args(path: Path) -> tuple[str, ...]:
    """``-c`` options that give git a committer identity in ``path`` when none is configured
    (a fresh machine, a CI runner), and turn commit signing off for the pool's own commits."""
    for key in ("user.name", "user.email"):
        if not (await run_git("config", key, cwd=path, check=False)).stdout.strip():
            return (*_FALLBACK_IDENTITY, "-c", "commit.gpgsign=false")
    return ("-c", "commit.gpgsign=false")


async def commit_work(path: Path, message: str) -> str:
    """Commit everything uncommitted in the checkout at ``path`` (untracked files included,
    git-ignored ones not), if anything is; the commit HEAD is at afterwards."""
    if (await run_git("status", "--porcelain", cwd=path)).stdout.strip():
        await run_git("add", "-A", cwd=path)
        identity = await identity_args(path)
        await run_git(*identity, "commit", "--no-verify", "--quiet", "-m", message, cwd=path)
    return (await run_git("rev-parse", "HEAD", cwd=path)).stdout.strip()


async def commits_diff(
    repo_root: Path, commits: list[CommitRange], max_chars: int = MAX_DIFF_CHARS
) -> str:
    """What a task's runs changed (``TaskResult.commits``): one diff per run, cut to
    ``max_chars``."""
    parts = []
    for run in commits:
        if run.base != run.head:
            done = await run_git("diff", "--no-color", run.base, run.head, cwd=repo_root)
            parts.append(done.stdout)
    text = "".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n... cut at {max_chars} characters\n"
    return text


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await asyncio.shield(process.wait())


async def find_repo_root(path: Path) -> Path:
    """The top directory of the git working tree holding ``path``; :class:`WorktreeError` if
    there is none."""
    result = await run_git("rev-parse", "--show-toplevel", cwd=path, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise WorktreeError(
            f"{path} is not inside a git repository, so slots and chains cannot get worktrees "
            "of their own; run the pool in a git repository (git init && git commit), or turn "
            "worktree_isolation off / use chain isolation 'none'",
            path=str(path),
            stderr=result.stderr,
        )
    return Path(_real(result.stdout.strip()))


# Quick local file-system calls, kept out of the async functions so linters see why it is fine.


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def _exists(path: Path) -> bool:
    return path.exists()


def base_dir_for(root: Path, base_dir: str | Path | None) -> Path:
    """The directory worktrees of the repository at ``root`` go in (see the module docstring)."""
    if base_dir is None:
        return Path(_real(root / DEFAULT_BASE_DIR))
    given = Path(base_dir).expanduser()
    return Path(_real(given if given.is_absolute() else root / given))


def _parse_worktree_list(text: str) -> list[WorktreeEntry]:
    entries: list[WorktreeEntry] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        if "worktree" not in fields:
            continue
        branch = fields.get("branch")
        entries.append(
            WorktreeEntry(
                path=Path(_real(fields["worktree"])),
                head=fields.get("HEAD"),
                branch=branch.removeprefix("refs/heads/") if branch else None,
                locked="locked" in fields,
                lock_reason=fields.get("locked", ""),
            )
        )
    return entries


class WorktreeManager:
    """Creates, reuses and finishes the worktrees of one repository for one pool process.

    ``owner`` (the pool's worker id) goes into each worktree's lock reason.
    """

    def __init__(
        self,
        repo_root: Path,
        base_dir: Path,
        owner: str,
        *,
        timeout: float = GIT_TIMEOUT_SECS,
        legacy_dirs: Collection[Path] = (),
    ) -> None:
        self.repo_root = repo_root
        self.base_dir = base_dir
        self.legacy_dirs = tuple(legacy_dirs)
        """Earlier base directories whose leftovers :meth:`cleanup_leftovers` cleans too."""
        self.owner = owner
        self.timeout = timeout
        self._lock = asyncio.Lock()

    @classmethod
    async def for_directory(
        cls, cwd: Path, base_dir: str | Path | None, owner: str
    ) -> WorktreeManager:
        """A manager for the repository holding ``cwd``; :class:`WorktreeError` outside one."""
        root = await find_repo_root(cwd)
        legacy = [Path(_real(root / LEGACY_BASE_DIR))] if base_dir is None else []
        manager = cls(root, base_dir_for(root, base_dir), owner, legacy_dirs=legacy)
        await manager._exclude_base_dir()
        return manager

    # ── names and paths ─────────────────────────────────────────────

    def path_for(self, name: str) -> Path:
        return self.base_dir / name

    @staticmethod
    def branch_for(name: str) -> str:
        return f"{BRANCH_PREFIX}{name}"

    def workdir_in(self, worktree: Path, cwd: Path) -> Path:
        """The directory inside ``worktree`` that corresponds to ``cwd`` in the main checkout
        (the worktree root when ``cwd`` is the repository root or outside it)."""
        try:
            relative = Path(_real(cwd)).relative_to(self.repo_root)
        except ValueError:
            return worktree
        target = worktree / relative
        target.mkdir(parents=True, exist_ok=True)
        return target

    @property
    def lock_reason(self) -> str:
        """The lock reason of this manager's worktrees: cleanup leaves them alone while their
        owner lives."""
        return f"{_LOCK_PREFIX}{self.owner}"

    def owns(self, path: str | Path) -> bool:
        """True when ``path`` is inside this manager's base directory (or an earlier one)."""
        real = Path(_real(path))
        return any(real.is_relative_to(d) for d in (self.base_dir, *self.legacy_dirs))

    # ── git helpers ─────────────────────────────────────────────────

    async def _git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        result = await run_git(*args, cwd=cwd or self.repo_root, timeout=self.timeout, check=check)
        return result.stdout

    async def _exclude_base_dir(self) -> None:
        try:
            relative = self.base_dir.relative_to(self.repo_root)
        except ValueError:
            return
        common = (await self._git("rev-parse", "--git-common-dir")).strip()
        exclude = (self.repo_root / common).resolve() / "info" / "exclude"
        line = f"/{relative.as_posix()}/"
        try:
            existing = exclude.read_text() if exclude.exists() else ""
            if line not in existing.splitlines():
                exclude.parent.mkdir(parents=True, exist_ok=True)
                with exclude.open("a") as handle:
                    handle.write(("" if existing.endswith("\n") or not existing else "\n") + line)
                    handle.write("\n")
        except OSError as exc:
            log.warning("could not add %s to %s: %s", line, exclude, exc)

    async def entries(self) -> list[WorktreeEntry]:
        return _parse_worktree_list(await self._git("worktree", "list", "--porcelain"))

    async def _branch_exists(self, branch: str) -> bool:
        result = await run_git(
            "rev-parse", "--verify", "-q", f"refs/heads/{branch}", cwd=self.repo_root, check=False
        )
        return result.returncode == 0

    async def _unique_commits(self, rev: str, *, exclude_branch: str | None = None) -> int:
        """Commits reachable from ``rev`` but from no branch (other than ``exclude_branch``),
        remote-tracking branch or tag."""
        # Patterns for --branches are matched without the refs/heads/ prefix.
        exclude = [f"--exclude={exclude_branch}"] if exclude_branch else []
        out = await self._git(
            "rev-list", "--count", rev, "--not", *exclude, "--branches", "--remotes", "--tags"
        )
        return int(out.strip() or 0)

    async def _commit_all(self, path: Path, message: str) -> None:
        await self._git("add", "-A", cwd=path)
        identity = await identity_args(path)
        await self._git(
            *identity,
            "commit",
            "--no-verify",
            "--quiet",
            "-m",
            message,
            cwd=path,
        )

    # ── creating ────────────────────────────────────────────────────

    async def ensure(self, name: str) -> Path:
        """The worktree ``<base>/<name>`` on branch ``claude-pool/<name>``: reused (and its
        lock taken over) if it exists, else created from the kept branch if there is one,
        else from the repository's HEAD."""
        path = self.path_for(name)
        branch = self.branch_for(name)
        reason = self.lock_reason
        async with self._lock:
            entries = {e.path: e for e in await self.entries()}
            if path in entries and path.is_dir():
                await self._git("worktree", "unlock", str(path), check=False)
                await self._git("worktree", "lock", "--reason", reason, str(path))
                log.info("reusing worktree %s (branch %s)", path, entries[path].branch)
                return path
            await self._git("worktree", "prune")
            if path.exists():
                raise WorktreeError(
                    f"{path} exists but is not a git worktree of {self.repo_root}; move it "
                    "away or choose another worktree_base_dir",
                    path=str(path),
                )
            head = await run_git(
                "rev-parse", "--verify", "-q", "HEAD", cwd=self.repo_root, check=False
            )
            exists = await self._branch_exists(branch)
            if head.returncode != 0 and not exists:
                raise WorktreeError(
                    f"the repository {self.repo_root} has no commit yet, and a worktree needs "
                    "one to start from; commit something first",
                    path=str(self.repo_root),
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            start = [branch] if exists else ["-b", branch, "HEAD"]
            await self._git(
                "worktree", "add", "--quiet", "--lock", "--reason", reason, str(path), *start
            )
            log.info("created worktree %s on branch %s", path, branch)
            return path

    async def clone(self, dest: Path, name: str) -> Path:
        """Clone the repository into ``dest`` (which must not exist) on branch
        ``claude-pool/<name>``, continuing that branch if the repository has it; ``origin``
        is set to the repository's own ``origin`` URL when it has one."""
        branch = self.branch_for(name)
        origin = (await self._git("remote", "get-url", "origin", check=False)).strip()
        dest.parent.mkdir(parents=True, exist_ok=True)
        await run_git(
            "clone",
            "--quiet",
            str(self.repo_root),
            str(dest),
            cwd=dest.parent,
            timeout=self.timeout,
        )
        tracking = await run_git(
            "rev-parse", "--verify", "-q", f"refs/remotes/origin/{branch}", cwd=dest, check=False
        )
        if tracking.returncode == 0:
            await self._git("checkout", "--quiet", "-B", branch, f"origin/{branch}", cwd=dest)
        else:
            await self._git("checkout", "--quiet", "-b", branch, cwd=dest)
        if origin:
            await self._git("remote", "set-url", "origin", origin, cwd=dest)
        log.info("cloned %s into %s on branch %s", self.repo_root, dest, branch)
        return dest

    # ── finishing ───────────────────────────────────────────────────

    async def finish(self, path: Path, branch: str, label: str) -> WorktreeReport:
        """Remove a worktree without losing work (see the module docstring)."""
        report = WorktreeReport(path=str(path), branch=branch)
        async with self._lock:
            if _exists(path / ".git"):
                await self._check_ignored(path, report)
                report.saved_uncommitted = await self._save_uncommitted(path, label)
                current = (
                    await self._git("symbolic-ref", "-q", "--short", "HEAD", cwd=path, check=False)
                ).strip()
                if current != branch:
                    extra = await self._keep_detached(path, branch, current)
                    if extra:
                        report.extra_branches.append(extra)
                if not report.kept_for_ignored:
                    await self._git("worktree", "unlock", str(path), check=False)
                    removed = await run_git(
                        "worktree", "remove", "--force", "--force", str(path),
                        cwd=self.repo_root, timeout=self.timeout, check=False,
                    )  # fmt: skip
                    if removed.returncode != 0 and _exists(path):
                        await asyncio.to_thread(shutil.rmtree, path, True)
            elif _exists(path):
                # Not a worktree (any more): leave the directory to its owner.
                report.message = f"{path} is not a git worktree; left in place"
                return report
            await self._git("worktree", "prune")
            report.removed = not _exists(path)
            if await self._branch_exists(branch):
                report.unique_commits = await self._unique_commits(branch, exclude_branch=branch)
                if report.unique_commits:
                    report.branch_kept = True
                elif report.removed:  # a kept directory still has the branch checked out
                    await self._git("branch", "-D", "--quiet", branch)
        report.message = _describe(report)
        _log_report(label, report)
        return report

    async def _check_ignored(self, path: Path, report: WorktreeReport) -> None:
        """List the git-ignored paths in the checkout at ``path`` into ``report`` and decide
        whether the directory must be kept for them (see the module docstring)."""
        out = await self._git(
            "status", "--porcelain=v1", "-z", "--ignored=matching", "--untracked-files=normal",
            cwd=path,
        )  # fmt: skip
        ignored = sorted(
            (entry[3:] for entry in out.split("\0") if entry.startswith("!! ")),
            key=lambda p: (is_regenerable(p), p),
        )
        report.ignored_files = ignored[:IGNORED_LIST_LIMIT]
        report.ignored_total = len(ignored)
        report.kept_for_ignored = any(not is_regenerable(p) for p in ignored)

    async def _save_uncommitted(self, path: Path, label: str) -> bool:
        status = await self._git("status", "--porcelain", cwd=path)
        if not status.strip():
            return False
        await self._commit_all(
            path,
            f"claude-pool: save uncommitted work left by {label}\n\n"
            "claude-pool committed these changes when it removed the worktree, so that they "
            "are not lost.",
        )
        return True

    async def _keep_detached(self, path: Path, branch: str, current: str) -> str | None:
        """Work on a detached HEAD (or another branch) would go with the directory: put it on
        a branch of its own if no ref has it."""
        if current:
            return None  # another branch: it outlives the worktree anyway
        head = (await self._git("rev-parse", "HEAD", cwd=path)).strip()
        if not await self._unique_commits(head):
            return None
        extra = f"{branch}-detached-{head[:8]}"
        await self._git("branch", "--force", extra, head)
        return extra

    async def finish_clone(self, clone: Path, name: str, label: str) -> WorktreeReport:
        """Delete a clone made by :meth:`clone`; unpushed work is first fetched back into the
        repository as branch ``claude-pool/<name>``. If that fails the clone is left in place
        and the report says so."""
        branch = self.branch_for(name)
        report = WorktreeReport(path=str(clone), branch=branch)
        if not _exists(clone / ".git"):
            report.removed = not _exists(clone)
            report.message = "no clone to remove"
            return report
        await self._check_ignored(clone, report)
        report.saved_uncommitted = await self._save_uncommitted(clone, label)
        unpushed = int(
            (
                await self._git("rev-list", "--count", "HEAD", "--not", "--remotes", cwd=clone)
            ).strip()
            or 0
        )
        report.unique_commits = unpushed
        if unpushed:
            async with self._lock:
                fetched = await run_git(
                    "fetch", "--quiet", str(clone), f"+HEAD:refs/heads/{branch}",
                    cwd=self.repo_root, timeout=self.timeout, check=False,
                )  # fmt: skip
            if fetched.returncode != 0:
                report.message = (
                    f"{unpushed} unpushed commit(s) could not be fetched into "
                    f"{self.repo_root} ({fetched.stderr.strip()}); the clone {clone} is kept"
                )
                log.warning("%s: %s", label, report.message)
                return report
            report.branch_kept = True
        if not report.kept_for_ignored:
            await asyncio.to_thread(shutil.rmtree, clone, True)
        report.removed = not _exists(clone)
        report.message = _describe(report)
        _log_report(label, report)
        return report

    async def cleanup_leftovers(
        self, keep: Collection[str | Path], is_alive: Callable[[str], bool]
    ) -> list[WorktreeReport]:
        """Prune stale worktree records, then finish the worktrees under the base directory
        that belong to no live owner and are not in ``keep`` (e.g. slots being adopted)."""
        kept = {Path(_real(p)) for p in keep}
        await self._git("worktree", "prune")
        reports = []
        for entry in await self.entries():
            if (
                entry.path in kept
                or not self.owns(entry.path)
                or entry.path in (self.base_dir, *self.legacy_dirs)
            ):
                continue
            owner = entry.owner
            if owner == self.owner or (owner is not None and is_alive(owner)):
                continue
            branch = entry.branch or self.branch_for(entry.path.name)
            if not branch.startswith(BRANCH_PREFIX):
                branch = self.branch_for(entry.path.name)
            label = f"leftover worktree of a stopped pool ({owner or 'owner unknown'})"
            reports.append(await self.finish(entry.path, branch, label))
        return reports


def _log_report(label: str, report: WorktreeReport) -> None:
    if report.kept_branches or report.kept_for_ignored:
        log.warning("%s: %s", label, report.message)
    else:
        log.info("%s: %s", label, report.message)


def _ignored_list(report: WorktreeReport) -> str:
    more = report.ignored_total - len(report.ignored_files)
    return ", ".join(report.ignored_files) + (f" and {more} more" if more > 0 else "")


def _describe(report: WorktreeReport) -> str:
    parts = [f"removed {report.path}" if report.removed else f"left {report.path} in place"]
    if report.kept_for_ignored:
        parts.append(
            f"it holds {report.ignored_total} git-ignored path(s), not all known to be "
            f"regenerable, that removing it would delete ({_ignored_list(report)}); move what "
            f"you need, then delete it (git worktree remove --force {report.path}, or rm -rf "
            "for a clone)"
        )
    elif report.ignored_total:
        parts.append(
            f"{report.ignored_total} git-ignored path(s), all regenerable, were deleted with it "
            f"({_ignored_list(report)})"
        )
    if report.saved_uncommitted:
        parts.append("uncommitted changes were committed onto the branch first")
    if report.branch_kept:
        parts.append(
            f"branch {report.branch} kept: {report.unique_commits} commit(s) on no other "
            "branch, remote or tag"
        )
    elif report.removed:
        parts.append(f"branch {report.branch} had no work of its own and was deleted")
    else:
        parts.append(f"branch {report.branch} stays checked out there")
    for extra in report.extra_branches:
        parts.append(f"commits on a detached HEAD kept on branch {extra}")
    return "; ".join(parts)

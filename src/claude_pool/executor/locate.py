"""Finding the Claude Code CLI the pool drives, and installing the pinned version.

:func:`find_claude` looks, in order, at ``$CLAUDE_POOL_CLAUDE_BIN`` (used as is), a ``claude``
on PATH of exactly the pinned version, and the copy installed in claude-pool's cache;
:func:`install_claude` installs the pinned version there with npm (``claude-pool install-cli``).

The cache (:func:`cache_dir`) is ``$CLAUDE_POOL_CACHE_DIR`` if set; else, when this package runs
from a claude-pool checkout (as ``make setup`` installs it), the checkout's ``.cache``; else the
per-user cache directory (``~/.cache/claude-pool`` on Linux, ``~/Library/Caches/claude-pool`` on
macOS). It depends on where the package is, never on the working directory, so every command
finds the same install from any folder.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import platformdirs

from claude_pool.errors import ClaudeCliInstallError

__all__ = [
    "CACHE_DIR_ENV_VAR",
    "CLAUDE_CODE_VERSION",
    "NPM_PACKAGE",
    "cache_dir",
    "claude_version",
    "clean_env",
    "ensure_claude",
    "find_claude",
    "install_claude",
    "install_dir",
    "installed_claude",
]

CLAUDE_CODE_VERSION = "2.1.330"
NPM_PACKAGE = "@anthropic-ai/claude-code"
CACHE_DIR_ENV_VAR = "CLAUDE_POOL_CACHE_DIR"

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VERSION_TIMEOUT = 30.0
_INSTALL_TIMEOUT = 600.0


def _checkout_root() -> Path | None:
    """The claude-pool checkout this package runs from (``<root>/src/claude_pool``), if any."""
    source = Path(__file__).resolve().parents[2]
    root = source.parent
    if source.name != "src":
        return None
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("project", {}).get("name") == "claude-pool" else None


def cache_dir() -> Path:
    """Where claude-pool keeps what it installs: ``$CLAUDE_POOL_CACHE_DIR``, else a checkout's
    ``.cache`` (when the package runs from one), else the per-user cache directory."""
    override = os.environ.get(CACHE_DIR_ENV_VAR)
    if override:
        return Path(override).expanduser()
    checkout = _checkout_root()
    if checkout is not None:
        return checkout / ".cache"
    return Path(platformdirs.user_cache_dir("claude-pool", appauthor=False))


def install_dir() -> Path:
    """Where :func:`install_claude` puts the pinned CLI by default: ``<cache>/claude-cli``."""
    return cache_dir() / "claude-cli"


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def claude_version(binary: Path) -> str | None:
    """The version ``binary --version`` prints (e.g. ``"2.1.330"``), or None if it fails."""
    try:
        proc = subprocess.run(
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT,
            env=clean_env(os.environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    version = _parse_version(proc.stdout)
    return ".".join(map(str, version)) if version else None


def _installed_candidates(directory: Path) -> Iterator[Path]:
    modules = directory / "node_modules"
    # The npm wrapper's bin is a hard link to the native binary when postinstall ran or the
    # package was hard-linked; otherwise only the platform package's binary works.
    yield modules / ".bin" / "claude"
    yield modules / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
    yield from sorted(modules.glob("@anthropic-ai/claude-code-*/claude"))


def installed_claude(directory: Path | None = None) -> Path | None:
    """The pinned CLI installed under ``directory`` (default :func:`install_dir`), or None."""
    for candidate in _installed_candidates(directory or install_dir()):
        if candidate.is_file() and claude_version(candidate) == CLAUDE_CODE_VERSION:
            return candidate
    return None


def find_claude() -> Path | None:
    """The CLI to test with, or None.

    In order: ``$CLAUDE_POOL_CLAUDE_BIN`` (used as is), a ``claude`` on PATH of exactly the
    pinned version (the tests and the mock rely on its exact behaviour; a newer one on PATH is
    common on a developer's machine), the copy installed in the cache (:func:`install_dir`).
    """
    explicit = os.environ.get("CLAUDE_POOL_CLAUDE_BIN")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("claude")
    if on_path is not None and claude_version(Path(on_path)) == CLAUDE_CODE_VERSION:
        return Path(on_path)
    return installed_claude()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_claude(dest: Path) -> Path:
    """Install the pinned CLI under ``dest`` with npm and return its binary.

    Safe to call from parallel processes: they serialise on a lock file, and whoever comes
    second finds the finished install. :class:`ClaudeCliInstallError` when npm is missing or
    fails.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClaudeCliInstallError(
            f"cannot create {dest} to install {NPM_PACKAGE}@{CLAUDE_CODE_VERSION} in: "
            f"{exc.strerror or exc}; set {CACHE_DIR_ENV_VAR} to a writable directory"
        ) from exc
    with _locked(dest / ".install.lock"):
        found = installed_claude(dest)
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise ClaudeCliInstallError(
                f"npm is needed to install {NPM_PACKAGE}@{CLAUDE_CODE_VERSION} and is not on "
                "PATH; install Node.js 18+ with npm (https://nodejs.org), or set "
                "CLAUDE_POOL_CLAUDE_BIN to a claude binary"
            )
        command = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(dest),
            f"{NPM_PACKAGE}@{CLAUDE_CODE_VERSION}",
        ]
        shown = " ".join(command)
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise ClaudeCliInstallError(
                f"{shown} did not finish within {_INSTALL_TIMEOUT:g}s; check the network and "
                "the npm registry, then try again",
                command=shown,
            ) from exc
        except OSError as exc:
            raise ClaudeCliInstallError(
                f"{shown} could not be started: {exc.strerror or exc}", command=shown
            ) from exc
        if proc.returncode != 0:
            raise ClaudeCliInstallError(
                f"{shown} failed with exit code {proc.returncode}:\n{proc.stderr[-4000:]}",
                exit_code=proc.returncode,
                stderr=proc.stderr[-4000:],
                command=shown,
            )
        found = installed_claude(dest)
        if found is None:
            raise ClaudeCliInstallError(
                f"npm installed {NPM_PACKAGE}@{CLAUDE_CODE_VERSION} into {dest}, but no binary "
                f"there prints version {CLAUDE_CODE_VERSION}",
                command=shown,
            )
        return found


def ensure_claude() -> Path:
    """The CLI to test with, installing the pinned version if none is found."""
    return find_claude() or install_claude(install_dir())


def clean_env(parent: Mapping[str, str]) -> dict[str, str]:
    # A parent Claude session's variables make the child refuse to start or talk to the real API.
    return {
        key: value
        for key, value in parent.items()
        if key not in {"CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"}
        and not key.startswith(("ANTHROPIC_", "CLAUDE_CODE_"))
    }

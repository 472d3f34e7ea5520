"""Finding the Claude Code CLI the pool drives, and installing the pinned version.

:func:`find_claude` looks, in order, at ``$CLAUDE_POOL_CLAUDE_BIN`` (used as is), a ``claude``
on PATH of exactly the pinned version, and the copy installed in the cache directory;
:func:`install_claude` installs the pinned version there with npm. The cache is
``$CLAUDE_POOL_CACHE_DIR``, else ``<project>/.cache`` (``<project>``: the nearest directory
above the cwd holding ``pyproject.toml``).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "CLAUDE_CODE_VERSION",
    "NPM_PACKAGE",
    "cache_dir",
    "claude_version",
    "clean_env",
    "ensure_claude",
    "find_claude",
    "install_claude",
]

CLAUDE_CODE_VERSION = "2.1.330"
NPM_PACKAGE = "@anthropic-ai/claude-code"

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_VERSION_TIMEOUT = 30.0
_INSTALL_TIMEOUT = 600.0


def cache_dir() -> Path:
    """Where the CLI is installed: ``$CLAUDE_POOL_CACHE_DIR``, else ``<project>/.cache``."""
    override = os.environ.get("CLAUDE_POOL_CACHE_DIR")
    if override:
        return Path(override)
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file():
            return directory / ".cache"
    return here / ".cache"


def _install_dir(base: Path | None = None) -> Path:
    return (base or cache_dir()) / "claude-cli"


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


def _installed_candidates(install_dir: Path) -> Iterator[Path]:
    modules = install_dir / "node_modules"
    # The npm wrapper's bin is a hard link to the native binary when postinstall ran or the
    # package was hard-linked; otherwise only the platform package's binary works.
    yield modules / ".bin" / "claude"
    yield modules / "@anthropic-ai" / "claude-code" / "bin" / "claude.exe"
    yield from sorted(modules.glob("@anthropic-ai/claude-code-*/claude"))


def _find_installed(install_dir: Path) -> Path | None:
    for candidate in _installed_candidates(install_dir):
        if candidate.is_file() and claude_version(candidate) == CLAUDE_CODE_VERSION:
            return candidate
    return None


def find_claude() -> Path | None:
    """The CLI to test with, or None.

    In order: ``$CLAUDE_POOL_CLAUDE_BIN`` (used as is), a ``claude`` on PATH of exactly the
    pinned version (the tests and the mock rely on its exact behaviour; a newer one on PATH is
    common on a developer's machine), the copy installed in the project cache.
    """
    explicit = os.environ.get("CLAUDE_POOL_CLAUDE_BIN")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("claude")
    if on_path is not None and claude_version(Path(on_path)) == CLAUDE_CODE_VERSION:
        return Path(on_path)
    return _find_installed(_install_dir())


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
    second finds the finished install.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest / ".install.lock"):
        found = _find_installed(dest)
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                f"npm is needed to install {NPM_PACKAGE}@{CLAUDE_CODE_VERSION}; install Node.js "
                "or set CLAUDE_POOL_CLAUDE_BIN to a claude binary"
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
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed with exit code {proc.returncode}:\n"
                f"{proc.stderr[-4000:]}"
            )
        found = _find_installed(dest)
        if found is None:
            raise RuntimeError(
                f"npm installed {NPM_PACKAGE}@{CLAUDE_CODE_VERSION} into {dest}, but no binary "
                f"there prints version {CLAUDE_CODE_VERSION}"
            )
        return found


def ensure_claude() -> Path:
    """The CLI to test with, installing the pinned version if none is found."""
    return find_claude() or install_claude(_install_dir())


def clean_env(parent: Mapping[str, str]) -> dict[str, str]:
    # A parent Claude session's variables make the child refuse to start or talk to the real API.
    return {
        key: value
        for key, value in parent.items()
        if key not in {"CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"}
        and not key.startswith(("ANTHROPIC_", "CLAUDE_CODE_"))
    }

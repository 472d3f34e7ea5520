"""``claude-pool doctor``: is this machine ready to run a pool, and if not, what to fix.

Each check returns a :class:`Check` (``ok``, ``warn`` or ``fail``, what was found, and how to
fix it). Nothing here changes anything: the store is only opened when its schema is already
current (opening an older one would migrate it), and a store file that does not exist yet is
not created.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table
from rich.text import Text

from claude_pool import __version__
from claude_pool.config import Settings
from claude_pool.errors import ClaudePoolError, ConfigError
from claude_pool.executor.claude import MINIMUM_CLI_VERSION
from claude_pool.executor.locate import (
    CLAUDE_CODE_VERSION,
    claude_version,
    find_claude,
    install_dir,
)
from claude_pool.store import POSTGRES_EXTRA, is_postgres_url, open_store
from claude_pool.store.sqlite import APPLICATION_ID, SqliteStore, migrations
from claude_pool.types import microdollars_to_usd, now_ms

MOCK_KEY_PREFIX = "sk-ant-mock"
"""Keys the project's mock API hands out start with this; they are not real credentials."""

__all__ = [
    "INSTALLED_BY",
    "Check",
    "Status",
    "locate_claude",
    "print_report",
    "real_api_configured",
    "run_checks",
]

INSTALLED_BY = "`claude-pool install-cli`"
"""How :func:`locate_claude` says it found the copy in claude-pool's cache."""

_COMMAND_TIMEOUT = 15.0
_INSTALL_HINT = (
    "run `claude-pool install-cli` (it installs the tested version, "
    f"{CLAUDE_CODE_VERSION}, with npm), or set CLAUDE_POOL_CLAUDE_BIN to a claude binary"
)
_USE_INSTALLED = (
    "run `claude-pool install-cli` and set CLAUDE_POOL_CLAUDE_BIN to the path it prints"
)


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One finding: ``detail`` says what was found, ``fix`` what to do about it (if anything)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": str(self.status)}


# ── the claude binary ───────────────────────────────────────────────


def locate_claude(claude_bin: str | None) -> tuple[Path | None, str]:
    """The ``claude`` binary a pool with this ``claude_bin`` setting runs, and how it was found.

    The same order as the pool: the setting (``claude_bin`` / ``CLAUDE_POOL_CLAUDE_BIN``), a
    ``claude`` on PATH, then the copy ``claude-pool install-cli`` installs.
    """
    if claude_bin:
        found = shutil.which(claude_bin)
        return (Path(found) if found else None), f"claude_bin setting {claude_bin!r}"
    on_path = shutil.which("claude")
    if on_path is not None:
        return Path(on_path), "PATH"
    return find_claude(), INSTALLED_BY


def _parse(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_claude(settings: Settings | None) -> Check:
    path, how = locate_claude(settings.claude_bin if settings else None)
    if path is None:
        if settings and settings.claude_bin:
            detail = f"{settings.claude_bin!r} (the claude_bin setting) is not an executable"
        else:
            detail = f"no `claude` on PATH and none installed in {install_dir()}"
        return Check("claude CLI", Status.FAIL, detail, _INSTALL_HINT)
    version = claude_version(path)
    if version is None:
        return Check(
            "claude CLI",
            Status.FAIL,
            f"{path} (from {how}) does not answer `--version`",
            f"check that it runs; else {_INSTALL_HINT}",
        )
    found = f"{version} at {path} (from {how})"
    if _parse(version) < _parse(MINIMUM_CLI_VERSION):
        return Check(
            "claude CLI",
            Status.FAIL,
            f"{found}: older than {MINIMUM_CLI_VERSION}, the oldest claude-pool drives",
            f"upgrade it (`npm install -g @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}`), or "
            f"{_USE_INSTALLED}",
        )
    if version != CLAUDE_CODE_VERSION:
        return Check(
            "claude CLI",
            Status.WARN,
            f"{found}; claude-pool is tested with {CLAUDE_CODE_VERSION}",
            f"usually fine; if slots misbehave, try the tested version: {_USE_INSTALLED}",
        )
    return Check("claude CLI", Status.OK, found)


# ── credentials ─────────────────────────────────────────────────────


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def real_api_configured(env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """True when ``ANTHROPIC_API_KEY`` holds a key that is not the mock's."""
    env = os.environ if env is None else env
    key = env.get("ANTHROPIC_API_KEY", "")
    return bool(key) and not key.startswith(MOCK_KEY_PREFIX)


def check_credentials(env: dict[str, str] | os._Environ[str]) -> Check:
    base_url = env.get("ANTHROPIC_BASE_URL", "")
    where = f" (ANTHROPIC_BASE_URL={base_url})" if base_url else ""
    if real_api_configured(env):
        if base_url and _is_loopback_url(base_url):
            return Check(
                "credentials",
                Status.WARN,
                f"ANTHROPIC_API_KEY is set, but the API is a local server{where}",
                "fine for a proxy or the mock; unset ANTHROPIC_BASE_URL to use the real API",
            )
        return Check("credentials", Status.OK, f"ANTHROPIC_API_KEY is set{where}; the demo uses it")
    if env.get("ANTHROPIC_API_KEY"):
        return Check(
            "credentials",
            Status.WARN,
            f"ANTHROPIC_API_KEY is the mock API's key{where}",
            "set a real key to run real tasks; `claude-pool demo` uses the built-in mock",
        )
    others = [v for v in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN") if env.get(v)]
    if others:
        return Check(
            "credentials",
            Status.OK,
            f"{' and '.join(others)} set{where}; `claude-pool demo` still uses the built-in mock "
            "(it runs on the real API only with ANTHROPIC_API_KEY)",
        )
    return Check(
        "credentials",
        Status.WARN,
        "no ANTHROPIC_API_KEY: slots use whatever `claude` is logged in with; "
        "`claude-pool demo` runs against the built-in mock API",
        "export ANTHROPIC_API_KEY=sk-ant-... (or log in once by running `claude`)",
    )


# ── git ─────────────────────────────────────────────────────────────


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, cwd=cwd, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_git(settings: Settings | None, cwd: Path) -> list[Check]:
    git = shutil.which("git")
    isolation = bool(settings and settings.pool.worktree_isolation)
    if git is None:
        status = Status.FAIL if isolation else Status.WARN
        return [
            Check(
                "git",
                status,
                "git is not installed; worktree isolation and chains in worktrees need it",
                "install git (e.g. `apt-get install git`)",
            )
        ]
    version = _run([git, "--version"])
    found = version.stdout.strip() if version and version.returncode == 0 else git
    checks = [Check("git", Status.OK, found)]
    top = _run([git, "rev-parse", "--show-toplevel"], cwd=cwd) if cwd.is_dir() else None
    if top is not None and top.returncode == 0:
        checks.append(Check("git repository", Status.OK, f"{cwd} is in {top.stdout.strip()}"))
    else:
        checks.append(
            Check(
                "git repository",
                Status.FAIL if isolation else Status.WARN,
                f"{cwd} is not in a git repository: slots cannot get their own worktrees"
                + (" (worktree_isolation is on)" if isolation else ""),
                "run `git init` there (and commit), or work without worktree isolation",
            )
        )
    return checks


# ── the store ───────────────────────────────────────────────────────


def _sqlite_header(path: Path) -> tuple[int, int]:
    """``(user_version, application_id)`` of a SQLite file, read without changing it."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
    finally:
        conn.close()
    return version, app_id


async def check_store(settings: Settings) -> Check:
    url = settings.store
    if is_postgres_url(url):
        return await check_postgres_store(url)
    try:
        store = open_store(url)
    except ConfigError as exc:
        return Check("store", Status.FAIL, str(exc), "set --store / store to a SQLite file path")
    if not isinstance(store, SqliteStore):
        return Check("store", Status.OK, f"{url}: in memory, nothing is kept between commands")
    path = Path(store.path)
    found = _inspect_sqlite(path)
    if isinstance(found, Check):
        return found
    version = found
    try:
        await store.open()
        try:
            counts = await store.count_tasks()
            spend = await store.get_spend()
            alive_since = now_ms() - int(3 * settings.heartbeat_secs * 1000)
            workers = await store.live_workers(alive_since)
        finally:
            await store.close()
    except ClaudePoolError as exc:
        return Check("store", Status.FAIL, f"{path}: {exc}", "check the file and its permissions")
    total = sum(counts.values())
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n)
    tasks = f"{total} task(s)" + (f" ({by_state})" if by_state else "")
    return Check(
        "store",
        Status.OK,
        f"{path}: schema version {version}, {tasks}, spent ${microdollars_to_usd(spend):.4f}, "
        f"{len(workers)} live worker(s)",
    )


async def check_postgres_store(url: str) -> Check:
    """Connectivity, server version, schema version and permissions of a PostgreSQL store,
    looked at without changing it."""
    try:
        from claude_pool.store.postgres.health import inspect
    except ImportError:
        return Check(
            "store",
            Status.FAIL,
            f"{url.split('@')[-1]}: a PostgreSQL store, but psycopg is not installed",
            POSTGRES_EXTRA,
        )
    health = await inspect(url)
    return Check("store", Status(health.level), "; ".join(health.findings), "; ".join(health.fixes))


def _inspect_sqlite(path: Path) -> Check | int:
    """What is wrong with the SQLite file at ``path`` as a store (or why there is nothing to
    open), else its schema version, which is then current."""
    if not path.exists():
        parent = path.parent.resolve()
        if parent.is_dir() and os.access(parent, os.W_OK):
            return Check(
                "store", Status.OK, f"{path} does not exist yet; the first command creates it"
            )
        return Check(
            "store",
            Status.FAIL,
            f"{path} does not exist and {parent} is not a writable directory",
            "create the directory or choose another --store",
        )
    latest = migrations()[-1].version
    try:
        version, app_id = _sqlite_header(path)
        foreign = app_id not in (0, APPLICATION_ID) or (
            version == 0 and app_id == 0 and _has_tables(path)
        )
    except sqlite3.Error as exc:
        return Check(
            "store", Status.FAIL, f"{path} cannot be read as SQLite: {exc}", "choose another path"
        )
    if foreign:
        return Check(
            "store", Status.FAIL, f"{path} is not a claude-pool database", "choose another path"
        )
    if version > latest:
        return Check(
            "store",
            Status.FAIL,
            f"{path} has schema version {version}, newer than the {latest} this claude-pool knows",
            "upgrade claude-pool (pip install -U claude-pool)",
        )
    if version < latest:
        return Check(
            "store",
            Status.WARN,
            f"{path} has schema version {version}; the next command upgrades it to {latest}",
            "nothing to do (back up the file first if you may go back to an older claude-pool)",
        )
    return version


def _has_tables(path: Path) -> bool:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchone()
    finally:
        conn.close()
    return bool(row[0])


# ── node and npm ────────────────────────────────────────────────────


def check_node(claude_found: bool) -> Check:
    versions = []
    for tool in ("node", "npm"):
        path = shutil.which(tool)
        proc = _run([path, "--version"]) if path else None
        if proc is None or proc.returncode != 0:
            status = Status.WARN if claude_found else Status.FAIL
            need = "only needed to install or update" if claude_found else "needed to install"
            return Check(
                "node/npm",
                status,
                f"`{tool}` not found ({need} the claude CLI)",
                "install Node.js 18+ with npm (https://nodejs.org)",
            )
        versions.append(f"{tool} {proc.stdout.strip()}")
    return Check("node/npm", Status.OK, ", ".join(versions))


# ── all of it ───────────────────────────────────────────────────────


async def run_checks(
    settings: Settings | None,
    *,
    config_error: str | None = None,
    env: dict[str, str] | os._Environ[str] | None = None,
) -> list[Check]:
    """Every check, in the order they are shown. ``settings`` is None when the configuration
    could not be loaded (``config_error`` says why); the checks that need it use defaults."""
    env = os.environ if env is None else env
    python = f"{__version__} on Python {sys.version.split()[0]}"
    checks = [Check("claude-pool", Status.OK, python)]
    if config_error is not None:
        checks.append(Check("config", Status.FAIL, config_error, "fix the setting named above"))
    claude = check_claude(settings)
    checks.append(claude)
    checks.append(check_credentials(env))
    cwd = Path(settings.cwd if settings and settings.cwd else os.getcwd())
    checks.extend(check_git(settings, cwd))
    checks.append(await check_store(settings or Settings()))
    checks.append(check_node(claude.status is not Status.FAIL))
    return checks


_STYLE = {Status.OK: "bold green", Status.WARN: "bold yellow", Status.FAIL: "bold red"}


def print_report(checks: list[Check], console: Console) -> None:
    table = Table(title="claude-pool doctor")
    table.add_column("check", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("found (and what to do)", overflow="fold")
    for check in checks:
        found = Text(check.detail)
        if check.fix:
            found.append(f"\n→ {check.fix}", style="dim")
        table.add_row(check.name, Text(check.status.upper(), style=_STYLE[check.status]), found)
    console.print(table)
    fails = sum(1 for c in checks if c.status is Status.FAIL)
    warns = sum(1 for c in checks if c.status is Status.WARN)
    if fails:
        console.print(f"[bold red]{fails} problem(s) to fix[/], {warns} warning(s)")
    elif warns:
        console.print(f"[bold green]ready[/], with {warns} warning(s)")
    else:
        console.print("[bold green]ready[/]")

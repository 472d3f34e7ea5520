"""``claude-pool install-cli``: install the Claude Code CLI version claude-pool is tested with."""

from __future__ import annotations

import os
from typing import Any

import typer

from claude_pool.cli.common import EXIT_OK, EXIT_TASK_FAILED, JsonOpt, _print_json, err, out
from claude_pool.errors import ClaudeCliInstallError
from claude_pool.executor.locate import (
    CLAUDE_CODE_VERSION,
    NPM_PACKAGE,
    install_claude,
    install_dir,
    installed_claude,
)


def install_cli(as_json: JsonOpt = False) -> None:
    """Install the Claude Code CLI version claude-pool is tested with (needs npm).

    It goes into claude-pool's cache ($CLAUDE_POOL_CACHE_DIR, else the per-user cache
    directory), where every claude-pool command finds it from any folder; nothing is done if
    it is already there."""
    from claude_pool.doctor import locate_claude

    dest = install_dir()
    binary = installed_claude(dest)
    already = binary is not None
    if binary is None:
        err.print(
            f"installing {NPM_PACKAGE}@{CLAUDE_CODE_VERSION} into {dest} with npm…",
            highlight=False,
        )
        try:
            binary = install_claude(dest)
        except ClaudeCliInstallError as exc:
            if as_json:
                _print_json({"ok": False, "error": str(exc), "install_dir": str(dest)})
            else:
                err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(EXIT_TASK_FAILED) from None
    # Pools run a `claude` on PATH (or the claude_bin setting) before this copy.
    used, how = locate_claude(os.environ.get("CLAUDE_POOL_CLAUDE_BIN") or None)
    shadowed = used is not None and used.resolve() != binary.resolve()
    if as_json:
        report: dict[str, Any] = {
            "ok": True,
            "version": CLAUDE_CODE_VERSION,
            "path": str(binary),
            "install_dir": str(dest),
            "already_installed": already,
            "pools_use": str(used) if used is not None else None,
        }
        _print_json(report)
        raise typer.Exit(EXIT_OK)
    verb = "is already installed" if already else "installed"
    out.print(f"claude {CLAUDE_CODE_VERSION} {verb} at {binary}", highlight=False)
    if shadowed:
        out.print(
            f"note: pools run {used} first (from {how}); to use this one, set "
            f"CLAUDE_POOL_CLAUDE_BIN={binary}",
            highlight=False,
        )

"""Which Claude Code CLI the tests (and the pool's fallback) use."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_pool.executor.locate import cache_dir, install_dir
from claude_pool.testing.claude_cli import CLAUDE_CODE_VERSION, find_claude

CHECKOUT = Path(__file__).resolve().parents[1]


def fake_claude(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "claude"
    binary.write_text(f'#!/bin/sh\necho "{version} (Claude Code)"\n')
    binary.chmod(0o755)
    return binary


def test_a_newer_claude_on_path_is_not_taken_for_the_pinned_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a newer `claude` on PATH was used, and tests written against the pinned
    version's behaviour failed on a developer's machine."""
    newer = fake_claude(tmp_path / "newer", "2.99.0")
    monkeypatch.delenv("CLAUDE_POOL_CLAUDE_BIN", raising=False)
    monkeypatch.setenv("PATH", f"{newer.parent}:/usr/bin:/bin")
    assert find_claude() != newer


def test_a_claude_of_the_pinned_version_on_path_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = fake_claude(tmp_path / "pinned", CLAUDE_CODE_VERSION)
    monkeypatch.delenv("CLAUDE_POOL_CLAUDE_BIN", raising=False)
    monkeypatch.setenv("PATH", f"{pinned.parent}:/usr/bin:/bin")
    assert find_claude() == pinned


def test_an_explicit_binary_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = fake_claude(tmp_path / "explicit", "1.0.0")
    monkeypatch.setenv("CLAUDE_POOL_CLAUDE_BIN", str(explicit))
    assert find_claude() == explicit


def test_claude_pool_cache_dir_names_where_the_cli_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDE_POOL_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert install_dir() == tmp_path / "cache" / "claude-cli"


def test_a_checkout_keeps_the_cli_in_its_own_cache_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `make setup` and the test suite rely on: the package runs from this checkout."""
    monkeypatch.delenv("CLAUDE_POOL_CACHE_DIR", raising=False)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    monkeypatch.chdir(tmp_path)
    assert cache_dir() == CHECKOUT / ".cache"


def test_the_installed_cli_is_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "cache" / "claude-cli" / "node_modules" / ".bin"
    installed = fake_claude(bin_dir, CLAUDE_CODE_VERSION)
    monkeypatch.setenv("CLAUDE_POOL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CLAUDE_POOL_CLAUDE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-claude-here"))
    elsewhere = tmp_path / "some" / "project"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert find_claude() == installed

"""docs/configuration.md is generated from the settings models and cannot drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_pool.config import load_settings
from claude_pool.config_reference import REGENERATE, Entry, render, sections
from claude_pool.errors import ConfigError

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def entries() -> dict[str, Entry]:
    return {entry.key: entry for section in sections()[:4] for entry in section.entries}


def test_the_configuration_reference_is_up_to_date() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), f"run make docs (or {REGENERATE})"


def test_every_setting_in_the_reference_says_what_it_does() -> None:
    quiet = sorted(
        f"{section.title}: {entry.key}"
        for section in sections()
        for entry in section.entries
        if not entry.description
    )
    assert quiet == [], "write a docstring under the field"


def test_every_environment_variable_in_the_reference_is_one_the_loader_reads() -> None:
    variables = [entry.env for entry in entries().values() if entry.env]
    assert len(variables) > 30
    # An unknown CLAUDE_POOL_* variable is an error even when empty; an empty known one is unset.
    load_settings(env=dict.fromkeys(variables, ""))
    with pytest.raises(ConfigError, match="unknown claude-pool environment variable"):
        load_settings(env={"CLAUDE_POOL_NO_SUCH_SETTING": ""})


def test_the_reference_spells_each_setting_as_each_source_does(tmp_path: Path) -> None:
    found = entries()
    assert (found["task_timeout_secs"].env, found["task_timeout_secs"].flag) == (
        "CLAUDE_POOL_TASK_TIMEOUT_SECS",
        "`--task-timeout`",
    )
    assert found["scaling_max_slots"].toml == "[scaling] max_slots"
    assert found["supervisor_enabled"].flag == "`--supervisor` / `--no-supervisor`"
    assert found["allowed_tools"].flag == "`--allowed-tool` (repeatable)"
    assert found["mcp_servers"].flag == "`--mcp-config`"
    assert found["tokens"].toml == ""
    assert found["heartbeat_secs"].flag is None
    # ...and what it says is what the loader does.
    config = tmp_path / "pool.toml"
    config.write_text("[scaling]\nmax_slots = 5\n")
    settings = load_settings(
        config, env={"CLAUDE_POOL_TASK_TIMEOUT_SECS": "60"}, supervisor_enabled=True
    )
    assert settings.pool.scaling.max_slots == 5
    assert settings.task_timeout_secs == 60
    assert settings.pool.supervisor_enabled

"""Configuration: layering pool → slot → task (SPEC §2), and loading settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from claude_pool.config import EffectiveConfig, Settings, effective_config, load_settings
from claude_pool.errors import ConfigError
from claude_pool.types import (
    Effort,
    PermissionMode,
    PoolConfig,
    ScalingConfig,
    SlotConfig,
    TaskOverrides,
)

# ── Part 1: layering ──

SCALARS: list[tuple[str, Any, Any, Any]] = [
    ("model", "pool-model", "slot-model", "task-model"),
    ("max_turns", 10, 20, 30),
    ("system_prompt", "pool prompt", "slot prompt", "task prompt"),
    ("effort", Effort.LOW, Effort.HIGH, Effort.XHIGH),
    ("fallback_model", "pool-fb", "slot-fb", "task-fb"),
    (
        "permission_mode",
        PermissionMode.ACCEPT_EDITS,
        PermissionMode.BYPASS_PERMISSIONS,
        PermissionMode.AUTO,
    ),
]


@pytest.mark.parametrize(("name", "pool", "slot", "task"), SCALARS)
def test_scalar_takes_task_over_slot_over_pool(name: str, pool: Any, slot: Any, task: Any) -> None:
    pool_config = PoolConfig(**{name: pool})
    slot_config = SlotConfig(**{name: slot})
    task_config = TaskOverrides(**{name: task})
    assert getattr(effective_config(pool_config, slot_config, task_config), name) == task
    assert getattr(effective_config(pool_config, slot_config, TaskOverrides()), name) == slot
    assert getattr(effective_config(pool_config, SlotConfig(), TaskOverrides()), name) == pool
    assert getattr(effective_config(pool_config, None, task_config), name) == task


@pytest.mark.parametrize(("name", "pool", "slot", "task"), SCALARS)
def test_scalar_unset_at_task_and_slot_falls_through(
    name: str, pool: Any, slot: Any, task: Any
) -> None:
    pool_config = PoolConfig(**{name: pool})
    assert getattr(effective_config(pool_config), name) == pool
    assert getattr(effective_config(pool_config, SlotConfig(**{name: slot})), name) == slot


def test_nothing_set_anywhere_gives_the_seed_defaults() -> None:
    assert effective_config(PoolConfig()) == EffectiveConfig(
        model=None,
        permission_mode=PermissionMode.PLAN,
        max_turns=None,
        system_prompt=None,
        allowed_tools=(),
        disallowed_tools=(),
        tools=None,
        mcp_servers={},
        strict_mcp_config=True,
        effort=None,
        fallback_model=None,
        json_schema=None,
        max_budget_usd=None,
    )


def test_permission_mode_falls_back_to_plan() -> None:
    assert effective_config(PoolConfig()).permission_mode is PermissionMode.PLAN
    assert effective_config(PoolConfig(permission_mode=None)).permission_mode is PermissionMode.PLAN


def test_unattended_mode_defaults_to_dont_ask_when_no_mode_is_set_anywhere() -> None:
    config = effective_config(PoolConfig(unattended_mode=True), SlotConfig(), TaskOverrides())
    assert config.permission_mode is PermissionMode.DONT_ASK


def test_unattended_mode_default_survives_a_json_round_trip_of_the_pool_config() -> None:
    pool = PoolConfig.model_validate_json(PoolConfig(unattended_mode=True).model_dump_json())
    assert effective_config(pool).permission_mode is PermissionMode.DONT_ASK


def test_unattended_mode_applies_when_unattended_is_set_after_construction() -> None:
    pool = PoolConfig().model_copy(update={"unattended_mode": True})
    assert effective_config(pool).permission_mode is PermissionMode.DONT_ASK


def test_unattended_mode_with_an_explicit_null_mode_defaults_to_dont_ask() -> None:
    pool = PoolConfig.model_validate({"permission_mode": None, "unattended_mode": True})
    assert effective_config(pool).permission_mode is PermissionMode.DONT_ASK


def test_unattended_mode_respects_an_explicit_mode_at_any_level() -> None:
    explicit_pool = PoolConfig(unattended_mode=True, permission_mode=PermissionMode.PLAN)
    assert effective_config(explicit_pool).permission_mode is PermissionMode.PLAN
    unattended = PoolConfig(unattended_mode=True)
    slot = SlotConfig(permission_mode=PermissionMode.ACCEPT_EDITS)
    assert effective_config(unattended, slot).permission_mode is PermissionMode.ACCEPT_EDITS
    task = TaskOverrides(permission_mode=PermissionMode.DEFAULT)
    assert effective_config(unattended, slot, task).permission_mode is PermissionMode.DEFAULT


def test_allowed_tools_concatenate_pool_slot_task_in_order_without_duplicates() -> None:
    config = effective_config(
        PoolConfig(allowed_tools=["Read", "Grep"]),
        SlotConfig(allowed_tools=["Edit", "Read", "Bash(git:*)"]),
        TaskOverrides(allowed_tools=["Grep", "Write", "Edit", "Write"]),
    )
    assert config.allowed_tools == ("Read", "Grep", "Edit", "Bash(git:*)", "Write")


def test_allowed_tools_missing_at_some_levels_still_concatenate() -> None:
    config = effective_config(PoolConfig(), None, TaskOverrides(allowed_tools=["Read"]))
    assert config.allowed_tools == ("Read",)
    config = effective_config(PoolConfig(allowed_tools=["A"]), SlotConfig(allowed_tools=["B"]))
    assert config.allowed_tools == ("A", "B")


def test_mcp_servers_merge_by_name_task_over_slot_over_pool() -> None:
    config = effective_config(
        PoolConfig(mcp_servers={"a": {"command": "pool-a"}, "b": {"command": "pool-b"}}),
        SlotConfig(mcp_servers={"b": {"command": "slot-b"}, "c": {"command": "slot-c"}}),
        TaskOverrides(mcp_servers={"c": {"command": "task-c"}, "d": {"url": "http://d"}}),
    )
    assert config.mcp_servers == {
        "a": {"command": "pool-a"},
        "b": {"command": "slot-b"},
        "c": {"command": "task-c"},
        "d": {"url": "http://d"},
    }


def test_layering_does_not_modify_the_inputs() -> None:
    pool = PoolConfig(mcp_servers={"a": {"command": "x"}}, allowed_tools=["Read"])
    effective_config(pool, SlotConfig(mcp_servers={"b": {}}), TaskOverrides(allowed_tools=["E"]))
    assert pool.mcp_servers == {"a": {"command": "x"}}
    assert pool.allowed_tools == ["Read"]


def test_per_task_only_knobs_come_from_the_task() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    config = effective_config(
        PoolConfig(),
        SlotConfig(),
        TaskOverrides(
            disallowed_tools=["Bash", "Bash", "WebFetch"],
            tools=["Read", "Grep"],
            json_schema=schema,
            max_budget_usd=0.25,
        ),
    )
    assert config.disallowed_tools == ("Bash", "WebFetch")
    assert config.tools == ("Read", "Grep")
    assert config.json_schema == schema
    assert config.max_budget_usd == 0.25


def test_an_empty_builtin_tool_selection_is_kept_distinct_from_none() -> None:
    assert effective_config(PoolConfig(), None, TaskOverrides(tools=[])).tools == ()
    assert effective_config(PoolConfig()).tools is None


def test_strict_mcp_config_is_pool_wide() -> None:
    assert effective_config(PoolConfig()).strict_mcp_config is True
    lax = PoolConfig(strict_mcp_config=False)
    assert effective_config(lax, SlotConfig(), TaskOverrides()).strict_mcp_config is False


# ── Part 2: loading settings ──


def write(tmp_path: Path, text: str, name: str = "claude-pool.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(*args: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    return info.value


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Default-file discovery looks in the working directory; keep it empty and private.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def test_no_file_no_env_no_arguments_gives_the_defaults() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert settings.slots == 2
    assert settings.store == "claude-pool.db"
    assert settings.task_timeout_secs == 1800
    assert settings.drain_grace_secs == 30
    assert settings.recovery == "requeue"
    assert settings.heartbeat_secs == 5
    assert settings.pool.permission_mode is PermissionMode.PLAN
    assert "permission_mode" not in settings.pool.model_fields_set


def test_a_full_file_loads_every_kind_of_setting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
model = "claude-haiku-4-5"
permission_mode = "acceptEdits"
effort = "xhigh"
max_turns = 8
allowed_tools = ["Read", "Grep"]
budget_usd = 2.5
slot_mode = "ephemeral"
worktree_isolation = true
strict_mcp_config = false
slots = 3
store = ":memory:"
task_timeout_secs = 60
drain_grace_secs = 0
recovery = "fail"
auto_scale = true
scale_idle_secs = 12.5
heartbeat_secs = 1
claude_bin = "claude"

[scaling]
min_slots = 1
max_slots = 4

[mcp_servers.files]
command = "npx"
args = ["-y", "@mcp/files"]

[mcp_servers.web]
type = "http"
url = "http://localhost:9000/mcp"

[[slot]]
name = "reviewer"
role = "review"
permission_mode = "plan"
allowed_tools = ["Read"]

[[slot]]
name = "coder"
model = "claude-sonnet-4-5"
mcp_servers = { git = { command = "git-mcp" } }

[env]
GIT_AUTHOR_NAME = "pool"
""",
    )
    settings = load_settings(path, env={})
    pool = settings.pool
    assert pool.model == "claude-haiku-4-5"
    assert pool.permission_mode is PermissionMode.ACCEPT_EDITS
    assert pool.effort is Effort.XHIGH
    assert pool.max_turns == 8
    assert pool.allowed_tools == ["Read", "Grep"]
    assert pool.budget_microdollars == 2_500_000
    assert pool.slot_mode == "ephemeral"
    assert pool.worktree_isolation is True
    assert pool.strict_mcp_config is False
    assert pool.scaling == ScalingConfig(min_slots=1, max_slots=4)
    assert pool.mcp_servers == {
        "files": {"command": "npx", "args": ["-y", "@mcp/files"]},
        "web": {"type": "http", "url": "http://localhost:9000/mcp"},
    }
    assert settings.slots == 3
    assert settings.store == ":memory:"
    assert settings.task_timeout_secs == 60
    assert settings.drain_grace_secs == 0
    assert settings.recovery == "fail"
    assert settings.auto_scale is True
    assert settings.scale_idle_secs == 12.5
    assert settings.heartbeat_secs == 1
    assert settings.claude_bin == "claude"
    assert settings.slot_configs == [
        SlotConfig(
            name="reviewer",
            role="review",
            permission_mode=PermissionMode.PLAN,
            allowed_tools=["Read"],
        ),
        SlotConfig(
            name="coder", model="claude-sonnet-4-5", mcp_servers={"git": {"command": "git-mcp"}}
        ),
    ]
    assert settings.env == {"GIT_AUTHOR_NAME": "pool"}


def test_budget_microdollars_can_be_given_directly(tmp_path: Path) -> None:
    path = write(tmp_path, "budget_microdollars = 5000000\n")
    assert load_settings(path, env={}).pool.budget_microdollars == 5_000_000


@pytest.mark.parametrize(
    ("usd", "micro"), [("5.0", 5_000_000), ("0.0000025", 3), ("0", 0), ("12", 12_000_000)]
)
def test_budget_usd_converts_to_rounded_microdollars(tmp_path: Path, usd: str, micro: int) -> None:
    path = write(tmp_path, f"budget_usd = {usd}\n")
    assert load_settings(path, env={}).pool.budget_microdollars == micro
    env = {"CLAUDE_POOL_BUDGET_USD": usd}
    assert load_settings(env=env).pool.budget_microdollars == micro
    assert load_settings(env={}, budget_usd=float(usd)).pool.budget_microdollars == micro


def test_a_higher_source_budget_usd_replaces_a_file_budget_microdollars(tmp_path: Path) -> None:
    path = write(tmp_path, "budget_microdollars = 1\n")
    settings = load_settings(path, env={"CLAUDE_POOL_BUDGET_USD": "3"})
    assert settings.pool.budget_microdollars == 3_000_000


def test_env_overrides_file_and_arguments_override_env(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "from-file"\nmax_turns = 1\nstore = "/data/file.db"\n')
    env = {"CLAUDE_POOL_MODEL": "from-env", "CLAUDE_POOL_MAX_TURNS": "2"}
    settings = load_settings(path, env=env, model="from-arg")
    assert settings.pool.model == "from-arg"
    assert settings.pool.max_turns == 2
    assert settings.store == "/data/file.db"


def test_none_arguments_mean_not_given(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "from-file"\n')
    settings = load_settings(path, env={"CLAUDE_POOL_SLOTS": "3"}, model=None, slots=None)
    assert settings.pool.model == "from-file"
    assert settings.slots == 3


def test_env_values_are_converted_to_their_types() -> None:
    env = {
        "CLAUDE_POOL_SLOTS": "4",
        "CLAUDE_POOL_UNATTENDED_MODE": "true",
        "CLAUDE_POOL_WORKTREE_ISOLATION": "0",
        "CLAUDE_POOL_ALLOWED_TOOLS": "Read, Grep,,Bash(git:*)",
        "CLAUDE_POOL_SCALING_MAX_SLOTS": "8",
        "CLAUDE_POOL_SCALING_MIN_SLOTS": "2",
        "CLAUDE_POOL_TASK_TIMEOUT_SECS": "none",
        "CLAUDE_POOL_HEARTBEAT_SECS": "0.5",
        "CLAUDE_POOL_CLAUDE_BIN": "/opt/claude/bin/claude",
        "CLAUDE_POOL_EFFORT": "max",
        "CLAUDE_POOL_RECOVERY": "fail",
    }
    settings = load_settings(env=env)
    assert settings.slots == 4
    assert settings.pool.unattended_mode is True
    assert settings.pool.worktree_isolation is False
    assert settings.pool.allowed_tools == ["Read", "Grep", "Bash(git:*)"]
    assert settings.pool.scaling == ScalingConfig(min_slots=2, max_slots=8)
    assert settings.task_timeout_secs is None
    assert settings.heartbeat_secs == 0.5
    assert settings.claude_bin == "/opt/claude/bin/claude"
    assert settings.pool.effort is Effort.MAX
    assert settings.recovery == "fail"


def test_unattended_mode_from_env_makes_dont_ask_the_default_mode() -> None:
    settings = load_settings(env={"CLAUDE_POOL_UNATTENDED_MODE": "true"})
    assert effective_config(settings.pool).permission_mode is PermissionMode.DONT_ASK


def test_an_explicit_permission_mode_wins_over_unattended_mode(tmp_path: Path) -> None:
    path = write(tmp_path, 'unattended_mode = true\npermission_mode = "plan"\n')
    settings = load_settings(path, env={})
    assert effective_config(settings.pool).permission_mode is PermissionMode.PLAN


def test_empty_env_values_count_as_not_set(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "from-file"\n')
    assert load_settings(path, env={"CLAUDE_POOL_MODEL": ""}).pool.model == "from-file"


def test_unrelated_environment_variables_are_ignored() -> None:
    settings = load_settings(env={"HOME": "/root", "CLAUDE_POOLX": "1", "ANTHROPIC_MODEL": "m"})
    assert settings == Settings()


def test_mcp_servers_and_env_entries_merge_by_name_across_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[mcp_servers.a]
command = "file-a"
[mcp_servers.b]
command = "file-b"
[env]
A = "file"
B = "file"
""",
    )
    settings = load_settings(
        path,
        env={},
        mcp_servers={"b": {"command": "arg-b"}, "c": {"command": "arg-c"}},
    )
    assert settings.pool.mcp_servers == {
        "a": {"command": "file-a"},
        "b": {"command": "arg-b"},
        "c": {"command": "arg-c"},
    }
    assert load_settings(path, env={}).env == {"A": "file", "B": "file"}


def test_arguments_accept_slot_configs_and_paths(tmp_path: Path) -> None:
    settings = load_settings(
        env={},
        slot_configs=[SlotConfig(name="a"), {"name": "b", "effort": "low"}],
        store=tmp_path / "pool.db",
        allowed_tools="Read,Edit",
        slots=2,
    )
    assert [c.name for c in settings.slot_configs] == ["a", "b"]
    assert settings.slot_configs[1].effort is Effort.LOW
    assert settings.store == str(tmp_path / "pool.db")
    assert settings.pool.allowed_tools == ["Read", "Edit"]


def test_slot_tables_from_a_file_are_replaced_by_slot_configs_given_as_argument(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[[slot]]\nname = "one"\n[[slot]]\nname = "two"\n')
    settings = load_settings(path, env={}, slot_configs=[SlotConfig(name="only")])
    assert [c.name for c in settings.slot_configs] == ["only"]


def test_config_path_comes_from_claude_pool_config(tmp_path: Path) -> None:
    path = write(tmp_path, 'model = "named-by-env"\n', name="elsewhere.toml")
    settings = load_settings(env={"CLAUDE_POOL_CONFIG": str(path)})
    assert settings.pool.model == "named-by-env"


def test_claude_pool_toml_in_the_working_directory_is_read_by_default() -> None:
    Path("claude-pool.toml").write_text('model = "default-file"\n')
    assert load_settings(env={}).pool.model == "default-file"


def test_an_explicit_path_wins_over_claude_pool_config(tmp_path: Path) -> None:
    named = write(tmp_path, 'model = "named"\n', name="named.toml")
    given = write(tmp_path, 'model = "given"\n', name="given.toml")
    settings = load_settings(given, env={"CLAUDE_POOL_CONFIG": str(named)})
    assert settings.pool.model == "given"


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(
        conf_dir,
        'store = "data/pool.db"\ncwd = "work"\nworktree_base_dir = "/abs/wt"\n'
        'claude_bin = "bin/claude"\n',
    )
    settings = load_settings(path, env={})
    base = conf_dir.resolve()
    assert settings.store == str(base / "data" / "pool.db")
    assert settings.cwd == str(base / "work")
    assert settings.pool.worktree_base_dir == "/abs/wt"
    assert settings.claude_bin == str(base / "bin" / "claude")


@pytest.mark.parametrize("store", [":memory:", "postgresql://pool@db/pool"])
def test_memory_and_url_stores_are_not_treated_as_paths(tmp_path: Path, store: str) -> None:
    path = write(tmp_path, f'store = "{store}"\n')
    assert load_settings(path, env={}).store == store


def test_slots_default_fits_the_scaling_bounds(tmp_path: Path) -> None:
    assert load_settings(env={"CLAUDE_POOL_SCALING_MAX_SLOTS": "1"}).slots == 1
    assert load_settings(env={"CLAUDE_POOL_SCALING_MIN_SLOTS": "5"}).slots == 5
    path = write(tmp_path, "[[slot]]\n[[slot]]\n[[slot]]\n")
    assert load_settings(path, env={}).slots == 3


def test_settings_built_directly_check_slots_against_scaling() -> None:
    pool = PoolConfig(scaling=ScalingConfig(min_slots=1, max_slots=2))
    with pytest.raises(ValueError, match="slots=3"):
        Settings(pool=pool, slots=3)
    assert Settings(pool=pool).slots == 2


def test_settings_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="slot_count"):
        Settings(slot_count=3)  # type: ignore[call-arg]


# ── Part 2: error paths ──


def test_unknown_file_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, 'permision_mode = "plan"\n')
    error = config_error(path, env={})
    assert error.key == "permision_mode"
    assert error.value == "plan"
    assert "did you mean 'permission_mode'" in str(error)
    assert str(path) in str(error)


def test_unknown_table_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[scaling]\nmax_slot = 3\n")
    error = config_error(path, env={})
    assert error.key == "scaling.max_slot"
    assert "did you mean 'max_slots'" in str(error)


def test_unknown_slot_key_is_an_error_naming_the_slot(tmp_path: Path) -> None:
    path = write(tmp_path, '[[slot]]\nname = "a"\n[[slot]]\nmodle = "x"\n')
    error = config_error(path, env={})
    assert error.key == "slot[1].modle"
    assert error.value == "x"
    assert "did you mean 'model'" in str(error)


def test_misspelt_table_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, '[mcp_server.x]\ncommand = "y"\n')
    error = config_error(path, env={})
    assert error.key == "mcp_server"
    assert "did you mean 'mcp_servers'" in str(error)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("scaling = 3\n", "scaling"),
        ("mcp_servers = 1\n", "mcp_servers"),
        ('mcp_servers = { x = "not a table" }\n', "mcp_servers.x"),
        ('env = "A=1"\n', "env"),
        ("slot = 2\n", "slot"),
    ],
)
def test_tables_of_the_wrong_shape_are_errors(tmp_path: Path, text: str, key: str) -> None:
    error = config_error(write(tmp_path, text), env={})
    assert error.key == key
    assert str(tmp_path) in str(error)


def test_bad_enum_value_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, 'permission_mode = "accept_edits"\n')
    error = config_error(path, env={})
    assert error.key == "permission_mode"
    assert error.value == "accept_edits"
    message = str(error)
    for allowed in ("default", "acceptEdits", "bypassPermissions", "dontAsk", "plan", "auto"):
        assert allowed in message
    assert "did you mean 'acceptEdits'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("var", "value", "key", "allowed"),
    [
        ("CLAUDE_POOL_EFFORT", "extreme", "effort", "xhigh"),
        ("CLAUDE_POOL_RECOVERY", "retry", "recovery", "requeue"),
        ("CLAUDE_POOL_SLOT_MODE", "temporary", "slot_mode", "ephemeral"),
    ],
)
def test_bad_enum_from_env_names_the_variable(var: str, value: str, key: str, allowed: str) -> None:
    error = config_error(env={var: value})
    assert error.key == key
    assert error.value == value
    assert allowed in str(error)
    assert var in str(error)


def test_unknown_env_variable_is_an_error_naming_it() -> None:
    error = config_error(env={"CLAUDE_POOL_MODLE": "x"})
    assert error.key == "CLAUDE_POOL_MODLE"
    assert error.value == "x"
    assert "did you mean 'CLAUDE_POOL_MODEL'" in str(error)


def test_unknown_argument_is_an_error_even_when_none() -> None:
    assert config_error(env={}, slot=None).key == "slot"


def test_unknown_argument_is_an_error_with_a_suggestion() -> None:
    error = config_error(env={}, modle="x")
    assert error.key == "modle"
    assert "did you mean 'model'" in str(error)
    assert "argument" in str(error)


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"CLAUDE_POOL_SLOTS": "many"}, "slots", "many"),
        ({"CLAUDE_POOL_MAX_TURNS": "0"}, "max_turns", "0"),
        ({"CLAUDE_POOL_UNATTENDED_MODE": "perhaps"}, "unattended_mode", "perhaps"),
        ({"CLAUDE_POOL_HEARTBEAT_SECS": "-1"}, "heartbeat_secs", "-1"),
        ({"CLAUDE_POOL_TASK_TIMEOUT_SECS": "0"}, "task_timeout_secs", "0"),
        ({"CLAUDE_POOL_SCALING_MAX_SLOTS": "0"}, "scaling_max_slots", "0"),
        ({"CLAUDE_POOL_BUDGET_MICRODOLLARS": "1.5"}, "budget_microdollars", "1.5"),
    ],
)
def test_bad_env_value_names_key_value_and_variable(
    env: dict[str, str], key: str, value: str
) -> None:
    error = config_error(env=env)
    assert error.key == key
    assert error.value == value
    (var,) = env
    assert f"environment variable {var}" in str(error)
    assert repr(value) in str(error)


@pytest.mark.parametrize("usd", ["-1", "lots", "inf", "nan"])
def test_bad_budget_usd_is_an_error(usd: str) -> None:
    error = config_error(env={"CLAUDE_POOL_BUDGET_USD": usd})
    assert error.key == "budget_usd"
    assert "CLAUDE_POOL_BUDGET_USD" in str(error)


def test_budget_usd_and_microdollars_together_in_one_source_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "budget_usd = 1.0\nbudget_microdollars = 5\n")
    error = config_error(path, env={})
    assert "not both" in str(error)
    assert str(path) in str(error)


def test_bad_file_value_names_key_value_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'max_restarts = -1\nstore = ""\n')
    error = config_error(path, env={})
    assert error.key == "max_restarts"
    assert error.value == -1
    assert str(path) in str(error)


def test_bad_argument_value_names_the_argument() -> None:
    error = config_error(env={}, drain_grace_secs=-5)
    assert error.key == "drain_grace_secs"
    assert error.value == -5
    assert "argument drain_grace_secs" in str(error)


def test_bad_slot_table_value_names_the_slot_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, '[[slot]]\nname = "a"\n[[slot]]\neffort = "huge"\n')
    error = config_error(path, env={})
    assert error.key == "slot[1].effort"
    assert error.value == "huge"
    assert "xhigh" in str(error)
    assert str(path) in str(error)


def test_non_string_env_entry_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[env]\nRETRIES = 3\n")
    error = config_error(path, env={})
    assert error.key == "env.RETRIES"
    assert error.value == 3


def test_slots_above_max_slots_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "slots = 9\n[scaling]\nmax_slots = 4\n")
    error = config_error(path, env={})
    assert error.key == "slots"
    assert error.value == 9
    assert "1..4" in str(error)
    assert str(path) in str(error)


def test_slots_below_min_slots_is_an_error() -> None:
    error = config_error(env={"CLAUDE_POOL_SCALING_MIN_SLOTS": "3"}, slots=1)
    assert error.key == "slots"
    assert error.value == 1
    assert "3..16" in str(error)
    assert "argument slots" in str(error)


def test_no_slots_lowers_an_unset_slot_floor_to_zero_and_keeps_a_set_one() -> None:
    # A pool of 0 slots only queues, for the workers sharing its store.
    assert load_settings(env={}, slots=0).pool.scaling.min_slots == 0
    assert load_settings(env={}).pool.scaling.min_slots == 1
    error = config_error(env={"CLAUDE_POOL_SCALING_MIN_SLOTS": "1"}, slots=0)
    assert error.key == "slots"
    assert "1..16" in str(error)


def test_min_slots_above_max_slots_is_an_error() -> None:
    env = {"CLAUDE_POOL_SCALING_MIN_SLOTS": "5", "CLAUDE_POOL_SCALING_MAX_SLOTS": "2"}
    error = config_error(env=env)
    assert error.key == "scaling_min_slots"
    assert error.value == 5
    assert "max_slots (2)" in str(error)
    assert "CLAUDE_POOL_SCALING_MIN_SLOTS" in str(error)


def test_more_slot_tables_than_slots_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "slots = 1\n[[slot]]\n[[slot]]\n")
    error = config_error(path, env={})
    assert error.key == "slots"
    assert error.value == 1
    assert "2 slot configurations" in str(error)


def test_more_slot_tables_than_max_slots_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[scaling]\nmax_slots = 1\n[[slot]]\n[[slot]]\n")
    error = config_error(path, env={})
    assert error.key == "slot_configs"
    assert error.value == 2


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    error = config_error(tmp_path / "absent.toml", env={})
    assert error.key == "config"
    assert "absent.toml" in str(error)


def test_missing_file_named_by_claude_pool_config_says_so(tmp_path: Path) -> None:
    error = config_error(env={"CLAUDE_POOL_CONFIG": str(tmp_path / "absent.toml")})
    assert "CLAUDE_POOL_CONFIG" in str(error)


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model = \n")
    error = config_error(path, env={})
    assert error.key == "config"
    assert error.value == str(path)
    assert "not valid TOML" in str(error)

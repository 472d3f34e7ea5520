"""The CLI argument list is one pure function of the effective config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_pool.config import EffectiveConfig, effective_config
from claude_pool.executor.argv import build_args, mcp_config_document
from claude_pool.executor.claude import command_line, redact
from claude_pool.types import Effort, PermissionMode, PoolConfig, TaskOverrides


def value_of(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} should appear once in {args}"
    return args[args.index(flag) + 1]


def values_of(args: list[str], flag: str) -> list[str]:
    """The values of a variadic flag: everything up to the next flag."""
    start = args.index(flag) + 1
    end = start
    while end < len(args) and not args[end].startswith("--"):
        end += 1
    return args[start:end]


def test_default_config_uses_the_structured_protocol_with_stdin_prompts() -> None:
    args = build_args(EffectiveConfig())
    assert args[:4] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert value_of(args, "--input-format") == "stream-json"
    # The final output_tokens of a message is only in its message_delta stream event.
    assert "--include-partial-messages" in args
    assert value_of(args, "--permission-mode") == "plan"
    for absent in ("--model", "--max-turns", "--resume", "--tools", "--json-schema", "--effort"):
        assert absent not in args


def test_plain_text_stdin_leaves_out_the_input_format() -> None:
    assert "--input-format" not in build_args(EffectiveConfig(), stream_input=False)


def test_the_prompt_is_never_an_argument() -> None:
    # Prompts travel over stdin; nothing in the config can smuggle a positional argument in.
    args = build_args(EffectiveConfig(system_prompt="--dangerously-skip-permissions"))
    assert value_of(args, "--append-system-prompt") == "--dangerously-skip-permissions"
    assert "--dangerously-skip-permissions" not in args[: args.index("--append-system-prompt")]


def test_model_and_fallback_model() -> None:
    args = build_args(EffectiveConfig(model="claude-sonnet-4-5", fallback_model="claude-haiku-4-5"))
    assert value_of(args, "--model") == "claude-sonnet-4-5"
    assert value_of(args, "--fallback-model") == "claude-haiku-4-5"


@pytest.mark.parametrize("mode", list(PermissionMode))
def test_permission_mode_uses_the_cli_spelling(mode: PermissionMode) -> None:
    assert value_of(build_args(EffectiveConfig(permission_mode=mode)), "--permission-mode") == (
        mode.value
    )


def test_max_turns() -> None:
    assert value_of(build_args(EffectiveConfig(max_turns=7)), "--max-turns") == "7"


def test_system_prompt_is_appended_never_replacing_claude_codes_own() -> None:
    args = build_args(EffectiveConfig(system_prompt="Be terse."))
    assert value_of(args, "--append-system-prompt") == "Be terse."
    assert "--system-prompt" not in args


def test_allowed_and_disallowed_tools_are_one_argument_each() -> None:
    config = EffectiveConfig(
        allowed_tools=("Bash(git *)", "Read", "mcp__docs__search"),
        disallowed_tools=("Write", "WebFetch"),
    )
    args = build_args(config)
    assert values_of(args, "--allowedTools") == ["Bash(git *)", "Read", "mcp__docs__search"]
    assert values_of(args, "--disallowedTools") == ["Write", "WebFetch"]


def test_no_tool_lists_when_empty() -> None:
    args = build_args(EffectiveConfig())
    assert "--allowedTools" not in args
    assert "--disallowedTools" not in args


def test_builtin_tool_selection_is_one_comma_separated_value() -> None:
    assert value_of(build_args(EffectiveConfig(tools=("Bash", "Read"))), "--tools") == "Bash,Read"


def test_an_empty_builtin_tool_selection_means_no_builtin_tools() -> None:
    assert value_of(build_args(EffectiveConfig(tools=())), "--tools") == ""


def test_mcp_config_file_and_strict_mode() -> None:
    args = build_args(EffectiveConfig(mcp_servers={"a": {}}), mcp_config_path=Path("/x/mcp.json"))
    assert value_of(args, "--mcp-config") == "/x/mcp.json"
    assert "--strict-mcp-config" in args


def test_strict_mcp_config_applies_even_without_servers_of_the_slot() -> None:
    assert "--strict-mcp-config" in build_args(EffectiveConfig())


def test_non_strict_mcp_config() -> None:
    args = build_args(EffectiveConfig(strict_mcp_config=False), mcp_config_path="/x/mcp.json")
    assert "--strict-mcp-config" not in args
    assert value_of(args, "--mcp-config") == "/x/mcp.json"


@pytest.mark.parametrize("effort", list(Effort))
def test_effort(effort: Effort) -> None:
    assert value_of(build_args(EffectiveConfig(effort=effort)), "--effort") == effort.value


def test_json_schema_is_compact_json() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    text = value_of(build_args(EffectiveConfig(json_schema=schema)), "--json-schema")
    assert json.loads(text) == schema
    assert " " not in text


def test_json_schema_given_as_text_is_passed_as_is() -> None:
    text = '{"type": "object"}'
    assert value_of(build_args(EffectiveConfig(json_schema=text)), "--json-schema") == text


def test_max_budget_usd() -> None:
    args = build_args(EffectiveConfig(max_budget_usd=0.25))
    assert float(value_of(args, "--max-budget-usd")) == 0.25


def test_resume_session() -> None:
    args = build_args(EffectiveConfig(), resume_session_id="abc-123")
    assert value_of(args, "--resume") == "abc-123"


def test_flags_come_from_the_layered_config() -> None:
    pool = PoolConfig(model="claude-sonnet-4-5", allowed_tools=["Read"], unattended_mode=True)
    task = TaskOverrides(allowed_tools=["Bash(ls)"], max_budget_usd=1.5, tools=["Read", "Bash"])
    args = build_args(effective_config(pool, None, task))
    assert value_of(args, "--model") == "claude-sonnet-4-5"
    assert value_of(args, "--permission-mode") == "dontAsk"
    assert values_of(args, "--allowedTools") == ["Read", "Bash(ls)"]
    assert value_of(args, "--tools") == "Read,Bash"
    assert float(value_of(args, "--max-budget-usd")) == 1.5


def test_mcp_config_document_wraps_servers_by_name() -> None:
    servers = {"docs": {"command": "docs-server", "args": ["--stdio"]}}
    assert mcp_config_document(EffectiveConfig(mcp_servers=servers)) == {"mcpServers": servers}
    assert mcp_config_document(EffectiveConfig()) is None


def test_failed_command_redacts_secrets_and_elides_long_values() -> None:
    argv = [
        "claude",
        "--append-system-prompt",
        "use key sk-ant-api03-abcDEF_123 and Authorization: Bearer tok.en-42 and API_KEY=hunter2",
        "--json-schema",
        "x" * 5000,
    ]
    line = command_line(argv)
    assert "abcDEF_123" not in line
    assert "tok.en-42" not in line
    assert "hunter2" not in line
    assert "sk-ant-***" in line
    assert "x" * 300 not in line
    assert "chars)" in line


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("--model claude-sonnet-4-5 --permission-mode plan") == (
        "--model claude-sonnet-4-5 --permission-mode plan"
    )

"""Build the Claude Code CLI argument list from an :class:`EffectiveConfig`.

One pure function, so that every knob can be checked by unit tests without running anything.
The prompt is never part of the arguments: it goes over stdin as a stream-json user message
(or plain text), so a prompt can never be taken for a flag.

Spellings and value formats are those of Claude Code 2.1.330 (``claude --help``):
``--allowedTools``/``--disallowedTools``/``--mcp-config`` are variadic, so each value is its own
argument and the next argument is always a flag; ``--tools`` takes one comma-separated value
(``""`` for no built-in tools).
"""

from __future__ import annotations

import json
from pathlib import Path

from claude_pool.config import EffectiveConfig

RESUME_FLAG = "--resume"


def build_args(
    config: EffectiveConfig,
    *,
    resume_session_id: str | None = None,
    mcp_config_path: str | Path | None = None,
    stream_input: bool = True,
) -> list[str]:
    """The CLI arguments (without the binary) that run ``config``.

    ``resume_session_id`` continues that conversation (``--resume``); ``mcp_config_path`` is the
    slot-owned JSON file holding ``config.mcp_servers`` (written by the executor); with
    ``stream_input`` prompts are read from stdin as stream-json user messages, otherwise stdin is
    plain prompt text.
    """
    # --include-partial-messages: the only place the stream tells a message's final
    # output_tokens (``message_delta``), needed to price a task that ends without a result.
    args = ["-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
    if stream_input:
        args += ["--input-format", "stream-json"]
    if resume_session_id is not None:
        args += [RESUME_FLAG, resume_session_id]
    if config.model is not None:
        args += ["--model", config.model]
    if config.fallback_model is not None:
        args += ["--fallback-model", config.fallback_model]
    args += ["--permission-mode", str(config.permission_mode)]
    if config.max_turns is not None:
        args += ["--max-turns", str(config.max_turns)]
    if config.system_prompt is not None:
        # Appended, never --system-prompt: Claude Code's own system prompt (tools, safety,
        # environment) must stay.
        args += ["--append-system-prompt", config.system_prompt]
    if config.tools is not None:
        args += ["--tools", ",".join(config.tools)]
    if config.allowed_tools:
        args += ["--allowedTools", *config.allowed_tools]
    if config.disallowed_tools:
        args += ["--disallowedTools", *config.disallowed_tools]
    if mcp_config_path is not None:
        args += ["--mcp-config", str(mcp_config_path)]
    if config.strict_mcp_config:
        # Even without servers of its own: a slot must not pick up the user's MCP servers
        # (which may include the pool that runs it).
        args.append("--strict-mcp-config")
    if config.effort is not None:
        args += ["--effort", str(config.effort)]
    if config.json_schema is not None:
        schema = config.json_schema
        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        args += ["--json-schema", text]
    if config.max_budget_usd is not None:
        args += ["--max-budget-usd", repr(float(config.max_budget_usd))]
    return args


def mcp_config_document(config: EffectiveConfig) -> dict[str, object] | None:
    """The ``--mcp-config`` file content for ``config``, or None when it has no MCP servers."""
    if not config.mcp_servers:
        return None
    return {"mcpServers": dict(config.mcp_servers)}

"""The configuration reference, ``docs/configuration.md``, generated from the settings models.

Every setting :func:`~claude_pool.config.load_settings` accepts is listed with its TOML key, its
``CLAUDE_POOL_*`` environment variable, its ``claude-pool serve`` flag (read from the command
itself) and its default; descriptions are the fields' docstrings. ``python -m
claude_pool.config_reference`` prints the page and ``--write PATH`` writes it; a test fails when
the committed page differs from what this module renders, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
import types
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

# The loader's own tables of keys, so the page lists exactly what it accepts.
from claude_pool.config import (
    _ENV_PREFIX,
    _FLAT_KEYS,
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_FILE,
    NON_SETTING_ENV_VARS,
    TOKENS_ENV_VAR,
    Settings,
    WebhookConfig,
)
from claude_pool.executor.locate import CACHE_DIR_ENV_VAR
from claude_pool.types import PoolConfig, ScalingConfig, SlotConfig

__all__ = ["Entry", "Section", "main", "render", "sections"]

DEFAULT_PATH = Path("docs/configuration.md")
REGENERATE = "python -m claude_pool.config_reference --write docs/configuration.md"

_SYNTHETIC = {
    "budget_usd": (
        "number ≥ 0",
        "not set",
        "The budget in USD, for `budget_microdollars` (give one of the two).",
    ),
}
"""Keys the loader accepts that are no model field: (type, default, description)."""

_OTHER_ENV_VARS = {
    CONFIG_ENV_VAR: "The config file to read, when `--config` is not given.",
    CACHE_DIR_ENV_VAR: (
        "Where `claude-pool install-cli` installs the Claude Code CLI and where it is looked for "
        "(`<dir>/claude-cli`); default: a checkout's `.cache`, else the per-user cache "
        "directory (`~/.cache/claude-pool` on Linux)."
    ),
    TOKENS_ENV_VAR: "The `tokens` setting, comma- or space-separated (see above).",
    "CLAUDE_POOL_PROCESS": (
        "Not a setting: claude-pool gives it to every slot's CLI process (and so to whatever "
        "that starts), to find and end those processes when the pool stops."
    ),
}


@dataclass(frozen=True)
class Entry:
    """One setting: how it is spelt in each source, its type, default and what it does."""

    key: str
    toml: str | None
    env: str | None
    flag: str | None
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    """A heading, a paragraph about it, and its settings."""

    title: str
    intro: str
    entries: list[Entry]
    columns: Literal["all", "toml"] = "all"


# ── reading the models ──────────────────────────────────────────────


def _markdown(docstring: str) -> str:
    text = " ".join(docstring.split())
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`")


def attribute_docstrings(cls: type[BaseModel]) -> dict[str, str]:
    """The docstrings written under a model's fields, by field name, as Markdown."""
    [node] = ast.parse(textwrap.dedent(inspect.getsource(cls))).body
    if not isinstance(node, ast.ClassDef):
        raise TypeError(f"{cls.__name__}'s source is not a class definition")
    docs: dict[str, str] = {}
    for field, following in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[field.target.id] = _markdown(following.value.value)
    return docs


def _bounds(info: FieldInfo) -> str:
    # pydantic keeps ge=, gt= and le= as annotated-types constraints with those attributes.
    low = high = ""
    for item in info.metadata:
        if (ge := getattr(item, "ge", None)) is not None:
            low = f"≥ {ge}"
        elif (gt := getattr(item, "gt", None)) is not None:
            low = f"> {gt}"
        elif (le := getattr(item, "le", None)) is not None:
            high = f"≤ {le}"
    if low.startswith("≥") and high:
        return f"{low[2:]}..{high[2:]}"
    return low or high


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of " + ", ".join(f"`{member.value}`" for member in annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if get_origin(annotation) is list:
        [item] = get_args(annotation)
        return "list of strings" if item in (str, SecretStr) else f"list of {_type_name(item)}"
    if get_origin(annotation) is dict or annotation is Any:
        return "table"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _type_text(info: FieldInfo) -> str:
    annotation = info.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        [annotation] = [arg for arg in get_args(annotation) if arg is not type(None)]
    bounds = _bounds(info)
    return f"{_type_name(annotation)} {bounds}".strip()


def _value_text(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _default_text(info: FieldInfo) -> str:
    return _value_text(info.get_default(call_default_factory=True, validated_data={}))


# ── reading `claude-pool serve` ─────────────────────────────────────


def serve_flags() -> dict[str, str]:
    """The ``claude-pool serve`` flag of each setting it takes, by setting key.

    The command's options give the flags; the ``explicit`` mapping in its body says which
    setting each option sets (an option may pass through a helper, as ``--mcp-config`` does).
    """
    import typer
    import typer.main

    from claude_pool.cli import serve as serve_module

    alone = typer.Typer()
    alone.command()(serve_module.serve)
    command = typer.main.get_command(alone)  # one command: the command itself
    options: dict[str, str] = {}
    for param in command.params:
        opts = [*param.opts, *getattr(param, "secondary_opts", [])]
        flag = " / ".join(f"`{opt}`" for opt in opts if opt.startswith("--"))
        if getattr(param, "multiple", False):
            flag += " (repeatable)"
        if param.name is not None:
            options[param.name] = flag

    flags: dict[str, str] = {}
    for key, value in _explicit_mapping(inspect.getsource(serve_module.serve)):
        names = [n.id for n in ast.walk(value) if isinstance(n, ast.Name) and n.id in options]
        if names:
            flags[key] = options[names[0]]
    return flags


def _explicit_mapping(source: str) -> list[tuple[str, ast.expr]]:
    """The ``explicit = {"setting": <expression of options>, ...}`` dict in ``source``."""
    for node in ast.walk(ast.parse(textwrap.dedent(source))):
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "explicit" and isinstance(value, ast.Dict):
            keys = [k.value if isinstance(k, ast.Constant) else None for k in value.keys]
            if all(isinstance(k, str) for k in keys):
                return [(str(k), v) for k, v in zip(keys, value.values, strict=True)]
    raise RuntimeError(
        "`claude-pool serve` no longer maps its options to settings in one `explicit = {...}` "
        "dict of string keys; teach claude_pool.config_reference how it does now"
    )


# ── the page ────────────────────────────────────────────────────────


def _entry(
    key: str,
    info: FieldInfo,
    docs: dict[str, str],
    flags: dict[str, str],
    *,
    toml: str | None = None,
    env: str | None = None,
) -> Entry:
    return Entry(
        key=key,
        toml=toml if toml is not None else key,
        env=env if env is not None else _ENV_PREFIX + key.upper(),
        flag=flags.get(key),
        type=_type_text(info),
        default=_default_text(info),
        description=docs.get(key, ""),
    )


def sections() -> list[Section]:
    """The page's sections, in order, each with its settings."""
    flags = serve_flags()
    settings_docs = attribute_docstrings(Settings)
    pool_docs = attribute_docstrings(PoolConfig)
    scaling_docs = attribute_docstrings(ScalingConfig)
    slot_docs = attribute_docstrings(SlotConfig)
    webhook_docs = attribute_docstrings(WebhookConfig)

    process: list[Entry] = []
    for key, info in Settings.model_fields.items():
        if key in ("pool", "slot_configs", "env", "webhooks"):
            continue
        if key == "tokens":
            process.append(_entry(key, info, settings_docs, flags, toml="", env=TOKENS_ENV_VAR))
        else:
            process.append(_entry(key, info, settings_docs, flags))

    defaults: list[Entry] = []
    for key, info in PoolConfig.model_fields.items():
        if key in ("scaling", "mcp_servers"):
            continue
        defaults.append(_entry(key, info, pool_docs, flags))
        if key == "budget_microdollars":
            type_, default, description = _SYNTHETIC["budget_usd"]
            defaults.append(
                Entry(
                    key="budget_usd",
                    toml="budget_usd",
                    env=_ENV_PREFIX + "BUDGET_USD",
                    flag=flags.get("budget_usd"),
                    type=type_,
                    default=default,
                    description=description,
                )
            )

    scaling = [
        _entry(
            f"scaling_{name}",
            info,
            {f"scaling_{k}": v for k, v in scaling_docs.items()},
            flags,
            toml=f"[scaling] {name}",
        )
        for name, info in ScalingConfig.model_fields.items()
    ]

    tables = [
        Entry(
            key="mcp_servers",
            toml="[mcp_servers.NAME]",
            env="",
            flag=flags.get("mcp_servers"),
            type="table per server",
            default="`{}`",
            description=pool_docs["mcp_servers"]
            + " Each is what `.mcp.json` holds for a server (`command`, `args`, `env`, or "
            "`type`, `url`, `headers`); `--mcp-config` reads such a file.",
        ),
        Entry(
            key="env",
            toml="[env]",
            env="",
            flag=None,
            type="table of strings",
            default="`{}`",
            description=settings_docs["env"],
        ),
        Entry(
            key="slot_configs",
            toml="[[slot]]",
            env="",
            flag=None,
            type="array of tables",
            default="`[]`",
            description=settings_docs["slot_configs"] + " Their keys are listed below.",
        ),
        Entry(
            key="webhooks",
            toml="[[webhook]]",
            env="",
            flag=None,
            type="array of tables",
            default="`[]`",
            description=settings_docs["webhooks"] + " Their keys are listed below.",
        ),
    ]

    webhook = [
        Entry(
            key=name,
            toml=name,
            env=None,
            flag=None,
            type=_type_text(info),
            default=_default_text(info),
            description=webhook_docs.get(name, ""),
        )
        for name, info in WebhookConfig.model_fields.items()
    ]

    slot = [
        Entry(
            key=name,
            toml=name,
            env=None,
            flag=None,
            type=_type_text(info),
            default=_default_text(info),
            description=slot_docs.get(name, ""),
        )
        for name, info in SlotConfig.model_fields.items()
    ]

    listed = {e.key for e in process + defaults + scaling} | {"mcp_servers"}
    if listed != _FLAT_KEYS | {"mcp_servers", "tokens"}:
        missing = sorted((_FLAT_KEYS | {"tokens"}) - listed)
        extra = sorted(listed - _FLAT_KEYS - {"mcp_servers", "tokens"})
        raise RuntimeError(f"the reference is out of step with the loader: {missing=} {extra=}")
    unknown_flags = sorted(set(flags) - listed - {"store"})
    if unknown_flags:
        raise RuntimeError(f"serve sets settings the reference does not list: {unknown_flags}")

    return [
        Section(
            "The pool process",
            "What a running pool needs besides its task defaults: slots, the store, time "
            "limits, recovery, the MCP server's transport.",
            process,
        ),
        Section(
            "Defaults for every slot and task",
            "A slot's `[[slot]]` keys and a task's overrides take precedence over these, key by "
            "key (allowed tools add up, MCP servers merge by name).",
            defaults,
        ),
        Section(
            "Scaling",
            "The bounds of the number of slots, in a `[scaling]` table.",
            scaling,
        ),
        Section(
            "Tables",
            "`[mcp_servers.NAME]` and `[env]` entries merge by name across sources (a later "
            "source replaces an entry of the same name); a later source's `[[slot]]` list "
            "replaces an earlier one.",
            tables,
        ),
        Section(
            "`[[slot]]` keys",
            "Each `[[slot]]` table configures one of the first slots, in order. Only in a config "
            "file (or `Settings(slot_configs=[SlotConfig(...)])`).",
            slot,
            columns="toml",
        ),
        Section(
            "`[[webhook]]` keys",
            "Each `[[webhook]]` table is a webhook: every event of the listed types is POSTed "
            "to `url` as JSON, signed in `X-Claude-Pool-Signature` (`sha256=` and the "
            "HMAC-SHA256 of the body, hex) when a secret is set, and retried with backoff "
            "from the store's outbox. Only in a config file (or `Settings(webhooks=[...])`); "
            "the REST API adds more.",
            webhook,
            columns="toml",
        ),
    ]


def _cell(text: str | None) -> str:
    return "—" if not text else text.replace("|", "\\|")


def _table(section: Section) -> list[str]:
    if section.columns == "toml":
        lines = ["| Key | Type | Default | |", "|---|---|---|---|"]
        for e in section.entries:
            lines.append(f"| `{e.toml}` | {e.type} | {e.default} | {_cell(e.description)} |")
        return lines
    lines = [
        "| TOML key | Environment variable | `serve` flag | Type | Default | |",
        "|---|---|---|---|---|---|",
    ]
    for e in section.entries:
        toml = f"`{e.toml}`" if e.toml else "—"
        env = f"`{e.env}`" if e.env else "—"
        lines.append(
            f"| {toml} | {env} | {_cell(e.flag)} | {e.type} | {e.default} "
            f"| {_cell(e.description)} |"
        )
    return lines


def render() -> str:
    """The whole page, as Markdown."""
    if set(_OTHER_ENV_VARS) != NON_SETTING_ENV_VARS:
        raise RuntimeError(
            "describe every variable of NON_SETTING_ENV_VARS in _OTHER_ENV_VARS: "
            f"{sorted(NON_SETTING_ENV_VARS ^ set(_OTHER_ENV_VARS))}"
        )
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated from the settings models by `{REGENERATE}`; do not edit. -->",
        "",
        "Settings come from a TOML file (`--config`, else `$CLAUDE_POOL_CONFIG`, else "
        f"`./{DEFAULT_CONFIG_FILE}` if there is one), then `CLAUDE_POOL_*` environment "
        "variables, then command-line flags: later wins, key by key. In a library, "
        "`load_settings(path, **keywords)` reads the same sources, keywords last, and "
        "`Settings(...)` / `PoolConfig(...)` take the same keys directly.",
        "",
        "- In environment variables, lists are comma-separated, `none` (or `null`) unsets an "
        "optional setting, and an empty variable counts as not set.",
        "- Relative paths in a config file (`store`, `cwd`, `worktree_base_dir`, `claude_bin`) "
        "are relative to the file.",
        "- A misspelt key or variable is an error that names it (and what you may have meant).",
        "- Flags are those of `claude-pool serve`; other commands take some of them "
        "(`claude-pool COMMAND --help`), and every command takes `--store` and `--config`.",
        "",
    ]
    for section in sections():
        lines += [f"## {section.title}", "", section.intro, "", *_table(section), ""]
    lines += [
        "## Other environment variables",
        "",
        "| Variable | |",
        "|---|---|",
        *(f"| `{name}` | {text} |" for name, text in sorted(_OTHER_ENV_VARS.items())),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m claude_pool.config_reference",
        description="Print (or write) the configuration reference.",
    )
    parser.add_argument("--write", type=Path, metavar="PATH", help="write the page to PATH")
    args = parser.parse_args(argv)
    page = render()
    if args.write is None:
        sys.stdout.write(page)
    else:
        args.write.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

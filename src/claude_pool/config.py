"""Configuration: layering pool → slot → task, and loading settings from TOML, env and flags."""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from claude_pool.errors import ConfigError
from claude_pool.events import EVENT_TYPES
from claude_pool.types import (
    Effort,
    PermissionMode,
    PoolConfig,
    ScalingConfig,
    SlotConfig,
    TaskOverrides,
    UnusableText,
    check_texts,
    usd_to_microdollars,
)


@dataclass(frozen=True)
class EffectiveConfig:
    """What one task on one slot actually runs with (the executor's only input config)."""

    model: str | None = None
    permission_mode: PermissionMode = PermissionMode.PLAN
    max_turns: int | None = None
    system_prompt: str | None = None
    """Appended to Claude Code's own system prompt (never replaces it)."""
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    tools: tuple[str, ...] | None = None
    """Built-in tool selection (``--tools``); None leaves the CLI's default set."""
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    strict_mcp_config: bool = True
    effort: Effort | None = None
    fallback_model: str | None = None
    json_schema: Any | None = None
    max_budget_usd: float | None = None
    verify: str | None = None
    """Shell command run in the task's directory after it completes (None: no check)."""


_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    for value in values:
        if value is not None:
            return value
    return None


def _concat_unique(*lists: list[str] | None) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items or ():
            seen.setdefault(item, None)
    return tuple(seen)


_NO_SLOT_CONFIG = SlotConfig()
_NO_OVERRIDES = TaskOverrides()
"""Read only: what layering uses when a slot or a task sets nothing."""


def effective_config(
    pool: PoolConfig, slot: SlotConfig | None = None, task: TaskOverrides | None = None
) -> EffectiveConfig:
    """Layer the three levels of configuration for one task on one slot.

    Scalars take task, else slot, else pool. The permission mode falls back to ``dontAsk`` in
    unattended mode and to ``plan`` otherwise. Allowed tools concatenate pool + slot + task in
    order without duplicates; MCP servers merge by name (task over slot over pool). Disallowed
    tools, built-in tool selection, JSON schema and budget exist only per task; strict MCP
    config is pool-wide.
    """
    slot = slot or _NO_SLOT_CONFIG
    task = task or _NO_OVERRIDES
    fallback_mode = PermissionMode.DONT_ASK if pool.unattended_mode else PermissionMode.PLAN
    # The seed's PoolConfig defaults to plan; only an explicit pool setting counts as "set",
    # so that unattended mode can still choose its own default.
    pool_mode = pool.permission_mode if "permission_mode" in pool.model_fields_set else None
    permission_mode = _first(task.permission_mode, slot.permission_mode, pool_mode)
    return EffectiveConfig(
        model=_first(task.model, slot.model, pool.model),
        permission_mode=permission_mode or fallback_mode,
        max_turns=_first(task.max_turns, slot.max_turns, pool.max_turns),
        system_prompt=_first(task.system_prompt, slot.system_prompt, pool.system_prompt),
        allowed_tools=_concat_unique(pool.allowed_tools, slot.allowed_tools, task.allowed_tools),
        disallowed_tools=_concat_unique(task.disallowed_tools),
        tools=tuple(task.tools) if task.tools is not None else None,
        mcp_servers={**pool.mcp_servers, **(slot.mcp_servers or {}), **(task.mcp_servers or {})},
        strict_mcp_config=pool.strict_mcp_config,
        effort=_first(task.effort, slot.effort, pool.effort),
        fallback_model=_first(task.fallback_model, slot.fallback_model, pool.fallback_model),
        json_schema=task.json_schema,
        max_budget_usd=task.max_budget_usd,
        verify=_first(task.verify, slot.verify, pool.verify) or None,
    )


# ── Settings: everything a running pool needs, loaded from file, environment and arguments ──


def merge_overrides(base: TaskOverrides | None, top: TaskOverrides | None) -> TaskOverrides | None:
    """``top``'s fields (those it sets) over ``base``'s: e.g. a caller's overrides over a
    skill's, or a chain step's own over its skill's."""
    if base is None or top is None:
        return top or base
    return base.model_copy(update=top.model_dump(exclude_unset=True))


class _SlotCountError(ValueError):
    """The slot count does not fit the scaling bounds; names the setting to change."""

    def __init__(self, key: str, value: int, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key}={value!r}: {reason}")


def _check_slot_count(slots: int, scaling: ScalingConfig, slot_configs: int) -> None:
    low, high = scaling.min_slots, scaling.max_slots
    if low > high:
        raise _SlotCountError(
            "scaling_min_slots", low, f"is greater than scaling.max_slots ({high})"
        )
    if slot_configs > high:
        raise _SlotCountError(
            "slot_configs",
            slot_configs,
            f"that many slot configurations ([[slot]] tables) exceed scaling.max_slots ({high})",
        )
    if not low <= slots <= high:
        raise _SlotCountError(
            "slots", slots, f"must be within scaling.min_slots..max_slots ({low}..{high})"
        )
    if slot_configs > slots:
        raise _SlotCountError(
            "slots",
            slots,
            f"is fewer than the {slot_configs} slot configurations ([[slot]] tables)",
        )


class WebhookConfig(BaseModel):
    """One ``[[webhook]]`` table: where to POST events as they happen."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, pattern=r"^https?://")
    """Where each event is POSTed (http or https)."""
    events: list[str] = Field(default_factory=lambda: ["*"])
    """The event types to send (``task_finished``, ``chain_finished``...); ``*``: all."""
    secret: SecretStr | None = None
    """Key of the ``X-Claude-Pool-Signature`` HMAC-SHA256 of each body."""
    secret_env: str | None = None
    """Name of an environment variable holding the secret instead (keeps it out of the
    file)."""

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = [kind for kind in events if kind != "*" and kind not in EVENT_TYPES]
        if unknown:
            hint = _did_you_mean(unknown[0], EVENT_TYPES)
            raise ValueError(f"unknown event type {unknown[0]!r}{hint} ('*': every event)")
        return events

    def secret_value(self, env: Mapping[str, str] | None = None) -> str | None:
        """The secret: ``secret``, else the variable ``secret_env`` names."""
        if self.secret is not None:
            return self.secret.get_secret_value()
        if self.secret_env:
            return (os.environ if env is None else env).get(self.secret_env) or None
        return None


class Settings(BaseModel):
    """Everything a running pool needs besides the seed's :class:`PoolConfig`.

    Build it directly, or with :func:`load_settings` from a TOML file, ``CLAUDE_POOL_*``
    environment variables and explicit arguments.
    """

    model_config = ConfigDict(extra="forbid")

    pool: PoolConfig = Field(default_factory=PoolConfig)
    slots: int = Field(default=2, ge=0)
    """Initial number of slots; must fit ``pool.scaling``. When not given, 2 brought within
    the scaling bounds, or the number of ``slot_configs`` if that is more. 0 makes a pool that
    only queues, for workers sharing its store to run; ``scaling.min_slots`` then defaults to
    0."""
    slot_configs: list[SlotConfig] = Field(default_factory=list)
    """Overrides for the first ``len(slot_configs)`` slots."""
    store: str = Field(default="claude-pool.db", min_length=1)
    """A SQLite file path (or ``sqlite:///path``), ``:memory:``, or a PostgreSQL URL
    (``postgresql://user@host/db``, optionally ``?schema=NAME``; needs the ``postgres`` extra)
    for workers on several machines."""
    task_timeout_secs: float | None = Field(default=1800, gt=0)
    """Default per-task timeout; None means no limit."""
    drain_grace_secs: float = Field(default=30, ge=0)
    """Drain lets running tasks finish for this long, then cancels them."""
    claude_bin: str | None = None
    """Path (or command name) of the claude CLI; none: a ``claude`` on PATH, else the one
    ``claude-pool install-cli`` installed."""
    recovery: Literal["requeue", "fail"] = "requeue"
    """What happens to tasks left running by a pool that died."""
    auto_scale: bool = False
    """Grow the pool while tasks wait, and shrink it by slots idle for ``scale_idle_secs``."""
    scale_idle_secs: float = Field(default=300, gt=0)
    """Auto-scaling removes slots idle this long (down to ``scaling.min_slots``)."""
    start_slots_at_open: bool = True
    """Start every slot's CLI process as soon as the slot is added (at open, on scale-up),
    so that the first tasks need not wait for process starts; a slot takes no task until its
    process is ready, so the first tasks go to the slots ready first. Off: a slot's process
    starts with its first task. Pools with a budget start them with the first task anyway
    (each task's process carries its own ``--max-budget-usd``)."""
    clear_for_fresh_sessions: bool = True
    """A task that needs a new conversation (an ephemeral slot's, a ``fresh_session`` one)
    gets it in the slot's live CLI process with ``/clear`` when the process's flags and
    directory fit the task, instead of a new process (milliseconds against most of a
    CPU-second). The new conversation then starts with the CLI's short record of the
    ``/clear`` command, never with anything of the earlier one. Off: a new process each time."""
    max_concurrent_spawns: int | None = Field(default=None, ge=1)
    """How many slot processes start at once ahead of their tasks (a CLI start is most of a
    CPU-second; more at once only share the cores). None: the number of CPU cores."""
    heartbeat_secs: float = Field(default=5, gt=0)
    """Worker heartbeat interval in the store."""
    event_retention_secs: float = Field(default=7 * 24 * 3600, gt=0)
    """How long the store keeps domain events (resumable streams, webhooks) before pruning."""
    cwd: str | None = None
    """Working directory for slots; None is the process's working directory."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for slot processes."""
    http: bool = False
    """``claude-pool serve``: streamable HTTP (at ``/mcp``) instead of stdio."""
    host: str = Field(default="127.0.0.1", min_length=1)
    """HTTP address to bind; anything but loopback needs ``tokens``."""
    port: int = Field(default=8765, ge=0, le=65_535)
    """HTTP port (0: any free port)."""
    tokens: list[SecretStr] = Field(default_factory=list)
    """Bearer tokens HTTP clients must send. Only from ``CLAUDE_POOL_TOKENS`` or arguments,
    never from a config file: those get committed and shared."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """``Host`` header names the HTTP server answers to besides the address it binds, the
    loopback names and (on a non-loopback address) this machine's own names."""
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    """Webhooks (``[[webhook]]`` tables), kept in the store when the pool opens, beside those
    added through the API."""
    webhook_retry_secs: float = Field(default=5, gt=0)
    """First wait before retrying a failed webhook delivery; each retry waits twice as long
    (at most an hour)."""
    webhook_max_attempts: int = Field(default=8, ge=1)
    """Attempts at one webhook delivery before it is given up (and shown as failed)."""
    webhook_timeout_secs: float = Field(default=10, gt=0)
    """How long one webhook delivery attempt may take."""

    @model_validator(mode="after")
    def _usable_texts(self) -> Self:
        for name in ("store", "claude_bin", "cwd", "env", "host", "allowed_hosts"):
            check_texts(getattr(self, name), name)
        return self

    @model_validator(mode="after")
    def _fit_slots_to_scaling(self) -> Self:
        scaling = self.pool.scaling
        if (
            self.slots == 0
            and "slots" in self.model_fields_set
            and "min_slots" not in scaling.model_fields_set
        ):
            # No slots of its own: a pool that queues for workers sharing its store. Its
            # floor is 0 then, unless one was set (which the check below holds it to).
            scaling.min_slots = 0
        if "slots" not in self.model_fields_set:
            fitted = min(max(2, scaling.min_slots), scaling.max_slots)
            self.slots = max(fitted, len(self.slot_configs))
        _check_slot_count(self.slots, scaling, len(self.slot_configs))
        return self


CONFIG_ENV_VAR = "CLAUDE_POOL_CONFIG"
NON_SETTING_ENV_VARS = frozenset(
    {CONFIG_ENV_VAR, "CLAUDE_POOL_CACHE_DIR", "CLAUDE_POOL_TOKENS", "CLAUDE_POOL_PROCESS"}
)
"""``CLAUDE_POOL_*`` variables that are not settings: the config file, the CLI install cache
(see ``claude_pool.executor.locate``), the HTTP server's bearer tokens, and the marker every
process a slot's CLI starts carries (see ``claude_pool.executor.orphans``)."""
DEFAULT_CONFIG_FILE = "claude-pool.toml"
_ENV_PREFIX = "CLAUDE_POOL_"
TOKENS_ENV_VAR = "CLAUDE_POOL_TOKENS"
"""The ``tokens`` setting, comma- or space-separated. Read on its own (it is in
:data:`NON_SETTING_ENV_VARS` for the generic loop), as the one place a secret may come from
besides an argument."""


def parse_tokens(raw: str | None) -> list[str]:
    """Bearer tokens from an environment value or a token file: separated by commas or
    whitespace."""
    if not raw:
        return []
    return [token for token in raw.replace(",", " ").split() if token]


# Flat keys name a setting the same way in the file, as CLAUDE_POOL_<KEY> and as an argument.
_POOL_KEYS = frozenset(PoolConfig.model_fields) - {"scaling", "mcp_servers"}
_SCALING_KEYS = frozenset(f"scaling_{name}" for name in ScalingConfig.model_fields)
_SETTINGS_KEYS = frozenset(Settings.model_fields) - {"pool", "slot_configs", "env", "webhooks"}
_FLAT_KEYS = _POOL_KEYS | _SCALING_KEYS | _SETTINGS_KEYS | {"budget_usd"}
_FILE_TABLES = frozenset({"scaling", "mcp_servers", "slot", "env", "webhook"})
# (The slots' extra environment has no argument: ``env`` names the variables to read.)
_ARGUMENT_TABLES = frozenset({"mcp_servers", "slot_configs", "webhooks"})
# Relative paths in a config file are relative to the file, not to wherever the pool starts.
_PATH_KEYS = frozenset({"store", "cwd", "worktree_base_dir", "claude_bin"})
# Secrets: refused in a config file, and never repeated in an error message.
_SECRET_KEYS = frozenset({"tokens"})
_HIDDEN = "<hidden>"


def _field_info(key: str) -> FieldInfo | None:
    if key in _POOL_KEYS:
        return PoolConfig.model_fields[key]
    if key in _SETTINGS_KEYS:
        return Settings.model_fields[key]
    return None


def _is_list_key(key: str) -> bool:
    info = _field_info(key)
    return info is not None and get_origin(info.annotation) is list


def _is_optional_key(key: str) -> bool:
    info = _field_info(key)
    return info is not None and type(None) in get_args(info.annotation)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f"; did you mean {matches[0]!r}?" if matches else ""


@dataclass(frozen=True)
class _Given:
    """A value from one source; ``source`` says where, for error messages."""

    value: Any
    source: str


# Layers map flat keys (plus "mcp_servers.NAME", "env.NAME" and "slot_configs") to values, so
# that a higher layer replaces single settings, MCP servers and environment variables by name.
_Layer = dict[str, _Given]


def _add_budget_usd(layer: _Layer, key: str, value: Any, source: str) -> None:
    if "budget_microdollars" in layer:
        raise ConfigError(
            key, value, f"give budget_usd or budget_microdollars, not both ({source})"
        )
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(key, value, f"must be a non-negative number of USD ({source})")
    layer["budget_microdollars"] = _Given(usd_to_microdollars(value), source)


def _add_flat(layer: _Layer, key: str, value: Any, source: str) -> None:
    if key == "budget_usd":
        _add_budget_usd(layer, key, value, source)
        return
    if key == "budget_microdollars" and key in layer:
        raise ConfigError(
            key, value, f"give budget_usd or budget_microdollars, not both ({source})"
        )
    layer[key] = _Given(value, source)


def _add_table(layer: _Layer, table: str, entries: Any, source: str) -> None:
    if not isinstance(entries, Mapping):
        raise ConfigError(table, entries, f"must be a table ({source})")
    for name, value in entries.items():
        if table == "mcp_servers" and not isinstance(value, Mapping):
            raise ConfigError(
                f"mcp_servers.{name}", value, f"an MCP server must be a table ({source})"
            )
        layer[f"{table}.{name}"] = _Given(value, source)


def _check_table_keys(
    table: str, entries: Mapping[str, Any], known: Iterable[str], source: str
) -> None:
    names = frozenset(known)
    for key, value in entries.items():
        if key not in names:
            raise ConfigError(
                f"{table}.{key}", value, f"unknown key{_did_you_mean(key, names)} ({source})"
            )


def _resolve_path(key: str, value: Any, base: Path) -> Any:
    if not isinstance(value, str) or key not in _PATH_KEYS:
        return value
    if key == "store" and (value == ":memory:" or "://" in value):
        return value
    if key == "claude_bin" and Path(value).name == value:
        return value  # a bare command name, looked up on PATH
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _read_file(path: Path, how: str) -> _Layer:
    source = f"in {path}"
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config", str(path), f"no such file ({how})") from None
    except OSError as exc:
        raise ConfigError("config", str(path), f"cannot read it: {exc} ({how})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", str(path), f"not valid TOML: {exc}") from exc

    base = path.parent.resolve()
    layer: _Layer = {}
    for key, value in data.items():
        if key == "scaling":
            if not isinstance(value, dict):
                raise ConfigError(key, value, f"must be a table ({source})")
            _check_table_keys("scaling", value, ScalingConfig.model_fields, source)
            for name, bound in value.items():
                layer[f"scaling_{name}"] = _Given(bound, source)
        elif key in ("mcp_servers", "env"):
            _add_table(layer, key, value, source)
        elif key == "slot":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(key, value, f"must be an array of tables, [[slot]] ({source})")
            for index, table in enumerate(value):
                _check_table_keys(f"slot[{index}]", table, SlotConfig.model_fields, source)
            layer["slot_configs"] = _Given(value, source)
        elif key == "webhook":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise ConfigError(key, value, f"must be an array of tables, [[webhook]] ({source})")
            for index, table in enumerate(value):
                _check_table_keys(f"webhook[{index}]", table, WebhookConfig.model_fields, source)
            layer["webhooks"] = _Given(value, source)
        elif key in _SECRET_KEYS:
            raise ConfigError(
                key,
                _HIDDEN,
                "secrets do not belong in a config file, which tends to be committed or shared "
                f"({source}); set {TOKENS_ENV_VAR} or pass --token instead",
            )
        elif key in _FLAT_KEYS:
            _add_flat(layer, key, _resolve_path(key, value, base), source)
        else:
            hint = _did_you_mean(key, _FLAT_KEYS | _FILE_TABLES)
            raise ConfigError(key, value, f"unknown key{hint} ({source})")
    return layer


def _env_value(key: str, raw: str) -> Any:
    if _is_list_key(key):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if _is_optional_key(key) and raw.strip().lower() in ("none", "null"):
        return None
    if key == "budget_usd":
        try:
            return float(raw)
        except ValueError:
            return raw  # reported as not a number
    return raw  # pydantic converts numbers and booleans ("true", "1", "yes"...)


def _read_env(env: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for var, raw in sorted(env.items()):
        if not var.startswith(_ENV_PREFIX) or var in NON_SETTING_ENV_VARS:
            continue
        key = var[len(_ENV_PREFIX) :].lower()
        if key not in _FLAT_KEYS:
            names = [_ENV_PREFIX + known.upper() for known in _FLAT_KEYS]
            hint = _did_you_mean(var, names)
            raise ConfigError(var, raw, f"unknown claude-pool environment variable{hint}")
        if raw == "":
            continue  # set but empty counts as not set
        _add_flat(layer, key, _env_value(key, raw), f"from environment variable {var}")
    if tokens := parse_tokens(env.get(TOKENS_ENV_VAR)):
        layer["tokens"] = _Given(tokens, f"from environment variable {TOKENS_ENV_VAR}")
    return layer


def _read_arguments(explicit: Mapping[str, Any]) -> _Layer:
    layer: _Layer = {}
    for key, value in explicit.items():
        if key not in _FLAT_KEYS | _ARGUMENT_TABLES:
            hint = _did_you_mean(key, _FLAT_KEYS | _ARGUMENT_TABLES)
            raise ConfigError(key, value, f"unknown setting{hint} (from argument {key})")
        if value is None:
            continue
        source = f"from argument {key}"
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if key == "mcp_servers":
            _add_table(layer, key, value, source)
        elif key in ("slot_configs", "webhooks"):
            if not isinstance(value, list | tuple):
                raise ConfigError(key, value, f"must be a list ({source})")
            layer[key] = _Given(list(value), source)
        else:
            if isinstance(value, str) and _is_list_key(key):
                value = _env_value(key, value)
            _add_flat(layer, key, value, source)
    return layer


def _find_config_file(path: str | Path | None, env: Mapping[str, str]) -> tuple[Path, str] | None:
    if path is not None:
        return Path(path), "given as the config path"
    if env.get(CONFIG_ENV_VAR):
        return Path(env[CONFIG_ENV_VAR]), f"named by {CONFIG_ENV_VAR}"
    default = Path(DEFAULT_CONFIG_FILE)
    return (default, "the default config file") if default.is_file() else None


def _error_key(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """(key for the message, key of the layer entry that holds the value) for an error location."""
    head = str(loc[0])
    if head == "scaling" and len(loc) > 1:
        return f"scaling_{loc[1]}", f"scaling_{loc[1]}"
    if head in ("mcp_servers", "env") and len(loc) > 1:
        return f"{head}.{loc[1]}", f"{head}.{loc[1]}"
    if head == "slot_configs" and len(loc) > 2:
        return f"slot[{loc[1]}].{loc[2]}", "slot_configs"
    if head == "webhooks" and len(loc) > 2:
        return f"webhook[{loc[1]}].{loc[2]}", "webhooks"
    return head, head


def _reason(error: ErrorDetails) -> str:
    if error["type"] in ("enum", "literal_error"):
        allowed = re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
        value = error["input"]
        hint = _did_you_mean(value, allowed) if isinstance(value, str) else ""
        return f"must be one of {', '.join(allowed)}{hint}"
    # pydantic says "Input should be greater than 0"; say it as the rest of our messages do.
    return str(error["msg"]).replace("Input should be", "must be", 1)


def _validation_error(exc: ValidationError, merged: _Layer) -> ConfigError:
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    value: object
    if isinstance(cause, _SlotCountError):
        key, value, reason, entry = cause.key, cause.value, cause.reason, cause.key
    elif isinstance(cause, UnusableText):
        parts = cause.field.split(".")
        key = cause.field
        entry = ".".join(parts[:2]) if parts[0] in ("mcp_servers", "env") else parts[0]
        given_entry = merged.get(entry)
        value = given_entry.value if given_entry else None
        reason = f"{cause.problem}; remove it"
    else:
        key, entry = _error_key(error["loc"])
        value, reason = error["input"], _reason(error)
    given = merged.get(entry)
    shown: object = _HIDDEN if entry in _SECRET_KEYS else value
    return ConfigError(key, shown, f"{reason} ({given.source})" if given else reason)


def _build(merged: _Layer) -> Settings:
    def values(prefix: str) -> dict[str, Any]:
        return {k.removeprefix(prefix): g.value for k, g in merged.items() if k.startswith(prefix)}

    pool_data: dict[str, Any] = {k: g.value for k, g in merged.items() if k in _POOL_KEYS}
    if scaling := values("scaling_"):
        pool_data["scaling"] = scaling
    if servers := values("mcp_servers."):
        pool_data["mcp_servers"] = servers
    settings_data: dict[str, Any] = {k: g.value for k, g in merged.items() if k in _SETTINGS_KEYS}
    for table in ("slot_configs", "webhooks"):
        if table in merged:
            settings_data[table] = merged[table].value
    try:
        # Only given keys reach PoolConfig, so "permission_mode" stays unset unless someone set it.
        settings_data["pool"] = PoolConfig.model_validate(pool_data)
        return Settings.model_validate({**settings_data, "env": values("env.")})
    except ValidationError as exc:
        raise _validation_error(exc, merged) from None


def load_settings(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None, **explicit: Any
) -> Settings:
    """Load settings: explicit arguments over ``CLAUDE_POOL_*`` environment over a TOML file.

    The file is ``path``, else ``$CLAUDE_POOL_CONFIG``, else ``./claude-pool.toml`` if present.
    Keys are flat (any :class:`Settings` or :class:`PoolConfig` field, plus ``budget_usd``),
    with ``[scaling]``, ``[mcp_servers.NAME]``, ``[[slot]]``, ``[[webhook]]`` and ``[env]``
    tables. Each flat key is also ``CLAUDE_POOL_<KEY>`` (lists comma-separated, ``[scaling]``
    as ``SCALING_MIN_SLOTS``) and a keyword argument (None means not given). MCP servers and
    environment entries merge by name across sources. Bearer ``tokens`` come only from
    ``$CLAUDE_POOL_TOKENS`` or an argument, never from the file. Any invalid or unknown
    setting raises :class:`ConfigError` naming the
    key, the value (secrets hidden) and where it came from.
    """
    env = os.environ if env is None else env
    merged: _Layer = {}
    found = _find_config_file(path, env)
    if found is not None:
        merged.update(_read_file(*found))
    merged.update(_read_env(env))
    merged.update(_read_arguments(explicit))
    return _build(merged)

"""The :class:`Skill` model and the ``SKILL.md`` parser.

A skill file is YAML front matter between ``---`` lines, then the prompt template::

    ---
    name: code-review
    description: Review code for bugs and risky changes.
    argument-hint: <files or git range> [focus]
    arguments:
      - {name: target, description: What to review, required: true}
      - {name: focus, description: What to look at hardest}
    scope: task
    overrides:
      permission_mode: dontAsk
      allowed_tools: [Read, Grep, Glob]
    ---
    Review {target}.
    Pay particular attention to: {focus}

For Claude Code compatibility the top-level ``model`` and ``allowed-tools`` keys are read as
overrides too (an explicit ``overrides`` entry wins). Other unknown keys are kept in
``metadata``. Placeholder rules: :mod:`claude_pool.skills.template`.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from claude_pool.errors import ClaudePoolError
from claude_pool.skills.template import NAME_PATTERN, TemplateValues, render
from claude_pool.types import TaskOverrides

SKILL_FILE = "SKILL.md"
_SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ARG_NAME = re.compile(rf"^{NAME_PATTERN}$")

SkillArgs = Mapping[str, str | None] | Sequence[str] | str
"""Arguments for :meth:`Skill.render`: by name, by position, or one string split like a shell."""


# ── errors ───────────────────────────────────────────────────────────


class SkillError(ClaudePoolError):
    """Base of the skill errors."""


class SkillParseError(SkillError):
    """A skill file (or text) is not a valid skill."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{reason}")


class SkillNotFound(SkillError):
    def __init__(self, name: str, available: Sequence[str] = ()) -> None:
        self.name = name
        self.available = list(available)
        close = difflib.get_close_matches(name, self.available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; list the skills to see them"
        super().__init__(f"no skill named {name!r}{hint}")


class SkillArgumentError(SkillError, ValueError):
    """Arguments do not fit the skill: ``missing`` required ones, ``unknown`` ones, too many."""

    def __init__(
        self,
        skill: str,
        *,
        missing: Sequence[str] = (),
        unknown: Sequence[str] = (),
        detail: str = "",
        expected: Sequence[str] = (),
    ) -> None:
        self.skill = skill
        self.missing = list(missing)
        self.unknown = list(unknown)
        problems = []
        if self.missing:
            problems.append(f"missing required argument(s) {', '.join(self.missing)}")
        if self.unknown:
            problems.append(f"unknown argument(s) {', '.join(self.unknown)}")
        if detail:
            problems.append(detail)
        takes = f"; it takes: {', '.join(expected)}" if expected else "; it takes none by name"
        super().__init__(f"skill {skill!r}: {'; '.join(problems)}{takes}")


# ── model ────────────────────────────────────────────────────────────


class SkillScope(StrEnum):
    TASK = "task"
    """A prompt for a pool slot to run as a task."""
    COORDINATOR = "coordinator"
    """Instructions for the coordinating session itself (e.g. a loop over pool tools)."""
    CHAIN = "chain"
    """Meant as a step of a chain (may expect ``{previous_output}``)."""


class SkillSource(StrEnum):
    """Where a skill came from; later sources win over earlier ones."""

    BUILTIN = "builtin"
    GLOBAL = "global"
    PROJECT = "project"
    RUNTIME = "runtime"


class SkillArgument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    required: bool = False
    default: str | None = None
    """Used when the argument is not supplied (an optional argument without one is removed)."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _ARG_NAME.match(name) or name == "ARGUMENTS":
            raise ValueError(
                f"argument name {name!r} must start with a letter or _ and contain only "
                "letters, digits, _ and -"
            )
        return name

    @field_validator("default", mode="before")
    @classmethod
    def _default_as_text(cls, value: object) -> object:
        # YAML reads `default: 3` or `default: yes` as int/bool; the template wants text.
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return value


class Skill(BaseModel):
    """A prompt template with declared arguments and optional task overrides."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    name: str
    description: str
    argument_hint: str | None = Field(default=None, alias="argument-hint")
    arguments: list[SkillArgument] = Field(default_factory=list)
    scope: SkillScope = SkillScope.TASK
    overrides: TaskOverrides | None = None
    body: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Front-matter keys this project does not interpret (kept when saving)."""
    source: SkillSource = SkillSource.RUNTIME
    path: Path | None = None
    """The ``SKILL.md`` (or ``<name>.md``) this skill was read from, if any."""

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not _SKILL_NAME.match(name) or len(name) > 64:
            raise ValueError(
                f"skill name {name!r} must be 1-64 lowercase letters, digits and single "
                "hyphens (e.g. code-review)"
            )
        return name

    @field_validator("description")
    @classmethod
    def _has_description(cls, description: str) -> str:
        if not description.strip():
            raise ValueError("description must not be empty")
        return description.strip()

    @model_validator(mode="after")
    def _unique_arguments(self) -> Self:
        names = [a.name for a in self.arguments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"arguments declared twice: {', '.join(duplicates)}")
        return self

    @property
    def directory(self) -> Path | None:
        """The skill's folder (``${CLAUDE_SKILL_DIR}``), if it lives on disk."""
        return self.path.parent if self.path is not None else None

    @property
    def required_arguments(self) -> list[str]:
        return [a.name for a in self.arguments if a.required]

    def render(self, args: SkillArgs | None = None) -> str:
        """The prompt for these arguments.

        ``args`` may be a mapping (by name), a sequence (by position, in declaration order) or
        one string, split like a shell command line (``'src/app.py "be strict"'``), where extra
        words go to the last declared argument. A skill that declares no arguments takes any
        number of positional ones. Empty values count as not supplied. Raises
        :class:`SkillArgumentError` for missing required, unknown or too many arguments.
        """
        named, positional, all_arguments = self._bind(args)
        values = TemplateValues(
            named=named,
            positional=positional,
            positional_limit=len(self.arguments) if self.arguments else None,
            all_arguments=all_arguments,
            skill_dir=str(self.directory) if self.directory is not None else None,
        )
        rendered = render(self.body, values, on_missing_skill_dir=self._no_directory)
        text = rendered.text
        if not rendered.used_arguments and all_arguments:
            # Like Claude Code: a template that never mentions its arguments still gets them.
            text = f"{text.rstrip()}\n\nARGUMENTS: {all_arguments}\n"
        return text

    def _no_directory(self) -> str:
        raise SkillError(
            f"skill {self.name!r} uses ${{CLAUDE_SKILL_DIR}} but has no folder on disk (it was "
            "added at runtime); save it to a skills directory first"
        )

    def _bind(self, args: SkillArgs | None) -> tuple[dict[str, str | None], list[str | None], str]:
        declared = [a.name for a in self.arguments]
        supplied: dict[str, str | None]
        if args is None:
            args = {}
        if isinstance(args, str):
            args = _split_command_line(args)
            if self.arguments and len(args) > len(self.arguments):
                keep = len(self.arguments) - 1
                args = [*args[:keep], " ".join(args[keep:])]
        if isinstance(args, Mapping):
            unknown = [k for k in args if k not in declared]
            if unknown:
                raise SkillArgumentError(self.name, unknown=unknown, expected=declared)
            supplied = {k: _text(v) for k, v in args.items()}
            extra_positional: list[str] = []
        else:
            values = [_text(v) for v in args]
            if self.arguments and len(values) > len(self.arguments):
                raise SkillArgumentError(
                    self.name,
                    detail=f"got {len(values)} positional arguments, it takes at most "
                    f"{len(self.arguments)}",
                    expected=declared,
                )
            supplied = dict(zip(declared, values, strict=False))
            extra_positional = [v or "" for v in values] if not self.arguments else []

        named: dict[str, str | None] = {}
        missing = []
        for argument in self.arguments:
            value = supplied.get(argument.name) or argument.default or None
            if value is None and argument.required:
                missing.append(argument.name)
            named[argument.name] = value
        if missing:
            raise SkillArgumentError(self.name, missing=missing, expected=declared)
        positional: list[str | None] = list(named.values()) if self.arguments else []
        positional.extend(extra_positional)
        all_arguments = " ".join(v for v in positional if v)
        return named, positional, all_arguments

    def to_markdown(self) -> str:
        """The skill as ``SKILL.md`` text (``parse_skill`` reads it back to an equal skill)."""
        front: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.argument_hint is not None:
            front["argument-hint"] = self.argument_hint
        if self.arguments:
            front["arguments"] = [
                a.model_dump(exclude_defaults=True, exclude={"required"})
                | ({"required": True} if a.required else {})
                for a in self.arguments
            ]
        front["scope"] = self.scope.value
        if self.overrides is not None:
            front["overrides"] = self.overrides.model_dump(mode="json", exclude_none=True)
        front.update(self.metadata)
        header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=100)
        return f"---\n{header}---\n{self.body}"


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _split_command_line(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # unbalanced quotes: fall back to plain words rather than refuse
        return text.split()


# ── parsing ──────────────────────────────────────────────────────────

_KNOWN_KEYS = {"name", "description", "argument-hint", "arguments", "scope", "overrides"}
_COMPAT_KEYS = {"model": "model", "allowed-tools": "allowed_tools"}


def parse_skill(
    text: str, path: str | Path | None = None, *, source: SkillSource = SkillSource.RUNTIME
) -> Skill:
    """Parse ``SKILL.md`` text. Without a ``name`` the skill is named after its folder (for
    ``<name>/SKILL.md``) or file (``<name>.md``); without a ``description`` the body's first
    paragraph is used. Raises :class:`SkillParseError` saying what is wrong."""
    file = Path(path) if path is not None else None
    front, body = _split_front_matter(text, file)
    data: dict[str, Any] = {}
    metadata = {k: v for k, v in front.items() if k not in _KNOWN_KEYS | set(_COMPAT_KEYS)}
    for key in _KNOWN_KEYS & front.keys():
        data[key] = front[key]
    if "name" not in data and file is not None:
        data["name"] = file.parent.name if file.name == SKILL_FILE else file.stem
    if not data.get("description"):
        data["description"] = _first_paragraph(body)
    data["arguments"] = _arguments(front.get("arguments"), file)
    data["overrides"] = _overrides(front, file)
    data["body"] = body
    try:
        return Skill.model_validate(data | {"metadata": metadata, "source": source, "path": file})
    except ValidationError as exc:
        raise SkillParseError(_describe(exc), file) from exc


def load_skill_file(path: str | Path, *, source: SkillSource = SkillSource.RUNTIME) -> Skill:
    """Read and parse one skill file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SkillParseError(f"cannot read the file: {exc}", file) from exc
    return parse_skill(text, file, source=source)


def _split_front_matter(text: str, path: Path | None) -> tuple[dict[str, Any], str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise SkillParseError("no front matter: the file must start with a '---' line", path)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise SkillParseError("the front matter is not closed by a '---' line", path) from None
    try:
        front = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise SkillParseError(f"the front matter is not valid YAML: {exc}", path) from exc
    if front is None:
        front = {}
    if not isinstance(front, dict):
        raise SkillParseError("the front matter must be a YAML mapping (key: value)", path)
    body = "\n".join(lines[end + 1 :]).lstrip("\n")
    if not body.strip():
        raise SkillParseError("the skill has no body (the prompt template is empty)", path)
    return {str(k): v for k, v in front.items()}, body


def _first_paragraph(body: str) -> str:
    for paragraph in body.strip().split("\n\n"):
        text = " ".join(line.strip().lstrip("#").strip() for line in paragraph.splitlines())
        if text:
            return text[:300]
    return ""


def _arguments(raw: object, path: Path | None) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SkillParseError("'arguments' must be a list of {name, description, required}", path)
    # A bare name is shorthand for an optional argument.
    return [{"name": item} if isinstance(item, str) else item for item in raw]


def _overrides(front: Mapping[str, Any], path: Path | None) -> TaskOverrides | None:
    raw = front.get("overrides")
    if raw is not None and not isinstance(raw, dict):
        raise SkillParseError("'overrides' must be a mapping of task override fields", path)
    merged: dict[str, Any] = {}
    for key, field_name in _COMPAT_KEYS.items():
        if key in front:
            value = front[key]
            merged[field_name] = _tool_list(value) if field_name == "allowed_tools" else value
    merged.update(raw or {})
    if not merged:
        return None
    unknown = sorted(set(merged) - set(TaskOverrides.model_fields))
    if unknown:
        raise SkillParseError(
            f"unknown override(s) {', '.join(unknown)}; valid ones are "
            f"{', '.join(TaskOverrides.model_fields)}",
            path,
        )
    try:
        return TaskOverrides.model_validate(merged)
    except ValidationError as exc:
        raise SkillParseError(f"invalid overrides: {_describe(exc)}", path) from exc


def _tool_list(value: object) -> object:
    """Claude Code writes ``allowed-tools: Read, Grep, Bash(git diff:*)`` as one string."""
    if not isinstance(value, str):
        return value
    tools, depth, current = [], 0, ""
    for char in value:
        depth += (char == "(") - (char == ")")
        if depth == 0 and (char == "," or char.isspace()):
            if current.strip():
                tools.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        tools.append(current.strip())
    return tools


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)

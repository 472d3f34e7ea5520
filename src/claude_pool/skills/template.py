"""Placeholder substitution shared by skills and workflows.

The rules (also in ``docs/skills.md``):

- ``{name}`` is replaced only when ``name`` is a *known* name (a skill's declared argument, a
  workflow's parameter). Any other brace text is literal and kept byte for byte: JSON examples,
  ``{{``, ``${{ secrets.X }}``, ``{previous_output}`` in a skill that does not declare it.
- ``{{name}}`` around a known name is the escape: it renders as the literal ``{name}``.
- ``$ARGUMENTS`` is every supplied argument joined by spaces; ``$ARGUMENTS[N]`` and ``$N`` are the
  N-th (0-based) argument. Digits are read greedily, so ``$10`` is argument 10 and never ``$1``
  followed by ``0``. ``$N`` is a placeholder only for an index the skill can receive (below the
  number of declared arguments, or any index for a skill that declares none), so ``costs $100``
  stays literal in a skill with two arguments.
- ``${CLAUDE_SKILL_DIR}`` is the skill's folder.
- ``$$`` before any of the ``$`` forms is the escape: ``$$ARGUMENTS`` renders as ``$ARGUMENTS``.
  ``$$`` elsewhere is literal.
- A placeholder with no value (an optional argument that was not supplied) renders as nothing,
  and a line in which *every* placeholder rendered empty is removed entirely, so a line such as
  ``Focus on: {focus}`` disappears with its value instead of leaving a dangling label. Escapes
  and ``${CLAUDE_SKILL_DIR}`` do not count as placeholders here.

Substitution is a single pass: values are inserted verbatim and never scanned for placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
"""What a skill argument or workflow parameter may be called."""

_TOKEN = re.compile(
    r"\{\{(?P<escaped>" + NAME_PATTERN + r")\}\}"
    r"|\{(?P<name>" + NAME_PATTERN + r")\}"
    r"|\$\$(?P<dollar_escaped>ARGUMENTS\[\d+\]|ARGUMENTS(?![A-Za-z0-9_])|\d+|\{CLAUDE_SKILL_DIR\})"
    r"|\$ARGUMENTS\[(?P<arg_index>\d+)\]"
    r"|\$(?P<all>ARGUMENTS)(?![A-Za-z0-9_\[])"
    r"|\$(?P<index>\d+)"
    r"|\$\{(?P<skill_dir>CLAUDE_SKILL_DIR)\}"
)

_REFERENCE = re.compile(r"(?<!\{)\{(?P<ref>" + NAME_PATTERN + r"(?:\.[A-Za-z0-9_-]+)*)\}(?!\})")
"""``{name}`` or dotted ``{steps.plan.branch}``, not inside a ``{{...}}`` escape."""


@dataclass(frozen=True)
class TemplateValues:
    """What a template may refer to. ``None`` values are known but unsupplied (removed)."""

    named: Mapping[str, str | None] = field(default_factory=dict)
    positional: Sequence[str | None] | None = None
    """Values for ``$N``; None turns the ``$`` forms off (workflows use braces only)."""
    positional_limit: int | None = None
    """``$N`` with N at or above this is literal; None means any index is a placeholder."""
    all_arguments: str = ""
    skill_dir: str | None = None


@dataclass
class Rendered:
    text: str
    used_arguments: bool
    """Whether any argument placeholder (named, positional or ``$ARGUMENTS``) appeared."""


def render(
    template: str,
    values: TemplateValues,
    *,
    on_missing_skill_dir: Callable[[], str] | None = None,
) -> Rendered:
    """Substitute ``values`` into ``template`` following the module's rules."""
    used = False
    lines: list[str] = []
    for line in template.splitlines(keepends=True):
        substituted = 0
        emptied = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal used, substituted, emptied
            value = _value_for(match, values, on_missing_skill_dir)
            if value is None:
                return match.group(0)
            text, is_argument = value
            if is_argument is None:  # an escape
                return text
            if is_argument:
                used = True
                substituted += 1
                emptied += not text
            return text

        out = _TOKEN.sub(replace, line)
        if substituted and emptied == substituted:
            continue
        lines.append(out)
    return Rendered("".join(lines), used)


def _value_for(
    match: re.Match[str],
    values: TemplateValues,
    on_missing_skill_dir: Callable[[], str] | None,
) -> tuple[str, bool | None] | None:
    """(replacement, is-argument; None for escapes), or None to leave the match as written."""
    if (escaped := match.group("escaped")) is not None:
        return ("{" + escaped + "}", None) if escaped in values.named else None
    if (name := match.group("name")) is not None:
        if name not in values.named:
            return None
        return values.named[name] or "", True
    if values.positional is None:
        return None
    if (dollar_escaped := match.group("dollar_escaped")) is not None:
        return "$" + dollar_escaped, None
    index_text = match.group("arg_index") or match.group("index")
    if index_text is not None:
        index = int(index_text)
        if values.positional_limit is not None and index >= values.positional_limit:
            return None
        value = values.positional[index] if index < len(values.positional) else None
        return value or "", True
    if match.group("all") is not None:
        return values.all_arguments, True
    if match.group("skill_dir") is not None:
        if values.skill_dir is not None:
            return values.skill_dir, False
        if on_missing_skill_dir is not None:
            return on_missing_skill_dir(), False
        return None
    raise AssertionError(f"unhandled placeholder {match.group(0)!r}")  # pragma: no cover


def references(template: str) -> list[str]:
    """Every ``{name}`` / ``{dotted.name}`` the template mentions (escapes excluded), in order."""
    return [m.group("ref") for m in _REFERENCE.finditer(template)]

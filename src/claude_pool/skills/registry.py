"""Where skills come from, and which definition wins.

Four layers, later wins: built-in (shipped in the package) < global (``~/.claude-pool/skills``)
< project (``.claude-pool/skills`` under the pool's working directory) < runtime (added through
the API). On disk a skill is ``<dir>/<name>/SKILL.md`` (a folder that may hold scripts and
references too) or a single ``<dir>/<name>.md``.
"""

from __future__ import annotations

import builtins
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from claude_pool.skills.model import (
    SKILL_FILE,
    Skill,
    SkillError,
    SkillNotFound,
    SkillParseError,
    SkillScope,
    SkillSource,
    parse_skill,
)

log = logging.getLogger(__name__)

GLOBAL_SKILLS_DIR = Path("~/.claude-pool/skills")
PROJECT_SKILLS_DIR = Path(".claude-pool/skills")

_PRECEDENCE = (SkillSource.BUILTIN, SkillSource.GLOBAL, SkillSource.PROJECT, SkillSource.RUNTIME)
_NOT_SKILLS = {"readme.md", "changelog.md", "license.md"}


@dataclass(frozen=True)
class SkillLoadIssue:
    """A skill file that could not be loaded (the others still are)."""

    path: Path
    source: SkillSource
    reason: str

    def __str__(self) -> str:
        return f"{self.source} skill {self.path}: {self.reason}"


ChangeListener = Callable[[], None]


def builtin_skills_dir() -> Traversable:
    """The folder of built-in skills inside the installed package."""
    return resources.files("claude_pool.skills").joinpath("builtin")


class SkillRegistry:
    """The skills visible to one pool, merged from the four sources.

    ``global_dir``/``project_dir`` of None leave that layer out; :meth:`for_project` builds the
    usual layout. Disk layers are read at construction and by :meth:`reload`. Malformed files
    are listed in :attr:`errors` and skipped.
    """

    def __init__(
        self,
        *,
        global_dir: str | Path | None = None,
        project_dir: str | Path | None = None,
        builtin: bool = True,
    ) -> None:
        self.global_dir = Path(global_dir).expanduser() if global_dir is not None else None
        self.project_dir = Path(project_dir) if project_dir is not None else None
        self._builtin = builtin
        self._layers: dict[SkillSource, dict[str, Skill]] = {s: {} for s in _PRECEDENCE}
        self._issues: dict[SkillSource, builtins.list[SkillLoadIssue]] = {
            s: [] for s in _PRECEDENCE
        }
        self._listeners: builtins.list[ChangeListener] = []
        self._load_disk_layers()

    @classmethod
    def for_project(
        cls, cwd: str | Path | None = None, *, home: str | Path | None = None
    ) -> SkillRegistry:
        """Built-ins, ``<home>/.claude-pool/skills`` and ``<cwd>/.claude-pool/skills``."""
        root = Path(cwd) if cwd is not None else Path.cwd()
        home_dir = Path(home) if home is not None else Path.home()
        return cls(
            global_dir=home_dir / GLOBAL_SKILLS_DIR.relative_to("~"),
            project_dir=root / PROJECT_SKILLS_DIR,
        )

    # ── reading ─────────────────────────────────────────────────────

    @property
    def errors(self) -> builtins.list[SkillLoadIssue]:
        """Files that failed to load, with the reason, from every source."""
        return [issue for source in _PRECEDENCE for issue in self._issues[source]]

    def get(self, name: str) -> Skill:
        """The winning definition of ``name``; raises :class:`SkillNotFound`."""
        for source in reversed(_PRECEDENCE):
            skill = self._layers[source].get(name)
            if skill is not None:
                return skill
        raise SkillNotFound(name, sorted(self._effective()))

    def definitions(self, name: str) -> builtins.list[Skill]:
        """Every definition of ``name``, lowest precedence first (the last one wins)."""
        return [self._layers[s][name] for s in _PRECEDENCE if name in self._layers[s]]

    def list(
        self, scope: SkillScope | str | None = None, source: SkillSource | str | None = None
    ) -> builtins.list[Skill]:
        """Skills sorted by name. Without ``source``: the winning definitions. With ``source``:
        that layer's skills, including ones a later layer shadows."""
        if source is not None:
            pool = builtins.list(self._layers[SkillSource(source)].values())
        else:
            pool = builtins.list(self._effective().values())
        if scope is not None:
            pool = [s for s in pool if s.scope == SkillScope(scope)]
        return sorted(pool, key=lambda s: s.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._effective()

    def __iter__(self) -> Iterator[Skill]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._effective())

    def _effective(self) -> dict[str, Skill]:
        merged: dict[str, Skill] = {}
        for source in _PRECEDENCE:
            merged.update(self._layers[source])
        return merged

    # ── changing ────────────────────────────────────────────────────

    def on_change(self, callback: ChangeListener) -> Callable[[], None]:
        """Call ``callback()`` whenever the set of skills may have changed (add, remove, save,
        eject, reload). Returns a function that unsubscribes it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def add(self, skill: Skill | str) -> Skill:
        """Add (or replace) a runtime skill, given as a :class:`Skill` or ``SKILL.md`` text.
        It wins over every other source until removed."""
        if isinstance(skill, str):
            skill = parse_skill(skill, source=SkillSource.RUNTIME)
        runtime = skill.model_copy(update={"source": SkillSource.RUNTIME})
        self._layers[SkillSource.RUNTIME][runtime.name] = runtime
        self._changed()
        return runtime

    def remove(self, name: str) -> Skill:
        """Remove a runtime skill; a definition from a lower source (if any) shows again.
        Skills from files are removed by deleting the file; built-ins cannot be removed."""
        removed = self._layers[SkillSource.RUNTIME].pop(name, None)
        if removed is None:
            definitions = self.definitions(name)
            if not definitions:
                raise SkillNotFound(name, sorted(self._effective()))
            top = definitions[-1]
            raise SkillError(
                f"skill {name!r} is a {top.source} skill"
                + (f" from {top.path}" if top.source is not SkillSource.BUILTIN else "")
                + "; only runtime skills can be removed"
                + (", delete its file instead" if top.source is not SkillSource.BUILTIN else "")
            )
        self._changed()
        return removed

    def save(
        self, name: str, directory: str | Path | None = None, *, overwrite: bool = False
    ) -> Path:
        """Write skill ``name`` (usually a runtime one) to ``<directory>/<name>/SKILL.md``
        (default: the project skills directory) and return that path."""
        skill = self.get(name)
        target_dir = self._target_dir(directory)
        target = target_dir / skill.name / SKILL_FILE
        if target.exists() and not overwrite:
            raise SkillError(f"{target} already exists; pass overwrite=True to replace it")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, skill.to_markdown())
        except OSError as exc:
            raise SkillError(f"cannot save skill {name!r} to {target}: {exc}") from exc
        self._reload_if_known(target_dir)
        return target

    def eject(
        self, name: str, directory: str | Path | None = None, *, overwrite: bool = False
    ) -> Path:
        """Copy built-in skill ``name`` (its whole folder) to ``<directory>/<name>/`` (default:
        the project skills directory) for editing; the copy then wins over the built-in.
        Returns the copied ``SKILL.md``."""
        builtin = self._layers[SkillSource.BUILTIN].get(name)
        if builtin is None:
            raise SkillNotFound(name, sorted(self._layers[SkillSource.BUILTIN]))
        target_dir = self._target_dir(directory) / name
        if target_dir.exists() and not overwrite:
            raise SkillError(f"{target_dir} already exists; pass overwrite=True to replace it")
        try:
            if target_dir.exists():
                shutil.rmtree(target_dir)
            target_dir.mkdir(parents=True)
            _copy_tree(builtin_skills_dir().joinpath(name), target_dir)
        except OSError as exc:
            raise SkillError(f"cannot eject skill {name!r} to {target_dir}: {exc}") from exc
        self._reload_if_known(target_dir.parent)
        return target_dir / SKILL_FILE

    def reload(self) -> None:
        """Read the built-in, global and project skills again (runtime skills stay)."""
        self._load_disk_layers()
        self._changed()

    def _target_dir(self, directory: str | Path | None) -> Path:
        if directory is not None:
            return Path(directory).expanduser()
        if self.project_dir is None:
            raise SkillError("this registry has no project skills directory; pass a directory")
        return self.project_dir

    def _reload_if_known(self, directory: Path) -> None:
        known = {d.resolve() for d in (self.global_dir, self.project_dir) if d is not None}
        if directory.resolve() in known:
            self._load_disk_layers()
        self._changed()

    def _changed(self) -> None:
        for listener in builtins.list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("skill registry change listener %r failed", listener)

    # ── loading ─────────────────────────────────────────────────────

    def _load_disk_layers(self) -> None:
        if self._builtin:
            self._load_layer(SkillSource.BUILTIN, builtin_skills_dir())
        for source, directory in (
            (SkillSource.GLOBAL, self.global_dir),
            (SkillSource.PROJECT, self.project_dir),
        ):
            if directory is None:
                self._layers[source], self._issues[source] = {}, []
            else:
                self._load_layer(source, directory)

    def _load_layer(self, source: SkillSource, directory: Traversable) -> None:
        skills: dict[str, Skill] = {}
        issues: builtins.list[SkillLoadIssue] = []
        for entry_path, text_or_issue in _skill_files(directory):
            if isinstance(text_or_issue, str):
                try:
                    skill = parse_skill(text_or_issue, entry_path, source=source)
                except SkillParseError as exc:
                    issues.append(SkillLoadIssue(entry_path, source, exc.reason))
                    continue
            else:
                issues.append(SkillLoadIssue(entry_path, source, str(text_or_issue)))
                continue
            if skill.name in skills:
                issues.append(
                    SkillLoadIssue(
                        entry_path,
                        source,
                        f"another {source} skill is also named {skill.name!r} "
                        f"({skills[skill.name].path}); this one is ignored",
                    )
                )
                continue
            skills[skill.name] = skill
        for issue in issues:
            log.warning("skipped %s", issue)
        self._layers[source], self._issues[source] = skills, issues


def _skill_files(directory: Traversable) -> Iterator[tuple[Path, str | OSError]]:
    """(path, text or read error) for each candidate skill file, folders first, by name."""
    try:
        if not directory.is_dir():
            return
        entries = sorted(directory.iterdir(), key=lambda e: (not e.is_dir(), e.name))
    except OSError as exc:
        yield Path(str(directory)), exc
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            candidate = entry.joinpath(SKILL_FILE)
            if not candidate.is_file():
                continue
        elif entry.name.endswith(".md") and entry.name.lower() not in _NOT_SKILLS:
            candidate = entry
        else:
            continue
        try:
            yield Path(str(candidate)), candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            yield Path(str(candidate)), OSError(f"cannot read the file: {exc}")


def _copy_tree(source: Traversable, target: Path) -> None:
    for entry in source.iterdir():
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            (target / entry.name).mkdir(exist_ok=True)
            _copy_tree(entry, target / entry.name)
        else:
            (target / entry.name).write_bytes(entry.read_bytes())


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "GLOBAL_SKILLS_DIR",
    "PROJECT_SKILLS_DIR",
    "SkillLoadIssue",
    "SkillRegistry",
    "builtin_skills_dir",
]

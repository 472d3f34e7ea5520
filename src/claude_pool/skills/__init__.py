"""Skills: prompt templates in the Agent Skills ``SKILL.md`` format.

``Skill`` is one template (front matter + body); ``SkillRegistry`` merges the built-in, global,
project and runtime sources. Placeholder and escaping rules: :mod:`claude_pool.skills.template`.
"""

from claude_pool.skills.model import (
    SKILL_FILE,
    Skill,
    SkillArgs,
    SkillArgument,
    SkillArgumentError,
    SkillError,
    SkillNotFound,
    SkillParseError,
    SkillScope,
    SkillSource,
    load_skill_file,
    parse_skill,
)
from claude_pool.skills.registry import (
    GLOBAL_SKILLS_DIR,
    PROJECT_SKILLS_DIR,
    SkillLoadIssue,
    SkillRegistry,
    builtin_skills_dir,
)

__all__ = [
    "GLOBAL_SKILLS_DIR",
    "PROJECT_SKILLS_DIR",
    "SKILL_FILE",
    "Skill",
    "SkillArgs",
    "SkillArgument",
    "SkillArgumentError",
    "SkillError",
    "SkillLoadIssue",
    "SkillNotFound",
    "SkillParseError",
    "SkillRegistry",
    "SkillScope",
    "SkillSource",
    "builtin_skills_dir",
    "load_skill_file",
    "parse_skill",
]

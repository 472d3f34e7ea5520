"""Skills: SKILL.md parsing, placeholder rendering, the four-source registry, the built-ins."""

from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path

import pytest

from claude_pool import PermissionMode, TaskOverrides
from claude_pool.skills import (
    Skill,
    SkillArgumentError,
    SkillError,
    SkillNotFound,
    SkillParseError,
    SkillRegistry,
    SkillScope,
    SkillSource,
    load_skill_file,
    parse_skill,
)

BUILTIN_NAMES = {
    "chain-watcher",
    "code-review",
    "create-pr",
    "implement",
    "issue-triage",
    "pool-dashboard",
    "pre-push",
    "rebase-onto-main",
    "refactor",
    "summarize",
    "write-tests",
}


def skill_text(body: str, front: str = "name: demo\ndescription: A demo skill.") -> str:
    return f"---\n{textwrap.dedent(front).strip()}\n---\n{textwrap.dedent(body)}"


def make_skill(body: str, arguments: str = "", extra: str = "") -> Skill:
    front = "name: demo\ndescription: A demo skill.\n" + extra
    if arguments:
        front += "arguments:\n" + textwrap.indent(textwrap.dedent(arguments).strip(), "  ")
    return parse_skill(skill_text(body, front))


def write_skill(directory: Path, name: str, body: str = "Body of {name}.\n", **front: str) -> Path:
    fields = {"name": name, "description": f"The {name} skill."} | front
    header = "\n".join(f"{k}: {v}" for k, v in fields.items())
    path = directory / name / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\n{header}\n---\n{body}", encoding="utf-8")
    return path


# ── parsing ──────────────────────────────────────────────────────────


def test_parse_reads_every_front_matter_field() -> None:
    skill = parse_skill(
        skill_text(
            "Review {target}.\n",
            """
            name: review
            description: Review some code.
            argument-hint: <target> [focus]
            arguments:
              - name: target
                description: What to review
                required: true
              - name: focus
                default: bugs
            scope: coordinator
            overrides:
              model: claude-haiku-4-5
              max_turns: 5
              allowed_tools: [Read, Grep]
              permission_mode: dontAsk
            license: MIT
            """,
        )
    )
    assert skill.name == "review"
    assert skill.description == "Review some code."
    assert skill.argument_hint == "<target> [focus]"
    assert [(a.name, a.required, a.default) for a in skill.arguments] == [
        ("target", True, None),
        ("focus", False, "bugs"),
    ]
    assert skill.scope is SkillScope.COORDINATOR
    assert skill.overrides == TaskOverrides(
        model="claude-haiku-4-5",
        max_turns=5,
        allowed_tools=["Read", "Grep"],
        permission_mode=PermissionMode.DONT_ASK,
    )
    assert skill.metadata == {"license": "MIT"}
    assert skill.body == "Review {target}.\n"
    assert skill.required_arguments == ["target"]


def test_name_defaults_to_the_folder_and_description_to_the_first_paragraph(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tidy-up" / "SKILL.md"
    path.parent.mkdir()
    path.write_text("---\nscope: task\n---\n# Tidy up\nthe imports.\n\nMore text.\n")
    skill = load_skill_file(path)
    assert skill.name == "tidy-up"
    assert skill.description == "Tidy up the imports."
    assert skill.path == path
    assert skill.directory == path.parent


def test_claude_code_style_model_and_allowed_tools_become_overrides() -> None:
    skill = parse_skill(
        skill_text(
            "Go.\n",
            """
            name: compat
            description: Claude Code style.
            model: claude-sonnet-4-5
            allowed-tools: Read, Grep Bash(git diff:*)
            overrides:
              model: claude-haiku-4-5
            """,
        )
    )
    assert skill.overrides is not None
    assert skill.overrides.allowed_tools == ["Read", "Grep", "Bash(git diff:*)"]
    assert skill.overrides.model == "claude-haiku-4-5"  # explicit overrides win


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no front matter here\n", "no front matter"),
        ("---\nname: x\ndescription: y\nbody\n", "not closed"),
        ("---\nname: [unclosed\n---\nbody\n", "not valid YAML"),
        ("---\n- a\n- b\n---\nbody\n", "YAML mapping"),
        ("---\nname: x\ndescription: y\n---\n\n  \n", "no body"),
        ("---\nname: Bad_Name\ndescription: y\n---\nbody\n", "lowercase"),
        ("---\nname: x\n---\n\n", "no body"),
        ("---\nname: x\ndescription: y\noverrides:\n  modle: z\n---\nb\n", "unknown override"),
        ("---\nname: x\ndescription: y\noverrides:\n  max_turns: 0\n---\nb\n", "max_turns"),
        ("---\nname: x\ndescription: y\narguments: nope\n---\nb\n", "'arguments' must be"),
        ("---\nname: x\ndescription: y\narguments: [a, a]\n---\nb\n", "declared twice"),
        ("---\nname: x\ndescription: y\narguments: [1bad]\n---\nb\n", "argument name"),
        ("---\nname: x\ndescription: y\nscope: everywhere\n---\nb\n", "scope"),
    ],
)
def test_malformed_skill_text_is_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(SkillParseError, match=reason) as caught:
        parse_skill(text, "/skills/x/SKILL.md")
    assert caught.value.path == Path("/skills/x/SKILL.md")


def test_to_markdown_round_trips() -> None:
    original = parse_skill(
        skill_text(
            'Review {target} and print {"json": true}.\n',
            """
            name: review
            description: Review.
            argument-hint: <target>
            arguments:
              - {name: target, required: true, description: what}
              - {name: depth, default: "3"}
            scope: chain
            overrides: {max_turns: 4, permission_mode: plan}
            license: MIT
            """,
        )
    )
    again = parse_skill(original.to_markdown())
    assert again == original


# ── rendering ────────────────────────────────────────────────────────


def test_named_placeholders_are_filled_from_a_mapping() -> None:
    skill = make_skill(
        "Review {target} for {focus}.\n",
        "- {name: target, required: true}\n- {name: focus, required: true}",
    )
    assert skill.render({"target": "app.py", "focus": "bugs"}) == "Review app.py for bugs.\n"


def test_positional_and_all_arguments_forms() -> None:
    skill = make_skill(
        "first=$0 second=$1 both=[$ARGUMENTS] indexed=$ARGUMENTS[1]\n",
        "- {name: a, required: true}\n- {name: b, required: true}",
    )
    assert skill.render(["x", "y"]) == "first=x second=y both=[x y] indexed=y\n"
    assert skill.render({"b": "y", "a": "x"}) == "first=x second=y both=[x y] indexed=y\n"


def test_dollar_one_does_not_touch_dollar_ten() -> None:
    arguments = "\n".join(f"- a{i}" for i in range(11))
    skill = make_skill("$1|$10|$1x|$100\n", arguments)
    values = [f"v{i}" for i in range(11)]
    # $100 is beyond the 11 declared arguments, so it is literal text, not argument 100.
    assert skill.render(values) == "v1|v10|v1x|$100\n"


def test_dollar_amounts_beyond_the_declared_arguments_stay_literal() -> None:
    skill = make_skill("Spend at most $5 on {task}.\n", "- {name: task, required: true}")
    assert skill.render(["tests"]) == "Spend at most $5 on tests.\n"


def test_skill_without_declared_arguments_takes_any_positional_arguments() -> None:
    skill = make_skill("Fix issue $0 in $1; all: $ARGUMENTS\n")
    assert skill.render(["42", "core"]) == "Fix issue 42 in core; all: 42 core\n"
    assert skill.render('42 "the core"') == "Fix issue 42 in the core; all: 42 the core\n"


def test_a_single_string_is_split_like_a_shell_and_the_last_argument_takes_the_rest() -> None:
    skill = make_skill(
        "[{path}] [{task}]\n", "- {name: path, required: true}\n- {name: task, required: true}"
    )
    assert skill.render("src/app.py add a login page") == "[src/app.py] [add a login page]\n"
    assert skill.render('"my file.py" go') == "[my file.py] [go]\n"


def test_skill_dir_placeholder_is_the_skill_folder(tmp_path: Path) -> None:
    path = write_skill(tmp_path, "runner", "Run ${CLAUDE_SKILL_DIR}/scripts/go.sh\n")
    skill = load_skill_file(path)
    assert skill.render() == f"Run {path.parent}/scripts/go.sh\n"


def test_skill_dir_placeholder_in_a_skill_without_a_folder_is_an_error() -> None:
    skill = make_skill("Run ${CLAUDE_SKILL_DIR}/go.sh\n")
    with pytest.raises(SkillError, match="no folder on disk"):
        skill.render()


def test_unsupplied_optional_placeholders_are_removed_with_their_line() -> None:
    skill = make_skill(
        "Review {target}.\nFocus on: {focus}\nAlso {focus} and {extra}.\nEnd {extra}.\n",
        "- {name: target, required: true}\n- focus\n- extra",
    )
    assert skill.render({"target": "a.py"}) == "Review a.py.\n"
    assert skill.render({"target": "a.py", "extra": "z"}) == (
        "Review a.py.\nAlso  and z.\nEnd z.\n"
    )


def test_empty_values_count_as_not_supplied_and_defaults_fill_them() -> None:
    skill = make_skill(
        "Length: {length}\nAudience: {audience}\nDone.\n",
        "- {name: length, default: short}\n- audience",
    )
    assert skill.render({"length": "", "audience": "  "}) == "Length: short\nDone.\n"
    assert skill.render(["long"]) == "Length: long\nDone.\n"


def test_missing_required_arguments_are_named_in_the_error() -> None:
    skill = make_skill(
        "{a} {b} {c}\n", "- {name: a, required: true}\n- {name: b, required: true}\n- c"
    )
    with pytest.raises(SkillArgumentError, match="missing required argument") as caught:
        skill.render({"c": "x"})
    assert caught.value.missing == ["a", "b"]
    assert "it takes: a, b, c" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unknown_named_arguments_are_an_error() -> None:
    skill = make_skill("{a}\n", "- a")
    with pytest.raises(SkillArgumentError, match="unknown argument") as caught:
        skill.render({"a": "1", "b": "2"})
    assert caught.value.unknown == ["b"]


def test_too_many_positional_arguments_are_an_error() -> None:
    skill = make_skill("{a}\n", "- a")
    with pytest.raises(SkillArgumentError, match="got 2 positional arguments"):
        skill.render(["1", "2"])


def test_literal_braces_survive_and_double_braces_escape_a_placeholder() -> None:
    body = (
        'Reply as {"status": "ok", "items": [{"id": 1}]}.\n'
        "Template {{name}} means {name}; {{other}} and {other} stay.\n"
        "CI: ${{ secrets.TOKEN }} and {{ jinja }} and {previous_output}.\n"
    )
    skill = make_skill(body, "- {name: name, required: true}")
    assert skill.render({"name": "Ada"}) == (
        'Reply as {"status": "ok", "items": [{"id": 1}]}.\n'
        "Template {name} means Ada; {{other}} and {other} stay.\n"
        "CI: ${{ secrets.TOKEN }} and {{ jinja }} and {previous_output}.\n"
    )


def test_double_dollar_escapes_the_dollar_forms() -> None:
    skill = make_skill(
        "$$ARGUMENTS $$0 $${CLAUDE_SKILL_DIR} $$HOME $ARGUMENTS\n", "- {name: a, required: true}"
    )
    assert skill.render(["v"]) == "$ARGUMENTS $0 ${CLAUDE_SKILL_DIR} $$HOME v\n"


def test_values_are_inserted_verbatim_and_never_rescanned() -> None:
    skill = make_skill("{a} / {b}\n", "- a\n- b")
    assert skill.render({"a": "{b} $0 $ARGUMENTS", "b": "x"}) == "{b} $0 $ARGUMENTS / x\n"


def test_a_template_that_never_mentions_its_arguments_gets_them_appended() -> None:
    skill = make_skill("Tidy the imports.\n")
    assert skill.render("src/app.py") == "Tidy the imports.\n\nARGUMENTS: src/app.py\n"
    assert skill.render() == "Tidy the imports.\n"


# ── registry ─────────────────────────────────────────────────────────


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "home-skills", tmp_path / "project-skills"


def test_later_sources_win_builtin_global_project_runtime(dirs: tuple[Path, Path]) -> None:
    global_dir, project_dir = dirs
    write_skill(global_dir, "code-review", "global review\n")
    write_skill(global_dir, "only-global", "g\n")
    write_skill(project_dir, "code-review", "project review\n")
    write_skill(project_dir, "summarize", "project summary\n")
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir)

    assert registry.get("implement").source is SkillSource.BUILTIN
    assert registry.get("only-global").source is SkillSource.GLOBAL
    review = registry.get("code-review")
    assert (review.source, review.body) == (SkillSource.PROJECT, "project review\n")
    assert review.path == project_dir / "code-review" / "SKILL.md"
    assert [s.source for s in registry.definitions("code-review")] == [
        SkillSource.BUILTIN,
        SkillSource.GLOBAL,
        SkillSource.PROJECT,
    ]

    registry.add(parse_skill(skill_text("runtime review\n", "name: code-review\ndescription: R")))
    assert registry.get("code-review").source is SkillSource.RUNTIME
    assert registry.get("code-review").body == "runtime review\n"


def test_removing_a_runtime_skill_reveals_the_lower_definition(dirs: tuple[Path, Path]) -> None:
    global_dir, project_dir = dirs
    write_skill(project_dir, "summarize", "project summary\n")
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir)
    registry.add(skill_text("runtime summary\n", "name: summarize\ndescription: R"))

    removed = registry.remove("summarize")
    assert removed.source is SkillSource.RUNTIME
    assert registry.get("summarize").body == "project summary\n"
    with pytest.raises(SkillError, match="only runtime skills can be removed"):
        registry.remove("summarize")
    with pytest.raises(SkillError, match="is a builtin skill"):
        registry.remove("implement")
    with pytest.raises(SkillNotFound):
        registry.remove("never-existed")


def test_list_filters_by_scope_and_source() -> None:
    registry = SkillRegistry()
    registry.add(skill_text("x\n", "name: code-review\ndescription: mine\nscope: task"))
    coordinator = {s.name for s in registry.list(scope="coordinator")}
    assert coordinator == {"pool-dashboard", "chain-watcher"}
    assert all(s.scope is SkillScope.TASK for s in registry.list(scope=SkillScope.TASK))
    # By source: that layer, shadowed entries included.
    builtin = registry.list(source="builtin")
    assert {s.name for s in builtin} == BUILTIN_NAMES
    assert [s.name for s in registry.list(source=SkillSource.RUNTIME)] == ["code-review"]
    assert registry.get("code-review").description == "mine"
    assert [s.name for s in registry.list()] == sorted(BUILTIN_NAMES)
    assert len(registry) == len(BUILTIN_NAMES)
    assert "code-review" in registry


def test_get_unknown_skill_suggests_close_names() -> None:
    with pytest.raises(SkillNotFound, match="did you mean code-review"):
        SkillRegistry().get("code-reveiw")


def test_malformed_files_are_reported_and_the_others_still_load(dirs: tuple[Path, Path]) -> None:
    global_dir, project_dir = dirs
    write_skill(project_dir, "good-one")
    bad = project_dir / "bad-one" / "SKILL.md"
    bad.parent.mkdir(parents=True)
    bad.write_text("no front matter at all\n")
    broken_yaml = project_dir / "broken.md"
    broken_yaml.write_text("---\nname: [oops\n---\nbody\n")
    (project_dir / "single-file.md").write_text("---\ndescription: One file.\n---\nHi.\n")
    (project_dir / "README.md").write_text("# My skills\n")
    (project_dir / "not-a-skill").mkdir()
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir, builtin=False)

    assert sorted(s.name for s in registry.list()) == ["good-one", "single-file"]
    problems = {issue.path: issue for issue in registry.errors}
    assert set(problems) == {bad, broken_yaml}
    assert "no front matter" in problems[bad].reason
    assert "YAML" in problems[broken_yaml].reason
    assert problems[bad].source is SkillSource.PROJECT
    assert str(bad) in str(problems[bad])


def test_two_files_defining_one_name_in_a_source_keep_the_folder_form(tmp_path: Path) -> None:
    write_skill(tmp_path, "dup", "folder\n")
    (tmp_path / "dup.md").write_text("---\nname: dup\ndescription: file\n---\nfile\n")
    registry = SkillRegistry(project_dir=tmp_path, builtin=False)
    assert registry.get("dup").body == "folder\n"
    assert [e.path for e in registry.errors] == [tmp_path / "dup.md"]
    assert "also named 'dup'" in registry.errors[0].reason


def test_missing_directories_are_simply_empty(tmp_path: Path) -> None:
    registry = SkillRegistry(global_dir=tmp_path / "nope", project_dir=tmp_path / "nada")
    assert registry.errors == []
    assert {s.name for s in registry.list()} == BUILTIN_NAMES


def test_save_writes_a_runtime_skill_that_loads_back_as_a_project_skill(
    dirs: tuple[Path, Path],
) -> None:
    global_dir, project_dir = dirs
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir)
    added = registry.add(
        skill_text(
            'Say {greeting} as {"json": 1}\n',
            "name: greet\ndescription: Greets.\narguments: [greeting]\noverrides: {max_turns: 2}",
        )
    )
    path = registry.save("greet")
    assert path == project_dir / "greet" / "SKILL.md"
    on_disk = load_skill_file(path)
    assert on_disk.model_dump(exclude={"source", "path"}) == added.model_dump(
        exclude={"source", "path"}
    )
    assert [s.source for s in registry.definitions("greet")] == [
        SkillSource.PROJECT,
        SkillSource.RUNTIME,
    ]
    registry.remove("greet")
    assert registry.get("greet").source is SkillSource.PROJECT

    with pytest.raises(SkillError, match="already exists"):
        registry.save("greet")
    other = registry.save("greet", global_dir, overwrite=False)
    assert other == global_dir / "greet" / "SKILL.md"


def test_save_without_a_project_directory_needs_a_target() -> None:
    registry = SkillRegistry()
    registry.add(skill_text("x\n", "name: x\ndescription: X"))
    with pytest.raises(SkillError, match="pass a directory"):
        registry.save("x")


def test_eject_copies_a_builtin_that_then_wins_and_can_be_edited(dirs: tuple[Path, Path]) -> None:
    global_dir, project_dir = dirs
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir)
    builtin = registry.get("code-review")
    path = registry.eject("code-review")
    assert path == project_dir / "code-review" / "SKILL.md"
    ejected = registry.get("code-review")
    assert ejected.source is SkillSource.PROJECT
    assert ejected.model_dump(exclude={"source", "path"}) == builtin.model_dump(
        exclude={"source", "path"}
    )

    path.write_text(path.read_text().replace("You are reviewing code.", "Be brief."))
    registry.reload()
    assert registry.get("code-review").body.startswith("Be brief.")
    with pytest.raises(SkillError, match="already exists"):
        registry.eject("code-review")
    registry.eject("code-review", overwrite=True)
    assert registry.get("code-review").body == builtin.body
    with pytest.raises(SkillNotFound):
        registry.eject("not-a-builtin")


def test_change_listeners_hear_every_change_and_a_failing_one_does_not_break_others(
    dirs: tuple[Path, Path],
) -> None:
    global_dir, project_dir = dirs
    registry = SkillRegistry(global_dir=global_dir, project_dir=project_dir)
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("listener bug")

    registry.on_change(broken)
    unsubscribe = registry.on_change(lambda: calls.append("changed"))
    registry.add(skill_text("x\n", "name: x\ndescription: X"))
    registry.save("x")
    registry.remove("x")
    registry.eject("summarize")
    registry.reload()
    assert calls == ["changed"] * 5
    unsubscribe()
    registry.reload()
    assert len(calls) == 5


def test_for_project_uses_the_home_and_project_skill_folders(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "repo"
    write_skill(home / ".claude-pool" / "skills", "mine")
    write_skill(cwd / ".claude-pool" / "skills", "ours")
    registry = SkillRegistry.for_project(cwd, home=home)
    assert registry.get("mine").source is SkillSource.GLOBAL
    assert registry.get("ours").source is SkillSource.PROJECT


# ── built-ins ────────────────────────────────────────────────────────


def test_builtins_all_parse_and_ship_as_package_data() -> None:
    registry = SkillRegistry()
    assert registry.errors == []
    assert {s.name for s in registry.list(source="builtin")} == BUILTIN_NAMES
    folder = resources.files("claude_pool.skills").joinpath("builtin")
    for name in BUILTIN_NAMES:
        assert folder.joinpath(name, "SKILL.md").is_file(), name


@pytest.mark.parametrize("name", sorted(BUILTIN_NAMES))
def test_each_builtin_renders_with_sample_arguments(name: str) -> None:
    skill = SkillRegistry().get(name)
    assert skill.description
    assert skill.argument_hint
    every = {a.name: f"SAMPLE-{a.name.upper()}" for a in skill.arguments}
    text = skill.render(every)
    for argument in skill.arguments:
        assert f"{{{argument.name}}}" not in text
        assert f"SAMPLE-{argument.name.upper()}" in text, argument.name
    required_only = skill.render({a: "x" for a in skill.required_arguments})
    for argument in skill.arguments:
        assert f"{{{argument.name}}}" not in required_only
    if skill.required_arguments:
        with pytest.raises(SkillArgumentError):
            skill.render({})


def test_read_only_builtins_cannot_edit_files() -> None:
    registry = SkillRegistry()
    for name in ("code-review", "summarize", "issue-triage"):
        overrides = registry.get(name).overrides
        assert overrides is not None
        assert overrides.permission_mode is PermissionMode.DONT_ASK
        assert "Edit" in (overrides.disallowed_tools or [])
        assert not {"Edit", "Write", "Bash"} & set(overrides.allowed_tools or [])


def test_pre_push_detects_tooling_rather_than_assuming_a_language() -> None:
    text = SkillRegistry().get("pre-push").render()
    for marker in ("pyproject.toml", "package.json", "Cargo.toml", "go.mod", "Makefile"):
        assert marker in text


def test_the_example_in_the_skills_doc_renders_as_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "skills.md").read_text()
    source = doc.split("```markdown\n", 1)[1].split("```\n", 1)[0]
    expected = doc.split("```text\n", 1)[1].split("```\n", 1)[0]
    skill = parse_skill(source)
    assert skill.render({"path": "src/app.py"}) == expected

"""What a user installs: the runtime dependencies are what the package imports, no more; and
the wheel, installed in a fresh virtual environment, works from any folder."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import distributions, packages_distributions
from pathlib import Path
from typing import Any

import pytest

import claude_pool
from claude_pool.testing.claude_cli import CLAUDE_CODE_VERSION

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(claude_pool.__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

COMES_WITH = {"pydantic-core": "pydantic", "mcp-types": "mcp"}
"""Distributions the package imports that a runtime dependency ships as part of itself."""
TEST_ONLY = {"pytest": "claude_pool.testing.store_contract is a pytest suite"}
"""Imports that only the test helpers make, and only under the test runner."""
EXTRAS = {"psycopg": "postgres", "psycopg-pool": "postgres"}
"""Imports that only an optional part makes (the PostgreSQL store), each from its extra."""


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match is not None, requirement
        names.add(normalise(match[0]))
    return names


def runtime_dependencies() -> set[str]:
    return requirement_names(PYPROJECT["project"]["dependencies"])


def imported_top_level_modules() -> set[str]:
    """Every top-level module that some module of the package imports, lazily ones too."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def imported_distributions() -> set[str]:
    """The third-party distributions the package imports."""
    providers = packages_distributions()
    third_party = {
        module
        for module in imported_top_level_modules()
        if module not in sys.stdlib_module_names and module not in ("claude_pool", "__future__")
    }
    missing = sorted(module for module in third_party if module not in providers)
    assert missing == [], f"imported but not installed: {missing}"
    return {normalise(dist) for module in third_party for dist in providers[module]}


def test_every_third_party_package_the_code_imports_is_a_runtime_dependency() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    for dist, extra in EXTRAS.items():  # psycopg[pool] brings psycopg-pool
        assert "psycopg" in requirement_names(extras[extra]), (dist, extra)
    imported = imported_distributions() - set(TEST_ONLY) - set(EXTRAS)
    undeclared = {
        dist
        for dist in imported
        if dist not in runtime_dependencies() and COMES_WITH.get(dist) not in runtime_dependencies()
    }
    assert undeclared == set(), "add them to [project] dependencies in pyproject.toml"


def test_every_runtime_dependency_is_imported_by_the_code() -> None:
    unused = runtime_dependencies() - imported_distributions()
    assert unused == set(), "move them to an optional extra (or drop them)"


def test_what_only_tests_use_is_in_the_dev_extra() -> None:
    dev = requirement_names(PYPROJECT["project"]["optional-dependencies"]["dev"])
    assert {"httpx", "pytest", "pytest-asyncio", "schemathesis", "playwright"} <= dev
    # httpx is also a runtime dependency now: webhooks are delivered with it.
    assert not {"pytest", "schemathesis", "playwright"} & runtime_dependencies()


def test_the_postgresql_driver_is_an_optional_extra() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert requirement_names(extras["postgres"]) == {"psycopg"}
    assert "psycopg" not in runtime_dependencies()


# ── the wheel, installed ────────────────────────────────────────────


def run(argv: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; AssertionError with its output if it fails."""
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once for this module."""
    into = tmp_path_factory.mktemp("wheels")
    run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(into)],
        timeout=180,
    )
    [built] = into.glob("claude_pool-*.whl")
    return built


def installed_versions(into: Path) -> Path:
    """A pip constraints file pinning what this environment runs, so that the fresh one gets
    the same versions (found in pip's cache or the configured index, never newer surprises)."""
    pins = {
        normalise(dist.metadata["Name"]): dist.version
        for dist in distributions()
        if dist.metadata["Name"] and normalise(dist.metadata["Name"]) != "claude-pool"
    }
    into.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    return into


def path_without_claude(first: Path) -> str:
    """``first``, then this PATH without the folders that hold a ``claude``."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    kept = [f for f in folders if f and not (Path(f) / "claude").exists()]
    return os.pathsep.join([str(first), *kept])


def test_the_wheel_ships_its_data_files_and_licence_and_declares_only_runtime_needs(
    wheel: Path,
) -> None:
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
    for shipped in (
        "claude_pool/py.typed",
        "claude_pool/store/sqlite/sql/schema.sql",
        "claude_pool/store/sqlite/sql/queries.sql",
        "claude_pool/store/sqlite/sql/migrations/0001_initial.sql",
        "claude_pool/store/postgres/sql/schema.sql",
        "claude_pool/store/postgres/sql/queries.sql",
        "claude_pool/store/postgres/sql/migrations/0001_initial.sql",
        "claude_pool/skills/builtin/code-review/SKILL.md",
        "claude_pool/web/static/index.html",
        "claude_pool/web/static/app.js",
        "claude_pool/web/static/style.css",
        f"{info}/licenses/LICENSE",
    ):
        assert shipped in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/"))]
    metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    unconditional = requirement_names(
        [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    )
    assert unconditional == runtime_dependencies()
    assert metadata["License-Expression"] == "MIT"
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "claude-pool = claude_pool.cli:main" in entry_points


@pytest.mark.cli
@pytest.mark.packaging
@pytest.mark.timeout(300)
def test_the_installed_wheel_sets_up_and_runs_the_demo_from_an_unrelated_folder(
    wheel: Path, tmp_path: Path
) -> None:
    try:
        check_the_installed_wheel(wheel, tmp_path)
    finally:  # a virtual environment and a Claude Code install: some 450 MB
        shutil.rmtree(tmp_path, ignore_errors=True)


def check_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=60)
    python = venv / "bin" / "python"
    constraints = installed_versions(tmp_path / "constraints.txt")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--prefer-binary", "-c", str(constraints), str(wheel)],
        timeout=300,
    )  # fmt: skip

    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    cache = tmp_path / "cache"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANTHROPIC_", "CLAUDE_", "PYTHON", "VIRTUAL_ENV"))
        and key != "CLAUDECODE"
    }
    env |= {
        "PATH": path_without_claude(venv / "bin"),
        "CLAUDE_POOL_CACHE_DIR": str(cache),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "COLUMNS": "160",
    }

    def claude_pool_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run([str(venv / "bin" / "claude-pool"), *args], timeout=timeout, cwd=elsewhere,
                   env=env)  # fmt: skip

    # The package runs from the fresh environment, not from this checkout.
    probe = run(
        [str(python), "-c", "import claude_pool, claude_pool.executor.locate as l; "
         "print(claude_pool.__version__, claude_pool.__file__, l.cache_dir(), sep='\\n')"],
        timeout=30, cwd=elsewhere, env={**env, "CLAUDE_POOL_CACHE_DIR": ""},
    ).stdout.splitlines()  # fmt: skip
    assert probe[0] == PYPROJECT["project"]["version"]
    assert Path(probe[1]).is_relative_to(venv)
    if sys.platform == "linux":
        assert probe[2] == str(tmp_path / "xdg" / "claude-pool"), "the per-user cache"

    help_text = claude_pool_cli("--help").stdout
    assert "install-cli" in help_text
    assert claude_pool_cli("--version").stdout.split() == [
        "claude-pool",
        PYPROJECT["project"]["version"],
    ]

    installed = json.loads(claude_pool_cli("install-cli", "--json", timeout=600).stdout)
    assert installed["ok"] is True
    assert installed["version"] == CLAUDE_CODE_VERSION
    assert Path(installed["path"]).is_relative_to(cache / "claude-cli")

    # SQL migrations shipped: a store is created, and doctor reads it.
    task_id = claude_pool_cli("submit", "queued for later", "--store", "pool.db").stdout.strip()
    assert task_id.startswith("task-")
    doctor = json.loads(claude_pool_cli("doctor", "--json", "--store", "pool.db").stdout)
    checks = {check["name"]: check for check in doctor["checks"]}
    assert doctor["ok"] is True, checks
    assert checks["claude CLI"]["status"] == "ok"
    assert checks["claude CLI"]["detail"].startswith(f"{CLAUDE_CODE_VERSION} at {cache}")
    assert "1 task(s) (1 pending)" in checks["store"]["detail"]

    assert "code-review" in claude_pool_cli("skills", "list").stdout

    demo = claude_pool_cli("demo", "--mock", timeout=180).stdout
    assert "every task succeeded" in demo

"""What a user installs: the runtime dependencies are what the package imports, no more."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import claude_pool

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(claude_pool.__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

COMES_WITH = {"pydantic-core": "pydantic", "mcp-types": "mcp"}
"""Distributions the package imports that a runtime dependency ships as part of itself."""
TEST_ONLY = {"pytest": "claude_pool.testing.store_contract is a pytest suite"}
"""Imports that only the test helpers make, and only under the test runner."""


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
    imported = imported_distributions() - set(TEST_ONLY)
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
    assert {"httpx", "pytest", "pytest-asyncio"} <= dev
    assert "httpx" not in runtime_dependencies()


def test_the_postgresql_driver_is_an_optional_extra() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert requirement_names(extras["postgres"]) == {"psycopg"}
    assert "psycopg" not in runtime_dependencies()

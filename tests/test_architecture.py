"""The package's shape: no import cycles, and no module imports a module above it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import claude_pool

PACKAGE = Path(claude_pool.__file__).parent
ROOT = "claude_pool"

LAYERS: list[list[str]] = [
    # the domain model and small helpers
    ["types", "errors", "pricing", "notify", "lifecycle", "aio", "redaction"],
    ["config", "events", "task_port"],
    # seams and their implementations
    ["bus", "store", "executor"],
    ["worktree", "skills", "chain.model"],
    # the engine, bottom up
    ["budget", "ratelimit", "outcomes", "slot", "eventlog", "webhooks"],
    ["membership", "slots", "dependencies", "verification", "merging"],
    ["runner"],
    ["scheduler"],
    ["queue", "notes"],
    ["supervisor", "chain.runner", "chain.workflows", "chain", "shutdown", "housekeeping"],
    ["engine", "status"],
    ["pool"],
    ["routing"],
    # the faces, and what helps test them
    ["testing", "mcp", "cli", "demo", "doctor", "web", "__main__", "config_reference"],
]
"""Lowest first. A module may import from its own layer and those below, never above."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([ROOT, *parts])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (anywhere in it, lazily too), leaving out what is
    imported only for type checking."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(ROOT):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(ROOT):
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        name: {m for m in imports_of(path, modules) if m in modules and m != name}
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def layer_of(module: str) -> int | None:
    name = module.removeprefix(ROOT).lstrip(".")
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for layer, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or name.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return None if best is None else best[1]


def test_the_package_has_no_import_cycles() -> None:
    graph = import_graph()
    # The package root re-exports the public API; every module may import it lazily.
    graph = {m: {t for t in targets if t != ROOT} for m, targets in graph.items()}
    assert cycles(graph) == []


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = sorted(m for m in import_graph() if m != ROOT and layer_of(m) is None)
    assert unplaced == [], "add the new module to LAYERS in this test"


def test_no_module_imports_a_module_above_it() -> None:
    upward = sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        if module != ROOT
        for target in targets
        if target != ROOT and (layer_of(target) or 0) > (layer_of(module) or 0)
    )
    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The tests above could not fail if this did not work.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_production_code_does_not_import_the_test_helpers() -> None:
    graph = import_graph()
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if not module.startswith(f"{ROOT}.testing")
        and module != f"{ROOT}.demo"  # the demo runs the mock API
        for target in targets
        if target.startswith(f"{ROOT}.testing")
    )
    assert offenders == []


HEAVY_FACE_DEPENDENCIES = ("mcp", "starlette", "uvicorn", "httpx", "psycopg", "prometheus_client")


def test_the_library_and_the_cli_load_no_face_they_do_not_use() -> None:
    """`import claude_pool` and a plain CLI command (`claude-pool status`) load neither the MCP
    SDK nor the web stack nor psycopg: each costs a noticeable part of every command's start."""
    code = (
        "import sys, claude_pool, claude_pool.cli; "
        f"print(' '.join(sorted(m for m in {HEAVY_FACE_DEPENDENCIES!r} if m in sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []


def test_the_readme_names_every_module_of_the_package() -> None:
    """ "Where things live" in the README lists every module and package of ``claude_pool``."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Where things live", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"\w+(?:\.py|/)", block))
    package = Path(__file__).parents[1] / "src" / "claude_pool"
    modules = {
        path.name if path.is_file() else f"{path.name}/"
        for path in package.iterdir()
        if path.suffix == ".py" or (path / "__init__.py").exists()
    } - {"__init__.py", "__main__.py"}
    assert sorted(modules - named) == []

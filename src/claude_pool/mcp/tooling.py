"""How a pool tool is declared: :func:`pool_tool`, the annotations it carries, and the shape
of a tool group.

Each area of tools (:mod:`claude_pool.mcp.tools`) is a :data:`ToolGroup`: a function that adds
its tools for a :class:`Pool` to an ``MCPServer``, each with :func:`pool_tool`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from claude_pool.mcp.errors import translating_errors
from claude_pool.pool import Pool

ToolContext = Context[Any, Any]
ToolGroup = Callable[[MCPServer[Any], Pool], None]
"""Adds a group of tools for ``pool`` to ``server``."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


# ── annotations: what a client may assume about each tool ─────────────

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
"""Looks, changes nothing."""
RUNS_WORK = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=True
)
"""Starts Claude Code work: spends money, and the slot may edit files (permission mode)."""
CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
"""Adds or changes pool state without losing anything."""
SETS = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
"""Sets pool state; repeating the call changes nothing more."""
REMOVES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
"""Stops, removes or overwrites something; repeating the call changes nothing more."""
SETS_FILES = REMOVES
"""Writes a file (replacing one only with overwrite=true); repeating it changes nothing more."""
CLASSIFIES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
"""One cheap model call that changes nothing (it is a task, so it costs a little)."""


# ── declaring a tool ──────────────────────────────────────────────────


def pool_tool(
    server: MCPServer[Any], name: str, annotations: ToolAnnotations, title: str | None = None
) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """Register an async function as a tool with structured output; its docstring is the
    description and engine errors become tool errors."""

    def register(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        server.add_tool(
            translating_errors(fn),
            name=name,
            title=title,
            annotations=annotations,
            structured_output=True,
        )
        return fn

    return register


__all__ = [
    "CHANGES",
    "CLASSIFIES",
    "READ_ONLY",
    "REMOVES",
    "RUNS_WORK",
    "SETS",
    "SETS_FILES",
    "ToolContext",
    "ToolGroup",
    "pool_tool",
]

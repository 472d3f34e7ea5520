"""Engine errors as MCP tool errors: what was wrong and what to do about it.

A tool error is for a call the pool refuses (a bad id, state or value); a task that fails is a
result, not an error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from claude_pool.errors import (
    BudgetExhausted,
    ClaudePoolError,
    InvalidTaskState,
    NoSlotAvailable,
    PoolShutdown,
    ScalingError,
    SlotNotFound,
    TaskNotFound,
)

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_ADVICE: tuple[tuple[type[ClaudePoolError], str], ...] = (
    (TaskNotFound, "pool_list_tasks shows the task ids this pool knows"),
    (SlotNotFound, "pool_find_slots (or the pool://slots resource) shows the slot ids"),
    (InvalidTaskState, "pool_result shows the task's current state"),
    (ScalingError, "pool_status shows how many slots there are now"),
    (NoSlotAvailable, "pool_find_slots shows which slots exist; pool_scale_up adds slots"),
    (BudgetExhausted, "pool://budget shows the spend; no new work can start in this pool"),
    (
        PoolShutdown,
        "this server's pool has been drained; restart `claude-pool serve` to run more work",
    ),
)


REFUSALS = (ClaudePoolError, ValueError, OverflowError)
"""What the engine raises for a call it refuses (bad ids, states or values): these become tool
errors saying what was wrong. ``OverflowError`` is a number too large for a store (SQLite
holds 64-bit integers); the tools' bounds should stop those first."""


def tool_error(exc: Exception) -> ToolError:
    """A tool error for a failed pool call: what went wrong and what to do about it."""
    if isinstance(exc, ClaudePoolError):
        advice = next((a for kind, a in _ADVICE if isinstance(exc, kind)), None)
        message = f"{type(exc).__name__}: {exc}"
        return ToolError(f"{message} ({advice})" if advice else message)
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        return ToolError(f"invalid arguments: {problems}")
    if isinstance(exc, OverflowError):
        return ToolError(
            f"invalid arguments: a number is too large for the pool to store or use ({exc}); "
            "use a smaller value"
        )
    return ToolError(f"invalid arguments: {exc}")


def translating_errors(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """``fn``, with the refusals it raises turned into tool errors (see :func:`tool_error`)."""

    @functools.wraps(fn)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except REFUSALS as exc:
            log.info("tool %s refused: %s", fn.__name__, exc)
            raise tool_error(exc) from exc

    return call


__all__ = ["REFUSALS", "tool_error", "translating_errors"]

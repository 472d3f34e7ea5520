"""Engine errors as HTTP problem documents (RFC 9457): the engine's message, a fitting status.

A refused call (unknown id, wrong state, bad input, no budget, a pool shutting down) is a
problem document; a task that fails is a result, not an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import JSONResponse

from claude_pool.errors import (
    BudgetExhausted,
    ChainNotFound,
    ClaudePoolError,
    ConfigError,
    InvalidTaskState,
    NoSlotAvailable,
    PoolShutdown,
    ScalingError,
    SlotNotFound,
    TaskNotFound,
)

PROBLEM_TYPE = "application/problem+json"


class Problem(BaseModel):
    """What went wrong with a request (RFC 9457). ``type`` names the engine's error class."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (TaskNotFound, 404),
    (ChainNotFound, 404),
    (SlotNotFound, 404),
    (InvalidTaskState, 409),
    (ScalingError, 409),
    (BudgetExhausted, 429),
    (NoSlotAvailable, 429),
    (PoolShutdown, 503),
    (ConfigError, 422),
    (ValidationError, 422),
    (ValueError, 422),
    (OverflowError, 422),
)

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    503: "Service unavailable",
}

REFUSALS = (ClaudePoolError, ValueError, OverflowError)
"""What the engine raises for a call it refuses; anything else is a bug (a 500)."""


def problem(
    status: int,
    detail: str,
    kind: str = "about:blank",
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    """A problem-document response."""
    body = {"type": kind, "title": _TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(fields)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def status_of(exc: Exception) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)


def _validation_detail(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def from_exception(exc: Exception) -> JSONResponse:
    """The problem document for a refused engine call."""
    status = status_of(exc)
    detail = _validation_detail(exc) if isinstance(exc, ValidationError) else str(exc)
    fields: dict[str, Any] = {}
    for name in ("task_id", "chain_id", "slot_id", "state", "spent", "limit"):
        value = getattr(exc, name, None)
        if isinstance(value, str | int):
            fields[name] = value
    headers = {"Retry-After": "60"} if status == 429 else None
    kind = type(exc).__name__ if isinstance(exc, ClaudePoolError) else "InvalidInput"
    return problem(status, detail, kind, headers, **fields)


__all__ = ["PROBLEM_TYPE", "REFUSALS", "Problem", "from_exception", "problem", "status_of"]

"""The REST API under ``/api/v1``: requests become :class:`Pool` calls, results their JSON.

Bodies and answers are the seed types' JSON (``TaskRecord``, ``SlotRecord``,
``SessionMetrics``...); lists come wrapped in an object (``{"tasks": [...]}``) with their paging.
Refused calls are problem documents (:mod:`claude_pool.web.problems`). Nothing here keeps
state or decides policy: every rule is the engine's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from claude_pool.chain.model import ChainResult, ChainSpec, ChainState
from claude_pool.pool import Pool, PoolStatus
from claude_pool.queue import RejectOutcome
from claude_pool.store import Delivery, DeliveryState, Webhook
from claude_pool.types import (
    MetricsFilter,
    SessionMetrics,
    SlotRecord,
    TaskFilter,
    TaskOverrides,
    TaskRecord,
    TaskState,
)
from claude_pool.web.problems import REFUSALS, from_exception, problem

API_PREFIX = "/api/v1"
MAX_PAGE = 500
_INT32 = 2**31 - 1
_JSON_TYPES = ("application/json", "application/problem+json")


class SubmitRequest(BaseModel):
    """A task to queue (``POST /api/v1/tasks``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=1_000_000)
    overrides: TaskOverrides | None = None
    """Per-task overrides of the pool's and the slot's configuration."""
    tags: list[str] = Field(default_factory=list, max_length=100)
    priority: int = Field(default=0, ge=-(2**31), le=_INT32)
    """Higher runs first; equal priorities in submission order."""
    review: bool = False
    """Hold the result for approve or reject."""
    max_rejections: int = Field(default=3, ge=0, le=1000)
    timeout_secs: float | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    """Run-time limit (default: the pool's)."""
    slot: str | None = None
    role: str | None = None
    name: str | None = None
    fresh_session: bool = False
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    """Tasks that must complete first; the prompt may use ``{{<task id>.output}}``."""
    on_dependency_failure: Literal["cancel", "run"] = "cancel"
    """When a dependency fails or is cancelled: cancel this task too, or run it anyway."""
    plan_first: bool = False
    """Plan first in plan mode, held for review (approve carries the plan out)."""
    verify: str | None = Field(default=None, min_length=1, max_length=10_000)
    """Shell command run in the task's directory once it completes; non-zero exit sends it
    back with the command's output as feedback."""


class MergeRequest(BaseModel):
    """Branches to merge (``POST /api/v1/merge``): those of these task and chain ids."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=100)
    into: str = Field(default="main", min_length=1, max_length=200)
    resolve_conflicts: bool = False
    """Hand a conflict to a slot as a task; its resolution, through ``verify`` and ``review``,
    is committed and the merge goes on."""
    verify: str | None = Field(default=None, min_length=1, max_length=10_000)
    """The check a conflict resolution must pass (default: the pool's or slot's)."""
    review: bool = False
    """Hold each conflict resolution for approval first."""
    resolve_timeout: float | None = Field(default=None, gt=0, le=86_400)
    """Run-time limit of a resolving task, in seconds."""


class RejectRequest(BaseModel):
    """Why a result held for review is sent back (``POST /api/v1/tasks/{id}/reject``)."""

    model_config = ConfigDict(extra="forbid")

    feedback: str = Field(min_length=1, max_length=100_000)


class WebhookRequest(BaseModel):
    """A webhook to add (``POST /api/v1/webhooks``)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", max_length=2000)
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=100)
    """Event types to send (``task_finished``, ``chain_finished``...); ``*``: all."""
    secret: str | None = Field(default=None, min_length=1, max_length=1000)
    """Key of the ``X-Claude-Pool-Signature`` HMAC-SHA256 of each body."""


class WebhookInfo(BaseModel):
    """A webhook as the API shows it: never its secret, only whether it has one."""

    id: str
    url: str
    events: list[str]
    source: str
    created_at_ms: int
    signed: bool

    @classmethod
    def of(cls, hook: Webhook) -> WebhookInfo:
        return cls(
            id=hook.id, url=hook.url, events=hook.events, source=hook.source,
            created_at_ms=hook.created_at_ms, signed=bool(hook.secret),
        )  # fmt: skip


class WebhookList(BaseModel):
    webhooks: list[WebhookInfo]


class DeliveryPage(BaseModel):
    """Webhook deliveries, newest first; ``next_offset`` is None on the last page."""

    deliveries: list[Delivery]
    limit: int
    offset: int
    next_offset: int | None = None


class TaskPage(BaseModel):
    """A page of tasks, newest first; ``next_offset`` is None on the last page."""

    tasks: list[TaskRecord]
    limit: int
    offset: int
    next_offset: int | None = None
    waiting: dict[str, list[str]] = Field(default_factory=dict)
    """The page's pending tasks held by dependencies, with what each still waits for."""


class SlotList(BaseModel):
    slots: list[SlotRecord]


class ChainPage(BaseModel):
    """A page of chains, in creation order."""

    chains: list[ChainResult]
    limit: int
    offset: int
    next_offset: int | None = None


Handler = Callable[[Request, Pool], Awaitable[Response]]


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(model.model_dump(mode="json"), status_code=status, headers=headers)


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, request.app.state.pool)
        except REFUSALS as exc:  # pydantic's ValidationError is a ValueError
            return from_exception(exc)

    return endpoint


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be within {low}..{high}, got {value}")
    return value


def _optional_int(request: Request, name: str) -> int | None:
    if request.query_params.get(name) is None:
        return None
    return _int(request, name, 0, 0, 2**53)


def _bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


async def _body(request: Request, model: type[BaseModel]) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise _BadBody(415, f"send the body as application/json (got {content_type or 'none'})")
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:
        raise _BadBody(400, f"the body is not JSON: {exc}") from None
    return model.model_validate(data)


class _BadBody(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


def _bodied(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: Request, pool: Pool) -> Response:
        try:
            return await handler(request, pool)
        except _BadBody as exc:
            return problem(exc.status, exc.detail, "InvalidBody")

    return wrapped


# ── routes ───────────────────────────────────────────────────────────


async def get_status(request: Request, pool: Pool) -> Response:
    status: PoolStatus = await pool.status()
    return _json(status)


async def list_tasks(request: Request, pool: Pool) -> Response:
    state = request.query_params.get("state")
    tags = request.query_params.getlist("tag")
    filter = TaskFilter(
        state=TaskState(state) if state is not None else None,
        slot_id=request.query_params.get("slot"),
        tags=tags or None,
    )
    limit = _int(request, "limit", 50, 1, MAX_PAGE)
    offset = _int(request, "offset", 0, 0, _INT32)
    tasks = await pool.list_tasks(filter, limit + 1, offset, newest_first=True)
    more = len(tasks) > limit
    page = TaskPage(
        tasks=tasks[:limit],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
        waiting=await pool.waiting_for(t.id for t in tasks[:limit] if t.depends_on),
    )
    return _json(page)


async def get_task(request: Request, pool: Pool) -> Response:
    return _json(await pool.get_task(request.path_params["task_id"]))


@_bodied
async def submit_task(request: Request, pool: Pool) -> Response:
    body: SubmitRequest = await _body(request, SubmitRequest)
    task_id = await pool.submit(
        body.prompt, body.overrides, body.tags, review=body.review,
        max_rejections=body.max_rejections, priority=body.priority, timeout=body.timeout_secs,
        slot=body.slot, role=body.role, name=body.name, fresh_session=body.fresh_session,
        depends_on=body.depends_on, on_dependency_failure=body.on_dependency_failure,
        verify=body.verify, plan_first=body.plan_first,
    )  # fmt: skip
    record = await pool.get_task(task_id)
    return _json(record, 201, {"Location": f"{API_PREFIX}/tasks/{task_id}"})


@_bodied
async def merge_results(request: Request, pool: Pool) -> Response:
    body: MergeRequest = await _body(request, MergeRequest)
    report = await pool.merge(
        body.ids, into=body.into, resolve_conflicts=body.resolve_conflicts, verify=body.verify,
        review=body.review, resolve_timeout=body.resolve_timeout,
    )  # fmt: skip
    return _json(report)


class TaskDiff(BaseModel):
    """What a task's slot changed in its git worktree; ``diff`` is None when it ran on
    none."""

    task_id: str
    diff: str | None = None


async def get_task_diff(request: Request, pool: Pool) -> Response:
    task_id = request.path_params["task_id"]
    return _json(TaskDiff(task_id=task_id, diff=await pool.task_diff(task_id)))


async def cancel_task(request: Request, pool: Pool) -> Response:
    return _json(await pool.cancel(request.path_params["task_id"]))


async def approve_task(request: Request, pool: Pool) -> Response:
    return _json(await pool.approve(request.path_params["task_id"]))


@_bodied
async def reject_task(request: Request, pool: Pool) -> Response:
    body: RejectRequest = await _body(request, RejectRequest)
    outcome: RejectOutcome = await pool.reject(request.path_params["task_id"], body.feedback)
    return _json(outcome)


async def list_slots(request: Request, pool: Pool) -> Response:
    return _json(SlotList(slots=pool.slots))


async def list_chains(request: Request, pool: Pool) -> Response:
    state = request.query_params.get("state")
    limit = _int(request, "limit", 50, 1, MAX_PAGE)
    offset = _int(request, "offset", 0, 0, _INT32)
    chains = await pool.list_chains(
        ChainState(state) if state is not None else None, limit + 1, offset
    )
    more = len(chains) > limit
    page = ChainPage(
        chains=chains[:limit],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )
    return _json(page)


async def get_chain(request: Request, pool: Pool) -> Response:
    return _json(await pool.chain_result(request.path_params["chain_id"]))


@_bodied
async def submit_chain(request: Request, pool: Pool) -> Response:
    spec: ChainSpec = await _body(request, ChainSpec)
    chain_id = await pool.submit_chain(spec)
    result = await pool.chain_result(chain_id)
    return _json(result, 201, {"Location": f"{API_PREFIX}/chains/{chain_id}"})


async def cancel_chain(request: Request, pool: Pool) -> Response:
    return _json(await pool.cancel_chain(request.path_params["chain_id"]))


async def get_metrics(request: Request, pool: Pool) -> Response:
    tags = request.query_params.getlist("tag")
    filter = MetricsFilter(
        since_ms=_optional_int(request, "since_ms"),
        until_ms=_optional_int(request, "until_ms"),
        tags=tags or None,
        model=request.query_params.get("model"),
        all_time=_bool(request, "all_time"),
    )
    metrics: SessionMetrics = await pool.session_metrics(filter)
    return _json(metrics)


async def list_webhooks(request: Request, pool: Pool) -> Response:
    hooks = await pool.list_webhooks()
    return _json(WebhookList(webhooks=[WebhookInfo.of(hook) for hook in hooks]))


@_bodied
async def add_webhook(request: Request, pool: Pool) -> Response:
    body: WebhookRequest = await _body(request, WebhookRequest)
    hook = await pool.add_webhook(body.url, body.events, body.secret)
    return _json(WebhookInfo.of(hook), 201)


async def remove_webhook(request: Request, pool: Pool) -> Response:
    webhook_id = request.path_params["webhook_id"]
    if not await pool.remove_webhook(webhook_id):
        return problem(404, f"no webhook with id {webhook_id!r}", "WebhookNotFound")
    return Response(status_code=204)


async def list_deliveries(request: Request, pool: Pool) -> Response:
    state = request.query_params.get("state")
    limit = _int(request, "limit", 50, 1, MAX_PAGE)
    offset = _int(request, "offset", 0, 0, _INT32)
    deliveries = await pool.webhook_deliveries(
        request.query_params.get("webhook_id"),
        DeliveryState(state) if state is not None else None,
        limit + 1,
        offset,
    )
    more = len(deliveries) > limit
    page = DeliveryPage(
        deliveries=deliveries[:limit], limit=limit, offset=offset,
        next_offset=offset + limit if more else None,
    )  # fmt: skip
    return _json(page)


def routes() -> list[Route]:
    """The REST routes, relative to the app's root (they carry the ``/api/v1`` prefix)."""
    p = API_PREFIX
    return [
        Route(f"{p}/status", _endpoint(get_status), methods=["GET"]),
        Route(f"{p}/tasks", _endpoint(list_tasks), methods=["GET"]),
        Route(f"{p}/tasks", _endpoint(submit_task), methods=["POST"]),
        Route(f"{p}/merge", _endpoint(merge_results), methods=["POST"]),
        Route(f"{p}/tasks/{{task_id}}", _endpoint(get_task), methods=["GET"]),
        Route(f"{p}/tasks/{{task_id}}/diff", _endpoint(get_task_diff), methods=["GET"]),
        Route(f"{p}/tasks/{{task_id}}/cancel", _endpoint(cancel_task), methods=["POST"]),
        Route(f"{p}/tasks/{{task_id}}/approve", _endpoint(approve_task), methods=["POST"]),
        Route(f"{p}/tasks/{{task_id}}/reject", _endpoint(reject_task), methods=["POST"]),
        Route(f"{p}/slots", _endpoint(list_slots), methods=["GET"]),
        Route(f"{p}/chains", _endpoint(list_chains), methods=["GET"]),
        Route(f"{p}/chains", _endpoint(submit_chain), methods=["POST"]),
        Route(f"{p}/chains/{{chain_id}}", _endpoint(get_chain), methods=["GET"]),
        Route(f"{p}/chains/{{chain_id}}/cancel", _endpoint(cancel_chain), methods=["POST"]),
        Route(f"{p}/metrics", _endpoint(get_metrics), methods=["GET"]),
        Route(f"{p}/webhooks", _endpoint(list_webhooks), methods=["GET"]),
        Route(f"{p}/webhooks", _endpoint(add_webhook), methods=["POST"]),
        Route(f"{p}/webhooks/deliveries", _endpoint(list_deliveries), methods=["GET"]),
        Route(f"{p}/webhooks/{{webhook_id}}", _endpoint(remove_webhook), methods=["DELETE"]),
    ]


__all__ = [
    "API_PREFIX",
    "ChainPage",
    "DeliveryPage",
    "RejectRequest",
    "SlotList",
    "SubmitRequest",
    "TaskDiff",
    "TaskPage",
    "WebhookInfo",
    "WebhookList",
    "WebhookRequest",
    "routes",
]

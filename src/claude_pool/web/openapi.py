"""The OpenAPI 3.1 document of the REST API, served at ``/api/v1/openapi.json``.

The schemas come from the same pydantic models the routes answer with, so the document cannot
drift from the answers; the paths are listed here, next to what each can refuse.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from claude_pool import __version__
from claude_pool.chain.model import ChainResult, ChainSpec, ChainState
from claude_pool.merging import MergeReport
from claude_pool.pool import PoolStatus
from claude_pool.queue import RejectOutcome
from claude_pool.types import SessionMetrics, TaskRecord, TaskState
from claude_pool.web.api import (
    API_PREFIX,
    MAX_PAGE,
    ChainPage,
    DeliveryPage,
    MergeRequest,
    RejectRequest,
    SlotList,
    SubmitRequest,
    TaskDiff,
    TaskPage,
    WebhookInfo,
    WebhookList,
    WebhookRequest,
)
from claude_pool.web.problems import PROBLEM_TYPE, Problem

_REF = "#/components/schemas/{model}"

_RESPONSES: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (PoolStatus, "serialization"),
    (TaskPage, "serialization"),
    (TaskRecord, "serialization"),
    (TaskDiff, "serialization"),
    (RejectOutcome, "serialization"),
    (SlotList, "serialization"),
    (ChainPage, "serialization"),
    (ChainResult, "serialization"),
    (SessionMetrics, "serialization"),
    (Problem, "serialization"),
    (WebhookList, "serialization"),
    (WebhookInfo, "serialization"),
    (DeliveryPage, "serialization"),
    (SubmitRequest, "validation"),
    (WebhookRequest, "validation"),
    (RejectRequest, "validation"),
    (MergeReport, "serialization"),
    (MergeRequest, "validation"),
    (ChainSpec, "validation"),
]

_WHY = {
    400: "The body is not JSON, or names a skill that does not exist.",
    401: "A bearer token is required.",
    404: "No such task, chain or webhook.",
    409: "The task is in another state than the operation needs.",
    415: "The body is not application/json.",
    422: "A parameter or a field of the body is invalid.",
    429: "The budget is exhausted, or no slot could take the task.",
    503: "The pool is shutting down and accepts no new work.",
}


def _ok(name: str, status: str = "200", description: str = "OK") -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
        }
    }


def _problems(*statuses: int) -> dict[str, Any]:
    schema = {"$ref": _REF.format(model="Problem")}
    return {
        str(status): {"description": _WHY[status], "content": {PROBLEM_TYPE: {"schema": schema}}}
        for status in (401, *statuses)
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
            "description": description}  # fmt: skip


def _body(name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
    }


_PAGING = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
           "Most items to return."),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
           "Items to skip."),
]  # fmt: skip
_TASK_ID = _path("task_id", "The task's id.")
_CHAIN_ID = _path("chain_id", "The chain's id.")


def _paths() -> dict[str, Any]:
    p = API_PREFIX
    state_values = [str(s) for s in TaskState]
    return {
        f"{p}/status": {
            "get": {
                "operationId": "getStatus",
                "summary": "Slots, task counts, spend against the budget, rate-limit state.",
                "responses": {**_ok("PoolStatus"), **_problems()},
            }
        },
        f"{p}/tasks": {
            "get": {
                "operationId": "listTasks",
                "summary": "Tasks, newest first, filtered by state, tag (any of) and slot.",
                "parameters": [
                    _query("state", {"type": "string", "enum": state_values}, "Only this state."),
                    _query(
                        "tag",
                        {"type": "array", "items": {"type": "string"}},
                        "Only tasks with any of these tags (repeat the parameter).",
                    ),
                    _query("slot", {"type": "string"}, "Only tasks of this slot."),
                    *_PAGING,
                ],
                "responses": {**_ok("TaskPage"), **_problems(422)},
            },
            "post": {
                "operationId": "submitTask",
                "summary": "Queue a task; answers its record (pending) at once.",
                "requestBody": _body("SubmitRequest"),
                "responses": {
                    **_ok("TaskRecord", "201", "Queued"),
                    **_problems(400, 415, 422, 429, 503),
                },
            },
        },
        f"{p}/tasks/{{task_id}}": {
            "get": {
                "operationId": "getTask",
                "summary": "A task's whole record, with its result once it has one.",
                "parameters": [_TASK_ID],
                "responses": {**_ok("TaskRecord"), **_problems(404)},
            }
        },
        f"{p}/tasks/{{task_id}}/diff": {
            "get": {
                "operationId": "getTaskDiff",
                "summary": "What the task's slot changed in its git worktree (for review).",
                "parameters": [_TASK_ID],
                "responses": {**_ok("TaskDiff"), **_problems(404)},
            }
        },
        f"{p}/tasks/{{task_id}}/cancel": {
            "post": {
                "operationId": "cancelTask",
                "summary": "Cancel a task (a finished one is left alone); answers its record.",
                "parameters": [_TASK_ID],
                "responses": {**_ok("TaskRecord"), **_problems(404, 409)},
            }
        },
        f"{p}/tasks/{{task_id}}/approve": {
            "post": {
                "operationId": "approveTask",
                "summary": "Accept a result held for review.",
                "parameters": [_TASK_ID],
                "responses": {**_ok("TaskRecord"), **_problems(404, 409)},
            }
        },
        f"{p}/tasks/{{task_id}}/reject": {
            "post": {
                "operationId": "rejectTask",
                "summary": "Send a result held for review back with feedback: it runs again, "
                "or fails once out of attempts.",
                "parameters": [_TASK_ID],
                "requestBody": _body("RejectRequest"),
                "responses": {**_ok("RejectOutcome"), **_problems(400, 404, 409, 415, 422, 503)},
            }
        },
        f"{p}/merge": {
            "post": {
                "operationId": "mergeResults",
                "summary": "Merge the kept branches of tasks and chains into a branch, in "
                "order, stopping cleanly at a conflict.",
                "requestBody": _body("MergeRequest"),
                "responses": {**_ok("MergeReport"), **_problems(400, 404, 415, 422)},
            }
        },
        f"{p}/slots": {
            "get": {
                "operationId": "listSlots",
                "summary": "This pool's slots.",
                "responses": {**_ok("SlotList"), **_problems()},
            }
        },
        f"{p}/chains": {
            "get": {
                "operationId": "listChains",
                "summary": "Chains in creation order.",
                "parameters": [
                    _query(
                        "state",
                        {"type": "string", "enum": [str(s) for s in ChainState]},
                        "Only this state.",
                    ),
                    *_PAGING,
                ],
                "responses": {**_ok("ChainPage"), **_problems(422)},
            },
            "post": {
                "operationId": "submitChain",
                "summary": "Start a chain of steps (prompts or skills, with dependencies and "
                "isolation); answers its progress (pending) at once.",
                "requestBody": _body("ChainSpec"),
                "responses": {
                    **_ok("ChainResult", "201", "Started"),
                    **_problems(400, 415, 422, 429, 503),
                },
            },
        },
        f"{p}/chains/{{chain_id}}": {
            "get": {
                "operationId": "getChain",
                "summary": "A chain's progress and per-step results.",
                "parameters": [_CHAIN_ID],
                "responses": {**_ok("ChainResult"), **_problems(404)},
            }
        },
        f"{p}/chains/{{chain_id}}/cancel": {
            "post": {
                "operationId": "cancelChain",
                "summary": "Cancel a chain: its running step is stopped, the rest skipped (a "
                "finished chain is left alone); answers its progress.",
                "parameters": [_CHAIN_ID],
                "responses": {**_ok("ChainResult"), **_problems(404)},
            }
        },
        f"{p}/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Session metrics: counts, spend, timing, per-model breakdown.",
                "parameters": [
                    _query(
                        "since_ms",
                        {"type": "integer", "minimum": 0, "maximum": 2**53},
                        "Tasks created from then (ms since the epoch).",
                    ),
                    _query(
                        "until_ms",
                        {"type": "integer", "minimum": 0, "maximum": 2**53},
                        "Tasks created before then.",
                    ),
                    _query(
                        "tag",
                        {"type": "array", "items": {"type": "string"}},
                        "Only tasks with any of these tags.",
                    ),
                    _query("model", {"type": "string"}, "Only tasks run on this model."),
                    _query(
                        "all_time",
                        {"type": "boolean"},
                        "Every task in the store, not only this session's.",
                    ),
                ],
                "responses": {**_ok("SessionMetrics"), **_problems(422)},
            }
        },
        f"{p}/webhooks": {
            "get": {
                "operationId": "listWebhooks",
                "summary": "The webhooks in the store (configured and added), without secrets.",
                "responses": {**_ok("WebhookList"), **_problems()},
            },
            "post": {
                "operationId": "addWebhook",
                "summary": "POST every event of the given types to a URL from now on.",
                "requestBody": _body("WebhookRequest"),
                "responses": {**_ok("WebhookInfo", "201", "Added"), **_problems(400, 415, 422)},
            },
        },
        f"{p}/webhooks/deliveries": {
            "get": {
                "operationId": "listWebhookDeliveries",
                "summary": "Webhook deliveries, newest first, with their attempts and outcome.",
                "parameters": [
                    _query("webhook_id", {"type": "string"}, "Only this webhook's."),
                    _query(
                        "state",
                        {"type": "string", "enum": ["pending", "delivered", "failed"]},
                        "Only deliveries in this state.",
                    ),
                    *_PAGING,
                ],
                "responses": {**_ok("DeliveryPage"), **_problems(422)},
            }
        },
        f"{p}/webhooks/{{webhook_id}}": {
            "delete": {
                "operationId": "removeWebhook",
                "summary": "Stop a webhook; its pending deliveries are dropped.",
                "parameters": [_path("webhook_id", "The webhook's id.")],
                "responses": {"204": {"description": "Removed"}, **_problems(404)},
            }
        },
        f"{p}/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "The pool's domain events as server-sent events (id: the event's "
                "seq; resume with Last-Event-ID).",
                "parameters": [
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0},
                        "Start after this event (Last-Event-ID wins).",
                    ),
                    _query("task_id", {"type": "string"}, "Only this task's events."),
                    _query("chain_id", {"type": "string"}, "Only this chain's events."),
                    _query("types", {"type": "string"}, "Comma-separated event types."),
                ],
                "responses": {
                    "200": {
                        "description": "An endless event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_problems(422),
                },
            }
        },
    }


def openapi_document(extra_paths: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document (``extra_paths``: more operations, e.g. webhooks and events)."""
    _, schemas = models_json_schema(_RESPONSES, ref_template=_REF)
    components = schemas.get("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "claude-pool",
            "version": __version__,
            "description": "Watch and steer a pool of Claude Code sessions. Errors are problem "
            "documents (RFC 9457) with the engine's message.",
        },
        "paths": {**_paths(), **(extra_paths or {})},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


__all__ = ["openapi_document"]

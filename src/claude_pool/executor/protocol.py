"""The CLI's stream-json protocol: what we write to stdin, and what its stdout events mean.

Facts verified against Claude Code 2.1.330:

- stdin takes one JSON object per line: user messages
  ``{"type":"user","message":{"role":"user","content":"..."}}`` and control requests
  ``{"type":"control_request","request_id":ID,"request":{"subtype":...}}``; the CLI answers a
  control request with ``{"type":"control_response","response":{"subtype":"success"|"error",
  "request_id":ID,...}}``. ``interrupt`` stops the running turn (its result comes at once with
  subtype ``error_during_execution``); ``set_model`` and ``set_permission_mode`` change the live
  session.
- ``system/init`` is emitted at the start of every turn (session id, model, tools).
- ``result.total_cost_usd`` and ``modelUsage`` are cumulative for the *session as restored*
  (a ``--resume`` process starts from the session's earlier spend), while
  ``model_usage_since_last_result`` holds exactly what was spent since the previous result of
  the same process; the per-task cost is taken from it.
- ``modelUsage`` is keyed by the requested model; the model that actually served a reply is the
  ``model`` of the ``assistant`` messages (what the API answered).
- An HTTP 401 shows up as ``system/api_retry`` with ``error_status: 401`` and
  ``error: "authentication_failed"``, retried for minutes.
- A denied tool call shows up as ``system/permission_denied`` and in the result's
  ``permission_denials``.
- Token usage: each ``assistant`` event carries ``message.usage``, but one API message is split
  into one event per content block (same ``message.id``), all printed *before* the message ends,
  so their ``output_tokens`` is the ``message_start`` figure (1 against the mock), not the
  message's. With ``--include-partial-messages`` the raw stream also comes out as
  ``stream_event`` lines, each tagged with ``api_message_id``: ``message_start`` (input and cache
  tokens) and ``message_delta`` (the final ``output_tokens``). The CLI counts a message's
  ``message_start`` usage even when its stream is dropped.
- A user message ``/clear`` starts a new conversation in the live process: the CLI prints
  ``{"type":"conversation_reset","new_conversation_id":NEW,"trigger":"clear",
  "session_id":OLD,...}``, then ``system/init`` and a ``result`` (``num_turns`` 0,
  ``local_command`` ``"clear"``) carrying the new ``session_id``; no API call is made.
  ``total_cost_usd`` and the ``--max-budget-usd`` count start again from 0, model and
  permission mode changed in place are kept, and the old conversation stays resumable. The
  new conversation is not empty: it starts with the CLI's record of the command (a meta
  ``<local-command-caveat>`` message, the ``<command-name>/clear</command-name>`` message, which
  takes the ``uuid`` we gave the ``/clear`` user message, and an empty
  ``<local-command-stdout>``). No stdin message shape (``isSynthetic``, ``isMeta``, content
  blocks, the ``/new`` and ``/reset`` aliases) and no ``session_id`` on a user message leaves
  that record out, and ``fork_conversation`` answers ``unsupported``.
- ``rewind_conversation`` (``target_message_uuid``) cuts the conversation before that message.
  Cutting at the caveat removes the whole record, so that the next request carries the next
  prompt only; the CLI refuses it as ``stale_target`` unless ``last_seen_user_message_uuid``
  names the ``/clear`` message. The caveat's uuid is printed nowhere on stdout; it is the
  ``parentUuid`` of the ``/clear`` message in the session's transcript,
  ``<config dir>/projects/<cwd>/<session id>.jsonl`` (``CLAUDE_CONFIG_DIR``, else
  ``~/.claude``), written before the ``/clear`` result is printed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from claude_pool.errors import PermissionPromptDetected
from claude_pool.executor.base import EventKind, ExecutorEvent
from claude_pool.pricing import estimate_cost_usd, known_price
from claude_pool.types import SlotId, TaskId, TaskResult, usd_to_microdollars

logger = logging.getLogger(__name__)

AUTH_FAILED_MESSAGE = (
    "the API rejected the credentials (401): check ANTHROPIC_API_KEY (or the credentials the "
    "Claude Code CLI is configured with)"
)

_TOOL_PREVIEW_CHARS = 2_000


CLEAR_COMMAND = "/clear"
"""The user message that starts a new conversation in a live stream-json process."""


def encode_user_message(prompt: str, uuid: str | None = None) -> bytes:
    """A user message line for a stream-json stdin (``uuid``: the id the CLI gives it)."""
    message: dict[str, Any] = {"type": "user", "message": {"role": "user", "content": prompt}}
    if uuid is not None:
        message["uuid"] = uuid
    return _line(message)


CLEAR_CAVEAT_TAG = "<local-command-caveat>"


def clear_caveat_uuid(transcript: Iterable[str], clear_uuid: str) -> str | None:
    """The uuid of the caveat message that precedes the ``/clear`` record ``clear_uuid`` in a
    session transcript (JSON lines), or None when the transcript does not show it."""
    entries: dict[str, dict[str, Any]] = {}
    for line in transcript:
        entry = parse_line(line)
        if entry is not None and isinstance(entry.get("uuid"), str):
            entries[entry["uuid"]] = entry
    parent = entries.get(clear_uuid, {}).get("parentUuid")
    caveat = entries.get(parent) if isinstance(parent, str) else None
    if caveat is None or not caveat.get("isMeta"):
        return None
    message = caveat.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return parent if isinstance(content, str) and content.startswith(CLEAR_CAVEAT_TAG) else None


def encode_control_request(request_id: str, subtype: str, **fields: Any) -> bytes:
    """A control request line (``interrupt``, ``set_model``, ``set_permission_mode``...)."""
    request = {"subtype": subtype, **fields}
    return _line({"type": "control_request", "request_id": request_id, "request": request})


def encode_control_error(request_id: str, message: str) -> bytes:
    """An error answer to a control request the CLI sent us (we act as no SDK host)."""
    response = {"subtype": "error", "request_id": request_id, "error": message}
    return _line({"type": "control_response", "response": response})


def encode_permission_denial(request_id: str, message: str) -> bytes:
    """Deny a ``can_use_tool`` request from the CLI: nobody is there to approve it."""
    response = {
        "subtype": "success",
        "request_id": request_id,
        "response": {"behavior": "deny", "message": message},
    }
    return _line({"type": "control_response", "response": response})


def _line(obj: Mapping[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def parse_line(line: bytes | str) -> dict[str, Any] | None:
    """One stdout line as an event, or None (logged) when it is not a JSON object."""
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        logger.debug("skipping a non-JSON line from the CLI: %.200r", text)
        return None
    if not isinstance(value, dict):
        logger.debug("skipping a non-object JSON line from the CLI: %.200r", text)
        return None
    return value


def control_response_of(event: Mapping[str, Any]) -> tuple[str, bool, dict[str, Any]] | None:
    """``(request_id, ok, body)`` when ``event`` answers one of our control requests."""
    if event.get("type") != "control_response":
        return None
    response = event.get("response")
    if not isinstance(response, dict):
        return None
    ok = response.get("subtype") == "success"
    return str(response.get("request_id", "")), ok, response


def is_auth_failure(event: Mapping[str, Any]) -> bool:
    """An ``api_retry`` (or result) that says the API rejected the credentials."""
    if event.get("type") == "system" and event.get("subtype") == "api_retry":
        return event.get("error_status") == 401 or event.get("error") == "authentication_failed"
    if event.get("type") == "result":
        return event.get("api_error_status") == 401
    return False


# ── Mapping stdout events to ExecutorEvents ───────────────────────────

_USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass
class MessageUsage:
    """The token usage of one API message, as far as the stream has told it."""

    served_model: str | None = None
    """The ``model`` the API answered with."""
    requested_model: str | None = None
    """The model of the turn's ``system/init`` when the message came (what the CLI asked for)."""
    usage: dict[str, int] = field(default_factory=dict)

    def merge(self, usage: object) -> None:
        """Fold in a later report of this message's usage. Every count is a running total
        (``message_start`` < ``message_delta``), so the largest report of each count wins: a
        repeat of the start figure seen after the delta cannot lower it."""
        if not isinstance(usage, dict):
            return
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self.usage[key] = max(self.usage.get(key, 0), value)

    @property
    def pricing_model(self) -> str | None:
        """The model to price it by: the one that served it when its price is known (a
        fallback model is paid at its own price), else the one the CLI asked for."""
        if known_price(self.served_model) is not None:
            return self.served_model
        return self.requested_model or self.served_model


OUTPUT_SO_FAR_CHARS = 20_000
"""How much of a stopped task's text its result keeps (the end of it)."""


@dataclass
class TurnTracker:
    """What one task's events said, beyond the final result event."""

    session_id: str | None = None
    init_model: str | None = None
    served_model: str | None = None
    """``model`` of the last assistant message: what the API says served the task."""
    turns: int = 0
    denied_tools: dict[str, str] = field(default_factory=dict)
    """Tool name → reason, from ``system/permission_denied`` events and stderr."""
    total_cost_usd: float | None = None
    """The cumulative ``total_cost_usd`` of the result event, once it came."""
    result_event: dict[str, Any] | None = None
    """The task's ``result`` event, once it came."""
    messages: dict[str, MessageUsage] = field(default_factory=dict)
    """Token usage of every API message seen, by message id (each message counted once)."""
    api_retries: int = 0
    """``api_retry`` events seen: how often the CLI had to retry an API call."""
    last_api_retry: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    """The text blocks of the assistant messages seen, in order (what a stopped task had
    written so far)."""
    _assistant_ids: set[str] = field(default_factory=set)

    def output_so_far(self, limit: int = OUTPUT_SO_FAR_CHARS) -> str:
        """The text the task had written (its last ``limit`` characters), or "" for none."""
        text = "\n\n".join(t.strip() for t in self.texts if t.strip())
        return text if len(text) <= limit else "…" + text[-(limit - 1) :]

    def retry_note(self) -> str:
        """What the API did while the CLI retried (empty when it never retried): for the
        result of a task that ended in the middle of an error storm."""
        if not self.api_retries:
            return ""
        last = self.last_api_retry
        status = last.get("status")
        attempt, limit = last.get("attempt"), last.get("max_retries")
        delay = last.get("delay_ms")
        parts = [f"HTTP {status}" if status is not None else "an API error"]
        if attempt is not None:
            parts.append(f"on attempt {attempt}" + (f" of {limit}" if limit is not None else ""))
        if isinstance(delay, int | float):
            parts.append(f"next retry announced in {delay / 1000:.1f}s")
        error = last.get("error")
        detail = f": {str(error)[:300]}" if error else ""
        return (
            f"; the API kept failing while it ran: {', '.join(parts)} "
            f"({plural(self.api_retries, 'retry', 'retries')} in all){detail}"
        )

    def estimated_cost_usd(self) -> float:
        """The cost of the API messages seen, priced as the CLI prices them: what a task that
        got no ``result`` event spent, as far as its stream told."""
        return sum(
            estimate_cost_usd(message.pricing_model, [message.usage])
            for message in self.messages.values()
        )

    def _note_usage(self, message_id: str | None, model: object, usage: object) -> None:
        if message_id is None:
            # Without an id the reports of one message cannot be told from several: skip
            # rather than count a message twice (the API always gives an id).
            return
        served = _str_or_none(model)
        if served is not None and served.startswith("<"):
            return  # "<synthetic>": made up by the CLI, not an API call
        entry = self.messages.get(message_id)
        if entry is None:
            entry = self.messages[message_id] = MessageUsage(requested_model=self.init_model)
        if served is not None:
            entry.served_model = served
        entry.merge(usage)

    def events(
        self, event: Mapping[str, Any], task_id: TaskId, slot_id: SlotId
    ) -> list[ExecutorEvent]:
        """Note what ``event`` says and translate it into the events callers see."""
        out: list[ExecutorEvent] = []

        def emit(kind: EventKind, data: dict[str, Any]) -> None:
            out.append(ExecutorEvent(kind=kind, task_id=task_id, slot_id=slot_id, data=data))

        etype = event.get("type")
        subtype = event.get("subtype")
        if etype == "system" and subtype == "init":
            self.session_id = _str_or_none(event.get("session_id")) or self.session_id
            self.init_model = _str_or_none(event.get("model")) or self.init_model
            emit(
                EventKind.SESSION,
                {
                    "session_id": self.session_id,
                    "model": self.init_model,
                    "tools": list(event.get("tools") or []),
                    "mcp_servers": list(event.get("mcp_servers") or []),
                    "permission_mode": event.get("permissionMode"),
                },
            )
        elif etype == "system" and subtype == "api_retry":
            retry = {
                "status": event.get("error_status"),
                "attempt": event.get("attempt"),
                "max_retries": event.get("max_retries"),
                "delay_ms": event.get("retry_delay_ms"),
                "error": event.get("error"),
            }
            self.api_retries += 1
            self.last_api_retry = retry
            emit(EventKind.API_RETRY, dict(retry))
        elif etype == "system" and subtype == "permission_denied":
            tool = str(event.get("tool_name") or "?")
            reason = str(event.get("message") or event.get("decision_reason") or "")
            self.denied_tools.setdefault(tool, reason)
            emit(
                EventKind.PERMISSION_DENIED,
                {"tool": tool, "reason": reason, "tool_use_id": event.get("tool_use_id")},
            )
        elif etype == "rate_limit_event":
            info = event.get("rate_limit_info")
            emit(EventKind.RATE_LIMIT, dict(info) if isinstance(info, dict) else {})
        elif etype == "assistant":
            self._assistant(event, emit)
        elif etype == "user":
            for block in _content_blocks(event):
                if block.get("type") == "tool_result":
                    emit(
                        EventKind.TOOL_RESULT,
                        {
                            "tool_use_id": block.get("tool_use_id"),
                            "is_error": bool(block.get("is_error", False)),
                            "content": _preview(block.get("content")),
                        },
                    )
        elif etype == "result":
            total = event.get("total_cost_usd")
            if isinstance(total, int | float):
                self.total_cost_usd = float(total)
            self.result_event = dict(event)
            emit(EventKind.RESULT, dict(event))
        elif etype == "stream_event":
            self._stream_event(event)
        elif etype in ("control_response", "control_request", "keep_alive"):
            pass
        elif etype == "system":
            logger.debug("skipping CLI system event %r", subtype)
        else:
            logger.debug("skipping unknown CLI event type %r", etype)
        return out

    def _assistant(self, event: Mapping[str, Any], emit: Any) -> None:
        message = event.get("message")
        if not isinstance(message, dict):
            return
        model = _str_or_none(message.get("model"))
        # "<synthetic>" marks messages the CLI made up itself (errors, interruptions).
        if model and not model.startswith("<"):
            self.served_model = model
        message_id = _str_or_none(message.get("id"))
        self._note_usage(message_id, model, message.get("usage"))
        # One API reply arrives as several assistant events (one per content block).
        if message_id is None or message_id not in self._assistant_ids:
            if message_id is not None:
                self._assistant_ids.add(message_id)
            self.turns += 1
            emit(EventKind.TURN, {"turn": self.turns})
        for block in _content_blocks(event):
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                self.texts.append(str(block["text"]))
                emit(EventKind.ASSISTANT_TEXT, {"text": block["text"]})
            elif btype == "tool_use":
                emit(
                    EventKind.TOOL_USE,
                    {"name": block.get("name"), "input": block.get("input"), "id": block.get("id")},
                )

    def _stream_event(self, event: Mapping[str, Any]) -> None:
        """``--include-partial-messages`` output: only the usage of ``message_start`` and
        ``message_delta`` is of interest (the final ``output_tokens`` is only in the delta)."""
        raw = event.get("event")
        if not isinstance(raw, dict):
            return
        kind = raw.get("type")
        if kind == "message_start":
            message = raw.get("message")
            if isinstance(message, dict):
                message_id = _str_or_none(message.get("id")) or _str_or_none(
                    event.get("api_message_id")
                )
                self._note_usage(message_id, message.get("model"), message.get("usage"))
        elif kind == "message_delta":
            message_id = _str_or_none(event.get("api_message_id"))
            self._note_usage(message_id, None, raw.get("usage"))


def _content_blocks(event: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return ()
    return [block for block in content if isinstance(block, dict)]


def _preview(content: object) -> str:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return text if len(text) <= _TOOL_PREVIEW_CHARS else text[:_TOOL_PREVIEW_CHARS] + "…"


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# ── Permission prompts on stderr ──────────────────────────────────────

# Only the CLI's own wording, anchored; a line that merely mentions "permission" is not a prompt.
_PERMISSION_PATTERNS = (
    re.compile(
        r"^Claude requested permissions to (?:use|write to|edit|read) (?P<tool>[^\s,]+)"
        r"(?:,| which)"
    ),
    re.compile(r"^Permission to use (?P<tool>[\w.:-]+)(?: with .+)? has been denied"),
)


def permission_prompt_in(line: str) -> tuple[str, str] | None:
    """``(tool, line)`` when a stderr line is the CLI asking for or refusing a permission."""
    text = line.strip()
    for pattern in _PERMISSION_PATTERNS:
        match = pattern.match(text)
        if match:
            return match.group("tool"), text
    return None


def permission_message(denied: Mapping[str, str]) -> str:
    """A message naming each denied tool and how to allow it."""
    return "; ".join(str(PermissionPromptDetected(tool, reason)) for tool, reason in denied.items())


# ── The result event ──────────────────────────────────────────────────


def task_cost_usd(result: Mapping[str, Any], previous_total_usd: float | None) -> float:
    """What this task cost: ``model_usage_since_last_result`` when the CLI gives it, else the
    difference of the cumulative ``total_cost_usd`` from the previous figure."""
    since = result.get("model_usage_since_last_result")
    if isinstance(since, dict):
        return sum(
            float(usage.get("costUSD") or 0.0)
            for usage in since.values()
            if isinstance(usage, dict)
        )
    total = float(result.get("total_cost_usd") or 0.0)
    return max(0.0, total - (previous_total_usd or 0.0))


def budget_spend_usd(
    result: Mapping[str, Any] | None, previous_total_usd: float | None
) -> float | None:
    """What a task added to the CLI's ``--max-budget-usd`` count: :func:`task_cost_usd`
    where it is exact, None where it is not (no result, or no per-result figure and no
    earlier total of the process to subtract)."""
    if result is None:
        return None
    if not isinstance(result.get("model_usage_since_last_result"), dict) and (
        previous_total_usd is None
    ):
        return None
    return task_cost_usd(result, previous_total_usd)


def result_to_task_result(
    result: Mapping[str, Any],
    tracker: TurnTracker,
    *,
    requested_model: str | None,
    structured: bool,
    cost_usd: float,
    elapsed_ms: int,
) -> TaskResult:
    """Map the CLI's ``result`` event for one task to a :class:`TaskResult`."""
    is_error = bool(result.get("is_error", False))
    subtype = str(result.get("subtype") or "")
    denied = dict(tracker.denied_tools)
    for denial in result.get("permission_denials") or ():
        if isinstance(denial, dict) and denial.get("tool_name"):
            denied.setdefault(str(denial["tool_name"]), "")

    if structured and result.get("structured_output") is not None:
        output = json.dumps(result["structured_output"], ensure_ascii=False)
    elif isinstance(result.get("result"), str):
        output = result["result"]
    else:
        output = ""
    succeeded = not is_error and subtype == "success"
    if is_error:
        errors = [str(e) for e in result.get("errors") or () if e]
        reason = "; ".join(errors) or output or "no detail given"
        status = result.get("api_error_status")
        if status == 401:
            output = AUTH_FAILED_MESSAGE
        elif isinstance(status, int) and not isinstance(status, bool):
            output = f"the API refused the request (HTTP {status}): {reason}"
        else:
            why = _STOP_REASONS.get(subtype, f"it stopped ({subtype})" if subtype else "")
            output = (
                f"Claude Code failed: {why}: {reason}" if why else f"Claude Code failed: {reason}"
            )
    elif not succeeded:
        # Only a result that says it succeeded counts: a bare or unknown one is no success.
        detail = f"subtype {subtype!r}" if subtype else "no subtype"
        output = f"Claude Code ended the task without a successful result ({detail})" + (
            f": {output}" if output else ""
        )
    if denied:
        note = permission_message(denied)
        # Structured output must stay parseable JSON; the note then only goes to stderr below.
        if not (structured and succeeded):
            output = f"{output}\n\n{note}" if output else note

    model = tracker.served_model or _model_from_usage(result) or requested_model
    task_result = TaskResult(
        output=output,
        success=succeeded,
        cost_microdollars=usd_to_microdollars(cost_usd),
        turns_used=int(result.get("num_turns") or tracker.turns or 0),
        elapsed_ms=elapsed_ms,
        model=model,
        session_id=_str_or_none(result.get("session_id")) or tracker.session_id,
        budget_exceeded=subtype == "error_max_budget_usd",
    )
    if denied and structured and succeeded:
        task_result = task_result.model_copy(update={"stderr": permission_message(denied)})
    return task_result


_STOP_REASONS = {
    "error_max_turns": "it reached its turn limit (max_turns)",
    "error_max_budget_usd": "it reached its spend cap (max_budget_usd)",
    "error_during_execution": "an error while it ran",
    "success": "",
}
"""Why the CLI stopped, by the ``subtype`` of its result event."""


def _model_from_usage(result: Mapping[str, Any]) -> str | None:
    for key in ("model_usage_since_last_result", "modelUsage"):
        usage = result.get(key)
        if isinstance(usage, dict) and usage:
            # The model that did most of the work, if several did (e.g. a fallback).
            costs = {
                str(name): float((entry or {}).get("costUSD") or 0.0)
                for name, entry in usage.items()
            }
            return max(costs, key=costs.__getitem__)
    return None


def plural(count: int, one: str, many: str | None = None) -> str:
    """``3 retries``, ``1 retry``."""
    return f"{count} {one if count == 1 else (many or one + 's')}"

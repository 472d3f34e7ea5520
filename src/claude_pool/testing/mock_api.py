"""A scriptable mock of the Anthropic Messages API, for running the real Claude Code CLI offline.

Use it as a context manager (the server runs in a background thread, so sync and async tests can
both use it), script replies, point the CLI at ``api.base_url``, and assert on ``api.requests``::

    with MockAnthropicAPI() as api:
        api.enqueue(Reply([bash("touch made-by-mock")]), Reply("done"))
        run_cli(env={"ANTHROPIC_BASE_URL": api.base_url, ...})
        assert api.main_requests[-1].tool_results[0]["is_error"] is False

From the command line: ``python -m claude_pool.testing.mock_api --port 8765 --script s.json``
(see :class:`Script` for the file format; it prints the base URL once it listens).

How a reply is chosen for a ``POST /v1/messages`` request, first match wins:

1. rules added with :meth:`MockAnthropicAPI.fail` (errors injected for the next N requests);
2. rules added with :meth:`MockAnthropicAPI.on`, in the order added (match on prompt text, turn,
   whether tool results came back, or any predicate; a rule may fire a limited number of times);
3. the FIFO queue filled by :meth:`MockAnthropicAPI.enqueue`;
4. ``api.default`` (text "OK" unless changed).

Side requests (see :attr:`MockRequest.is_side`) skip steps 1-3 unless a rule asks for them with
``side=True``: they always get the default, so they never consume a scripted reply.

Verified facts about Claude Code CLI 2.1.330 against this mock (measured, not guessed)
-------------------------------------------------------------------------------------
More facts for the executor are in ``docs/cli-facts.md``.

Endpoints. With ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` a ``-p`` run makes exactly one
``POST /v1/messages?beta=true`` per model turn, streaming (``"stream": true``), and nothing else:
no start-up probes, no title generation, no quota check, no count_tokens, and (checked with
strace) no other network connection at all. Without that variable it also sends
``HEAD /api/hello`` to the base URL and looks up outside hosts. Headers include
``x-api-key``, ``anthropic-version: 2023-06-01``, ``anthropic-beta`` (a comma list starting with
``claude-code-20250219``), ``x-claude-code-session-id`` and ``user-agent: claude-cli/2.1.330
(external, sdk-cli)``. The body has ``model, messages, system, tools, metadata, max_tokens,
thinking, context_management, output_config, stream``. A ``set_model`` control request in a warm
process validates the model with a non-streaming call (``max_tokens: 1``, no tools, prompt
``"Hi"``), answered with a plain JSON message.

Messages. The prompt is the last ``text`` block of the first user message; the CLI puts
``<system-reminder>`` text blocks before it, and may append a ``{"role": "system"}`` message
(environment info) after it. :attr:`MockRequest.prompt` skips reminders and system-role messages.
Tool results come back as ``tool_result`` blocks in the next user message.

Side requests. None are made under the environment built by
:func:`claude_pool.testing.claude_cli.mock_cli_env`. The mock still classifies as side requests
anything that is not a ``/v1/messages`` call, non-streaming message calls (model validation) and
message calls without ``tools``, so that a CLI that adds such calls does not eat scripted replies.

Structured output (``--json-schema``). The CLI adds a tool named ``StructuredOutput`` whose
``input_schema`` is the given schema; the model must call it, and its input becomes the result's
``structured_output``. If the model answers with text only, the CLI sends one more request whose
last user text starts with ``[structured-output-enforce]``. Use :func:`structured`.

Cost. ``total_cost_usd`` is computed by the CLI from the *requested* model (the ``model`` field of
the reply is shown in ``assistant`` events but not used for pricing), from ``input_tokens``,
``cache_creation_input_tokens`` and ``cache_read_input_tokens`` of ``message_start`` and the
``output_tokens`` of ``message_delta``. Measured prices are in :data:`PRICES` (re-exported from
:mod:`claude_pool.pricing`, which the executor also uses to estimate the cost of a task that
ended without a ``result``); an unknown model is priced like ``claude-opus-5-5`` and the CLI
prints ``[claude-code:unrecognized_model]`` on stderr.
The CLI's default model (no ``--model``) is ``claude-opus-5-5``; the tests use
:data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Self

import pydantic
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from claude_pool.pricing import PRICES, ModelPrice, estimate_cost_usd

__all__ = [
    "DEFAULT_MODEL",
    "PRICES",
    "ErrorReply",
    "MockAnthropicAPI",
    "MockRequest",
    "ModelPrice",
    "Reply",
    "ReplyFactory",
    "Rule",
    "Script",
    "Usage",
    "bash",
    "error",
    "expected_cost_usd",
    "mcp_tool",
    "read",
    "structured",
    "text",
    "tool_use",
    "write",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"
"""The model the project's tests ask for: its price is the familiar $3 / $15 per million tokens."""

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
STRUCTURED_OUTPUT_ENFORCE = "[structured-output-enforce]"
_REMINDER_PREFIX = "<system-reminder>"
_DEFERRED_RE = re.compile(
    r"deferred tools are now available via ToolSearch[^\n]*\n(.*?)(?:\n\n|</system-reminder>|$)",
    re.DOTALL,
)
_REMINDER_RE = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)


# --------------------------------------------------------------------------- usage and prices


@dataclass(frozen=True)
class Usage:
    """Token usage reported for one reply; the CLI turns it into ``total_cost_usd``."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


def expected_cost_usd(model: str, usage: Usage | Iterable[Usage]) -> float:
    """The ``total_cost_usd`` the CLI reports for these replies to requests for ``model``.

    Prices come from :mod:`claude_pool.pricing` (measured); unknown models are priced like
    ``claude-opus-5-5``, as the CLI does. Compare with ``pytest.approx``: the CLI sums floats.
    """
    usages = [usage] if isinstance(usage, Usage) else list(usage)
    return estimate_cost_usd(model, [asdict(u) for u in usages])


# --------------------------------------------------------------------------- content helpers

ContentBlock = dict[str, Any]


def text(value: str) -> ContentBlock:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, input: Mapping[str, Any], *, id: str | None = None) -> ContentBlock:
    """A tool call; ``id`` is generated (``toolu_mock_<n>``) when omitted."""
    block: ContentBlock = {"type": "tool_use", "name": name, "input": dict(input)}
    if id is not None:
        block["id"] = id
    return block


def bash(command: str, *, description: str | None = None, id: str | None = None) -> ContentBlock:
    """A call of the CLI's ``Bash`` tool."""
    args: dict[str, Any] = {"command": command}
    if description is not None:
        args["description"] = description
    return tool_use("Bash", args, id=id)


def write(file_path: str | Path, content: str, *, id: str | None = None) -> ContentBlock:
    """A call of the CLI's ``Write`` tool (the CLI wants an absolute path)."""
    return tool_use("Write", {"file_path": str(file_path), "content": content}, id=id)


def read(file_path: str | Path, *, id: str | None = None) -> ContentBlock:
    """A call of the CLI's ``Read`` tool (the CLI wants an absolute path)."""
    return tool_use("Read", {"file_path": str(file_path)}, id=id)


def mcp_tool(
    server: str,
    tool: str,
    input: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
) -> ContentBlock:
    """A call of tool ``tool`` of the MCP server named ``server`` (``mcp__<server>__<tool>``)."""
    return tool_use(f"mcp__{server}__{tool}", input or {}, id=id)


def structured(obj: Mapping[str, Any], *, id: str | None = None) -> ContentBlock:
    """The answer to a ``--json-schema`` run: a call of the CLI's ``StructuredOutput`` tool."""
    return tool_use(STRUCTURED_OUTPUT_TOOL, obj, id=id)


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """A successful model reply.

    ``content`` is a string (one text block) or a list of blocks and strings (strings become
    text blocks). ``stop_reason`` defaults to ``tool_use`` when a tool is called, else
    ``end_turn``. ``model`` defaults to the requested model. ``delay`` waits before the response
    starts; ``chunk_delay`` waits between SSE events. ``drop_after_events`` closes the connection
    abruptly after that many SSE events (a connection lost mid-stream).
    """

    content: str | list[ContentBlock | str] = "OK"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    stop_reason: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    drop_after_events: int | None = None

    def blocks(self) -> list[ContentBlock]:
        items = [self.content] if isinstance(self.content, str) else self.content
        return [text(item) if isinstance(item, str) else dict(item) for item in items]


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class ErrorReply:
    """An HTTP error answer with an Anthropic-shaped JSON body.

    ``retry_after`` (seconds) is sent as the ``retry-after`` header. ``error_type`` defaults to
    the API's type for the status (``rate_limit_error`` for 429, ``overloaded_error`` for 529...).
    """

    status: int
    message: str | None = None
    error_type: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, request_id: str) -> dict[str, Any]:
        kind = self.error_type or _ERROR_TYPES.get(self.status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": self.message or f"mock {kind} ({self.status})"},
            "request_id": request_id,
        }


def error(
    status: int,
    *,
    retry_after: float | None = None,
    message: str | None = None,
    error_type: str | None = None,
) -> ErrorReply:
    """Shorthand for :class:`ErrorReply`."""
    return ErrorReply(status, message=message, error_type=error_type, retry_after=retry_after)


AnyReply = Reply | ErrorReply
ReplyFactory = Callable[["MockRequest"], AnyReply]
"""A reply computed from the request (e.g. from the tool results the CLI sent back)."""


# --------------------------------------------------------------------------- requests


@dataclass
class MockRequest:
    """One request the mock received, as logged (and as passed to reply factories)."""

    index: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    received_at: float
    reply: AnyReply | None = None
    """What the mock answered (``None`` for endpoints other than messages)."""

    @property
    def is_messages(self) -> bool:
        return self.method == "POST" and self.path == "/v1/messages"

    @property
    def _body(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        model = self._body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return bool(self._body.get("stream", False))

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self._body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools = self._body.get("tools")
        return tools if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.tools]

    @property
    def deferred_tool_names(self) -> list[str]:
        """Tools the CLI announces by name only, to be loaded with ``ToolSearch``.

        CLI 2.1.330 defers MCP tools (and some built-ins) this way; calling one directly works.
        """
        names: list[str] = []
        for message in self.messages:
            for block in _blocks(message.get("content")):
                match = _DEFERRED_RE.search(str(block.get("text", "")))
                if match:
                    names.extend(line.strip() for line in match[1].splitlines() if line.strip())
        return names

    @property
    def available_tool_names(self) -> list[str]:
        """Every tool the model may call: ``tool_names`` plus ``deferred_tool_names``."""
        return self.tool_names + self.deferred_tool_names

    @property
    def system(self) -> str:
        """The system prompt as one string (text blocks joined by newlines)."""
        system = self._body.get("system")
        if isinstance(system, str):
            return system
        if isinstance(system, list):
            return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
        return ""

    @property
    def is_side(self) -> bool:
        """True for requests that are not a model turn of the conversation (see module doc)."""
        return not self.is_messages or not self.stream or not self.tools

    @property
    def assistant_turns(self) -> int:
        """How many assistant messages the conversation already has (0 on the first call)."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def user_texts(self) -> list[str]:
        """Every user-written text block, oldest first, without ``<system-reminder>`` blocks."""
        texts: list[str] = []
        for message in self.messages:
            if message.get("role") != "user":
                continue
            for block in _blocks(message.get("content")):
                if block.get("type") == "text":
                    value = str(block.get("text", ""))
                    if not value.lstrip().startswith(_REMINDER_PREFIX):
                        texts.append(value)
        return texts

    @property
    def prompt(self) -> str:
        """The most recent user-written text (tool results and reminders skipped), or ``""``."""
        texts = self.user_texts
        return texts[-1] if texts else ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last user message (empty if it has none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return [
                    b for b in _blocks(message.get("content")) if b.get("type") == "tool_result"
                ]
        return []

    def tool_result_text(self, index: int = 0) -> str:
        """The text of one tool result of the last user message, without system reminders."""
        content = self.tool_results[index].get("content")
        texts = [str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text"]
        return _REMINDER_RE.sub("", "\n".join(texts)).strip()


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text(content)]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


# --------------------------------------------------------------------------- rules


@dataclass
class Rule:
    """Answer ``reply`` to requests matching every given condition.

    ``prompt``: a substring of (str) or a regex searched in (compiled pattern)
    :attr:`MockRequest.prompt`. ``turn``: the number of assistant turns so far. ``tool_result``:
    whether the last user message carries tool results. ``when``: any predicate. ``times``: how
    many times the rule may fire (``None``: unlimited). ``side``: also match side requests.
    """

    reply: AnyReply | ReplyFactory
    prompt: str | re.Pattern[str] | None = None
    turn: int | None = None
    tool_result: bool | None = None
    when: Callable[[MockRequest], bool] | None = None
    times: int | None = None
    side: bool = False
    hits: int = 0

    def matches(self, request: MockRequest) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if request.is_side and not self.side:
            return False
        if isinstance(self.prompt, str) and self.prompt not in request.prompt:
            return False
        if isinstance(self.prompt, re.Pattern) and not self.prompt.search(request.prompt):
            return False
        if self.turn is not None and request.assistant_turns != self.turn:
            return False
        if self.tool_result is not None and bool(request.tool_results) != self.tool_result:
            return False
        return self.when is None or self.when(request)


def _reply_kind(value: Any) -> str:
    if isinstance(value, ErrorReply) or (isinstance(value, dict) and "status" in value):
        return "error"
    return "reply"


ScriptReply = Annotated[
    Annotated[Reply, pydantic.Tag("reply")] | Annotated[ErrorReply, pydantic.Tag("error")],
    pydantic.Discriminator(_reply_kind),
]


class ScriptRule(pydantic.BaseModel):
    """A rule in a script file; ``prompt`` is a substring, ``prompt_regex`` a regex."""

    reply: ScriptReply
    prompt: str | None = None
    prompt_regex: str | None = None
    turn: int | None = None
    tool_result: bool | None = None
    times: int | None = None


class Script(pydantic.BaseModel):
    """The JSON file given to ``--script``.

    Example: ``{"default": {"content": "hi"}, "queue": [{"content": [{"type": "tool_use",
    "name": "Bash", "input": {"command": "ls"}}]}], "rules": [{"prompt": "fail", "reply":
    {"status": 529}}]}``. A reply with a ``status`` is an :class:`ErrorReply`.
    """

    default: ScriptReply | None = None
    queue: list[ScriptReply] = []
    rules: list[ScriptRule] = []

    @classmethod
    def load(cls, path: str | Path) -> Script:
        return cls.model_validate_json(Path(path).read_text())

    def apply(self, api: MockAnthropicAPI) -> None:
        if self.default is not None:
            api.default = self.default
        for rule in self.rules:
            pattern = re.compile(rule.prompt_regex) if rule.prompt_regex else rule.prompt
            api.on(
                rule.reply,
                prompt=pattern,
                turn=rule.turn,
                tool_result=rule.tool_result,
                times=rule.times,
            )
        api.enqueue(*self.queue)


# --------------------------------------------------------------------------- the server


class _DropConnection(Exception):
    """Raised inside a streaming body to cut the connection without finishing the response."""


class _SilenceExpectedErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class MockAnthropicAPI:
    """The mock server. Thread-safe: script it and read its log from any thread."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, default: AnyReply | None = None
    ) -> None:
        self.host = host
        self._requested_port = port
        self.default: AnyReply = default or Reply()
        """The answer when no rule or queued reply applies (and to every side request)."""
        self._lock = threading.Condition()
        self._fail_rules: list[Rule] = []
        self._rules: list[Rule] = []
        self._queue: deque[AnyReply | ReplyFactory] = deque()
        self._log: list[MockRequest] = []
        self._handler_errors: list[BaseException] = []
        self._ids = itertools.count(1)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._closing: asyncio.Event | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/api/hello", self._hello, methods=["GET", "HEAD"]),
                Route("/{path:path}", self._other, methods=["GET", "POST", "PUT", "DELETE"]),
            ],
            lifespan=self._lifespan,
        )

    # ---- lifecycle

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the mock API is not started")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no trailing slash), for ``ANTHROPIC_BASE_URL``."""
        return f"http://{self.host}:{self.port}"

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        return sock

    def _make_server(self) -> uvicorn.Server:
        logging.getLogger("uvicorn.error").addFilter(_SilenceExpectedErrors())
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving in a background thread; returns once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the mock API is already started")
        sock = self._bind()
        server = self._make_server()
        self._started.clear()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="mock-anthropic-api", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise RuntimeError(f"the mock API did not start within {timeout} s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for its thread; ``RuntimeError`` if it does not end in time."""
        server, thread, loop, closing = self._server, self._thread, self._loop, self._closing
        if server is not None:
            server.should_exit = True
            if loop is not None and closing is not None and not loop.is_closed():
                loop.call_soon_threadsafe(closing.set)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._loop = None
        if thread is not None and thread.is_alive():
            raise RuntimeError(f"the mock API did not stop within {2 * timeout} s")

    async def serve(self) -> None:
        """Serve in the current event loop until cancelled (used by the command)."""
        server = self._make_server()
        sock = self._socket or self._bind()
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._raise_handler_errors(exc is None)

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
        self._raise_handler_errors(exc is None)

    def _raise_handler_errors(self, no_exception: bool) -> None:
        # A failing reply factory is a bug in the test: surface it instead of a vague 500.
        with self._lock:
            errors = list(self._handler_errors)
        if errors and no_exception:
            raise RuntimeError("a reply factory of the mock API raised") from errors[0]

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        self._started.set()
        yield

    # ---- scripting

    def on(
        self,
        reply: AnyReply | ReplyFactory,
        *,
        prompt: str | re.Pattern[str] | None = None,
        turn: int | None = None,
        tool_result: bool | None = None,
        when: Callable[[MockRequest], bool] | None = None,
        times: int | None = None,
        side: bool = False,
    ) -> Rule:
        """Add a rule (see :class:`Rule`); rules are tried in the order added."""
        rule = Rule(reply, prompt, turn, tool_result, when, times, side)
        with self._lock:
            self._rules.append(rule)
        return rule

    def enqueue(self, *replies: AnyReply | ReplyFactory) -> None:
        """Queue replies, served one per main request in FIFO order when no rule matches."""
        with self._lock:
            self._queue.extend(replies)

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> Rule:
        """Answer the next ``times`` main requests with HTTP ``status``, then go on as scripted."""
        rule = Rule(error(status, retry_after=retry_after, message=message), times=times)
        with self._lock:
            self._fail_rules.append(rule)
        return rule

    def reset(self) -> None:
        """Forget rules, queue, default and log."""
        with self._lock:
            self._fail_rules.clear()
            self._rules.clear()
            self._queue.clear()
            self._log.clear()
            self._handler_errors.clear()
            self.default = Reply()

    # ---- request log

    @property
    def requests(self) -> list[MockRequest]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def main_requests(self) -> list[MockRequest]:
        """The requests that are model turns (side requests excluded)."""
        return [r for r in self.requests if not r.is_side]

    @property
    def last_request(self) -> MockRequest:
        """The most recent main request; raises ``LookupError`` if there is none."""
        main = self.main_requests
        if not main:
            raise LookupError("the mock API has received no main request")
        return main[-1]

    @property
    def pending_replies(self) -> int:
        """How many queued replies have not been served yet."""
        with self._lock:
            return len(self._queue)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[MockRequest]:
        """Block until at least ``count`` main requests arrived; ``TimeoutError`` after timeout."""
        with self._lock:
            if not self._lock.wait_for(
                lambda: sum(1 for r in self._log if not r.is_side) >= count, timeout
            ):
                raise TimeoutError(f"fewer than {count} main requests after {timeout} s")
        return self.main_requests

    # ---- handlers

    async def _record(self, request: Request) -> MockRequest:
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            entry = MockRequest(
                index=len(self._log),
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                headers=dict(request.headers),
                body=body,
                received_at=time.time(),
            )
            self._log.append(entry)
            self._lock.notify_all()
        return entry

    def _choose(self, request: MockRequest) -> AnyReply | ReplyFactory:
        with self._lock:
            for rule in itertools.chain(self._fail_rules, self._rules):
                if rule.matches(request):
                    rule.hits += 1
                    return rule.reply
            if not request.is_side and self._queue:
                return self._queue.popleft()
            return self.default

    def _resolve(self, request: MockRequest) -> AnyReply:
        chosen = self._choose(request)
        if isinstance(chosen, Reply | ErrorReply):
            reply: AnyReply = chosen
        else:
            try:
                reply = chosen(request)
            except Exception as exc:
                logger.exception("reply factory failed for request %d", request.index)
                with self._lock:
                    self._handler_errors.append(exc)
                reply = error(500, message=f"mock reply factory raised {exc!r}")
        with self._lock:
            request.reply = reply
            self._lock.notify_all()
        return reply

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, returning False early if the server is stopping."""
        if seconds <= 0:
            return True
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _messages(self, request: Request) -> Response:
        entry = await self._record(request)
        reply = self._resolve(entry)
        if not await self._sleep(reply.delay):
            return Response(status_code=503)
        request_id = f"req_mock_{entry.index:06d}"
        if isinstance(reply, ErrorReply):
            headers = {"request-id": request_id, **reply.headers}
            if reply.retry_after is not None:
                headers["retry-after"] = f"{reply.retry_after:g}"
            return JSONResponse(reply.body(request_id), status_code=reply.status, headers=headers)
        message = self._message(reply, entry)
        if not entry.stream:
            return JSONResponse(message, headers={"request-id": request_id})
        events = _sse_events(message, reply)
        return _SSEResponse(events, reply, self._sleep, headers={"request-id": request_id})

    def _message(self, reply: Reply, request: MockRequest) -> dict[str, Any]:
        blocks = reply.blocks()
        for block in blocks:
            if block["type"] == "tool_use" and "id" not in block:
                block["id"] = f"toolu_mock_{next(self._ids):06d}"
        has_tool = any(b["type"] == "tool_use" for b in blocks)
        return {
            "id": f"msg_mock_{request.index:06d}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or request.model or DEFAULT_MODEL,
            "content": blocks,
            "stop_reason": reply.stop_reason or ("tool_use" if has_tool else "end_turn"),
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.usage.input_tokens,
                "output_tokens": reply.usage.output_tokens,
                "cache_creation_input_tokens": reply.usage.cache_creation_input_tokens,
                "cache_read_input_tokens": reply.usage.cache_read_input_tokens,
            },
        }

    async def _count_tokens(self, request: Request) -> Response:
        entry = await self._record(request)
        size = len(json.dumps(entry.body)) if entry.body is not None else 0
        return JSONResponse({"input_tokens": max(1, size // 4)})

    async def _models(self, request: Request) -> Response:
        await self._record(request)
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in PRICES
        ]
        return JSONResponse({"data": data, "has_more": False, "first_id": None, "last_id": None})

    async def _hello(self, request: Request) -> Response:
        # The CLI's connection warm-up probe (HEAD), sent unless nonessential traffic is off.
        await self._record(request)
        return Response(status_code=200)

    async def _other(self, request: Request) -> Response:
        entry = await self._record(request)
        body = error(404, message=f"the mock API does not serve {entry.path}").body("req_mock")
        return JSONResponse(body, status_code=404)


def _sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _chunks(value: str, size: int = 24) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def _sse_events(message: dict[str, Any], reply: Reply) -> list[bytes]:
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
    events = [
        _sse("message_start", {"type": "message_start", "message": start}),
        _sse("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": part} for part in _chunks(block["text"])]
        elif block["type"] == "tool_use":
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in _chunks(json.dumps(block["input"]))
            ]
        else:
            opening, deltas = block, []
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        events.extend(
            _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


class _SSEResponse(StreamingResponse):
    """Streams pre-built SSE events, with optional pauses and an abrupt drop."""

    def __init__(
        self,
        events: Sequence[bytes],
        reply: Reply,
        sleep: Callable[[float], Any],
        headers: Mapping[str, str],
    ) -> None:
        self._events = events
        self._reply = reply
        self._pause = sleep
        super().__init__(
            self._generate(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", **headers},
        )

    async def _generate(self) -> AsyncIterator[bytes]:
        for number, event in enumerate(self._events):
            if (
                self._reply.drop_after_events is not None
                and number >= self._reply.drop_after_events
            ):
                raise _DropConnection
            if number and not await self._pause(self._reply.chunk_delay):
                raise _DropConnection
            yield event

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except _DropConnection:
            # Returning with the response unfinished makes uvicorn close the socket mid-stream.
            return


# --------------------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m claude_pool.testing.mock_api",
        description="Serve a scriptable mock of the Anthropic Messages API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON script (see Script)")
    args = parser.parse_args(argv)
    api = MockAnthropicAPI(host=args.host, port=args.port)
    if args.script is not None:
        Script.load(args.script).apply(api)
    api._bind()  # listening from here on: connections wait in the backlog until uvicorn serves
    print(api.base_url, flush=True)
    asyncio.run(api.serve())


if __name__ == "__main__":
    main()

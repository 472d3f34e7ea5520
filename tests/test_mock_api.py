"""The mock Anthropic Messages API, exercised over plain HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from claude_pool.testing.mock_api import (
    DEFAULT_MODEL,
    ErrorReply,
    MockAnthropicAPI,
    MockRequest,
    Reply,
    Usage,
    bash,
    error,
    expected_cost_usd,
    mcp_tool,
    structured,
    write,
)

REMINDER = "<system-reminder>\nToday is a mock day.\n</system-reminder>"


def body(
    *messages: dict[str, Any], stream: bool = True, tools: bool = True, **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "max_tokens": 1000,
        "system": [{"type": "text", "text": "You are a mock test."}],
        "messages": list(messages),
        "stream": stream,
        **extra,
    }
    if tools:
        payload["tools"] = [{"name": "Bash", "description": "run", "input_schema": {}}]
    return payload


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": t} for t in texts]}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def tool_result(tool_use_id: str, content: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": content}],
    }


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def post(api: MockAnthropicAPI, payload: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{api.base_url}/v1/messages?beta=true",
        json=payload,
        headers={"x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01"},
        timeout=10,
        **kwargs,
    )


def replay(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the message from its SSE events, as a client SDK does."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block = message["content"][data["index"]]
            delta = data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])
    return message


def test_streams_text_and_tool_calls_as_anthropic_sse(mock_api: MockAnthropicAPI) -> None:
    long_text = "Let me run two commands for you, then write a file. " * 3
    mock_api.default = Reply(
        [
            long_text,
            bash("echo one", id="toolu_a"),
            write("/tmp/x.txt", 'content with "quotes" and\nnewlines'),
        ],
        usage=Usage(input_tokens=120, output_tokens=45, cache_read_input_tokens=7),
    )

    response = post(mock_api, body(user("hi")))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["model"] == DEFAULT_MODEL
    assert start["usage"]["input_tokens"] == 120
    assert start["usage"]["cache_read_input_tokens"] == 7
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert deltas.count("text_delta") > 1  # long text arrives in several chunks
    assert "input_json_delta" in deltas
    message = replay(events)
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == 45
    text_block, bash_block, write_block = message["content"]
    assert text_block == {"type": "text", "text": long_text}
    assert bash_block == {
        "type": "tool_use",
        "id": "toolu_a",
        "name": "Bash",
        "input": {"command": "echo one"},
    }
    assert write_block["id"].startswith("toolu_mock_")
    assert write_block["input"]["content"] == 'content with "quotes" and\nnewlines'


def test_text_only_reply_ends_the_turn(mock_api: MockAnthropicAPI) -> None:
    mock_api.default = Reply("done")
    message = replay(sse_events(post(mock_api, body(user("hi"))).text))
    assert message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": "done"}]


def test_non_streaming_request_gets_a_json_message(mock_api: MockAnthropicAPI) -> None:
    mock_api.default = Reply("validated", usage=Usage(input_tokens=3, output_tokens=2))

    response = post(mock_api, body(user("ping"), stream=False))

    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "validated"}]
    assert message["usage"]["input_tokens"] == 3
    assert message["usage"]["output_tokens"] == 2
    assert message["model"] == DEFAULT_MODEL


def test_reply_can_report_another_model(mock_api: MockAnthropicAPI) -> None:
    mock_api.default = Reply("hi", model="claude-haiku-4-5")
    assert post(mock_api, body(user("x"), stream=False)).json()["model"] == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_errors_have_anthropic_shape(mock_api: MockAnthropicAPI, status: int, kind: str) -> None:
    mock_api.default = error(status, retry_after=2 if status == 429 else None)

    response = post(mock_api, body(user("x")))

    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == kind
    assert payload["error"]["message"]
    assert response.headers["request-id"].startswith("req_mock_")
    assert response.headers.get("retry-after") == ("2" if status == 429 else None)


def test_fail_errors_n_times_then_goes_on_as_scripted(mock_api: MockAnthropicAPI) -> None:
    mock_api.fail(529, times=2, message="busy")
    mock_api.enqueue(Reply("first real answer"))

    statuses = [post(mock_api, body(user("x"))).status_code for _ in range(3)]

    assert statuses == [529, 529, 200]
    assert mock_api.pending_replies == 0
    replies = [r.reply for r in mock_api.requests]
    assert isinstance(replies[0], ErrorReply)
    assert replies[0].message == "busy"
    assert isinstance(replies[2], Reply)
    assert replies[2].content == "first real answer"


def test_dropped_connection_cuts_the_stream(mock_api: MockAnthropicAPI) -> None:
    mock_api.enqueue(Reply("a long answer that will never arrive " * 5, drop_after_events=3))
    mock_api.default = Reply("second try")

    with pytest.raises(httpx.RemoteProtocolError):
        post(mock_api, body(user("x")))
    second = replay(sse_events(post(mock_api, body(user("x"))).text))

    assert second["content"] == [{"type": "text", "text": "second try"}]


def test_delay_holds_the_response_but_not_the_shutdown() -> None:
    api = MockAnthropicAPI(default=Reply("slow", delay=30)).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{api.base_url}/v1/messages", json=body(user("x")), timeout=0.2)
    finally:
        api.stop(timeout=5)  # raises if the server thread is still running
    assert api.requests[0].reply is not None


def test_chunk_delay_streams_events_over_time(mock_api: MockAnthropicAPI) -> None:
    mock_api.default = Reply("paced " * 20, chunk_delay=0.01)

    with httpx.stream(
        "POST", f"{mock_api.base_url}/v1/messages", json=body(user("x")), timeout=10
    ) as response:
        chunks = list(response.iter_raw())

    assert len(chunks) > 3  # each event is flushed on its own
    message = replay(sse_events(b"".join(chunks).decode()))
    assert message["content"][0]["text"] == "paced " * 20


def test_request_log_records_what_the_cli_sent(mock_api: MockAnthropicAPI) -> None:
    payload = body(
        user(REMINDER, "first prompt"),
        assistant({"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}),
        tool_result("toolu_1", f"file list\n\n{REMINDER}"),
        {"role": "system", "content": [{"type": "text", "text": "env info"}]},
    )

    post(mock_api, payload)

    request = mock_api.last_request
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.query == "beta=true"
    assert request.headers["x-api-key"] == "sk-ant-mock"
    assert request.model == DEFAULT_MODEL
    assert request.stream is True
    assert request.system == "You are a mock test."
    assert request.tool_names == ["Bash"]
    assert request.prompt == "first prompt"
    assert request.user_texts == ["first prompt"]
    assert request.assistant_turns == 1
    assert request.tool_results[0]["tool_use_id"] == "toolu_1"
    assert request.tool_result_text() == "file list"
    assert request.body == payload


def test_side_requests_never_consume_scripted_replies(mock_api: MockAnthropicAPI) -> None:
    mock_api.enqueue(Reply("scripted"))
    mock_api.on(Reply("by rule"), prompt="title")

    side = post(mock_api, body(user("make a title"), stream=False, tools=False)).json()
    main = replay(sse_events(post(mock_api, body(user("real prompt"))).text))

    assert side["content"][0]["text"] == "OK"
    assert main["content"][0]["text"] == "scripted"
    assert [r.is_side for r in mock_api.requests] == [True, False]
    assert mock_api.main_requests == mock_api.requests[1:]


def test_rules_match_prompt_turn_and_tool_results(mock_api: MockAnthropicAPI) -> None:
    mock_api.on(Reply("regex"), prompt=re.compile(r"^deploy \d+$"))
    mock_api.on(Reply("after tools"), tool_result=True)
    mock_api.on(Reply("second turn"), turn=1)
    mock_api.on(Reply("once"), prompt="limited", times=1)
    mock_api.enqueue(Reply("queued"))

    def answer(*messages: dict[str, Any]) -> str:
        message = replay(sse_events(post(mock_api, body(*messages)).text))
        return str(message["content"][0]["text"])

    hello = assistant({"type": "text", "text": "hello"})
    assert answer(user("deploy 42")) == "regex"
    assert answer(user("x"), hello, tool_result("t", "out")) == "after tools"
    assert answer(user("x"), hello, user("y")) == "second turn"
    assert answer(user("limited offer")) == "once"
    assert answer(user("limited offer")) == "queued"
    assert answer(user("limited offer")) == "OK"


def test_reply_factory_sees_the_tool_results(mock_api: MockAnthropicAPI) -> None:
    def summarise(request: MockRequest) -> Reply:
        return Reply(f"the tool said {request.tool_result_text()!r}")

    mock_api.on(summarise, tool_result=True)

    payload = body(user("x"), assistant(bash("ls", id="t1")), tool_result("t1", "a.txt"))
    message = replay(sse_events(post(mock_api, payload).text))

    assert message["content"][0]["text"] == "the tool said 'a.txt'"


def test_failing_reply_factory_answers_500_and_fails_the_test_at_exit() -> None:
    def broken(request: MockRequest) -> Reply:
        raise ValueError("bug in the test script")

    api = MockAnthropicAPI()
    with pytest.raises(RuntimeError, match="reply factory") as excinfo, api:  # noqa: PT012
        api.on(broken)
        status = post(api, body(user("x"))).status_code
    assert status == 500
    assert isinstance(excinfo.value.__cause__, ValueError)


def test_helpers_build_the_blocks_the_cli_expects() -> None:
    assert mcp_tool("pool", "submit", {"prompt": "x"}, id="t") == {
        "type": "tool_use",
        "name": "mcp__pool__submit",
        "input": {"prompt": "x"},
        "id": "t",
    }
    assert structured({"answer": 1})["name"] == "StructuredOutput"
    assert structured({"answer": 1})["input"] == {"answer": 1}


def test_expected_cost_uses_the_measured_prices() -> None:
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_creation_input_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
    )
    assert expected_cost_usd("claude-sonnet-4-5", usage) == pytest.approx(3 + 15 + 3.75 + 0.3)
    assert expected_cost_usd("claude-haiku-4-5", [usage, usage]) == pytest.approx(2 * 7.35)
    assert expected_cost_usd("unknown-model", usage) == expected_cost_usd("claude-opus-5-5", usage)


def test_other_endpoints(mock_api: MockAnthropicAPI) -> None:
    count = httpx.post(f"{mock_api.base_url}/v1/messages/count_tokens", json=body(user("x")))
    models = httpx.get(f"{mock_api.base_url}/v1/models")
    unknown = httpx.get(f"{mock_api.base_url}/api/whatever")

    assert count.json()["input_tokens"] > 0
    assert DEFAULT_MODEL in [m["id"] for m in models.json()["data"]]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"
    assert [r.path for r in mock_api.requests] == [
        "/v1/messages/count_tokens",
        "/v1/models",
        "/api/whatever",
    ]
    assert mock_api.main_requests == []
    with pytest.raises(LookupError):
        _ = mock_api.last_request


def test_wait_for_requests_is_bounded(mock_api: MockAnthropicAPI) -> None:
    post(mock_api, body(user("x")))
    assert len(mock_api.wait_for_requests(1, timeout=1)) == 1
    with pytest.raises(TimeoutError):
        mock_api.wait_for_requests(2, timeout=0.05)


def test_reset_forgets_script_and_log(mock_api: MockAnthropicAPI) -> None:
    mock_api.enqueue(Reply("queued"))
    mock_api.default = Reply("changed")
    post(mock_api, body(user("x")))
    mock_api.enqueue(Reply("left over"))

    mock_api.reset()

    assert mock_api.requests == []
    assert mock_api.pending_replies == 0
    message = replay(sse_events(post(mock_api, body(user("x"))).text))
    assert message["content"][0]["text"] == "OK"


async def test_serves_many_concurrent_clients() -> None:
    async with MockAnthropicAPI() as api:
        api.on(lambda r: Reply(f"echo {r.prompt}", chunk_delay=0.001))

        async def one(n: int) -> str:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
                response = await client.post("/v1/messages", json=body(user(f"client {n}")))
                return str(replay(sse_events(response.text))["content"][0]["text"])

        answers = await asyncio.gather(*(one(n) for n in range(25)))

    assert answers == [f"echo client {n}" for n in range(25)]
    assert len(api.requests) == 25


def test_command_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "default": {"content": "default answer"},
                "queue": [{"status": 529, "retry_after": 1}],
                "rules": [
                    {"prompt_regex": "^tool", "reply": {"content": [bash("ls")]}, "times": 1},
                ],
            }
        )
    )
    command = [sys.executable, "-m", "claude_pool.testing.mock_api", "--script", str(script)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")

            def send(prompt: str) -> httpx.Response:
                return httpx.post(f"{base_url}/v1/messages", json=body(user(prompt)), timeout=10)

            def content(response: httpx.Response) -> dict[str, Any]:
                block: dict[str, Any] = replay(sse_events(response.text))["content"][0]
                return block

            first = send("hello")
            assert first.status_code == 529
            assert first.headers["retry-after"] == "1"
            assert content(send("tool please"))["name"] == "Bash"
            assert content(send("tool again"))["text"] == "default answer"
        finally:
            proc.terminate()
            proc.wait(timeout=10)

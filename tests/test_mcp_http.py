"""The MCP server over streamable HTTP: uvicorn on an ephemeral port, bearer tokens, and
several clients sharing one pool."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from claude_pool import ConfigError, Pool, PoolConfig
from claude_pool.config import parse_tokens
from claude_pool.mcp import MCP_PATH, BearerTokenMiddleware, build_server, http_server
from claude_pool.mcp.auth import host_names, is_loopback
from claude_pool.store import MemoryStore
from claude_pool.testing.fake_executor import FakeExecutor

WAIT = 15.0
TOKEN = "s3cret-token"

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream"}


@asynccontextmanager
async def http_pool(
    executor: FakeExecutor,
    tokens: Sequence[str] = (),
    slots: int = 2,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: Sequence[str] = (),
) -> AsyncIterator[str]:
    """Serve a pool over HTTP on a free loopback port, configured as if bound to ``host``;
    yields the endpoint URL."""
    pool = Pool(PoolConfig(), slots=slots, store=MemoryStore(), executor=executor)
    async with pool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        server = http_server(
            build_server(pool), host=host, port=port, tokens=tokens, allowed_hosts=allowed_hosts
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{port}{MCP_PATH}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, WAIT)
            sock.close()


@asynccontextmanager
async def http_client(url: str, token: str | None = None) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=WAIT) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await asyncio.wait_for(client.call_tool(tool, arguments), WAIT)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_requests_without_the_token_get_401_and_the_pool_is_untouched() -> None:
    executor = FakeExecutor()
    async with (
        http_pool(executor, tokens=[TOKEN, "another"]) as url,
        httpx.AsyncClient(timeout=WAIT) as http,
    ):
        missing = await http.post(url, json=INITIALIZE, headers=MCP_HEADERS)
        wrong = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer nope"}
        )
        basic = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Basic {TOKEN}"}
        )
        right = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"Bearer {TOKEN}"}
        )
        second = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "authorization": "Bearer another"}
        )
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in refused.json()["error_description"]
    assert right.status_code == 200
    assert second.status_code == 200


async def test_two_clients_with_the_token_share_the_pool_at_once() -> None:
    executor = FakeExecutor(hold=True)
    async with (
        http_pool(executor, tokens=[TOKEN]) as url,
        http_client(url, TOKEN) as first,
        http_client(url, TOKEN) as second,
    ):
        runs = [
            asyncio.create_task(call(first, "pool_run", prompt="from the first")),
            asyncio.create_task(call(second, "pool_run", prompt="from the second")),
        ]
        running = await executor.wait_running(2, timeout=WAIT)
        status = await call(first, "pool_status")
        executor.release()
        outcomes = await asyncio.wait_for(asyncio.gather(*runs), WAIT)
        listed = await call(second, "pool_list_tasks")
    assert {r.prompt for r in running} == {"from the first", "from the second"}
    assert status["tasks"] == {"running": 2}
    assert [o["result"]["output"] for o in outcomes] == [
        "done: from the first",
        "done: from the second",
    ]
    assert len(listed["tasks"]) == 2


async def test_a_loopback_server_without_tokens_needs_no_authorization_and_sends_progress() -> None:
    notes: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(message)

    async with http_pool(FakeExecutor()) as url, http_client(url) as client:
        result = await asyncio.wait_for(
            client.call_tool("pool_run", {"prompt": "local"}, progress_callback=on_progress), WAIT
        )
    assert result.structured_content is not None
    assert result.structured_content["result"]["output"] == "done: local"
    task_id = result.structured_content["task_id"]
    assert notes[0] == f"{task_id}: queued"
    assert notes[-1].startswith(f"{task_id} completed on slot")


def test_a_non_loopback_server_without_a_token_is_refused() -> None:
    pool = Pool(PoolConfig(), slots=0, store=MemoryStore(), executor=FakeExecutor())
    server = build_server(pool)
    with pytest.raises(ConfigError, match="bearer token"):
        http_server(server, host="0.0.0.0", port=0)
    assert http_server(server, host="0.0.0.0", port=0, tokens=[TOKEN]) is not None
    assert http_server(server, host="::1", port=0) is not None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts_are_recognised(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_tokens_from_the_environment_split_on_commas_and_spaces() -> None:
    assert parse_tokens("a,b  c,,") == ["a", "b", "c"]
    assert parse_tokens(None) == []


def test_the_token_middleware_needs_a_token() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="at least one"):
        BearerTokenMiddleware(app, ["", ""])


async def test_a_server_beyond_loopback_answers_only_to_the_host_names_it_knows() -> None:
    """Regression: bound to a non-loopback address, the server took any Host header (DNS
    rebinding)."""
    authorization = {**MCP_HEADERS, "authorization": f"Bearer {TOKEN}"}
    async with (
        http_pool(FakeExecutor(), [TOKEN], host="0.0.0.0", allowed_hosts=["pool.example"]) as url,
        httpx.AsyncClient(timeout=WAIT) as http,
    ):
        port = url.split(":")[2].split("/")[0]

        async def post(host: str) -> int:
            headers = {**authorization, "host": host}
            return (await http.post(url, json=INITIALIZE, headers=headers)).status_code

        statuses = {
            host: await post(host)
            for host in ("evil.example", f"evil.example:{port}", "pool.example",
                         f"pool.example:{port}", f"127.0.0.1:{port}", f"localhost:{port}")
        }  # fmt: skip
    assert statuses == {
        "evil.example": 421,
        f"evil.example:{port}": 421,
        "pool.example": 200,
        f"pool.example:{port}": 200,
        f"127.0.0.1:{port}": 200,
        f"localhost:{port}": 200,
    }


def test_the_host_names_are_the_address_loopback_this_machine_and_the_extra_ones() -> None:
    machine = {socket.gethostname().lower(), socket.getfqdn().lower()}
    assert host_names("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert host_names("[::1]", ["Pool.Example"]) == ["::1", "127.0.0.1", "localhost",
                                                    "pool.example"]  # fmt: skip
    wildcard = host_names("0.0.0.0", ["pool.example"])
    assert "0.0.0.0" not in wildcard
    assert {"127.0.0.1", "localhost", "::1", "pool.example"} | machine == set(wildcard)
    assert "192.168.1.10" in host_names("192.168.1.10")


def test_an_empty_token_is_a_configuration_error_not_a_crash() -> None:
    pool = Pool(PoolConfig(), slots=0, store=MemoryStore(), executor=FakeExecutor())
    with pytest.raises(ConfigError, match="bearer token is empty"):
        http_server(build_server(pool), host="0.0.0.0", port=0, tokens=[""])
    with pytest.raises(ConfigError, match="bearer token is empty"):
        http_server(build_server(pool), host="127.0.0.1", port=0, tokens=["ok", "  "])

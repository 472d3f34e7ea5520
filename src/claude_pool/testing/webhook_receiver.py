"""A local HTTP endpoint that records the webhook requests it gets, for tests and examples.

``async with WebhookReceiver(statuses=[500, 204]) as receiver:`` serves on 127.0.0.1 (a free
port) at ``receiver.url``; each request answers the next status in ``statuses`` (the last one
once they run out) and is kept in ``receiver.requests``. ``await receiver.wait_for(n)`` waits
until ``n`` requests came.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claude_pool.web.server import HttpServer


@dataclass
class ReceivedWebhook:
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    statuses: list[int] = field(default_factory=lambda: [204])
    port: int = 0
    requests: list[ReceivedWebhook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._arrived = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        index = min(len(self.requests), len(self.statuses) - 1)
        status = self.statuses[index]
        self.requests.append(ReceivedWebhook(dict(request.headers), await request.body(), status))
        self._arrived.set()
        return Response(status_code=status)

    async def wait_for(self, count: int, timeout: float = 10) -> list[ReceivedWebhook]:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.requests

    async def __aenter__(self) -> Self:
        sock = socket.socket()
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = HttpServer(config)  # leaves the test's signal handling alone
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                await self._serving
            await asyncio.sleep(0.01)
        self._socket = sock
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving
        self._socket.close()


__all__ = ["ReceivedWebhook", "WebhookReceiver"]

"""The HTTP face as one ASGI application: REST, events, metrics, dashboard (and MCP at /mcp).

:func:`create_app` builds it for an open :class:`Pool`; the caller opens and closes the pool
and calls :meth:`HttpFace.close` when done (it ends the event streams, so a server can stop
without waiting for them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from claude_pool.pool import Pool
from claude_pool.web import api
from claude_pool.web.metrics import PoolMetrics, metrics_endpoint
from claude_pool.web.openapi import openapi_document
from claude_pool.web.problems import problem
from claude_pool.web.security import WebGuard
from claude_pool.web.sse import events_endpoint

STATIC_DIR = Path(__file__).parent / "static"
MCP_PATH = "/mcp"
PUBLIC_PATHS = ("/", "/static/")
"""The dashboard's page and assets: no pool data, loaded before the page asks for a token."""


async def _dashboard(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem(404, f"nothing at {request.url.path}; the API is under {api.API_PREFIX}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return problem(405, f"{request.method} is not allowed on {request.url.path}")


class HttpFace:
    """The ASGI app: ``/mcp`` to the MCP app when there is one, everything else to the web app
    behind :class:`~claude_pool.web.security.WebGuard`."""

    def __init__(self, pool: Pool, web: Starlette, guarded: ASGIApp, mcp: ASGIApp | None) -> None:
        self.pool = pool
        self.web = web
        self._guarded = guarded
        self._mcp = mcp
        self.stopping: asyncio.Event = web.state.stopping
        self.metrics: PoolMetrics = web.state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._mcp is not None:
            path = scope.get("path", "")
            if scope["type"] == "lifespan" or path == MCP_PATH or path.startswith(MCP_PATH + "/"):
                await self._mcp(scope, receive, send)
                return
        await self._guarded(scope, receive, send)

    def close(self) -> None:
        """End the open event streams and stop counting events."""
        self.stopping.set()
        self.metrics.close()


def create_app(
    pool: Pool,
    *,
    host: str = "127.0.0.1",
    tokens: Sequence[str] = (),
    allowed_hosts: Sequence[str] = (),
    mcp: ASGIApp | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    openapi_paths: dict[str, Any] | None = None,
) -> HttpFace:
    """The HTTP face of ``pool``: the bind address ``host`` (for the ``Host`` names answered
    to), bearer ``tokens`` (none: no token, fit for loopback only), and optionally the MCP
    app to serve at ``/mcp`` (it brings its own token and Host checks)."""
    routes: list[BaseRoute] = [
        Route("/", _dashboard, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        Route(f"{api.API_PREFIX}/openapi.json", _openapi, methods=["GET"]),
        Route(f"{api.API_PREFIX}/events", events_endpoint, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *api.routes(),
        *extra_routes,
    ]
    web = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _not_allowed})
    web.state.pool = pool
    web.state.stopping = asyncio.Event()
    web.state.openapi = openapi_document(openapi_paths)
    web.state.metrics = PoolMetrics(pool, lambda: pool.webhooks.failures)
    guarded = WebGuard(
        web, host=host, tokens=tokens, allowed_hosts=allowed_hosts, public_paths=PUBLIC_PATHS
    )
    return HttpFace(pool, web, guarded, mcp)


__all__ = ["MCP_PATH", "STATIC_DIR", "HttpFace", "create_app"]

"""``GET /api/v1/events``: the pool's domain events as server-sent events.

Each event goes out as ``id: <seq>``, ``event: <type>``, ``data: <the event's JSON>``. The
stream reads the store's event log from where the client is (``Last-Event-ID``, or ``after``;
without either, from now on) and is then woken by the bus for each new event: nothing polls,
and a client that reconnects with the last id it saw misses nothing. ``task_id`` and
``chain_id`` narrow it to one task or chain, ``types`` to some event types. Text in payloads
goes through the engine's secret redaction first (:func:`claude_pool.events.public_payload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from claude_pool.events import Event, public_payload
from claude_pool.pool import Pool
from claude_pool.web.problems import problem

KEEPALIVE_SECS = 15.0
"""A comment line goes out after this long without an event, so proxies keep the stream."""


def frame(event: Event) -> str:
    data = json.dumps(public_payload(event), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


def _after(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None or raw == "":
        return None
    try:
        after = int(raw)
    except ValueError:
        raise ValueError(f"Last-Event-ID (or after) must be an event number, got {raw!r}") from None
    if not 0 <= after < 2**63:
        raise ValueError(f"Last-Event-ID (or after) must be >= 0, got {after}")
    return after


async def _frames(
    pool: Pool, after: int | None, query: dict[str, Any], stopping: asyncio.Event
) -> AsyncIterator[str]:
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)

    async def read() -> None:
        async for event in pool.events(after, **query):
            await queue.put(event)

    reader = asyncio.create_task(read(), name="sse-reader")
    stop = asyncio.create_task(stopping.wait(), name="sse-stop")
    get: asyncio.Future[Event] | None = None
    try:
        yield ": claude-pool events\nretry: 2000\n\n"
        while True:
            if get is None or get.done():
                get = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {get, reader, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=KEEPALIVE_SECS, return_when=asyncio.FIRST_COMPLETED
            )
            if get in done:
                yield frame(get.result())
                continue
            if stop in done or reader in done:
                return
            yield ": keepalive\n\n"
    finally:
        left = [task for task in (get, reader, stop) if task is not None]
        for task in left:
            task.cancel()
        for task in left:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def events_endpoint(request: Request) -> Response:
    pool: Pool = request.app.state.pool
    try:
        after = _after(request)
    except ValueError as exc:
        return problem(422, str(exc), "InvalidInput")
    types = request.query_params.get("types")
    query: dict[str, Any] = {
        "task_id": request.query_params.get("task_id"),
        "chain_id": request.query_params.get("chain_id"),
        "types": [t for t in types.split(",") if t] if types else None,
    }
    stopping: asyncio.Event = request.app.state.stopping
    return StreamingResponse(
        _frames(pool, after, query, stopping),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["KEEPALIVE_SECS", "events_endpoint", "frame"]

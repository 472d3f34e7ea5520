"""A pool's HTTP face served on a real socket from a thread of its own, for tests that need
a live server (schemathesis, a browser): the pool and uvicorn run on that thread's event loop,
the test talks to ``url`` from anywhere."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from claude_pool.pool import Pool
from claude_pool.web.server import face_for, http_server

T = TypeVar("T")


@dataclass
class LiveFace:
    url: str
    pool: Pool
    loop: asyncio.AbstractEventLoop

    def call(self, work: Callable[[Pool], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(pool)`` (a coroutine function) on the server's loop; its result."""
        return asyncio.run_coroutine_threadsafe(work(self.pool), self.loop).result(timeout=30)


@contextmanager
def serve_in_thread(
    make_pool: Callable[[], Pool],
    *,
    tokens: Sequence[str] = (),
    mcp: bool = False,
    timeout: float = 30,
) -> Iterator[LiveFace]:
    """Open ``make_pool()`` and serve its HTTP face on 127.0.0.1 (a free port) until the block
    ends; then stop the server and close the pool."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = threading.Event()
    holder: dict[str, object] = {}
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        pool = make_pool()
        async with pool:
            face = face_for(pool, tokens=tokens, mcp=mcp)
            server = http_server(face, host="127.0.0.1", port=port)
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started:
                if serving.done():
                    await serving
                await asyncio.sleep(0.01)
            holder["face"] = LiveFace(f"http://127.0.0.1:{port}", pool, asyncio.get_running_loop())
            ready.set()
            await stop.wait()
            face.close()
            server.should_exit = True
            await serving
            await pool.drain(grace_secs=1, cancel_pending=True)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the test below
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="live-http-face", daemon=True)
    thread.start()
    if not ready.wait(timeout) or "error" in holder:
        raise RuntimeError(f"the HTTP face did not start: {holder.get('error')!r}")
    live = holder["face"]
    assert isinstance(live, LiveFace)
    try:
        yield live
    finally:
        if stop is not None:
            live.loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        sock.close()
        error = holder.get("error")
        if isinstance(error, BaseException):
            raise RuntimeError("the HTTP face failed") from error


__all__ = ["LiveFace", "serve_in_thread"]

"""Who may use the HTTP face, and from where.

The same rules as MCP over HTTP (:mod:`claude_pool.mcp.auth`): loopback by default, a bearer
token required beyond it, and ``Host`` checked against the names the server answers to (so a
DNS-rebinding page cannot reach a loopback pool). Then, for requests that change something
(POST, PUT, PATCH, DELETE), a cross-site page must not be able to forge them:

- there is no cookie or other ambient credential: the token travels in ``Authorization``,
  which a cross-origin page can only send after a CORS preflight this server never grants;
- a browser's ``Origin`` must be this server (the host and port of the request), and
  ``Sec-Fetch-Site`` must say same-origin (or none, for a request the user typed);
- bodies must be JSON: the content types an HTML form can send without a preflight are
  refused.

The dashboard's page, script and style sheet (no pool data in them) are served without the
token, so a browser can load the page and then ask for the token; everything else (the API,
events, metrics) needs it when tokens are configured.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from claude_pool.mcp.auth import host_names

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _strip_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


class WebGuard:
    """ASGI middleware applying the rules of this module to every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        tokens: Iterable[str] = (),
        allowed_hosts: Sequence[str] = (),
        public_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self._tokens = [token.encode() for token in tokens if token]
        self._names = frozenset(host_names(host, allowed_hosts))
        self._public = tuple(public_paths)

    def _public_path(self, path: str) -> bool:
        # "/static/" covers what is under it; "/" is the page alone.
        return any(
            path == p or (len(p) > 1 and p.endswith("/") and path.startswith(p))
            for p in self._public
        )

    def _authorized(self, scope: Scope) -> bool:
        if not self._tokens:
            return True
        scheme, _, presented = (_header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented.strip().encode(), token)
        return matched

    def _same_origin(self, scope: Scope) -> str | None:
        """Why a state-changing request looks forged, or None."""
        site = _header(scope, b"sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"Sec-Fetch-Site is {site}"
        origin = _header(scope, b"origin")
        if origin is not None:
            # Same origin: the page came from this very host and port (another service on
            # this machine is another origin).
            scheme, _, rest = origin.partition("://")
            host = (_header(scope, b"host") or "").lower()
            if scheme not in ("http", "https") or rest.lower().rstrip("/") != host:
                return f"Origin {origin} is not this server"
        content_type = (_header(scope, b"content-type") or "").lower()
        if content_type.startswith(_FORM_TYPES):
            return f"a {content_type.split(';')[0]} body (send application/json)"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is None or _strip_port(host) not in self._names:
            await _refuse(
                send, 421, "Misdirected request", f"this server does not answer to Host {host!r}"
            )
            return
        path = scope.get("path", "")
        if not self._public_path(path) and not self._authorized(scope):
            client = scope.get("client")
            log.warning("refused an unauthenticated request from %s", client[0] if client else "?")
            detail = "this claude-pool server needs Authorization: Bearer <token>"
            challenge = [(b"www-authenticate", b'Bearer realm="claude-pool"')]
            await _refuse(send, 401, "Unauthorized", detail, challenge)
            return
        if scope.get("method") in UNSAFE_METHODS and (forged := self._same_origin(scope)):
            await _refuse(send, 403, "Forbidden", f"cross-site request refused: {forged}")
            return
        await self.app(scope, receive, send)


async def _refuse(
    send: Send,
    status: int,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


__all__ = ["UNSAFE_METHODS", "WebGuard"]

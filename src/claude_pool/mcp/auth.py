"""Bearer-token protection for the HTTP transport.

Static tokens, compared in constant time, are all a pool server needs: whoever holds one may
use the pool. (The SDK's OAuth machinery is for servers that delegate to an authorization
server; there is none here.)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def host_names(host: str, extra: Iterable[str] = ()) -> list[str]:
    """The names an HTTP server bound to ``host`` answers to in the ``Host`` header (against
    DNS rebinding): the address itself unless it is a wildcard (0.0.0.0, ::), the loopback
    names, this machine's host name and fully qualified name when it listens beyond loopback,
    and ``extra``. Each is accepted with or without a port."""
    names = [name.strip("[]") for name in (host, *LOOPBACK_NAMES) if name not in _WILDCARD_HOSTS]
    if not is_loopback(host):
        names += [socket.gethostname(), socket.getfqdn()]
    names += [name.strip().strip("[]") for name in extra if name.strip()]
    return list(dict.fromkeys(name.lower() for name in names if name))


def host_header_values(names: Iterable[str]) -> list[str]:
    """``Host`` header patterns for ``names``: each as is and with any port, IPv6 addresses in
    brackets (the form the MCP SDK's transport security checks)."""
    values = []
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        values += [shown, f"{shown}:*"]
    return values


class BearerTokenMiddleware:
    """Refuses HTTP requests without ``Authorization: Bearer <one of the tokens>`` (401).

    Every token is compared, each in constant time, so timing tells nothing about which
    token, or how much of one, matched. Lifespan events pass through.
    """

    def __init__(self, app: ASGIApp, tokens: Iterable[str]) -> None:
        self.app = app
        self._tokens = [token.encode() for token in tokens if token]
        if not self._tokens:
            raise ValueError("BearerTokenMiddleware needs at least one non-empty token")

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = presented.strip()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(presented, token)
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        client = scope.get("client")
        log.warning("refused an unauthenticated request from %s", client[0] if client else "?")
        body = json.dumps(
            {
                "error": "invalid_token",
                "error_description": "this claude-pool server needs Authorization: Bearer <token>",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="claude-pool"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

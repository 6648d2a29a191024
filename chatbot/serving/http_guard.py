"""What the local web servers (the app and `serve`) accept before a request reaches them.

`RequestGuard` is an ASGI middleware that refuses, before the application sees it:

- a `Host` this server does not answer to (400). A web page can point its own DNS name at
  127.0.0.1 ("DNS rebinding") and then read a loopback server as if it were its own site; the
  browser still sends the page's name as Host, so only the names the server is reached by are
  accepted: the loopback names, the address it listens on, and names configured by the person
  who runs it (`allowed_hosts`).
- a browser request sent by a page of another site (403): it carries that site's `Origin`, which
  must be this server's own origin or a configured name. Requests without `Origin` (curl, SDKs,
  the browser's own page loads) pass: a cross-site form or fetch always sends one.
- a body over `max_body_bytes` (413), when one is set: from its Content-Length at once, and
  counted as it arrives when there is none.

starlette's TrustedHostMiddleware is not used: it cuts the port off at the first ':', which
breaks IPv6 hosts ("[::1]:8000"), and it does not look at Origin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "LOOPBACK",
    "RequestGuard",
    "allowed_hosts",
    "host_name",
    "is_loopback",
]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALLOWED_HOSTS_ENV = "BRANDVOICE_ALLOWED_HOSTS"
"""Comma-separated host names the servers also answer to (behind a proxy, or a LAN name)."""
_WILDCARDS = ("0.0.0.0", "::", "")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    return host_name(host) in LOOPBACK


def host_name(value: str) -> str | None:
    """The lower-case host name of a Host header or bind address ("[::1]:80" -> "::1")."""
    value = value.strip()
    if not value:
        return None
    if ":" in value and not value.startswith("[") and value.count(":") > 1:
        return value.lower()  # a bare IPv6 address, as given to --host
    try:
        return urlsplit(f"//{value}").hostname
    except ValueError:  # "[::1" and other malformed values
        return None


def allowed_hosts(bind: str, configured: Iterable[str] = ()) -> frozenset[str]:
    """The host names a server listening on `bind` answers to.

    Loopback names always; `configured` names and those in $BRANDVOICE_ALLOWED_HOSTS; the bind
    address itself; and for a wildcard bind (0.0.0.0, ::) this machine's name and addresses,
    under which other machines reach it.
    """
    names = set(LOOPBACK)
    extra = [*configured, *os.environ.get(ALLOWED_HOSTS_ENV, "").split(",")]
    names |= {name for value in extra if (name := host_name(value))}
    if bind.strip() in _WILDCARDS:
        names |= _this_machine()
    elif name := host_name(bind):
        names.add(name)
    return frozenset(names)


def _this_machine() -> set[str]:
    """This machine's host name and the addresses of its network interfaces (no DNS lookup)."""
    import socket

    import psutil

    names = {socket.gethostname().lower()}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                names.add(address.address.split("%")[0].lower())  # fe80::1%eth0 -> fe80::1
    return names


class RequestGuard:
    """ASGI middleware enforcing the Host, Origin and body-size rules of the module doc.

    `hosts` are the accepted host names (see `allowed_hosts`); `origins` the host names whose pages
    may send requests besides the server's own origin (the configured names: a proxy's public
    name). `json_errors` answers in the OpenAI error format instead of plain text.
    """

    def __init__(
        self,
        app: ASGIApp,
        hosts: Iterable[str],
        origins: Iterable[str] = (),
        *,
        max_body_bytes: int | None = None,
        json_errors: bool = False,
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.origins = frozenset(o for value in origins if (o := host_name(value)))
        self.max_body_bytes = max_body_bytes
        self.json_errors = json_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(headers)
        if refusal is None and scope["type"] == "http":
            refusal = self._too_large(headers)
        if refusal is not None:
            await self._refuse(scope, send, *refusal)
            return
        if scope["type"] == "http" and self.max_body_bytes is not None:
            receive = self._counted(receive)
        await self.app(scope, receive, send)

    def refusal(self, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) when the Host or Origin of a request is not accepted, else None."""
        host = headers.get("host", "")
        name = host_name(host)
        if name not in self.hosts:
            shown = host[:100] or "(none)"
            return 400, (
                f"This server does not answer to the host name {shown!r}, which protects it from "
                "other web sites (DNS rebinding). To reach it under that name, start it with "
                f"--allowed-host {name or 'NAME'}."
            )
        origin = headers.get("origin")
        if (
            origin is None
            or _same_origin(origin, host)
            or host_name(_netloc(origin)) in self.origins
        ):
            return None
        return 403, f"Requests from pages of other sites are refused (origin {origin[:100]!r})."

    def _too_large(self, headers: dict[str, str]) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if self.max_body_bytes is None or length is None:
            return None
        if not length.isdigit():
            return 400, "Content-Length is not a number."
        if int(length) > self.max_body_bytes:
            return 413, _too_large_message(self.max_body_bytes)
        return None

    def _counted(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes or 0
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    from starlette.exceptions import HTTPException

                    # Raised inside the app's body reading: the app answers 413 with it.
                    raise HTTPException(413, _too_large_message(limit))
            return message

        return counted

    async def _refuse(self, scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        if self.json_errors:
            kind = "invalid_request_error"
            body = json.dumps({"error": {"message": message, "type": kind}}).encode()
            content_type = b"application/json"
        else:
            body, content_type = message.encode(), b"text/plain; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _too_large_message(limit: int) -> str:
    return f"The request is over the {limit:,}-byte limit of this server; send less at once."


def _netloc(origin: str) -> str:
    try:
        return urlsplit(origin).netloc
    except ValueError:
        return ""


def _same_origin(origin: str, host: str) -> bool:
    """True when `origin` (scheme://name[:port]) is the page of this server reached as `host`."""
    try:
        parts = urlsplit(origin)
        served = urlsplit(f"//{host}")
        origin_port, host_port = parts.port, served.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # "null" (sandboxed frames, files) and other schemes
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname == served.hostname and (origin_port or default) == (host_port or default)

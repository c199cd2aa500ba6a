"""The request guard in front of every route: what the server trusts and what it refuses, in one place.

- **Host** (DNS rebinding): without an access token the server answers only requests addressed to a loopback
  name (localhost, *.localhost, 127.0.0.1 and other loopback addresses, [::1], any port). A page on another site
  whose name an attacker points at 127.0.0.1 sends its own name as Host and is refused.
- **Cross-site requests** (CSRF): a state-changing request (POST, PUT, PATCH, DELETE), for the API and the HTML
  forms alike, is refused when the browser says it comes from another site or origin (`Sec-Fetch-Site` other
  than same-origin / none, or an `Origin` whose host and port are not the request's `Host`). Browsers send at
  least one of the two with every such request; a request with neither is not from a web page (curl, scripts),
  and is let through.
- **Body size**: a request body over `max_body_bytes` is answered 413 before it is read whole (at once from its
  Content-Length, else as soon as the streamed bytes pass the limit).
- Every answer carries `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` (no page can frame the app to
  steer clicks) and `Referrer-Policy: no-referrer`.

Pure ASGI (no framework import at module load): the CLI reads `ServerSettings` without the app extra installed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..settings import Settings, check

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_SITE = frozenset({"same-origin", "none"})
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]


@dataclass
class ServerSettings(Settings):
    """Limits of the web server."""

    max_body_bytes: int = 2 * 1024 * 1024
    """Largest request body the server reads, in bytes (a larger one is answered 413 before it is read whole)."""

    def validate(self) -> None:
        super().validate()
        check(self.max_body_bytes >= 1024, f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")


def host_name(host: str) -> str:
    """The name in a Host header, without the port ("[::1]:8000" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback interface (no DNS name but localhost can)."""
    name = host_name(host).rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cross_site(headers: dict[str, str]) -> str | None:
    """Why a state-changing request comes from another site or origin, or None when it does not."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in SAME_SITE:
        return f"it comes from another site (Sec-Fetch-Site: {site})"
    origin = headers.get("origin")
    if origin is not None:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if not netloc or netloc != headers.get("host", "").strip().lower():
            return f"it comes from the page of another origin ({origin[:100]})"
    return None


class RequestGuard:
    """ASGI middleware: Host, cross-site and body-size checks, and the security headers (see the module doc)."""

    def __init__(self, app: Callable, *, check_host: bool, max_body_bytes: int) -> None:
        self.app = app
        self.check_host = check_host
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        if scope.get("method") in UNSAFE_METHODS or "content-length" in headers or "transfer-encoding" in headers:
            body = await self._read_body(receive)
            if body is None:
                await _answer(send, *self._too_large())
                return
            receive = _replay(body, receive)

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *[h for h in HEADERS if h[0] not in have]]
            await send(message)

        await self.app(scope, receive, guarded_send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body, or None as soon as it passes the limit (the rest is never read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the app sees an empty or partial body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if self.check_host and not is_loopback_host(headers.get("host", "")):
            return (403, "forbidden_host", f"this server answers only requests addressed to localhost or 127.0.0.1 "
                    f"(this one names '{headers.get('host', '')[:100]}'); open the URL that `embedsae serve` printed, "
                    "or serve with an access token")
        if scope.get("method", "GET") in UNSAFE_METHODS:
            why = cross_site(headers)
            if why is not None:
                return (403, "cross_site", f"refused: {why}; this server takes changes only from its own pages "
                        "and from clients that are not web pages")
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                return (400, "invalid_request", f"the Content-Length header '{length[:40]}' is not a byte count")
            if int(length) > self.max_body:
                return self._too_large()
        return None

    def _too_large(self) -> tuple[int, str, str]:
        return (413, "too_large", f"the request body is larger than {self.max_body} bytes, the most this server "
                "reads; send less (fewer or shorter texts), or serve with a larger max_body_bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that gives the app the body read already, then the client's own messages (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps({"error": kind, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *HEADERS]})
    await send({"type": "http.response.body", "body": body})

"""The server's gatekeepers: the Host and token checks (`Guard`) and the request body limit (`BodyLimit`).

The Host header must be loopback (or a name the server was told it is reached by), so a DNS-rebinding page cannot
talk to the server; with a token every request must carry it (header X-Stylelab-Token, `Authorization: Bearer`,
?token=, or the SameSite=Strict cookie a request with the right ?token= sets).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from .errors import error
from .uploads import size_text

__all__ = ["BODY_OVERHEAD", "COOKIE", "LOOPBACK", "BodyLimit", "Guard", "split_host"]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
COOKIE = "stylelab_token"  # set from ?token= so the page's images and the report's relative links carry it
BODY_OVERHEAD = 2**16  # multipart headers and boundaries around one upload


class Guard:
    """HTTP middleware: a request for another Host is a 421, one without the token (if any) a 401; an unexpected
    failure is a 500 with a one-line message, never a stack trace."""

    def __init__(self, token: str | None, hosts: Sequence[str], port: int | None) -> None:
        self.token, self.port = token, port
        self.allowed = {*LOOPBACK, *(h.strip("[]").lower() for h in hosts)}

    async def __call__(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        host = request.headers.get("host", "")
        name, port = split_host(host)
        if name not in self.allowed or (self.port is not None and port is not None and port != self.port):
            return error(421, f"Host {host!r} is not this server (allowed: {', '.join(sorted(self.allowed))}); "
                         "open the URL `stylelab serve` printed")
        from_query = request.query_params.get("token") or ""
        if self.token is not None and not hmac.compare_digest(self._given(request).encode(), self.token.encode()):
            return error(401, "missing or wrong token: open the URL with ?token=... that `stylelab serve` printed")
        try:
            response = await call_next(request)
        except Exception as exc:  # never a stack trace to the client
            return error(500, f"internal error ({type(exc).__name__})")
        if self.token is not None and from_query == self.token and request.cookies.get(COOKIE) != self.token:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response

    @staticmethod
    def _given(request: Request) -> str:
        """The token the request carries, '' if none."""
        given = (request.headers.get("x-stylelab-token") or request.query_params.get("token")
                 or request.cookies.get(COOKIE) or "")
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given


def split_host(host: str) -> tuple[str, int | None]:
    """A Host header -> (name, port or None): 'localhost:8000', '[::1]:8000', '127.0.0.1'."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":")
    return name, (int(port) if port.isdigit() else None)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request whose body grows past `limit` bytes is answered 413 as soon as it does (a
    declared Content-Length over it at once), whatever the endpoint; the app's own answer to it is dropped."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = {"error": f"the request is larger than the upload limit ({size_text(self.limit - BODY_OVERHEAD)})"}
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse(message, status_code=413)(scope, receive, send)
            return
        state = {"seen": 0, "over": False}

        async def limited():
            msg = await receive()
            if msg["type"] == "http.request":
                state["seen"] += len(msg.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    raise _TooLarge
            return msg

        async def quiet(msg) -> None:
            if not state["over"]:
                await send(msg)

        try:
            await self.app(scope, limited, quiet)
        except Exception:
            if not state["over"]:
                raise
        if state["over"]:
            await JSONResponse(message, status_code=413)(scope, receive, send)

"""Who may open a socket, for both websocket servers (asgi.py, standalone.py).

Refusals are close codes with a reason, sent after accepting: a browser sees those, never
the HTTP status of a refused handshake.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from services.common.errors import PlotlineError
from services.common.identity import Principal

# 4000 + the HTTP status that would say the same
BAD_CREDENTIALS = 4401
BAD_ORIGIN = 4403
TOO_MANY = 4429


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Slots:
    """Open sockets per signed-in user on this replica, at most `limit` each. Anonymous
    sockets are not counted: a published page may have any number of viewers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def take(self, principal: Principal | None) -> None:
        if principal is None:
            return
        held = self._held.get(principal.username, 0)
        if held >= self.limit:
            raise Refused(TOO_MANY, f"at most {self.limit} open sockets per user")
        self._held[principal.username] = held + 1

    def give(self, principal: Principal | None) -> None:
        if principal is None:
            return
        held = self._held.pop(principal.username) - 1
        if held:
            self._held[principal.username] = held


async def admit(conn: HTTPConnection, allowed_origins: list[str], authenticator: Any,
                slots: Slots) -> Principal | None:
    """The caller (None: anonymous), holding one of its slots (give it back on close), or
    Refused. Browsers on other sites may not use their visitors' cookies: an Origin must be
    this server's own host or a listed one (no Origin: a script). Credentials as for REST
    (header, cookie), plus ?token= for browsers."""
    origin = conn.headers.get("origin")
    if origin and origin not in allowed_origins and \
            urlsplit(origin).netloc != conn.headers.get("host"):
        raise Refused(BAD_ORIGIN, "origin not allowed")
    try:
        token = conn.query_params.get("token")
        principal = await (authenticator.from_token(token) if token
                           else authenticator.resolve(conn, "GET"))
    except PlotlineError as exc:
        raise Refused(BAD_CREDENTIALS, exc.detail[:120]) from exc
    slots.take(principal)
    return principal

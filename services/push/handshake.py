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


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def admit(conn: HTTPConnection, allowed_origins: list[str],
                authenticator: Any) -> Principal | None:
    """The caller (None: anonymous), or Refused. Browsers on other sites may not use their
    visitors' cookies: an Origin must be this server's own host or a listed one (no Origin:
    a script). Credentials as for REST (header, cookie), plus ?token= for browsers."""
    origin = conn.headers.get("origin")
    if origin and origin not in allowed_origins and \
            urlsplit(origin).netloc != conn.headers.get("host"):
        raise Refused(BAD_ORIGIN, "origin not allowed")
    try:
        token = conn.query_params.get("token")
        return await (authenticator.from_token(token) if token
                      else authenticator.resolve(conn, "GET"))
    except PlotlineError as exc:
        raise Refused(BAD_CREDENTIALS, exc.detail[:120]) from exc

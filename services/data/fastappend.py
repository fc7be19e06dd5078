"""The hot write, `POST /api/v1/data/sources/{id}/append`, answered before FastAPI.

Live plots stream rows in one or a few at a time, so an append's own work is small and
FastAPI's routing and dependency solving were a fifth of it (services/common/front.py).
Same parsing (routes.append_input), service call, errors and metrics as the FastAPI route
routes.append, which stays for OpenAPI.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from services.common.errors import Unauthorized, Unprocessable
from services.common.front import Front, header, read_body, send_json
from services.common.names import SERVICE_PREFIXES

from .routes import append_input, idempotency_key

PREFIX, SUFFIX = SERVICE_PREFIXES["data"] + "/sources/", "/append"


class FastAppend(Front):
    method, service = "POST", "data"
    route = SERVICE_PREFIXES["data"] + "/sources/{source_id}/append"

    def key(self, path: str) -> str | None:
        if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
            return None
        source_id = path[len(PREFIX):-len(SUFFIX)]
        return source_id if source_id.isalnum() else None

    async def answer(self, scope: Scope, source_id: str, receive: Receive, send: Send) -> int:
        principal = await self.state.authenticator.resolve(HTTPConnection(scope), "POST")
        if principal is None:  # as the route's CurrentUser: who, before what
            raise Unauthorized()
        key = idempotency_key(header(scope, b"idempotency-key"))
        body = await read_body(scope, receive, self.state.max_body_bytes)
        batch, rollover = append_input(body, header(scope, b"content-type"),
                                       _rollover(scope), self.state.max_body_bytes)
        return await send_json(send, 200, await self.state.data.append(
            source_id, principal, batch, rollover, key))


def _rollover(scope: Scope) -> int | None:
    """`?rollover=N` (as FastAPI would read the route's `rollover: int | None`)."""
    if not scope.get("query_string"):
        return None
    given = parse_qs(scope["query_string"].decode("latin-1")).get("rollover")
    if not given:
        return None
    try:
        return int(given[-1])
    except ValueError:
        raise Unprocessable(f"query.rollover: Input should be a valid integer, unable to "
                            f"parse string as an integer (got {given[-1]!r})") from None

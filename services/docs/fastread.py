"""The hot read, `GET /api/v1/docs/{id}`, answered before FastAPI's routing.

Viewers and scripts poll documents far more often than anything else, and FastAPI's
routing, dependency solving and response classes cost several times the work of the read
itself (the answer is cached bytes per version). This ASGI layer answers exactly that route
with the same service call, the same errors and the same metrics; everything else, and the
OpenAPI description of the route, stays with FastAPI (routes.get_document).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.app import LATENCY, REQUESTS
from services.common.errors import PlotlineError, error_response
from services.common.names import SERVICE_PREFIXES

PREFIX = SERVICE_PREFIXES["docs"] + "/"
ROUTE = SERVICE_PREFIXES["docs"] + "/{doc_id}"


class FastRead:
    def __init__(self, app: ASGIApp, fastapi_app: object) -> None:
        self.app = app
        self.state = fastapi_app.state  # type: ignore[attr-defined]
        self._counters: dict[int, Any] = {}
        self._latency = LATENCY.labels("docs", ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        doc_id = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if scope["type"] != "http" or scope["method"] != "GET" or not doc_id.isalnum():
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = await self._answer(scope, doc_id, receive, send)
        counter = self._counters.get(status)
        if counter is None:  # label lookups cost more than the increments: keep them
            counter = self._counters[status] = REQUESTS.labels("docs", "GET", ROUTE, status)
        counter.inc()
        self._latency.observe(time.perf_counter() - start)

    async def _answer(self, scope: Scope, doc_id: str, receive: Receive, send: Send) -> int:
        share = None
        if scope.get("query_string"):
            share = parse_qs(scope["query_string"].decode()).get("share", [None])[0]
        try:
            principal = await self.state.authenticator.resolve(HTTPConnection(scope), "GET")
            meta, body = await self.state.docs.read(doc_id, principal, share)
        except PlotlineError as exc:
            await error_response(exc.status, exc.code, exc.detail, exc.headers)(
                scope, receive, send)
            return exc.status
        etag = f'"{meta["version"]}"'.encode()
        if (b"if-none-match", etag) in scope["headers"]:
            await send({"type": "http.response.start", "status": 304,
                        "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return 304
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"etag", etag),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return 200

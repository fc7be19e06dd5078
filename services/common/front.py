"""A front door: one hot route answered before FastAPI (docs' read, data's append).

FastAPI's routing, dependency solving and response classes cost several times the work of
the hottest calls themselves. A Front answers exactly one route, with the same service call,
the same errors and the same metrics as the FastAPI route it stands in front of; everything
else, and the OpenAPI description of that route, stays with FastAPI. A service's create_app
builds its Fronts around its FastAPI app (`build_app(front=...)`), and what it returns, a
ServiceApp, sends every request through them (services/common/app.py).

A subclass names its `method`, `service` and `route` (the template, for metrics), and writes
`key` (the id in a path it answers, else None) and `answer` (returns the status it sent).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, ClassVar

from starlette.types import ASGIApp, Receive, Scope, Send

from .app import LATENCY, REQUESTS
from .errors import BodyTooLarge, PlotlineError
from .headers import secured
from .httperrors import announced_too_large, answer_for, error_response

log = logging.getLogger("plotline.front")


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path (its URL prefix), as routes see it."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class Disconnected(Exception):
    """The client went away before its request body arrived: nothing to answer."""


class Front:
    method: ClassVar[str]
    service: ClassVar[str]
    route: ClassVar[str]

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.state = fastapi_app.state
        self._counters: dict[int, Any] = {}
        self._latency = LATENCY.labels(self.service, self.route)

    def key(self, path: str) -> str | None:
        raise NotImplementedError

    async def answer(self, scope: Scope, key: str, receive: Receive, send: Send) -> int:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != self.method:
            return await self.app(scope, receive, send)
        path = route_path(scope)
        key = self.key(path)
        if key is None:
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        send = secured(send)
        try:
            status = await self.answer(scope, key, receive, send)
        except PlotlineError as exc:
            status = exc.status
            await answer_for(exc)(scope, receive, send)
        except Disconnected:
            status = 499  # nginx's word for it: the client closed the request
        except Exception:
            log.exception("unhandled error on %s %s", self.method, path)
            status = 500
            await error_response(500, "internal", "internal server error")(
                scope, receive, send)
        counter = self._counters.get(status)
        if counter is None:  # label lookups cost more than the increments: keep them
            counter = self._counters[status] = REQUESTS.labels(
                self.service, self.method, self.route, status)
        counter.inc()
        self._latency.observe(time.perf_counter() - start)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; PayloadTooLarge past `limit` (announced or streamed)."""
    if announced_too_large(scope, limit):
        raise BodyTooLarge(limit)
    parts, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise BodyTooLarge(limit)
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ('' when absent); `name` in lower case."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


async def send_json(send: Send, status: int, body: Any,
                    headers: list[tuple[bytes, bytes]] | None = None) -> int:
    """Answer with `body` (bytes as they are, else JSON-encoded); returns the status."""
    data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": data})
    return status

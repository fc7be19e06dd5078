"""The embedded mode's one ASGI app: every service under the URL prefix, lifespans chained.

Each service app already routes its full API paths (`/api/v1/auth/...`); this app only picks
the service by path, sets `root_path` to the URL prefix, and answers the combined OpenAPI
document. Health, readiness and metrics are not here: they are on the internal port
(services/common/internal.py), so the public port answers 404 for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.common.app import ServiceApp, combined_openapi
from services.common.httperrors import error_response
from services.common.internal import Stopping
from services.common.names import API_PREFIX, SERVICE_PREFIXES

log = logging.getLogger("plotline.serve")


class Embedded:
    def __init__(self, apps: dict[str, ServiceApp], url_prefix: str = "",
                 after_shutdown: Callable[[], None] | None = None) -> None:
        self.apps = apps
        # runs once every service has drained (stops the private NATS child)
        self.after_shutdown = after_shutdown
        self.prefix = url_prefix.rstrip("/")
        # longest prefix first, so /api/v1/docs never shadows a longer one
        self.table = sorted(((SERVICE_PREFIXES[n], a) for n, a in apps.items()),
                            key=lambda item: -len(item[0]))
        # the home page and viewer pages belong to docs when it is mounted
        self.fallback = apps.get("docs")
        self.started = False  # every service's lifespan started (the exit status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if Stopping.now and scope["type"] == "http":
            send = _closing(send)
        path = scope["path"]
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            return await _not_found(scope, receive, send)
        rel = path[len(self.prefix):] or "/"
        if self.prefix:
            scope = dict(scope, root_path=scope.get("root_path", "") + self.prefix)
        for prefix, app in self.table:
            if rel == prefix or rel.startswith(prefix + "/"):
                return await app(scope, receive, send)
        own = await self._own(rel)
        if own is not None:
            return await own(scope, receive, send)
        if self.fallback is not None:
            return await self.fallback(scope, receive, send)
        return await _not_found(scope, receive, send)

    async def _own(self, rel: str) -> Response | None:
        if rel == f"{API_PREFIX}/openapi.json":
            doc = combined_openapi(list(self.apps.values()), server=self.prefix or "/")
            return Response(json.dumps(doc), media_type="application/json")
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        started = False
        try:
            async with contextlib.AsyncExitStack() as stack:
                for app in self.apps.values():
                    await stack.enter_async_context(app.lifespan())
                started = self.started = True
                log.info("all services started")
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown: leaving the stack closes every service
        except BaseException as exc:
            if self.after_shutdown:
                self.after_shutdown()
            kind = "shutdown" if started else "startup"
            log.error("%s failed: %r", kind, exc)
            await send({"type": f"lifespan.{kind}.failed", "message": repr(exc)})
            if not started:
                return
            raise
        if self.after_shutdown:
            self.after_shutdown()
        log.info("all services stopped")
        await send({"type": "lifespan.shutdown.complete"})


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4404})
        return
    await error_response(404, "not_found", f"no route for {scope['path']}")(scope, receive, send)


def _closing(send: Send) -> Send:
    """While the server stops (its drain, settings.drain_seconds): each answer tells the
    client, a proxy's pooled connection mostly, to close the connection after it. The
    proxy then never sends another request on a connection the server is about to close
    (a POST that meets one is lost: nginx does not retry it)."""
    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()),
                                               (b"connection", b"close")]}
        await send(message)

    return closing

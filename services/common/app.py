"""The skeleton every service app shares: errors, body limit, metrics, readiness checks, and
`ServiceApp`, the one thing a service's create_app returns and any ASGI server runs.

Health, readiness and metrics are answered on the internal port (services/common/internal.py),
never on the public one, which only the API, pages and /ws reach."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import BodyTooLarge
from .headers import SecurityHeaders
from .httperrors import announced_too_large, answer_for, error_response, install_error_handlers
from .names import HTTP_METHODS, SERVICE_PREFIXES

# Every label comes from a fixed set, so no request can add series: method is one of
# HTTP_METHODS or "other", route the matched template or "unmatched", status the int status.
REQUESTS = Counter("plotline_http_requests_total", "HTTP requests answered",
                   ["service", "method", "route", "status"])
LATENCY = Histogram("plotline_http_request_seconds", "HTTP request latency",
                    ["service", "route"])

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def _too_big(limit: int) -> JSONResponse:
    return answer_for(BodyTooLarge(limit))


class BodyLimit:
    """413 for bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if announced_too_large(scope, self.limit):
            return await _too_big(self.limit)(scope, receive, send)
        seen = 0
        responded = False

        async def limited_receive() -> Message:
            nonlocal seen, responded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not responded:
                    responded = True
                    await _too_big(self.limit)(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


class PlainPaths:
    """404 for a path with a control character: no route, id or name has one, and Starlette
    anchors route patterns with `$`, which also matches before a final newline, so
    `/api/v1/docs/%0A` would be the list of documents instead of a document id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL.search(scope["path"]):
            return await error_response(404, "not_found", "no such path")(scope, receive, send)
        await self.app(scope, receive, send)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Metrics:
    """Request count and latency per route. Plain ASGI on purpose: Starlette's
    @app.middleware("http") adds a task group and streams to every request (~0.6 ms here)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            REQUESTS.labels(self.service, method, route, int(status)).inc()
            LATENCY.labels(self.service, route).observe(time.perf_counter() - start)


Front = Callable[[FastAPI], ASGIApp]
"""A service's front doors, built around its FastAPI app (services/common/front.py)."""


class ServiceApp:
    """What a service serves: a plain ASGI app that any ASGI server runs (granian, uvicorn),
    its front doors (if any) before its FastAPI app, which answers everything else and the
    lifespan (the front doors pass it through).

    `api` is the FastAPI app, for its routes, OpenAPI document and lifespan; `state` is the
    service's state (`api.state`), which /readyz and the front doors read."""

    def __init__(self, api: FastAPI, front: Front | None = None) -> None:
        self.api = api
        self.state = api.state
        self.entry: ASGIApp = front(api) if front else api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.entry(scope, receive, send)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The service's lifespan, for a runner that starts several in one process."""
        return self.api.router.lifespan_context(self.api)


def build_app(*, service: str, title: str, lifespan: Callable[[FastAPI], Any],
              max_body_bytes: int, routers: list[Any], front: Front | None = None
              ) -> ServiceApp:
    """A service app: its routers at their full API paths, behind `front`.
    `state.started` and `state.ready_checks` decide the internal port's /readyz;
    `reported_checks` are shown there too, without deciding it."""

    @contextlib.asynccontextmanager
    async def tracked(app: FastAPI) -> Any:
        async with lifespan(app):
            app.state.started = True
            try:
                yield
            finally:
                app.state.started = False

    app = FastAPI(title=title, lifespan=tracked, docs_url=None, redoc_url=None,
                  openapi_url=f"{SERVICE_PREFIXES[service]}/openapi.json")
    app.state.service = service
    app.state.max_body_bytes = max_body_bytes  # (front doors read bodies themselves)
    app.state.ready_checks = {}
    app.state.reported_checks = {}
    app.state.started = False
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    app.add_middleware(PlainPaths)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Metrics, service=service)
    return ServiceApp(app, front)


def ready_checks(kv: Any) -> dict[str, ReadyCheck]:
    """What a service cannot serve without: its store. NATS is not on the list: while it
    is away, writes still commit (their events wait in the outbox, bus.py) and reads
    still answer, so Kubernetes must keep the pod in its Service; `reported_checks` says
    how NATS is doing on /readyz without deciding it."""

    async def store() -> bool:
        try:
            await kv.get("readyz")
            return True
        except Exception:
            return False

    return {"store": store}


def reported_checks(bus: Any) -> dict[str, ReadyCheck]:
    """Shown on /readyz, not required: connected to NATS, and no event waiting to be
    published (the outbox empty)."""

    async def nats() -> bool:
        return bool(bus.connected)

    async def outbox() -> bool:
        return bus.backlog == 0

    return {"nats": nats, "outbox": outbox}


def combined_openapi(apps: list[ServiceApp], server: str = "/") -> dict[str, Any]:
    """One OpenAPI document for the whole prefix API, merged from every service's own: every
    path, every component. `server` is the URL prefix the paths live under. A process that
    runs only some services (`plotline serve docs`, which the ingress sends this path)
    describes the others too, from apps built for the purpose and never started.

    Services name their models independently, so two may use one name for different schemas
    (docs' and data's PatchIn): the later one is renamed with its service's name, references
    included, rather than silently replacing the other's."""
    running = {app.state.service: app for app in apps}
    merged: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "Plotline", "version": "1"},
                              "servers": [{"url": server}], "paths": {}, "components": {}}
    for service in SERVICE_PREFIXES:
        doc = (running.get(service) or _described(service)).api.openapi()
        taken = merged["components"].get("schemas", {})
        clashes = [name for name, schema in doc.get("components", {}).get("schemas", {}).items()
                   if taken.get(name, schema) != schema]
        if clashes:
            doc = _renamed(doc, clashes, service.capitalize())
        merged["paths"].update(doc.get("paths", {}))
        for section, entries in doc.get("components", {}).items():
            merged["components"].setdefault(section, {}).update(entries)
    return merged


@functools.cache
def _described(service: str) -> ServiceApp:
    """A service's app built from its default settings, unchecked: only its routes are used
    (no lifespan runs, so it opens nothing)."""
    module = importlib.import_module(f"services.{service}.app")
    config = importlib.import_module(f"services.{service}.config")
    settings = getattr(config, f"{service.capitalize()}Settings")
    return module.create_app(settings.model_construct())


def _renamed(doc: dict[str, Any], names: list[str], prefix: str) -> dict[str, Any]:
    text = json.dumps(doc)
    for name in names:
        text = text.replace(f'"#/components/schemas/{name}"',
                            f'"#/components/schemas/{prefix}{name}"')
    doc = json.loads(text)
    schemas = doc["components"]["schemas"]
    for name in names:
        schemas[prefix + name] = schemas.pop(name)
    return doc


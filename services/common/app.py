"""The skeleton every service app shares: errors, body limit, health, readiness, metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import announced_too_large, body_too_large, error_response, install_error_handlers
from .names import SERVICE_PREFIXES

REQUESTS = Counter("plotline_http_requests_total", "HTTP requests answered",
                   ["service", "method", "route", "status"])
LATENCY = Histogram("plotline_http_request_seconds", "HTTP request latency",
                    ["service", "route"])

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]


def _too_big(limit: int) -> JSONResponse:
    exc = body_too_large(limit)
    return error_response(exc.status, exc.code, exc.detail, exc.headers)


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
            REQUESTS.labels(self.service, scope["method"], route, status).inc()
            LATENCY.labels(self.service, route).observe(time.perf_counter() - start)


def build_app(*, service: str, title: str, lifespan: Callable[[FastAPI], Any],
              max_body_bytes: int, routers: list[Any]) -> FastAPI:
    """A service app: its routers at their full API paths, plus /healthz, /readyz, /metrics."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=f"{SERVICE_PREFIXES[service]}/openapi.json")
    app.state.service = service
    app.state.max_body_bytes = max_body_bytes  # (front doors read bodies themselves)
    app.state.ready_checks = {}
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = {name: await check() for name, check in app.state.ready_checks.items()}
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(Metrics, service=service)
    return app


def ready_checks(bus: Any, kv: Any) -> dict[str, ReadyCheck]:
    """The readiness every service reports: connected to NATS, its store answering."""

    async def nats() -> bool:
        return bool(bus.connected)

    async def store() -> bool:
        try:
            await kv.get("readyz")
            return True
        except Exception:
            return False

    return {"nats": nats, "store": store}


def combined_openapi(apps: list[FastAPI], server: str = "/") -> dict[str, Any]:
    """One OpenAPI document for the whole prefix API, merged from the services' own."""
    merged: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "Plotline", "version": "1"},
                              "servers": [{"url": server}], "paths": {},
                              "components": {"schemas": {}}}
    for app in apps:
        doc = app.openapi()
        merged["paths"].update(doc.get("paths", {}))
        merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
    return merged


LifespanFactory = Callable[[FastAPI], AbstractAsyncContextManager[None]]

"""The push service app: `/ws`, its lifespan (the bus and the hub), and the handshake checks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, WebSocket

from services.common.app import build_app
from services.common.bus import Bus
from services.common.errors import PlotlineError
from services.common.identity import connect_authenticator
from services.common.names import SERVICE_PREFIXES

from .asgi import serve
from .config import PushSettings
from .hub import CONNECTIONS, Hub

log = logging.getLogger("plotline.push")
router = APIRouter()

# handshake refusals: 4000 + the HTTP status that would say the same
BAD_CREDENTIALS = 4401
BAD_ORIGIN = 4403


def origin_allowed(ws: WebSocket, allowed: list[str]) -> bool:
    """No Origin (a script, not a browser), this server's own host, or a listed origin."""
    origin = ws.headers.get("origin")
    if not origin:
        return True
    return origin in allowed or urlsplit(origin).netloc == ws.headers.get("host")


@router.websocket(SERVICE_PREFIXES["push"])
async def websocket(ws: WebSocket) -> None:
    state = ws.app.state
    # Refusals are accepted and then closed with a code and a reason: a browser sees those,
    # never the HTTP status of a refused handshake. Nothing is sent before the close.
    await ws.accept()
    if not origin_allowed(ws, state.settings.allowed_origins):
        await ws.close(code=BAD_ORIGIN, reason="origin not allowed")
        return
    try:  # like REST (header, cookie), plus ?token= for browsers
        token = ws.query_params.get("token")
        principal = (await state.authenticator.from_token(token) if token
                     else await state.authenticator.resolve(ws, "GET"))
    except PlotlineError as exc:
        await ws.close(code=BAD_CREDENTIALS, reason=exc.detail[:120])
        return
    CONNECTIONS.inc()
    try:
        await serve(ws, principal, state.bus, state.hub, state.settings)
    finally:
        CONNECTIONS.dec()


def create_app(settings: PushSettings | None = None) -> FastAPI:
    settings = settings or PushSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = await Bus.connect(settings.nats_url, "push")  # push keeps nothing durable
        try:
            await bus.ensure_stream()
            app.state.settings, app.state.bus, app.state.hub = settings, bus, Hub(bus)
            await app.state.hub.watch_revocations()
            app.state.authenticator = await connect_authenticator(settings, bus)

            async def nats() -> bool:
                return bool(bus.connected)

            app.state.ready_checks = {"nats": nats}
            log.info("push ready (multi_user=%s)", settings.multi_user)
            yield
        finally:
            await bus.close()

    return build_app(service="push", title="Plotline push", lifespan=lifespan,
                     max_body_bytes=settings.max_body_bytes, routers=[router])

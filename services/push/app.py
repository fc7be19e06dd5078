"""The push service app: `/ws`, its lifespan (the bus and the hub), and the handshake checks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI, WebSocket

from services.common.app import ServiceApp, build_app
from services.common.bus import Bus
from services.common.identity import connect_authenticator
from services.common.names import SERVICE_PREFIXES

from .asgi import serve
from .config import PushSettings
from .handshake import Refused, Slots, admit, chosen_protocol
from .hub import CONNECTIONS, Hub

log = logging.getLogger("plotline.push")
router = APIRouter()

@router.websocket(SERVICE_PREFIXES["push"])
async def websocket(ws: WebSocket) -> None:
    state = ws.app.state
    await ws.accept(subprotocol=chosen_protocol(ws))  # refusals are close codes
    try:
        principal, slot = await admit(ws, state.settings, state.authenticator, state.slots)
    except Refused as refused:
        await ws.close(code=refused.code, reason=refused.reason)
        return
    CONNECTIONS.inc()
    try:
        await serve(ws, principal, state.bus, state.hub, state.settings)
    finally:
        CONNECTIONS.dec()
        state.slots.give(slot)


def create_app(settings: PushSettings | None = None) -> ServiceApp:
    settings = settings or PushSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # push keeps nothing durable
        bus = await Bus.connect(settings.nats_url, "push", **settings.nats_credentials())
        try:
            await bus.ensure_stream()
            app.state.settings, app.state.bus = settings, bus
            app.state.hub = Hub(bus, settings.max_replay)
            app.state.slots = Slots(settings.max_connections_per_user,
                                    settings.max_anonymous_per_address)
            await app.state.hub.watch_revocations()
            app.state.authenticator = await connect_authenticator(settings, bus)
            # a revoked API key or login session closes the sockets opened with it
            app.state.authenticator.on_revoked.append(app.state.hub.credential_revoked)

            async def nats() -> bool:
                return bool(bus.connected)

            app.state.ready_checks = {"nats": nats}
            log.info("push ready (multi_user=%s)", settings.multi_user)
            yield
        finally:
            await bus.close()

    return build_app(service="push", title="Plotline push", lifespan=lifespan,
                     max_body_bytes=settings.max_body_bytes, routers=[router])

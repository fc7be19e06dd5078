"""The docs service app: create_app + lifespan (clients made here, closed on the way out)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import build_app, ready_checks
from services.common.bus import Bus
from services.common.identity import connect_authenticator
from services.common.stores.blob import open_blob
from services.common.stores.kv import open_kv

from .config import DocsSettings
from .events import start_responders
from .fastread import FastRead
from .pages import router as pages_router
from .repository import DocsRepository
from .routes import router
from .service import DocsService
from .sharing import Sharing

log = logging.getLogger("plotline.docs")


def create_app(settings: DocsSettings | None = None) -> FastAPI:
    settings = settings or DocsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kv = open_kv(settings.kv_url)
        azure = settings.azure_connection_string
        blobs = open_blob(settings.blob_url,
                          azure_connection_string=azure.get_secret_value() if azure else None)
        bus = await Bus.connect(settings.nats_url, "docs")
        await bus.ensure_stream()
        docs = DocsService(settings, DocsRepository(kv, blobs), bus)
        sharing = Sharing(docs)
        app.state.docs, app.state.sharing = docs, sharing
        app.state.authenticator = await connect_authenticator(settings, bus)
        await start_responders(bus, docs, sharing)
        app.state.ready_checks = ready_checks(bus, kv)
        log.info("docs ready (multi_user=%s)", settings.multi_user)
        try:
            yield
        finally:
            await bus.close()
            await blobs.close()
            await kv.close()

    app = build_app(service="docs", title="Plotline docs", lifespan=lifespan,
                    max_body_bytes=settings.max_body_bytes, routers=[router, pages_router])
    # the hot read is answered before FastAPI (see fastread.py); Embedded and
    # `plotline serve docs` send requests to app.state.front
    app.state.front = FastRead(app, app)
    return app

"""The docs service app: create_app + lifespan (clients made here, closed on the way out)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import ServiceApp, build_app, ready_checks, reported_checks
from services.common.clients import service_clients
from services.common.cors import ViewerCORS
from services.common.identity import connect_authenticator

from .account_pages import router as account_router
from .config import DocsSettings
from .events import follow_changes, start_responders
from .fastread import FastRead
from .pages import router as pages_router
from .repository import DocsRepository
from .routes import router
from .service import DocsService
from .sharing import Sharing

log = logging.getLogger("plotline.docs")


def create_app(settings: DocsSettings | None = None) -> ServiceApp:
    settings = settings or DocsSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_clients(settings, "docs") as c:
            docs = DocsService(settings, DocsRepository(
                c.kv, c.blobs, meta_cache_seconds=settings.meta_cache_seconds), c.bus)
            sharing = Sharing(docs)
            app.state.docs, app.state.sharing = docs, sharing
            app.state.authenticator = await connect_authenticator(settings, c.bus)
            await start_responders(c.bus, docs, sharing)
            await follow_changes(c.bus, docs.repo.fresh)
            app.state.ready_checks = ready_checks(c.kv)
            app.state.reported_checks = reported_checks(c.bus)
            log.info("docs ready (multi_user=%s)", settings.multi_user)
            try:
                yield
            finally:
                docs.workers.close()

    def front(api: FastAPI) -> ViewerCORS:
        # the hot read is answered before FastAPI (see fastread.py); outermost, viewers
        # on other sites may read a document (services/common/cors.py)
        return ViewerCORS(FastRead(api, api), api.state, "docs")

    return build_app(service="docs", title="Plotline docs", lifespan=lifespan,
                     max_body_bytes=settings.max_body_bytes,
                     routers=[router, pages_router, account_router], front=front)

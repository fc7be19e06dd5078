"""The data service app: create_app + lifespan (clients made here, closed on the way out)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import ServiceApp, build_app, ready_checks, reported_checks
from services.common.clients import service_clients
from services.common.cors import ViewerCORS
from services.common.identity import connect_authenticator

from .config import DataSettings
from .events import Grants, start_listeners, start_responders
from .fastappend import FastAppend
from .large import warm_up
from .repository import DataRepository
from .routes import router
from .service import DataService
from .views import Views

log = logging.getLogger("plotline.data")


def create_app(settings: DataSettings | None = None) -> ServiceApp:
    settings = settings or DataSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_clients(settings, "data") as c:
            grants = Grants(c.bus)
            app.state.data = DataService(
                settings, DataRepository(c.kv, c.blobs, settings.cache_bytes), c.bus, grants)
            await start_listeners(c.bus, grants, app.state.data.drop)
            await start_responders(c.bus, app.state.data)
            app.state.views = Views(app.state.data)
            # compile datashader's kernels in the background, not on the first request
            warming = (asyncio.get_running_loop().run_in_executor(None, warm_up)
                       if settings.warm_up else None)
            app.state.authenticator = await connect_authenticator(settings, c.bus)
            app.state.ready_checks = ready_checks(c.kv)
            app.state.reported_checks = reported_checks(c.bus)

            async def kernels() -> bool:
                return warming is None or warming.done()

            app.state.ready_checks["kernels"] = kernels

            async def blobs() -> bool:  # reported: the rest of each source still serves
                return not app.state.data.repo.damaged

            app.state.reported_checks["blobs"] = blobs
            log.info("data ready (multi_user=%s)", settings.multi_user)
            try:
                yield
            finally:
                if warming is not None:
                    await warming

    def front(api: FastAPI) -> ViewerCORS:
        # appends are answered before FastAPI (see fastappend.py); outermost, viewers on
        # other sites may read a source (services/common/cors.py)
        return ViewerCORS(FastAppend(api, api), api.state, "data")

    return build_app(service="data", title="Plotline data", lifespan=lifespan,
                     max_body_bytes=settings.max_body_bytes, routers=[router], front=front)

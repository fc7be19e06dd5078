"""The auth service app: create_app + lifespan (clients made here, closed on the way out)."""

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

from .config import AuthSettings
from .events import start_responders
from .mailer import Mailer
from .repository import AuthRepository
from .routes import router
from .service import AuthService
from .signing import KeyRing

log = logging.getLogger("plotline.auth")


async def _rotate_forever(ring: KeyRing, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            if await ring.refresh():
                log.info("rotated signing key; new kid %s", ring.current_kid)
        except Exception:
            log.exception("signing key refresh failed; will retry")


def create_app(settings: AuthSettings | None = None) -> ServiceApp:
    settings = settings or AuthSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_clients(settings, "auth") as c:
            ring = KeyRing(c.kv, rotation_s=settings.key_rotation_seconds,
                           token_ttl_s=settings.token_ttl_seconds)
            await ring.refresh()
            mailer = (Mailer(settings.smtp_url.get_secret_value(), settings.mail_from)
                      if settings.smtp_url else None)
            svc = AuthService(settings, AuthRepository(c.kv), ring, c.bus, mailer)
            app.state.auth = svc
            app.state.authenticator = await connect_authenticator(
                settings, c.bus, jwks=ring.jwks, check_key=svc.check_key,
                check_session=svc.check_session)
            await start_responders(c.bus, svc)
            app.state.ready_checks = ready_checks(c.kv)
            app.state.reported_checks = reported_checks(c.bus)
            rotation = asyncio.create_task(
                _rotate_forever(ring, min(60.0, settings.key_rotation_seconds / 4)))
            log.info("auth ready (multi_user=%s, kid=%s)", settings.multi_user,
                     ring.current_kid)
            try:
                yield
            finally:
                rotation.cancel()

    def front(api: FastAPI) -> ViewerCORS:
        # a viewer on another site renews its scoped token (services/common/cors.py)
        return ViewerCORS(api, api.state, "auth")

    return build_app(service="auth", title="Plotline auth", lifespan=lifespan,
                     max_body_bytes=settings.max_body_bytes, routers=[router], front=front)


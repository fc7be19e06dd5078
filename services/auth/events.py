"""Auth on the bus: answers API-key, session and JWKS requests for the other services."""

from __future__ import annotations

from typing import Any

from services.common.bus import Bus
from services.common.names import AUTH_JWKS, AUTH_SESSION, AUTH_VERIFY

from .service import AuthService

QUEUE = "auth"  # replicas share the questions


async def start_responders(bus: Bus, svc: AuthService) -> None:
    async def verify(request: dict[str, Any]) -> dict[str, Any]:
        key = request.get("key")
        answer = await svc.check_key(key) if isinstance(key, str) else None
        return {"ok": True, **answer} if answer else {"ok": False}

    async def session(request: dict[str, Any]) -> dict[str, Any]:
        sid = request.get("sid")
        answer = await svc.check_session(sid) if isinstance(sid, str) else None
        return {"ok": True, **answer} if answer else {"ok": False}

    async def jwks(_: dict[str, Any]) -> dict[str, Any]:
        return await svc.ring.jwks()

    await bus.serve(AUTH_VERIFY, verify, queue=QUEUE)
    await bus.serve(AUTH_SESSION, session, queue=QUEUE)
    await bus.serve(AUTH_JWKS, jwks, queue=QUEUE)

"""The kit other services use to authenticate callers: API keys over NATS, revocation."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common.bus import Bus
from services.common.errors import Unauthorized
from services.common.identity import connect_authenticator
from services.common.settings import ServiceSettings


@pytest.fixture
async def other_service(multi_server):
    """The Authenticator a non-auth service builds: it knows auth only through NATS."""
    bus = await Bus.connect(multi_server.nats_url, "test")
    settings = ServiceSettings(nats_url=multi_server.nats_url, multi_user=True)
    yield await connect_authenticator(settings, bus)
    await bus.close()


async def test_jwt_verified_with_jwks_fetched_over_nats(other_service, account):
    principal = await other_service.from_token(account["token"])
    assert principal.username == account["username"] and principal.via == "jwt"


async def test_revoked_key_is_refused_by_another_service_within_a_second(
        other_service, account):
    c, h = account["client"], account["headers"]
    created = c.post("/api/v1/auth/apikeys", json={"name": "x"}, headers=h).json()
    principal = await other_service.from_token(created["key"])  # now cached (10 s)
    assert principal.username == account["username"] and principal.key_id == created["id"]
    assert (await other_service.from_token(created["key"])).via == "apikey"
    assert c.delete(f"/api/v1/auth/apikeys/{created['id']}", headers=h).status_code == 204
    revoked_at = time.monotonic()
    while True:
        try:
            await other_service.from_token(created["key"])
        except Unauthorized as exc:
            assert exc.code == "invalid_api_key"
            break
        assert time.monotonic() - revoked_at < 1.0, "revoked key still accepted after 1 s"
        await asyncio.sleep(0.01)
    assert time.monotonic() - revoked_at < 1.0


async def test_unknown_api_key_refused_over_nats(other_service):
    with pytest.raises(Unauthorized) as info:
        await other_service.from_token("pl_0123456789abcdef_" + "x" * 43)
    assert info.value.code == "invalid_api_key"


async def test_a_key_auth_vouched_for_lately_outlives_a_short_auth_outage(monkeypatch):
    """Auth unreachable (NATS away): a key it confirmed within STALE_GRACE_S still works
    (writers keep writing through the outage); a key never confirmed is a 503, not a 401;
    past the grace it is a 503 too."""
    from services.common import identity
    from services.common.errors import Unavailable

    up = {"auth": True}

    async def check(key: str) -> dict | None:
        if not up["auth"]:
            raise Unavailable("no answer on plotline.auth.verify")
        return {"username": "alice", "key_id": "k1"} if key == "good" else None

    cache = identity.ApiKeyCache(check, ttl=0.05)
    assert (await cache.lookup("good"))["username"] == "alice"
    up["auth"] = False
    await asyncio.sleep(0.1)  # the cached answer is past its ttl
    assert (await cache.lookup("good"))["username"] == "alice"
    with pytest.raises(Unavailable):
        await cache.lookup("never-seen")
    monkeypatch.setattr(identity, "STALE_GRACE_S", 0.0)
    with pytest.raises(Unavailable):
        await cache.lookup("good")
    up["auth"] = True
    assert await cache.lookup("bad") is None

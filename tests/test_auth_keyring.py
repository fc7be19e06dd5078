"""Signing-key rotation and the JWKS cache (in-process, memory store)."""

from __future__ import annotations

import time

import pytest

from services.auth import signing
from services.auth.signing import KeyRing
from services.common.errors import Unauthorized
from services.common.stores.kv import open_kv
from services.common.tokens import JWKSCache, TokenVerifier


def claims(sub: str = "alice") -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 60, "iss": "plotline", "aud": "plotline"}


async def test_rotation_keeps_old_keys_until_their_tokens_expire(monkeypatch):
    ring = KeyRing(open_kv("memory://"), rotation_s=3600, token_ttl_s=3600)
    assert await ring.refresh() is True  # first key
    assert await ring.refresh() is False  # not due yet
    old_kid, old_token = ring.current_kid, ring.sign(claims())
    fetches = []

    async def fetch():
        fetches.append(1)
        return await ring.jwks()

    verifier = TokenVerifier(JWKSCache(fetch), issuer="plotline", audience="plotline")
    assert (await verifier.verify(old_token)).sub == "alice"
    assert await ring.refresh(force_rotate=True) is True
    assert ring.current_kid != old_kid
    new_token = ring.sign(claims("bob"))
    assert {k["kid"] for k in (await ring.jwks())["keys"]} == {old_kid, ring.current_kid}
    # the verifier meets an unknown kid: it refetches once and accepts
    assert (await verifier.verify(new_token)).sub == "bob"
    assert (await verifier.verify(old_token)).sub == "alice"
    assert len(fetches) == 2
    # once a retired key's tokens can no longer be valid, it leaves the JWKS
    monkeypatch.setattr(signing, "CLOCK_SKEW", 0)
    ring.token_ttl_s = 0
    await ring.refresh(force_rotate=True)
    kids = {k["kid"] for k in (await ring.jwks())["keys"]}
    assert old_kid not in kids and ring.current_kid in kids


async def test_two_replicas_rotating_at_once_agree():
    kv = open_kv("memory://")
    a = KeyRing(kv, rotation_s=3600, token_ttl_s=60)
    b = KeyRing(kv, rotation_s=3600, token_ttl_s=60)
    await a.refresh()
    await b.refresh()
    assert a.current_kid == b.current_kid


async def test_unknown_kids_do_not_hammer_auth():
    calls = []

    async def fetch():
        calls.append(1)
        return {"keys": []}

    verifier = TokenVerifier(JWKSCache(fetch), issuer="plotline", audience="plotline")
    ring = KeyRing(open_kv("memory://"), rotation_s=3600, token_ttl_s=60)
    await ring.refresh()
    token = ring.sign(claims())
    for _ in range(20):
        with pytest.raises(Unauthorized):
            await verifier.verify(token)
    assert len(calls) == 1  # at most one refetch per second


async def test_unreachable_auth_is_a_clear_401():
    async def fetch():
        raise ConnectionError("auth is down")

    verifier = TokenVerifier(JWKSCache(fetch), issuer="plotline", audience="plotline")
    ring = KeyRing(open_kv("memory://"), rotation_s=3600, token_ttl_s=60)
    await ring.refresh()
    with pytest.raises(Unauthorized) as info:
        await verifier.verify(ring.sign(claims()))
    assert "key set unavailable" in info.value.detail


async def test_verified_tokens_are_remembered_but_expire_and_follow_the_keys():
    ring = KeyRing(open_kv("memory://"), rotation_s=3600, token_ttl_s=3600)
    await ring.refresh()
    jwks = JWKSCache(ring.jwks)
    verifier = TokenVerifier(jwks, issuer="plotline", audience="plotline")
    token = ring.sign(claims())
    assert (await verifier.verify(token)).sub == "alice"
    assert verifier.verify_known(token).sub == "alice"  # remembered: same exact bytes
    # a remembered token still expires on time
    now = int(time.time())
    short = ring.sign({**claims(), "exp": now + 1})
    assert (await verifier.verify(short)).sub == "alice"
    time.sleep(1.1)
    with pytest.raises(Unauthorized) as info:
        await verifier.verify(short)
    assert info.value.code == "token_expired"
    # when the signing key leaves the key set, what it vouched for is forgotten
    jwks.load({"keys": []})
    with pytest.raises(Unauthorized):
        verifier.verify_known(token)

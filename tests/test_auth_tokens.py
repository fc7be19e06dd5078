"""Token checks: each way of forging or misusing a JWT is refused, by its own test.

Valid-looking tokens are made with auth's real signing key, read from auth's own store, so
each test changes exactly one thing about an otherwise valid token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.stores.kv import open_kv

ME = "/api/v1/auth/me"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
async def signing_key(multi_server):
    """(kid, private key) of auth's current signing key, from its store."""
    kv = open_kv(multi_server.auth_kv_url)
    try:
        ring = json.loads((await kv.get("signing-keys")).value)
    finally:
        await kv.close()
    newest = ring[-1]
    return newest["kid"], serialization.load_pem_private_key(newest["pem"].encode(), None)


def claims(sub: str, **over) -> dict:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + 600, "iss": "plotline", "aud": "plotline", **over}


def sid_of(account: dict) -> str:
    """The session of the account's login: a forged token must name a live one to get as
    far as the check under test."""
    return jwt.decode(account["token"], options={"verify_signature": False})["sid"]


def call_me(server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}{ME}", headers={"Authorization": f"Bearer {token}"})


def assert_refused(r: httpx.Response, code: str = "invalid_token") -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"] == code


def test_a_token_signed_with_the_real_key_is_accepted(multi_server, account, signing_key):
    kid, key = signing_key
    token = jwt.encode(
        claims(account["username"], sid=sid_of(account)),
        key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    r = call_me(multi_server, token)
    assert r.status_code == 200 and r.json()["username"] == account["username"]


def test_alg_none_is_refused(multi_server, account, signing_key):
    kid, _ = signing_key
    header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims(account["username"], sid=sid_of(account))).encode())
    assert_refused(call_me(multi_server, f"{header}.{payload}."))


def test_hs256_signed_with_the_public_key_is_refused(multi_server, account, signing_key):
    kid, key = signing_key
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims(account["username"], sid=sid_of(account))).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert_refused(call_me(multi_server, f"{header}.{payload}.{b64(signature)}"))


def test_tampered_payload_is_refused(multi_server, account):
    header, _, signature = account["token"].split(".")
    forged = b64(json.dumps(claims("someone-else")).encode())
    assert_refused(call_me(multi_server, f"{header}.{forged}.{signature}"))


def test_expired_token_is_refused(multi_server, account, signing_key):
    kid, key = signing_key
    past = int(time.time()) - 3600
    token = jwt.encode(
        claims(account["username"], sid=sid_of(account), iat=past - 60, exp=past),
        key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    assert_refused(call_me(multi_server, token), code="token_expired")


@pytest.mark.parametrize("field", ["aud", "iss"])
def test_wrong_audience_or_issuer_is_refused(multi_server, account, signing_key, field):
    kid, key = signing_key
    token = jwt.encode(
        claims(account["username"], sid=sid_of(account), **{field: "someone-elses-service"}),
        key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    assert_refused(call_me(multi_server, token))


def test_missing_exp_is_refused(multi_server, account, signing_key):
    kid, key = signing_key
    body = claims(account["username"], sid=sid_of(account))
    del body["exp"]
    token = jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})
    assert_refused(call_me(multi_server, token))


def test_unknown_kid_is_refused(multi_server, account):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        claims(account["username"], sid=sid_of(account)),
        stranger,
        algorithm="RS256",
        headers={"kid": "0000000000000000"},
    )
    assert_refused(call_me(multi_server, token))


def test_known_kid_but_foreign_signature_is_refused(multi_server, account, signing_key):
    kid, _ = signing_key
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        claims(account["username"], sid=sid_of(account)),
        stranger,
        algorithm="RS256",
        headers={"kid": kid},
    )
    assert_refused(call_me(multi_server, token))


async def test_passwords_and_api_keys_are_stored_hashed(multi_server, account):
    c, h = account["client"], account["headers"]
    secret = c.post("/api/v1/auth/apikeys", json={"name": "k"}, headers=h).json()["key"]
    kv = open_kv(multi_server.auth_kv_url)
    try:
        user = json.loads((await kv.get(f"user:{account['username']}")).value)
        assert user["password"].startswith("$argon2id$")
        everything = b"".join(
            [(await kv.get(k)).value for k in await kv.keys() if await kv.get(k) is not None]
        )
    finally:
        await kv.close()
    assert account["password"].encode() not in everything
    assert secret.encode() not in everything
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in everything

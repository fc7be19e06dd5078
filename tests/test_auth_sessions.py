"""A JWT is only as good as its session: signed out, key revoked or user unknown, it stops.

Each case was a hole: a validly signed token for a user that does not exist was accepted, a
JWT minted from an API key outlived the key's revocation, logout revoked nothing, and the
CSRF check took any cookie value the page echoed (one planted by a sibling subdomain too).
Every service is asked (auth, docs, data), since each checks tokens itself.
"""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from conftest import new_username
from cryptography.hazmat.primitives import serialization

from services.common.names import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from services.common.stores.kv import open_kv

# one read-only route per service: all of them must refuse an ended session
ROUTES = ("/api/v1/auth/me", "/api/v1/docs/", "/api/v1/data/sources")
PASSWORD = "correct horse battery"


def answers(server, token: str) -> list[int]:
    return [
        httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"}).status_code
        for path in ROUTES
    ]


def refused_everywhere(server, token: str, within: float = 1.0) -> float:
    """Seconds until every service answers 401 to `token` (fails after `within`)."""
    start = time.monotonic()
    while (statuses := answers(server, token)) != [401] * len(ROUTES):
        assert time.monotonic() - start < within, f"still answered {statuses}"
        time.sleep(0.02)
    return time.monotonic() - start


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
async def sign(multi_server):
    """Sign claims with auth's real current key, read from its store (what a leaked or
    replayed key could do: the signature alone must not be enough)."""
    kv = open_kv(multi_server.auth_kv_url)
    try:
        newest = json.loads((await kv.get("signing-keys")).value)[-1]
    finally:
        await kv.close()
    key = serialization.load_pem_private_key(newest["pem"].encode(), None)

    def signed(**claims) -> str:
        now = int(time.time())
        body = {"iat": now, "exp": now + 600, "iss": "plotline", "aud": "plotline", **claims}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": newest["kid"]})

    return signed


def login(server) -> tuple[httpx.Client, dict]:
    """A new user signed in with a fresh client: (client holding the cookies, bearer)."""
    name = new_username()
    client = httpx.Client(base_url=server.url, timeout=10)
    assert (
        client.post(
            "/api/v1/auth/register", json={"username": name, "password": PASSWORD}
        ).status_code
        == 201
    )
    r = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client, {"Authorization": f"Bearer {r.json()['access_token']}", "username": name}


def test_a_login_token_names_its_session_and_works_everywhere(multi_server, account):
    assert isinstance(claims_of(account["token"]).get("sid"), str)
    assert answers(multi_server, account["token"]) == [200] * len(ROUTES)


def test_a_signed_token_for_a_user_that_does_not_exist_is_refused(multi_server, account, sign):
    live_sid = claims_of(account["token"])["sid"]
    for forged in (
        sign(sub="ghost" + new_username()),  # no session at all
        sign(sub="ghost" + new_username(), sid="0" * 32),  # an invented one
        sign(sub="ghost" + new_username(), sid=live_sid),
    ):  # someone else's
        assert answers(multi_server, forged) == [401] * len(ROUTES)
    # the same key and a live session of the right user is fine: only the claims differ
    assert answers(multi_server, sign(sub=account["username"], sid=live_sid)) == [200] * len(ROUTES)


def test_a_jwt_minted_from_an_api_key_ends_with_the_key(multi_server, account):
    c, h = account["client"], account["headers"]
    key = c.post("/api/v1/auth/apikeys", json={"name": "ci"}, headers=h).json()
    minted = c.post("/api/v1/auth/token", json={"api_key": key["key"]}).json()["access_token"]
    assert claims_of(minted)["sid"] == key["id"]
    assert answers(multi_server, minted) == [200] * len(ROUTES)
    assert c.delete(f"/api/v1/auth/apikeys/{key['id']}", headers=h).status_code == 204
    took = refused_everywhere(multi_server, minted)
    assert took < 1.0
    r = httpx.get(f"{multi_server.url}/api/v1/docs/", headers={"Authorization": f"Bearer {minted}"})
    assert r.json()["error"] == "session_ended"
    assert answers(multi_server, account["token"]) == [200] * len(ROUTES)  # login untouched


def test_logout_with_a_bearer_token_ends_that_session_only(multi_server):
    client, first = login(multi_server)
    second = client.post(
        "/api/v1/auth/login", json={"username": first["username"], "password": PASSWORD}
    ).json()
    client.cookies.clear()
    token = first["Authorization"].split()[1]
    assert (
        client.post(
            "/api/v1/auth/logout", headers={"Authorization": first["Authorization"]}
        ).status_code
        == 204
    )
    refused_everywhere(multi_server, token)
    # the same person's other login (another device) is still signed in
    assert answers(multi_server, second["access_token"]) == [200] * len(ROUTES)
    # logging out twice is harmless
    assert (
        client.post(
            "/api/v1/auth/logout", headers={"Authorization": first["Authorization"]}
        ).status_code
        == 204
    )
    client.close()


def test_logout_with_the_cookie_ends_the_session_and_forgets_the_cookies(multi_server):
    client, bearer = login(multi_server)
    cookie_token = client.cookies[SESSION_COOKIE]
    csrf = client.cookies[CSRF_COOKIE]
    assert client.get("/api/v1/auth/me").status_code == 200
    r = client.post("/api/v1/auth/logout", headers={CSRF_HEADER: csrf})
    assert r.status_code == 204
    assert SESSION_COOKIE not in client.cookies
    refused_everywhere(multi_server, cookie_token)
    client.close()


def test_logout_without_the_csrf_header_ends_nothing(multi_server):
    """A cross-site form can make the browser POST /logout with the cookie; it may make
    the cookies be forgotten in that answer, but must not end the session."""
    client, _ = login(multi_server)
    cookie_token = client.cookies[SESSION_COOKIE]
    assert (
        httpx.post(
            f"{multi_server.url}/api/v1/auth/logout", cookies={SESSION_COOKIE: cookie_token}
        ).status_code
        == 204
    )
    assert answers(multi_server, cookie_token) == [200] * len(ROUTES)
    client.close()


def unsafe_with_cookie(server, session: str, csrf_cookie: str, csrf_header: str) -> int:
    """POST /apikeys authenticated by the login cookie, as a page's script would."""
    return httpx.post(
        f"{server.url}/api/v1/auth/apikeys",
        json={"name": "k"},
        cookies={SESSION_COOKIE: session, CSRF_COOKIE: csrf_cookie},
        headers={CSRF_HEADER: csrf_header},
    ).status_code


def test_the_csrf_token_is_bound_to_its_login(multi_server):
    alice, _ = login(multi_server)
    mallory, _ = login(multi_server)
    session, csrf = alice.cookies[SESSION_COOKIE], alice.cookies[CSRF_COOKIE]
    assert unsafe_with_cookie(multi_server, session, csrf, csrf) == 201
    # a value the attacker chose (planted by a sibling subdomain) and echoes: refused
    assert unsafe_with_cookie(multi_server, session, "planted", "planted") == 403
    # the attacker's own valid CSRF token, from the attacker's own login: refused
    theirs = mallory.cookies[CSRF_COOKIE]
    assert unsafe_with_cookie(multi_server, session, theirs, theirs) == 403
    # and no header at all, as before
    assert (
        httpx.post(
            f"{multi_server.url}/api/v1/auth/apikeys",
            json={"name": "k"},
            cookies={SESSION_COOKIE: session, CSRF_COOKIE: csrf},
        ).status_code
        == 403
    )
    alice.close()
    mallory.close()

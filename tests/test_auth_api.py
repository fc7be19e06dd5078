"""The auth service over its real HTTP API, in both modes, with SQLite and Redis stores."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest
from conftest import new_username

AUTH = "/api/v1/auth"


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    return body["error"]


# --- registration ------------------------------------------------------------------------

def test_register_then_duplicate_is_409(multi_server) -> None:
    name = new_username()
    with httpx.Client(base_url=multi_server.url) as c:
        r = c.post(f"{AUTH}/register", json={"username": name, "password": "password123"})
        assert r.status_code == 201
        assert r.json() == {"username": name, "email": None, "verified": True}
        r = c.post(f"{AUTH}/register", json={"username": name, "password": "other-password"})
        assert r.status_code == 409 and error_of(r) == "username_taken"
        # the first password still works: the refused registration changed nothing
        r = c.post(f"{AUTH}/login", json={"username": name, "password": "password123"})
        assert r.status_code == 200


@pytest.mark.parametrize("body", [
    {"username": "ab", "password": "password123"},            # too short
    {"username": "Alice", "password": "password123"},         # upper case
    {"username": "a.b.c", "password": "password123"},         # dots (unsafe in subjects)
    {"username": "x" * 40, "password": "password123"},        # too long
    {"username": "valid-name", "password": "short"},          # password too short
    {"username": "valid-name", "password": 12345678},         # wrong type
    {"username": "valid-name"},                               # missing field
    {"username": "valid-name", "password": "password123", "email": "not-an-email"},
    [],                                                       # not an object
])
def test_register_rejects_bad_input_with_422(multi_server, body) -> None:
    r = httpx.post(f"{multi_server.url}{AUTH}/register", json=body)
    assert r.status_code == 422 and error_of(r) == "invalid_request"


def test_malformed_json_is_422_and_oversized_body_is_413(multi_server) -> None:
    url = f"{multi_server.url}{AUTH}/register"
    r = httpx.post(url, content=b'{"username": "abc", ', headers={"content-type":
                                                                  "application/json"})
    assert r.status_code == 422 and error_of(r) == "invalid_request"
    big = b'{"username": "abcdef", "password": "' + b"x" * (2 << 20) + b'"}'
    r = httpx.post(url, content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r) == "payload_too_large"

    def chunks():  # no Content-Length: the limit must hold on a streamed body too
        for _ in range(40):
            yield b"x" * 65536

    r = httpx.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and error_of(r) == "payload_too_large"


def test_register_refused_in_single_user_mode(single_server) -> None:
    r = httpx.post(f"{single_server.url}{AUTH}/register",
                   json={"username": new_username(), "password": "password123"})
    assert r.status_code == 403 and error_of(r) == "single_user_mode"


def test_single_user_mode_every_route(single_server) -> None:
    """Every request acts as defaultuser; keys, tokens and JWKS work as in multi-user."""
    with httpx.Client(base_url=single_server.url) as c:
        r = c.get(f"{AUTH}/me")
        assert r.status_code == 200
        assert r.json()["username"] == "defaultuser" and r.json()["multi_user"] is False
        r = c.post(f"{AUTH}/apikeys", json={"name": "laptop"})
        assert r.status_code == 201 and r.json()["key"].startswith("pl_")
        key = r.json()
        assert key["id"] in [k["id"] for k in c.get(f"{AUTH}/apikeys").json()]
        r = c.post(f"{AUTH}/token", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 200 and r.json()["access_token"].count(".") == 2
        assert c.delete(f"{AUTH}/apikeys/{key['id']}").status_code == 204
        assert c.post(f"{AUTH}/token", json={"api_key": key["key"]}).status_code == 401
        r = c.post(f"{AUTH}/login", json={"username": "defaultuser", "password": "whatever1"})
        assert r.status_code == 401 and error_of(r) == "invalid_credentials"
        assert c.post(f"{AUTH}/logout").status_code == 204
        assert c.get(f"{AUTH}/.well-known/jwks.json").json()["keys"]
        r = c.get(f"{AUTH}/verify", params={"token": "nope"})
        assert r.status_code == 404


# --- login, cookie, CSRF ---------------------------------------------------------------

def test_login_sets_httponly_cookie_and_me_works_both_ways(multi_server, account) -> None:
    c = account["client"]
    r = c.get(f"{AUTH}/me", headers=account["headers"])
    assert r.status_code == 200
    assert r.json()["username"] == account["username"] and r.json()["auth"] == "jwt"
    r = c.post(f"{AUTH}/login", json={"username": account["username"],
                                      "password": account["password"]})
    assert r.status_code == 200
    assert r.json()["token_type"] == "bearer" and r.json()["expires_in"] == 3600
    cookies = r.headers.get_list("set-cookie")
    session = next(h for h in cookies if h.startswith("plotline_session="))
    csrf = next(h for h in cookies if h.startswith("plotline_csrf="))
    assert "httponly" in session.lower() and "samesite=lax" in session.lower()
    assert "httponly" not in csrf.lower()
    r = c.get(f"{AUTH}/me")  # by cookie alone
    assert r.status_code == 200 and r.json()["auth"] == "cookie"


def test_cookie_writes_need_the_csrf_header(multi_server, account) -> None:
    c = account["client"]
    c.post(f"{AUTH}/login", json={"username": account["username"],
                                  "password": account["password"]})
    r = c.post(f"{AUTH}/apikeys", json={"name": "forged"})
    assert r.status_code == 403 and error_of(r) == "csrf_failed"
    r = c.post(f"{AUTH}/apikeys", json={"name": "forged"}, headers={"X-CSRF-Token": "guess"})
    assert r.status_code == 403 and error_of(r) == "csrf_failed"
    assert c.get(f"{AUTH}/apikeys").json() == []  # nothing was created
    r = c.post(f"{AUTH}/apikeys", json={"name": "real"},
               headers={"X-CSRF-Token": c.cookies["plotline_csrf"]})
    assert r.status_code == 201


def test_logout_clears_the_cookie(multi_server, account) -> None:
    c = account["client"]
    c.post(f"{AUTH}/login", json={"username": account["username"],
                                  "password": account["password"]})
    assert c.get(f"{AUTH}/me").status_code == 200
    assert c.post(f"{AUTH}/logout").status_code == 204
    r = c.get(f"{AUTH}/me")
    assert r.status_code == 401 and error_of(r) == "unauthorized"


def test_wrong_password_and_unknown_user_look_the_same(multi_server, account) -> None:
    c = account["client"]

    def attempt(name: str) -> tuple[float, httpx.Response]:
        start = time.perf_counter()
        r = c.post(f"{AUTH}/login", json={"username": name, "password": "wrong-password"})
        return time.perf_counter() - start, r

    wrong = [attempt(account["username"]) for _ in range(4)]
    unknown = [attempt(new_username()) for _ in range(4)]
    for _, r in wrong + unknown:
        assert r.status_code == 401
        assert r.json() == {"error": "invalid_credentials",
                            "detail": "invalid username or password"}
    # both pay for one argon2 check: the medians differ by far less than a hash costs
    t_wrong = statistics.median(t for t, _ in wrong)
    t_unknown = statistics.median(t for t, _ in unknown)
    assert 0.5 < t_wrong / t_unknown < 2.0, (t_wrong, t_unknown)


def test_login_is_throttled_after_repeated_failures(multi_server, account) -> None:
    c = account["client"]
    body = {"username": account["username"], "password": "wrong-password"}
    for _ in range(5):
        assert c.post(f"{AUTH}/login", json=body).status_code == 401
    r = c.post(f"{AUTH}/login", json={**body, "password": account["password"]})
    assert r.status_code == 429 and error_of(r) == "too_many_requests"
    assert int(r.headers["retry-after"]) > 0
    # an existing token keeps working; only password logins are held back
    assert c.get(f"{AUTH}/me", headers=account["headers"]).status_code == 200


# --- API keys and tokens ---------------------------------------------------------------

def test_api_key_lifecycle(multi_server, account) -> None:
    c, h = account["client"], account["headers"]
    r = c.post(f"{AUTH}/apikeys", json={"name": "ci"}, headers=h)
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith(f"pl_{created['id']}_")
    listed = c.get(f"{AUTH}/apikeys", headers=h).json()
    assert [k["id"] for k in listed] == [created["id"]]
    assert secret not in str(listed)  # shown once, never again
    key_headers = {"Authorization": f"Bearer {secret}"}
    me = c.get(f"{AUTH}/me", headers=key_headers)
    assert me.status_code == 200 and me.json()["auth"] == "apikey"
    # POST /token: API key -> JWT usable anywhere
    r = c.post(f"{AUTH}/token", headers=key_headers)
    assert r.status_code == 200
    jwt_headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert c.get(f"{AUTH}/me", headers=jwt_headers).json()["username"] == account["username"]
    assert c.post(f"{AUTH}/token", json={"api_key": secret}).status_code == 200
    # revoke: the key stops working at once
    assert c.delete(f"{AUTH}/apikeys/{created['id']}", headers=h).status_code == 204
    r = c.get(f"{AUTH}/me", headers=key_headers)
    assert r.status_code == 401 and error_of(r) == "invalid_api_key"
    assert c.post(f"{AUTH}/token", headers=key_headers).status_code == 401
    assert c.get(f"{AUTH}/apikeys", headers=h).json() == []


def test_api_keys_are_private_to_their_owner(multi_server, account) -> None:
    c, h = account["client"], account["headers"]
    mine = c.post(f"{AUTH}/apikeys", json={"name": "mine"}, headers=h).json()
    other = new_username()
    c.post(f"{AUTH}/register", json={"username": other, "password": "password123"})
    token = c.post(f"{AUTH}/login", json={"username": other, "password": "password123"}
                   ).json()["access_token"]
    c.cookies.clear()
    oh = {"Authorization": f"Bearer {token}"}
    assert c.get(f"{AUTH}/apikeys", headers=oh).json() == []
    r = c.delete(f"{AUTH}/apikeys/{mine['id']}", headers=oh)
    assert r.status_code == 404 and error_of(r) == "not_found"
    # still alive for its owner
    me = c.get(f"{AUTH}/me", headers={"Authorization": f"Bearer {mine['key']}"})
    assert me.json()["username"] == account["username"]


@pytest.mark.parametrize("credential", [
    "pl_0123456789abcdef_notarealsecret", "pl_garbage", "pl_", "not-a-jwt", "a.b.c",
])
def test_bogus_credentials_are_401(multi_server, credential) -> None:
    r = httpx.get(f"{multi_server.url}{AUTH}/me",
                  headers={"Authorization": f"Bearer {credential}"})
    assert r.status_code == 401 and error_of(r) in {"invalid_api_key", "invalid_token"}
    r = httpx.get(f"{multi_server.url}{AUTH}/me", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_anonymous_requests_are_401_in_multi_user_mode(multi_server) -> None:
    for method, path in [("GET", "/me"), ("GET", "/apikeys"), ("POST", "/apikeys")]:
        r = httpx.request(method, f"{multi_server.url}{AUTH}{path}")
        assert r.status_code == 401 and error_of(r) == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_jwks_serves_rs256_public_keys(multi_server) -> None:
    keys = httpx.get(f"{multi_server.url}{AUTH}/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["kid"] for k in keys)
    assert not any("d" in k or "p" in k for k in keys)  # public parts only


def test_service_endpoints(multi_server) -> None:
    internal = multi_server.internal_url  # health, readiness, metrics: the internal port
    with httpx.Client(base_url=multi_server.url) as c:
        assert httpx.get(f"{internal}/healthz").json()["status"] == "ok"
        ready = httpx.get(f"{internal}/readyz").json()
        assert ready["ready"] is True and ready["checks"]["auth.nats"] is True
        c.get(f"{AUTH}/me")
        assert 'plotline_http_requests_total{method="GET",route="/api/v1/auth/me"' in (
            httpx.get(f"{internal}/metrics").text)
        paths = c.get("/api/v1/openapi.json").json()["paths"]
        assert f"{AUTH}/login" in paths and f"{AUTH}/apikeys/{{key_id}}" in paths
        assert f"{AUTH}/login" in c.get(f"{AUTH}/openapi.json").json()["paths"]
        r = c.get("/api/v1/nowhere")
        assert r.status_code == 404 and error_of(r) == "not_found"

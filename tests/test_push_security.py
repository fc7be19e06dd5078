"""Push's security holes, closed: each test here failed before its fix.

- Socket limits: sockets without credentials are counted per client address
  (`max_anonymous_per_address`), never per user, so the default single-user mode (where
  every viewer is `defaultuser`) serves more than `max_connections_per_user` viewers.
- Sockets end with their credentials: an API key's revocation (and so of the JWTs minted
  from it), a login's sign-out, or a JWT's `exp` closes every socket opened with it
  (4401), on every push replica, within a second.
- A deeply nested frame is `invalid_json`, not a RecursionError traceback in the log.

Every server is real (`plotline serve`, and `plotline serve push` beside it on its NATS);
127.0.0.2 is a second client address (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from conftest import new_username, start_install, stop_install
from servers import start_plotline
from test_push import DOCS, frame, new_doc, send, stream_event, subscribe, ws_url

VIEWERS = 150  # more than the per-user limit (100): bench/anonymous_viewers.py opens 1,000


def install_with_replica(tmp, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """An installation (push on granian) and a `plotline serve push` replica (picows) on
    its NATS, both with `env`."""
    server = start_install(tmp, "--backend", "file", *args, env=env)
    try:
        replica = start_plotline(tmp / "push", "push", *args, "--nats-url", server.nats_url,
                                 env=env)
    except BaseException:
        stop_install(server)
        raise
    return server, replica


@pytest.fixture(scope="module")
def default_mode(tmp_path_factory) -> Any:
    """The default mode (single-user) with the default limits."""
    server, replica = install_with_replica(tmp_path_factory.mktemp("default"))
    yield server, replica
    replica.stop()
    stop_install(server)


@pytest.fixture(params=["embedded", "standalone"])
def push(request, default_mode) -> tuple[Any, Any]:
    """(the server whose /ws this is, its websocket URL), for each websocket server."""
    server = default_mode[0] if request.param == "embedded" else default_mode[1]
    return server, ws_url(server)


async def served(ws: Any) -> bool:
    """True when the socket answers a ping; False when it was closed instead."""
    try:
        await send(ws, op="ping")
        return await frame(ws) == {"op": "pong"}
    except websockets.ConnectionClosed:
        return False


# --- socket limits --------------------------------------------------------------------------

async def test_more_anonymous_viewers_than_the_per_user_limit_are_all_served(default_mode, push):
    server, url = push
    c = httpx.Client(base_url=default_mode[0].url, timeout=10)
    doc_id, cds = new_doc(c)
    assert c.post(f"{DOCS}/{doc_id}/publish").status_code == 200
    async with contextlib.AsyncExitStack() as stack:
        viewers = await asyncio.gather(*(
            stack.enter_async_context(websockets.connect(url, open_timeout=20))
            for _ in range(VIEWERS)))
        subscribed = await asyncio.gather(*(subscribe(ws, f"doc:{doc_id}") for ws in viewers),
                                          return_exceptions=True)
        assert [s for s in subscribed if not isinstance(s, dict) or s["op"] != "subscribed"
                ] == []
        assert c.patch(f"{DOCS}/{doc_id}", json={"events": [stream_event(cds, 1.0)]}
                       ).status_code == 200
        got = await asyncio.gather(*(frame(ws, timeout=10) for ws in viewers))
        want = ("event", "patched", subscribed[0]["seq"] + 1)
        assert [(f["op"], f["type"], f["seq"]) for f in got] == [want] * VIEWERS


@pytest.fixture(scope="module")
def tight(tmp_path_factory) -> Any:
    """The default mode with 2 sockets per user and 3 anonymous sockets per address."""
    env = {"PLOTLINE_PUSH_MAX_CONNECTIONS_PER_USER": "2",
           "PLOTLINE_PUSH_MAX_ANONYMOUS_PER_ADDRESS": "3"}
    server, replica = install_with_replica(tmp_path_factory.mktemp("tight"), env=env)
    yield server, replica
    replica.stop()
    stop_install(server)


@pytest.mark.parametrize("kind", ["embedded", "standalone"])
async def test_anonymous_sockets_are_limited_per_address_not_per_user(tight, kind):
    url = ws_url(tight[0] if kind == "embedded" else tight[1])
    other_address = {"local_addr": ("127.0.0.2", 0)}
    credentials = {"additional_headers": {"Authorization": "Bearer script"}}
    async with contextlib.AsyncExitStack() as stack:
        async def opened(**options: Any) -> Any:
            return await stack.enter_async_context(websockets.connect(url, **options))

        # more anonymous sockets than the per-user limit: in single-user mode they are
        # all defaultuser, and still served
        first = [await opened() for _ in range(3)]
        assert all([await served(ws) for ws in first])
        refused = await opened()
        assert not await served(refused)
        assert refused.close_code == 4429 and refused.close_reason == \
            "at most 3 open sockets per address"
        assert await served(await opened(**other_address))  # another address: its own 3
        # sockets that present credentials count against their user, not the address
        scripts = [await opened(**credentials) for _ in range(2)]
        assert all([await served(ws) for ws in scripts])
        over = await opened(**credentials)
        assert not await served(over)
        assert over.close_code == 4429 and over.close_reason == "at most 2 open sockets per user"
        await first[0].close()
        for _ in range(50):  # a closed socket gives its address's slot back
            if await served(await opened()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the closed socket's slot never came back")


# --- sockets end with their credentials -----------------------------------------------------

TOKEN_SECONDS = 4  # login JWTs of the `secured` installation live this long


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Any:
    """Multi-user, login JWTs valid for TOKEN_SECONDS (auth's own setting, so real tokens
    from /login), 3 sockets per user and 3 anonymous per address."""
    env = {"PLOTLINE_AUTH_TOKEN_TTL_SECONDS": str(TOKEN_SECONDS),
           "PLOTLINE_PUSH_MAX_CONNECTIONS_PER_USER": "3",
           "PLOTLINE_PUSH_MAX_ANONYMOUS_PER_ADDRESS": "3"}
    server, replica = install_with_replica(tmp_path_factory.mktemp("secured"), "-m", env=env)
    yield server, replica
    replica.stop()
    stop_install(server)


def login(c: httpx.Client) -> str:
    """A new account's JWT (valid TOKEN_SECONDS)."""
    name = new_username()
    assert c.post("/api/v1/auth/register", json={"username": name, "password": "pw-123456789"}
                  ).status_code == 201
    r = c.post("/api/v1/auth/login", json={"username": name, "password": "pw-123456789"})
    c.cookies.clear()
    return r.json()["access_token"]


def new_key(c: httpx.Client, token: str) -> tuple[str, str]:
    """(id, secret) of a new API key of the token's user."""
    made = c.post("/api/v1/auth/apikeys", headers={"Authorization": f"Bearer {token}"})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


def sockets_of(secured: Any, credential: str) -> list[tuple[str, dict[str, Any]]]:
    """(URL, connect options) for a socket with this credential on each push server
    (granian; the picows replica), once as ?token= and once as a header."""
    out = []
    for server in secured:
        out.append((ws_url(server, f"?token={credential}"), {}))
        out.append((ws_url(server), {"additional_headers": {
            "Authorization": f"Bearer {credential}"}}))
    return out


async def closed_by(ws: Any, deadline: float) -> float:
    """Read (and drop) frames until the server closes the socket; when that was (epoch s).
    Fails if it is still open at `deadline` (epoch s)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.time()))
    except websockets.ConnectionClosed:
        return time.time()
    except TimeoutError:
        raise AssertionError("the socket outlived its credentials") from None


async def refused_at_handshake(url: str, **options: Any) -> int:
    async with websockets.connect(url, **options) as ws:
        assert not await served(ws)
        return ws.close_code


async def test_revoking_an_api_key_closes_its_sockets_on_every_replica(secured):
    c = httpx.Client(base_url=secured[0].url, timeout=10)
    token = login(c)
    (key_id, key), (_, other_key) = new_key(c, token), new_key(c, token)
    doc, cds = new_doc(c, {"Authorization": f"Bearer {key}"})
    minted = c.post("/api/v1/auth/token", headers={"Authorization": f"Bearer {key}"})
    assert minted.status_code == 200, minted.text  # a JWT whose session is the key
    opened_with = [*sockets_of(secured, key),
                   (ws_url(secured[0], f"?token={minted.json()['access_token']}"), {})]
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(websockets.connect(url, **options))
                   for url, options in opened_with]
        bystander = await stack.enter_async_context(  # the same user, another key
            websockets.connect(ws_url(secured[1], f"?token={other_key}")))
        for ws in sockets:  # the key works: it reads and patches
            assert (await subscribe(ws, f"doc:{doc}"))["op"] == "subscribed"
            await send(ws, op="patch", doc=doc, events=[stream_event(cds, 1.0)])
            while (answer := await frame(ws))["op"] == "event":
                pass
            assert answer["op"] == "patched"
        version = c.get(f"{DOCS}/{doc}", headers={"Authorization": f"Bearer {other_key}"}
                        ).json()["version"]
        revoked = time.time()
        assert c.delete(f"/api/v1/auth/apikeys/{key_id}",
                        headers={"Authorization": f"Bearer {key}"}).status_code == 204
        for ws in sockets:
            assert await closed_by(ws, revoked + 1.0) - revoked <= 1.0
            assert (ws.close_code, ws.close_reason) == (4401, "credentials revoked")
            with pytest.raises(websockets.ConnectionClosed):  # no more patches from it
                await send(ws, op="patch", doc=doc, events=[stream_event(cds, 2.0)])
        assert await served(bystander)
    for url, options in opened_with:  # and neither opens a new socket
        assert await refused_at_handshake(url, **options) == 4401
    assert c.get(f"{DOCS}/{doc}", headers={"Authorization": f"Bearer {other_key}"}
                 ).json()["version"] == version


async def test_signing_out_closes_the_sockets_of_that_login(secured):
    c = httpx.Client(base_url=secured[0].url, timeout=10)
    token = login(c)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(websockets.connect(url, **options))
                   for url, options in sockets_of(secured, token)]
        assert all([await served(ws) for ws in sockets])
        signed_out = time.time()
        assert c.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 204
        for ws in sockets:
            assert await closed_by(ws, signed_out + 1.0) - signed_out <= 1.0
            assert (ws.close_code, ws.close_reason) == (4401, "credentials revoked")


def expiry(jwt: str) -> float:
    payload = jwt.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


async def test_a_jwt_socket_is_closed_at_exp_on_every_replica(secured):
    c = httpx.Client(base_url=secured[0].url, timeout=10)
    token = login(c)
    exp = expiry(token)
    doc, cds = new_doc(c, {"Authorization": f"Bearer {token}"})
    options = [*sockets_of(secured, token),  # and as a browser: the login cookie
               (ws_url(secured[0]), {"additional_headers": {
                   "Cookie": f"plotline_session={token}"}})]
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(websockets.connect(url, **more))
                   for url, more in options]
        assert time.time() < exp - 1, "setup took too long for TOKEN_SECONDS"
        for ws in sockets:
            assert (await subscribe(ws, f"doc:{doc}"))["op"] == "subscribed"
        for ws in sockets:
            at = await closed_by(ws, exp + 1.0)
            assert exp - 0.1 <= at <= exp + 1.0
            assert (ws.close_code, ws.close_reason) == (4401, "credentials expired")
            with pytest.raises(websockets.ConnectionClosed):
                await send(ws, op="patch", doc=doc, events=[stream_event(cds, 2.0)])
    for url, more in options:
        assert await refused_at_handshake(url, **more) == 4401


async def test_signed_in_users_are_still_held_to_the_per_user_limit(secured):
    c = httpx.Client(base_url=secured[0].url, timeout=10)
    token = login(c)
    _, key = new_key(c, token)  # API keys do not expire during the test
    for server in secured:
        async with contextlib.AsyncExitStack() as stack:
            async def opened(url: str, **options: Any) -> Any:
                return await stack.enter_async_context(websockets.connect(url, **options))

            mine = [await opened(ws_url(server, f"?token={key}")) for _ in range(3)]
            anonymous = [await opened(ws_url(server)) for _ in range(3)]
            assert all([await served(ws) for ws in mine + anonymous])
            over = await opened(ws_url(server, f"?token={key}"))
            assert not await served(over) and over.close_code == 4429
            over = await opened(ws_url(server))
            assert not await served(over) and over.close_code == 4429


# --- frames ---------------------------------------------------------------------------------

@pytest.mark.parametrize("deep", ["[" * 100_000, '{"a":' * 50_000, "[" * 5_000 + "]" * 5_000])
async def test_a_deeply_nested_frame_is_invalid_json_and_logs_nothing(push, deep):
    server, url = push
    logged = server.log.stat().st_size
    async with websockets.connect(url) as ws:
        await ws.send(deep)
        got = await frame(ws)
        assert got["op"] == "error" and got["code"] == "invalid_json", got
        assert await served(ws)
    new = server.log.read_bytes()[logged:].decode("utf-8", "replace")
    assert " ERROR " not in new and "Traceback" not in new, new[:2000]

"""The push service over real websockets (granian) and real NATS/JetStream.

Single-user tests run on both store setups (single_server); the access matrix and the
two-way patch run in multi-user mode (multi_server).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import websockets
from bokeh_docs import figure_doc, source_id
from conftest import backend_args, new_username, start_install, stop_install
from servers import start_plotline

DOCS, DATA = "/api/v1/docs", "/api/v1/data"


def ws_url(server: Any, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/ws" + query


@pytest.fixture(scope="module")
def standalone_push(single_server, tmp_path_factory) -> Any:
    """`plotline serve push` (picows) beside the installation, on its NATS."""
    server = start_plotline(tmp_path_factory.mktemp("push"), "push", "--nats-url",
                            single_server.nats_url)
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "standalone"])
def push(request, single_server) -> str:
    """The websocket URL: the embedded mode's /ws (granian), or a push replica alone."""
    if request.param == "embedded":
        return ws_url(single_server)
    return ws_url(request.getfixturevalue("standalone_push"))


async def frame(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send(ws: Any, **op: Any) -> None:
    await ws.send(json.dumps(op))


async def subscribe(ws: Any, channel: str, **more: Any) -> dict[str, Any]:
    await send(ws, op="subscribe", channel=channel, **more)
    return await frame(ws)


def without_origin(answer: dict[str, Any]) -> dict[str, Any]:
    """A `subscribed` answer without the socket's origin (a random id, checked apart)."""
    assert len(answer.pop("origin", "")) == 16, answer
    return answer


async def quiet(ws: Any, seconds: float = 0.3) -> bool:
    """True when nothing arrives for `seconds`."""
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


def stream_event(cds: str, x: float) -> dict[str, Any]:
    return {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
            "data": {"x": [x], "y": [x]}, "rollover": None}


def new_doc(c: httpx.Client, h: dict | None = None) -> tuple[str, str]:
    doc = figure_doc()
    made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc}, headers=h or {})
    assert made.status_code == 201, made.text
    return made.json()["id"], source_id(doc)


# --- single-user ----------------------------------------------------------------------------

async def test_events_reach_subscribers_once_and_in_order(single_server, push):
    c = httpx.Client(base_url=single_server.url, timeout=10)
    doc_id, cds = new_doc(c)
    src = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [0.0]}}).json()["id"]
    async with websockets.connect(push) as a, \
            websockets.connect(push) as b:
        for ws in (a, b):
            assert without_origin(await subscribe(ws, f"doc:{doc_id}")) == {
                "op": "subscribed", "channel": f"doc:{doc_id}", "seq": 1}
        assert (await subscribe(a, f"data:{src}"))["seq"] == 1
        for i in range(3):
            assert c.patch(f"{DOCS}/{doc_id}", json={"events": [stream_event(cds, i)]}
                           ).status_code == 200
        c.post(f"{DATA}/sources/{src}/append", json={"columns": {"x": [5.0]}})
        for ws in (a, b):
            got = [await frame(ws) for _ in range(3)]
            assert [(f["op"], f["seq"], f["type"]) for f in got] == [
                ("event", 2, "patched"), ("event", 3, "patched"), ("event", 4, "patched")]
            assert got[0]["data"]["events"][0]["data"]["x"] == [0.0]
        appended = await frame(a)
        assert appended["channel"] == f"data:{src}" and appended["seq"] == 2
        assert appended["data"] == {"columns": {"x": [5.0]}, "rollover": None, "rows": 2}
        assert await quiet(b)  # b never asked for the data channel
        await send(a, op="unsubscribe", channel=f"doc:{doc_id}")
        assert await frame(a) == {"op": "unsubscribed", "channel": f"doc:{doc_id}"}
        c.patch(f"{DOCS}/{doc_id}", json={"events": [stream_event(cds, 9)]})
        assert (await frame(b))["seq"] == 5
        assert await quiet(a)


async def test_since_replays_what_was_missed_then_goes_live(single_server, push):
    c = httpx.Client(base_url=single_server.url, timeout=10)
    src = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [0.0]}}).json()["id"]
    for i in range(5):  # versions 2..6 while nobody listens
        c.post(f"{DATA}/sources/{src}/append", json={"columns": {"x": [float(i)]}})
    async with websockets.connect(push) as ws:
        assert without_origin(await subscribe(ws, f"data:{src}", since=3)) == {
            "op": "subscribed", "channel": f"data:{src}", "seq": 6}
        replayed = [await frame(ws) for _ in range(3)]
        assert [f["seq"] for f in replayed] == [4, 5, 6]
        assert [f["data"]["columns"]["x"] for f in replayed] == [[2.0], [3.0], [4.0]]
        c.post(f"{DATA}/sources/{src}/append", json={"columns": {"x": [7.0]}})
        assert (await frame(ws))["seq"] == 7
        assert await quiet(ws)
        # holding everything already: nothing to replay
        assert (await subscribe(ws, f"doc:{new_doc(c)[0]}", since=1))["seq"] == 1
        assert await quiet(ws)


async def test_resync_when_history_no_longer_reaches_back(single_server, push):
    c = httpx.Client(base_url=single_server.url, timeout=10)
    src = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [0.0]}}).json()["id"]
    for i in range(3):
        c.post(f"{DATA}/sources/{src}/append", json={"columns": {"x": [float(i)]}})
    nc = await nats.connect(single_server.nats_url)
    try:  # the stream's retention dropped this source's history
        await nc.jetstream().purge_stream("PLOTLINE", subject=f"plotline.data.{src}.*")
    finally:
        await nc.close()
    async with websockets.connect(push) as ws:
        assert (await subscribe(ws, f"data:{src}", since=1))["seq"] == 4
        assert await frame(ws) == {"op": "resync", "channel": f"data:{src}", "seq": 4}
        c.post(f"{DATA}/sources/{src}/append", json={"columns": {"x": [9.0]}})
        assert (await frame(ws))["seq"] == 5  # live again after the resync


@pytest.mark.parametrize("bad, code", [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_op"),
    ('{"op": "explode"}', "unknown_op"),
    ('{"op": "subscribe", "channel": "doc:../x"}', "invalid_channel"),
    ('{"op": "subscribe", "channel": "plot:abc"}', "invalid_channel"),
    ('{"op": "subscribe", "channel": "doc:abc", "since": -1}', "invalid_since"),
    ('{"op": "subscribe", "channel": "doc:nosuchdoc"}', "not_found"),
    ('{"op": "unsubscribe", "channel": "doc:abc"}', "not_subscribed"),
    ('{"op": "patch", "doc": 5}', "invalid_patch"),
])
async def test_bad_ops_get_an_error_frame_and_the_connection_lives(push, bad, code):
    async with websockets.connect(push) as ws:
        await ws.send(bad)
        got = await frame(ws)
        assert got["op"] == "error" and got["code"] == code and got["detail"]
        await send(ws, op="ping")
        assert await frame(ws) == {"op": "pong"}


async def test_oversize_frames_close_and_floods_are_slowed_not_served_first(single_server, push):
    async with websockets.connect(push) as bystander:
        async with websockets.connect(push, max_size=None) as big:
            await big.send(json.dumps({"op": "ping", "pad": "x" * (2 << 20)}))
            with pytest.raises(websockets.ConnectionClosed):
                await frame(big)
            assert big.close_code == 1009 and big.close_reason  # says the limit
        async with websockets.connect(push, max_queue=None) as flood:
            start = asyncio.get_running_loop().time()
            for _ in range(700):  # bursts of 400 are allowed, then 200 ops/s
                await send(flood, op="ping")
            await send(bystander, op="ping")  # served at once while the flood is paced
            assert await frame(bystander, timeout=0.5) == {"op": "pong"}
            got = [await frame(flood) for _ in range(701)]
            while sum(f["op"] == "error" for f in got) + 700 > len(got):  # all 700 pongs
                got.append(await frame(flood))
            took = asyncio.get_running_loop().time() - start
            limited = [f for f in got if f["op"] == "error"]
            # told when it is slowed: once per slowing (on a loaded machine the flood's
            # frames can arrive in more than one burst, so more than one slowing)
            assert limited and all(f["code"] == "rate_limited" for f in limited)
            assert sum(f == {"op": "pong"} for f in got) == 700  # slowed, nothing dropped
            assert took >= 1.0  # the 300 over the burst took at least 300 / 200 ops/s


@pytest.mark.parametrize("server_kind", ["embedded", "standalone"])
async def test_a_slow_client_is_closed_not_buffered(tmp_path, request, server_kind):
    install = start_install(tmp_path, *backend_args("file", request))
    if server_kind == "embedded":  # again, with a tiny queue, on the same NATS and stores
        install.stop()
        data = pusher = start_plotline(tmp_path, "--nats-url", install.nats_url, "--backend",
                                       "file", env={"PLOTLINE_PUSH_QUEUE_FRAMES": "4"})
    else:  # a push replica alone, with a small write buffer
        data = install
        pusher = start_plotline(tmp_path / "push", "push", "--nats-url", install.nats_url,
                                env={"PLOTLINE_PUSH_MAX_BUFFERED_BYTES": "65536"})
    try:
        c = httpx.Client(base_url=data.url, timeout=30)
        src = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"s": ["a"]}}
                     ).json()["id"]
        async with websockets.connect(ws_url(pusher), max_queue=1) as slow:
            assert (await subscribe(slow, f"data:{src}"))["op"] == "subscribed"
            # ~60 KB events, and the client reads none of them: the socket buffers fill,
            # then the server's queue (or write buffer), then the server closes it
            rows = ["y" * 60_000]
            for _ in range(300):
                c.post(f"{DATA}/sources/{src}/append", json={"columns": {"s": rows}})
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await frame(slow, timeout=10)
            assert slow.close_code == 1008 and "too slow" in slow.close_reason
        metrics = httpx.get(f"{pusher.internal_url}/metrics").text
        assert "plotline_push_slow_clients_total 1.0" in metrics
    finally:
        for server in {id(s): s for s in (pusher, data)}.values():
            server.stop()
        stop_install(install)


# --- multi-user: who may listen, who may patch ----------------------------------------------

@pytest.fixture(scope="module")
def cast(multi_server) -> dict[str, Any]:
    """An owner's private document (one reader, one writer), a published one, a shared one,
    and the owner's source; with tokens for each role."""
    people = {}
    for role in ("owner", "reader", "writer", "other"):
        name = new_username()
        with httpx.Client(base_url=multi_server.url, timeout=10) as c:
            c.post("/api/v1/auth/register", json={"username": name, "password": "pw-12345678"})
            token = c.post("/api/v1/auth/login", json={
                "username": name, "password": "pw-12345678"}).json()["access_token"]
        people[role] = {"name": name, "token": token,
                        "h": {"Authorization": f"Bearer {token}"}}
    c = httpx.Client(base_url=multi_server.url, timeout=10)
    h = people["owner"]["h"]
    private, cds = new_doc(c, h)
    assert c.put(f"{DOCS}/{private}/acl", headers=h, json={
        "readers": [people["reader"]["name"]], "writers": [people["writer"]["name"]]}
    ).status_code == 200
    published, _ = new_doc(c, h)
    assert c.post(f"{DOCS}/{published}/publish", headers=h).status_code == 200
    shared, _ = new_doc(c, h)
    key = c.post(f"{DOCS}/{shared}/share", headers=h).json()["key"]
    src = c.post(f"{DATA}/sources", headers=h, json={"name": "s", "columns": {"x": [1.0]}}
                 ).json()["id"]
    return {"people": people, "client": c, "private": private, "cds": cds,
            "published": published, "shared": shared, "key": key, "source": src}


ROLES = ("owner", "reader", "writer", "other", "anonymous")
MAY_READ = {
    "private": {"owner", "reader", "writer"},
    "published": set(ROLES),
    "shared": {"owner"},
    "source": {"owner"},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("what", sorted(MAY_READ))
async def test_only_readers_may_subscribe(multi_server, cast, role, what):
    channel = f"data:{cast['source']}" if what == "source" else f"doc:{cast[what]}"
    query = "" if role == "anonymous" else f"?token={cast['people'][role]['token']}"
    async with websockets.connect(ws_url(multi_server, query)) as ws:
        got = await subscribe(ws, channel)
        if role in MAY_READ[what]:
            assert got["op"] == "subscribed"
        else:
            assert got == {"op": "error", "code": "not_found", "channel": channel,
                           "detail": "no such channel, or you may not read it"}
            # and nothing of that channel ever arrives
            h = cast["people"]["owner"]["h"]
            if what == "source":
                cast["client"].post(f"{DATA}/sources/{cast['source']}/append", headers=h,
                                    json={"columns": {"x": [2.0]}})
            else:
                cast["client"].patch(f"{DOCS}/{cast[what]}", headers=h, json={"events": [
                    {"kind": "TitleChanged", "title": new_username()}]})
            assert await quiet(ws, 0.5)


async def test_a_share_key_opens_its_document_only(multi_server, cast):
    async with websockets.connect(ws_url(multi_server)) as ws:
        assert (await subscribe(ws, f"doc:{cast['shared']}", share=cast["key"]))["op"] == \
            "subscribed"
        assert (await subscribe(ws, f"doc:{cast['private']}", share=cast["key"]))["op"] == \
            "error"


async def test_a_sockets_changes_come_back_named_by_its_origin(multi_server, cast):
    """Each socket has an origin (in every `subscribed`); the `patched` event of a change it
    sent names it, so its client can skip its own change. A client cannot choose it."""
    people, doc = cast["people"], cast["private"]
    async with websockets.connect(ws_url(multi_server, f"?token={people['reader']['token']}")
                                  ) as reader, \
            websockets.connect(ws_url(multi_server, f"?token={people['writer']['token']}")
                               ) as writer:
        mine = (await subscribe(writer, f"doc:{doc}"))["origin"]
        theirs = (await subscribe(reader, f"doc:{doc}"))["origin"]
        assert len(mine) == 16 and mine != theirs
        await send(writer, op="patch", doc=doc, origin=theirs,  # (a forged one: ignored)
                   events=[stream_event(cast["cds"], 7.0)])
        seen = await frame(reader)
        assert seen["type"] == "patched" and seen["data"]["origin"] == mine
        r = cast["client"].patch(f"{DOCS}/{doc}", headers=people["owner"]["h"],
                                 json={"events": [stream_event(cast["cds"], 8.0)]})
        assert r.status_code == 200
        seen = await frame(reader)
        assert seen["type"] == "patched" and "origin" not in seen["data"]  # not a socket's


async def test_writers_patch_through_the_socket_and_readers_may_not(multi_server, cast):
    people, doc = cast["people"], cast["private"]
    async with websockets.connect(ws_url(multi_server, f"?token={people['reader']['token']}")
                                  ) as reader, \
            websockets.connect(ws_url(multi_server), additional_headers={
                "Authorization": f"Bearer {people['writer']['token']}"}) as writer:
        start = (await subscribe(reader, f"doc:{doc}"))["seq"]
        await send(writer, op="patch", doc=doc, events=[stream_event(cast["cds"], 42.0)])
        assert await frame(writer) == {"op": "patched", "doc": doc, "version": start + 1}
        seen = await frame(reader)
        assert seen["seq"] == start + 1 and seen["type"] == "patched"
        assert seen["data"]["events"][0]["data"]["x"] == [42.0]
        await send(reader, op="patch", doc=doc, events=[stream_event(cast["cds"], 1.0)])
        refused = await frame(reader)
        assert refused["op"] == "error" and refused["code"] == "forbidden"
    async with websockets.connect(ws_url(multi_server)) as anonymous:
        await send(anonymous, op="patch", doc=cast["published"], events=[])
        assert (await frame(anonymous))["code"] == "unauthorized"
    r = cast["client"].get(f"{DOCS}/{doc}", headers=people["owner"]["h"])
    assert r.json()["version"] == start + 1  # the refused patches changed nothing


async def test_handshake_checks_credentials_and_origin(multi_server, cast):
    for token in ("not-a-token", "pl_0000000000000000_bad", cast["people"]["other"]["token"]
                  + "x"):
        async with websockets.connect(ws_url(multi_server, f"?token={token}")) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await frame(ws)
        assert closed.value.rcvd.code == 4401 and closed.value.rcvd.reason
    host = multi_server.url.removeprefix("http://")
    owner = cast["people"]["owner"]
    async with websockets.connect(ws_url(multi_server), origin=f"http://{host}",
                                  additional_headers={  # the login cookie, as a browser
                                      "Cookie": f"plotline_session={owner['token']}"}) as ws:
        assert (await subscribe(ws, f"doc:{cast['private']}"))["op"] == "subscribed"
    # another site's page (an embedded plot) gets a socket, but never with its visitor's
    # cookie: it is anonymous there, and sees only what anyone may
    async with websockets.connect(ws_url(multi_server), origin="https://evil.example",
                                  additional_headers={
                                      "Cookie": f"plotline_session={owner['token']}"}) as ws:
        assert (await subscribe(ws, f"doc:{cast['private']}"))["code"] == "not_found"
        assert (await subscribe(ws, f"doc:{cast['published']}"))["op"] == "subscribed"


async def test_single_user_mode_refuses_sockets_from_other_sites(single_server):
    """There every caller is the owner: a page on another site may not open a socket."""
    async with websockets.connect(ws_url(single_server), origin="https://evil.example") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await frame(ws)
    assert closed.value.rcvd.code == 4403
    async with websockets.connect(ws_url(single_server)) as ws:  # a script: no Origin
        await send(ws, op="ping")
        assert (await frame(ws))["op"] == "pong"


@pytest.fixture(scope="module", params=["embedded", "standalone"])
def limited(request, tmp_path_factory) -> Any:
    """A multi-user installation whose push allows 2 sockets per user: its own /ws, or a
    `plotline serve push` replica beside it. Yields (installation, websocket URL)."""
    env = {"PLOTLINE_PUSH_MAX_CONNECTIONS_PER_USER": "2"}
    tmp = tmp_path_factory.mktemp(f"limited-{request.param}")
    server = start_install(tmp, "-m", env=env)
    replica = None
    try:
        if request.param == "standalone":
            replica = start_plotline(tmp / "push", "push", "-m", "--nats-url",
                                     server.nats_url, env=env)
        yield server, ws_url(replica or server)
    finally:
        if replica:
            replica.stop()
        stop_install(server)


async def test_sockets_per_user_are_limited(limited):
    server, url = limited
    tokens = []
    with httpx.Client(base_url=server.url, timeout=10) as c:
        for _ in range(2):
            name = new_username()
            c.post("/api/v1/auth/register", json={"username": name, "password": "pw-123456789"})
            tokens.append(c.post("/api/v1/auth/login", json={
                "username": name, "password": "pw-123456789"}).json()["access_token"])

    async def pong(ws: Any) -> bool:
        await send(ws, op="ping")
        return await frame(ws) == {"op": "pong"}

    alice, bob = (f"{url}?token={t}" for t in tokens)
    async with websockets.connect(alice) as a1, websockets.connect(alice) as a2:
        assert await pong(a1) and await pong(a2)
        async with websockets.connect(alice) as a3:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await frame(a3)
        assert closed.value.rcvd.code == 4429 and "2" in closed.value.rcvd.reason
        # the limit is per user, and anonymous viewers are not counted
        async with websockets.connect(bob) as b1, websockets.connect(url) as n1, \
                websockets.connect(url) as n2, websockets.connect(url) as n3:
            assert all([await pong(w) for w in (b1, n1, n2, n3)])
        await a1.close()
        for _ in range(50):  # a closed socket gives its slot back
            async with websockets.connect(alice) as again:
                try:
                    if await pong(again):
                        break
                except websockets.ConnectionClosed:
                    await asyncio.sleep(0.05)
        else:
            raise AssertionError("the closed socket's slot never came back")
        assert await pong(a2)


async def test_a_browser_offers_its_token_as_a_subprotocol_not_in_the_url(limited):
    """`new WebSocket(url, ["plotline", "plotline.token." + token])`: both push servers
    accept the token there and answer the subprotocol `plotline` (a browser fails a
    handshake that answers none of those it offered); a bad one is 4401 as ever. So no
    credential sits in a URL, which proxies write into their error logs."""
    from services.common.names import WS_PROTOCOL, WS_TOKEN_PREFIX

    server, url = limited
    name = new_username()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.post("/api/v1/auth/register", json={"username": name, "password": "pw-123456789"})
        token = c.post("/api/v1/auth/login", json={
            "username": name, "password": "pw-123456789"}).json()["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        source = c.post(f"{DATA}/sources", headers=h, json={
            "name": "s", "columns": {"x": [1.0]}}).json()["id"]
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL, WS_TOKEN_PREFIX + token]
                                  ) as ws:
        assert ws.subprotocol == WS_PROTOCOL
        answer = await subscribe(ws, f"data:{source}")  # private: only its owner may
        assert answer["op"] == "subscribed", answer
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL]) as ws:  # anonymous
        assert ws.subprotocol == WS_PROTOCOL
        assert (await subscribe(ws, f"data:{source}"))["code"] == "not_found"
    async with websockets.connect(url, subprotocols=[WS_PROTOCOL, WS_TOKEN_PREFIX + "x" * 40]
                                  ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await frame(ws)
    assert closed.value.rcvd.code == 4401
    viewer = (Path(__file__).resolve().parent.parent / "services" / "docs" / "templates" /
              "viewer.js").read_text()
    assert f'["{WS_PROTOCOL}", "{WS_TOKEN_PREFIX}" + o.token]' in viewer  # one set of names
    assert "?token=" not in viewer


async def test_losing_access_ends_the_subscription(multi_server, cast):
    people, c = cast["people"], cast["client"]
    h = people["owner"]["h"]
    doc, cds = new_doc(c, h)
    assert c.put(f"{DOCS}/{doc}/acl", headers=h, json={
        "readers": [people["reader"]["name"]], "writers": []}).status_code == 200
    assert c.post(f"{DOCS}/{doc}/publish", headers=h).status_code == 200
    async with websockets.connect(ws_url(multi_server, f"?token={people['reader']['token']}")
                                  ) as reader, websockets.connect(ws_url(multi_server)) as anon:
        assert (await subscribe(reader, f"doc:{doc}"))["op"] == "subscribed"
        assert (await subscribe(anon, f"doc:{doc}"))["op"] == "subscribed"
        assert c.delete(f"{DOCS}/{doc}/publish", headers=h).status_code == 200
        # the unpublished event itself may or may not come first (it races the recheck),
        # then the end
        got = [await frame(anon)]
        if got[0].get("type") == "unpublished":
            got.append(await frame(anon))
        assert got[-1] == {"op": "error", "code": "revoked", "channel": f"doc:{doc}",
                           "detail": "you may no longer read this channel"}
        assert (await frame(reader))["type"] == "unpublished"  # still a reader
        assert c.put(f"{DOCS}/{doc}/acl", headers=h, json={"readers": [], "writers": []}
                     ).status_code == 200
        last = await frame(reader)
        if last.get("type") == "acl_changed":
            last = await frame(reader)
        assert last["code"] == "revoked"
        c.patch(f"{DOCS}/{doc}", headers=h, json={"events": [stream_event(cds, 7.0)]})
        assert await quiet(reader, 0.5) and await quiet(anon, 0.5)


def asks(server: Any) -> dict[str, float]:
    out = {}
    for line in httpx.get(f"{server.internal_url}/metrics").text.splitlines():
        if line.startswith("plotline_push_access_total{"):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


async def test_an_access_answer_serves_more_subscribers_and_stays_exact(single_server):
    c = httpx.Client(base_url=single_server.url, timeout=10)
    doc_id, cds = new_doc(c)
    before = asks(single_server)
    async with websockets.connect(ws_url(single_server)) as first, \
            websockets.connect(ws_url(single_server)) as second:
        assert (await subscribe(first, f"doc:{doc_id}"))["seq"] == 1
        c.patch(f"{DOCS}/{doc_id}", json={"events": [stream_event(cds, 1.0)]})
        assert (await frame(first))["seq"] == 2
        # the cached answer said version 1; this replica has heard version 2 since
        assert (await subscribe(second, f"doc:{doc_id}"))["seq"] == 2
        c.patch(f"{DOCS}/{doc_id}", json={"events": [stream_event(cds, 2.0)]})
        assert (await frame(first))["seq"] == (await frame(second))["seq"] == 3
    after = asks(single_server)
    assert after.get("asked", 0) - before.get("asked", 0) == 1
    assert after.get("cached", 0) - before.get("cached", 0) == 1


async def test_a_replica_stopping_says_going_away(single_server, tmp_path):
    pusher = start_plotline(tmp_path, "push", "--nats-url", single_server.nats_url)
    try:
        async with websockets.connect(ws_url(pusher)) as ws:
            await send(ws, op="ping")
            assert await frame(ws) == {"op": "pong"}
            pusher.process.terminate()
            with pytest.raises(websockets.ConnectionClosed):
                await frame(ws, timeout=10)
            assert ws.close_code == 1001 and ws.close_reason == "server shutting down"
        assert pusher.process.wait(20) == 0
    finally:
        pusher.stop()


async def test_channels_per_connection_are_bounded(single_server, tmp_path):
    pusher = start_plotline(tmp_path, "push", "--nats-url", single_server.nats_url,
                            env={"PLOTLINE_PUSH_MAX_CHANNELS": "2"})
    c = httpx.Client(base_url=single_server.url, timeout=10)
    ids = [c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [0.0]}}
                  ).json()["id"] for _ in range(3)]
    try:
        async with websockets.connect(ws_url(pusher)) as ws:
            for source in ids[:2]:
                assert (await subscribe(ws, f"data:{source}"))["op"] == "subscribed"
            refused = await subscribe(ws, f"data:{ids[2]}")
            assert refused["op"] == "error" and refused["code"] == "too_many_channels"
            await send(ws, op="unsubscribe", channel=f"data:{ids[0]}")
            assert (await frame(ws))["op"] == "unsubscribed"
            assert (await subscribe(ws, f"data:{ids[2]}"))["op"] == "subscribed"
    finally:
        pusher.stop()

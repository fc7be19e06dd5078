"""Binding someone else's data source (issue 10, hole 1).

A `plotline:source=<id>` tag may name only a source its writer may read at the moment of
the write, and only the source's owner can share it with a document's readers: a document
that binds someone else's source (a clone of a published plot, say) never grants it, keeps
it alive or deletes it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from bokeh_docs import figure_doc, source_id
from conftest import new_username
from test_data_grants import eventually

DATA, DOCS = "/api/v1/data", "/api/v1/docs"


def sign_up(c: httpx.Client) -> dict[str, str]:
    name = new_username()
    c.post("/api/v1/auth/register", json={"username": name, "password": "password123"})
    token = c.post("/api/v1/auth/login", json={"username": name, "password": "password123"}
                   ).json()["access_token"]
    c.cookies.clear()
    return {"Authorization": f"Bearer {token}"}


def new_source(c: httpx.Client, headers: dict[str, str]) -> str:
    r = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [1.0, 2.0]}},
               headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def published_plot(c: httpx.Client, owner: dict[str, str], source: str) -> dict:
    """A published document of `owner` binding `source`."""
    r = c.post(f"{DOCS}/", json={"title": new_username(),
                                 "doc": figure_doc(source_tag=source)}, headers=owner)
    assert r.status_code == 201, r.text
    assert c.post(f"{DOCS}/{r.json()['id']}/publish", headers=owner).status_code == 200
    return r.json()


@pytest.fixture
def alice_and_bob(account):
    c = account["client"]
    return c, account["headers"], sign_up(c)


def test_a_tag_may_not_name_a_source_its_writer_cannot_read(multi_server, alice_and_bob):
    c, alice, bob = alice_and_bob
    private = new_source(c, alice)
    before = c.get(f"{DOCS}/", headers=bob).json()
    for source in (private, "0123456789abcdef"):  # someone else's, and a missing one
        r = c.post(f"{DOCS}/", json={"title": new_username(),
                                     "doc": figure_doc(source_tag=source)}, headers=bob)
        assert r.status_code == 422, r.text
        # the same answer for a private and a missing source: ids leak nothing
        assert r.json()["error"] == "unknown_source"
    assert c.get(f"{DOCS}/", headers=bob).json() == before  # nothing stored
    # every write path checks: PUT, PATCH (a tags change), the object layer
    mine = c.post(f"{DOCS}/", json={"title": new_username(), "doc": figure_doc()},
                  headers=bob).json()
    url = f"{DOCS}/{mine['id']}"
    assert c.put(url, json={"doc": figure_doc(source_tag=private)}, headers=bob
                 ).status_code == 422
    cds = source_id(c.get(url, headers=bob).json()["doc"])
    retag = {"kind": "ModelChanged", "model": {"id": cds}, "attr": "tags",
             "new": [f"plotline:source={private}"]}
    assert c.patch(url, json={"events": [retag]}, headers=bob).status_code == 422
    r = c.patch(f"{url}/objects/{cds}", json={"tags": [f"plotline:source={private}"]},
                headers=bob)
    assert r.status_code == 422, r.text
    assert c.get(url, headers=bob).json()["version"] == 1
    assert c.get(f"{DATA}/sources/{private}/data", headers=bob).status_code == 404


def test_a_clone_does_not_keep_someone_elses_source(multi_server, alice_and_bob):
    c, alice, bob = alice_and_bob
    source = new_source(c, alice)
    rows = f"{DATA}/sources/{source}/data"
    plot = published_plot(c, alice, source)
    eventually(lambda: c.get(rows, headers=bob).status_code == 200)
    # Bob may read it now, so he may bind it: a clone of the published plot, published
    clone = c.post(f"{DOCS}/{plot['id']}/clone", json={}, headers=bob)
    assert clone.status_code == 201, clone.text
    clone = clone.json()
    assert c.post(f"{DOCS}/{clone['id']}/publish", headers=bob).status_code == 200
    # Alice unpublishes: neither Bob nor the clone's public readers read her rows any more
    c.delete(f"{DOCS}/{plot['id']}/publish", headers=alice)
    eventually(lambda: c.get(rows, headers=bob).status_code == 404)
    assert c.get(rows, params={"doc": clone["id"]}).status_code == 401
    assert c.get(rows, params={"doc": clone["id"]}, headers=bob).status_code == 404
    # and his clone's deletion with data=force leaves her source alone
    assert c.delete(f"{DOCS}/{clone['id']}", params={"data": "force"}, headers=bob
                    ).status_code == 204
    time.sleep(0.5)  # data acts on the deletion event within milliseconds
    assert c.get(rows, headers=alice).status_code == 200


def test_a_foreign_binding_neither_keeps_a_source_alive_nor_deletes_it(multi_server,
                                                                       alice_and_bob):
    c, alice, bob = alice_and_bob
    source = new_source(c, alice)
    plot = published_plot(c, alice, source)
    eventually(lambda: c.get(f"{DATA}/sources/{source}", headers=bob).status_code == 200)
    bobs = c.post(f"{DOCS}/", json={"title": new_username(),
                                    "doc": figure_doc(source_tag=source)}, headers=bob)
    assert bobs.status_code == 201, bobs.text
    # her orphans deletion drops it although Bob's document still names it
    assert c.delete(f"{DOCS}/{plot['id']}", params={"data": "orphans"}, headers=alice
                    ).status_code == 204
    eventually(lambda: c.get(f"{DATA}/sources/{source}", headers=alice).status_code == 404)


def test_a_forged_deletion_event_drops_only_the_deleters_sources(multi_server,
                                                                 alice_and_bob):
    """data checks the owner itself: a `deleted` event naming Alice's source, acted by
    Bob, drops nothing (docs never sends one, but data must not rely on that)."""
    from services.common.bus import Bus
    from services.common.events import DocsVerb

    c, alice, bob = alice_and_bob
    source = new_source(c, alice)

    async def forge() -> None:
        bus = await Bus.connect(multi_server.nats_url, "docs")
        try:
            bob_name = c.get("/api/v1/auth/me", headers=bob).json()["username"]
            await bus.publish("feedfacefeedface", DocsVerb.DELETED,
                              {"data": "force", "drop_sources": [source], "sources": [source],
                               "owner": bob_name}, actor=bob_name, seq=2)
        finally:
            await bus.close()

    asyncio.run(forge())
    time.sleep(0.5)  # data acts on a deletion event within milliseconds
    assert c.get(f"{DATA}/sources/{source}", headers=alice).status_code == 200


def test_a_foreign_binding_grants_nothing_on_the_socket(multi_server, alice_and_bob):
    c, alice, bob = alice_and_bob
    source = new_source(c, alice)
    plot = published_plot(c, alice, source)
    eventually(lambda: c.get(f"{DATA}/sources/{source}", headers=bob).status_code == 200)
    clone = c.post(f"{DOCS}/{plot['id']}/clone", json={}, headers=bob).json()
    c.delete(f"{DOCS}/{plot['id']}/publish", headers=alice)
    eventually(lambda: c.get(f"{DATA}/sources/{source}", headers=bob).status_code == 404)
    token = bob["Authorization"].split()[1]

    async def listen() -> dict:
        ws_url = multi_server.url.replace("http", "ws") + f"/ws?token={token}"
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": f"data:{source}",
                                      "doc": clone["id"]}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    answer = asyncio.run(listen())
    assert answer["op"] == "error" and answer["code"] == "not_found", answer


def test_unbinding_a_source_ends_the_sockets_that_read_it_through_the_document(
        multi_server, alice_and_bob):
    """Readers of a published plot read its bound source on the socket; when a PUT stops
    binding it, their data channel ends (push asks again), as it does on unpublishing."""
    c, alice, _ = alice_and_bob
    source = new_source(c, alice)
    plot = published_plot(c, alice, source)
    ws_url = multi_server.url.replace("http", "ws") + "/ws"

    async def watch() -> list[dict]:
        async with websockets.connect(ws_url) as viewer:  # anonymous: it is published
            await viewer.send(json.dumps({"op": "subscribe", "channel": f"data:{source}"}))
            assert json.loads(await asyncio.wait_for(viewer.recv(), 5))["op"] == "subscribed"
            r = await asyncio.to_thread(c.put, f"{DOCS}/{plot['id']}", headers=alice,
                                        json={"doc": figure_doc()})  # the tag is gone
            assert r.status_code == 200, r.text
            frames = [json.loads(await asyncio.wait_for(viewer.recv(), 5))]
            # after the end, the owner's appends no longer reach this viewer
            await asyncio.to_thread(c.post, f"{DATA}/sources/{source}/append", headers=alice,
                                    json={"columns": {"x": [3.0]}})
            try:
                frames.append(json.loads(await asyncio.wait_for(viewer.recv(), 1)))
            except TimeoutError:
                pass
            return frames

    frames = asyncio.run(watch())
    assert frames == [{"op": "error", "code": "revoked", "channel": f"data:{source}",
                       "detail": "you may no longer read this channel"}], frames
    assert c.get(f"{DATA}/sources/{source}").status_code == 401  # and over REST, anonymous

"""Docs on the bus: one event per successful write, seq = version, and the access answer."""

from __future__ import annotations

import asyncio

import httpx
from bokeh_docs import figure_doc, source_id
from conftest import new_username

from services.common.bus import Bus
from services.common.names import DOCS_ACCESS, DOCS_PATCH

DOCS = "/api/v1/docs"


async def test_every_write_publishes_once_in_version_order(multi_server, account):
    bus = await Bus.connect(multi_server.nats_url, "test")
    seen = []

    async def collect(subject, event):
        seen.append((subject.split(".")[2], event))

    await bus.subscribe("plotline.docs.*.*", collect)
    await bus.nc.flush()
    h = account["headers"]
    bound = account["client"].post("/api/v1/data/sources", headers=h, json={
        "name": "bound", "columns": {"x": [1.0]}}).json()["id"]
    doc_json = figure_doc(source_tag=bound)
    cds = source_id(doc_json)
    stream = {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
              "data": {"x": [50.0], "y": [5.0]}, "rollover": 3}
    async with httpx.AsyncClient(base_url=multi_server.url, headers=h) as c:
        made = (await c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc_json})
                ).json()
        url = f"{DOCS}/{made['id']}"
        assert (await c.patch(url, json={"events": [stream]})).status_code == 200
        # refused writes publish nothing
        assert (await c.patch(url, json={"events": [stream]}, headers={"If-Match": '"1"'})
                ).status_code == 412
        assert (await c.patch(url, json={"events": [{"kind": "Nope"}]})).status_code == 422
        assert (await c.post(f"{url}/publish")).status_code == 200
        share = (await c.post(f"{url}/share")).json()
        assert (await c.delete(f"{url}/share", params={"share_id": share["share_id"]})
                ).status_code == 200
        assert (await c.put(f"{url}/acl", json={"readers": ["someone"]})).status_code == 200
        assert (await c.delete(f"{url}/publish")).status_code == 200
        assert (await c.delete(url, params={"data": "orphans"})).status_code == 204
    for _ in range(100):
        if len([s for s in seen if s[0] == made["id"]]) >= 8:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await bus.close()
    mine = [e for doc_id, e in seen if doc_id == made["id"]]
    assert [e.type for e in mine] == ["created", "patched", "published", "shared", "unshared",
                                      "acl_changed", "unpublished", "deleted"]
    assert [e.seq for e in mine] == list(range(1, 9))  # exactly +1 per event
    assert mine[1].data == {"events": [stream]}
    assert mine[2].data["sources"] == [bound]  # data grants readers access to these
    assert mine[-1].data["drop_sources"] == [bound] and mine[-1].data["data"] == "orphans"
    assert all(e.actor == account["username"] for e in mine)


async def test_orphans_keep_sources_other_documents_use(multi_server, account):
    bus = await Bus.connect(multi_server.nats_url, "test")
    deleted = []

    async def collect(subject, event):
        deleted.append(event)

    await bus.subscribe("plotline.docs.*.deleted", collect)
    await bus.nc.flush()
    shared_source = account["client"].post("/api/v1/data/sources", json={
        "name": "shared", "columns": {"x": [1.0]}}, headers=account["headers"]).json()["id"]
    async with httpx.AsyncClient(base_url=multi_server.url, headers=account["headers"]) as c:
        a = (await c.post(f"{DOCS}/", json={"title": new_username(),
                                            "doc": figure_doc(source_tag=shared_source)})).json()
        await c.post(f"{DOCS}/", json={"title": new_username(),
                                       "doc": figure_doc(source_tag=shared_source)})
        assert (await c.delete(f"{DOCS}/{a['id']}", params={"data": "orphans"})
                ).status_code == 204
    for _ in range(100):
        if deleted:
            break
        await asyncio.sleep(0.02)
    await bus.close()
    assert deleted[0].data["drop_sources"] == [] and deleted[0].data["sources"] == [
        shared_source]


async def test_access_and_patch_over_nats(multi_server, account):
    h = account["headers"]
    doc_json = figure_doc()
    async with httpx.AsyncClient(base_url=multi_server.url, headers=h) as c:
        made = (await c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc_json})
                ).json()
    bus = await Bus.connect(multi_server.nats_url, "test")
    try:
        me = await bus.request(DOCS_ACCESS, {"doc": made["id"], "user": account["username"]})
        assert me["ok"] and me["read"] and me["write"] and me["version"] == 1
        other = await bus.request(DOCS_ACCESS, {"doc": made["id"], "user": "stranger"})
        assert other["ok"] and not other["read"] and not other["write"]
        anonymous = await bus.request(DOCS_ACCESS, {"doc": made["id"]})
        assert not anonymous["read"]
        assert (await bus.request(DOCS_ACCESS, {"doc": "0" * 16}))["error"] == "not_found"
        title = {"kind": "TitleChanged", "title": "via push " + made["title"]}
        refused = await bus.request(DOCS_PATCH, {"doc": made["id"], "user": "stranger",
                                                 "events": [title]})
        assert refused == {"ok": False, "error": "not_found", "detail": "no such document"}
        done = await bus.request(DOCS_PATCH, {"doc": made["id"],
                                              "user": account["username"], "events": [title]})
        assert done == {"ok": True, "version": 2}
    finally:
        await bus.close()

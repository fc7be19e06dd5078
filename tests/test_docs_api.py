"""The docs service over its real HTTP API: documents, versions, patches, bad input."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from bokeh_docs import figure_doc, source_id
from conftest import new_username

DOCS = "/api/v1/docs"


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    return body["error"]


def title() -> str:
    return "t-" + new_username()


def create(c: httpx.Client, h: dict, **body) -> dict:
    r = c.post(f"{DOCS}/", json={"title": body.pop("title", None) or title(), **body},
               headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_read_list(multi_server, account):
    c, h = account["client"], account["headers"]
    doc_json = figure_doc()
    made = create(c, h, doc=doc_json)
    assert made["version"] == 1 and made["owner"] == account["username"]
    assert made["published"] is False
    r = c.get(f"{DOCS}/{made['id']}", headers=h)
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    body = r.json()
    assert {k: body[k] for k in made} == made
    assert [root["id"] for root in body["doc"]["roots"]] == [
        root["id"] for root in doc_json["roots"]]
    assert c.get(f"{DOCS}/{made['id']}", headers={**h, "If-None-Match": '"1"'}
                 ).status_code == 304
    listed = c.get(f"{DOCS}/", headers=h).json()
    assert made["id"] in [d["id"] for d in listed]
    empty = create(c, h)  # a document may start empty
    assert c.get(f"{DOCS}/{empty['id']}", headers=h).json()["doc"]["roots"] == []


def test_titles_are_unique_per_owner(multi_server, account):
    c, h = account["client"], account["headers"]
    t = title()
    create(c, h, title=t)
    r = c.post(f"{DOCS}/", json={"title": t}, headers=h)
    assert r.status_code == 409 and error_of(r) == "title_taken"
    assert [d["title"] for d in c.get(f"{DOCS}/", headers=h).json()].count(t) == 1


def test_patch_and_if_match(multi_server, account):
    c, h = account["client"], account["headers"]
    doc_json = figure_doc()
    made = create(c, h, doc=doc_json)
    cds = source_id(doc_json)
    stream = {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
              "data": {"x": [100.0, 101.0], "y": [1.0, 2.0]}, "rollover": None}
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": [stream]},
                headers={**h, "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.headers["etag"] == '"2"'
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": [stream]},
                headers={**h, "If-Match": '"1"'})
    assert r.status_code == 412 and error_of(r) == "precondition_failed"
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": [
        {"kind": "TitleChanged", "title": "renamed " + made["title"]}]}, headers=h)
    assert r.status_code == 200 and r.json()["title"] == "renamed " + made["title"]
    # the old title is free again, the new one is taken
    create(c, h, title=made["title"])
    r = c.post(f"{DOCS}/", json={"title": "renamed " + made["title"]}, headers=h)
    assert r.status_code == 409
    r = c.put(f"{DOCS}/{made['id']}", json={"doc": figure_doc(5)},
              headers={**h, "If-Match": '"2"'})
    assert r.status_code == 412
    r = c.put(f"{DOCS}/{made['id']}", json={"doc": figure_doc(5)},
              headers={**h, "If-Match": '"3"'})
    assert r.status_code == 200 and r.json()["version"] == 4


@pytest.mark.parametrize("events", [
    [{"kind": "Explode", "model": {"id": "x"}}],                               # unknown kind
    [{"kind": "ModelChanged", "model": {"id": "nope"}, "attr": "x", "new": 1}],  # no such model
    [{"kind": "RootAdded", "model": {"id": "dangling"}}],                      # bad reference
    [{"kind": "TitleChanged"}],                                                 # missing field
])
def test_bad_events_are_422_and_change_nothing(multi_server, account, events):
    c, h = account["client"], account["headers"]
    made = create(c, h, doc=figure_doc())
    before = c.get(f"{DOCS}/{made['id']}", headers=h).json()
    ok = {"kind": "TitleChanged", "title": "should not stick"}
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": [ok, *events]}, headers=h)
    assert r.status_code == 422 and error_of(r) == "invalid_document"
    assert c.get(f"{DOCS}/{made['id']}", headers=h).json() == before


@pytest.mark.parametrize("body", [
    {"title": "x", "doc": {"roots": "not a list"}},
    {"title": "x", "doc": {"version": "3.9", "title": "", "roots": [{"id": "dangling"}]}},
    {"title": "x", "doc": {"version": "3.9", "title": "", "roots": [
        {"type": "object", "name": "Plot", "attributes": {}}]}},                # no id
    {"title": "", "doc": None},                                                  # empty title
    {"title": 5},                                                                # wrong type
    {"doc": {}},                                                                 # no title
])
def test_malformed_documents_are_422_and_nothing_is_stored(multi_server, account, body):
    c, h = account["client"], account["headers"]
    before = c.get(f"{DOCS}/", headers=h).json()
    r = c.post(f"{DOCS}/", json=body, headers=h)
    assert r.status_code == 422 and error_of(r) in {"invalid_document", "invalid_request"}
    assert c.get(f"{DOCS}/", headers=h).json() == before


def test_malformed_json_oversized_and_unknown_ids(multi_server, account):
    c, h = account["client"], account["headers"]
    r = c.post(f"{DOCS}/", content=b"{not json", headers={**h, "content-type": JSON_CT})
    assert r.status_code == 422
    big = json.dumps({"title": "big", "doc": {"roots": [], "pad": "x" * (40 << 20)}})
    r = c.post(f"{DOCS}/", content=big.encode(), headers={**h, "content-type": JSON_CT})
    assert r.status_code == 413 and error_of(r) == "payload_too_large"
    for doc_id in ("0123456789abcdef", "../../etc", "a.b"):
        r = c.get(f"{DOCS}/{doc_id}", headers=h)
        assert r.status_code == 404 and error_of(r) == "not_found"
    made = create(c, h)
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": "nope"}, headers=h)
    assert r.status_code == 422
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": []},
                headers={**h, "If-Match": "banana"})
    assert r.status_code == 400 and error_of(r) == "bad_request"


JSON_CT = "application/json"


def test_fifty_concurrent_writers_lose_no_update(multi_server, account):
    c, h = account["client"], account["headers"]
    doc_json = figure_doc(points=1)
    made = create(c, h, doc=doc_json)
    cds = source_id(doc_json)

    async def writer(client: httpx.AsyncClient, i: int) -> int:
        event = {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
                 "data": {"x": [1000.0 + i], "y": [float(i)]}, "rollover": None}
        r = await client.patch(f"{DOCS}/{made['id']}", json={"events": [event]}, headers=h)
        return r.status_code

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=multi_server.url, timeout=60) as client:
            return await asyncio.gather(*(writer(client, i) for i in range(50)))

    assert asyncio.run(run()) == [200] * 50
    body = c.get(f"{DOCS}/{made['id']}", headers=h).json()
    assert body["version"] == 51
    data = c.get(f"{DOCS}/{made['id']}/objects/{cds}", headers=h).json()["model"][
        "attributes"]["data"]
    xs = data["entries"] if isinstance(data, dict) and "entries" in data else data
    assert sorted(_column(xs, "x"))[-50:] == [1000.0 + i for i in range(50)]


def _column(data: object, name: str) -> list[float]:
    """A column's values from Bokeh's encodings (map entries / ndarray / list)."""
    from bokeh.core.serialization import Deserializer

    if isinstance(data, list):  # map entries
        data = dict(data)
    value = data[name]
    if isinstance(value, dict):
        value = Deserializer().decode(value)
    return [float(v) for v in value]


def test_clone_gc_and_delete(multi_server, account):
    c, h = account["client"], account["headers"]
    doc_json = figure_doc()
    made = create(c, h, doc=doc_json)
    r = c.post(f"{DOCS}/{made['id']}/clone", json={"title": title()}, headers=h)
    assert r.status_code == 201 and r.json()["id"] != made["id"]
    copy = c.get(f"{DOCS}/{r.json()['id']}", headers=h).json()
    assert copy["doc"]["roots"][0]["id"] == doc_json["roots"][0]["id"]
    assert c.get(f"{DOCS}/{made['id']}/gc", headers=h).json()["garbage"] == []
    root = doc_json["roots"][0]["id"]
    r = c.patch(f"{DOCS}/{made['id']}", json={"events": [
        {"kind": "RootRemoved", "model": {"id": root}}]}, headers=h)
    assert r.status_code == 200
    garbage = c.get(f"{DOCS}/{made['id']}/gc", headers=h).json()["garbage"]
    assert root in garbage
    r = c.post(f"{DOCS}/{made['id']}/gc", headers=h)
    assert r.status_code == 200 and sorted(r.json()["removed"]) == sorted(garbage)
    left = {o["id"] for o in c.get(f"{DOCS}/{made['id']}/objects", headers=h).json()}
    assert root not in left and not left & set(garbage)  # the document's config models stay
    assert c.get(f"{DOCS}/{made['id']}/gc", headers=h).json()["garbage"] == []
    r = c.delete(f"{DOCS}/{made['id']}?data=sometimes", headers=h)
    assert r.status_code == 422
    assert c.delete(f"{DOCS}/{made['id']}", headers=h).status_code == 204
    assert c.get(f"{DOCS}/{made['id']}", headers=h).status_code == 404
    create(c, h, title=made["title"])  # the title is free again


def test_objects_layer(multi_server, account):
    c, h = account["client"], account["headers"]
    doc_json = figure_doc()
    made = create(c, h, doc=doc_json)
    base = f"{DOCS}/{made['id']}/objects"
    everything = c.get(base, headers=h).json()
    assert all(o["type"] == "object" and o["id"] for o in everything)
    cds = source_id(doc_json)
    by_type = c.get(base, params={"type": "ColumnDataSource"}, headers=h).json()
    assert [o["id"] for o in by_type] == [cds]
    root = doc_json["roots"][0]["id"]
    bulk = c.get(base, params={"ids": f"{cds},{root}"}, headers=h).json()
    assert [o["id"] for o in bulk] == [cds, root]
    assert c.get(base, params={"ids": f"{cds},missing"}, headers=h).status_code == 404
    one = c.get(f"{base}/{root}", headers=h).json()
    assert one["model"]["id"] == root and cds in [m["id"] for m in one["references"]]
    r = c.patch(f"{base}/{root}", json={"title": None}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    r = c.delete(f"{base}/{cds}", headers=h)  # still used by the renderers
    assert r.status_code == 409 and error_of(r) == "model_in_use"
    new = {"type": "object", "name": "ColumnDataSource", "id": "extra-cds",
           "attributes": {"data": {"type": "map", "entries": [["a", [1, 2]]]}}}
    r = c.post(base, json=new, headers=h)
    assert r.status_code == 201 and r.json()["object"] == "extra-cds"
    assert c.post(base, json=new, headers=h).status_code == 409
    assert c.delete(f"{base}/extra-cds", headers=h).status_code == 200
    assert c.get(f"{base}/extra-cds", headers=h).status_code == 404


def test_single_user_mode_owns_everything(single_server):
    with httpx.Client(base_url=single_server.url) as c:
        made = create(c, {}, doc=figure_doc())
        assert made["owner"] == "defaultuser"
        assert c.get(f"{DOCS}/{made['id']}").status_code == 200
        assert c.delete(f"{DOCS}/{made['id']}").status_code == 204

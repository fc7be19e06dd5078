"""Tokens scoped to one document (POST /auth/doc-token), and the cross-origin calls a viewer
on another site makes with them, against a real multi-user server: each attack first.

A scoped token is what a page on another site (or the sandboxed viewer) holds instead of
the viewer's cookie: it may view its one document, read the sources bound to it through
it, follow it over /ws and (minted `write`) send changes to it; every other route refuses
it (403 `token_scope`), and it never gives more than its user has.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from bokeh_docs import figure_doc, source_id
from conftest import person

DOCS, DATA, AUTH = "/api/v1/docs", "/api/v1/data", "/api/v1/auth"

# one server is enough: tokens do not depend on the store backend
on_file_stores = pytest.mark.parametrize("multi_server", ["file"], indirect=True)


@pytest.fixture
def world(multi_server) -> dict[str, Any]:
    """An owner's private document bound to the owner's source (a writer on its ACL), a
    second private document, and someone with no rights at all."""
    owner, writer, stranger = person(multi_server), person(multi_server), person(multi_server)
    c = httpx.Client(base_url=multi_server.url, timeout=10)
    h = owner["headers"]
    src = c.post(f"{DATA}/sources", headers=h, json={
        "name": "s", "columns": {"x": [0.0, 1.0], "y": [2.0, 3.0]}}).json()["id"]
    doc = figure_doc(points=3, source_tag=src)
    made = c.post(f"{DOCS}/", headers=h, json={"title": "scoped", "doc": doc})
    assert made.status_code == 201, made.text
    doc_id = made.json()["id"]
    assert c.put(f"{DOCS}/{doc_id}/acl", headers=h, json={
        "readers": [], "writers": [writer["name"]]}).status_code == 200
    other = c.post(f"{DOCS}/", headers=h, json={"title": "other", "doc": figure_doc()}
                   ).json()["id"]
    yield {"c": c, "owner": owner, "writer": writer, "stranger": stranger, "doc": doc_id,
           "cds": source_id(doc), "other": other, "source": src}
    c.close()


def mint(c: httpx.Client, h: dict, doc: str, **more: Any) -> str:
    r = c.post(f"{AUTH}/doc-token", headers=h, json={"doc": doc, **more})
    assert r.status_code == 200, r.text
    assert r.json()["doc"] == doc and r.json()["expires_in"] == more.get("ttl", 600)
    return r.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused(r: httpx.Response, status: int = 403, code: str = "token_scope") -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"] == code and r.json()["detail"]


@on_file_stores
def test_a_scoped_token_views_its_document_and_nothing_else(world):
    c, doc, src = world["c"], world["doc"], world["source"]
    h = bearer(mint(c, world["owner"]["headers"], doc))
    assert c.get(f"{DOCS}/{doc}", headers=h).json()["id"] == doc
    rows = c.get(f"{DATA}/sources/{src}/data", headers=h, params={"doc": doc})
    assert rows.status_code == 200 and rows.json()["columns"]["x"] == [0.0, 1.0]
    assert c.get(f"{DATA}/sources/{src}/downsample", headers=h, params={
        "doc": doc, "x": "x", "y": "y", "n": 10}).status_code == 200
    # the owner may do all of these; the token may not
    before = c.get(f"{DOCS}/{doc}", headers=world["owner"]["headers"]).json()["version"]
    for r in (
        c.get(f"{DOCS}/{world['other']}", headers=h),                  # another document
        c.get(f"{DOCS}/", headers=h),                                   # the list
        c.get(f"{DATA}/sources/{src}/data", headers=h),                # not through the doc
        c.get(f"{DATA}/sources/{src}/data", headers=h, params={"doc": world["other"]}),
        c.get(f"{DATA}/sources", headers=h),
        c.patch(f"{DOCS}/{doc}", headers=h, json={"events": []}),       # writes
        c.delete(f"{DOCS}/{doc}", headers=h),
        c.post(f"{DOCS}/{doc}/share", headers=h),
        c.post(f"{DATA}/sources/{src}/append", headers=h,
               json={"columns": {"x": [9.0], "y": [9.0]}}),             # (the front door)
        c.delete(f"{DATA}/sources/{src}", headers=h),
        c.get(f"{AUTH}/me", headers=h),                                 # the account
        c.post(f"{AUTH}/apikeys", headers=h, json={"name": "stolen"}),
    ):
        refused(r) if r.status_code == 403 else pytest.fail(f"{r.request.url}: {r.text}")
    refused(c.post(f"{AUTH}/token", headers=h), 401, "invalid_api_key")  # not a key
    assert c.get(f"{DOCS}/{doc}", headers=world["owner"]["headers"]).json()["version"] == before
    assert c.get(f"{DATA}/sources/{src}", headers=world["owner"]["headers"]).json()["rows"] == 2
    assert c.get(f"{AUTH}/apikeys", headers=world["owner"]["headers"]).json() == []


@on_file_stores
def test_a_scoped_token_narrows_and_never_grants(world):
    c, doc = world["c"], world["doc"]
    # minting for a document one may not read gives a token that reads nothing
    h = bearer(mint(c, world["stranger"]["headers"], doc, right="write"))
    r = c.get(f"{DOCS}/{doc}", headers=h)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    # a token renews itself (same document, same or lesser right), never more
    read = mint(c, world["owner"]["headers"], doc)
    again = mint(c, bearer(read), doc, ttl=60)
    assert c.get(f"{DOCS}/{doc}", headers=bearer(again)).status_code == 200
    refused(c.post(f"{AUTH}/doc-token", headers=bearer(read), json={"doc": doc,
                                                                    "right": "write"}))
    refused(c.post(f"{AUTH}/doc-token", headers=bearer(read), json={"doc": world["other"]}))
    # bad input: the documented statuses, nothing minted
    for body in ({"doc": "../x"}, {"doc": doc, "right": "admin"}, {"doc": doc, "ttl": 10},
                 {"doc": doc, "ttl": 86400}, {}):
        r = c.post(f"{AUTH}/doc-token", headers=world["owner"]["headers"], json=body)
        assert r.status_code == 422 and r.json()["error"], body
    r = c.post(f"{AUTH}/doc-token", json={"doc": doc})
    assert r.status_code == 401 and r.json()["error"]


@on_file_stores
def test_a_scoped_token_ends_with_its_login(multi_server, world):
    c = world["c"]
    owner = person(multi_server)  # a login of its own, to end
    made = c.post(f"{DOCS}/", headers=owner["headers"], json={"title": "t", "doc": figure_doc()})
    token = mint(c, owner["headers"], made.json()["id"])
    assert c.get(f"{DOCS}/{made.json()['id']}", headers=bearer(token)).status_code == 200
    assert c.post(f"{AUTH}/logout", headers=owner["headers"]).status_code == 204
    r = c.get(f"{DOCS}/{made.json()['id']}", headers=bearer(token))
    assert r.status_code == 401 and r.json()["error"] == "session_ended"


def test_single_user_mode_has_no_scoped_tokens(single_server):
    with httpx.Client(base_url=single_server.url, timeout=10) as c:
        r = c.post(f"{AUTH}/doc-token", json={"doc": "abc"})
        assert r.status_code == 400 and r.json()["error"] == "single_user"
        # and no cross-origin reads there: every caller is the owner
        doc = c.post(f"{DOCS}/", json={"title": "t", "doc": figure_doc()}).json()["id"]
        r = c.get(f"{DOCS}/{doc}", headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@on_file_stores
def test_cors_only_on_the_viewers_calls_and_never_with_credentials(world):
    c, doc, src = world["c"], world["doc"], world["source"]
    site = {"Origin": "https://plots.example.org"}
    token = mint(c, world["owner"]["headers"], doc)
    for method, path, params in (("GET", f"{DOCS}/{doc}", {}),
                                 ("GET", f"{DATA}/sources/{src}/data", {"doc": doc}),
                                 ("POST", f"{AUTH}/doc-token", {})):
        pre = c.options(path, params=params, headers={
            **site, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 204, (path, pre.text)
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        assert pre.headers["access-control-allow-methods"] == method
        assert "access-control-allow-credentials" not in pre.headers
    r = c.get(f"{DOCS}/{doc}", headers={**site, **bearer(token)})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    r = c.post(f"{AUTH}/doc-token", headers={**site, **bearer(token)}, json={"doc": doc})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    # everything else stays same-origin: no CORS answer to read it with
    for path in (f"{DOCS}/", f"{DATA}/sources", f"{AUTH}/me", f"{AUTH}/apikeys"):
        r = c.get(path, headers={**site, **world["owner"]["headers"]})
        assert "access-control-allow-origin" not in r.headers, path
        pre = c.options(path, headers={**site, "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in pre.headers, path


def ws_url(server: Any, token: str) -> str:
    return server.url.replace("http://", "ws://") + f"/ws?token={token}"


async def answer(ws: Any, **op: Any) -> dict[str, Any]:
    await ws.send(json.dumps(op))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if message["op"] != "event":
            return message


@on_file_stores
async def test_a_scoped_socket_follows_its_document_only(multi_server, world):
    c, doc, src = world["c"], world["doc"], world["source"]
    read = mint(c, world["owner"]["headers"], doc)
    async with websockets.connect(ws_url(multi_server, read),
                                  origin="https://plots.example.org") as ws:
        assert (await answer(ws, op="subscribe", channel=f"doc:{doc}"))["op"] == "subscribed"
        ok = await answer(ws, op="subscribe", channel=f"data:{src}", doc=doc)
        assert ok["op"] == "subscribed", ok
        for op in ({"channel": f"doc:{world['other']}"}, {"channel": f"data:{src}x"},
                   {"channel": f"data:{src}", "doc": world["other"]}):
            got = await answer(ws, op="subscribe", **op)
            assert got["op"] == "error" and got["code"] in ("token_scope", "already_subscribed"
                                                            ), got
        got = await answer(ws, op="patch", doc=doc, events=[])
        assert got["op"] == "error" and got["code"] == "token_scope"
    # a writer's write token may send changes to its document (and only there)
    write = mint(c, world["writer"]["headers"], doc, right="write")
    title = c.get(f"{DOCS}/{doc}", headers=world["owner"]["headers"]).json()["doc"]["roots"][0][
        "attributes"]["title"]["id"]
    async with websockets.connect(ws_url(multi_server, write)) as ws:
        got = await answer(ws, op="patch", doc=world["other"], events=[])
        assert got["op"] == "error" and got["code"] == "token_scope"
        got = await answer(ws, op="patch", doc=doc, events=[{
            "kind": "ModelChanged", "model": {"id": title}, "attr": "text", "new": "by token"}])
        assert got["op"] == "patched", got
    stored = c.get(f"{DOCS}/{doc}", headers=world["owner"]["headers"]).json()["doc"]
    assert json.dumps(stored).count('"by token"') == 1

"""Reads of a source through the documents that bind it, and sources deleted with them."""

from __future__ import annotations

import time

from bokeh_docs import figure_doc
from conftest import new_username

DATA, DOCS = "/api/v1/data", "/api/v1/docs"


def eventually(check, timeout: float = 3.0) -> None:
    """Grants follow docs events: allow the event a moment to arrive."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_documents_grant_and_revoke_reads(multi_server, account):
    c, owner = account["client"], account["headers"]
    other = new_username()
    c.post("/api/v1/auth/register", json={"username": other, "password": "password123"})
    token = c.post("/api/v1/auth/login", json={"username": other, "password": "password123"}
                   ).json()["access_token"]
    c.cookies.clear()
    them = {"Authorization": f"Bearer {token}"}
    source = c.post(f"{DATA}/sources", json={"name": "bound", "columns": {"x": [1, 2]}},
                    headers=owner).json()["id"]
    rows = f"{DATA}/sources/{source}/data"
    doc = c.post(f"{DOCS}/", json={"title": new_username(),
                                   "doc": figure_doc(source_tag=source)}, headers=owner).json()
    assert c.get(rows, headers=them).status_code == 404
    assert c.get(rows).status_code == 401
    # published: anyone may read the sources it binds, nobody else may change them
    c.post(f"{DOCS}/{doc['id']}/publish", headers=owner)
    eventually(lambda: c.get(rows).status_code == 200)
    assert c.get(rows, headers=them).json()["columns"] == {"x": [1, 2]}
    r = c.post(f"{DATA}/sources/{source}/append", json={"columns": {"x": [3]}}, headers=them)
    assert r.status_code == 403
    c.delete(f"{DOCS}/{doc['id']}/publish", headers=owner)
    eventually(lambda: c.get(rows, headers=them).status_code == 404)
    # a share link opens the sources of its own document only
    key = c.post(f"{DOCS}/{doc['id']}/share", headers=owner).json()["key"]
    eventually(lambda: c.get(rows, params={"doc": doc["id"], "share": key}).status_code
               == 200)
    assert c.get(rows, params={"doc": doc["id"], "share": "wrong"}).status_code == 401
    assert c.get(rows, params={"share": key}).status_code == 401
    c.delete(f"{DOCS}/{doc['id']}/share", headers=owner)
    eventually(lambda: c.get(rows, params={"doc": doc["id"], "share": key}).status_code
               == 401)
    # ACL readers of the document read the source too
    c.put(f"{DOCS}/{doc['id']}/acl", json={"readers": [other]}, headers=owner)
    eventually(lambda: c.get(rows, headers=them).status_code == 200)


def test_deleting_a_document_with_force_drops_its_sources(multi_server, account):
    c, h = account["client"], account["headers"]
    kept, dropped = (c.post(f"{DATA}/sources", json={"name": n, "columns": {"x": [1]}},
                            headers=h).json()["id"] for n in ("kept", "dropped"))
    keep_doc = c.post(f"{DOCS}/", json={"title": new_username(),
                                        "doc": figure_doc(source_tag=kept)}, headers=h).json()
    drop_doc = c.post(f"{DOCS}/", json={"title": new_username(),
                                        "doc": figure_doc(source_tag=dropped)}, headers=h).json()
    assert c.delete(f"{DOCS}/{keep_doc['id']}", params={"data": "keep"}, headers=h
                    ).status_code == 204
    assert c.delete(f"{DOCS}/{drop_doc['id']}", params={"data": "force"}, headers=h
                    ).status_code == 204
    eventually(lambda: c.get(f"{DATA}/sources/{dropped}", headers=h).status_code == 404)
    assert c.get(f"{DATA}/sources/{kept}", headers=h).status_code == 200


def test_a_deletion_made_while_data_was_down_is_acted_on_when_it_is_back(tmp_path):
    """docs and data as separate services on one NATS: data misses the deletion live, and
    its durable consumer hands it over when data comes back."""
    import httpx
    from servers import start_nats, start_plotline

    nats = start_nats(tmp_path / "nats")
    common = ["--nats-url", nats.url, "--backend", "file", "-D", str(tmp_path / "stores")]
    docs = data = None
    try:
        docs = start_plotline(tmp_path / "docs", "docs", *common)
        data = start_plotline(tmp_path / "data", "data", *common)
        source = httpx.post(f"{data.url}{DATA}/sources", json={
            "name": "s", "columns": {"x": [1.0]}}).json()["id"]
        doc = httpx.post(f"{docs.url}{DOCS}/", json={
            "title": "t", "doc": figure_doc(source_tag=source)}).json()
        data.stop()
        assert httpx.delete(f"{docs.url}{DOCS}/{doc['id']}",
                            params={"data": "force"}).status_code == 204
        data = start_plotline(tmp_path / "data", "data", *common)
        eventually(lambda: httpx.get(f"{data.url}{DATA}/sources/{source}").status_code
                   == 404, timeout=10)
    finally:
        for server in (data, docs, nats):
            if server:
                server.stop()

"""The access matrix: every docs route x anonymous / other user / reader / writer / owner.

A fresh document per case; a refused attempt must leave the document exactly as it was.
"""

from __future__ import annotations

import httpx
import pytest
from bokeh_docs import figure_doc, source_id
from conftest import new_username

DOCS = "/api/v1/docs"
ROLES = ("anonymous", "other", "reader", "writer", "owner")
DOC_JSON = figure_doc(points=5)
CDS = source_id(DOC_JSON)
ROOT = DOC_JSON["roots"][0]["id"]
STREAM = {"kind": "ColumnsStreamed", "model": {"id": CDS}, "attr": "data",
          "data": {"x": [9.0], "y": [9.0]}, "rollover": None}
NEW_OBJECT = {"type": "object", "name": "ColumnDataSource", "id": "matrix-extra",
              "attributes": {}}

# route -> (method, path under /api/v1/docs/{id}, json body, the right it needs)
ROUTES = {
    "get": ("GET", "", None, "read"),
    "objects": ("GET", "/objects", None, "read"),
    "object": ("GET", f"/objects/{ROOT}", None, "read"),
    "clone": ("POST", "/clone", {}, "read+user"),
    "put": ("PUT", "", {"doc": DOC_JSON}, "write"),
    "patch": ("PATCH", "", {"events": [STREAM]}, "write"),
    "add_object": ("POST", "/objects", NEW_OBJECT, "write"),
    "replace_object": ("PUT", f"/objects/{CDS}", {
        "type": "object", "name": "ColumnDataSource", "id": CDS, "attributes": {}}, "write"),
    "patch_object": ("PATCH", f"/objects/{ROOT}", {"title": None}, "write"),
    "gc_list": ("GET", "/gc", None, "write"),
    "gc_run": ("POST", "/gc", None, "write"),
    "publish": ("POST", "/publish", None, "admin"),
    "unpublish": ("DELETE", "/publish", None, "admin"),
    "share": ("POST", "/share", None, "admin"),
    "unshare": ("DELETE", "/share", None, "admin"),
    "acl": ("PUT", "/acl", {"readers": [], "writers": []}, "admin"),
    "delete": ("DELETE", "", None, "admin"),
}
LEVEL = {"anonymous": 0, "other": 0, "reader": 1, "writer": 2, "owner": 3}
NEED = {"read": 1, "read+user": 1, "write": 2, "admin": 3}


def expected(role: str, need: str) -> int | None:
    """The refusal status, or None when the call must succeed."""
    if role == "anonymous":
        return 401
    if LEVEL[role] >= NEED[need]:
        return None
    return 404 if LEVEL[role] == 0 else 403


@pytest.fixture(scope="module")
def people(multi_server) -> dict[str, dict]:
    out = {"anonymous": {"name": None, "headers": {}}}
    with httpx.Client(base_url=multi_server.url) as c:
        for role in ("other", "reader", "writer", "owner"):
            name = new_username()
            c.post("/api/v1/auth/register", json={"username": name, "password": "password123"})
            token = c.post("/api/v1/auth/login", json={
                "username": name, "password": "password123"}).json()["access_token"]
            out[role] = {"name": name, "headers": {"Authorization": f"Bearer {token}"}}
    return out


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_matrix(multi_server, people, route, role):
    method, path, body, need = ROUTES[route]
    owner = people["owner"]["headers"]
    with httpx.Client(base_url=multi_server.url, timeout=30) as c:
        made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": DOC_JSON},
                      headers=owner).json()
        doc_url = f"{DOCS}/{made['id']}"
        r = c.put(f"{doc_url}/acl", json={"readers": [people["reader"]["name"]],
                                          "writers": [people["writer"]["name"]]},
                  headers=owner)
        assert r.status_code == 200
        before = c.get(doc_url, headers=owner).json()
        r = c.request(method, f"{doc_url}{path}", json=body,
                      headers=people[role]["headers"])
        refusal = expected(role, need)
        if refusal is None:
            assert r.status_code < 300, (route, role, r.status_code, r.text)
            return
        assert r.status_code == refusal, (route, role, r.status_code, r.text)
        assert set(r.json()) == {"error", "detail"}
        after = c.get(doc_url, headers=owner)
        assert after.status_code == 200 and after.json() == before
        if route == "clone":
            mine = c.get(f"{DOCS}/", headers=people[role]["headers"]).json()
            assert all(d["title"] != made["title"] for d in mine)


def test_published_and_shared_documents_are_readable_not_writable(multi_server, people):
    owner, other = people["owner"]["headers"], people["other"]["headers"]
    with httpx.Client(base_url=multi_server.url) as c:
        made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": DOC_JSON},
                      headers=owner).json()
        url = f"{DOCS}/{made['id']}"
        assert c.get(url).status_code == 401
        assert c.post(f"{url}/publish", headers=owner).json()["published"] is True
        assert c.get(url).status_code == 200
        assert c.get(url, headers=other).status_code == 200
        assert c.patch(url, json={"events": [STREAM]}, headers=other).status_code == 403
        assert c.patch(url, json={"events": [STREAM]}).status_code == 401
        assert c.delete(f"{url}/publish", headers=owner).json()["published"] is False
        assert c.get(url, headers=other).status_code == 404
        shared = c.post(f"{url}/share", headers=owner).json()
        assert shared["url"].endswith(f"/plots/{made['id']}?share={shared['key']}")
        assert c.get(url, params={"share": shared["key"]}).status_code == 200
        assert c.get(url, params={"share": "wrong-key"}).status_code == 401
        assert c.get(url, params={"share": shared["key"]}, headers=other).status_code == 200
        r = c.patch(url, params={"share": shared["key"]}, json={"events": [STREAM]},
                    headers=other)
        assert r.status_code == 404  # a share key grants reading only
        assert c.delete(f"{url}/share", headers=owner).status_code == 200
        assert c.get(url, params={"share": shared["key"]}).status_code == 401
        # the list shows what I may read, and nothing else
        assert made["id"] not in [d["id"] for d in c.get(f"{DOCS}/", headers=other).json()]

"""Smaller holes of issue 10 in docs and data: every way in keeps the same limits, and a
missing id looks exactly like a private one."""

from __future__ import annotations

from bokeh_docs import figure_doc
from conftest import new_username

DATA, DOCS = "/api/v1/data", "/api/v1/docs"


def test_an_anonymous_caller_cannot_tell_missing_ids_from_private_ones(multi_server,
                                                                       account):
    c, h = account["client"], account["headers"]
    doc = c.post(f"{DOCS}/", json={"title": new_username(), "doc": figure_doc()},
                 headers=h).json()["id"]
    source = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [1]}},
                    headers=h).json()["id"]
    for private, missing in ((f"{DOCS}/{doc}", f"{DOCS}/0123456789abcdef"),
                             (f"{DATA}/sources/{source}", f"{DATA}/sources/0123456789abcdef")):
        a, b = c.get(private), c.get(missing)
        assert (a.status_code, a.json()) == (b.status_code, b.json()) == (401, a.json())
        # and for writes
        a, b = c.delete(private), c.delete(missing)
        assert a.status_code == b.status_code == 401
    assert c.get(f"{DOCS}/{doc}", headers=h).status_code == 200  # nothing changed


def test_title_changed_keeps_the_title_limit(multi_server, account):
    c, h = account["client"], account["headers"]
    made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": figure_doc()},
                  headers=h).json()
    r = c.patch(f"{DOCS}/{made['id']}", headers=h,
                json={"events": [{"kind": "TitleChanged", "title": "x" * 201}]})
    assert r.status_code == 422, r.text
    assert set(r.json()) == {"error", "detail"}
    r = c.get(f"{DOCS}/{made['id']}", headers=h).json()
    assert (r["title"], r["version"]) == (made["title"], 1)
    # the longest title that create accepts is accepted here too
    ok = c.patch(f"{DOCS}/{made['id']}", headers=h,
                 json={"events": [{"kind": "TitleChanged", "title": "y" * 200}]})
    assert ok.status_code == 200, ok.text


def test_object_ids_have_a_length_limit(multi_server, account):
    c, h = account["client"], account["headers"]
    made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": figure_doc()},
                  headers=h).json()
    rep = {"type": "object", "name": "Range1d", "id": "i" * 100_000,
           "attributes": {"start": 0, "end": 1}}
    r = c.post(f"{DOCS}/{made['id']}/objects", json=rep, headers=h)
    assert r.status_code == 422, r.text
    assert len(r.text) < 1000  # the error does not echo the id back
    assert c.get(f"{DOCS}/{made['id']}", headers=h).json()["version"] == 1
    rep["id"] = "i" * 128
    assert c.post(f"{DOCS}/{made['id']}/objects", json=rep, headers=h).status_code == 201

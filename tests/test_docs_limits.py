"""Smaller holes of issue 10 in docs and data: every way in keeps the same limits, and a
missing id looks exactly like a private one."""

from __future__ import annotations

from bokeh_docs import figure_doc, source_id
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


def _gzipped_ndarray(raw: bytes, shape: list[int]) -> dict:
    import base64
    import gzip
    data = base64.b64encode(gzip.compress(raw, compresslevel=1)).decode()
    return {"type": "ndarray", "array": {"type": "bytes", "data": data}, "shape": shape,
            "dtype": "float64", "order": "little"}


def test_a_gzipped_ndarray_in_a_document_inflates_no_further_than_its_limit(multi_server,
                                                                             account):
    """A stream's ndarray is a compression bomb (80 MB of zeros in 80 kB): docs inflates it
    no further than Bokeh's shared decoder allows (64 MiB), and to no more than its shape
    says, and the document does not change."""
    import numpy as np

    c, h = account["client"], account["headers"]
    doc = figure_doc()
    made = c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc}, headers=h).json()
    n = 10_000_000
    bomb = _gzipped_ndarray(np.zeros(n).tobytes(), [n])
    liar = _gzipped_ndarray(np.zeros(n).tobytes(), [10])  # says 80 bytes
    for rep, status in ((bomb, 413), (liar, 422)):
        event = {"kind": "ColumnsStreamed", "model": {"id": source_id(doc)}, "attr": "data",
                 "data": {"x": rep, "y": rep}, "rollover": None}
        r = c.patch(f"{DOCS}/{made['id']}", json={"events": [event]}, headers=h)
        assert r.status_code == status, r.text
        assert set(r.json()) == {"error", "detail"}
    assert c.get(f"{DOCS}/{made['id']}", headers=h).json()["version"] == 1


def test_every_way_in_takes_share_keys_of_one_length(multi_server, account):
    """The fast read, its FastAPI twins, data's reads through a document and the pages all
    stop at names.MAX_SHARE_KEY (they had 100, none and 200): a longer key is refused
    before anyone is asked, one of that length is asked about and is simply wrong."""
    from services.common.names import MAX_SHARE_KEY, VIEWER_PREFIX

    c, h = account["client"], account["headers"]
    doc = c.post(f"{DOCS}/", json={"title": new_username(), "doc": figure_doc()},
                 headers=h).json()["id"]
    source = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [1]}},
                    headers=h).json()["id"]
    too_long, longest = "k" * (MAX_SHARE_KEY + 1), "k" * MAX_SHARE_KEY
    for path, params in ((f"{DOCS}/{doc}", {}), (f"{DOCS}/{doc}/objects", {}),
                         (f"{DATA}/sources/{source}", {"doc": doc})):
        r = c.get(path, params={**params, "share": too_long})  # (anonymous)
        assert (r.status_code, r.json()["error"]) == (422, "invalid_request"), (path, r.text)
        r = c.get(path, params={**params, "share": longest})
        assert r.status_code in (401, 404), (path, r.text)
    page = f"{VIEWER_PREFIX}/{doc}"
    assert c.get(page, params={"share": too_long}).status_code == 404
    assert c.get(page, params={"share": longest}).status_code == 404

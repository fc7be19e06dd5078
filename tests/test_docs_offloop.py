"""docs keeps its event loop free while large documents are created, replaced and read."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from bokeh_docs import figure_doc
from loopcheck import probe_while_busy

from services.common.identity import Principal
from services.common.stores.blob import open_blob
from services.common.stores.kv import open_kv

DOCS = "/api/v1/docs"


@pytest.fixture(scope="module")
def big_doc() -> bytes:
    """Document.to_json() of a figure over ~1.3M points given as lists: ~26 MB of JSON."""
    x = np.arange(650_000, dtype=np.float64) * 1.000001
    source = ColumnDataSource({"x": x.tolist(), "y": np.sin(x / 7).tolist()})
    plot = figure(title="big")
    plot.scatter("x", "y", source=source)
    doc = Document()
    doc.add_root(plot)
    return json.dumps(doc.to_json(deferred=False)).encode()


def body(title: str, doc: bytes) -> bytes:
    return b'{"title": ' + json.dumps(title).encode() + b', "doc": ' + doc + b"}"


class QuietBus:
    """Stands in for NATS here: these tests are about which thread parses a document, and
    nothing listens to the events."""

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        pass


async def test_documents_are_parsed_off_the_event_loop(monkeypatch):
    from services.docs import service
    from services.docs.config import DocsSettings
    from services.docs.repository import DocsRepository

    threads: list[int] = []
    real = service.Doc.from_bokeh

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(service.Doc, "from_bokeh", recording)
    docs = service.DocsService(DocsSettings(), DocsRepository(open_kv("memory://"),
                                                              open_blob("memory://")),
                               QuietBus())  # type: ignore[arg-type]
    me = Principal("someone", "jwt")
    meta = await docs.create(me, "t", figure_doc())
    await docs.replace(meta["id"], me, figure_doc(points=5), None, None)
    assert len(threads) == 2 and threading.get_ident() not in threads


def test_healthz_stays_fast_while_large_documents_are_written(multi_server, account,
                                                                big_doc):
    assert 20e6 < len(big_doc) < 32 << 20  # (docs' body limit is 32 MiB)
    h = {**account["headers"], "content-type": "application/json"}
    stop, done, failures = threading.Event(), [], []

    def keep_writing(worker: int) -> None:
        with httpx.Client(base_url=multi_server.url, timeout=120) as c:
            r = c.post(f"{DOCS}/", content=body(f"w{worker}", big_doc), headers=h)
            assert r.status_code == 201, r.text[:300]
            doc_id, n = r.json()["id"], 0
            while not stop.is_set():
                n += 1
                if n % 2:  # a create, then a replace of the first, and so on
                    r = c.post(f"{DOCS}/", content=body(f"w{worker}-{n}", big_doc),
                               headers=h)
                else:
                    r = c.put(f"{DOCS}/{doc_id}", content=body(f"w{worker}", big_doc),
                              headers=h)
                (done if r.status_code in (200, 201) else failures).append(r.status_code)
                # and read it back (each version is rendered anew)
                r = c.get(f"{DOCS}/{doc_id}", headers=h)
                (done if r.status_code == 200 else failures).append(r.status_code)

    workers = [threading.Thread(target=keep_writing, args=(i,)) for i in range(2)]
    median, p90, worst = probe_while_busy(multi_server, workers, stop, done, settle=1.0)
    assert not failures
    assert median < 0.05 and p90 < 0.15 and worst < 1.0, (median, p90, worst)


def test_a_large_document_goes_through_a_worker_and_reads_back_the_same(multi_server,
                                                                        account, big_doc):
    """The worker-process path (bodies over bigdocs.BIG_BYTES) stores exactly what the
    in-process path stores: same document back, same title rules, same errors."""
    c, h = account["client"], {**account["headers"], "content-type": "application/json"}
    r = c.post(f"{DOCS}/", content=body("large one", big_doc), headers=h)
    assert r.status_code == 201, r.text[:300]
    doc_id = r.json()["id"]
    back = c.get(f"{DOCS}/{doc_id}", headers=h).json()
    assert back["title"] == "large one" and back["version"] == 1
    sent = json.loads(big_doc)
    got_source = next(m for m in back["doc"]["roots"][0]["attributes"]["renderers"][0]
                      ["attributes"]["data_source"]["attributes"]["data"]["entries"])
    sent_source = next(m for m in sent["roots"][0]["attributes"]["renderers"][0]
                       ["attributes"]["data_source"]["attributes"]["data"]["entries"])
    assert got_source == sent_source  # ("x", [650,000 floats]) unchanged
    # a replace without a title keeps the stored one; with one, renames
    replace = b'{"doc": ' + big_doc + b"}"
    r = c.put(f"{DOCS}/{doc_id}", content=replace, headers=h)
    assert r.status_code == 200 and r.json()["title"] == "large one", r.text[:300]
    assert c.get(f"{DOCS}/{doc_id}", headers=h).json()["version"] == 2
    # errors are the small path's: 422 {"error","detail"}, nothing stored
    for bad in (b'{"title": "x", "doc": ' + big_doc[:-1] + b"}",  # broken JSON
                b'{"title": "", "doc": ' + big_doc + b"}",  # empty title
                b'{"title": "x", "doc": {"roots": "no", "pad": "' + b"a" * (2 << 20) + b'"}}'):
        r = c.post(f"{DOCS}/", content=bad, headers=h)
        assert r.status_code == 422, r.text[:300]
        assert set(r.json()) == {"error", "detail"}
    titles = {d["title"] for d in c.get(f"{DOCS}/", headers=h).json()}
    assert titles == {"large one"}

"""docs keeps its event loop free while large documents are created and replaced."""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from bokeh_docs import figure_doc
from test_data_limits import healthz_url

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


# What is left: the body's JSON decode and the store form's json.dumps now run in worker
# threads too, but each is one C call that holds the GIL throughout (~0.3 s and ~1 s for
# this document), so the loop still waits for them; a worker process is the fix.
@pytest.mark.xfail(strict=True, reason="json decode/encode of a 26 MB document are single "
                   "C calls holding the GIL: threads cannot free the loop, a process can")
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

    workers = [threading.Thread(target=keep_writing, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    health: list[float] = []
    try:
        time.sleep(1.0)
        with httpx.Client(timeout=30) as c:
            url = healthz_url(multi_server)
            while len(health) < 60 or len(done) < 4:
                start = time.perf_counter()
                assert c.get(url).status_code == 200
                health.append(time.perf_counter() - start)
                time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert not failures and len(done) >= 4
    median, p90, worst = (statistics.median(health),
                          statistics.quantiles(health, n=10)[-1], max(health))
    print(f"healthz median {median * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms, max "
          f"{worst * 1e3:.1f} ms over {len(health)} probes, {len(done)} writes done")
    assert median < 0.05 and p90 < 0.15 and worst < 1.0, (median, p90, worst)

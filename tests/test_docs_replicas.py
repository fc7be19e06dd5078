"""Two replicas of one installation: reads on one follow writes on the other.

Each replica answers GETs from metadata it already read (metacache.py); the docs events
keep it current. The cache lifetime is set to an hour here, so a fresh answer on the other
replica can only come from the event, not from the entry expiring.
"""

from __future__ import annotations

import time

import httpx
from bokeh_docs import figure_doc, source_id
from conftest import new_username
from servers import start_plotline

DOCS = "/api/v1/docs"


def version_seen(url: str, doc_id: str, want: int | None, within: float = 3.0) -> float:
    """Seconds until GET answers version `want` (None: 404); fails after `within`."""
    start = time.monotonic()
    while True:
        r = httpx.get(f"{url}{DOCS}/{doc_id}")
        got = None if r.status_code == 404 else r.json()["version"]
        if got == want:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"still at {got}, expected {want}"
        time.sleep(0.005)


def test_a_write_on_one_replica_is_read_on_the_other(tmp_path, redis_url, nats_url):
    shared = tmp_path / "shared"  # one blob directory, one Redis namespace, one NATS
    args = ["--nats-url", nats_url, "--backend", "redis", "--redis-url",
            f"{redis_url}?prefix={new_username()}:", "-D", str(shared)]
    env = {"PLOTLINE_DOCS_META_CACHE_SECONDS": "3600"}
    a = start_plotline(tmp_path / "a", *args, env=env)
    b = start_plotline(tmp_path / "b", *args, env=env)
    try:
        doc = figure_doc()
        made = httpx.post(f"{a.url}{DOCS}/", json={"title": "t", "doc": doc}).json()
        doc_id = made["id"]
        version_seen(b.url, doc_id, 1)  # b now holds version 1
        seen = [httpx.get(f"{b.url}{DOCS}/{doc_id}").json()["doc"]]
        stream = {"kind": "ColumnsStreamed", "model": {"id": source_id(doc)}, "attr": "data",
                  "data": {"x": [100.0], "y": [1.0]}, "rollover": None}
        for version in (2, 3, 4):
            r = httpx.patch(f"{a.url}{DOCS}/{doc_id}", json={"events": [stream]})
            assert r.status_code == 200 and r.json()["version"] == version
            assert version_seen(b.url, doc_id, version) < 1.0
            # the content that goes with the version, not the old content under a new number
            seen.append(httpx.get(f"{b.url}{DOCS}/{doc_id}").json()["doc"])
            assert seen[-1] == httpx.get(f"{a.url}{DOCS}/{doc_id}").json()["doc"] != seen[-2]
        # the writing replica never lags its own writes
        assert httpx.get(f"{a.url}{DOCS}/{doc_id}").json()["version"] == 4
        r = httpx.delete(f"{a.url}{DOCS}/{doc_id}")
        assert r.status_code in (200, 204)
        assert version_seen(b.url, doc_id, None) < 1.0
    finally:
        a.stop()
        b.stop()


def test_appends_alternating_between_data_replicas_lose_nothing(tmp_path, redis_url,
                                                               nats_url):
    """Each replica starts a write from the manifest it committed last; the other replica's
    writes in between make that compare-and-set fail, and it must then read the store."""
    shared = tmp_path / "shared"
    args = ["--nats-url", nats_url, "--backend", "redis", "--redis-url",
            f"{redis_url}?prefix={new_username()}:", "-D", str(shared)]
    a = start_plotline(tmp_path / "a", *args)
    b = start_plotline(tmp_path / "b", *args)
    try:
        made = httpx.post(f"{a.url}/api/v1/data/sources", json={
            "name": "s", "columns": {"i": [-1]}}).json()
        path = f"/api/v1/data/sources/{made['id']}"
        for i in range(40):
            server = (a, a, b)[i % 3]  # runs on one replica, then a switch
            r = httpx.post(f"{server.url}{path}/append", json={"columns": {"i": [i]}})
            assert r.status_code == 200 and r.json()["version"] == i + 2, r.text
        for server in (a, b):
            assert httpx.get(f"{server.url}{path}/data").json()["columns"]["i"] == [
                -1, *range(40)]
    finally:
        a.stop()
        b.stop()

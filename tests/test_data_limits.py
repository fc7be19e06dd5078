"""The data service's limits on what one request may cost: decoded size (decompression
bombs), rollover on every append form, raster sizes, and the event loop staying free while
large views are computed."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
import websockets
from conftest import new_username
from loopcheck import probe_while_busy
from test_data_api import ARROW, DATA, arrow_bytes, error_of

from services.data import columns as cols
from services.data.routes import append_input

# float64: 320 MB decoded, past the servers' limit (PLOTLINE_DATA_MAX_BODY_BYTES, 256 MiB)
BOMB_ROWS = 40_000_000


def compressed(table: pa.Table, **kw) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table, **kw)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def arrow_bomb() -> bytes:
    """A few KiB of zstd Arrow IPC that decodes to 320 MB (one record batch)."""
    return compressed(pa.table({"x": np.zeros(BOMB_ROWS)}))


@pytest.fixture(scope="module")
def json_bomb() -> dict:
    """JSON columns as Bokeh encodes numpy arrays (gzipped base64 ndarrays): two columns of
    160 MB each, each under the limit on its own, 320 MB together."""
    raw = gzip.compress(np.zeros(BOMB_ROWS // 2).tobytes(), compresslevel=9)
    rep = {"type": "ndarray", "array": {"type": "bytes", "data": base64.b64encode(raw).decode()},
           "shape": [BOMB_ROWS // 2], "dtype": "float64", "order": "little"}
    return {"x": rep, "y": rep}


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def assert_too_large(r) -> None:
    assert r.status_code == 413, r.text[:300]
    assert error_of(r) == "payload_too_large"


# --- 1. decompression bombs ----------------------------------------------------------------
# (first in the module: they measure the server's peak memory, which later tests raise)

def test_arrow_bomb_is_refused_before_decoding(multi_server, account, arrow_bomb):
    c, h = account["client"], account["headers"]
    assert len(arrow_bomb) < 64 << 10  # what is sent is small...
    src = c.post(f"{DATA}/sources", json={"name": "kept", "columns": {"x": [1.0, 2.0]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    before = c.get(f"{DATA}/sources", headers=h).json()
    peak = peak_rss(multi_server.process.pid)
    arrow = {**h, "content-type": ARROW}
    # create, the append route's front door (fastappend.py), and rollover on the way
    assert_too_large(c.post(f"{DATA}/sources?name=bomb", content=arrow_bomb, headers=arrow))
    assert_too_large(c.post(f"{url}/append", content=arrow_bomb, headers=arrow))
    assert_too_large(c.post(f"{url}/append?rollover=5", content=arrow_bomb, headers=arrow))
    grown = peak_rss(multi_server.process.pid) - peak
    print(f"Arrow bombs: body {len(arrow_bomb)} bytes, peak RSS +{grown / 2**20:.1f} MiB")
    # ...decoding it would take 320 MB; refused from its metadata, it takes next to nothing
    assert grown < 64 << 20, f"peak RSS grew by {grown >> 20} MiB"
    assert c.get(f"{DATA}/sources", headers=h).json() == before  # nothing created
    after = c.get(url, headers=h).json()
    assert (after["rows"], after["version"]) == (2, 1)  # not changed, so no event either


def test_json_ndarray_bomb_is_refused(multi_server, account, json_bomb):
    c, h = account["client"], account["headers"]
    body = {"name": "jbomb", "columns": json_bomb}
    assert len(json.dumps(body)) < 1 << 20
    src = c.post(f"{DATA}/sources", json={"name": "kept", "columns": {"x": [1.0],
                                                                      "y": [2.0]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    before = c.get(f"{DATA}/sources", headers=h).json()
    peak = peak_rss(multi_server.process.pid)
    assert_too_large(c.post(f"{DATA}/sources", json=body, headers=h))
    assert_too_large(c.post(f"{url}/append", json={"columns": json_bomb}, headers=h))
    grown = peak_rss(multi_server.process.pid) - peak
    print(f"JSON bombs: body {len(json.dumps(body))} bytes, peak RSS +{grown / 2**20:.1f} MiB")
    assert grown < 64 << 20, f"peak RSS grew by {grown >> 20} MiB"
    # a compressed request body is not inflated by the service at all
    packed = gzip.compress(json.dumps({"name": "gz", "columns": {"x": [0.0] * 100_000}}
                                      ).encode())
    r = c.post(f"{DATA}/sources", content=packed,
               headers={**h, "content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 422 and error_of(r) == "invalid_request"
    assert c.get(f"{DATA}/sources", headers=h).json() == before
    after = c.get(url, headers=h).json()
    assert (after["rows"], after["version"]) == (1, 1)


def test_columns_that_expand_past_the_limit(multi_server, account):
    """Uncompressed and small, yet one 1 MB string referenced by 300 rows is 300 MB once
    decoded (as a source stores it): from a dictionary, or from string views."""
    c, h = account["client"], account["headers"]
    size, rows = 1 << 20, 300
    dictionary = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int8)),
                                                pa.array(["x" * size]))
    view = struct.pack("<i4sii", size, b"xxxx", 0, 0)  # length, prefix, buffer, offset
    views = pa.Array.from_buffers(pa.string_view(), rows,
                                  [None, pa.py_buffer(view * rows), pa.py_buffer(b"x" * size)])
    for column in (dictionary, views):
        body = arrow_bytes(pa.table({"s": column}))
        assert len(body) < 2 << 20
        r = c.post(f"{DATA}/sources?name=expands", content=body,
                   headers={**h, "content-type": ARROW})
        assert_too_large(r)
    # a dictionary column within the limit is still taken
    small = pa.table({"s": pa.array(["a", "b", "a"]).dictionary_encode()})
    r = c.post(f"{DATA}/sources?name=dict", content=compressed(small),
               headers={**h, "content-type": ARROW})
    assert r.status_code == 201 and r.json()["rows"] == 3


def test_decoded_size_is_measured_exactly():
    """The metadata's sizes are what pyarrow decodes (stream and file, compressed or not,
    dictionaries and several batches); a body at the limit passes, one byte more not."""
    table = pa.table({"x": np.arange(1000.0), "s": [str(i) for i in range(1000)],
                      "b": pa.array([True, None] * 500)})
    from services.data.ipcsize import decoded_size  # (here: new with this limit)

    dicts = table.append_column("d", pa.array(["a", "b"] * 500).dictionary_encode())
    for compression in (None, "zstd", "lz4"):
        options = pa.ipc.IpcWriteOptions(compression=compression)
        for new, read in ((pa.ipc.new_stream, pa.ipc.open_stream),
                          (pa.ipc.new_file, pa.ipc.open_file)):
            for t in (dicts, table):  # (the boundary below: the last, `table`)
                sink = pa.BufferOutputStream()
                with new(sink, t.schema, options=options) as writer:
                    writer.write_table(t, max_chunksize=300)
                body = sink.getvalue()
                size = read(body).read_all().get_total_buffer_size()
                assert decoded_size(body, file=read is pa.ipc.open_file) == size
            body = body.to_pybytes()
            size = read(body).read_all().get_total_buffer_size()
            assert cols.table_from_arrow(body, max_bytes=size).num_rows == 1000
            with pytest.raises(cols.DataTooLarge):
                cols.table_from_arrow(body, max_bytes=size - 1)
    # an Arrow file (not a stream) bomb, measured from the batches its footer lists
    sink = pa.BufferOutputStream()
    bomb = pa.table({"x": np.zeros(BOMB_ROWS // 4)})
    with pa.ipc.new_file(sink, bomb.schema,
                         options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(bomb)
    with pytest.raises(cols.DataTooLarge):
        cols.table_from_arrow(sink.getvalue().to_pybytes(), max_bytes=1 << 20)
    # the shared parsing of both append doors
    with pytest.raises(cols.DataTooLarge):
        append_input(compressed(pa.table({"x": np.zeros(1000)})), ARROW, None, 7999)


# --- 2. ?rollover= on every append form ------------------------------------------------------

@pytest.mark.parametrize("form", ["json", "arrow"])
async def test_query_rollover_on_appends(multi_server, account, form):
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "r", "columns": {"x": [0.0, 1.0, 2.0]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}/append"
    ws_url = multi_server.url.replace("http://", "ws://") + f"/ws?token={account['token']}"

    def send(query: str, values: list[float]):
        if form == "json":
            return c.post(f"{url}{query}", json={"columns": {"x": values}}, headers=h)
        return c.post(f"{url}{query}", content=arrow_bytes(pa.table({"x": values})),
                      headers={**h, "content-type": ARROW})

    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": f"data:{src['id']}"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["op"] == "subscribed"
        r = send("?rollover=2", [3.0])
        assert r.status_code == 200 and r.json() == {"version": 2, "rows": 2}
        event = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert (event["type"], event["seq"]) == ("appended", 2)
    assert event["data"] == {"columns": {"x": [3.0]}, "rollover": 2, "rows": 2}
    assert c.get(f"{DATA}/sources/{src['id']}/data", headers=h).json()["columns"] == {
        "x": [2.0, 3.0]}
    for query in ("?rollover=abc", "?rollover=-1"):  # the same validation for both
        r = send(query, [9.0])
        assert r.status_code == 422 and error_of(r) == "invalid_request", (query, r.text)
    r = send("", [4.0])  # without it: the source's own (none)
    assert r.json() == {"version": 3, "rows": 3}
    if form == "json":  # the body's rollover wins over the query's
        r = c.post(f"{url}?rollover=1", json={"columns": {"x": [5.0]}, "rollover": 3},
                   headers=h)
        assert r.json() == {"version": 4, "rows": 3}


def test_append_input_reads_the_query_rollover_for_json_too():
    """The shared parsing of the append route and its front door."""
    one = b'{"columns": {"x": [1.0]}}'
    assert append_input(one, "application/json", 2, 1 << 20)[1] == 2
    assert append_input(one, "application/json", None, 1 << 20)[1] is None
    given = b'{"columns": {"x": [1.0]}, "rollover": 3}'
    assert append_input(given, "application/json", 2, 1 << 20)[1] == 3


# --- 3. rasters are capped, and large views run off the event loop -------------------------

@pytest.fixture(scope="module")
def owner(multi_server) -> dict:
    """A user for the module (big_source is made once)."""
    name, password = new_username(), "correct horse battery"
    with httpx.Client(base_url=multi_server.url, timeout=10) as c:
        assert c.post("/api/v1/auth/register",
                      json={"username": name, "password": password}).status_code == 201
        token = c.post("/api/v1/auth/login", json={"username": name, "password": password}
                       ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def big_source(multi_server, owner) -> str:
    """4M points: a raster or downsample of them is tenths of a second of CPU."""
    with httpx.Client(base_url=multi_server.url, timeout=120) as c:
        return _big_source(c, owner)


def _big_source(c: httpx.Client, h: dict) -> str:
    x = np.arange(4_000_000, dtype=np.float64)
    y = np.random.default_rng(3).standard_normal(x.size).cumsum()
    r = c.post(f"{DATA}/sources?name=big", content=arrow_bytes(pa.table({"x": x, "y": y})),
               headers={**h, "content-type": ARROW}, timeout=120)
    assert r.status_code == 201
    return f"{DATA}/sources/{r.json()['id']}"


@pytest.mark.parametrize("size, limit", [((4096, 4096), "max_raster_pixels"),
                                         ((3000, 3000), "max_raster_pixels"),
                                         ((5000, 10), "max_raster_side"),
                                         ((10, 0), "max_raster_side")])
def test_oversize_raster_is_refused_up_front(multi_server, owner, big_source, size, limit):
    c, h = httpx.Client(base_url=multi_server.url, timeout=30), owner
    start = time.perf_counter()
    r = c.get(f"{big_source}/aggregate", params={"x": "x", "y": "y", "width": size[0],
                                                 "height": size[1]}, headers=h)
    took = time.perf_counter() - start
    assert r.status_code == 422 and error_of(r) == "invalid_request", r.text[:300]
    assert limit in r.json()["detail"]
    assert took < 0.5, took  # refused before any reading or rendering


def test_the_largest_raster_allowed_is_served(multi_server, owner, big_source):
    c, h = httpx.Client(base_url=multi_server.url, timeout=30), owner
    r = c.get(f"{big_source}/aggregate", params={"x": "x", "y": "y", "width": 3840,
                                                 "height": 1092}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"], len(body["grid"]), len(body["grid"][0])) == (
        3840, 1092, 1092, 3840)
    assert sum(map(sum, body["grid"])) == 4_000_000


def test_healthz_stays_fast_while_large_views_run(multi_server, owner, big_source):
    h = owner
    views = [("aggregate", {"width": 2048, "height": 2048}),
             ("aggregate", {"width": 1600, "height": 900, "format": "png"}),
             ("downsample", {"n": 4000}),
             ("downsample", {"n": 2000, "method": "lttb"})]
    stop, done, failures = threading.Event(), [], []

    def keep_asking(view: str, params: dict) -> None:
        with httpx.Client(base_url=multi_server.url, timeout=120) as c:
            while not stop.is_set():
                r = c.get(f"{big_source}/{view}", params={"x": "x", "y": "y", **params},
                          headers=h)
                (done if r.status_code == 200 else failures).append(r.status_code)

    workers = [threading.Thread(target=keep_asking, args=v) for v in views]
    median, p90, worst = probe_while_busy(multi_server, workers, stop, done)
    assert not failures
    # On the loop, a probe waits behind whole views (encoding a 2048 x 2048 grid alone is
    # ~0.4 s): median ~0.7 s, max ~2.5 s here. Off it, behind a GIL switch interval or
    # two; the bounds leave room for a loaded 2-core machine (this test's own clients
    # read 4M-pixel answers too).
    assert median < 0.05 and p90 < 0.15 and worst < 1.0, (median, p90, worst)



def test_a_patch_slice_of_gzipped_ndarray_inflates_no_further_than_allowed():
    """A slice patch's value may be a gzipped ndarray too: it inflates no further than its
    shape says, and a shape past the body limit is refused before anything is inflated
    (a patch was the one way in that decoded without a bound)."""
    from services.common.errors import PayloadTooLarge

    def ndarray(raw: bytes, rows: int) -> dict:
        data = base64.b64encode(gzip.compress(raw, compresslevel=1)).decode()
        return {"type": "ndarray", "array": {"type": "bytes", "data": data},
                "shape": [rows], "dtype": "float64", "order": "little"}

    table = pa.table({"x": np.zeros(4)})
    zeros = np.zeros(1_000_000).tobytes()  # 8 MB in 8 kB
    whole = {"start": 0, "stop": 4, "step": None}
    with pytest.raises(cols.DataError, match="does not match its shape"):
        cols.patch(table, {"x": [[whole, ndarray(zeros, 4)]]}, max_bytes=1 << 20)
    with pytest.raises(PayloadTooLarge):
        cols.patch(table, {"x": [[whole, ndarray(zeros, 1_000_000)]]}, max_bytes=1 << 20)
    ok = cols.patch(table, {"x": [[whole, ndarray(np.arange(4.0).tobytes(), 4)]]},
                    max_bytes=1 << 20)
    assert ok["x"].to_pylist() == [0.0, 1.0, 2.0, 3.0]

"""The data service over its real HTTP API: sources, appends, patches, columns, durability."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pyarrow as pa
import pytest
from conftest import backend_args, start_install, stop_install
from servers import start_plotline

DATA = "/api/v1/data"
ARROW = "application/vnd.apache.arrow.stream"


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    return body["error"]


def arrow_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_create_append_read_json_and_arrow(multi_server, account):
    c, h = account["client"], account["headers"]
    r = c.post(f"{DATA}/sources", json={"name": "s", "columns": {"x": [1.0, 2.0],
                                                                  "n": [1, 2]}}, headers=h)
    assert r.status_code == 201
    src = r.json()
    assert src["rows"] == 2 and src["version"] == 1
    assert {col["name"]: col["dtype"] for col in src["columns"]} == {"x": "float64",
                                                                      "n": "int64"}
    hashes = {col["name"]: col["hash"] for col in src["columns"]}
    url = f"{DATA}/sources/{src['id']}"
    r = c.post(f"{url}/append", json={"columns": {"x": [3.0], "n": [3]}}, headers=h)
    assert r.status_code == 200 and r.json() == {"version": 2, "rows": 3}
    batch = pa.table({"x": pa.array([4.0, 5.0]), "n": pa.array([4, 5], pa.int64())})
    r = c.post(f"{url}/append", content=arrow_bytes(batch),
               headers={**h, "content-type": ARROW})
    assert r.status_code == 200 and r.json() == {"version": 3, "rows": 5}
    body = c.get(f"{url}/data", headers=h).json()
    assert body["columns"] == {"x": [1.0, 2.0, 3.0, 4.0, 5.0], "n": [1, 2, 3, 4, 5]}
    sliced = c.get(f"{url}/data", params={"columns": "n", "start": 1, "stop": 3},
                   headers=h).json()
    assert sliced["columns"] == {"n": [2, 3]}
    r = c.get(f"{url}/data", headers={**h, "accept": ARROW})
    assert r.headers["content-type"] == ARROW
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column("x").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    after = {col["name"]: col["hash"] for col in c.get(url, headers=h).json()["columns"]}
    assert after["x"] != hashes["x"] and after["n"] != hashes["n"]


def decoded(column):
    """A column of an `encoding=binary` read: Bokeh's ndarray encoding back to values."""
    import base64

    import numpy as np

    if isinstance(column, list):
        return column
    assert column["type"] == "ndarray" and column["order"] == "little"
    values = np.frombuffer(base64.b64decode(column["array"]["data"]), dtype=column["dtype"])
    assert list(values.shape) == column["shape"]
    return values.tolist()


def test_binary_reads_are_bokehs_ndarrays_with_the_same_values(multi_server, account):
    c, h = account["client"], account["headers"]
    columns = {"f": [0.5, -1.25, None], "i": [1, -2, 3], "big": [2 ** 60, 0, 1],
               "s": ["a", "b", "c"], "t": [0, 1_000, 2_000]}
    r = c.post(f"{DATA}/sources", headers=h, json={
        "name": "bin", "columns": columns, "dtypes": {"t": "datetime64[ms]"}})
    assert r.status_code == 201, r.text
    url = f"{DATA}/sources/{r.json()['id']}/data"
    plain = c.get(url, headers=h).json()
    binary = c.get(url, headers=h, params={"encoding": "binary"}).json()
    assert binary["rows"] == plain["rows"] == 3 and binary["version"] == plain["version"]
    kinds = {name: col["dtype"] if isinstance(col, dict) else "list"
             for name, col in binary["columns"].items()}
    # floats and small ints as typed arrays; int64 beyond 2**53 and strings stay lists
    assert kinds == {"f": "float64", "i": "int32", "big": "list", "s": "list", "t": "float64"}
    for name, column in binary["columns"].items():
        got, want = decoded(column), plain["columns"][name]
        if name == "f":  # a float null is NaN (JSON: Bokeh's {"type": "number", ...})
            assert got[:2] == want[:2] and want[2]["value"] == "nan" and got[2] != got[2]
        else:
            assert got == want, name
    r = c.get(url, headers=h, params={"encoding": "base64"})
    assert r.status_code == 422 and r.json()["error"]


def test_rollover_patch_and_columns(multi_server, account):
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "r", "columns": {"x": [0, 1, 2]},
                                          "rollover": 4}, headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    for i in range(3, 10):
        assert c.post(f"{url}/append", json={"columns": {"x": [i]}}, headers=h
                      ).status_code == 200
    assert c.get(f"{url}/data", headers=h).json()["columns"]["x"] == [6, 7, 8, 9]
    r = c.post(f"{url}/append", json={"columns": {"x": [10, 11]}, "rollover": 3}, headers=h)
    assert r.json()["rows"] == 3
    r = c.post(f"{url}/patch", json={"patches": {"x": [[0, 100]]}}, headers=h)
    assert r.status_code == 200
    assert c.get(f"{url}/data", headers=h).json()["columns"]["x"] == [100, 10, 11]
    hashes = {col["name"]: col["hash"] for col in c.get(url, headers=h).json()["columns"]}
    r = c.put(f"{url}/columns/y", json={"values": [1.5, 2.5, 3.5]}, headers=h)
    assert r.status_code == 200
    cols = {col["name"]: col["hash"] for col in c.get(url, headers=h).json()["columns"]}
    assert cols["x"] == hashes["x"]  # untouched column, same hash
    r = c.put(f"{url}/columns/y", json={"values": [1.0]}, headers=h)
    assert r.status_code == 422
    assert c.delete(f"{url}/columns/x", headers=h).status_code == 200
    assert list(c.get(f"{url}/data", headers=h).json()["columns"]) == ["y"]


@pytest.mark.parametrize("body", [
    {"name": "bad", "columns": {"x": [1, 2], "y": [1]}},          # unequal lengths
    {"name": "bad", "columns": {"x": [1, "a"]}},                  # mixed types
    {"name": "bad", "columns": {"x": []}},                        # empty without dtype
    {"name": "bad", "columns": {"x": [1]}, "rollover": -1},
    {"columns": {"x": [1]}},                                       # no name
])
def test_bad_sources_are_422_and_nothing_is_stored(multi_server, account, body):
    c, h = account["client"], account["headers"]
    before = c.get(f"{DATA}/sources", headers=h).json()
    r = c.post(f"{DATA}/sources", json=body, headers=h)
    assert r.status_code == 422, r.text
    assert c.get(f"{DATA}/sources", headers=h).json() == before


def test_bad_appends_change_nothing(multi_server, account):
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "v", "columns": {"x": [1.0], "s": ["a"]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    for bad in ({"columns": {"x": [1.0]}},                  # missing column
                {"columns": {"x": ["z"], "s": ["b"]}},      # wrong type
                {"columns": {"x": [1.0, 2.0], "s": ["b"]}},  # unequal
                {"columns": {"x": [1.0], "s": ["b"], "extra": [1]}}):
        r = c.post(f"{url}/append", json=bad, headers=h)
        assert r.status_code == 422, (bad, r.text)
    r = c.post(f"{url}/append", content=b"not arrow", headers={**h, "content-type": ARROW})
    assert r.status_code == 422 and error_of(r)
    r = c.post(f"{url}/patch", json={"patches": {"x": [[5, 1.0]]}}, headers=h)
    assert r.status_code == 422
    r = c.post(f"{url}/append", content=b"{", headers={**h, "content-type":
                                                       "application/json"})
    assert r.status_code == 422
    assert c.get(url, headers=h).json()["version"] == 1
    assert c.get(f"{url}/data", headers=h).json()["columns"] == {"x": [1.0], "s": ["a"]}


def test_sources_are_private(multi_server, account):
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "p", "columns": {"x": [1]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    assert c.get(url).status_code == 401
    other = "o" + account["username"][1:]
    c.post("/api/v1/auth/register", json={"username": other, "password": "password123"})
    token = c.post("/api/v1/auth/login", json={"username": other, "password": "password123"}
                   ).json()["access_token"]
    c.cookies.clear()
    oh = {"Authorization": f"Bearer {token}"}
    for method, path, body in [("GET", "", None), ("GET", "/data", None),
                               ("POST", "/append", {"columns": {"x": [2]}}),
                               ("POST", "/patch", {"patches": {"x": [[0, 5]]}}),
                               ("PUT", "/columns/y", {"values": [1]}),
                               ("PUT", "/data", {"columns": {"x": [9]}}),
                               ("DELETE", "/columns/x", None), ("DELETE", "", None)]:
        r = c.request(method, f"{url}{path}", json=body, headers=oh)
        assert r.status_code == 404, (method, path, r.status_code)
    assert c.get(f"{url}/data", headers=h).json()["columns"] == {"x": [1]}
    assert src["id"] not in [s["id"] for s in c.get(f"{DATA}/sources", headers=oh).json()]


def test_replace_rows(multi_server, account):
    """PUT .../data replaces every row and column (Bokeh's `source.data = {...}`); the source
    keeps its id and rollover; a bad body is 422 and changes nothing; anonymous is 401."""
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "r", "columns": {"x": [1, 2]},
                                           "rollover": 3}, headers=h).json()
    url = f"{DATA}/sources/{src['id']}"
    r = c.put(f"{url}/data", json={"columns": {"a": [1.5, 2.5, 3.5, 4.5], "b": list("wxyz")}},
              headers=h)
    assert r.status_code == 200 and r.json() == {"version": 2, "rows": 3}  # rollover 3
    assert c.get(f"{url}/data", headers=h).json()["columns"] == {"a": [2.5, 3.5, 4.5],
                                                                  "b": ["x", "y", "z"]}
    r = c.put(f"{url}/data", content=arrow_bytes(pa.table({"t": [7]})),
              headers={**h, "content-type": ARROW})
    assert r.status_code == 200 and r.json() == {"version": 3, "rows": 1}
    for bad in ({"columns": {"a": [1], "b": [1, 2]}}, {"columns": {"a": [[1]]}}, {"rows": 1},
                {"columns": {"a": [1]}, "dtypes": {"a": "complex"}}):
        r = c.put(f"{url}/data", json=bad, headers=h)
        assert r.status_code == 422 and error_of(r), (bad, r.text)
    r = c.put(f"{url}/data", content=b"not arrow", headers={**h, "content-type": ARROW})
    assert r.status_code == 422
    assert httpx.put(f"{multi_server.url}{url}/data", json={"columns": {"x": [1]}}
                     ).status_code == 401
    after = c.get(url, headers=h).json()
    assert (after["version"], after["rows"], after["rollover"]) == (3, 1, 3)
    assert c.get(f"{url}/data", headers=h).json()["columns"] == {"t": [7]}


@pytest.mark.parametrize("body", ["json", "arrow"])
def test_an_append_sent_again_with_its_idempotency_key_appends_nothing(multi_server, account,
                                                                        body):
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "k", "columns": {"x": [0]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}/append"

    def send(key: str, x: int) -> httpx.Response:
        headers = {**h, "Idempotency-Key": key}
        if body == "json":
            return c.post(url, json={"columns": {"x": [x]}}, headers=headers)
        return c.post(url, content=arrow_bytes(pa.table({"x": pa.array([x], pa.int64())})),
                      headers={**headers, "content-type": ARROW})

    first = send("a-1", 1)
    assert first.status_code == 200 and first.json() == {"version": 2, "rows": 2}
    assert send("a-2", 2).json() == {"version": 3, "rows": 3}
    assert send("a-1", 1).json() == {"version": 2, "rows": 2}  # the retry: as the first time
    rows = c.get(f"{DATA}/sources/{src['id']}/data", headers=h).json()["columns"]["x"]
    assert rows == [0, 1, 2]
    for bad in ("x" * 65, "no spaces", "a/b", "ü".encode()):
        r = c.post(url, json={"columns": {"x": [9]}}, headers={**h, "Idempotency-Key": bad})
        assert r.status_code == 422 and error_of(r), bad
    # the source remembers its last 64 keys: an older one is a new append again
    for k in range(64):
        send(f"b-{k}", 10 + k)
    assert send("a-2", 2).json()["version"] == 2 + 1 + 64 + 1
    assert c.get(f"{DATA}/sources/{src['id']}", headers=h).json()["rows"] == 3 + 64 + 1


def test_append_front_door_answers_like_the_api(multi_server, account):
    """Appends are answered before FastAPI (services/data/fastappend.py): the same
    authentication, CSRF check, errors and metrics as every other route."""
    c, h = account["client"], account["headers"]
    src = c.post(f"{DATA}/sources", json={"name": "f", "columns": {"x": [0.0]}},
                 headers=h).json()
    url = f"{DATA}/sources/{src['id']}/append"
    one = {"columns": {"x": [1.0]}}
    r = httpx.post(f"{multi_server.url}{url}", json=one)
    assert r.status_code == 401 and error_of(r) == "unauthorized"
    c.post("/api/v1/auth/login", json={"username": account["username"],
                                       "password": account["password"]})
    r = c.post(url, json=one)  # the login cookie without the CSRF header
    assert r.status_code == 403 and error_of(r) == "csrf_failed"
    r = c.post(url, json=one, headers={"X-CSRF-Token": c.cookies["plotline_csrf"]})
    assert r.status_code == 200 and r.json() == {"version": 2, "rows": 2}
    c.cookies.clear()
    for query in ("rollover=abc", "rollover=-1"):
        r = c.post(f"{url}?{query}", content=arrow_bytes(pa.table({"x": [5.0]})),
                   headers={**h, "content-type": ARROW})
        assert r.status_code == 422 and error_of(r) == "invalid_request", (query, r.text)
    r = c.post(f"{url}?rollover=2", content=arrow_bytes(pa.table({"x": [5.0]})),
               headers={**h, "content-type": ARROW})
    assert r.json() == {"version": 3, "rows": 2}
    r = c.post(f"{DATA}/sources/not-an-id/append", json=one, headers=h)
    assert r.status_code == 404 and error_of(r)
    assert c.get(f"{DATA}/sources/{src['id']}/data", headers=h).json()["columns"] == {
        "x": [1.0, 5.0]}
    metrics = httpx.get(f"{multi_server.internal_url}/metrics").text
    assert ('route="/api/v1/data/sources/{source_id}/append",service="data",status="403"'
            in metrics)


def test_append_body_limit(tmp_path):
    """Over PLOTLINE_DATA_MAX_BODY_BYTES: 413, whether announced or streamed, and nothing
    is appended."""
    server = start_plotline(tmp_path, "--backend", "file",
                            env={"PLOTLINE_DATA_MAX_BODY_BYTES": "65536"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            src = c.post(f"{DATA}/sources", json={"name": "b", "columns": {"x": [0.0]}}
                         ).json()
            url = f"{DATA}/sources/{src['id']}/append"
            big = {"columns": {"x": [1.5] * 20_000}}
            r = c.post(url, json=big)
            assert r.status_code == 413 and error_of(r) == "payload_too_large"

            def chunks():  # no Content-Length
                for _ in range(4):
                    yield b"[1.5" + b", 1.5" * 5000

            r = c.post(url, content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413 and error_of(r) == "payload_too_large"
            assert c.post(url, json={"columns": {"x": [2.5]}}).status_code == 200
            assert c.get(f"{DATA}/sources/{src['id']}/data").json()["columns"] == {
                "x": [0.0, 2.5]}
    finally:
        server.stop()


def test_acknowledged_appends_survive_sigkill(tmp_path, request):
    """Kill the server during a stream of appends: after a restart every acknowledged
    append is there, in order, and nothing unacknowledged is half there."""
    server = start_install(tmp_path, *backend_args("file", request))
    acked: list[int] = []
    stop = threading.Event()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        src = c.post(f"{DATA}/sources", json={"name": "d", "columns": {"g": [-1, -1, -1]}}
                     ).json()
        url = f"{DATA}/sources/{src['id']}/append"

        def appender() -> None:
            i = 0
            while not stop.is_set():
                try:  # each append is three rows of the same value: a torn one would show
                    r = c.post(url, json={"columns": {"g": [i, i, i]}})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(i)
                i += 1

        thread = threading.Thread(target=appender)
        thread.start()
        while len(acked) < 150:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        stop.set()
        thread.join(10)
    nats = server.nats_url
    server.stop()
    restarted = start_plotline(tmp_path, "--nats-url", nats, "--backend", "file")
    try:
        g = httpx.get(f"{restarted.url}{DATA}/sources/{src['id']}/data").json()["columns"]["g"]
    finally:
        restarted.stop()
        stop_install(server)
    assert g[:3] == [-1, -1, -1] and len(g) % 3 == 0
    groups = [g[i:i + 3] for i in range(3, len(g), 3)]
    assert all(len(set(group)) == 1 for group in groups)
    values = [group[0] for group in groups]
    assert values == list(range(len(values)))  # in order, no gap, no duplicate
    assert values[:len(acked)] == acked and len(values) in (len(acked), len(acked) + 1)


@pytest.mark.parametrize("rollover", [None, 25])
def test_small_appends_are_not_a_blob_each(tmp_path, request, rollover):
    """Single-row appends stay inside the manifest until they add up to inline_tail_bytes,
    then go to one blob chunk together: the rows are all there, in order, after a restart,
    and far fewer blobs than appends were written."""
    server = start_install(tmp_path, *backend_args("file", request))
    blobs = tmp_path / "data" / "blobs" / "data" / "sources"
    written: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        src = c.post(f"{DATA}/sources", json={"name": "tail", "columns": {
            "i": [-1], "s": ["start"]}}).json()
        url = f"{DATA}/sources/{src['id']}"
        for i in range(300):
            r = c.post(f"{url}/append", json={"columns": {"i": [i], "s": [f"row {i}"]},
                                              "rollover": rollover})
            assert r.status_code == 200 and r.json()["version"] == i + 2
            written |= {p.name for p in blobs.rglob("*.arrow")}
        before = c.get(f"{url}/data").json()["columns"]
    nats = server.nats_url
    server.stop()
    restarted = start_plotline(tmp_path, "--nats-url", nats, "--backend", "file")
    try:
        after = httpx.get(f"{restarted.url}{url}/data").json()["columns"]
    finally:
        restarted.stop()
        stop_install(server)
    expected = {"i": [-1, *range(300)], "s": ["start", *(f"row {i}" for i in range(300))]}
    if rollover:
        expected = {k: v[-rollover:] for k, v in expected.items()}
    assert before == after == expected
    # 300 appends; a blob only when the inline tail fills up (with a rollover of 25 rows
    # the tail never does: rows behind the window leave the manifest with their chunks)
    assert (1 if rollover else 2) <= len(written) <= 30


def test_downsample_and_aggregate(multi_server, account):
    import io

    import numpy as np
    from PIL import Image
    from tsdownsample import MinMaxLTTBDownsampler

    c, h = account["client"], account["headers"]
    x = np.arange(100_000, dtype="float64")
    y = np.sin(x / 500) + np.random.default_rng(1).normal(0, 0.1, x.size)
    body = arrow_bytes(pa.table({"x": x, "y": y}))
    src = c.post(f"{DATA}/sources", params={"name": "big"}, content=body,
                 headers={**h, "content-type": ARROW}).json()
    url = f"{DATA}/sources/{src['id']}"
    r = c.get(f"{url}/downsample", params={"x": "x", "y": "y", "n": 500}, headers=h)
    assert r.status_code == 200
    expected = MinMaxLTTBDownsampler().downsample(x, y, n_out=500)
    assert r.json()["x"] == x[expected].tolist() and r.json()["y"] == y[expected].tolist()
    window = c.get(f"{url}/downsample", params={"x": "x", "y": "y", "n": 100, "x0": 1000,
                                                "x1": 2000}, headers=h).json()
    assert min(window["x"]) >= 1000 and max(window["x"]) <= 2000
    r = c.get(f"{url}/downsample", params={"x": "x", "y": "y", "n": 1}, headers=h)
    assert r.status_code == 422
    r = c.get(f"{url}/downsample", params={"x": "y", "y": "x", "n": 100}, headers=h)
    assert r.status_code == 422 and "sorted" in r.json()["detail"]
    grid = c.get(f"{url}/aggregate", params={"x": "x", "y": "y", "width": 40, "height": 30},
                 headers=h).json()["grid"]
    assert len(grid) == 30 and len(grid[0]) == 40 and sum(map(sum, grid)) == x.size
    png = c.get(f"{url}/aggregate", params={"x": "x", "y": "y", "width": 40, "height": 30,
                                            "format": "png"}, headers=h)
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (40, 30)

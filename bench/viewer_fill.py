"""How the viewer fills a bound source: JSON numbers or Bokeh's binary arrays, end to end.

A source of ROWS rows (float64 x and y, an int64 counter) is read by headless Chromium from
a page of the server, as viewer.js does (`GET /data/sources/<id>/data?doc=…`): the time
from the request to columns a ColumnDataSource can take, once as JSON lists
(`response.json()`), once with `encoding=binary` (numeric columns as Bokeh's ndarray
encoding: base64 bytes, made typed arrays in the page). Both include the server's encoding
and the transfer; alternated, REPEAT times each, medians printed with the bytes sent.
Arrow IPC is not a candidate in the browser: BokehJS has no Arrow decoder, and a JS Arrow
library would be a second large download in every frame. ROWS is the large-source
threshold: above it the viewer reads views, never the whole source.

Run: .venv/bin/python bench/viewer_fill.py   (~30 s, everything on 127.0.0.1)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
from _util import BIN, free_port, run_in_tmp, start, tcp_ready

ROWS = 100_000
REPEAT = 7
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]

# the page's side: fetch, decode, and report ms and bytes (as viewer.js's typed())
READ = """async ([url, binary]) => {
  const t0 = performance.now();
  const response = await fetch(url + (binary ? "&encoding=binary" : ""));
  const text = await response.text();
  const body = JSON.parse(text);
  const columns = {};
  for (const [name, c] of Object.entries(body.columns)) {
    if (c && c.type === "ndarray") {
      const raw = atob(c.array.data), bytes = new Uint8Array(raw.length);
      for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
      columns[name] = new ({float64: Float64Array, int32: Int32Array})[c.dtype](bytes.buffer);
    } else {
      columns[name] = c;
    }
  }
  if (columns.x.length !== body.rows) throw new Error("short read");
  return [performance.now() - t0, text.length];
}"""


def bench(tmp: Path, procs: list) -> None:
    from playwright.sync_api import sync_playwright

    port, internal = free_port(), free_port()
    argv = [str(BIN / "plotline"), "serve", "--ip", "127.0.0.1", "--port", str(port),
            "--internal-port", str(internal), "-D", str(tmp / "data")]  # as `make run`
    procs.append(start(argv, tmp / "plotline.log", lambda: tcp_ready(internal) and httpx.get(
        f"http://127.0.0.1:{internal}/readyz", timeout=1).status_code == 200, timeout=60))
    base = f"http://127.0.0.1:{port}"
    rng = np.random.default_rng(1)
    table = pa.table({"x": np.arange(ROWS, dtype="float64"), "y": rng.normal(0, 1, ROWS),
                      "n": np.arange(ROWS, dtype="int64")})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with httpx.Client(base_url=base, timeout=60) as c:
        made = c.post("/api/v1/data/sources", params={"name": "fill"},
                      content=sink.getvalue().to_pybytes(),
                      headers={"content-type": "application/vnd.apache.arrow.stream"})
        made.raise_for_status()
        source = made.json()["id"]
    url = f"{base}/api/v1/data/sources/{source}/data?columns=x,y,n"
    times: dict[bool, list[float]] = {False: [], True: []}
    sizes: dict[bool, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        tab = browser.new_page()
        tab.goto(f"{base}/login")  # any page of the server: same origin
        for binary in (False, True):  # warm both paths once
            tab.evaluate(READ, [url, binary])
        for _ in range(REPEAT):
            for binary in (False, True):
                ms, size = tab.evaluate(READ, [url, binary])
                times[binary].append(ms)
                sizes[binary] = size
        browser.close()
    json_ms, binary_ms = (statistics.median(times[b]) for b in (False, True))
    print(f"{ROWS:,} rows (float64 x, y; int64 n), read by Chromium from the server, "
          f"median of {REPEAT}:")
    print(f"  JSON lists      {json_ms:8.1f} ms  {sizes[False] / 1e6:6.2f} MB")
    print(f"  binary arrays   {binary_ms:8.1f} ms  {sizes[True] / 1e6:6.2f} MB")
    print(f"  binary is {json_ms / binary_ms:.1f}x faster end to end "
          f"(the viewer reads binary)")


if __name__ == "__main__":
    sys.exit(run_in_tmp(bench))

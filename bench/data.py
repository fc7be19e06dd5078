"""Data benchmark: appends (Arrow, JSON, single rows) and the large-data views.

One real `plotline serve --backend file` (single user, its own nats-server), every request on
127.0.0.1, one run. Load is generated in this process (raw keep-alive HTTP/1.1 on uvloop,
bodies encoded once beforehand); each figure is printed with its target and MET/NOT MET.

1. Append throughput, Arrow IPC batches of 100k rows x 4 float64 columns into one source,
   CLIENTS concurrent connections for ~3 s: rows acknowledged / wall time, target
   >= 2,000,000 rows/s.
2. The same with JSON `{"columns": {...}}` bodies of 10k rows, target >= 200,000 rows/s.
3. Single-row appends spread over 100 sources, each updating 10x/s (DESIGN.md's live
   source), so 1,000 appends/s offered: open loop (Poisson arrivals over the 100 sources,
   5 s; latency counted from the scheduled send, so a slow answer delays nothing and
   queueing is measured, not hidden): p50 / p99 acknowledgement latency, target p99 <= 20 ms.
   Printed beside it: the same at other rates, and flat out: 20 clients in a closed loop
   (each sends its next append when answered), whose latency is queueing at saturation
   (20 in flight / throughput), with the server CPU per append; its p99 is also set
   against the 20 ms.
4. `downsample` of a 100M-row source (x = arange, y = random walk, float64) to 2,000 points
   over HTTP, warm: median and max of 10 calls, target median <= 100 ms; beside it
   tsdownsample's MinMaxLTTBDownsampler on the same arrays here (median of 5) and the ratio.
5. `aggregate` of 10M points to 800x600 (count) over HTTP, JSON grid and PNG, beside
   datashader's Canvas(800, 600).points(...) here on the same data, and the ratios. The issue
   sets no target for this one.

Run: .venv/bin/python bench/data.py   (needs ~6 GB of RAM: 1.6 GB here, ~3.5 GB in the server)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
from _util import (
    BIN,
    RawHttp,
    cpu_seconds,
    fmt_s,
    free_port,
    http_ready,
    met,
    percentile,
    run_fast,
    run_in_tmp,
    start,
    start_nats,
)

ARROW = "application/vnd.apache.arrow.stream"
BASE = "/api/v1/data/sources"
ARROW_TARGET, JSON_TARGET, P99_TARGET, DOWNSAMPLE_TARGET = 2_000_000, 200_000, 20e-3, 0.100
CLIENTS, SECONDS, MAX_BATCHES = 4, 3.0, 1_000
ARROW_ROWS, JSON_ROWS = 100_000, 10_000
SOURCES, SOURCE_RATE, SINGLE_CLIENTS, SINGLES = 100, 10, 20, 5_000
OPEN_RATES, OPEN_SECONDS, OPEN_CONNECTIONS = (200, 1_500), 5.0, 64
BIG_ROWS, BIG_CHUNK, AGG_ROWS, W, H = 100_000_000, 10_000_000, 10_000_000, 800, 600
COLUMNS = ("a", "b", "c", "d")
perf = time.perf_counter



def raw(method: str, path: str, port: int, body: bytes, ctype: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def arrow_body(columns: dict[str, np.ndarray]) -> bytes:
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def create(client: httpx.Client, name: str, columns: dict[str, np.ndarray]) -> str:
    r = client.post(f"{BASE}?name={name}", content=arrow_body(columns),
                    headers={"content-type": ARROW})
    r.raise_for_status()
    return r.json()["id"]


async def throughput(port: int, request: bytes, rows: int, pid: int) -> tuple[float, float]:
    """CLIENTS connections send `request` back to back for SECONDS: (rows/s, server CPU)."""
    conns = [await RawHttp.connect(port, keep_body=True) for _ in range(CLIENTS)]
    done, cpu0, t0 = [0], cpu_seconds([pid]), perf()

    async def worker(conn: RawHttp) -> None:
        while perf() - t0 < SECONDS and done[0] < MAX_BATCHES * rows:
            status, _, answer = await conn.send(request)
            assert status == 200, answer[:300]
            done[0] += rows

    await asyncio.gather(*(worker(c) for c in conns))
    wall = perf() - t0
    for c in conns:
        c.transport.close()
    return done[0] / wall, (cpu_seconds([pid]) - cpu0) / wall


async def singles(port: int, ids: list[str], count: int = SINGLES) -> list[float]:
    rnd, left, latencies = random.Random(1), [count], []
    bodies = [raw("POST", f"{BASE}/{i}/append", port, json.dumps(
        {"columns": {c: [1.5] for c in COLUMNS}}).encode(), "application/json") for i in ids]
    conns = [await RawHttp.connect(port, keep_body=True) for _ in range(SINGLE_CLIENTS)]

    async def worker(conn: RawHttp) -> None:
        while left[0] > 0:
            left[0] -= 1
            t = perf()
            status, _, answer = await conn.send(rnd.choice(bodies))
            latencies.append(perf() - t)
            assert status == 200, answer[:300]

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        c.transport.close()
    return sorted(latencies)


async def paced(port: int, ids: list[str], rate: float) -> list[float]:
    """Open loop: appends at `rate`/s (Poisson) for OPEN_SECONDS; latency from schedule."""
    rnd = random.Random(2)
    bodies = [raw("POST", f"{BASE}/{i}/append", port, json.dumps(
        {"columns": {c: [2.5] for c in COLUMNS}}).encode(), "application/json") for i in ids]
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(OPEN_CONNECTIONS):
        idle.put_nowait(await RawHttp.connect(port, keep_body=True))
    latencies: list[float] = []

    async def one(due: float, body: bytes) -> None:
        conn = await idle.get()
        status, _, answer = await conn.send(body)
        latencies.append(perf() - due)
        idle.put_nowait(conn)
        assert status == 200, answer[:300]

    tasks, t0, due = [], perf(), 0.0
    while due < OPEN_SECONDS:
        due += rnd.expovariate(rate)
        await asyncio.sleep(max(0.0, t0 + due - perf()))
        tasks.append(asyncio.create_task(one(t0 + due, rnd.choice(bodies))))
    await asyncio.gather(*tasks)
    while not idle.empty():
        idle.get_nowait().transport.close()
    return sorted(latencies)


def timed(fn, times: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(times):
        t = perf()
        fn()
        out.append(perf() - t)
    return out


def bench(tmp: Path, procs: list) -> None:
    nats_server = start_nats(tmp)
    procs.append(nats_server.process)
    nats_url = nats_server.url
    port = free_port()
    argv = [str(BIN / "plotline"), "serve", "--ip", "127.0.0.1", "--port", str(port), "-D",
            str(tmp / "data"), "--backend", "file", "--nats-url", nats_url]
    t = perf()
    server = start(argv, tmp / "plotline.log", lambda: http_ready(port + 1), timeout=180)
    procs.append(server)
    print(f"server ready (/readyz, incl. kernel warm-up) in {perf() - t:.1f} s; "
          f"{len(os.sched_getaffinity(0))} CPUs shared by server and bench")
    rng = np.random.default_rng(1)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)

    # 1 and 2: throughput into one source each
    cols = {c: rng.random(ARROW_ROWS) for c in COLUMNS}
    for label, rows, ctype, body, target in (
            ("Arrow", ARROW_ROWS, ARROW, arrow_body(cols), ARROW_TARGET),
            ("JSON", JSON_ROWS, "application/json",
             json.dumps({"columns": {c: v[:JSON_ROWS].tolist() for c, v in cols.items()}})
             .encode(), JSON_TARGET)):
        source = create(client, f"tp-{label}", {c: v[:10] for c, v in cols.items()})
        request = raw("POST", f"{BASE}/{source}/append", port, body, ctype)
        rate, cpu = run_fast(throughput(port, request, rows, server.pid))
        total = client.get(f"{BASE}/{source}").json()["rows"]
        print(f"1/2. append {label}, {rows:,}-row batches ({len(body) / 1e6:.2f} MB) x 4 float64"
              f", {CLIENTS} clients, one source, ~{SECONDS:g} s: {rate:,.0f} rows/s "
              f"(server CPU {cpu:.0%}; source now {total:,} rows)  target >= {target:,} rows/s:"
              f" {met(rate >= target)}")

    # 3: single-row appends over 100 sources
    ids = [create(client, f"one-{i}", {c: np.zeros(1) for c in COLUMNS}) for i in range(SOURCES)]
    run_fast(singles(port, ids, 500))  # warm up: the first append to a source reads it
    rate = SOURCES * SOURCE_RATE
    lat = run_fast(paced(port, ids, rate))
    p99 = percentile(lat, 99)
    print(f"3. single-row append over {SOURCES} sources, each {SOURCE_RATE}x/s = {rate:,} "
          f"appends/s, open loop ({len(lat):,} appends): p50 {fmt_s(percentile(lat, 50))}  "
          f"p99 {fmt_s(p99)}  max {fmt_s(lat[-1])}  target p99 <= {fmt_s(P99_TARGET)}: "
          f"{met(p99 <= P99_TARGET)}")
    for other in OPEN_RATES:
        lat = run_fast(paced(port, ids, other))
        print(f"   open loop at {other:,} appends/s ({len(lat):,} appends): p50 "
              f"{fmt_s(percentile(lat, 50))}  p99 {fmt_s(percentile(lat, 99))}  max "
              f"{fmt_s(lat[-1])}")
    cpu0, t = cpu_seconds([server.pid]), perf()
    lat = run_fast(singles(port, ids))
    wall, cpu = perf() - t, cpu_seconds([server.pid]) - cpu0
    p99 = percentile(lat, 99)
    print(f"   flat out, {SINGLE_CLIENTS} clients in a closed loop ({SINGLES:,} appends): "
          f"{SINGLES / wall:,.0f} appends/s, server CPU {fmt_s(cpu / SINGLES)} per append; "
          f"p50 {fmt_s(percentile(lat, 50))}  p99 {fmt_s(p99)}  max {fmt_s(lat[-1])} "
          f"(p99 vs {fmt_s(P99_TARGET)}: {met(p99 <= P99_TARGET)})")

    # 4: downsample a 100M-row source
    x = np.arange(BIG_ROWS, dtype=np.float64)
    y = np.cumsum(rng.standard_normal(BIG_ROWS))
    t = perf()
    big = create(client, "big", {"x": x[:BIG_CHUNK], "y": y[:BIG_CHUNK]})
    for lo in range(BIG_CHUNK, BIG_ROWS, BIG_CHUNK):
        r = client.post(f"{BASE}/{big}/append", headers={"content-type": ARROW},
                        content=arrow_body({"x": x[lo:lo + BIG_CHUNK], "y": y[lo:lo + BIG_CHUNK]}))
        r.raise_for_status()
    print(f"4. source of {BIG_ROWS:,} rows (x, y float64) loaded in {BIG_CHUNK:,}-row Arrow "
          f"bodies in {perf() - t:.1f} s ({BIG_ROWS / (perf() - t):,.0f} rows/s, incl. encoding)")
    url = f"{BASE}/{big}/downsample?x=x&y=y&n=2000"

    def call() -> None:
        r = client.get(url)
        r.raise_for_status()
        assert r.json()["n"] == 2000

    first = timed(call, 1)[0]
    http = timed(call, 10)
    from tsdownsample import MinMaxLTTBDownsampler
    ds_ = MinMaxLTTBDownsampler()
    ds_.downsample(x, y, n_out=2000)
    direct = statistics.median(timed(partial(ds_.downsample, x, y, n_out=2000), 5))
    med = statistics.median(http)
    print(f"   downsample to 2,000 over HTTP, warm, 10 calls: median {fmt_s(med)}  max "
          f"{fmt_s(max(http))} (first call {fmt_s(first)})  target median <= "
          f"{fmt_s(DOWNSAMPLE_TARGET)}: {met(med <= DOWNSAMPLE_TARGET)}")
    print(f"   tsdownsample MinMaxLTTBDownsampler directly (median of 5): {fmt_s(direct)}; "
          f"HTTP / direct = {med / direct:.2f}x")
    del x, y
    client.delete(f"{BASE}/{big}").raise_for_status()

    # 5: aggregate 10M points
    ax, ay = rng.standard_normal(AGG_ROWS), rng.standard_normal(AGG_ROWS)
    agg = create(client, "agg", {"x": ax, "y": ay})
    import datashader as ds
    import pandas as pd

    def shade() -> None:
        ds.Canvas(plot_width=W, plot_height=H).points(
            pd.DataFrame({"x": ax, "y": ay}, copy=False), "x", "y", ds.count())

    shade()
    direct = statistics.median(timed(shade, 5))
    print(f"5. aggregate {AGG_ROWS:,} points to {W}x{H} count (no target in the issue); "
          f"datashader directly (median of 5): {fmt_s(direct)}")
    for form, query in (("JSON grid", ""), ("PNG", "&format=png")):
        url5 = f"{BASE}/{agg}/aggregate?x=x&y=y&width={W}&height={H}&agg=count{query}"
        sizes = []

        def get() -> None:
            r = client.get(url5)  # noqa: B023
            r.raise_for_status()
            sizes.append(len(r.content))  # noqa: B023

        first = timed(get, 1)[0]
        med = statistics.median(timed(get, 5))
        print(f"   over HTTP, {form} ({sizes[-1] / 1e6:.2f} MB): median of 5 {fmt_s(med)} "
              f"(first {fmt_s(first)}); HTTP / direct = {med / direct:.2f}x")
    client.close()


def main() -> int:
    return run_in_tmp(bench)

if __name__ == "__main__":
    sys.exit(main())

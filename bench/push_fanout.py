"""Push fan-out benchmark: one producer, one source, 1,000 watching clients.

Plotline: a `plotline serve --backend file` holds the data; the measured push process is a
separate `plotline serve push` on the same NATS (its CPU and memory are its own). A
producer appends one row at a time to one source; every append is an `appended` event
that push sends to each of the 1,000 clients subscribed to `data:<source>`. Each row
carries the producer's clock (`t`), so a client knows the delivery latency of what it
receives (one machine, one clock).

Load is generated in separate processes (LOADGENS of them, picows clients: a frame costs
a callback); each counts the frames it receives and parses every SAMPLE-th one for
latency.

Printed, in one run:
1. Delivered messages/s and p50/p99 latency at fixed offered rates (appends/s x clients):
   targets >= 25,000 delivered msgs/s from one push process, p99 <= 100 ms at 10,000/s.
2. RSS of the push process per idle connection, with 5,000 idle clients subscribed to a
   quiet channel: target <= 40 KB.
3. The same workload against `bokeh serve` (bench/baselines/bokeh_stream: every session
   streams each row into its own ColumnDataSource; raw protocol clients in
   bench/baselines/bokeh_client.py), at 10 appends/s, and the ratio of the best delivered
   rates: target >= 10x.

Run: .venv/bin/python bench/push_fanout.py   (or `make bench`). Everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _util import (
    BIN,
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
    stop,
    tcp_ready,
)

CLIENTS, IDLE_CLIENTS, LOADGENS, SAMPLE = 1_000, 5_000, 4, 10
RATES = (10, 40, 80)  # appends/s; x 1,000 clients = offered messages/s
SECONDS = 5.0
DELIVERED_TARGET, P99_TARGET, IDLE_TARGET, RATIO_TARGET = 25_000, 0.100, 40 << 10, 10.0
BASELINE = Path(__file__).parent / "baselines"
perf = time.perf_counter



def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the load generator (a child process) -------------------------------------------------

async def loadgen(kind: str, url: str, channel: str, clients: int, seconds: float) -> dict:
    """Open `clients` connections and print READY; on GO count frames for `seconds` (0:
    until END); on END close everything and return the counts."""
    counting, finished = asyncio.Event(), asyncio.Event()
    got, latencies, closed, subscribed = [0], [], [0], [0]

    from picows import WSListener, WSMsgType, ws_connect

    class Counter(WSListener):  # picows: a frame costs a callback, no task switch
        def on_ws_connected(self, transport) -> None:  # type: ignore[no-untyped-def]
            transport.send(WSMsgType.TEXT, json.dumps(
                {"op": "subscribe", "channel": channel}).encode())

        def on_ws_frame(self, transport, frame) -> None:  # type: ignore[no-untyped-def]
            if frame.msg_type != WSMsgType.TEXT:
                return
            if not counting.is_set():
                if b'"subscribed"' in frame.get_payload_as_bytes():
                    subscribed[0] += 1
                return
            got[0] += 1
            if got[0] % SAMPLE == 0:
                sent = json.loads(frame.get_payload_as_bytes())["data"]["columns"]["t"][0]
                latencies.append(time.time() - sent)

        def on_ws_disconnected(self, transport) -> None:  # type: ignore[no-untyped-def]
            if not finished.is_set():
                closed[0] += 1

    transports = []

    async def plotline_client() -> None:
        transport, _ = await ws_connect(Counter, url)
        transports.append(transport)
        await finished.wait()
        transport.disconnect()

    async def bokeh_client() -> None:
        sys.path.insert(0, str(BASELINE))
        from bokeh_client import watch  # noqa: PLC0415

        def on_patch(sent: float) -> None:  # the streamed x is the producer's clock
            if counting.is_set():
                got[0] += 1
                if got[0] % SAMPLE == 0:
                    latencies.append(time.time() - sent)

        def on_ready() -> None:
            subscribed[0] += 1

        try:
            await watch(int(url), channel, on_patch, finished, on_ready=on_ready)
        except Exception:  # noqa: BLE001 - a session the server dropped
            closed[0] += 1

    tasks = []
    deadline = perf() + 300
    for i in range(clients):
        tasks.append(asyncio.create_task(plotline_client() if kind == "plotline"
                                         else bokeh_client()))
        if i % 50 == 49:  # in batches: a stampede loses connections (bokeh's above all)
            while subscribed[0] + closed[0] < len(tasks) and perf() < deadline:
                await asyncio.sleep(0.05)
    while subscribed[0] + closed[0] < clients and perf() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    print("READY", flush=True)
    read_line = asyncio.get_running_loop().run_in_executor
    await read_line(None, sys.stdin.readline)  # GO
    counting.set()
    t0 = perf()
    if seconds:
        await asyncio.sleep(seconds)
        counting.clear()
    wall = perf() - t0
    await read_line(None, sys.stdin.readline)  # END
    if not seconds:
        wall = perf() - t0
    finished.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"frames": got[0], "wall": wall, "latencies": latencies, "closed": closed[0],
            "subscribed": subscribed[0]}


class Loadgens:
    """LOADGENS child processes sharing `clients` connections."""

    def __init__(self, kind: str, url: str, channel: str, clients: int, seconds: float,
                 procs: int = LOADGENS) -> None:
        per = clients // procs
        self.children = [subprocess.Popen(
            [sys.executable, __file__, "--loadgen", kind, url, channel, str(per), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        for child in self.children:
            line = child.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"load generator did not start: {line!r}")

    def go(self) -> None:
        for child in self.children:
            child.stdin.write("GO\n")
            child.stdin.flush()

    def results(self) -> list[dict]:
        out = []
        for child in self.children:
            child.stdin.write("END\n")
            child.stdin.flush()
            out.append(json.loads(child.stdout.readline()))
            child.wait(30)
        return out


# --- producers -----------------------------------------------------------------------------

async def produce(make_post, rate: float, seconds: float) -> int:  # type: ignore[no-untyped-def]
    """`rate` appends a second for `seconds`, each stamped with the producer's clock."""
    post, close = await make_post()
    n, t0 = 0, perf()
    try:
        while perf() - t0 < seconds:
            await post(time.time())
            n += 1
            await asyncio.sleep(max(0.0, t0 + n / rate - perf()))
    finally:
        await close()
    return n


def measure(kind: str, url: str, channel: str, make_post, rate: float,  # type: ignore[no-untyped-def]
            pid: int) -> dict:
    gens = Loadgens(kind, url, channel, CLIENTS, SECONDS)
    cpu0 = cpu_seconds([pid])
    gens.go()
    appends = run_fast(produce(make_post, rate, SECONDS))
    cpu = cpu_seconds([pid]) - cpu0
    time.sleep(0.5)  # the last frames in flight
    results = gens.results()
    wall = max(r["wall"] for r in results)
    lat = sorted(x for r in results for x in r["latencies"])
    return {"rate": sum(r["frames"] for r in results) / wall, "appends": appends,
            "offered": appends * sum(r["subscribed"] for r in results) / wall,
            "closed": sum(r["closed"] for r in results),
            "p50": percentile(lat, 50) if lat else float("nan"),
            "p99": percentile(lat, 99) if lat else float("nan"), "cpu": cpu / wall}


def line(label: str, r: dict) -> str:
    return (f"{label}: offered {r['offered']:,.0f} msgs/s -> delivered {r['rate']:,.0f} "
            f"msgs/s  p50 {fmt_s(r['p50'])}  p99 {fmt_s(r['p99'])}  closed {r['closed']}  "
            f"(server CPU {r['cpu']:.0%})")


def bench(tmp: Path, procs: list) -> None:
    nats_server = start_nats(tmp)
    procs.append(nats_server.process)
    nats_url = nats_server.url
    os.environ["PLOTLINE_DATA_WARM_UP"] = "false"  # no aggregates here
    data_port, push_port = free_port(), free_port()
    data = start([str(BIN / "plotline"), "serve", "--port", str(data_port), "-D",
                  str(tmp / "data"), "--backend", "file", "--nats-url", nats_url],
                 tmp / "plotline.log", lambda: http_ready(data_port + 1))
    procs.append(data)
    push = start([str(BIN / "plotline"), "serve", "push", "--port", str(push_port),
                  "--nats-url", nats_url], tmp / "push.log", lambda: http_ready(push_port + 1))
    procs.append(push)
    with httpx.Client(base_url=f"http://127.0.0.1:{data_port}", timeout=30) as client:
        source, quiet = (client.post("/api/v1/data/sources", json={
            "name": name, "columns": {"t": [0.0]}}).json()["id"] for name in ("hot", "quiet"))
    url = f"ws://127.0.0.1:{push_port}/ws"

    async def make_post():  # type: ignore[no-untyped-def]
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{data_port}", timeout=30)

        async def post(now: float) -> None:
            r = await client.post(f"/api/v1/data/sources/{source}/append",
                                  json={"columns": {"t": [now]}})
            r.raise_for_status()

        return post, client.aclose

    print(f"{CLIENTS:,} clients on data:{source} through one `plotline serve push`, "
          f"{LOADGENS} load-generator processes, {SECONDS:g} s per rate; 2 CPUs shared by "
          "everything")
    ours = {}
    for rate in RATES:
        ours[rate] = measure("plotline", url, f"data:{source}", make_post, rate, push.pid)
        print(line(f"  Plotline at {rate} appends/s", ours[rate]), flush=True)
    best = max(r["rate"] for r in ours.values())
    at10 = ours[10]
    print(f"1. delivered: best {best:,.0f} msgs/s  target >= {DELIVERED_TARGET:,}: "
          f"{met(best >= DELIVERED_TARGET)};  p99 at 10,000 msgs/s {fmt_s(at10['p99'])}  "
          f"target <= {fmt_s(P99_TARGET)}: {met(at10['p99'] <= P99_TARGET)}")

    before = rss(push.pid)
    gens = Loadgens("plotline", url, f"data:{quiet}", IDLE_CLIENTS, 0, procs=5)
    time.sleep(2)
    per = (rss(push.pid) - before) / IDLE_CLIENTS
    gens.go()
    gens.results()
    print(f"2. idle: {IDLE_CLIENTS:,} subscribed idle connections add {per / 1024:,.1f} KB "
          f"each to the push process (RSS {before / 2**20:,.0f} -> "
          f"{(before + per * IDLE_CLIENTS) / 2**20:,.0f} MB)  target <= "
          f"{IDLE_TARGET >> 10} KB: {met(per <= IDLE_TARGET)}")
    stop(push)
    stop(data)
    baseline(tmp, procs, best)


def baseline(tmp: Path, procs: list, ours: float) -> None:
    if not (BASELINE / "bokeh_client.py").exists():
        print("3. bokeh serve baseline: bench/baselines/bokeh_client.py missing, skipped")
        return
    port, feed = free_port(), free_port()
    env = {**os.environ, "BOKEH_BASELINE_PUSH_PORT": str(feed)}
    argv = [sys.executable, "-m", "bokeh", "serve", str(BASELINE / "bokeh_stream"),
            "--port", str(port), "--address", "127.0.0.1", "--allow-websocket-origin",
            f"127.0.0.1:{port}", "--num-procs", "1"]
    with (tmp / "bokeh.log").open("wb") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    procs.append(server)
    deadline = perf() + 60  # (the feed port opens with the first session)
    while not tcp_ready(port) and perf() < deadline:
        time.sleep(0.2)
    sys.path.insert(0, str(BASELINE))
    from bokeh_client import push_row  # noqa: PLC0415

    async def make_post():  # type: ignore[no-untyped-def]
        async def post(now: float) -> None:
            await push_row(feed, now)

        async def close() -> None:
            pass

        return post, close

    # one rate: opening 1,000 bokeh sessions takes about a minute, and at 10 appends/s
    # bokeh serve already delivers less than it is offered
    rate = RATES[0]
    result = measure("bokeh", str(port), "/bokeh_stream", make_post, rate, server.pid)
    print(line(f"  bokeh serve at {rate} appends/s", result), flush=True)
    theirs = result["rate"]
    print(f"3. Plotline / bokeh serve, best delivered rates: {ours:,.0f} / {theirs:,.0f} = "
          f"{ours / theirs:.1f}x  target >= {RATIO_TARGET:g}x: "
          f"{met(ours / theirs >= RATIO_TARGET)}")
    stop(server)


def main() -> int:
    if sys.argv[1:2] == ["--loadgen"]:
        kind, url, channel, clients, seconds = sys.argv[2:7]
        print(json.dumps(run_fast(loadgen(kind, url, channel, int(clients),
                                          float(seconds)))), flush=True)
        return 0
    return run_in_tmp(bench)


if __name__ == "__main__":
    sys.exit(main())

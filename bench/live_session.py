"""Live session benchmark: a Python producer streams to 100 viewers; viewers' changes reach
Python callbacks. Plotline's `Session.live` beside `bokeh serve` with `push_session`, in one run.

The document: a line over a ColumnDataSource (t, y) and a Slider. Two phases per system:

1. Throughput: the producer calls `source.stream(<100 rows>, rollover=10,000)` as fast as
   it can for SECONDS (Plotline: `LiveDocument.flush()` every FLUSH_EVERY batches, so at
   most that many are outstanding; Bokeh: one batch per `add_next_tick_callback`, its
   client sending a PATCH-DOC each). VIEWERS websocket clients (a child process) count the
   rows they receive and the latency of each batch (t = the producer's clock in ms, one
   machine). Printed: rows/s delivered to every viewer (the slowest viewer's rows over the
   time from the first batch to its last arrival), delivery p50/p99.
2. Callbacks: with the producer idle, a viewer sends CHANGES slider values at CHANGE_HZ (a
   `patch` op on Plotline's socket; a PATCH-DOC on a raw Bokeh protocol connection to the
   pushed session); the producer's `slider.on_change` callback records when each arrives.
   Printed: viewer change -> Python callback latency p50/p99 (one machine, one clock).

Plotline: `plotline serve` as `make run` starts it (embedded, single user); its viewers
subscribe `data:<source>` (what a viewer page does). Bokeh: `bokeh serve` of an empty app
(bench/baselines/bokeh_live) to which `bokeh.client.push_session` brings the document; its
viewers are raw protocol clients of that one session (bench/baselines/bokeh_client.py),
and the producer runs Bokeh's own client loop (`ClientSession._loop_until_closed`, which
Bokeh calls "for testing ONLY": the client is meant for this, but no longer promoted).
Bokeh's client queues without backpressure, so its "produced" is what it queued, and
what reaches the viewers is counted for up to DRAIN_S after; after such a stream its
message loop dies of a RecursionError (a level per reply of the server's), so the callback
phase uses a fresh pushed session.

Limits: 2 CPUs shared by the server, the producer and 100 viewers in one process; the
viewers parse every frame, which costs as much for both systems (JSON). Everything on
127.0.0.1, every child stopped by its PID.

Run: .venv/bin/python bench/live_session.py   (~40 s)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from _util import BIN, free_port, percentile, run_fast, run_in_tmp, start, stop, tcp_ready

VIEWERS, BATCH, ROLLOVER, SECONDS, FLUSH_EVERY, DRAIN_S = 100, 100, 10_000, 5.0, 8, 20.0
CHANGES, CHANGE_HZ = 60, 20
APP = Path(__file__).parent / "baselines" / "bokeh_live"
sys.path.insert(0, str(Path(__file__).parent / "baselines"))
perf = time.perf_counter


def batch(k: int) -> dict[str, list]:
    now = time.time() * 1000
    return {"t": [now] * BATCH, "y": [float((k * BATCH + i) % 97) for i in range(BATCH)]}


def build():  # type: ignore[no-untyped-def]
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Slider
    from bokeh.plotting import figure

    cds = ColumnDataSource({"t": [0.0], "y": [0.0]})
    p = figure(width=600, height=300)
    p.line("t", "y", source=cds)
    slider = Slider(start=0, end=CHANGES + 1, value=0, step=1)
    return column(slider, p), cds, slider


# --- viewers (a child process) ----------------------------------------------------------

class Tally:
    """Rows each viewer got, when its last came, and each batch's latency. A frame is not
    parsed: its `t` column is found and its values counted (parsing 100 viewers' frames
    would make this process, not the systems, the bottleneck)."""

    def __init__(self, n: int) -> None:
        self.rows = [0] * n
        self.last = [0.0] * n
        self.lat: list[float] = []
        self.expect: int | None = None
        self.done = asyncio.Event()

    def got(self, i: int, frame: str, marker: str) -> None:
        at = frame.find(marker)
        if at < 0:
            return
        start = at + len(marker)
        end = frame.index("]", start)
        comma = frame.find(",", start, end)
        first = float(frame[start:comma if comma >= 0 else end])
        now = time.time() * 1000
        self.rows[i] += frame.count(",", start, end) + 1
        self.last[i] = now
        self.lat.append(now - first)
        if self.expect is not None and min(self.rows) >= self.expect:
            self.done.set()


async def plotline_viewer(port: int, source: str, i: int, tally: Tally,
                          ready: asyncio.Event, stop: asyncio.Event) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None, max_queue=None) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channel": f"data:{source}"}))
        reader = asyncio.ensure_future(ws.recv())
        waiter = asyncio.ensure_future(stop.wait())
        while True:
            done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                reader.cancel()
                return
            frame = reader.result()
            if frame.startswith('{"op":"subscribed"'):
                ready.set()
            elif '"type":"appended"' in frame:
                tally.got(i, frame, '"t":[')
            reader = asyncio.ensure_future(ws.recv())


async def viewers(kind: str, port: int, ident: str, n: int) -> None:
    from bokeh_client import watch

    tally, stop = Tally(n), asyncio.Event()
    readies = [asyncio.Event() for _ in range(n)]
    tasks = []
    for i in range(n):
        if kind == "plotline":
            tasks.append(asyncio.create_task(plotline_viewer(port, ident, i, tally,
                                                             readies[i], stop)))
        else:
            def on_patch(content: str, i: int = i) -> None:
                tally.got(i, content, '["t",[')
            tasks.append(asyncio.create_task(watch(
                port, "/bokeh_live", on_patch, stop, on_ready=readies[i].set,
                session_id=ident, raw=True)))
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)  # "expect N": every row sent
    tally.expect = int(line.split()[1])
    if min(tally.rows) < tally.expect:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.done.wait(), DRAIN_S)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"rows": tally.rows, "last": tally.last, "lat": tally.lat}), flush=True)


class Viewers:
    def __init__(self, kind: str, port: int, ident: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--viewers", kind, str(port),
                                      ident, str(VIEWERS)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "READY":
            raise RuntimeError(f"viewers did not start: {line!r}")

    def finish(self, sent: int) -> dict:
        """Once every viewer has `sent` rows (or DRAIN_S passed): what they got."""
        self.proc.stdin.write(f"expect {sent}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        out = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        self.proc.wait(30)
        return out


def throughput(first_ms: float, sent: int, seen: dict) -> dict:
    lat = sorted(seen["lat"])
    slowest = min(range(len(seen["rows"])), key=lambda i: seen["rows"][i])
    span = (seen["last"][slowest] - first_ms) / 1000
    return {"sent": sent, "min_rows": seen["rows"][slowest],
            "all": all(r == sent for r in seen["rows"]),
            "rate": seen["rows"][slowest] / span if span > 0 else 0.0,
            "d50": percentile(lat, 50) if lat else float("nan"),
            "d99": percentile(lat, 99) if lat else float("nan")}


def latencies(sent: dict[int, float], arrived: dict[int, float]) -> dict:
    lat = sorted((arrived[v] - sent[v]) * 1000 for v in sent if v in arrived)
    return {"n": len(lat), "of": len(sent),
            "c50": percentile(lat, 50) if lat else float("nan"),
            "c99": percentile(lat, 99) if lat else float("nan")}


# --- Plotline -----------------------------------------------------------------------------

def plotline(tmp: Path, procs: list) -> dict:
    from plotline import Session

    port, internal = free_port(), free_port()
    server = start([str(BIN / "plotline"), "serve", "--ip", "127.0.0.1", "--port", str(port),
                    "--internal-port", str(internal), "-D", str(tmp / "data")],
                   tmp / "plotline.log", lambda: tcp_ready(internal) and httpx.get(
                       f"http://127.0.0.1:{internal}/readyz", timeout=1).status_code == 200,
                   timeout=60)
    procs.append(server)
    try:
        with Session(f"http://127.0.0.1:{port}") as s:
            root, cds, slider = build()
            arrived: dict[int, float] = {}
            slider.on_change("value", lambda a, o, new: arrived.setdefault(new, time.time()))
            live = s.live(root, "live session bench")
            src = live.source(cds)
            assert src is not None
            watching = Viewers("plotline", port, src.id)
            procs.append(watching.proc)
            first, t0, k = time.time() * 1000, perf(), 0
            while perf() - t0 < SECONDS:
                cds.stream(batch(k), rollover=ROLLOVER)
                k += 1
                if k % FLUSH_EVERY == 0:
                    live.flush(60)
            live.flush(60)
            result = {"produced": k * BATCH / (perf() - t0)}
            result.update(throughput(first, k * BATCH, watching.finish(k * BATCH)))
            # callbacks: a viewer moves the slider; the loop runs the callback
            done = threading.Event()
            loop = threading.Thread(target=s.loop_until_closed, args=(done.is_set,))
            loop.start()
            sent = plotline_changes(port, live.id, slider.id)
            time.sleep(1.0)
            done.set()
            loop.join(10)
            result.update(latencies(sent, arrived))
            live.close()
        return result
    finally:
        stop(server)


def plotline_changes(port: int, doc: str, slider: str) -> dict[int, float]:
    from websockets.sync.client import connect

    sent = {}
    with connect(f"ws://127.0.0.1:{port}/ws") as ws:
        for v in range(1, CHANGES + 1):
            sent[v] = time.time()
            ws.send(json.dumps({"op": "patch", "doc": doc, "events": [
                {"kind": "ModelChanged", "model": {"id": slider}, "attr": "value", "new": v}]}))
            json.loads(ws.recv())  # "patched"
            time.sleep(max(0.0, 1 / CHANGE_HZ - (time.time() - sent[v])))
    return sent


# --- bokeh serve + push_session -----------------------------------------------------------

def bokeh_producer(port: str, session_id: str) -> int:
    """A child process: push the document to `bokeh serve`, then on "go" stream for
    SECONDS and print {batches, first, seconds}; on "stop" print {arrived} (the callbacks'
    times)."""
    import logging

    from bokeh.client import push_session
    from bokeh.document import Document

    logging.basicConfig(level=logging.INFO)  # (to the bench's bokeh_producer.log)
    root, cds, slider = build()
    doc = Document()
    doc.add_root(root)
    arrived: dict[int, float] = {}
    slider.on_change("value", lambda a, o, new: arrived.setdefault(new, time.time()))
    session = push_session(doc, session_id=session_id,
                           url=f"http://127.0.0.1:{port}/bokeh_live")
    state = {"k": 0, "first": 0.0, "t0": 0.0}
    print(json.dumps({"session": session_id, "slider": slider.id}), flush=True)

    def tick() -> None:
        cds.stream(batch(state["k"]), rollover=ROLLOVER)
        state["k"] += 1
        if perf() - state["t0"] < SECONDS:
            doc.add_next_tick_callback(tick)
        else:
            print(json.dumps({"batches": state["k"], "first": state["first"],
                              "seconds": perf() - state["t0"]}), flush=True)

    io_loop = session._connection._loop  # (the client's tornado loop: thread-safe to call)

    def go() -> None:
        state["first"], state["t0"] = time.time() * 1000, perf()
        doc.add_next_tick_callback(tick)

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                io_loop.add_callback(go)
            elif line.strip() == "stop":
                io_loop.add_callback(session.close)
                return

    threading.Thread(target=commands, daemon=True).start()
    session._loop_until_closed()
    print(json.dumps({"arrived": arrived}), flush=True)
    return 0


async def bokeh_changes(port: int, session_id: str, slider: str) -> dict[int, float]:
    from bokeh_client import send_patch, watch

    sent: dict[int, float] = {}
    stop = asyncio.Event()
    opened: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(watch(port, "/bokeh_live", lambda c: None, stop,
                                     session_id=session_id, raw=True,
                                     on_open=opened.set_result))
    ws = await asyncio.wait_for(opened, 60)
    for v in range(1, CHANGES + 1):
        sent[v] = time.time()
        await send_patch(ws, [{"kind": "ModelChanged", "model": {"id": slider},
                               "attr": "value", "new": v}])
        await asyncio.sleep(1 / CHANGE_HZ)
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(task, return_exceptions=True)
    return sent


def bokeh(tmp: Path, procs: list) -> dict:
    port = free_port()
    server = start([sys.executable, "-m", "bokeh", "serve", str(APP), "--port", str(port),
                    "--address", "127.0.0.1", "--allow-websocket-origin",
                    f"127.0.0.1:{port}"], tmp / "bokeh.log", lambda: tcp_ready(port),
                   timeout=60)
    procs.append(server)
    def producer(session_id: str) -> tuple[subprocess.Popen, dict]:
        proc = subprocess.Popen([sys.executable, __file__, "--bokeh-producer", str(port),
                                 session_id], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, stderr=(tmp / f"{session_id}.log").open("w"))
        procs.append(proc)
        return proc, json.loads(proc.stdout.readline())  # type: ignore[union-attr]

    def say(proc: subprocess.Popen, line: str) -> dict | None:
        proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        answer = proc.stdout.readline()  # type: ignore[union-attr]
        return json.loads(answer) if answer else None

    try:
        streaming, hello = producer("stream")
        watching = Viewers("bokeh", port, hello["session"])
        procs.append(watching.proc)
        streamed = say(streaming, "go")
        assert streamed is not None
        sent_rows = streamed["batches"] * BATCH
        result = {"produced": sent_rows / streamed["seconds"]}
        result.update(throughput(streamed["first"], sent_rows, watching.finish(sent_rows)))
        stop(streaming)
        # (a fresh session: after the stream, Bokeh's client dies of a RecursionError in
        # its message loop, one level per reply of the server's to its PATCH-DOCs)
        idle, hello = producer("changes")
        sent = run_fast(bokeh_changes(port, hello["session"], hello["slider"]))
        end = say(idle, "stop") or {"arrived": {}}
        result.update(latencies(sent, {int(k): v for k, v in end["arrived"].items()}))
        return result
    finally:
        stop(server)


# --- the run ---------------------------------------------------------------------------------

def show(name: str, r: dict) -> None:
    print(f"  {name}: produced {r['produced']:,.0f} rows/s; delivered to every viewer "
          f"{r['rate']:,.0f} rows/s ({'all' if r['all'] else 'NOT all'} {r['sent']:,} rows, "
          f"slowest viewer {r['min_rows']:,}); delivery p50 {r['d50']:.0f} ms, p99 "
          f"{r['d99']:.0f} ms; viewer change -> Python callback p50 {r['c50']:.1f} ms, p99 "
          f"{r['c99']:.1f} ms ({r['n']}/{r['of']} arrived)", flush=True)


def bench(tmp: Path, procs: list) -> None:
    os.environ.setdefault("PLOTLINE_DATA_WARM_UP", "false")
    print(f"a Python producer streams {BATCH}-row batches (rollover {ROLLOVER:,}) for "
          f"{SECONDS:g} s to {VIEWERS} viewers; then {CHANGES} slider changes at "
          f"{CHANGE_HZ}/s reach its callback", flush=True)
    t0 = perf()
    ours = plotline(tmp, procs)
    show("Plotline (Session.live)", ours)
    theirs = bokeh(tmp, procs)
    show("bokeh serve + push_session", theirs)
    if theirs["rate"] > 0:
        print(f"delivered rows/s, Plotline / bokeh: {ours['rate'] / theirs['rate']:.1f}x; "
              f"callback p99 {ours['c99']:.1f} vs {theirs['c99']:.1f} ms")
    print(f"(run time {perf() - t0:.0f} s)")


def main() -> int:
    if sys.argv[1:2] == ["--viewers"]:
        kind, port, ident, n = sys.argv[2:6]
        run_fast(viewers(kind, int(port), ident, int(n)))
        return 0
    if sys.argv[1:2] == ["--bokeh-producer"]:
        return bokeh_producer(sys.argv[2], sys.argv[3])
    return run_in_tmp(bench)


if __name__ == "__main__":
    sys.exit(main())

"""Live viewer benchmark: one headless Chromium tab watching a line that streams.

One source of ROWS rows (columns t, y, a) bound to a line of one document;
a producer appends BATCH (10) rows per append with rollover ROLLOVER (10,000), at each rate
of an increasing ladder (STEP_S seconds each), while one Chromium tab draws it.

Plotline: `plotline serve` as `make run` starts it (embedded, single user, its own
nats-server; PLOTLINE_DATA_WARM_UP=false, as in push_fanout.py: no aggregates here, so no
JIT warm-up competing with the first rates). The producer is a child process (uvloop,
CONNS keep-alive connections, a global schedule of appends, so a slow answer on one
connection does not hold back the others) that POSTs `/api/v1/data/sources/<id>/append` with JSON
`{"columns": {...}, "rollover": 10000}`; every row carries t = time.time() in ms when its
request is written. The tab opens `/plots/<doc>`, whose viewer fills the CDS from the data
service and streams each `appended` event into it (merged per animation frame).

Baseline: `bokeh serve` (bench/baselines/bokeh_viewer) with the same figure and source; its
rows come from a periodic callback of the session itself, one `source.stream(10 rows,
rollover=10000)` per append, each a PATCH-DOC message (the way Bokeh apps stream; generous
to Bokeh: no ingest request, stamped inside the server).

The page-side probe is the same JavaScript on both pages, evaluated in whichever frame holds
BokehJS (`window.Bokeh && Bokeh.documents.length`; the page itself, or an iframe inside
it): it wraps the figure's view `_actual_paint`, and after each paint records, for every
append whose rows are drawn for the first time, Date.now() - t: append -> rendered latency
(the canvas has been drawn; the compositor shows it at the next vsync, <= 16 ms later). Both
clocks are this machine's wall clock.

An init script (run in every frame before the page's own scripts) also records when each
websocket message carrying rows reaches the page (Date.now() - its first t, in the message
event, on the main thread): the server's delivery plus any wait for a busy main thread,
printed beside the rendered figures. For Plotline the producer also subscribes a plain
websocket client (Python, no browser) to the source's channel: push's own delivery latency.

Per rate: achieved rate (appends sent x 10 / the producer's wall time), p50/p99 append ->
rendered latency, the lag trend (ms of lag gained per s: median latency of the last quarter
of the step's appends minus the first quarter's, over the time between them; robust to one
stall, and a tab that falls behind falls behind linearly), appends rendered of those sent
(after up to DRAIN_S for the last ones), and the CPU used by the server (with its children),
Chromium (all its processes) and the producer. "Kept up": achieved >= 95% of the rate, trend
<= TREND_MAX, every append rendered, the page's websocket never closed (push closes a client
that falls too far behind; the viewer then reconnects). Each system's ladder stops at its
first rate not kept up.

Printed: one table for both; for each, the highest rate kept up with its p99, and the highest
kept up with p99 <= 100 ms; the ratio of the highest kept-up rates. Target: >= 10,000
rows/s kept up at p99 <= 100 ms. The issue quotes ~100 points/s as what Bokeh users see as
the practical ceiling (bokeh #7490).

Limits: the paint hook uses BokehJS internals (`Bokeh.index`, the plot view's
`_actual_paint`; BokehJS 3.9); each rate runs 4 s, so a p99 rests on 40 (100 rows/s) to a
few thousand appends and one stall of the machine moves it; the producer has at most CONNS
appends in flight, so a server that answers slowly shows as an achieved rate below the
offered one (not as latency); Plotline's figures include a second push subscriber (the
Python client).

Run: .venv/bin/python bench/viewer.py   (~70 s here; 2 CPUs shared by the server, the
producer and Chromium; everything on 127.0.0.1, every child stopped by its PID)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _util import (
    BIN,
    RawHttp,
    children,
    cpu_seconds,
    free_port,
    met,
    percentile,
    run_fast,
    run_in_tmp,
    start,
    stop,
    tcp_ready,
)

RATES = (100, 300, 1_000, 2_000, 3_000, 4_000, 5_000, 7_000, 10_000, 14_000, 20_000,
         40_000)  # rows/s
STEP_S, DRAIN_S, CONNS = 4.0, 5.0, 8
P99_MAX, TREND_MAX, ACHIEVED_MIN = 0.100, 25.0, 0.95  # s; ms of lag per s; of the rate
TARGET_RATE = 10_000
APP = Path(__file__).parent / "baselines" / "bokeh_viewer"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
perf = time.perf_counter


def app_module():  # type: ignore[no-untyped-def]
    """bench/baselines/bokeh_viewer/main.py (its build() and rows(); the session part only
    runs under `bokeh serve`)."""
    spec = importlib.util.spec_from_file_location("bokeh_viewer_app", APP / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the producer (a child process) --------------------------------------------------------

async def produce(app, port: int, source: str, rate: float, seconds: float,  # type: ignore[no-untyped-def]
                  first: int) -> dict:
    """rate/10 appends a second of 10 rows each, for `seconds`, over CONNS connections; the
    k-th append (number first + k) is due at t0 + k / (rate/10)."""
    rows, batch, rollover = app.rows, app.BATCH, app.ROLLOVER
    per_s, path = rate / batch, f"/api/v1/data/sources/{source}/append"
    total = max(1, round(per_s * seconds))
    conns = [await RawHttp.connect(port) for _ in range(CONNS)]
    state, errors, delivered = {"next": 0}, [], []
    watcher = asyncio.create_task(watch(port, source, first, total, delivered))
    await asyncio.wait_for(subscribed(delivered), 10)
    t0 = perf()

    async def worker(conn: RawHttp) -> None:
        while state["next"] < total:
            k = state["next"]
            state["next"] += 1
            delay = t0 + k / per_s - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            append = first + k
            body = json.dumps({"columns": rows(append * batch, batch, append,
                                               time.time() * 1000),
                               "rollover": rollover}).encode()
            status, _, answer = await conn.send(RawHttp.request("POST", path, port, body))
            if status != 200:
                errors.append(f"{status} {answer[:200]!r}")

    await asyncio.gather(*(worker(c) for c in conns))
    wall = perf() - t0
    for conn in conns:
        conn.transport.close()
    try:
        closed = await asyncio.wait_for(watcher, DRAIN_S)
    except TimeoutError:
        closed = None
    got = sorted(delivered[1:])
    return {"sent": total, "wall": wall, "errors": len(errors), "error": errors[:1],
            "delivered": len(got), "d50": percentile(got, 50) if got else math.nan,
            "d99": percentile(got, 99) if got else math.nan, "closed": closed}


async def watch(port: int, source: str, first: int, total: int, out: list) -> str | None:
    """A plain websocket client of push on data:<source> (no browser): out[0] is set once
    subscribed, then each append of this run adds its delivery latency (s); returns when all
    `total` have arrived (None), or push's reason if it closed the connection first."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None,
                           origin=f"http://127.0.0.1:{port}") as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": f"data:{source}"}))
            async for message in ws:
                now, msg = time.time() * 1000, json.loads(message)
                if msg.get("op") == "subscribed":
                    out.append(True)
                elif msg.get("op") == "event" and msg.get("type") == "appended":
                    columns = msg["data"].get("columns") or {}
                    if first <= (columns.get("a") or [-1])[0] < first + total:
                        out.append((now - columns["t"][0]) / 1000)
                        if len(out) > total:
                            return None
    except ConnectionClosed as e:
        return f"{e.rcvd.code} {e.rcvd.reason}" if e.rcvd else "closed"
    return "closed"


async def subscribed(out: list) -> None:
    while not out:
        await asyncio.sleep(0.01)


def producer_main(port: str, source: str) -> int:
    """Lines "rate seconds first" on stdin -> one JSON line each on stdout."""
    app = app_module()
    print("READY", flush=True)
    for line in sys.stdin:
        rate, seconds, first = line.split()
        print(json.dumps(run_fast(produce(app, int(port), source, float(rate), float(seconds),
                                          int(first)))), flush=True)
    return 0


class Producer:
    def __init__(self, port: int, source: str, procs: list) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--produce", str(port), source],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(self.proc)
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError("the producer did not start")

    def run(self, rate: float, seconds: float, first: int) -> dict:
        self.proc.stdin.write(f"{rate} {seconds} {first}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())


# --- the page-side probe ---------------------------------------------------------------------

PROBE = """() => {
  if (window.__probe) { return true; }
  const doc = Bokeh.documents[Bokeh.documents.length - 1];
  const cds = doc.get_model_by_name("probe"), plot = doc.get_model_by_name("probe-plot");
  let view = null;
  for (const v of Bokeh.index) { if (v.model === plot) { view = v; break; } }
  if (!cds || !view || typeof view._actual_paint !== "function") { return false; }
  const p = {lat: [], sent: [], seen: new Set(), count: 0, paints: 0, doc: doc, view: view};
  const paint = view._actual_paint;
  view._actual_paint = function () {
    const out = paint.apply(this, arguments);
    const now = Date.now(), t = cds.data.t, a = cds.data.a;
    // newest rows last: walk back until 200 rows in a row were drawn before (the appends
    // of concurrent requests may land slightly out of order)
    for (let i = a.length - 1, old = 0; i >= 0 && old < 200; i--) {
      const n = a[i];
      if (n < 0 || p.seen.has(n)) { old++; continue; }
      old = 0;
      p.seen.add(n);
      p.count++;
      p.lat.push(now - t[i]);
      p.sent.push(t[i]);
    }
    p.paints++;
    return out;
  };
  window.__probe = p;
  return true;
}"""
# (a page that rendered its document again has new views: the probe's went with the old one)
TAKE = """() => { const p = window.__probe, out = {lat: p.lat, sent: p.sent, paints: p.paints,
  rerendered: Bokeh.documents[Bokeh.documents.length - 1] !== p.doc || !p.view.model.document};
  p.lat = []; p.sent = []; p.paints = 0; return out; }"""
# Installed before any page script, in every frame: the arrival of each websocket message
# that carries rows, Date.now() - its first t (what the server delivered, before BokehJS).
WIRE = """(() => {
  const Base = window.WebSocket, first = /"t"\\s*[:,]\\s*\\[\\s*(-?[0-9.eE+]+)/;
  if (!Base || window.__wire) { return; }
  window.__wire = [];
  window.WebSocket = class extends Base {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        const m = typeof event.data === "string" && first.exec(event.data);
        if (m) { window.__wire.push(Date.now() - Number(m[1])); }
      });
      this.addEventListener("close", (event) => {
        window.__wire.push(event.code + " " + event.reason);
      });
    }
  };
})();"""
TAKE_WIRE = "() => { const w = window.__wire || []; window.__wire = []; return w; }"
FIND = "() => !!(window.Bokeh && Bokeh.documents && Bokeh.documents.length)"


def bokeh_frame(tab, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """The frame (the page's main frame or an iframe in it) where BokehJS holds the
    document, once its probe is installed."""
    deadline = perf() + timeout
    while perf() < deadline:
        for frame in tab.frames:
            try:
                if frame.evaluate(FIND) and frame.evaluate(PROBE):
                    return frame
            except Exception:  # noqa: BLE001 - a frame navigating or going away
                continue
        time.sleep(0.1)
    raise RuntimeError("no frame with a rendered Bokeh document and the probe installed")


def seen(frame) -> int:  # type: ignore[no-untyped-def]
    return frame.evaluate("() => window.__probe.count")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (those still alive)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds([pid])
        except (OSError, IndexError):  # gone
            continue
    return total


class Cpu:
    """CPU used, per part, between start() and shares(): the server (with its children,
    e.g. the private nats-server), the producer, and Chromium (every process of it)."""

    def __init__(self, server: int, producer: int | None = None) -> None:
        self.server, self.producer = server, producer

    def parts(self) -> dict[str, list[int]]:
        browser = [p for p in descendants(os.getpid()) if Path(f"/proc/{p}/comm").exists()
                   and "chrom" in Path(f"/proc/{p}/comm").read_text()]
        return {"server": [self.server, *descendants(self.server)], "chromium": browser,
                "producer": [self.producer] if self.producer else []}

    def start(self) -> None:
        self.pids = self.parts()
        self.t0, self.used = perf(), {k: cpu(v) for k, v in self.pids.items()}

    def shares(self) -> dict[str, float]:
        wall = perf() - self.t0
        return {k: (cpu(v) - self.used[k]) / wall for k, v in self.pids.items()}


def wire(tab) -> tuple[list[float], list[str]]:  # type: ignore[no-untyped-def]
    """The websocket arrival latencies (s) recorded since the last call in every frame, and
    the close codes and reasons of the page's websockets that closed meanwhile."""
    out: list = []
    for frame in tab.frames:
        try:
            out += frame.evaluate(TAKE_WIRE)
        except Exception:  # noqa: BLE001 - a frame going away
            continue
    return (sorted(x / 1000 for x in out if not isinstance(x, str)),
            [x for x in out if isinstance(x, str)])


def step(tab, frame, rate: int, first: int, run, cpus: Cpu) -> dict:  # type: ignore[no-untyped-def]
    """One rate: `run(rate, first)` produces and returns {"sent", "wall", ...}; then wait
    until every append sent is drawn (at most DRAIN_S) and take the probe's records."""
    before = seen(frame)
    frame.evaluate(TAKE)
    wire(tab)
    taken_at = perf()
    cpus.start()
    produced = run(rate, first)
    shares = cpus.shares()
    deadline = perf() + DRAIN_S
    while seen(frame) - before < produced["sent"] and perf() < deadline:
        time.sleep(0.05)
    taken = frame.evaluate(TAKE)
    elapsed = perf() - taken_at
    arrived, closes = wire(tab)
    lat = [x / 1000 for x in taken["lat"]]
    ordered = sorted(lat)
    result = {"rate": rate, "achieved": produced["sent"] * 10 / produced["wall"],
              "sent": produced["sent"], "drawn": len(lat), "fps": taken["paints"] / elapsed,
              "errors": produced.get("errors", 0),
              "p50": percentile(ordered, 50) if lat else math.nan,
              "p99": percentile(ordered, 99) if lat else math.nan,
              "trend": trend(taken["sent"], taken["lat"]),
              "wire50": percentile(arrived, 50) if arrived else math.nan,
              "wire99": percentile(arrived, 99) if arrived else math.nan, "cpu": shares,
              "rerendered": taken["rerendered"], "d50": produced.get("d50", math.nan),
              "d99": produced.get("d99", math.nan), "closed": produced.get("closed"),
              "closes": closes}
    result["kept"] = bool(  # (a nan trend, too few appends to tell, is not kept up)
        lat and result["achieved"] >= ACHIEVED_MIN * rate and result["trend"] <= TREND_MAX
        and result["drawn"] >= result["sent"] and not result["errors"] and not closes
        and not taken["rerendered"])
    result["fast"] = result["kept"] and result["p99"] <= P99_MAX
    return result


def trend(sent_ms: list[float], lat_ms: list[float]) -> float:
    """Lag gained per second of the step (ms/s): median latency of the last quarter of the
    appends (by send time) minus that of the first quarter, over the time between the two
    quarters' medians. Medians, so that one stall does not read as a trend; a tab that
    cannot keep up falls behind linearly (its backlog grows), which this shows at once."""
    pairs = sorted(zip(sent_ms, lat_ms, strict=True))
    q = len(pairs) // 4
    if q < 2:
        return math.nan
    first, last = pairs[:q], pairs[-q:]
    span = statistics.median(p[0] for p in last) - statistics.median(p[0] for p in first)
    rise = statistics.median(p[1] for p in last) - statistics.median(p[1] for p in first)
    return rise / span * 1000 if span > 0 else math.nan


def ladder(name: str, tab, frame, run, cpus: Cpu) -> list[dict]:  # type: ignore[no-untyped-def]
    results, first = [], 0
    for rate in RATES:
        r = step(tab, frame, rate, first, run, cpus)
        first += r["sent"]
        results.append(r)
        print(f"  {name} at {rate:,} rows/s: achieved {r['achieved']:,.0f}; rendered p50 "
              f"{r['p50'] * 1e3:.1f} ms, p99 {r['p99'] * 1e3:.1f} ms; lag trend "
              f"{r['trend']:+.1f} ms/s; {r['drawn']:,}/{r['sent']:,} appends drawn, "
              f"{r['fps']:.0f} paints/s: {'kept up' if r['kept'] else 'NOT kept up'}"
              f"{'  (THE PAGE RENDERED ITS DOCUMENT AGAIN)' if r['rerendered'] else ''}"
              f"{closed(r['closes'])}\n"
              f"      reached the page p50 {r['wire50'] * 1e3:.1f} ms, p99 "
              f"{r['wire99'] * 1e3:.1f} ms{delivered(r)}; CPU: {load(r['cpu'])}", flush=True)
        if not r["kept"]:
            break
    return results


def delivered(r: dict) -> str:
    if math.isnan(r["d50"]) and not r["closed"]:
        return ""
    note = f" (push closed it: {r['closed']})" if r["closed"] else ""
    return (f"; a Python websocket client of push p50 {r['d50'] * 1e3:.1f} ms, p99 "
            f"{r['d99'] * 1e3:.1f} ms{note}")


def closed(closes: list[str]) -> str:
    if not closes:
        return ""
    return f"  (the page's websocket was closed {len(closes)}x: {closes[0]})"


def load(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v or k != "producer")


# --- the two systems -------------------------------------------------------------------------

def plotline(tmp: Path, procs: list, browser) -> list[dict]:  # type: ignore[no-untyped-def]
    from bokeh.document import Document

    port, internal = free_port(), free_port()
    argv = [str(BIN / "plotline"), "serve", "--ip", "127.0.0.1", "--port", str(port),
            "--internal-port", str(internal), "-D", str(tmp / "data")]  # as `make run`
    server = start(argv, tmp / "plotline.log", lambda: tcp_ready(internal) and httpx.get(
        f"http://127.0.0.1:{internal}/readyz", timeout=1).status_code == 200, timeout=60)
    procs.append(server)
    app = app_module()
    plot, cds = app.build()
    base = f"http://127.0.0.1:{port}/api/v1"
    with httpx.Client(timeout=30) as client:
        made = client.post(f"{base}/data/sources", json={
            "name": "viewer-bench", "columns": cds.data, "rollover": app.ROLLOVER})
        made.raise_for_status()
        source = made.json()["id"]
        cds.tags = [f"plotline:source={source}"]
        doc = Document()
        doc.add_root(plot)
        made = client.post(f"{base}/docs/", json={"title": "viewer bench",
                                                 "doc": doc.to_json(deferred=False)})
        made.raise_for_status()
        doc_id = made.json()["id"]
    producer = Producer(port, source, procs)
    tab = browser.new_page(viewport={"width": 1000, "height": 560})
    tab.add_init_script(WIRE)
    try:
        response = tab.goto(f"http://127.0.0.1:{port}/plots/{doc_id}")
        assert response is not None and response.status == 200, response
        frame = bokeh_frame(tab)
        # warm-up: the tab is live once an append reaches it (whatever the page's markup)
        deadline = perf() + 30
        first = 1_000_000_000  # (numbers the ladder never reaches)
        while seen(frame) == 0:
            if perf() > deadline:
                raise RuntimeError("no append reached the tab in 30 s")
            producer.run(100, 0.2, first)
            first += 2
            time.sleep(0.2)
        frame.evaluate(TAKE)
        return ladder("Plotline", tab, frame, lambda rate, first: producer.run(rate, STEP_S, first),
                      Cpu(server.pid, producer.proc.pid))
    finally:
        tab.close()
        stop(producer.proc)
        stop(server)


def bokeh(tmp: Path, procs: list, browser) -> list[dict]:  # type: ignore[no-untyped-def]
    port = free_port()
    argv = [sys.executable, "-m", "bokeh", "serve", str(APP), "--port", str(port),
            "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
            "--num-procs", "1"]
    server = start(argv, tmp / "bokeh.log", lambda: tcp_ready(port), timeout=60)
    procs.append(server)
    tab = browser.new_page(viewport={"width": 1000, "height": 560})
    tab.add_init_script(WIRE)
    try:
        response = tab.goto(f"http://127.0.0.1:{port}/{APP.name}")
        assert response is not None and response.status == 200, response
        frame = bokeh_frame(tab)

        def run(rate: int, first: int, seconds: float = STEP_S) -> dict:
            frame.evaluate("([rate, seconds, first]) => { window.__probe.view.model.tags = "
                           "['run', rate, seconds, first]; }", [rate, seconds, first])
            deadline = perf() + seconds + 60
            while perf() < deadline:
                tags = frame.evaluate("() => window.__probe.view.model.tags")
                if tags and tags[0] == "done":
                    return {"sent": tags[1], "wall": tags[2]}
                time.sleep(0.05)
            raise RuntimeError(f"bokeh serve did not finish the run at {rate} rows/s")

        run(100, 1_000_000_000, 0.2)  # warm-up, as for Plotline
        deadline = perf() + DRAIN_S
        while seen(frame) == 0 and perf() < deadline:
            time.sleep(0.05)
        if seen(frame) == 0:
            raise RuntimeError("the warm-up appends did not reach the bokeh serve tab")
        frame.evaluate(TAKE)
        return ladder("bokeh serve", tab, frame, run, Cpu(server.pid))
    finally:
        tab.close()
        stop(server)


# --- the report ------------------------------------------------------------------------------

def best(results: list[dict], key: str) -> dict | None:
    """The highest rate whose step is `key` ("kept": kept up; "fast": and p99 <= P99_MAX)."""
    ok = [r for r in results if r[key]]
    return max(ok, key=lambda r: r["rate"]) if ok else None


def cell(results: list[dict], rate: int) -> str:
    r = next((r for r in results if r["rate"] == rate), None)
    if r is None:
        return f"{'(not run)':<45}"
    verdict = "yes" if r["kept"] else "NO"
    return (f"{r['achieved']:>8,.0f} {r['p50'] * 1e3:>7.1f} {r['p99'] * 1e3:>7.1f} "
            f"{r['trend']:>+7.1f} {r['fps']:>4.0f}  {verdict:<4}")


def summary(name: str, results: list[dict]) -> dict | None:
    kept, fast = best(results, "kept"), best(results, "fast")
    if kept is None:
        print(f"{name}: kept up at no rate of the ladder (lowest {RATES[0]:,} rows/s)")
        return None
    top = " (the top of the ladder)" if kept["rate"] == RATES[-1] else ""
    within = (f"{fast['rate']:,} rows/s (p99 {fast['p99'] * 1e3:.1f} ms)" if fast else "none")
    print(f"{name}: highest rate kept up {kept['rate']:,} rows/s{top}, its p99 "
          f"{kept['p99'] * 1e3:.1f} ms; highest kept up with p99 <= {P99_MAX * 1e3:.0f} ms: "
          f"{within}")
    return kept


def bench(tmp: Path, procs: list) -> None:
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PLOTLINE_DATA_WARM_UP", "false")
    print(f"one Chromium tab, a line over {10_000:,} rows; 10-row appends with rollover "
          f"10,000 at each rate for {STEP_S:g} s (2 CPUs shared by server, producer and "
          "Chromium)", flush=True)
    t0 = perf()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            ours = plotline(tmp, procs, browser)
            theirs = bokeh(tmp, procs, browser)
        finally:
            browser.close()
    head = "achieved     p50     p99   trend  fps  kept"
    print(f"\n{'rows/s':>7} | {'Plotline':^45} | {'bokeh serve':^45}")
    print(f"{'':>7} | {head:<45} | {head:<45}")
    for rate in RATES:
        print(f"{rate:>7,} | {cell(ours, rate)} | {cell(theirs, rate)}")
    print("(achieved: rows/s sent; p50/p99: append -> rendered, ms; trend: lag gained, ms/s; "
          "fps: paints/s)")
    a, b = summary("Plotline", ours), summary("bokeh serve", theirs)
    fast = best(ours, "fast")
    print(f"target: >= {TARGET_RATE:,} rows/s kept up at p99 <= {P99_MAX * 1e3:.0f} ms: "
          f"{met(fast is not None and fast['rate'] >= TARGET_RATE)}")
    if a and b:
        print(f"Plotline / bokeh serve, highest kept-up rates: {a['rate']:,} / {b['rate']:,} "
              f"= {a['rate'] / b['rate']:.1f}x")
    print(f"(run time {perf() - t0:.0f} s)")


def main() -> int:
    if sys.argv[1:2] == ["--produce"]:
        return producer_main(*sys.argv[2:4])
    return run_in_tmp(bench)


if __name__ == "__main__":
    sys.exit(main())

"""A raw client of the Bokeh server websocket protocol, for the bokeh_stream baseline.

bench/push_fanout.py compares Plotline's push service with the old bokeh-server way of
streaming: every session streams each row into its own ColumnDataSource (see
bokeh_stream/main.py). Measuring that needs thousands of watching sessions, so this client
speaks the protocol directly over `websockets` and keeps no Bokeh Document: it only counts
PATCH-DOC messages and reads the streamed x (the producer's clock) out of each.

The protocol (bokeh/protocol/message.py, receiver.py; bokeh/server/views/ws.py): the client
offers the subprotocols ["bokeh", <session token>]; the server answers with an ACK. A message
is several websocket frames: header JSON ({"msgid", "msgtype", optional "reqid",
"num_buffers"}), metadata JSON, content JSON, then for each of num_buffers a buffer header
JSON frame and a binary payload frame. The client sends PULL-DOC-REQ and gets PULL-DOC-REPLY
(reqid = its msgid); from then on each change to the session's Document is one PATCH-DOC.

    watch(port, app_path, on_patch, stop)   one watching session (see its docstring)
    push_row(push_port, x, y=0.0, seq=None) the producer: POST one row to the app's endpoint
    python bench/baselines/bokeh_client.py --check   20 clients x 50 rows against `bokeh serve`
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bokeh.util.token import generate_jwt_token, generate_session_id
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin, Subprotocol

APP = Path(__file__).parent / "bokeh_stream"
_seq = itertools.count()


async def _recv_message(ws: ClientConnection) -> tuple[dict[str, Any], str]:
    """One whole Bokeh message: (header, content JSON text); metadata and buffers skipped."""
    header = json.loads(await ws.recv())
    await ws.recv()  # metadata
    content = await ws.recv()
    for _ in range(2 * header.get("num_buffers", 0)):  # buffer header + binary payload each
        await ws.recv()
    return header, content


def _streamed_x(content: str) -> float:
    """The first streamed x value of a PATCH-DOC (nan if it streams nothing)."""
    for event in json.loads(content).get("events", []):
        if event.get("kind") == "ColumnsStreamed":
            data = event["data"]  # a dict is serialized as {"type": "map", "entries": [...]}
            columns = dict(data["entries"]) if data.get("type") == "map" else data
            return float(columns["x"][0])
    return math.nan


def _connect(port: int, app_path: str, session_id: str) -> Any:
    token = generate_jwt_token(session_id)
    return connect(f"ws://127.0.0.1:{port}{app_path}/ws",
                   subprotocols=[Subprotocol("bokeh"), Subprotocol(token)],
                   origin=Origin(f"http://127.0.0.1:{port}"), compression=None,
                   ping_interval=None, max_size=None, max_queue=None, open_timeout=120)


async def _pull(ws: ClientConnection) -> None:
    """Take the ACK, ask for the document, and wait for it."""
    header, content = await _recv_message(ws)
    if header["msgtype"] != "ACK":
        raise RuntimeError(f"expected ACK, got {header['msgtype']}: {content}")
    msgid = secrets.token_hex(8)
    for frame in ({"msgid": msgid, "msgtype": "PULL-DOC-REQ"}, {}, {}):
        await ws.send(json.dumps(frame))
    while True:
        header, content = await _recv_message(ws)
        if header["msgtype"] == "ERROR":
            raise RuntimeError(f"server error: {content}")
        if header["msgtype"] == "PULL-DOC-REPLY" and header.get("reqid") == msgid:
            return


async def send_patch(ws: ClientConnection, events: list[dict[str, Any]]) -> None:
    """One PATCH-DOC message (as a browser sends a widget's change)."""
    for frame in ({"msgid": secrets.token_hex(8), "msgtype": "PATCH-DOC"}, {},
                  {"events": events}):
        await ws.send(json.dumps(frame))


async def watch(port: int, app_path: str, on_patch: Callable[[Any], None],
                stop: asyncio.Event, *, on_ready: Callable[[], None] | None = None,
                session_id: str | None = None, raw: bool = False,
                on_open: Callable[[ClientConnection], None] | None = None) -> None:
    """Open one session of the app at ws://127.0.0.1:{port}{app_path}/ws (a new one, or
    `session_id`'s, which a `push_session` made) and pull its document; then call
    on_patch(x) once per PATCH-DOC message, x being the first row's x value (push_row sets
    it to the producer's time.time(), so time.time() - x is the delivery latency), or with
    `raw` the message's content JSON text. on_ready() is called once the document is pulled
    (patches before that are not counted), on_open(ws) too (to send on this connection).
    Returns when stop is set (closing the websocket cleanly); raises if the server closes
    the connection first."""
    async with _connect(port, app_path, session_id or generate_session_id()) as ws:
        closer = asyncio.create_task(_close_when(stop, ws))
        try:
            await _pull(ws)
            if on_ready is not None:
                on_ready()
            if on_open is not None:
                on_open(ws)
            while True:
                header, content = await _recv_message(ws)
                if header["msgtype"] == "PATCH-DOC":
                    on_patch(content if raw else _streamed_x(content))
        except ConnectionClosed:
            if not stop.is_set():
                raise
        finally:
            closer.cancel()


async def _close_when(stop: asyncio.Event, ws: ClientConnection) -> None:
    await stop.wait()
    await ws.close()


async def push_row(push_port: int, x: float, y: float = 0.0,
                   seq: int | None = None) -> dict[str, Any]:
    """POST {x, y, seq} to the app's push endpoint; returns its answer {"seq", "sessions"},
    sent once the row is scheduled on every live session."""
    body = json.dumps({"x": x, "y": y, "seq": next(_seq) if seq is None else seq}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", push_port)
    try:
        writer.write(b"POST /push HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        response = await reader.read()  # the server closes: Connection: close
    finally:
        writer.close()
    head, _, answer = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"push failed: {head.decode(errors='replace')}")
    return json.loads(answer)


# --- the self-check --------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_tcp(port: int, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


async def main_check(clients: int = 20, rows: int = 50) -> bool:
    """Start `bokeh serve` for the app, open `clients` watchers, push `rows` rows, and check
    that every watcher got exactly those rows, in order, as PATCH-DOC messages."""
    port, push_port = _free_port(), _free_port()
    log = tempfile.NamedTemporaryFile(prefix="bokeh_baseline_", suffix=".log", delete=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "bokeh", "serve", str(APP), "--port", str(port), "--address",
         "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}", "--num-procs", "1"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "BOKEH_BASELINE_PUSH_PORT": str(push_port)})
    stop = asyncio.Event()
    got: list[list[tuple[float, float]]] = [[] for _ in range(clients)]  # (x, received at)
    ready, all_ready = [0], asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def on_ready() -> None:
        ready[0] += 1
        if ready[0] == clients:
            all_ready.set()

    try:
        await _wait_tcp(port, server, 30)
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(watch(port, "/bokeh_stream",
                                           lambda x, g=g: g.append((x, time.time())), stop,
                                           on_ready=on_ready)) for g in got]
        await asyncio.wait_for(all_ready.wait(), 60)
        opened = time.perf_counter() - t0
        await _wait_tcp(push_port, server, 10)  # starts with the first session
        sent, t0 = [], time.perf_counter()
        for _ in range(rows):
            sent.append(time.time())
            answer = await push_row(push_port, sent[-1])
            assert answer["sessions"] == clients, answer
        pushed = time.perf_counter() - t0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(len(g) < rows for g in got):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything extra would show up now
        ok = all([x for x, _ in g] == sent for g in got)
        worst = max((t - x for g in got for x, t in g), default=math.nan)
        counts = sorted({len(g) for g in got})
        print(f"{'OK' if ok else 'FAILED'}: {clients} sessions opened in {opened:.2f} s, "
              f"{rows} rows pushed in {pushed:.2f} s; PATCH-DOC messages per client: "
              f"{counts} (expected [{rows}]), {'every' if ok else 'NOT every'} client got "
              f"the pushed rows in order; worst latency {worst * 1000:.0f} ms; "
              f"server log {log.name}")
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return ok
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


if __name__ == "__main__":
    if sys.argv[1:] != ["--check"]:
        sys.exit(f"usage: {sys.argv[0]} --check")
    sys.exit(0 if asyncio.run(main_check()) else 1)

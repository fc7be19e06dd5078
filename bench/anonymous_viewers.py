"""Anonymous viewers benchmark: 1,000 browsers watching one published plot.

The default mode, as `make run` starts it: `plotline serve` (single user, embedded, its own
private nats-server), on a free port. Every viewer of a public page is anonymous, and in
single-user mode anonymous means `defaultuser`; push must still serve them all (they are
limited per client address, `PLOTLINE_PUSH_MAX_ANONYMOUS_PER_ADDRESS`, 1,000, never by
the per-user limit of 100). All 1,000 come from 127.0.0.1.

VIEWERS picows clients in this process subscribe to `doc:<id>` of a published document,
in batches of 100; then one REST `PATCH` changes its title. Printed: how many were
subscribed (and refused, by close code), how many of them received the change, and the
time from sending the PATCH to the last viewer receiving it. Target: all 1,000.

Run: .venv/bin/python bench/anonymous_viewers.py   (or `make bench`). Stops by itself (every
wait has a deadline); everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from _util import BIN, fmt_s, free_port, met, run_in_tmp, start

VIEWERS, BATCH, DEADLINE_S = 1_000, 100, 30.0
perf = time.perf_counter


async def watch(url: str, doc_id: str, change: Callable[[], Awaitable[None]]) -> dict:
    """Open VIEWERS sockets, subscribe each, make the change; count who got it, and when."""
    from picows import WSListener, WSMsgType, ws_connect

    channel = f"doc:{doc_id}"
    subscribed, refused, got = [0], Counter(), []
    everyone = asyncio.Event()

    class Viewer(WSListener):
        def on_ws_connected(self, transport) -> None:  # type: ignore[no-untyped-def]
            transport.send(WSMsgType.TEXT, json.dumps(
                {"op": "subscribe", "channel": channel}).encode())

        def on_ws_frame(self, transport, frame) -> None:  # type: ignore[no-untyped-def]
            if frame.msg_type == WSMsgType.CLOSE:
                refused[int(frame.get_close_code())] += 1
                transport.disconnect()
                return
            message = json.loads(frame.get_payload_as_bytes())
            if message["op"] == "subscribed":
                subscribed[0] += 1
            elif message["op"] == "event" and message["type"] == "patched":
                got.append(perf())
                if len(got) == subscribed[0]:
                    everyone.set()

    transports, deadline = [], perf() + DEADLINE_S
    for start_at in range(0, VIEWERS, BATCH):  # in batches: a stampede fills the backlog
        opened = await asyncio.gather(*(ws_connect(Viewer, url) for _ in range(BATCH)),
                                      return_exceptions=True)
        transports += [t for t, _ in (o for o in opened if not isinstance(o, BaseException))]
        refused["connect failed"] += sum(isinstance(o, BaseException) for o in opened)
        while subscribed[0] + sum(refused.values()) < start_at + BATCH and perf() < deadline:
            await asyncio.sleep(0.01)
    opening = perf() - (deadline - DEADLINE_S)
    t0 = perf()
    await change()
    try:
        await asyncio.wait_for(everyone.wait(), max(0.1, deadline - perf()))
    except TimeoutError:
        pass
    for transport in transports:
        transport.disconnect()
    return {"subscribed": subscribed[0], "refused": dict(refused), "got": len(got),
            "last": max(got) - t0 if got else None, "first": min(got) - t0 if got else None,
            "opening": opening}


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def bench(tmp: Path, procs: list) -> None:
    port, internal = free_port(), free_port()
    argv = [str(BIN / "plotline"), "serve", "--ip", "127.0.0.1", "--port", str(port),
            "--internal-port", str(internal), "-D", str(tmp / "data")]  # as `make run`:
    # the default backend and a private nats-server; /readyz is on the internal port
    procs.append(start(argv, tmp / "plotline.log", lambda: ready(internal), timeout=60))
    base = f"http://127.0.0.1:{port}/api/v1/docs"
    with httpx.Client(timeout=30) as client:
        made = client.post(f"{base}/", json={"title": "bench"})
        made.raise_for_status()
        doc_id = made.json()["id"]
        client.post(f"{base}/{doc_id}/publish").raise_for_status()

    async def change() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            (await client.patch(f"{base}/{doc_id}", json={"events": [
                {"kind": "TitleChanged", "title": "changed"}]})).raise_for_status()

    result = asyncio.run(watch(f"ws://127.0.0.1:{port}/ws", doc_id, change))
    refused = ", ".join(f"{n:,} with {code}" for code, n in result["refused"].items()
                        if n) or "none"
    print(f"{VIEWERS:,} anonymous viewers of one published plot (`plotline serve`, single "
          f"user, all from 127.0.0.1): {result['subscribed']:,} subscribed in "
          f"{result['opening']:.2f} s, refused: {refused}")
    timing = (f"first after {fmt_s(result['first'])}, last after {fmt_s(result['last'])}"
              if result["got"] else "nobody got it")
    print(f"one PATCH: {result['got']:,} of {VIEWERS:,} viewers got the change ({timing})  "
          f"target {VIEWERS:,}: {met(result['got'] == VIEWERS)}")


if __name__ == "__main__":
    sys.exit(run_in_tmp(bench))

"""Scale-out benchmark: does a second replica add capacity behind nginx, and at what cost?

The local distributed stack (scripts/stack.py: NATS, Redis, Azurite, nginx, a process per
service, single-user so that viewers need no credentials), started once per shape:

1. push with one and with two replicas: 1,000 websocket clients through nginx on one data
   channel (load from bench/push_fanout.py's generator processes), appends at a ladder of
   rates; printed: delivered msgs/s and p99 at each, the best delivered rate with p99 <= 100
   ms, and the push processes' CPU per delivered message (which must not grow with
   replicas: each event is encoded once per replica, not once per client).
2. data with one and with two replicas: CLIENTS keep-alive connections through nginx
   appending one row each, back to back, to CLIENTS sources, for SECONDS; printed: appends/s,
   p99 latency, and the data processes' CPU per append.

Everything runs on 2 cores shared by every process here (servers, nginx, load), so a second
replica cannot double anything: the figure to read is CPU per message and per append, and
that the delivered rate holds. Run: .venv/bin/python bench/scale.py (or `make bench`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
from _util import RawHttp, cpu_seconds, fmt_s, free_port, met, percentile, run_fast, run_in_tmp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import push_fanout  # noqa: E402
from stack import Stack, start_stack  # noqa: E402

RATES = (10, 20, 40, 60)    # appends/s; x 1,000 clients = offered msgs/s
P99_TARGET = 0.100
CLIENTS, SECONDS = 16, 5.0  # data: connections appending back to back
DATA = "/api/v1/data/sources"
perf = time.perf_counter


def pids(stack: Stack, kind: str) -> list[int]:
    return [s.process.pid for s in stack.servers if s.name.partition("-")[0] == kind]


def fanout(stack: Stack) -> dict:
    """push_fanout's measurement at each rate, through nginx, CPU of every push replica."""
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        source = client.post(DATA, json={"name": "hot", "columns": {"t": [0.0]}}).json()["id"]
    url = stack.url.replace("http://", "ws://") + "/ws"

    async def make_post():  # type: ignore[no-untyped-def]
        client = httpx.AsyncClient(base_url=stack.url, timeout=30)

        async def post(now: float) -> None:
            r = await client.post(f"{DATA}/{source}/append", json={"columns": {"t": [now]}})
            r.raise_for_status()

        return post, client.aclose

    steps, push = {}, pids(stack, "push")
    for rate in RATES:
        cpu0 = cpu_seconds(push)
        t0 = perf()
        r = push_fanout.measure("plotline", url, f"data:{source}", make_post, rate, push[0])
        r["cpu_all"] = cpu_seconds(push) - cpu0
        r["cpu_per_msg"] = r["cpu_all"] / max(1.0, r["rate"] * (perf() - t0))
        steps[rate] = r
        print(f"    {rate} appends/s: offered {r['offered']:,.0f} msgs/s -> delivered "
              f"{r['rate']:,.0f}  p99 {fmt_s(r['p99'])}  closed {r['closed']}", flush=True)
    return steps


async def appends(port: int, ids: list[str]) -> tuple[float, list[float]]:
    conns = [await RawHttp.connect(port) for _ in ids]
    bodies = [RawHttp.request("POST", f"{DATA}/{i}/append", port,
                              json.dumps({"columns": {"x": [1.5]}}).encode()) for i in ids]
    latencies: list[float] = []
    t0 = perf()

    async def worker(conn: RawHttp, body: bytes) -> None:
        while perf() - t0 < SECONDS:
            t = perf()
            try:
                status, _, _ = await conn.send(body)
            except ConnectionError:  # nginx ends a client connection after 1,000 requests
                conn.transport.close()
                conn = await RawHttp.connect(port)
                continue
            assert status == 200, status
            latencies.append(perf() - t)

    await asyncio.gather(*(worker(c, b) for c, b in zip(conns, bodies, strict=True)))
    wall = perf() - t0
    for c in conns:
        c.transport.close()
    return len(latencies) / wall, sorted(latencies)


def data_rate(stack: Stack) -> dict:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        ids = [client.post(DATA, json={"name": f"s{i}", "columns": {"x": [0.0]}}).json()["id"]
               for i in range(CLIENTS)]
    data = pids(stack, "data")
    cpu0 = cpu_seconds(data)
    t0 = perf()
    rate, latencies = run_fast(appends(stack.server("nginx").port, ids))
    cpu = cpu_seconds(data) - cpu0
    return {"rate": rate, "p99": percentile(latencies, 99),
            "cpu_per_append": cpu / max(1.0, rate * (perf() - t0))}


def best(steps: dict) -> float:
    ok = [r["rate"] for r in steps.values() if r["p99"] <= P99_TARGET]
    return max(ok) if ok else 0.0


# only the service measured runs twice: idle twins of the others would share the 2 CPUs
ONE_OF_EACH = {"auth": 1, "docs": 1, "data": 1, "push": 1}


def bench(tmp: Path, procs: list) -> None:
    print(f"push: {push_fanout.CLIENTS:,} clients through nginx, {push_fanout.SECONDS:g} s per "
          f"rate; data: {CLIENTS} connections appending single rows for {SECONDS:g} s; "
          "2 CPUs shared by everything")
    push, data = {}, {}
    for n in (1, 2):
        stack = start_stack(tmp / f"push{n}", free_port(), multi_user=False,
                            replicas={**ONE_OF_EACH, "push": n}, fresh=True)
        try:
            print(f"  push x{n}:", flush=True)
            push[n] = fanout(stack)
        finally:
            stack.stop()
    for n in (1, 2):
        stack = start_stack(tmp / f"data{n}", free_port(), multi_user=False,
                            replicas={**ONE_OF_EACH, "data": n}, fresh=True)
        try:
            data[n] = data_rate(stack)
            print(f"  data x{n}: {data[n]['rate']:,.0f} appends/s  p99 "
                  f"{fmt_s(data[n]['p99'])}", flush=True)
        finally:
            stack.stop()
    cpu = {n: sum(r["cpu_per_msg"] for r in s.values()) / len(s) for n, s in push.items()}
    print(f"1. push: best delivered at p99 <= {fmt_s(P99_TARGET)}: one replica "
          f"{best(push[1]):,.0f} msgs/s, two {best(push[2]):,.0f} msgs/s; CPU per delivered "
          f"message {cpu[1] * 1e6:.1f} us vs {cpu[2] * 1e6:.1f} us  does not grow (within "
          f"20%): {met(cpu[2] <= cpu[1] * 1.2)}")
    per = {n: r["cpu_per_append"] for n, r in data.items()}
    print(f"2. data: one replica {data[1]['rate']:,.0f} appends/s, two "
          f"{data[2]['rate']:,.0f}; CPU per append {per[1] * 1e6:.0f} us vs "
          f"{per[2] * 1e6:.0f} us  does not grow (within 20%): {met(per[2] <= per[1] * 1.2)}")


if __name__ == "__main__":
    sys.exit(run_in_tmp(bench))

"""Push replicas share nothing: a client may reconnect to any of them with `since`.

Replica A is a whole Plotline (docs, data and push); replica B is `plotline serve push`
alone on the same NATS. 200 clients watch 4 sources, half through each replica, while a
producer appends. B is SIGKILLed mid-stream; its clients reconnect to A with the last seq
they hold. Every client must end with every seq after its subscription, once, in order.
"""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import websockets
from servers import start_nats, start_plotline

CLIENTS, SOURCES, APPENDS, KILL_AFTER = 200, 4, 40, 15


async def watch(urls: list[str], channel: str, first: int, final: dict[str, int],
                log: list[int]) -> tuple[int, int]:
    """One client: subscribe, collect event seqs into `log`, reconnect to the survivor
    (urls[0]) with `since` when its replica dies. Returns (subscribed seq, reconnects)."""
    url, since, start, reconnects = urls[first], None, None, 0
    while True:
        try:
            async with websockets.connect(url, open_timeout=10) as ws:
                op = {"op": "subscribe", "channel": channel}
                if since is not None:
                    op["since"] = since
                await ws.send(json.dumps(op))
                while True:
                    try:
                        msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    except TimeoutError:
                        if channel in final and since == final[channel]:
                            return start, reconnects
                        continue
                    if msg["op"] == "subscribed" and start is None:
                        start = since = msg["seq"]
                    elif msg["op"] == "event":
                        log.append(msg["seq"])
                        since = msg["seq"]
                    elif msg["op"] != "subscribed":
                        raise AssertionError(f"unexpected frame {msg}")
        except (websockets.ConnectionClosed, OSError):
            url, reconnects = urls[0], reconnects + 1
            await asyncio.sleep(0.05)


async def test_clients_of_a_killed_replica_resume_on_the_other_without_gaps(tmp_path):
    nats = start_nats(tmp_path / "nats")
    a = b = None
    try:
        a = start_plotline(tmp_path / "a", "--nats-url", nats.url, "--backend", "file")
        b = start_plotline(tmp_path / "b", "push", "--nats-url", nats.url)
        urls = [s.url.replace("http://", "ws://") + "/ws" for s in (a, b)]
        http = httpx.AsyncClient(base_url=a.url, timeout=30)
        sources = [(await http.post("/api/v1/data/sources", json={
            "name": f"s{i}", "columns": {"x": [0.0]}})).json()["id"] for i in range(SOURCES)]
        final: dict[str, int] = {}
        logs: list[list[int]] = [[] for _ in range(CLIENTS)]
        clients = [asyncio.create_task(watch(urls, f"data:{sources[i % SOURCES]}", i % 2,
                                             final, logs[i])) for i in range(CLIENTS)]
        await asyncio.sleep(2)  # everyone subscribed (they also catch up with since)
        versions = {}
        for n in range(APPENDS):
            if n == KILL_AFTER:
                b.process.send_signal(signal.SIGKILL)  # half the clients lose their replica
            for source in sources:
                r = await http.post(f"/api/v1/data/sources/{source}/append",
                                    json={"columns": {"x": [float(n)]}})
                assert r.status_code == 200
                versions[source] = r.json()["version"]
            await asyncio.sleep(0.02)
        final.update({f"data:{s}": v for s, v in versions.items()})
        results = await asyncio.wait_for(asyncio.gather(*clients), 60)
        await http.aclose()
    finally:
        for server in (b, a, nats):
            if server:
                server.stop()
    moved = 0
    for i, ((start, reconnects), log) in enumerate(zip(results, logs, strict=True)):
        want = final[f"data:{sources[i % SOURCES]}"]
        assert log == list(range(start + 1, want + 1)), f"client {i}: gap or duplicate"
        moved += reconnects > 0
    assert moved == CLIENTS // 2  # exactly the clients of the killed replica moved

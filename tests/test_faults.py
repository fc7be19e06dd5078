"""Faults on the local distributed stack (scripts/stack.py, the chart's processes and
variables): a dependency SIGKILLed under load, then started again as Kubernetes would
restart it. Nothing acknowledged may be lost, clients get only 2xx or 503, and push's
subscribers end holding every event exactly once, in order.

The stack is this module's own (nginx on a free port). Writers and subscribers are real
HTTP and websocket clients through nginx; their loops stop by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from bokeh.document import Document
from bokeh_docs import figure_doc, source_id
from conftest import new_username
from servers import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack, start_stack  # noqa: E402

pytestmark = pytest.mark.faults  # make faults (.ci/run), not make test: minutes of their own

AUTH, DOCS, DATA = "/api/v1/auth", "/api/v1/docs", "/api/v1/data"
PASSWORD = "correct horse battery"


# One replica of each HTTP service, push two: a kill is then felt by every client (the
# harshest case; nginx answers 502 while the one data or docs process is away). The rolling
# restart runs on the stack's own default, two of each.
ONE_OF_EACH = {"auth": 1, "docs": 1, "data": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("faults"), free_port(),
                          replicas=ONE_OF_EACH)
    yield running
    running.stop()


@pytest.fixture
def two_of_each(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("rolling"), free_port())
    yield running
    running.stop()


def login(stack: Stack) -> dict[str, str]:
    name = new_username()
    with httpx.Client(base_url=stack.url, timeout=10) as c:
        assert c.post(f"{AUTH}/register",
                      json={"username": name, "password": PASSWORD}).status_code == 201
        token = c.post(f"{AUTH}/login",
                       json={"username": name, "password": PASSWORD}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def written_to(stack: Stack, headers: dict[str, str]) -> tuple[httpx.Client, str, str, str]:
    """A client, and what the writers write to: a source (x = [-1.0]), a document and the
    id of its ColumnDataSource."""
    sync = httpx.Client(base_url=stack.url, timeout=10, headers=headers)
    source = sync.post(f"{DATA}/sources",
                       json={"name": new_username(), "columns": {"x": [-1.0]}}).json()["id"]
    doc_json = figure_doc(points=3)
    doc = sync.post(f"{DOCS}/", json={"title": new_username(), "doc": doc_json}).json()["id"]
    return sync, source, doc, source_id(doc_json)


@dataclass
class Writes:
    """What writers sent: statuses, and the values of the acknowledged writes."""

    statuses: list[int] = field(default_factory=list)
    acked: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # not 2xx: may or may not be in
    without_retry_after: int = 0  # 503s that did not say when to retry
    errors: list[str] = field(default_factory=list)  # why a request got no answer

    def unanswered(self, exc: httpx.HTTPError) -> None:
        self.errors.append(f"{exc.request.method} {exc.request.url.path}: {exc!r}")

    def note(self, value: float, response: httpx.Response | None) -> None:
        status = response.status_code if response is not None else 0  # 0: no answer
        self.statuses.append(status)
        if 200 <= status < 300:
            self.acked.append(value)
        else:  # 503, or nginx's 502 for a process that died with the request
            self.refused.append(value)
            self.without_retry_after += status == 503 and \
                "retry-after" not in response.headers  # type: ignore[union-attr]


async def appender(c: httpx.AsyncClient, source: str, base: float, stop: asyncio.Event,
                   out: Writes, rows: int = 1) -> None:
    """Appends of `rows` rows each (values base + n*rows ...), noted by their first value."""
    n = 0
    while not stop.is_set():
        value = base + n * rows
        try:
            r = await c.post(f"{DATA}/sources/{source}/append",
                             json={"columns": {"x": [value + i for i in range(rows)]}})
        except httpx.HTTPError as exc:  # no answer at all: counted, and it must not happen
            r = out.unanswered(exc)
        out.note(value, r)
        n += 1
        await asyncio.sleep(0.03)


async def asker(c: httpx.AsyncClient, method: str, path: str, stop: asyncio.Event,
                out: Writes, body: dict | None = None, pause: float = 0.05) -> None:
    """The same request again and again, each answer's status noted."""
    while not stop.is_set():
        try:
            r = await c.request(method, path, json=body)
        except httpx.HTTPError as exc:
            r = out.unanswered(exc)
        out.note(0.0, r)
        await asyncio.sleep(pause)


async def patcher(c: httpx.AsyncClient, doc: str, cds: str, base: float,
                  stop: asyncio.Event, out: Writes) -> None:
    n = 0
    while not stop.is_set():
        value = base + n
        event = {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
                 "data": {"x": [value], "y": [value]}, "rollover": None}
        try:
            r = await c.patch(f"{DOCS}/{doc}", json={"events": [event]})
        except httpx.HTTPError as exc:
            r = out.unanswered(exc)
        out.note(value, r)
        n += 1
        await asyncio.sleep(0.1)


@dataclass
class Watcher:
    """A websocket subscriber: every frame by channel, resyncs and errors noted."""

    seqs: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)
    resyncs: list[dict] = field(default_factory=list)
    unavailable: int = 0
    subscribed: int = 0
    last_frame: float = 0.0

    def take(self, msg: dict[str, Any]) -> None:
        self.last_frame = time.monotonic()
        if msg["op"] == "subscribed":
            self.subscribed += 1
        elif msg["op"] == "event":
            self.seqs.setdefault(msg["channel"], []).append(msg["seq"])
            columns = (msg.get("data") or {}).get("columns") or {}
            self.values.setdefault(msg["channel"], []).extend(columns.get("x", []))
        elif msg["op"] == "resync":
            self.resyncs.append(msg)
        elif msg["op"] == "error" and msg.get("code") == "unavailable":
            self.unavailable += 1

    def last(self, channel: str) -> int | None:
        seqs = self.seqs.get(channel)
        return seqs[-1] if seqs else None


async def watch(url: str, headers: dict[str, str], channels: dict[str, int],
                watcher: Watcher, stop: asyncio.Event, *,
                leave_at: asyncio.Event | None = None) -> None:
    """Subscribe to `channels` ({name: since}) and take frames until `stop`. With
    `leave_at`: close the socket when it is set and come back with `since` (subscribes
    answered `unavailable` are asked again after the delay push names)."""
    since = dict(channels)
    while not stop.is_set():
        try:
            await follow(url, headers, since, watcher, stop, leave_at)
            leave_at = None
        except (OSError, websockets.exceptions.WebSocketException):
            pass  # refused or dropped: as a browser would, connect again
        await asyncio.sleep(0.5)


async def follow(url: str, headers: dict[str, str], since: dict[str, int], watcher: Watcher,
                 stop: asyncio.Event, leave_at: asyncio.Event | None) -> None:
    """One socket's life: subscribe from `since`, take frames (updating `since`), until
    `stop`, or `leave_at` once every channel is subscribed."""
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        waiting = set(since)
        for name, seq in since.items():
            await ws.send(json.dumps({"op": "subscribe", "channel": name, "since": seq}))
        while not stop.is_set():
            if leave_at is not None and leave_at.is_set() and not waiting:
                return  # gone for a moment, as a laptop on a train
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            watcher.take(msg)
            channel = msg.get("channel")
            if msg["op"] == "subscribed":
                waiting.discard(channel)
            elif msg["op"] == "error" and msg.get("code") == "unavailable":
                await asyncio.sleep(msg.get("retry_after", 2))
                await ws.send(json.dumps({"op": "subscribe", "channel": channel,
                                          "since": since[channel]}))
            elif msg["op"] == "event":
                since[channel] = msg["seq"]


async def reached(channel: str, seq: int, watchers: tuple[Watcher, ...]) -> float:
    """When every watcher holds `channel` up to `seq` (monotonic time; 60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            (w.last(channel) or 0) >= seq for w in watchers):
        await asyncio.sleep(0.05)
    return time.monotonic()


def stored_doc_values(c: httpx.Client, doc: str, cds: str) -> list[float]:
    body = c.get(f"{DOCS}/{doc}").json()
    document = Document.from_json(body["doc"])
    return list(document.get_model_by_id(cds).data["x"])


def ready(server: Any) -> int:
    return httpx.get(f"{server.internal_url}/readyz", timeout=5).status_code


def connections_of(replica: Any) -> int:
    text = httpx.get(f"{replica.internal_url}/metrics", timeout=5).text
    return int(float(re.search(r"^plotline_push_connections (\S+)$", text, re.M).group(1)))


def all_ready(stack: Stack, within: float = 20.0) -> bool:
    """Every service process says ready again (they recover by themselves)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(ready(s) == 200 for s in stack.servers if s.internal_url):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("outage_s", [10, 45])
async def test_nats_killed_during_appends_and_patches_loses_nothing(stack, outage_s):
    """NATS SIGKILLed for 10 s and for 45 s under appends and document PATCHes from
    several clients, then started again (same port and JetStream store): every
    acknowledged write is stored once; clients got only 2xx or 503; a subscriber that
    stayed and one that left and came back with `since` end with every event once, in
    order, and no resync."""
    headers, newcomer = login(stack), login(stack)
    ws_url = stack.url.replace("http://", "ws://") + "/ws"
    sync, source, doc, cds = written_to(stack, headers)
    data_ch, doc_ch = f"data:{source}", f"doc:{doc}"
    channels = {data_ch: 1, doc_ch: 1}

    stop_writes, stop_watch, leave = asyncio.Event(), asyncio.Event(), asyncio.Event()
    stayed, rejoined = Watcher(), Watcher()
    appends, patches = Writes(), Writes()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as c:
        watchers = [asyncio.create_task(watch(ws_url, headers, channels, stayed, stop_watch)),
                    asyncio.create_task(watch(ws_url, headers, channels, rejoined,
                                              stop_watch, leave_at=leave))]
        await asyncio.sleep(1.0)
        writers = [asyncio.create_task(appender(c, source, k * 1e6, stop_writes, appends))
                   for k in (1, 2, 3)]
        writers.append(asyncio.create_task(patcher(c, doc, cds, 9e6, stop_writes, patches)))
        await asyncio.sleep(2.0)
        stack.server("nats").kill()
        killed = time.monotonic()
        await asyncio.sleep(min(3.0, outage_s / 3))
        leave.set()  # the second subscriber leaves, and comes back while NATS is away
        await asyncio.sleep(1.0)
        # the services that still serve stay in their Service; push cannot serve
        assert ready(stack.server("data")) == 200 and ready(stack.server("docs")) == 200
        assert all(ready(p) == 503 for p in stack.push)
        # a login push never saw cannot be checked now: "try again later", not 4401
        async with websockets.connect(ws_url, additional_headers=newcomer) as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1013, (ws.close_code, ws.close_reason)
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - killed)))
        during = len(appends.acked)
        stack.restart("nats")
        restarted = time.monotonic()
        # recovery: until both subscribers hold every event of the outage
        behind = sync.get(f"{DATA}/sources/{source}").json()["version"]
        recovered = asyncio.create_task(reached(data_ch, behind, (stayed, rejoined)))
        await asyncio.sleep(3.0)
        stop_writes.set()
        await asyncio.gather(*writers)

        final = sync.get(f"{DATA}/sources/{source}").json()["version"]
        final_doc = sync.get(f"{DOCS}/{doc}").json()["version"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
                w.last(data_ch) == final and w.last(doc_ch) == final_doc
                for w in (stayed, rejoined)):
            await asyncio.sleep(0.2)
        caught_up = time.monotonic()
        stop_watch.set()
        await asyncio.gather(*watchers)

    recovery = (await recovered) - restarted
    print(f"\nNATS away {outage_s} s: {len(appends.acked)} appends and {len(patches.acked)} "
          f"patches acknowledged ({during} appends before the restart); the subscribers "
          f"held every event of the outage {recovery:.1f} s after NATS was started again "
          f"(all {final - 1} appends' events {caught_up - restarted:.1f} s after); "
          f"{rejoined.unavailable} subscribes answered unavailable meanwhile")
    assert set(appends.statuses + patches.statuses) <= {200, 201, 503}, sorted(
        set(appends.statuses + patches.statuses))
    assert len(appends.acked) > 50 * outage_s // 10 and patches.acked
    # every acknowledged write is stored, once
    rows = sync.get(f"{DATA}/sources/{source}/data").json()["columns"]["x"]
    assert sorted(rows) == sorted([-1.0, *appends.acked])
    doc_values = stored_doc_values(sync, doc, cds)
    assert sorted(v for v in doc_values if v >= 9e6) == sorted(patches.acked)
    # every event reached both subscribers once, in order, without a resync
    for watcher in (stayed, rejoined):
        assert watcher.resyncs == []
        assert watcher.seqs[data_ch] == list(range(2, final + 1))
        assert watcher.seqs[doc_ch] == list(range(2, final_doc + 1))
        assert sorted(watcher.values[data_ch]) == sorted(appends.acked)
    assert rejoined.unavailable >= 1  # it did come back while NATS was away
    assert all_ready(stack)


async def test_redis_killed_during_appends_and_patches_loses_nothing(stack):
    """Redis (AOF, appendfsync everysec) SIGKILLed for 8 s under appends and PATCHes,
    then started again on its files: while it is away writes answer 503 with Retry-After
    (never 500, never 401 for valid credentials) and the store-less services say not
    ready; afterwards every acknowledged write is there, once."""
    headers = login(stack)
    sync, source, doc, cds = written_to(stack, headers)
    stop = asyncio.Event()
    appends, patches = Writes(), Writes()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as c:
        writers = [asyncio.create_task(appender(c, source, k * 1e6, stop, appends))
                   for k in (1, 2)]
        writers.append(asyncio.create_task(patcher(c, doc, cds, 9e6, stop, patches)))
        await asyncio.sleep(2.0)
        stack.server("redis").kill()
        await asyncio.sleep(3.0)
        assert ready(stack.server("data")) == 503 and ready(stack.server("docs")) == 503
        await asyncio.sleep(5.0)
        stack.restart("redis")
        await asyncio.sleep(4.0)
        stop.set()
        await asyncio.gather(*writers)
    print(f"\nRedis away 8 s: {len(appends.acked)} appends and {len(patches.acked)} patches "
          f"acknowledged, {len(appends.refused) + len(patches.refused)} answered 503")
    statuses = set(appends.statuses + patches.statuses)
    assert statuses <= {200, 201, 503}, sorted(statuses)
    assert appends.refused and appends.without_retry_after == patches.without_retry_after == 0
    rows = sync.get(f"{DATA}/sources/{source}/data").json()["columns"]["x"]
    assert len(rows) == len(set(rows))  # none twice
    assert set(appends.acked) <= set(rows) <= {-1.0, *appends.acked, *appends.refused}
    doc_values = [v for v in stored_doc_values(sync, doc, cds) if v >= 9e6]
    assert len(doc_values) == len(set(doc_values))
    assert set(patches.acked) <= set(doc_values) <= {*patches.acked, *patches.refused}
    assert all_ready(stack)


async def test_a_push_replica_killed_under_200_subscribers_loses_and_repeats_nothing(stack):
    """200 subscribers through nginx (two users, ~half on each replica), appends flowing;
    the replica holding half of them SIGKILLed, then started again: every subscriber comes
    back on the other with `since` and ends with every event once, in order."""
    users = [login(stack), login(stack)]
    ws_url = stack.url.replace("http://", "ws://") + "/ws"
    sources = [written_to(stack, h)[1] for h in users]
    stop_watch, stop_writes = asyncio.Event(), asyncio.Event()
    watchers = [Watcher() for _ in range(200)]
    tasks = [asyncio.create_task(watch(ws_url, users[k % 2], {f"data:{sources[k % 2]}": 1},
                                       w, stop_watch)) for k, w in enumerate(watchers)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(w.subscribed for w in watchers):
        await asyncio.sleep(0.1)
    assert all(w.subscribed for w in watchers)
    victim = max(stack.push, key=lambda p: connections_of(p))
    writes = [Writes(), Writes()]
    async with contextlib.AsyncExitStack() as clients:
        writers = []
        for k, headers in enumerate(users):
            c = await clients.enter_async_context(
                httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers))
            writers.append(asyncio.create_task(
                appender(c, sources[k], 1e6 * (k + 1), stop_writes, writes[k])))
        await asyncio.sleep(2.0)
        held = connections_of(victim)
        victim.kill()
        killed = time.monotonic()
        await asyncio.sleep(3.0)
        stack.restart(victim.name)
        await asyncio.sleep(2.0)
        stop_writes.set()
        await asyncio.gather(*writers)
    finals = [httpx.get(f"{stack.url}{DATA}/sources/{s}", headers=h).json()["version"]
              for s, h in zip(sources, users, strict=True)]
    channel = [f"data:{s}" for s in sources]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            w.last(channel[k % 2]) == finals[k % 2] for k, w in enumerate(watchers)):
        await asyncio.sleep(0.2)
    caught_up = time.monotonic() - killed
    stop_watch.set()
    await asyncio.gather(*tasks)
    print(f"\npush replica {victim.name} SIGKILLed holding {held} of 200 sockets: all 200 "
          f"held every one of {sum(len(w.acked) for w in writes)} appends' events "
          f"{caught_up:.1f} s after the kill")
    for k, w in enumerate(watchers):
        assert w.resyncs == []
        assert w.seqs[channel[k % 2]] == list(range(2, finals[k % 2] + 1))  # once, in order
        assert sorted(w.values[channel[k % 2]]) == sorted(writes[k % 2].acked)
    assert held >= 50 and all(set(w.statuses) == {200} for w in writes)


async def test_azurite_killed_during_large_appends_loses_nothing_unreported(stack):
    """Azurite SIGKILLed for 8 s under appends of 2,000 rows (each a blob), then started
    again on its files, then the data service restarted (nothing from memory): appends
    answered 2xx or 503 within bounds; every acknowledged row is readable, except rows the
    source itself reports lost (Azurite acknowledges a blob before it saves its metadata,
    so a kill can lose some)."""
    headers = login(stack)
    sync, source, _, _ = written_to(stack, headers)
    stop, out = asyncio.Event(), Writes()
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as c:
        writer = asyncio.create_task(appender(c, source, 1e6, stop, out, rows=2000))
        await asyncio.sleep(2.0)
        stack.server("azurite").kill()
        await asyncio.sleep(8.0)
        stack.restart("azurite")
        await asyncio.sleep(3.0)
        stop.set()
        await writer
    stack.server("data").kill()
    stack.restart("data")
    r = sync.get(f"{DATA}/sources/{source}/data")
    assert r.status_code == 200, r.text
    body = r.json()
    lost = body.get("lost", [])
    rows = body["columns"]["x"]
    print(f"\nAzurite away 8 s: {len(out.acked)} appends of 2,000 rows acknowledged, "
          f"{len(out.refused)} answered 503; after a data restart {len(rows)} rows, "
          f"lost ranges reported: {lost}")
    assert set(out.statuses) <= {200, 503} and out.refused and out.without_retry_after == 0
    # every acknowledged row has its place (none dropped, doubled or torn) ...
    expected = {-1.0} | {v + i for v in out.acked for i in range(2000)}
    assert len(rows) == len(expected)
    present = [v for v in rows if v is not None]
    assert len(present) == len(set(present)) and set(present) <= expected
    # ... and is readable, unless it sits in a range the source itself reports lost
    nulls = [i for i, v in enumerate(rows) if v is None]
    assert all(any(a <= i < b for a, b in lost) for i in nulls)
    assert len(nulls) == sum(b - a for a, b in lost) == len(expected) - len(present)


@pytest.mark.parametrize("service", ["data", "docs"])
async def test_a_service_killed_mid_write_keeps_every_acknowledged_write(stack, service):
    """The data service, or docs, SIGKILLed under appends and PATCHes, then started again
    (as Kubernetes restarts a container): nothing acknowledged is lost or stored twice
    (nginx answers 502 while the one replica is gone), and a subscriber's seqs never
    repeat: an event that died with the process between its write and its publish is a
    `resync`, never a silent hole."""
    headers = login(stack)
    ws_url = stack.url.replace("http://", "ws://") + "/ws"
    sync, source, doc, cds = written_to(stack, headers)
    channel = f"data:{source}" if service == "data" else f"doc:{doc}"
    stop_writes, stop_watch, watcher = asyncio.Event(), asyncio.Event(), Watcher()
    appends, patches = Writes(), Writes()
    watching = asyncio.create_task(watch(ws_url, headers, {channel: 1}, watcher, stop_watch))
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as c:
        writers = [asyncio.create_task(appender(c, source, k * 1e6, stop_writes, appends))
                   for k in (1, 2)]
        writers.append(asyncio.create_task(patcher(c, doc, cds, 9e6, stop_writes, patches)))
        await asyncio.sleep(2.0)
        stack.server(service).kill()
        await asyncio.sleep(1.0)
        stack.restart(service)
        await asyncio.sleep(2.0)
        stop_writes.set()
        await asyncio.gather(*writers)
    final = (sync.get(f"{DATA}/sources/{source}") if service == "data"
             else sync.get(f"{DOCS}/{doc}")).json()["version"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (watcher.last(channel) or 0) < final and not (
            watcher.resyncs and watcher.resyncs[-1]["seq"] >= final):
        await asyncio.sleep(0.1)
    stop_watch.set()
    await watching
    writes = appends if service == "data" else patches
    print(f"\n{service} SIGKILLed: {len(writes.acked)} writes acknowledged, "
          f"{len(writes.refused)} not ({sorted(set(writes.statuses))}); subscriber: "
          f"{len(watcher.seqs.get(channel, []))} events, {len(watcher.resyncs)} resyncs")
    assert writes.refused  # the kill did land mid-stream
    assert set(appends.statuses + patches.statuses) <= {200, 201, 502, 503}
    rows = sync.get(f"{DATA}/sources/{source}/data").json()["columns"]["x"]
    assert len(rows) == len(set(rows))
    assert set(appends.acked) <= set(rows) <= {-1.0, *appends.acked, *appends.refused}
    doc_values = [v for v in stored_doc_values(sync, doc, cds) if v >= 9e6]
    assert len(doc_values) == len(set(doc_values))
    assert set(patches.acked) <= set(doc_values) <= {*patches.acked, *patches.refused}
    seqs = watcher.seqs[channel]
    assert seqs == sorted(set(seqs))  # never repeated, never out of order
    holes = [(a, b) for a, b in zip(seqs, seqs[1:], strict=False) if b != a + 1]
    assert all(any(a < r["seq"] <= b for r in watcher.resyncs) for a, b in holes), holes
    assert all_ready(stack)


async def test_a_rolling_restart_of_every_service_fails_no_request(two_of_each):
    """The stack's default shape, two replicas of every service, under steady load: appends
    to four sources, document PATCHes, reads with a JWT and with an API key, logins, and 20
    websocket subscribers. Every replica in turn gets SIGTERM, exits, is started again and
    becomes ready before the next (a rolling update). No request the clients sent fails
    (every answer 2xx, none refused or dropped), every write is stored once, and each
    subscriber ends holding every event once, in order, with no resync: those on a push
    replica that stopped came back on the other with `since`."""
    stack = two_of_each
    headers = login(stack)
    ws_url = stack.url.replace("http://", "ws://") + "/ws"
    sync, _, doc, cds = written_to(stack, headers)
    key = sync.post(f"{AUTH}/apikeys", json={"name": "rolling"}).json()["key"]
    name = sync.get(f"{AUTH}/me").json()["username"]
    sources = [sync.post(f"{DATA}/sources", json={"name": new_username(),
                                                  "columns": {"x": [-1.0]}}).json()["id"]
               for _ in range(4)]  # the hash puts some on each data replica
    channels = {**{f"data:{s}": 1 for s in sources}, f"doc:{doc}": 1}
    stop_writes, stop_watch = asyncio.Event(), asyncio.Event()
    watchers = [Watcher() for _ in range(20)]
    watching = [asyncio.create_task(watch(ws_url, headers, channels, w, stop_watch))
                for w in watchers]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            w.subscribed >= len(channels) for w in watchers):
        await asyncio.sleep(0.1)
    appends, patches, reads = [Writes() for _ in sources], Writes(), Writes()
    with_key = {"Authorization": f"Bearer {key}"}
    rolled: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=stack.url, timeout=30, headers=headers) as c, \
            httpx.AsyncClient(base_url=stack.url, timeout=30, headers=with_key) as keyed, \
            httpx.AsyncClient(base_url=stack.url, timeout=30) as anonymous:
        writers = [asyncio.create_task(appender(c, s, 1e6 * (k + 1), stop_writes, appends[k]))
                   for k, s in enumerate(sources)]
        writers += [
            asyncio.create_task(patcher(c, doc, cds, 9e6, stop_writes, patches)),
            asyncio.create_task(asker(c, "GET", f"{DOCS}/{doc}", stop_writes, reads)),
            asyncio.create_task(asker(c, "GET", f"{DATA}/sources/{sources[0]}",
                                      stop_writes, reads)),
            asyncio.create_task(asker(c, "GET", f"{AUTH}/me", stop_writes, reads)),
            asyncio.create_task(asker(keyed, "GET", f"{DOCS}/", stop_writes, reads)),
            asyncio.create_task(asker(keyed, "GET", f"{DATA}/sources", stop_writes, reads)),
            asyncio.create_task(asker(anonymous, "POST", f"{AUTH}/login", stop_writes, reads,
                                      body={"username": name, "password": PASSWORD},
                                      pause=0.5))]
        await asyncio.sleep(2.0)
        before = {s.name: s.process.pid for s in stack.servers}
        for replica in stack.services():
            began = time.monotonic()
            await asyncio.to_thread(stack.roll, replica)
            rolled[replica] = time.monotonic() - began
            await asyncio.sleep(1.0)  # steady load on the whole stack again
        await asyncio.sleep(2.0)
        stop_writes.set()
        await asyncio.gather(*writers)
    finals = {f"data:{s}": sync.get(f"{DATA}/sources/{s}").json()["version"]
              for s in sources}
    finals[f"doc:{doc}"] = sync.get(f"{DOCS}/{doc}").json()["version"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            w.last(ch) == v for w in watchers for ch, v in finals.items()):
        await asyncio.sleep(0.2)
    stop_watch.set()
    await asyncio.gather(*watching)

    everything = [*appends, patches, reads]
    sent = sum(len(w.statuses) for w in everything)
    moved = sum(w.subscribed > len(channels) for w in watchers)
    print(f"\nrolling restart of {len(rolled)} service processes ("
          + ", ".join(f"{n} {t:.1f} s" for n, t in rolled.items())
          + f"): {sent} requests, {sum(len(w.acked) for w in appends)} appends and "
          f"{len(patches.acked)} patches acknowledged; {moved} of 20 subscribers moved "
          f"replica and resumed with since")
    assert set(rolled) == {s.name for s in stack.servers if s.internal_url}
    assert all(before[n] != stack.server(n).process.pid for n in rolled)
    failed = [s for w in everything for s in w.statuses if not 200 <= s < 300]
    assert failed == [], (f"{len(failed)} of {sent} requests failed: {sorted(set(failed))}",
                          [e for w in everything for e in w.errors])
    assert all(len(w.acked) > 100 for w in appends) and len(reads.acked) > 500
    for k, s in enumerate(sources):  # every write stored, once
        rows = sync.get(f"{DATA}/sources/{s}/data").json()["columns"]["x"]
        assert sorted(rows) == sorted([-1.0, *appends[k].acked])
    assert sorted(v for v in stored_doc_values(sync, doc, cds) if v >= 9e6) == sorted(
        patches.acked)
    assert moved >= 5  # the push replicas' restarts did move sockets
    for w in watchers:  # every event once, in order, no resync
        assert w.resyncs == []
        for k, s in enumerate(sources):
            assert w.seqs[f"data:{s}"] == list(range(2, finals[f"data:{s}"] + 1))
            assert sorted(w.values[f"data:{s}"]) == sorted(appends[k].acked)
        assert w.seqs[f"doc:{doc}"] == list(range(2, finals[f"doc:{doc}"] + 1))


def test_the_stack_script_restarts_a_dead_process_and_rolls_on_sighup(tmp_path):
    """`make stack` as a person runs it: a service process SIGKILLed is started again by
    the script; SIGHUP restarts every service process one at a time; SIGTERM stops it all
    and the script exits 0."""
    import os
    import signal
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "stack.py"
    out = tmp_path / "stack.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, str(script), "--dir", str(tmp_path / "s"),
                                 "--port", str(free_port())],
                                stdout=sink, stderr=subprocess.STDOUT)

    def said(text: str, within: float = 120) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in (log := out.read_text()):
                return log
            assert proc.poll() is None, log
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in:\n{out.read_text()}")

    try:
        started = said("Plotline is at")
        assert f"kill -HUP {proc.pid}" in started
        state = json.loads((tmp_path / "s" / "stack.json").read_text())["servers"]
        assert {n for n in state if n.partition("-")[0] in ("auth", "docs", "data", "push")} \
            == {f"{n}-{i}" for n in ("auth", "docs", "data", "push") for i in (1, 2)}
        os.kill(state["docs-1"]["pid"], signal.SIGKILL)
        said("docs-1 running again")
        proc.send_signal(signal.SIGHUP)
        log = said("rolling restart done", within=180)
        assert "rolling restart:" not in log  # (what a failed replacement would print)
        after = json.loads((tmp_path / "s" / "stack.json").read_text())["servers"]
        for name in ("auth-1", "auth-2", "docs-1", "docs-2", "data-1", "data-2", "push-1",
                     "push-2"):
            assert f"{name} restarted" in log and after[name]["pid"] != state[name]["pid"]
        assert after["nats"]["pid"] == state["nats"]["pid"]  # the infrastructure stays
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
        assert "stopped" in out.read_text()
    finally:
        if proc.poll() is None:  # (a failure above) SIGTERM: the script stops what it started
            proc.terminate()
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""The NATS bus against a real nats-server: stream, envelope, request-reply, auth's events."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from conftest import new_username
from prometheus_client import REGISTRY
from servers import start_nats, start_plotline

from services.common.bus import ACK_TIMEOUT_S, Bus
from services.common.errors import Unavailable
from services.common.events import Event
from services.common.names import STREAM_NAME
from services.common.stores import open_kv


@pytest.fixture
async def bus(nats_url):
    b = await Bus.connect(nats_url, "test")
    yield b
    await b.close()


async def test_stream_is_bounded_and_captures_events_only(bus):
    await bus.ensure_stream()
    await bus.ensure_stream()  # idempotent, as every replica calls it
    info = await bus.js.stream_info(STREAM_NAME)
    assert info.config.max_age and info.config.max_bytes > 0 and info.config.max_msgs > 0
    entity = uuid.uuid4().hex
    before = info.state.messages
    event = await bus.publish(entity, "poked", {"n": 1}, actor="alice", seq=7)
    stored = await bus.js.get_last_msg(STREAM_NAME, f"plotline.test.{entity}.poked")
    got = Event.model_validate_json(stored.data)
    assert got == event and got.seq == 7 and got.actor == "alice" and got.type == "poked"
    assert (await bus.js.stream_info(STREAM_NAME)).state.messages == before + 1


async def test_republishing_the_same_event_is_deduplicated(bus):
    await bus.ensure_stream()
    entity = uuid.uuid4().hex
    event = await bus.publish(entity, "poked")
    before = (await bus.js.stream_info(STREAM_NAME)).state.messages
    ack = await bus.js.publish(f"plotline.test.{entity}.poked", event.model_dump_json().encode(),
                               headers={"Nats-Msg-Id": event.id})
    assert ack.duplicate is True
    assert (await bus.js.stream_info(STREAM_NAME)).state.messages == before


async def test_notify_reaches_subscribers_and_the_stream_without_an_ack(bus, nats_url, caplog):
    """notify (data's appends) does not wait for JetStream, yet the stream stores the event,
    in order, and live subscribers get it; on a closed connection it logs instead of raising
    (the write it describes is committed already)."""
    await bus.ensure_stream()
    entity, heard = uuid.uuid4().hex, asyncio.Queue()

    async def on_event(subject, event):
        await heard.put(event)

    await bus.subscribe(f"plotline.test.{entity}.*", on_event)
    sent = [await bus.notify(entity, "poked", {"n": n}, seq=n) for n in range(1, 6)]
    got = [await asyncio.wait_for(heard.get(), 5) for _ in sent]
    assert [e.seq for e in got] == [1, 2, 3, 4, 5] and got == sent
    consumer = await bus.js.pull_subscribe(f"plotline.test.{entity}.*", stream=STREAM_NAME)
    stored = await consumer.fetch(5, timeout=5)
    assert [Event.model_validate_json(m.data) for m in stored] == sent
    closed = await Bus.connect(nats_url, "test")
    await closed.close()
    queued = REGISTRY.get_sample_value("plotline_events_queued_total", {"service": "test"})
    with caplog.at_level("WARNING", logger="plotline.bus"):
        event = await closed.notify(entity, "poked", {"n": 6}, seq=6)
    assert event.seq == 6 and "outbox" in caplog.text  # kept, never raised
    assert closed.backlog == 1 and [e.msg_id for e in [
        await closed.outbox.get(k) for k in await closed.outbox.keys()]] == [event.id]
    assert REGISTRY.get_sample_value("plotline_events_queued_total",
                                     {"service": "test"}) == (queued or 0) + 1


async def test_request_reply_and_failures(bus):
    async def double(req):
        if req.get("boom"):
            raise ValueError("bad question")
        return {"twice": req["n"] * 2}

    subject = f"plotline.test.{uuid.uuid4().hex[:8]}"
    await bus.serve(subject, double, queue="q")
    assert await bus.request(subject, {"n": 21}) == {"twice": 42}
    with pytest.raises(Unavailable, match="ValueError: bad question"):
        # the answerer failed: a retryable 503 for the asker, never taken for a "no"
        await bus.request(subject, {"boom": True})
    with pytest.raises(Unavailable):
        await bus.request("plotline.test.nobody", {}, timeout=0.3)


async def test_auth_publishes_only_after_a_successful_write(multi_server):
    bus = await Bus.connect(multi_server.nats_url, "test")
    seen: list[tuple[str, Event]] = []

    async def collect(subject, event):
        seen.append((subject, event))

    await bus.subscribe("plotline.auth.*.registered", collect)
    await bus.nc.flush()
    name = new_username()
    url = f"{multi_server.url}/api/v1/auth/register"
    assert httpx.post(url, json={"username": name, "password": "password123"}
                      ).status_code == 201
    assert httpx.post(url, json={"username": name, "password": "password123"}
                      ).status_code == 409
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # room for a (wrong) second event to arrive
    await bus.close()
    mine = [(s, e) for s, e in seen if s == f"plotline.auth.{name}.registered"]
    assert len(mine) == 1 and mine[0][1].actor == name


def test_serve_auth_alone_reads_its_environment(tmp_path, nats_url, redis_url):
    env = {"PLOTLINE_AUTH_NATS_URL": nats_url, "PLOTLINE_AUTH_MULTI_USER": "true",
           "PLOTLINE_AUTH_KV_URL": f"{redis_url}?prefix=alone:"}
    server = start_plotline(tmp_path, "auth", env=env)
    try:
        assert httpx.get(f"{server.internal_url}/healthz").json()["services"] == ["auth"]
        r = httpx.post(f"{server.url}/api/v1/auth/register",
                       json={"username": new_username(), "password": "password123"})
        assert r.status_code == 201  # multi-user came from the environment
        assert "private nats-server" not in server.log.read_text()
    finally:
        server.stop()


# --- NATS away: the outbox ----------------------------------------------------------------

@pytest.fixture
def own_nats(tmp_path):
    """A nats-server of this test's own, to SIGKILL and start again on its port and store."""
    servers = [start_nats(tmp_path / "nats")]
    yield servers
    for server in servers:
        server.stop()


async def stored(bus: Bus, entity: str) -> list[Event]:
    consumer = await bus.js.pull_subscribe(f"plotline.test.{entity}.*", stream=STREAM_NAME)
    info = await consumer.consumer_info()
    got = await consumer.fetch(info.num_pending, timeout=5) if info.num_pending else []
    await consumer.unsubscribe()
    return [Event.model_validate_json(m.data) for m in got]


async def test_events_written_while_nats_is_away_reach_the_stream_once_in_order(
        own_nats, tmp_path):
    """NATS SIGKILLed mid-stream: publish and notify go on answering (the events wait in
    the outbox, in the service's store), and once NATS is back every event is in the
    stream exactly once, in order, with nothing lost to nats-py's 2 MB buffer."""
    kv = open_kv(f"sqlite:///{tmp_path}/outbox.db")
    bus = await Bus.connect(own_nats[0].url, "test", outbox=kv)
    try:
        await bus.ensure_stream()
        entity = uuid.uuid4().hex
        sent = [await bus.publish(entity, "poked", seq=1),
                await bus.notify(entity, "poked", seq=2)]
        own_nats[0].kill()
        started = time.monotonic()
        big = "x" * 20_000  # 200 of these are 4 MB: twice what nats-py would buffer
        for n in range(3, 203):
            send = bus.publish if n % 2 else bus.notify
            sent.append(await send(entity, "poked", {"pad": big}, seq=n))
        took = time.monotonic() - started
        # never waits on NATS beyond one ack timeout (the first, before the loss is seen)
        assert took < ACK_TIMEOUT_S + 5, took
        assert len(await bus.outbox.keys()) >= 200 and bus.backlog >= 200
        own_nats.append(start_nats(tmp_path / "nats", port=own_nats[0].port))
        assert await bus.flush_outbox(30), f"{bus.backlog} events still waiting"
        assert await bus.outbox.keys() == []
        assert [e.seq for e in await stored(bus, entity)] == list(range(1, 203))
        assert [e.id for e in await stored(bus, entity)] == [e.id for e in sent]
    finally:
        await bus.close()
        await kv.close()


async def test_an_outbox_left_by_a_dead_process_is_published_by_the_next(own_nats, tmp_path):
    url = f"sqlite:///{tmp_path}/outbox.db"
    kv = open_kv(url)
    bus = await Bus.connect(own_nats[0].url, "test", outbox=kv)
    await bus.ensure_stream()
    entity = uuid.uuid4().hex
    own_nats[0].kill()
    sent = [await bus.publish(entity, "poked", seq=n) for n in range(1, 51)]
    for task in bus._tasks:  # the process dies: no drain, no goodbye
        task.cancel()
    await bus.nc.close()
    await kv.close()
    own_nats.append(start_nats(tmp_path / "nats", port=own_nats[0].port))
    kv = open_kv(url)
    successor = await Bus.connect(own_nats[-1].url, "test", outbox=kv)
    try:
        assert await successor.flush_outbox(30)
        assert [e.id for e in await stored(successor, entity)] == [e.id for e in sent]
    finally:
        await successor.close()
        await kv.close()


async def test_a_subscription_hears_everything_published_after_it_returns(bus, nats_url):
    """Bus.listen / subscribe return once the server has the subscription: nats-py's own
    flush() did not promise that (its PING overtook the queued SUB), and one first
    message in 6-16 on a new subscription from another connection was lost."""
    other = await Bus.connect(nats_url, "test")
    try:
        missed = 0
        for _ in range(100):
            heard: list[bytes] = []

            async def on_msg(msg, heard=heard):  # type: ignore[no-untyped-def]
                heard.append(msg.data)

            subject = f"plotline.test.{uuid.uuid4().hex}.poked"
            sub = await bus.listen(subject, on_msg)
            await other.nc.publish(subject, b"first")
            await other.sync()
            for _ in range(100):
                if heard:
                    break
                await asyncio.sleep(0.005)
            missed += not heard
            await sub.unsubscribe()
        assert missed == 0
    finally:
        await other.close()


async def test_a_service_started_while_nats_is_down_waits_for_it(tmp_path, caplog):
    """Bus.connect (every service's start) with NATS not there yet: it waits, saying so
    once (without the password in the URL), and goes on as soon as NATS is started."""
    import logging

    from servers import free_port

    caplog.set_level(logging.INFO, "plotline.bus")
    port = free_port()
    url = f"nats://someone:hunter2@127.0.0.1:{port}"
    connecting = asyncio.create_task(Bus.connect(url, "docs"))
    await asyncio.sleep(1.5)
    assert not connecting.done()
    said = [r.getMessage() for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(said) == 1 and f"nats://127.0.0.1:{port}" in said[0]
    assert "hunter2" not in said[0] and "waits for it" in said[0]
    nats = start_nats(tmp_path / "nats", port=port)  # (accepts any user)
    try:
        bus = await asyncio.wait_for(connecting, 10)
        assert bus.connected
        await bus.close()
        assert any("reached" in r.getMessage() for r in caplog.records)
    finally:
        if not connecting.done():
            connecting.cancel()
        nats.stop()

"""The NATS bus against a real nats-server: stream, envelope, request-reply, auth's events."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from conftest import new_username
from prometheus_client import REGISTRY
from servers import start_plotline

from services.common.bus import Bus
from services.common.errors import Unavailable
from services.common.events import Event
from services.common.names import STREAM_NAME


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
    unsent = REGISTRY.get_sample_value("plotline_events_unsent_total", {"service": "test"})
    with caplog.at_level("WARNING", logger="plotline.bus"):
        event = await closed.notify(entity, "poked", {"n": 6}, seq=6)
    assert event.seq == 6 and "not sent" in caplog.text
    assert REGISTRY.get_sample_value("plotline_events_unsent_total",
                                     {"service": "test"}) == (unsent or 0) + 1


async def test_request_reply_and_failures(bus):
    async def double(req):
        if req.get("boom"):
            raise ValueError("bad question")
        return {"twice": req["n"] * 2}

    subject = f"plotline.test.{uuid.uuid4().hex[:8]}"
    await bus.serve(subject, double, queue="q")
    assert await bus.request(subject, {"n": 21}) == {"twice": 42}
    answer = await bus.request(subject, {"boom": True})
    assert answer["error"] == "internal"
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

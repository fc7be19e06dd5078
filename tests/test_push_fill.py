"""Push never leaves a silent hole in a channel: what a replica missed while it was away
from NATS is read back from the stream, in order, before anything newer; when the stream
no longer has it, every listener is told `resync` (real NATS and JetStream).

"Away" is played by dropping the hub's NATS subscription for the channel while events
are published, and taking a new one afterwards: what nats-py does across a reconnect."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.common.bus import Bus
from services.push.channels import Channel, parse
from services.push.hub import Hub


class Recorder:
    """A Listener that notes what the hub hands it."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int | None]] = []

    def offer(self, channel: str, seq: int | None, frame: str, born: float) -> None:
        self.got.append(("event", seq))

    def recheck(self, channel: str) -> None:
        pass

    def credentials_ended(self, reason: str) -> None:
        pass

    def resync(self, channel: str, seq: int) -> None:
        self.got.append(("resync", seq))


@pytest.fixture
async def buses(nats_url):
    data, push = await Bus.connect(nats_url, "data"), await Bus.connect(nats_url, "push")
    await data.ensure_stream()
    yield data, push
    await data.close()
    await push.close()


async def until(listener: Recorder, count: int) -> list[tuple[str, int | None]]:
    for _ in range(250):
        if len(listener.got) >= count:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # room for a wrong extra one
    return listener.got


async def away(hub: Hub, channel: Channel) -> None:
    await hub._subscriptions[channel.name].unsubscribe()
    await hub.bus.sync()


async def back(hub: Hub, channel: Channel) -> None:
    hub._subscriptions[channel.name] = await hub.bus.listen(
        channel.subject, hub._deliverer(channel.name))


async def joined(push: Bus) -> tuple[Hub, Channel, Recorder, str]:
    hub, source, listener = Hub(push), uuid.uuid4().hex, Recorder()
    channel = parse(f"data:{source}")
    assert channel is not None
    await hub.join(channel, listener)
    return hub, channel, listener, source


async def test_a_hole_is_filled_from_the_stream_before_the_event_after_it(buses):
    data, push = buses
    hub, channel, listener, source = await joined(push)
    await data.publish(source, "appended", seq=1)
    assert await until(listener, 1) == [("event", 1)]
    await away(hub, channel)
    for seq in (2, 3, 4):
        await data.publish(source, "appended", seq=seq)
    await back(hub, channel)
    await data.publish(source, "appended", seq=5)
    assert await until(listener, 5) == [("event", n) for n in range(1, 6)]


async def test_a_hole_the_stream_does_not_have_is_a_resync(buses):
    data, push = buses
    hub, channel, listener, source = await joined(push)
    await data.publish(source, "appended", seq=1)
    await until(listener, 1)
    await data.publish(source, "appended", seq=4)  # 2 and 3 never reached the stream
    assert await until(listener, 3) == [("event", 1), ("resync", 3), ("event", 4)]
    await data.publish(source, "appended", seq=5)  # and live again after it
    assert (await until(listener, 4))[-1] == ("event", 5)


async def test_after_a_reconnect_each_channel_is_refilled_without_waiting_for_news(buses):
    """Events published while the replica was away, and none after: the reconnect
    itself (Bus.on_reconnect) fetches them."""
    data, push = buses
    hub, channel, listener, source = await joined(push)
    await data.publish(source, "appended", seq=1)
    await until(listener, 1)
    await away(hub, channel)
    await data.publish(source, "appended", seq=2)
    await data.notify(source, "appended", seq=3)
    await data.flush_outbox(5)
    await back(hub, channel)
    assert hub.refill_all in push.on_reconnect
    await hub.refill_all()
    assert await until(listener, 3) == [("event", 1), ("event", 2), ("event", 3)]

"""`since` recovery: the events of one channel after a given seq, from JetStream.

The stream keeps every event for a bounded time; a client that held everything up to seq S
gets S+1 onwards, or None (resync) when the stream no longer reaches back to S+1.
"""

from __future__ import annotations

import json
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.bus import Bus
from services.common.names import STREAM_NAME

from .channels import Channel


async def missed(bus: Bus, channel: Channel, since: int, upto: int, limit: int
                 ) -> list[dict[str, Any]] | None:
    """The channel's events with seq > since (at least up to `upto`, the channel's seq
    now), in order; None if some are no longer kept."""
    psub = await bus.js.pull_subscribe(
        channel.subject, stream=STREAM_NAME,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE,
                              inactive_threshold=30.0, max_deliver=1))
    try:
        pending = (await psub.consumer_info()).num_pending
        if pending > limit * 4:  # more history than we would replay: do not read it all
            return None
        events: list[dict[str, Any]] = []
        while pending > 0:
            for msg in await psub.fetch(min(pending, 256), timeout=5):
                pending -= 1
                event = json.loads(msg.data)
                seq = event.get("seq")
                if isinstance(seq, int) and seq > since:
                    events.append(event)
    finally:
        await psub.unsubscribe()
    events.sort(key=lambda e: e["seq"])
    if len(events) > limit:
        return None
    expected = since + 1
    for event in events:  # every seq from since+1 on must be there, once
        if event["seq"] != expected:
            return None
        expected += 1
    if expected <= upto:  # the newest ones are missing: history ends too early
        return None
    return events

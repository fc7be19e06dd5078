"""`since` recovery: the events of one channel after a given seq, from JetStream.

The stream keeps every event for a bounded time; a client that held everything up to seq S
gets S+1 onwards, or None (resync) when the stream no longer reaches back to S+1.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.common.bus import Bus

from .channels import Channel

CLOCK_MARGIN_S = 60.0  # writers' clocks against the NATS server's


async def missed(bus: Bus, channel: Channel, since: int, upto: int, limit: int, *,
                 after: float | None = None, tail_follows: bool = False
                 ) -> list[dict[str, Any]] | None:
    """The channel's events with seq > since (at least up to `upto`, the channel's seq
    now), in order; None if some are no longer kept. `after` (epoch seconds: the time of
    event `since`, when known) reads the stream from then on instead of from its start.

    `tail_follows`: the caller listened to the channel before it learnt `upto`, so the
    newest events that are not in the stream yet (still in a writer's outbox after NATS
    came back) will reach it live: then the unbroken run from since+1 is enough."""
    if after:
        start = datetime.fromtimestamp(after - CLOCK_MARGIN_S, UTC)
        policy = {"deliver_policy": DeliverPolicy.BY_START_TIME,
                  "opt_start_time": start.isoformat().replace("+00:00", "Z")}
    else:
        policy = {"deliver_policy": DeliverPolicy.ALL}
    psub = await bus.history(channel.subject, ConsumerConfig(
        ack_policy=AckPolicy.NONE, inactive_threshold=30.0, max_deliver=1, **policy))
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
    # one of each seq: an event two replicas both published from their outboxes after
    # the stream's deduplication window is in it twice
    events = [e for i, e in enumerate(events) if i == 0 or e["seq"] != events[i - 1]["seq"]]
    if len(events) > limit:
        return None
    expected = since + 1
    for event in events:  # every seq from since+1 on must be there
        if event["seq"] != expected:
            return None
        expected += 1
    if expected <= upto and not tail_follows:  # the newest are missing: history ends early
        return None
    return events

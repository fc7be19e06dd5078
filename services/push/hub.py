"""Fan-out: one NATS subscription per channel per replica, each event encoded once.

Connections join and leave channels; the first to join a channel subscribes this replica to
its subject, the last to leave unsubscribes. An event is decoded and encoded into its frame
once, then offered to every connection on the channel (each has its own bounded queue).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from services.common.bus import Bus
from services.common.events import DocsVerb, Event
from services.common.names import service_subjects

from .channels import Channel

log = logging.getLogger("plotline.push")

CONNECTIONS = Gauge("plotline_push_connections", "Open websocket connections")
SUBSCRIPTIONS = Gauge("plotline_push_subscriptions", "Channel subscriptions of connections")
CHANNELS = Gauge("plotline_push_channels", "Channels this replica is subscribed to on NATS")
MESSAGES_OUT = Counter("plotline_push_messages_out_total", "Frames sent to clients")
DROPS = Counter("plotline_push_slow_clients_total", "Connections closed for falling behind")
LATENCY = Histogram("plotline_push_delivery_seconds", "Event time to frame sent",
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))


class Listener(Protocol):
    def offer(self, channel: str, seq: int | None, frame: str, born: float) -> None: ...

    def recheck(self, channel: str) -> None: ...


# docs events after which someone may have lost the right to read a document (and the
# sources it binds, listed in the event's data["sources"])
REVOKING = (DocsVerb.UNPUBLISHED, DocsVerb.UNSHARED, DocsVerb.ACL_CHANGED, DocsVerb.DELETED)


class Hub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._listeners: dict[str, set[Listener]] = {}
        self._subscriptions: dict[str, Any] = {}
        self._lock = asyncio.Lock()  # joins and leaves are rare; events never wait on it

    async def watch_revocations(self) -> None:
        """Every replica hears docs' access changes and has its listeners of the document,
        and of the sources it binds, ask again before anything more reaches them."""

        async def changed(subject: str, event: Event) -> None:
            names = [f"doc:{subject.split('.')[2]}"] + [
                f"data:{s}" for s in event.data.get("sources", []) if isinstance(s, str)]
            for name in names:
                for listener in list(self._listeners.get(name, ())):
                    listener.recheck(name)

        for verb in REVOKING:
            await self.bus.subscribe(service_subjects("docs", verb), changed)

    async def join(self, channel: Channel, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.setdefault(channel.name, set())
            if channel.name not in self._subscriptions:
                self._subscriptions[channel.name] = await self.bus.nc.subscribe(
                    channel.subject, cb=self._deliverer(channel.name))
                CHANNELS.inc()
            if listener not in listeners:
                listeners.add(listener)
                SUBSCRIPTIONS.inc()

    async def leave(self, channel_name: str, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.get(channel_name)
            if listeners is None or listener not in listeners:
                return
            listeners.discard(listener)
            SUBSCRIPTIONS.dec()
            if not listeners:
                del self._listeners[channel_name]
                sub = self._subscriptions.pop(channel_name)
                CHANNELS.dec()
                try:
                    await sub.unsubscribe()
                except Exception:  # the connection is closing anyway
                    log.debug("unsubscribe of %s failed", channel_name, exc_info=True)

    def _deliverer(self, channel_name: str):  # type: ignore[no-untyped-def]
        async def deliver(msg: Any) -> None:
            try:
                event = json.loads(msg.data)
                frame, seq, born = encode(channel_name, event)
            except (ValueError, TypeError, KeyError):
                log.warning("undecodable event on %s dropped", msg.subject)
                return
            for listener in list(self._listeners.get(channel_name, ())):
                listener.offer(channel_name, seq, frame, born)

        return deliver


def encode(channel_name: str, event: dict[str, Any]) -> tuple[str, int | None, float]:
    """The client frame of an event envelope, its seq, and when it happened (epoch s)."""
    frame = json.dumps({"op": "event", "channel": channel_name, "seq": event.get("seq"),
                        "type": event["type"], "data": event.get("data", {})},
                       separators=(",", ":"))
    try:
        born = datetime.fromisoformat(event["time"]).timestamp()
    except (KeyError, ValueError, TypeError):
        born = 0.0
    return frame, event.get("seq"), born

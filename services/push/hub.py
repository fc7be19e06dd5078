"""Fan-out: one NATS subscription per channel per replica, each event encoded once.

Connections join and leave channels; the first to join a channel subscribes this replica to
its subject, the last to leave unsubscribes. An event is decoded and encoded into its frame
once, then offered to every connection on the channel (each has its own bounded queue).
Revocations fan out the same way: a revoked credential closes every connection opened
with it, and docs' access changes make a channel's listeners ask again.

No silent gaps: per channel the hub knows the last seq it passed on. An event further
ahead than the next one (the ones between were published while this replica was away
from NATS, or reached the stream from an outbox after their successors) is held until the
missing events are read from JetStream and passed on first; when the stream no longer has
them, every listener is told `resync`. After its own reconnect to NATS the hub does the
same for each channel, since events published meanwhile never reached it live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from services.common.bus import Bus
from services.common.events import DocsVerb, Event
from services.common.names import DOCS_UNBOUND, service_subjects, subject_entity
from services.common.names import channel as channel_name

from . import recovery
from .channels import Access, Channel, ask

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

    def credentials_ended(self, reason: str) -> None: ...

    def resync(self, channel: str, seq: int) -> None:
        """Events up to `seq` cannot be replayed: the client must reload the channel."""


# docs events after which someone may have lost the right to read a document (and the
# sources it binds, listed in the event's data["sources"])
REVOKING = (DocsVerb.UNPUBLISHED, DocsVerb.UNSHARED, DocsVerb.ACL_CHANGED, DocsVerb.DELETED)
# ... or gained it: cached answers are dropped on these too
GRANTING = (DocsVerb.PUBLISHED, DocsVerb.SHARED)
ACCESS_TTL = 2.0  # seconds an access answer is reused for further subscribers
FILL_ATTEMPTS, FILL_RETRY_S = 3, 0.5  # reading a hole back, before telling listeners resync

ASKS = Counter("plotline_push_access_total", "Access checks for subscriptions",
               ["answer"])  # asked (the owner service) or cached
FILLS = Counter("plotline_push_fills_total", "Holes in a channel's seq, filled from the "
                "stream or, when it no longer has them, answered with resync", ["outcome"])


class Hub:
    def __init__(self, bus: Bus, max_fill: int = 10_000) -> None:
        self.bus = bus
        self.max_fill = max_fill  # events read back to fill one hole, beyond: resync
        self._channels: dict[str, Channel] = {}
        self._filling: dict[str, asyncio.Lock] = {}  # per channel: one fill at a time
        bus.on_reconnect.append(self.refill_all)
        self._listeners: dict[str, set[Listener]] = {}
        self._subscriptions: dict[str, Any] = {}
        self._lock = asyncio.Lock()  # joins and leaves are rare; events never wait on it
        # Access answers, reused for ACCESS_TTL by more subscribers of the same channel:
        # (channel, user, share, doc) -> (asked at, Access). The answer's version is the
        # channel's seq when asked; it is still exact later only while this replica has
        # been listening to the channel since before asking (then `_seen` has every newer
        # seq), so that is when it is reused.
        self._answers: dict[tuple[str, str | None, str | None, str | None],
                            tuple[float, Access]] = {}
        self._listening_since: dict[str, float] = {}
        self._seen: dict[str, int] = {}
        self._seen_at: dict[str, float] = {}  # when the event of that seq happened
        # Connections by the credential they were opened with (an API key's id, a login
        # JWT's sid): its revocation event reaches every replica, which closes them.
        self._holders: dict[str, set[Listener]] = {}
        self._refills: set[asyncio.Task[None]] = set()

    async def access(self, channel: Channel, user: str | None, share: str | None,
                     doc: str | None = None) -> Access:
        key, now = (channel.name, user, share, doc), time.monotonic()
        hit = self._answers.get(key)
        since = self._listening_since.get(channel.name)
        if hit and now - hit[0] < ACCESS_TTL and since is not None and since <= hit[0]:
            ASKS.labels("cached").inc()
            answer = hit[1]
            if answer.version is not None and channel.name in self._seen:
                return replace(answer, version=max(answer.version, self._seen[channel.name]))
            return answer
        ASKS.labels("asked").inc()
        answer = await ask(self.bus, channel, user, share, doc)
        if answer.version is not None and channel.name in self._subscriptions:
            # listening since before the question: every later seq reaches us
            self._seen.setdefault(channel.name, answer.version)
        if len(self._answers) > 100_000:
            self._answers.clear()
        self._answers[key] = (now, answer)
        return answer

    def _forget_answers(self, names: set[str]) -> None:
        for key in [k for k in self._answers if k[0] in names]:
            del self._answers[key]

    def _recheck(self, names: set[str]) -> None:
        for name in names:
            for listener in list(self._listeners.get(name, ())):
                listener.recheck(name)

    async def watch_revocations(self) -> None:
        """Every replica hears docs' access changes and has its listeners of the document,
        and of the sources it binds, ask again before anything more reaches them."""

        async def changed(subject: str, event: Event) -> None:
            names = {channel_name("doc", subject_entity(subject))} | sources(event)
            self._forget_answers(names)
            if event.type in REVOKING:
                self._recheck(names)

        async def unbound(_: str, notice: Event) -> None:  # a write dropped bindings
            self._forget_answers(sources(notice))
            self._recheck(sources(notice))

        for verb in (*REVOKING, *GRANTING):
            await self.bus.subscribe(service_subjects("docs", verb), changed)
        await self.bus.subscribe(DOCS_UNBOUND, unbound)

    def hold(self, credential: str, listener: Listener) -> None:
        self._holders.setdefault(credential, set()).add(listener)

    def release(self, credential: str, listener: Listener) -> None:
        holders = self._holders.get(credential)
        if holders is not None:
            holders.discard(listener)
            if not holders:
                del self._holders[credential]

    def credential_revoked(self, credential: str) -> None:
        """`Authenticator.on_revoked`: close every socket opened with that credential."""
        for listener in list(self._holders.pop(credential, ())):
            listener.credentials_ended("credentials revoked")

    async def join(self, channel: Channel, listener: Listener) -> None:
        async with self._lock:
            listeners = self._listeners.setdefault(channel.name, set())
            if channel.name not in self._subscriptions:
                # (in place at the server from here on: then we ask for access)
                self._subscriptions[channel.name] = await self.bus.listen(
                    channel.subject, self._deliverer(channel.name))
                self._listening_since[channel.name] = time.monotonic()
                self._channels[channel.name] = channel
                self._filling[channel.name] = asyncio.Lock()
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
                self._listening_since.pop(channel_name, None)
                self._seen.pop(channel_name, None)
                self._seen_at.pop(channel_name, None)
                self._channels.pop(channel_name, None)
                self._filling.pop(channel_name, None)
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
            lock = self._filling.get(channel_name)
            if lock is not None and (lock.locked() or self._ahead(channel_name, seq)):
                async with lock:  # (NATS holds the channel's later events meanwhile)
                    if self._ahead(channel_name, seq):
                        await self._fill(channel_name, upto=seq - 1)  # type: ignore[operator]
                    self._offer(channel_name, seq, frame, born)
                return
            self._offer(channel_name, seq, frame, born)

        return deliver

    def _ahead(self, channel_name: str, seq: int | None) -> bool:
        seen = self._seen.get(channel_name)
        return isinstance(seq, int) and seen is not None and seq > seen + 1

    def _offer(self, channel_name: str, seq: int | None, frame: str, born: float) -> None:
        if isinstance(seq, int):
            seen = self._seen.get(channel_name)
            if seen is not None and seq <= seen:
                # passed on already (a fill read it back, an outbox sent it twice), or
                # older than every listener's subscription (they join before asking)
                return
            self._seen[channel_name] = seq
            self._seen_at[channel_name] = born
        for listener in list(self._listeners.get(channel_name, ())):
            listener.offer(channel_name, seq, frame, born)

    async def _fill(self, channel_name: str, upto: int | None) -> None:
        """Pass on the channel's events after the last seq seen (at least up to `upto`)
        from the stream; or, when it does not have them all, tell every listener to
        resync. Called with the channel's fill lock held."""
        channel, since = self._channels.get(channel_name), self._seen.get(channel_name)
        if channel is None or since is None:
            return
        events = None
        for attempt in range(FILL_ATTEMPTS):
            if attempt:  # the missing ones may still be on their way from an outbox
                await asyncio.sleep(FILL_RETRY_S)
            try:
                events = await recovery.missed(self.bus, channel, since,
                                               since if upto is None else upto,
                                               self.max_fill,
                                               after=self._seen_at.get(channel_name))
            except Exception as exc:  # NATS away again: the client reloads instead
                log.warning("filling %s from the stream failed: %s", channel_name, exc)
            if events is not None:
                break
        if events is None:
            FILLS.labels("resync").inc()
            newest = max(since, upto or since)
            log.warning("%s: events after seq %d are not in the stream: resync", channel_name,
                        since)
            self._seen[channel_name] = newest
            for listener in list(self._listeners.get(channel_name, ())):
                listener.resync(channel_name, newest)
            return
        if events:
            FILLS.labels("filled").inc()
            log.info("%s: %d missed events filled from the stream", channel_name, len(events))
        for event in events:
            frame, seq, born = encode(channel_name, event)
            self._offer(channel_name, seq, frame, born)

    async def refill_all(self) -> None:
        """After a reconnect to NATS (Bus.on_reconnect): what each channel missed while
        this replica was away, from the stream, in the background."""
        task = asyncio.get_running_loop().create_task(self._refill(list(self._channels)))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill(self, names: list[str]) -> None:
        for name in names:
            lock = self._filling.get(name)
            if lock is not None and name in self._seen:
                async with lock:
                    await self._fill(name, upto=None)


def sources(event: Event) -> set[str]:
    """The data channels an access event (or unbinding notice) names."""
    return {channel_name("data", s) for s in event.data.get("sources", []) if isinstance(s, str)}


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

"""The NATS bus: events through one JetStream stream, questions through request-reply.

Publish-after-write is the caller's duty (call `publish` only once the store write
succeeded); the bus makes sure the event reaches the stream however long NATS is away. It
is published with `Nats-Msg-Id` = event id (a repeat is deduplicated by the server) and
waits for JetStream's ack at most ACK_TIMEOUT_S; when NATS is not connected, or the ack
does not come, the event goes to the outbox (outbox.py, the service's own store) and is
published from there, in order, when NATS answers again. While the outbox holds anything,
newer events queue behind it, so one replica's events never overtake each other.
`notify` is the same without waiting: the ack is awaited in the background (a third of a
single-row append's work was handling it inline), and an event not acked in time is put
in the outbox like the rest.

The answer to the write never waits on NATS: it is committed, and its event is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from .errors import Unavailable
from .events import Event
from .names import EVENT_SUBJECTS, STREAM_NAME, event_subject
from .outbox import Outbox
from .stores.kv import KVStore

log = logging.getLogger("plotline.bus")
QUEUED = Counter("plotline_events_queued_total",
                 "Events put in the outbox (NATS away, or no ack in time)", ["service"])
BACKLOG = Gauge("plotline_events_outbox", "Events waiting in this process's outbox",
                ["service"])
LOST = Counter("plotline_events_lost_total",
               "Events neither NATS nor the outbox's store would take (consumers see the "
               "gap in seq and resync)", ["service"])
RECONNECTS = Counter("plotline_nats_reconnects_total", "Reconnections to NATS", ["service"])

ACK_TIMEOUT_S = 2.0     # JetStream's ack, before the event goes to the outbox instead
MAX_UNACKED = 20_000    # notify()'s events awaiting their ack; beyond, they queue
RETRY_S = 0.5           # the outbox's drainer, between attempts while NATS is away
DRAIN_BATCH = 256       # outbox entries published before awaiting their acks

EventHandler = Callable[[str, Event], Awaitable[None]]
RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Hook = Callable[[], Awaitable[None]]


class Bus:
    def __init__(self, nc: NATS, service: str, outbox: Outbox | None = None) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.service = service
        self.outbox = outbox or Outbox()
        # Hooks run after NATS came back (push refills its channels from the stream).
        self.on_reconnect: list[Hook] = []
        self._queued = 0        # entries this process put in the outbox and saw no drain of
        self._holds = 0         # puts ever, so the drainer can tell it saw them all
        self._wake = asyncio.Event()
        self._unacked: dict[str, tuple[float, str, bytes, asyncio.Future[Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False

    @classmethod
    async def connect(cls, url: str, service: str, *, user: str | None = None,
                      password: str | None = None, outbox: KVStore | None = None) -> Bus:
        """Connect as `user`: Plotline's NATS refuses connections without credentials.

        `outbox`: the service's store, where events wait while NATS is away (events
        never go to nats-py's own buffer for that time, 2 MB and then errors). Pings
        every 5 s notice a dead server that closed nothing (a lost node) within ~15 s."""
        holder: list[Bus] = []

        async def reconnected() -> None:
            if holder:
                await holder[0]._reconnected()

        async def disconnected() -> None:
            if holder and not holder[0].closing:
                log.warning("NATS connection lost (%s): reconnecting every 0.5 s; events "
                            "wait in the outbox meanwhile", service)

        async def failed(exc: Exception) -> None:  # (nats-py's own logs a traceback per try)
            if not holder and not waiting:  # not connected yet: the start waits for NATS
                waiting.append(True)
                log.warning("NATS at %s is not reachable (%s: %s): %s waits for it, trying "
                            "every 0.5 s (/readyz says 503 meanwhile)", _safe(url),
                            type(exc).__name__, exc, service)
            log.debug("NATS: %s: %s", type(exc).__name__, exc)

        waiting: list[bool] = []

        nc = await nats.connect(url, name=f"plotline-{service}", connect_timeout=5,
                                user=user, password=password, ping_interval=5,
                                max_outstanding_pings=3, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.5,
                                reconnected_cb=reconnected, disconnected_cb=disconnected,
                                error_cb=failed)
        bus = cls(nc, service, Outbox(outbox))
        holder.append(bus)
        if waiting:
            log.info("NATS at %s reached: %s goes on starting", _safe(url), service)
        await bus.start()
        return bus

    async def start(self) -> None:
        """Drain what an earlier process left in the outbox; watch for unacked events."""
        self._queued = len(await self.outbox.keys())
        BACKLOG.labels(self.service).set(self._queued)
        if self._queued:
            log.info("%d events left in the outbox: publishing them", self._queued)
            self._wake.set()
        self._tasks = [asyncio.create_task(self._drain()), asyncio.create_task(self._sweep())]

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    @property
    def backlog(self) -> int:
        """Events of this process not yet in the stream (outbox and awaiting ack)."""
        return self._queued + len(self._unacked)

    async def ensure_stream(self, *, max_age_s: float = 24 * 3600,
                            max_bytes: int = 1 << 30, max_msgs: int = 10_000_000) -> None:
        """Create the event stream if missing; bounded so history cannot grow forever."""
        config = StreamConfig(
            name=STREAM_NAME, subjects=[EVENT_SUBJECTS], retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_age=max_age_s,
            max_bytes=max_bytes, max_msgs=max_msgs, duplicate_window=120.0,
        )
        try:
            await self.js.stream_info(STREAM_NAME)
        except NotFoundError:
            try:
                await self.js.add_stream(config)
            except Exception:  # another replica created it in between
                await self.js.stream_info(STREAM_NAME)

    async def publish(self, entity_id: str, verb: str, data: dict[str, Any] | None = None, *,
                      actor: str | None = None, seq: int | None = None) -> Event:
        """Publish and wait for JetStream's ack (at most ACK_TIMEOUT_S), else queue the
        event in the outbox. Never raises for NATS: the write it describes is committed."""
        event = Event(type=verb, actor=actor, seq=seq, data=data or {})
        subject = event_subject(self.service, entity_id, verb)
        payload = event.model_dump_json().encode()
        if self._queued or not self.nc.is_connected:
            await self._hold(subject, event.id, payload, "queued behind the outbox")
            return event
        try:
            await self.js.publish(subject, payload, timeout=ACK_TIMEOUT_S,
                                  headers={"Nats-Msg-Id": event.id})
        except Exception as exc:  # timeout, connection lost, no stream
            await self._hold(subject, event.id, payload, f"{type(exc).__name__}: {exc}")
        return event

    async def notify(self, entity_id: str, verb: str, data: dict[str, Any] | None = None, *,
                     actor: str | None = None, seq: int | None = None) -> Event:
        """Publish without waiting for JetStream's ack: for the most frequent event,
        data's `appended`. The ack is awaited in the background; without it in
        ACK_TIMEOUT_S the event goes to the outbox (a repeat the server deduplicates)."""
        event = Event(type=verb, actor=actor, seq=seq, data=data or {})
        subject = event_subject(self.service, entity_id, verb)
        payload = event.model_dump_json().encode()
        if self._queued or not self.nc.is_connected or len(self._unacked) >= MAX_UNACKED:
            await self._hold(subject, event.id, payload, "queued behind the outbox")
            return event
        try:
            future = await self.js.publish_async(subject, payload, wait_stall=ACK_TIMEOUT_S,
                                                 headers={"Nats-Msg-Id": event.id})
        except Exception as exc:  # connection lost, too many stalled
            await self._hold(subject, event.id, payload, f"{type(exc).__name__}: {exc}")
            return event
        self._unacked[event.id] = (time.monotonic(), subject, payload, future)
        future.add_done_callback(lambda f, key=event.id: self._acked(key, f))
        return event

    def _acked(self, key: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return  # the sweeper gave up on it and queued it
        entry = self._unacked.pop(key, None)
        if entry is not None and future.exception() is not None:
            task = asyncio.get_running_loop().create_task(
                self._hold(entry[1], key, entry[2], f"refused: {future.exception()}"))
            self._tasks.append(task)
            task.add_done_callback(self._tasks.remove)

    async def _sweep(self) -> None:
        """notify()'s events whose ack did not come in time go to the outbox."""
        while True:
            await asyncio.sleep(ACK_TIMEOUT_S / 2)
            cutoff = time.monotonic() - ACK_TIMEOUT_S
            if any(sent < cutoff for sent, *_ in self._unacked.values()):
                with contextlib.suppress(Exception):
                    await self._spill("no ack in time")  # (every newer one with it)

    async def _hold(self, subject: str, msg_id: str, payload: bytes, why: str) -> None:
        await self._spill("ahead of a queued one")  # older events first, in order
        await self._put(subject, msg_id, payload, why)

    async def _spill(self, why: str) -> None:
        """Every event still awaiting its ack to the outbox, oldest first."""
        spilled = list(self._unacked.items())
        self._unacked.clear()
        for key, (_, subject, payload, future) in spilled:
            future.cancel()  # (frees nats-py's slot; a late ack is a deduplicated repeat)
            await self._put(subject, key, payload, why)

    async def _put(self, subject: str, msg_id: str, payload: bytes, why: str) -> None:
        try:
            await self.outbox.put(subject, msg_id, payload)
        except Exception as exc:  # the store is away too: nothing keeps the event
            LOST.labels(self.service).inc()
            log.error("event %s lost (%s; outbox: %s: %s)", subject, why,
                      type(exc).__name__, exc)
            return
        if not self._queued:
            log.warning("events go to the outbox from %s (%s)", subject, why)
        self._queued += 1
        self._holds += 1
        QUEUED.labels(self.service).inc()
        BACKLOG.labels(self.service).set(self._queued)
        self._wake.set()

    async def _drain(self) -> None:
        """Publish the outbox's entries in order whenever NATS is there; until it is
        empty (and no put happened meanwhile), new events queue behind it."""
        while True:
            await self._wake.wait()
            if not self.nc.is_connected:
                await asyncio.sleep(RETRY_S)
                continue
            holds = self._holds
            try:
                keys = await self.outbox.keys()
                for start in range(0, len(keys), DRAIN_BATCH):
                    await self._publish_batch(keys[start:start + DRAIN_BATCH])
            except Exception as exc:
                log.warning("outbox: publishing failed (%s: %s); retrying",
                            type(exc).__name__, exc)
                await asyncio.sleep(RETRY_S)
                continue
            if not keys and holds == self._holds:
                if self._queued:
                    log.info("outbox empty: events are published directly again")
                self._queued = 0
                BACKLOG.labels(self.service).set(0)
                self._wake.clear()

    async def _publish_batch(self, keys: list[str]) -> None:
        """Up to DRAIN_BATCH entries at once, in order on the one connection (so in order
        in the stream), each removed once JetStream acknowledged it."""
        entries = [e for e in [await self.outbox.get(k) for k in keys] if e is not None]
        acks = []
        try:
            for entry in entries:
                acks.append(await self.js.publish_async(
                    entry.subject, entry.payload, wait_stall=ACK_TIMEOUT_S,
                    headers={"Nats-Msg-Id": entry.msg_id}))
            await asyncio.wait_for(asyncio.gather(*acks), ACK_TIMEOUT_S * 2)
        except BaseException:
            for ack in acks:
                ack.cancel()  # (frees nats-py's slots: the batch is sent again)
            raise
        for entry in entries:
            await self.outbox.remove(entry.key)
        self._queued = max(0, self._queued - len(keys))
        BACKLOG.labels(self.service).set(self._queued)

    async def _reconnected(self) -> None:
        RECONNECTS.labels(self.service).inc()
        log.info("NATS reconnected (%s); %d events in the outbox", self.service, self._queued)
        self._wake.set()
        for hook in self.on_reconnect:
            try:
                await hook()
            except Exception:
                log.exception("reconnect hook failed")

    async def flush_outbox(self, timeout: float) -> bool:
        """Wait until every event of this process reached the stream (True), or timeout."""
        deadline = time.monotonic() + timeout
        while self.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.backlog

    async def subscribe(self, subject: str, handler: EventHandler, *,
                        queue: str = "") -> Any:
        """Live events (core NATS); a failing handler is logged, never kills the loop.
        Every event published after this returns reaches the handler."""

        async def on_msg(msg: Msg) -> None:
            try:
                await handler(msg.subject, Event.model_validate_json(msg.data))
            except Exception:
                log.exception("event handler failed for %s", msg.subject)

        return await self.listen(subject, on_msg, queue=queue)

    async def hint(self, subject: str, event: Event) -> None:
        """A notice on core NATS, outside the stream and the outbox: for what only tells
        listeners to ask again (docs' `unbound`), where one lost costs a recheck, never a
        change."""
        await self.nc.publish(subject, event.model_dump_json().encode())

    async def history(self, subject: str, config: Any) -> Any:
        """A pull subscription reading the stream's events on `subject` (a nats-py
        ConsumerConfig says from where): push's `since` recovery. Unsubscribe it after."""
        return await self.js.pull_subscribe(subject, stream=STREAM_NAME, config=config)

    async def listen(self, subject: str, callback: Callable[[Msg], Awaitable[None]], *,
                     queue: str = "") -> Any:
        """A raw subscription (push decodes its frames itself), in place at the server
        when this returns."""
        sub = await self.nc.subscribe(subject, queue=queue, cb=callback)
        await self.sync()
        return sub

    async def sync(self) -> None:
        """Return once the server has everything sent so far (subscriptions included).

        nats-py 2.16's flush() writes its PING straight to the socket, ahead of commands
        still queued for its flusher, so its PONG can come back before the server has
        seen a SUB sent just before: 6-16 % of first messages on a new subscription were
        lost here. Writing the queue out first makes the PING come after them."""
        if self.nc.is_connected:
            await self.nc._flush_pending(force_flush=True)
            await self.nc.flush()

    async def consume(self, subject: str, handler: EventHandler, *, durable: str,
                      ack_wait_s: float = 30.0, max_deliver: int = 5) -> Any:
        """Events that must be acted on even if no replica was up when they happened.

        A durable JetStream consumer, shared by every replica (`durable` doubles as the
        queue group, so each event goes to one of them). It starts at the events published
        after its creation and then remembers its place: what arrives while the service
        is down waits for it. An event is acknowledged once the handler returned; a
        failing handler gets it again (up to max_deliver times, ack_wait_s apart).
        """

        async def on_msg(msg: Msg) -> None:
            try:
                await handler(msg.subject, Event.model_validate_json(msg.data))
            except Exception:
                log.exception("event handler failed for %s (delivery %s of %d)", msg.subject,
                              msg.metadata.num_delivered, max_deliver)
                await msg.nak(delay=1.0)
                return
            await msg.ack()

        config = ConsumerConfig(
            durable_name=durable, deliver_group=durable, filter_subject=subject,
            deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s, max_deliver=max_deliver)
        return await self.js.subscribe(subject, queue=durable, durable=durable, cb=on_msg,
                                       manual_ack=True, stream=STREAM_NAME, config=config)

    async def serve(self, subject: str, handler: RequestHandler, *, queue: str) -> Any:
        """Answer questions on `subject`; replicas share the work through the queue group.

        A handler that fails (its store away, say) answers `{"error": "unavailable",
        "retry": true}`: the asker raises Unavailable (a 503), never takes it for a no."""

        async def on_msg(msg: Msg) -> None:
            try:
                reply = await handler(json.loads(msg.data or b"{}"))
            except Exception as exc:
                if isinstance(exc, Unavailable):
                    log.warning("cannot answer on %s: %s", subject, exc.detail)
                else:
                    log.exception("request handler failed for %s", subject)
                reply = {"ok": False, "error": "unavailable", "retry": True,
                         "detail": f"{type(exc).__name__}: {exc}"}
            await msg.respond(json.dumps(reply).encode())

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def request(self, subject: str, payload: dict[str, Any], *,
                      timeout: float = 2.0) -> dict[str, Any]:
        """The answer to a question; Unavailable when none came, or the answerer could
        not work it out (its `retry` flag) — a retryable 503, not a refusal."""
        if not self.nc.is_connected:  # at once, not after `timeout` in nats-py's buffer
            raise Unavailable(f"no answer on {subject}: NATS is not connected")
        try:
            msg = await self.nc.request(subject, json.dumps(payload).encode(), timeout=timeout)
        except Exception as exc:  # no responder, timeout, connection lost
            raise Unavailable(f"no answer on {subject}: {type(exc).__name__}") from exc
        answer = json.loads(msg.data)
        if isinstance(answer, dict) and answer.get("retry"):
            raise Unavailable(f"{subject}: {answer.get('detail', 'could not answer')}")
        return answer

    async def close(self, *, flush_s: float = 5.0) -> None:
        """Publish what waits (up to flush_s), finish in-flight handlers, disconnect.
        What is still in the outbox then stays in the store for the next process."""
        self.closing = True
        if self.backlog and self.nc.is_connected:
            await self.flush_outbox(flush_s)
        for task in self._tasks:
            task.cancel()
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()


def _safe(url: str) -> str:
    """The URL without credentials (nats://user:password@host), for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]

"""The NATS bus: events through one JetStream stream, questions through request-reply.

Publish-after-write is the caller's duty (call `publish` only once the store write
succeeded); the bus makes the publish itself durable (JetStream ack) and idempotent
(`Nats-Msg-Id` = event id, so a retried publish is deduplicated by the server). `notify`
is the same without waiting for the ack, for events whose loss a `seq` gap reveals.
"""

from __future__ import annotations

import json
import logging
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
from prometheus_client import Counter

from .errors import Unavailable
from .events import Event
from .names import EVENT_SUBJECTS, STREAM_NAME, event_subject

log = logging.getLogger("plotline.bus")
UNSENT = Counter("plotline_events_unsent_total",
                 "Events notify() could not hand to NATS (published without an ack)",
                 ["service"])

EventHandler = Callable[[str, Event], Awaitable[None]]
RequestHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Bus:
    def __init__(self, nc: NATS, service: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.service = service

    @classmethod
    async def connect(cls, url: str, service: str, *, user: str | None = None,
                      password: str | None = None) -> Bus:
        """Connect as `user`: Plotline's NATS refuses connections without credentials."""
        nc = await nats.connect(url, name=f"plotline-{service}", connect_timeout=5,
                                user=user, password=password,
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        return cls(nc, service)

    @property
    def connected(self) -> bool:
        return self.nc.is_connected

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
        """Publish and wait until JetStream has stored the event (raises if it cannot)."""
        event = Event(type=verb, actor=actor, seq=seq, data=data or {})
        subject = event_subject(self.service, entity_id, verb)
        await self.js.publish(subject, event.model_dump_json().encode(),
                              headers={"Nats-Msg-Id": event.id})
        return event

    async def notify(self, entity_id: str, verb: str, data: dict[str, Any] | None = None, *,
                     actor: str | None = None, seq: int | None = None) -> Event:
        """Publish without waiting for JetStream's ack: the stream still stores the event
        (it captures the subject) and live subscribers get it alike, but a loss is not seen.

        For the most frequent event, data's `appended`: handling its ack was a third of a
        single-row append's work. Its `seq` is the source's version, so a viewer that misses
        one sees the gap and refetches. A broken connection is logged and counted
        (plotline_events_unsent_total), never raised: the write the event describes is
        already committed (and nats-py keeps what is published while it reconnects)."""
        event = Event(type=verb, actor=actor, seq=seq, data=data or {})
        subject = event_subject(self.service, entity_id, verb)
        try:
            await self.nc.publish(subject, event.model_dump_json().encode(),
                                  headers={"Nats-Msg-Id": event.id})
        except Exception as exc:  # connection closed, outbound buffer full
            UNSENT.labels(self.service).inc()
            log.warning("event %s not sent: %s: %s", subject, type(exc).__name__, exc)
        return event

    async def subscribe(self, subject: str, handler: EventHandler, *,
                        queue: str = "") -> Any:
        """Live events (core NATS); a failing handler is logged, never kills the loop."""

        async def on_msg(msg: Msg) -> None:
            try:
                await handler(msg.subject, Event.model_validate_json(msg.data))
            except Exception:
                log.exception("event handler failed for %s", msg.subject)

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

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
        """Answer questions on `subject`; replicas share the work through the queue group."""

        async def on_msg(msg: Msg) -> None:
            try:
                reply = await handler(json.loads(msg.data or b"{}"))
            except Exception as exc:
                log.exception("request handler failed for %s", subject)
                reply = {"error": "internal", "detail": str(exc)}
            await msg.respond(json.dumps(reply).encode())

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def request(self, subject: str, payload: dict[str, Any], *,
                      timeout: float = 2.0) -> dict[str, Any]:
        try:
            msg = await self.nc.request(subject, json.dumps(payload).encode(), timeout=timeout)
        except Exception as exc:  # no responder, timeout, connection lost
            raise Unavailable(f"no answer on {subject}: {type(exc).__name__}") from exc
        return json.loads(msg.data)

    async def close(self) -> None:
        """Drain: finish in-flight handlers and flush pending publishes, then disconnect."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception:
                await self.nc.close()

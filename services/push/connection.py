"""One websocket client: its ops in, channel events out (DESIGN.md, push).

The protocol lives here, apart from the websocket server under it: a `Sink` takes frames
out (and refuses them when the client is too far behind: it is then closed with 1008),
and the server feeds text frames in (`feed`). Two servers use it: the ASGI route of the
embedded mode (asgi.py, a bounded queue per client) and `plotline serve push`
(standalone.py, picows, the socket's own write buffer).

Ops are handled one at a time, in order; a client sending faster than
max_ops_per_second is read more slowly (the Sink pauses reading). Per channel the
connection remembers the last seq it sent, so an event is never sent twice or out of
order (live events that arrive while a `since` replay or an access recheck runs wait,
then only the newer ones go out).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.common.bus import Bus
from services.common.errors import PlotlineError
from services.common.identity import Principal
from services.common.names import DOCS_PATCH, MAX_SHARE_KEY

from . import channels, recovery
from .config import PushSettings
from .handshake import BAD_CREDENTIALS
from .hub import DROPS, LATENCY, MESSAGES_OUT, Hub, encode

log = logging.getLogger("plotline.push")

RETRY_AFTER_S = 2   # a subscribe the owner service could not answer: try again then
TAIL_WAIT_S, TAIL_WAIT_MAX_S = 1.5, 15.0  # a replay's newest events, on their way

# close codes
TOO_SLOW = 1008     # policy violation: fell behind (reason says so)
TOO_BIG = 1009      # message too big


@dataclass
class ChannelState:
    channel: channels.Channel
    share: str | None = None
    doc: str | None = None             # a data channel read through this document
    last: int | None = None            # the seq last sent (None: not known yet)
    replaying: bool = True             # live events wait in `held` (replay, or recheck)
    held: list[tuple[int | None, str, float]] = field(default_factory=list)


class Sink(Protocol):
    """Where a connection's frames go: the websocket server's side of one client."""

    def send(self, frame: str) -> bool:
        """Queue or write one text frame; False when the client is too far behind."""

    def close(self, code: int, reason: str) -> None:
        """Close the websocket with this code and reason (after nothing else)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Connection:
    def __init__(self, sink: Sink, principal: Principal | None, bus: Bus, hub: Hub,
                 settings: PushSettings) -> None:
        self.sink = sink
        self.user = principal.username if principal else None
        # Named in the `patched` events of the changes this socket sends (and in every
        # `subscribed`), so its client can tell its own changes from everyone else's.
        self.origin = secrets.token_hex(8)
        # a token scoped to one document: that document's channels only (Connection.allows)
        self.scope_doc = principal.scope_doc if principal else None
        self.scope_write = bool(principal and principal.scope_write)
        self.bus = bus
        self.hub = hub
        self.settings = settings
        self.inbox: deque[str] = deque()
        self._processing: asyncio.Task[None] | None = None
        self.channels: dict[str, ChannelState] = {}
        self.closing: tuple[int, str] | None = None
        self._tokens = 2 * settings.max_ops_per_second
        self._refilled = time.monotonic()
        self._throttled = False
        self._tasks: set[asyncio.Task[None]] = set()  # access rechecks under way
        # A socket lives no longer than the credentials it was opened with: their
        # revocation (Hub.credential_revoked) or a JWT's `exp` closes it with 4401.
        self.credential = principal.credential if principal else None
        if self.credential:
            hub.hold(self.credential, self)
        self._expiry: asyncio.TimerHandle | None = None
        if principal is not None and principal.expires is not None:
            # exp is wall-clock time; call_later runs on the loop's monotonic clock
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, principal.expires - time.time()), self.credentials_ended,
                "credentials expired")

    # --- events in (called by the Hub, synchronously) -------------------------------------
    def offer(self, channel: str, seq: int | None, frame: str, born: float) -> None:
        state = self.channels.get(channel)
        if state is None or self.closing:
            return
        if state.replaying:
            if len(state.held) >= self.settings.queue_frames:
                self.fall_behind()
            else:
                state.held.append((seq, frame, born))
            return
        self._send_event(state, seq, frame, born)

    def _send_event(self, state: ChannelState, seq: int | None, frame: str,
                    born: float) -> None:
        if seq is not None and state.last is not None:
            if seq <= state.last:
                return  # already sent (replayed, or older than the subscription)
            if seq > state.last + 1:  # a hole the hub could not fill: never silent
                return self.resync(state.channel.name, seq)
            state.last = seq
        self.push(frame, born)

    def resync(self, channel: str, seq: int) -> None:
        """Events up to `seq` cannot be sent: the client reloads the channel's state
        (which includes them) and takes events after `seq` from here on."""
        state = self.channels.get(channel)
        if state is None or self.closing:
            return
        state.last = seq if state.last is None else max(state.last, seq)
        self.reply("resync", channel=channel, seq=seq)

    def push(self, frame: str, born: float = 0.0) -> None:
        if self.closing:
            return
        if not self.sink.send(frame):
            return self.fall_behind()
        MESSAGES_OUT.inc()
        if born:
            LATENCY.observe(max(0.0, time.time() - born))

    def fall_behind(self) -> None:
        if not self.closing:
            DROPS.inc()
            self.close_for(TOO_SLOW, "too slow: the client fell too far behind")

    def close_for(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = (code, reason)
            self.sink.close(code, reason)

    def credentials_ended(self, reason: str) -> None:
        """Revoked or expired: nothing more goes out, and no further op (a `patch`) runs."""
        self.close_for(BAD_CREDENTIALS, reason)

    def reply(self, op: str, **fields: Any) -> None:
        self.push(json.dumps({"op": op, **fields}, separators=(",", ":")))

    def error(self, code: str, detail: str, **fields: Any) -> None:
        self.reply("error", code=code, detail=detail, **fields)

    # --- ops in -----------------------------------------------------------------------------
    def feed(self, text: str) -> None:
        """A text frame from the client (called by the server, in order)."""
        if self.closing:
            return
        if len(text) > self.settings.max_frame_bytes or \
                len(text.encode()) > self.settings.max_frame_bytes:
            return self.close_for(TOO_BIG, f"frame over {self.settings.max_frame_bytes} bytes")
        self.inbox.append(text)
        if len(self.inbox) > 2 * self.settings.max_ops_per_second:
            self.sink.pause_reading()  # TCP makes the client wait, not our memory
        if self._processing is None:
            self._processing = asyncio.get_running_loop().create_task(self._process())

    async def _process(self) -> None:
        try:
            while self.inbox and not self.closing:
                text = self.inbox.popleft()
                if len(self.inbox) < self.settings.max_ops_per_second:
                    self.sink.resume_reading()
                await self._pace()
                try:
                    await self.handle(text)
                except Exception:  # one bad op must not end the connection or the server
                    log.exception("op failed: %.200s", text)
                    self.error("internal", "the server could not carry out this op")
        finally:
            self._processing = None

    async def _pace(self) -> None:
        """Token bucket: max_ops_per_second, bursts up to twice that. A client over it is
        told once (`rate_limited`) and then simply read more slowly: nothing it sent is
        dropped, and TCP makes it wait instead of our memory."""
        now = time.monotonic()
        rate = self.settings.max_ops_per_second
        self._tokens = min(2 * rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            self._throttled = False
            return
        if not self._throttled:
            self._throttled = True
            self.error("rate_limited", f"more than {rate:g} messages a second: slowed down")
        await asyncio.sleep((1 - self._tokens) / rate)
        self._tokens, self._refilled = 0.0, time.monotonic()

    async def handle(self, text: str) -> None:
        try:
            op = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply, e.g. [[[[
            return self.error("invalid_json", "frames are JSON objects, e.g. {\"op\":\"ping\"}")
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            return self.error("invalid_op", "a frame is an object with an \"op\" string")
        handler = {"subscribe": self.subscribe, "unsubscribe": self.unsubscribe,
                   "patch": self.patch, "ping": self.ping}.get(op["op"])
        if handler is None:
            return self.error("unknown_op", f"unknown op {op['op']!r}: use subscribe, "
                              "unsubscribe, patch or ping")
        await handler(op)

    async def ping(self, _op: dict[str, Any]) -> None:
        self.reply("pong")

    async def subscribe(self, op: dict[str, Any]) -> None:
        channel = channels.parse(op.get("channel"))
        since = op.get("since")
        if channel is None:
            return self.error("invalid_channel", "channel is \"doc:<id>\" or \"data:<id>\"",
                              channel=op.get("channel"))
        if since is not None and (type(since) is not int or since < 0):
            return self.error("invalid_since", "since is a seq (an integer >= 0)",
                              channel=channel.name)
        if channel.name in self.channels:
            return self.error("already_subscribed", "already subscribed",
                              channel=channel.name)
        if len(self.channels) >= self.settings.max_channels:
            return self.error("too_many_channels", f"at most {self.settings.max_channels} "
                              "channels per connection: unsubscribe from some first",
                              channel=channel.name)
        share = op.get("share") if isinstance(op.get("share"), str) else None
        if share is not None and len(share) > MAX_SHARE_KEY:  # never a key: no one to ask
            return self.error("invalid_share", f"a share key has at most {MAX_SHARE_KEY} "
                              "characters", channel=channel.name)
        doc = op.get("doc") if isinstance(op.get("doc"), str) else None
        if not self.allows(channel, doc):
            return self.error("token_scope", "this token is scoped to another document",
                              channel=channel.name)
        # listen first, then ask: every event after the seq the answer carries is caught
        state = self.channels[channel.name] = ChannelState(channel, share, doc)
        await self.hub.join(channel, self)
        access = await self.hub.access(channel, self.user, share, doc)
        if access.unavailable:
            await self._drop(channel.name)
            return self.error("unavailable", "the service that owns this channel is not "
                              f"answering: subscribe again in {RETRY_AFTER_S} s",
                              channel=channel.name, retry_after=RETRY_AFTER_S)
        if not access.read:
            await self._drop(channel.name)
            return self.error("not_found", "no such channel, or you may not read it",
                              channel=channel.name)
        now = access.version
        self.reply("subscribed", channel=channel.name, seq=now, origin=self.origin)
        if since is not None and now is not None and since < now:
            events = await self._replay(state, since, now)
            if events is None:
                self.reply("resync", channel=channel.name, seq=now)
            else:
                state.last = since
                for event in events:
                    frame, seq, born = encode(channel.name, event)
                    self._send_event(state, seq, frame, born)
        if state.last is None:
            state.last = now if since is None or now is None else max(since, now)
        self._release(state)

    async def _replay(self, state: ChannelState, since: int, now: int
                      ) -> list[dict[str, Any]] | None:
        """The events after `since` up to `now`, from the stream and from what arrives
        live meanwhile (held: we listened before asking), or None (resync).

        Right after NATS came back the stream may not have them all yet (a writer's
        outbox still drains, and a live event can reach this replica a moment before a
        new consumer finds it stored): read again from where the stream ended while
        events keep coming (TAIL_WAIT_S without one is the end, TAIL_WAIT_MAX_S in all)."""
        events: list[dict[str, Any]] = []
        covered, started, heard, count = since, time.monotonic(), time.monotonic(), -1
        while True:
            try:
                more = await recovery.missed(self.bus, state.channel, covered, now,
                                             self.settings.max_replay - len(events),
                                             tail_follows=True)
            except Exception as exc:  # NATS away meanwhile: the client reloads instead
                log.warning("replay of %s failed: %s", state.channel.name, exc)
                return None
            if more is None:
                return None  # the stream no longer reaches back (or too much of it)
            events += more
            covered = events[-1]["seq"] if events else since
            held = {seq for seq, _, _ in state.held}
            if all(seq in held for seq in range(covered + 1, now + 1)):
                return events
            if len(held) + len(events) != count:  # still arriving: keep waiting
                count, heard = len(held) + len(events), time.monotonic()
            waited = time.monotonic()
            if waited - heard >= TAIL_WAIT_S or waited - started >= TAIL_WAIT_MAX_S \
                    or self.closing:
                return None
            await asyncio.sleep(0.1)

    def allows(self, channel: channels.Channel, doc: str | None) -> bool:
        """A scoped token's socket follows its document and the sources read through it."""
        if self.scope_doc is None:
            return True
        if channel.kind == "doc":
            return channel.entity == self.scope_doc
        return doc == self.scope_doc

    def _release(self, state: ChannelState) -> None:
        state.replaying = False
        for seq, frame, born in state.held:
            self._send_event(state, seq, frame, born)
        state.held.clear()

    def recheck(self, channel: str) -> None:
        """Access may have changed (Hub): hold the channel's events until the owner of the
        entity says again that we may read it; if not, the channel is dropped."""
        state = self.channels.get(channel)
        if state is None or self.closing:
            return
        state.replaying = True
        task = asyncio.get_running_loop().create_task(self._recheck(state))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, state: ChannelState) -> None:
        while True:  # the owner away: keep holding the events until it answers
            access = await channels.ask(self.bus, state.channel, self.user, state.share,
                                        state.doc)
            if self.channels.get(state.channel.name) is not state or self.closing:
                return  # unsubscribed meanwhile
            if not access.unavailable:
                break
            await asyncio.sleep(RETRY_AFTER_S)
        if access.read:
            return self._release(state)
        await self._drop(state.channel.name)
        self.error("revoked", "you may no longer read this channel",
                   channel=state.channel.name)

    async def unsubscribe(self, op: dict[str, Any]) -> None:
        name = op.get("channel")
        if not isinstance(name, str) or name not in self.channels:
            return self.error("not_subscribed", "not subscribed to that channel",
                              channel=name)
        await self._drop(name)
        self.reply("unsubscribed", channel=name)

    async def _drop(self, name: str) -> None:
        self.channels.pop(name, None)
        await self.hub.leave(name, self)

    async def patch(self, op: dict[str, Any]) -> None:
        """Two-way: a writer's Bokeh patch events go to docs, which applies them and
        publishes them to every viewer of the document."""
        doc, events = op.get("doc"), op.get("events")
        if not isinstance(doc, str) or not isinstance(events, list):
            return self.error("invalid_patch", "patch needs doc (an id) and events (a list)")
        if self.user is None:
            return self.error("unauthorized", "log in to change documents", doc=doc)
        if self.scope_doc is not None and (doc != self.scope_doc or not self.scope_write):
            return self.error("token_scope", "this token may not change that document",
                              doc=doc)
        try:
            answer = await self.bus.request(DOCS_PATCH, {"doc": doc, "user": self.user,
                                                         "events": events,
                                                         "origin": self.origin}, timeout=10)
        except PlotlineError as exc:
            return self.error(exc.code, exc.detail, doc=doc)
        if not answer.get("ok"):
            return self.error(str(answer.get("error", "refused")),
                              str(answer.get("detail", "")), doc=doc)
        self.reply("patched", doc=doc, version=answer.get("version"))

    async def forget_all(self) -> None:
        """The client is gone: stop its work and leave every channel."""
        self.closing = self.closing or (1000, "gone")
        if self._expiry is not None:
            self._expiry.cancel()
        if self.credential:
            self.hub.release(self.credential, self)
        for task in [*self._tasks, self._processing]:
            if task is not None:
                task.cancel()
        for name in list(self.channels):
            await self._drop(name)

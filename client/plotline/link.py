"""`Link`: a Session's live connection: one websocket to push, and one ordered lane of
writes, run by a background thread with its own event loop.

What the caller's threads see (everything here is thread-safe):
- `watch(channel, on_event, on_resync)`: the channel's events, in order, once each, are
  handed to the thread that calls `process()` (callbacks never run in the background).
- `submit(op)`: a write (a document patch over the websocket, or a request to the REST API),
  sent in the order submitted; `flush()` waits for all of them and raises the first failure.

Never a gap, never twice: after a reconnect every channel is subscribed again with `since`
= the last seq taken, so push sends exactly what was missed (or `resync` when its history no
longer reaches back). A document patch whose answer was lost with the socket is settled by
that replay: its event names the old socket's `origin` if it was applied; if the replay ends
without it, it is sent again. Appends carry an Idempotency-Key, so a retried one (after a
timeout, a 5xx or a restart of the data service) is stored once.

Failures are kept, never swallowed: a write the server refuses (4xx) or cannot take for
RETRY_SECONDS, and a socket the server refuses for good (revoked credentials), are raised by
the next `flush()` or `process()`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .session import PlotlineError, Session

log = logging.getLogger("plotline.live")

RETRY_SECONDS = 60.0     # how long a write keeps being retried while the server is away
BACKOFF = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # s between reconnects (then the last, again)
PATCH_TIMEOUT = 30.0     # for push's answer to a document patch
# close codes after which reconnecting cannot help: credentials ended or refused, origin
# refused (services/push/handshake.py), a message of ours too big (1009). (1008, "too slow",
# reconnects: the replay fills what was dropped.)
REFUSED_FOR_GOOD = {4401, 4403, 1009}


@dataclass
class Channel:
    name: str
    on_event: Callable[[dict], Any]
    on_resync: Callable[[], Any]
    doc: str | None = None   # (a source read through this document)
    seq: int | None = None   # the last event taken (handed to the inbox)
    target: int | None = None  # after a (re)subscribe: the seq the replay ends at


@dataclass
class Op:
    """A write. kind "patch": `doc`, `events`; kind "http": `method`, `path`, `kw`, and for an
    append `source`, `merge` (JSON columns that a following append may join) and `rollover`."""
    kind: str
    doc: str | None = None
    events: list | None = None
    method: str = ""
    path: str = ""
    kw: dict = field(default_factory=dict)
    source: str | None = None
    merge: dict | None = None
    rollover: int | None = None
    on_done: Callable[[Any], Any] | None = None


class Link:
    def __init__(self, session: Session) -> None:
        self.session = session
        base = session.root_url
        self.ws_url = ("wss://" if base.startswith("https://") else "ws://") + \
            base.split("://", 1)[1] + "/ws"
        self.status = "connecting"   # connecting, live, reconnecting, closed
        self.origin: str | None = None  # this socket's, as push names it in `patched` events
        self._old_origins: set[str] = set()
        self._channels: dict[str, Channel] = {}
        self._inbox: queue.Queue = queue.Queue()
        self._wakers: list[Callable[[], None]] = []
        self._failures: list[Exception] = []
        self._lock = threading.Lock()
        self._submitted = self._settled = 0
        self._settled_cond = threading.Condition(self._lock)
        self._outbox: collections.deque[Op] = collections.deque()
        self._closing = False
        # patches whose answer was lost with the socket: found applied by the replay, or sent
        # again (the logs say so too)
        self.in_doubt = {"applied": 0, "resent": 0}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plotline-live", daemon=True)
        self._thread.start()
        self._ready.wait()

    # --- the caller's side ----------------------------------------------------------------

    def watch(self, name: str, on_event: Callable[[dict], Any],
              on_resync: Callable[[], Any], *, since: int | None = None,
              doc: str | None = None) -> None:
        """Follow channel `name` from `since` (the seq the caller holds; None: from now)."""
        channel = Channel(name, on_event, on_resync, doc, since)
        self._call(self._watch, channel)

    def submit(self, op: Op) -> None:
        with self._lock:
            self._submitted += 1
        self._call(self._enqueue, op)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every write submitted so far is settled; raise the first failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled_cond:
            while self._settled < self._submitted and not self._closing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise self._error("timeout", f"{self._submitted - self._settled} changes "
                                      f"not yet stored after {timeout} s ({self.status})")
                self._settled_cond.wait(left)
        self.raise_failure()

    def process(self, timeout: float | None = 0) -> int:
        """Run the callbacks of what arrived, in this thread; wait up to `timeout` s for the
        first (None: until something arrives). Returns how many ran."""
        self.raise_failure()
        ran = 0
        try:
            item = self._inbox.get(timeout=timeout) if timeout != 0 else \
                self._inbox.get_nowait()
        except queue.Empty:
            return 0
        while True:
            fn, arg = item
            if fn is not None:
                fn(*arg)
                ran += 1
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
        self.raise_failure()
        return ran

    def add_waker(self, wake: Callable[[], None]) -> None:
        """`wake()` is called (from the background thread) whenever something arrives."""
        self._wakers.append(wake)

    def remove_waker(self, wake: Callable[[], None]) -> None:
        if wake in self._wakers:
            self._wakers.remove(wake)

    def raise_failure(self) -> None:
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        with self._settled_cond:
            self._settled_cond.notify_all()
        self._call(self._stop)
        self._thread.join(timeout=10)
        self.status = "closed"
        self._hand(None, ())

    # --- plumbing between the threads -------------------------------------------------------

    def _call(self, fn: Callable, *args: Any) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _hand(self, fn: Callable | None, args: tuple) -> None:
        self._inbox.put((fn, args))
        for wake in list(self._wakers):
            wake()

    def _fail(self, exc: Exception) -> None:
        log.error("plotline live: %s", exc)
        with self._lock:
            self._failures.append(exc)
        self._hand(None, ())

    def _settle(self) -> None:
        with self._settled_cond:
            self._settled += 1
            self._settled_cond.notify_all()

    def _error(self, code: str, detail: str, status: int | None = None) -> PlotlineError:
        from .session import PlotlineError

        return PlotlineError(status, code, detail)

    # --- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._wake_sender = asyncio.Event()
        self._socket_up = asyncio.Event()
        self._answer: asyncio.Future | None = None
        self._http = httpx.AsyncClient(base_url=self.session.root_url, timeout=30,
                                       headers={"User-Agent": "plotline-client"})
        self._tasks = [self._loop.create_task(self._connection()),
                       self._loop.create_task(self._sender())]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._http.aclose())
            self._loop.close()

    def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._loop.call_later(0.05, self._loop.stop)

    def _headers(self) -> dict[str, str]:
        credential = self.session.api_key or self.session.token
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    def _watch(self, channel: Channel) -> None:
        self._channels[channel.name] = channel
        if self._socket_up.is_set():
            self._loop.create_task(self._subscribe(channel))

    def _resubscribe(self, name: str) -> None:
        channel = self._channels.get(name)
        if channel is not None and self._socket_up.is_set() and not self._closing:
            self._loop.create_task(self._subscribe(channel))

    def _enqueue(self, op: Op) -> None:
        self._outbox.append(op)
        self._wake_sender.set()

    # --- the websocket ------------------------------------------------------------------

    async def _connection(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        attempt = 0
        while not self._closing:
            try:
                async with connect(self.ws_url, additional_headers=self._headers(),
                                   max_size=None, open_timeout=10) as ws:
                    self._ws = ws
                    attempt = 0
                    self._socket_up.set()
                    for channel in list(self._channels.values()):
                        await self._subscribe(channel)
                    async for message in ws:
                        self._received(json.loads(message))
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    self._fail(self._error("live_refused", f"{self.ws_url} refused the "
                                           f"connection (HTTP {status}): log in again",
                                           status))
                    return
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                if code in REFUSED_FOR_GOOD and not self._closing:
                    self._fail(self._error("live_closed", f"the server closed the live "
                                           f"connection: {exc.rcvd.reason} ({code})"))
                    return
            except (OSError, TimeoutError) as exc:
                log.debug("plotline live: connect failed: %s", exc)
            finally:
                self._socket_up.clear()
                if self.origin:
                    self._old_origins.add(self.origin)
                self.origin = None
                if self._answer is not None and not self._answer.done():
                    self._answer.set_result(None)  # (in doubt: settled by the replay)
            if self._closing:
                return
            self.status = "reconnecting"
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1

    async def _subscribe(self, channel: Channel) -> None:
        op: dict[str, Any] = {"op": "subscribe", "channel": channel.name}
        if channel.seq is not None:
            op["since"] = channel.seq
        if channel.doc:
            op["doc"] = channel.doc
        channel.target = None
        await self._ws.send(json.dumps(op))

    def _received(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        channel = self._channels.get(msg.get("channel") or "")
        if op == "subscribed" and channel is not None:
            self.origin = msg.get("origin") or self.origin
            self.status = "live"
            if channel.seq is None:
                channel.seq = msg.get("seq")
            channel.target = msg.get("seq")
            self._caught_up(channel)
        elif op == "event" and channel is not None:
            self._event(channel, msg)
        elif op == "resync" and channel is not None:
            # (the seq the reload covers: at a subscribe, the channel's now; later, the
            # newest push could not send)
            seq = msg.get("seq")
            channel.seq = seq if isinstance(seq, int) else channel.target
            self._hand(channel.on_resync, ())
            self._caught_up(channel)
        elif op == "patched":
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(msg)
        elif op == "error":
            if msg.get("doc") and self._answer is not None and not self._answer.done():
                self._answer.set_result(msg)
            elif channel is not None and msg.get("code") == "unavailable":
                # the channel's owner is away for a moment (push says when to ask again)
                delay = msg.get("retry_after")
                self._loop.call_later(float(delay) if isinstance(delay, int | float) else 2.0,
                                      self._resubscribe, channel.name)
            elif channel is not None:
                self._fail(self._error(str(msg.get("code")), f"{channel.name}: "
                                       f"{msg.get('detail')}"))

    def _event(self, channel: Channel, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if isinstance(seq, int) and channel.seq is not None:
            if seq <= channel.seq:
                return  # already taken (a replay overlapping what came live)
            if seq != channel.seq + 1:  # a hole: the caller reloads
                channel.seq = seq
                self._hand(channel.on_resync, ())
                return
        if isinstance(seq, int):
            channel.seq = seq
        origin = (msg.get("data") or {}).get("origin")
        mine = origin is not None and (origin == self.origin or origin in self._old_origins)
        if mine and origin in self._old_origins and self._in_doubt is not None:
            self._in_doubt.set_result("applied")  # the lost answer: it was applied
        if not mine:
            self._hand(channel.on_event, (msg,))
        self._caught_up(channel)

    def _caught_up(self, channel: Channel) -> None:
        if channel.target is not None and channel.seq is not None and \
                channel.seq >= channel.target and channel.doc is None and \
                channel.name.startswith("doc:") and self._in_doubt is not None \
                and not self._in_doubt.done():
            self._in_doubt.set_result("not applied")

    # --- the writes, in order ---------------------------------------------------------------

    _in_doubt: asyncio.Future | None = None

    async def _sender(self) -> None:
        while True:
            while not self._outbox:
                self._wake_sender.clear()
                await self._wake_sender.wait()
            op = self._take()
            try:
                result = await (self._patch(op) if op.kind == "patch" else self._request(op))
                if op.on_done is not None:
                    self._hand(op.on_done, (result,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._fail(exc if hasattr(exc, "code") else
                           self._error("live_failed", f"{type(exc).__name__}: {exc}"))
            finally:
                self._settle_many(op)

    def _take(self) -> Op:
        """The next write, merged with those right behind it that can go with it: document
        patches of one document, JSON appends to one source with one rollover."""
        op = self._outbox.popleft()
        op.kw.setdefault("_count", 1)
        while self._outbox:
            nxt = self._outbox[0]
            if op.kind == "patch" and nxt.kind == "patch" and nxt.doc == op.doc:
                op.events = (op.events or []) + (nxt.events or [])
            elif op.merge is not None and nxt.merge is not None and \
                    nxt.source == op.source and nxt.rollover == op.rollover and \
                    set(nxt.merge) == set(op.merge) and nxt.on_done is None:
                op.merge = {k: op.merge[k] + nxt.merge[k] for k in op.merge}
            else:
                break
            self._outbox.popleft()
            op.kw["_count"] += 1
        return op

    def _settle_many(self, op: Op) -> None:
        for _ in range(op.kw.get("_count", 1)):
            self._settle()

    async def _patch(self, op: Op) -> Any:
        """A document patch over the websocket; push answers `patched` or an error."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            await self._socket_up.wait()
            loop = asyncio.get_running_loop()
            self._answer = loop.create_future()
            try:
                await self._ws.send(json.dumps({"op": "patch", "doc": op.doc,
                                                "events": op.events}))
                answer = await asyncio.wait_for(self._answer, PATCH_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception:  # the socket closed, or no answer in PATCH_TIMEOUT
                answer = None
            finally:
                self._answer = None
            if answer is not None and answer.get("op") == "patched":
                return answer
            if answer is not None:  # refused: the patch is not stored
                code = str(answer.get("code"))
                if code in ("unavailable", "timeout") and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)  # (docs away for a moment: ask again)
                    continue
                raise self._error(code, f"the document refused a change: "
                                  f"{answer.get('detail')}")
            # the socket went away before the answer: the replay says whether it applied
            self._in_doubt = loop.create_future()
            try:
                await self._socket_up.wait()
                verdict = await asyncio.wait_for(self._in_doubt, PATCH_TIMEOUT)
            except TimeoutError:
                verdict = "not applied"
            finally:
                self._in_doubt = None
            self.in_doubt["applied" if verdict == "applied" else "resent"] += 1
            log.info("plotline live: a change whose answer was lost with the socket was %s",
                     "applied (the replay shows it)" if verdict == "applied"
                     else "not applied: sending it again")
            if verdict == "applied":
                return {"op": "patched", "doc": op.doc}

    async def _request(self, op: Op) -> Any:
        """A REST write, retried while the server is away (appends keep their key)."""
        kw = {k: v for k, v in op.kw.items() if not k.startswith("_")}
        if op.merge is not None:
            body: dict[str, Any] = {"columns": op.merge}
            if op.rollover is not None:
                body["rollover"] = op.rollover
            kw["json"] = body
        headers = {**kw.pop("headers", {}), **self._headers()}
        if op.source is not None:
            headers["Idempotency-Key"] = secrets.token_hex(12)
        deadline = time.monotonic() + RETRY_SECONDS
        attempt = 0
        while True:
            try:
                response = await self._http.request(op.method, op.path, headers=headers, **kw)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return response.json() if response.content else None
                if response.status_code not in (429, 500, 502, 503, 504):
                    raise self.session._error(response)
                problem = f"HTTP {response.status_code}"
            if time.monotonic() > deadline:
                raise self._error("unavailable", f"{op.method} {op.path} could not be "
                                  f"stored for {RETRY_SECONDS:.0f} s: {problem}")
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1

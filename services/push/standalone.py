"""`plotline serve push`: the push service on its own websocket server (picows).

Push replicas hold many mostly idle sockets. An ASGI server costs ~150 KB per idle
websocket here (granian) or ~55 KB (uvicorn); picows writes frames straight into the
socket's transport and keeps no task per client, so a replica holds tens of thousands.
Kubernetes and Prometheus ask the internal port (services/common/internal.py), not this
one: here every path but `/ws` is a 404 (and `/ws/openapi.json` is not served here).

A client falls behind when the socket's write buffer holds more than
`max_buffered_bytes`; it is then closed with 1008, as in the embedded mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from http import HTTPStatus
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from starlette.requests import HTTPConnection

from services.common.app import ServiceApp
from services.common.internal import Stopping
from services.common.names import SERVICE_PREFIXES, WS_PROTOCOL

from .connection import Connection
from .handshake import Refused, admit
from .hub import CONNECTIONS

log = logging.getLogger("plotline.push")
# picows logs every accepted socket at INFO: thousands of lines a minute on a busy replica
logging.getLogger("picows").setLevel(logging.WARNING)
EARLY_FRAMES = 100  # frames a client may send before its credentials are checked


class TransportSink:
    def __init__(self, transport: WSTransport, max_buffered: int) -> None:
        self.transport = transport
        self.socket = transport.underlying_transport
        self.max_buffered = max_buffered

    def send(self, frame: str) -> bool:
        if self.socket.get_write_buffer_size() > self.max_buffered:
            return False
        self.transport.send(WSMsgType.TEXT, frame.encode())
        return True

    def close(self, code: int, reason: str) -> None:
        self.transport.send_close(WSCloseCode(code), reason.encode())
        # picows waits for the client's close frame, then disconnects; a client that
        # never answers is dropped after a while
        asyncio.get_running_loop().call_later(5, self.transport.disconnect)

    def pause_reading(self) -> None:
        self.socket.pause_reading()

    def resume_reading(self) -> None:
        self.socket.resume_reading()


def _scope(request: WSUpgradeRequest, transport: WSTransport) -> dict[str, Any]:
    """The request as an ASGI scope, for the Authenticator (headers, cookies) and the
    socket limits (the client's address)."""
    path, _, query = request.path.decode("latin-1").partition("?")
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in request.headers.items()]
    peer = transport.underlying_transport.get_extra_info("peername")
    return {"type": "http", "method": "GET", "path": path, "query_string": query.encode(),
            "headers": headers, "client": tuple(peer[:2]) if peer else None}


class PushClient(WSListener):
    """One websocket client of the standalone server."""

    def __init__(self, app: ServiceApp, request: WSUpgradeRequest) -> None:
        self.app = app
        self.request = request
        self.conn: Connection | None = None
        self.early: list[str] = []
        self.transport: WSTransport | None = None
        self.slot: tuple[str, str] | None = None  # held from admission to disconnection

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        _open.add(transport)
        CONNECTIONS.inc()
        self._start = asyncio.get_running_loop().create_task(self.start(transport))

    async def start(self, transport: WSTransport) -> None:
        state = self.app.state
        try:
            principal, self.slot = await admit(
                HTTPConnection(_scope(self.request, transport)),
                state.settings, state.authenticator, state.slots)
        except Refused as refused:
            return transport.send_close(WSCloseCode(refused.code), refused.reason.encode())
        sink = TransportSink(transport, state.settings.max_buffered_bytes)
        self.conn = Connection(sink, principal, state.bus, state.hub, state.settings)
        for text in self.early:
            self.conn.feed(text)
        self.early.clear()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if kind not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return  # pings are answered by picows
        if not frame.fin or kind == WSMsgType.CONTINUATION:
            transport.send_close(WSCloseCode.MESSAGE_TOO_BIG,
                                 b"fragmented messages are not supported")
            return
        try:
            text = frame.get_payload_as_utf8_text()
        except UnicodeDecodeError:
            text = frame.get_payload_as_bytes().decode("utf-8", "replace")
        if self.conn is not None:
            self.conn.feed(text)
        elif len(self.early) < EARLY_FRAMES:
            self.early.append(text)
        else:
            transport.send_close(WSCloseCode.POLICY_VIOLATION, b"wait for the server")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        _open.discard(transport)
        CONNECTIONS.dec()
        self._start.cancel()
        if self.slot is not None:
            self.app.state.slots.give(self.slot)
            self.slot = None
        if self.conn is not None:
            task = asyncio.get_running_loop().create_task(self.conn.forget_all())
            _leaving.add(task)
            task.add_done_callback(_leaving.discard)


_leaving: set[asyncio.Task[None]] = set()
_open: set[WSTransport] = set()  # to say goodbye (1001) on shutdown


def _answer(status: int, body: bytes, content_type: str) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_ok_response(body, {"Content-Type": content_type})
    response.status = HTTPStatus(status)
    return WSUpgradeResponseWithListener(response, None)


def listener_factory(app: ServiceApp):  # type: ignore[no-untyped-def]
    ws_path = SERVICE_PREFIXES["push"]

    def factory(request: WSUpgradeRequest) -> Any:
        path = request.path.decode("latin-1").partition("?")[0]
        if path == ws_path:
            offered = request.headers.get("Sec-WebSocket-Protocol") or ""
            if WS_PROTOCOL in [p.strip() for p in offered.split(",")]:
                return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(
                    {"Sec-WebSocket-Protocol": WS_PROTOCOL}), PushClient(app, request))
            return PushClient(app, request)
        body = {"error": "not_found", "detail": f"no route for {path}"}
        return _answer(404, json.dumps(body).encode(), "application/json")

    return factory


async def run(app: ServiceApp, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM, inside the app's lifespan (bus, hub, authenticator)."""
    async with app.lifespan():
        settings = app.state.settings
        server = await ws_create_server(
            listener_factory(app), host, port, max_frame_size=settings.max_frame_bytes,
            websocket_handshake_timeout=10)
        log.info("push listening on ws://%s:%d%s (picows)", host, port,
                 SERVICE_PREFIXES["push"])
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        Stopping.now = True  # /readyz: 503 from here on
        log.info("push stopping: closing %d connections with 1001", len(_open))
        server.close()
        for transport in list(_open):  # clients reconnect elsewhere with `since`
            transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
        deadline = loop.time() + 5
        while _open and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for transport in list(_open):
            transport.disconnect()
        await server.wait_closed()

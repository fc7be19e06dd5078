"""The ASGI side of a push connection (the embedded mode's `/ws` on granian).

Two tasks per client: a reader feeding text frames to the Connection, and a writer
draining the client's bounded queue of frames (`queue_frames`); a full queue means the
client fell behind. granian sends no close frame while a receive is pending, so closing
stops the reader first, then closes, then reads what is left until the client answers.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket, WebSocketDisconnect

from services.common.bus import Bus
from services.common.identity import Principal

from .config import PushSettings
from .connection import Connection
from .hub import Hub


class QueueSink:
    def __init__(self, frames: int) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(frames)
        self.closing: tuple[int, str] | None = None
        self.readable = asyncio.Event()
        self.readable.set()

    def send(self, frame: str) -> bool:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def close(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        while not self.queue.empty():  # let go of the frames; the writer stops
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()


async def serve(ws: WebSocket, principal: Principal | None, bus: Bus, hub: Hub,
                settings: PushSettings) -> None:
    """Run one accepted connection until either side closes it."""
    sink = QueueSink(settings.queue_frames)
    conn = Connection(sink, principal, bus, hub, settings)

    async def writer() -> None:
        while (frame := await sink.queue.get()) is not None:
            await ws.send_text(frame)

    async def reader() -> None:
        while sink.closing is None:
            await sink.readable.wait()
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            if text is not None:
                conn.feed(text)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(reader())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if sink.closing:
            tasks[1].cancel()
            await asyncio.gather(tasks[1], return_exceptions=True)
            code, reason = sink.closing
            await ws.close(code=code, reason=reason)
            await _drain(ws)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left first
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await conn.forget_all()


async def _drain(ws: WebSocket, seconds: float = 5.0) -> None:
    """After our close: read (and drop) until the client answers it. Closing a socket with
    unread data in it resets it, and the client would lose the close code and reason."""
    try:
        async with asyncio.timeout(seconds):
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
    except (TimeoutError, RuntimeError, WebSocketDisconnect):
        pass

"""The internal port: `/healthz`, `/readyz` and `/metrics` for every service in this process.

A listener of its own beside the public one (granian or push's picows), in the same event
loop: Kubernetes probes and Prometheus reach it, no Ingress or nginx route does, and the
public port answers 404 on these paths. Its few callers send small GETs, so it speaks just
enough HTTP/1.1 for them: one request per connection, no body.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .names import INTERNAL_PATHS

log = logging.getLogger("plotline.internal")
READ_TIMEOUT_S = 5.0


class Stopping:
    """Set by the server's SIGTERM handler before it stops: /readyz says 503 from then on,
    so a load balancer that still routes here learns it first."""

    now = False


async def readiness(apps: dict[str, Any]) -> tuple[bool, dict[str, bool]]:
    """Ready when every service's lifespan has started and each of its ready checks
    passes; its reported checks are listed too, without deciding."""
    checks: dict[str, bool] = {}
    required: list[bool] = []
    for name, app in apps.items():
        for kind in ("ready_checks", "reported_checks"):
            for check, fn in getattr(app.state, kind, {}).items():
                try:
                    passed = bool(await fn())
                except Exception:
                    passed = False
                checks[f"{name}.{check}"] = passed
                if kind == "ready_checks":
                    required.append(passed)
    started = all(getattr(app.state, "started", False) for app in apps.values())
    if Stopping.now:
        checks["stopping"] = True
    return started and all(required) and not Stopping.now, checks


async def answer(apps: dict[str, Any], method: str, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for one request to the internal port."""
    path = path.partition("?")[0]
    if path not in INTERNAL_PATHS:
        return _error(404, "not_found", f"no route for {path}")
    if method not in ("GET", "HEAD"):
        return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
    if path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, generate_latest()
    if path == "/healthz":
        return _json(200, {"status": "ok", "services": sorted(apps)})
    ready, checks = await readiness(apps)
    return _json(200 if ready else 503, {"ready": ready, "checks": checks})


def _json(status: int, body: dict[str, Any]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()


def _error(status: int, code: str, detail: str) -> tuple[int, str, bytes]:
    return _json(status, {"error": code, "detail": detail})


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


async def start_internal(apps: dict[str, Any], host: str, port: int) -> asyncio.Server:
    """Listen on host:port (0: a free port; see `server.sockets[0].getsockname()`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            while await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S) not in (
                    b"\r\n", b"\n", b""):
                pass  # headers: nothing here depends on them
            parts = request.decode("latin-1").split()
            if len(parts) == 3 and parts[2].startswith("HTTP/"):
                status, kind, body = await answer(apps, parts[0], parts[1])
            else:
                status, kind, body = _error(400, "invalid_request", "not an HTTP request")
            head = (f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + (b"" if parts[:1] == ["HEAD"] else body))
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):  # slow, gone or oversized
            pass
        except Exception:
            log.exception("internal port: request failed")
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)

"""Health, readiness and metrics live on the internal port of each process only; the public
port answers them with the JSON 404. Metric labels come from fixed sets.

(Through nginx on the stack and the embedded mode's one URL: tests/test_e2e.py.)
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from servers import free_port, start_nats, start_plotline

from services.common.app import build_app
from services.common.internal import answer, start_internal
from services.common.names import INTERNAL_PATHS

PLOTLINE = str(Path(sys.executable).parent / "plotline")


def assert_public_404(url: str) -> None:
    for path in INTERNAL_PATHS:
        r = httpx.get(f"{url}{path}", timeout=5)
        assert r.status_code == 404, (url, path, r.status_code)
        assert r.json()["error"] == "not_found" and r.json().keys() == {"error", "detail"}


def test_the_embedded_internal_port_is_port_plus_one_by_default(tmp_path):
    while True:  # a free port whose successor is free too
        port = free_port()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0:
                break
    log = (tmp_path / "plotline.log").open("wb")
    proc = subprocess.Popen([PLOTLINE, "serve", "--port", str(port), "-D", str(tmp_path),
                             "--url-prefix", "/plots"], stdout=log, stderr=subprocess.STDOUT)
    try:
        internal = f"http://127.0.0.1:{port + 1}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{internal}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "never ready"
            time.sleep(0.1)
        assert httpx.get(f"{internal}/healthz").json() == {
            "status": "ok", "services": ["auth", "data", "docs", "push"]}
        assert "plotline_http_requests_total" in httpx.get(f"{internal}/metrics").text
        assert_public_404(f"http://127.0.0.1:{port}/plots")  # under the prefix
        for path in INTERNAL_PATHS:  # and outside it
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 404
    finally:
        proc.terminate()
        proc.wait(20)


def test_push_alone_answers_health_only_on_its_internal_port(tmp_path):
    nats = start_nats(tmp_path / "nats")
    try:
        push = start_plotline(tmp_path / "push", "push", "--nats-url", nats.url)
        try:
            assert_public_404(push.url)
            assert httpx.get(f"{push.internal_url}/healthz").json()["services"] == ["push"]
            ready = httpx.get(f"{push.internal_url}/readyz").json()
            assert ready == {"ready": True, "checks": {"push.nats": True}}
            assert "plotline_push_connections" in httpx.get(f"{push.internal_url}/metrics").text
        finally:
            push.stop()
    finally:
        nats.stop()


def test_a_taken_internal_port_is_refused_clearly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        out = subprocess.run([PLOTLINE, "serve", "--port", str(free_port()),
                              "--internal-port", str(busy), "-D", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and f"127.0.0.1:{busy}" in out.stderr
    assert "--internal-port" in out.stderr


def fake_app(started: bool, **checks: bool) -> SimpleNamespace:
    def check(value: bool):  # type: ignore[no-untyped-def]
        async def run() -> bool:
            return value
        return run

    return SimpleNamespace(state=SimpleNamespace(
        started=started, ready_checks={name: check(v) for name, v in checks.items()}))


async def test_readiness_needs_every_service_started_and_every_check_passing():
    up = fake_app(True, nats=True, store=True)
    assert (await answer({"docs": up}, "GET", "/readyz"))[0] == 200
    status, _, body = await answer({"docs": up, "data": fake_app(False, nats=True)},
                                   "GET", "/readyz")
    assert status == 503 and b'"ready": false' in body  # data's lifespan has not started
    status, _, body = await answer({"docs": fake_app(True, nats=False)}, "GET", "/readyz")
    assert status == 503 and b'"docs.nats": false' in body
    assert (await answer({"docs": up}, "GET", "/api/v1/docs/"))[0] == 404
    assert (await answer({"docs": up}, "POST", "/metrics"))[0] == 405


async def test_the_internal_listener_speaks_enough_http(tmp_path):
    server = await start_internal({"docs": fake_app(True, nats=True)}, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            r = await c.get("/healthz?verbose=1")
            assert r.status_code == 200 and r.json()["services"] == ["docs"]
            r = await c.head("/readyz")
            assert r.status_code == 200 and r.content == b""
            r = await c.get("/nowhere")
            assert r.status_code == 404 and r.json()["error"] == "not_found"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"garbage\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400")
        writer.close()
    finally:
        server.close()


def test_metric_labels_come_from_fixed_sets():
    router = APIRouter()

    @router.get("/api/v1/docs/labels-test/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app: FastAPI = build_app(service="docs", title="t", lifespan=_no_lifespan,
                             max_body_bytes=1024, routers=[router])
    from prometheus_client import REGISTRY

    def series() -> set[str]:
        return {f"{s.labels['method']} {s.labels['route']} {s.labels['status']}"
                for metric in REGISTRY.collect() if metric.name == "plotline_http_requests"
                for s in metric.samples if s.name.endswith("_total")}

    before = series()
    with TestClient(app) as c:
        assert c.get("/api/v1/docs/labels-test/a1").status_code == 200
        assert c.get("/api/v1/docs/labels-test/b2").status_code == 200
        assert series() - before == {"GET /api/v1/docs/labels-test/{thing_id} 200"}
        known = series()
        for i in range(20):
            c.request(f"INVENTED{i}", f"/invented/{i}")
        invented = series() - known
        assert len(invented) <= 1 and invented <= {"other unmatched 404",
                                                   "other unmatched 405"}, invented
        for path in INTERNAL_PATHS:
            assert c.get(path).status_code == 404


def _no_lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
    import contextlib

    @contextlib.asynccontextmanager
    async def nothing():  # type: ignore[no-untyped-def]
        yield

    return nothing()


async def test_readiness_turns_false_the_moment_the_server_is_told_to_stop(monkeypatch):
    """SIGTERM sets Stopping.now before the server stops accepting: a load balancer that
    still routes here sees 503 first. Reported checks are listed without deciding."""
    from services.common.internal import Stopping

    up = fake_app(True, store=True)

    async def away() -> bool:
        return False

    up.state.reported_checks = {"nats": away}
    status, _, body = await answer({"docs": up}, "GET", "/readyz")
    assert status == 200 and b'"docs.nats": false' in body  # shown, not deciding
    monkeypatch.setattr(Stopping, "now", True)
    status, _, body = await answer({"docs": up}, "GET", "/readyz")
    assert status == 503 and b'"stopping": true' in body

"""`plotline serve`: lifecycle of the embedded mode, URL prefix, replicas sharing a store."""

from __future__ import annotations

import os
import re
import signal
import time

import httpx
import pytest
from conftest import new_username
from pydantic import ValidationError
from servers import free_port, start_plotline

from services.auth.config import AuthSettings

AUTH = "/api/v1/auth"


def nats_child_pid(log_text: str) -> int:
    return int(re.search(r"private nats-server on \S+ \(pid (\d+)", log_text).group(1))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited but is not yet reaped by its parent
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_embedded_mode_starts_private_nats_and_sigterm_stops_everything(tmp_path):
    server = start_plotline(tmp_path, "-m", prefix="/plots")
    try:
        child = nats_child_pid(server.log.read_text())
        assert alive(child)
        r = httpx.get(f"{server.internal_url}/readyz")
        assert r.status_code == 200 and r.json()["ready"] is True
        # the prefix is honoured, and nothing answers outside it
        name = new_username()
        r = httpx.post(f"{server.url}{AUTH}/register",
                       json={"username": name, "password": "password123"})
        assert r.status_code == 201
        assert httpx.get(f"http://127.0.0.1:{server.port}{AUTH}/me").status_code == 404
        # JetStream lives under -D
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == 0

        assert wait_gone(child), "nats-server child outlived plotline"
        log = server.log.read_text()
        assert "all services stopped" in log and "nats-server stopped" in log
    finally:
        server.stop()


def _get_on(sock, path: str) -> tuple[bytes, bool]:
    """(head, closed): one GET on an open keep-alive socket; `closed` when the server then
    closed the connection (EOF within a second)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    sock.settimeout(1.0)
    try:
        closed = sock.recv(1) == b""
    except TimeoutError:
        closed = False
    return head.lower(), closed


def test_sigterm_with_a_drain_answers_on_but_closes_each_connection(tmp_path):
    """PLOTLINE_<SERVICE>_DRAIN_SECONDS (the stack sets 1): after SIGTERM, /readyz says 503
    at once, requests are still answered, each with `Connection: close` and the connection
    then closed by the server (a proxy's pooled connection ends with an answer, never
    under a request); after the drain the process exits by itself."""
    import socket

    server = start_plotline(tmp_path, env={"PLOTLINE_DOCS_DRAIN_SECONDS": "3"})
    try:
        path = f"{AUTH}/.well-known/jwks.json"
        with socket.create_connection(("127.0.0.1", server.port)) as kept:
            head, closed = _get_on(kept, path)
            assert head.startswith(b"http/1.1 200") and not closed  # kept alive
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.3)
            assert httpx.get(f"{server.internal_url}/readyz").status_code == 503
            head, closed = _get_on(kept, path)  # a request on the pooled connection
        assert head.startswith(b"http/1.1 200") and b"connection: close" in head and closed
        with socket.create_connection(("127.0.0.1", server.port)) as fresh:
            head, closed = _get_on(fresh, path)  # a new connection: still served
        assert head.startswith(b"http/1.1 200") and closed
        assert server.process.wait(15) == 0
        assert time.monotonic() - signalled >= 2.5
        assert "stopping in 3.0 s" in server.log.read_text()
    finally:
        server.stop()


def test_a_taken_port_is_refused_clearly(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    server = start_plotline(tmp_path / "first")
    try:
        out = subprocess.run([str(Path(sys.executable).parent / "plotline"), "serve",
                              "--port", str(server.port), "-D", str(tmp_path / "second")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and f"127.0.0.1:{server.port}" in out.stderr
        assert "another plotline serve" in out.stderr
        assert httpx.get(f"{server.internal_url}/healthz").status_code == 200
    finally:
        server.stop()


def test_nats_child_dies_with_a_killed_server(tmp_path):
    server = start_plotline(tmp_path)
    child = nats_child_pid(server.log.read_text())
    server.process.kill()
    server.process.wait(10)
    assert wait_gone(child), "nats-server child survived SIGKILL of its parent"


def test_data_survives_a_restart(tmp_path):
    server = start_plotline(tmp_path, "-m")
    name = new_username()
    try:
        httpx.post(f"{server.url}{AUTH}/register", json={"username": name,
                                                         "password": "password123"})
        token = httpx.post(f"{server.url}{AUTH}/login", json={
            "username": name, "password": "password123"}).json()["access_token"]
    finally:
        server.stop()
    server = start_plotline(tmp_path, "-m")
    try:  # the account and the signing key (so the token) are still there
        r = httpx.get(f"{server.url}{AUTH}/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["username"] == name
    finally:
        server.stop()


def test_two_auth_replicas_share_throttling_and_keys(tmp_path, redis_url, nats_url):
    # one installation, two replicas: same NATS, same Redis namespace
    namespace = new_username()
    args = ["-m", "--nats-url", nats_url, "--backend", "redis", "--redis-url",
            f"{redis_url}?prefix={namespace}:"]
    a = start_plotline(tmp_path / "a", *args)
    b = start_plotline(tmp_path / "b", *args)
    try:
        name = new_username()
        httpx.post(f"{a.url}{AUTH}/register", json={"username": name,
                                                    "password": "password123"})
        token = httpx.post(f"{a.url}{AUTH}/login", json={
            "username": name, "password": "password123"}).json()["access_token"]
        me = httpx.get(f"{b.url}{AUTH}/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        for _ in range(5):
            r = httpx.post(f"{a.url}{AUTH}/login", json={"username": name,
                                                         "password": "wrong-password"})
            assert r.status_code == 401
        r = httpx.post(f"{b.url}{AUTH}/login", json={"username": name,
                                                      "password": "password123"})
        assert r.status_code == 429
    finally:
        a.stop()
        b.stop()


def test_cli_help_and_bad_options(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    plotline = str(Path(sys.executable).parent / "plotline")
    out = subprocess.run([plotline, "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--url-prefix" in out.stdout and "-m" in out.stdout
    out = subprocess.run([plotline, "serve", "--backend", "redis", "-D", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--redis-url" in out.stderr


def test_placeholder_secrets_refused_outside_dev():
    with pytest.raises(ValidationError, match="placeholder"):
        AuthSettings(smtp_url="changeme")
    assert AuthSettings(smtp_url="changeme", dev=True).dev is True


def test_a_service_app_is_a_plain_asgi_app_any_server_runs(nats_url):
    """What create_app returns is what is served: handed straight to uvicorn (no Embedded,
    no `plotline serve`), the docs app starts its lifespan, answers its FastAPI routes and
    its front door (the hot read) alike, and stops."""
    import asyncio

    import uvicorn

    from services.docs.app import create_app
    from services.docs.config import DocsSettings

    app = create_app(DocsSettings(nats_url=nats_url, kv_url="memory://", blob_url="memory://",
                                  dev=True))
    port = free_port()

    async def scenario() -> tuple[int, int, int]:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               lifespan="on", log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
                for _ in range(100):
                    if server.started:
                        break
                    await asyncio.sleep(0.05)
                made = await c.post("/api/v1/docs/", json={"title": "plain asgi"})
                read = await c.get(f"/api/v1/docs/{made.json()['id']}")  # the front door
                listed = await c.get("/api/v1/docs/")  # FastAPI
                return made.status_code, read.status_code, len(listed.json())
        finally:
            server.should_exit = True
            await serving

    assert asyncio.run(scenario()) == (201, 200, 1)
    assert app.state.started is False  # the lifespan ran and ended

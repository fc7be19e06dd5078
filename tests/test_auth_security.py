"""Auth hardening over the real HTTP API: per-client login throttling, reserved usernames,
argon2 off the event loop, and private permissions on the embedded stores' files."""

from __future__ import annotations

import asyncio
import os
import stat
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import new_username

from services.common.stores.blob_local import LocalBlob
from services.common.stores.kv_sqlite import SqliteKV

AUTH = "/api/v1/auth"


def client_from(server, address: str) -> httpx.Client:
    """A client the server sees as `address` (distinct loopback peers)."""
    return httpx.Client(base_url=server.url, timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    return body["error"]


# --- 1. throttling belongs to the client, not the username --------------------------------

def test_failures_elsewhere_never_lock_out_the_owner(multi_server, account) -> None:
    name, password = account["username"], account["password"]
    with client_from(multi_server, "127.0.0.2") as attacker:
        for _ in range(6):
            r = attacker.post(f"{AUTH}/login", json={"username": name, "password": "nope-nope"})
            assert r.status_code in (401, 429)
        # the failing client is held back for this username, even with the right password
        r = attacker.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 429 and error_of(r) == "too_many_requests"
        assert int(r.headers["retry-after"]) > 0
    # a client that has not failed gets in
    with client_from(multi_server, "127.0.0.3") as owner:
        r = owner.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 200, r.text


def test_an_address_failing_across_usernames_is_refused_everything(multi_server) -> None:
    name, password = new_username(), "correct horse battery"
    with httpx.Client(base_url=multi_server.url) as c:
        assert c.post(f"{AUTH}/register",
                      json={"username": name, "password": password}).status_code == 201
    with client_from(multi_server, "127.0.0.4") as sprayer:
        for _ in range(20):  # one try per username: no per-username limit is reached
            r = sprayer.post(f"{AUTH}/login",
                             json={"username": new_username(), "password": "guess-1234"})
            assert r.status_code == 401
        r = sprayer.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 429 and error_of(r) == "too_many_requests"
        assert int(r.headers["retry-after"]) > 0
    with client_from(multi_server, "127.0.0.5") as other:
        r = other.post(f"{AUTH}/login", json={"username": name, "password": password})
        assert r.status_code == 200


# --- 2. reserved usernames ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["defaultuser", "admin", "root", "administrator", "system",
                                  "plotline", "anonymous", "api", "public", "www", "support",
                                  "security"])
def test_reserved_usernames_cannot_be_registered(multi_server, name) -> None:
    with httpx.Client(base_url=multi_server.url) as c:
        r = c.post(f"{AUTH}/register", json={"username": name, "password": "password123"})
        assert r.status_code == 422 and error_of(r) == "username_reserved"
    # nothing was stored: the password does not log in (asked from an address of its own,
    # so these failures do not count against the other tests' client)
    with client_from(multi_server, "127.0.0.6") as c:
        r = c.post(f"{AUTH}/login", json={"username": name, "password": "password123"})
        assert r.status_code == 401


# --- 3. argon2 does not stall the event loop ----------------------------------------------

def test_healthz_stays_fast_during_parallel_logins(multi_server, account) -> None:
    body = {"username": account["username"], "password": account["password"]}
    login_times: list[float] = []
    stop = threading.Event()

    def keep_logging_in() -> None:
        with httpx.Client(base_url=multi_server.url, timeout=30) as c:
            while not stop.is_set():
                start = time.perf_counter()
                assert c.post(f"{AUTH}/login", json=body).status_code == 200
                login_times.append(time.perf_counter() - start)

    workers = [threading.Thread(target=keep_logging_in) for _ in range(6)]
    for w in workers:
        w.start()
    health: list[float] = []
    try:
        time.sleep(0.3)
        # (the internal port answers in the same event loop as the logins)
        with httpx.Client(base_url=multi_server.internal_url, timeout=30) as c:
            for _ in range(40):
                start = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                health.append(time.perf_counter() - start)
                time.sleep(0.01)
    finally:
        stop.set()
        for w in workers:
            w.join()
    t_health, t_login = statistics.median(health), statistics.median(login_times)
    # On the loop, a probe waits behind every queued hash, i.e. a good part of a login;
    # off it, a probe costs a small fraction of one (ratio, not absolute: noisy CI boxes).
    assert t_health < t_login / 5, (t_health, t_login)


# --- 4. the embedded stores keep their files private --------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_files_are_0600_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        kv = SqliteKV(str(tmp_path / "x.db"))

        async def use() -> None:
            await kv.put("k", b"v")
            for suffix in ("", "-wal", "-shm"):
                assert _mode(tmp_path / f"x.db{suffix}") == 0o600, suffix
            await kv.close()

        asyncio.run(use())
    finally:
        os.umask(old)


def test_blob_directories_are_0700_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        root = tmp_path / "blobs"
        asyncio.run(LocalBlob(root).put("a/b/c", b"data"))
        for d in (root, root / ".tmp", root / "a", root / "a" / "b"):
            assert _mode(d) == 0o700, d
        assert _mode(root / "a" / "b" / "c") & 0o077 == 0
    finally:
        os.umask(old)


def test_the_running_servers_auth_db_is_private(multi_server) -> None:
    url = multi_server.auth_kv_url
    if not url.startswith("sqlite:///"):
        pytest.skip("auth keeps its state in Redis here")
    db = Path(url.removeprefix("sqlite://"))
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            assert _mode(path) == 0o600, path

"""Session-wide fixtures: real servers on free ports, started once per test run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from servers import Server, start_azurite, start_nats, start_plotline, start_redis


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_nats(tmp_path_factory.mktemp("nats"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server.connection_string
    server.stop()


def backend_args(backend: str, request: pytest.FixtureRequest) -> list[str]:
    if backend == "redis":
        return ["--backend", "redis", "--redis-url", request.getfixturevalue("redis_url")]
    return ["--backend", backend]


@pytest.fixture(scope="module", params=["file", "redis"])
def multi_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Plotline in multi-user mode, once per store backend (SQLite files, real Redis)."""
    tmp = tmp_path_factory.mktemp(f"multi-{request.param}")
    server = start_plotline(tmp, "-m", "--nats-url", request.getfixturevalue("nats_url"),
                            *backend_args(request.param, request))
    # where auth keeps its state, for tests that look at what is stored
    server.auth_kv_url = (  # type: ignore[attr-defined]
        f"sqlite:///{tmp}/data/auth.db" if request.param == "file"
        else f"{request.getfixturevalue('redis_url')}?prefix=plotline:auth:")
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["file", "redis"])
def single_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  nats_url: str) -> Iterator[Server]:
    """Plotline in its default single-user mode, once per store backend."""
    server = start_plotline(tmp_path_factory.mktemp(f"single-{request.param}"),
                            "--nats-url", nats_url, *backend_args(request.param, request))
    yield server
    server.stop()


def new_username() -> str:
    return "u" + uuid.uuid4().hex[:12]


@pytest.fixture
def account(multi_server: Server) -> Iterator[dict]:
    """A registered user with a fresh client; `token` is a bearer JWT."""
    name, password = new_username(), "correct horse battery"
    with httpx.Client(base_url=multi_server.url, timeout=10) as client:
        assert client.post("/api/v1/auth/register",
                           json={"username": name, "password": password}).status_code == 201
        token = client.post("/api/v1/auth/login",
                            json={"username": name, "password": password}).json()["access_token"]
        client.cookies.clear()
        yield {"username": name, "password": password, "token": token, "client": client,
               "headers": {"Authorization": f"Bearer {token}"}}

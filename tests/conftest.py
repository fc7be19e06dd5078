"""Session-wide fixtures: real servers on free ports, started once per test run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
from browsing import browser, page  # noqa: F401  (fixtures for the tests that use pages)
from servers import Server, start_azurite, start_nats, start_plotline, start_redis

# Servers started by the tests skip compiling datashader's kernels at start (seconds of CPU
# each); the aggregate tests pay for it once, on first use.
os.environ.setdefault("PLOTLINE_DATA_WARM_UP", "false")


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


def backend_args(backend: str, request: pytest.FixtureRequest, namespace: str = "") -> list[str]:
    """Store flags; Redis installations get a key namespace of their own."""
    if backend in ("redis", "azure"):
        url = f"{request.getfixturevalue('redis_url')}?prefix={namespace or uuid.uuid4().hex}:"
        args = ["--backend", backend, "--redis-url", url]
        if backend == "azure":  # Redis for small metadata, Azure Blob (Azurite) for the bulk
            args += ["--azure-connection-string",
                     request.getfixturevalue("azurite_connection_string")]
        return args
    return ["--backend", backend]


def start_install(tmp, *args: str, env: dict[str, str] | None = None) -> Server:
    """One Plotline installation with a NATS of its own (two installations on one NATS
    would answer each other's questions, as they would in production), exposed as
    `server.nats_url` for tests that play another service."""
    nats = start_nats(tmp / "nats")
    try:
        server = start_plotline(tmp, "--nats-url", nats.url, *args, env=env)
    except BaseException:
        nats.stop()
        raise
    server.nats_url = nats.url  # type: ignore[attr-defined]
    server.companions = [nats]  # type: ignore[attr-defined]
    return server


def stop_install(server: Server) -> None:
    server.stop()
    for companion in getattr(server, "companions", []):
        companion.stop()


@pytest.fixture(scope="module", params=["file", "azure"])
def multi_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Plotline in multi-user mode, once per production shape of the stores: embedded
    (SQLite + local blobs) and production (real Redis + Azure Blob on Azurite)."""
    tmp = tmp_path_factory.mktemp(f"multi-{request.param}")
    namespace = uuid.uuid4().hex
    server = start_install(tmp, "-m", *backend_args(request.param, request, namespace))
    # where auth keeps its state, for tests that look at what is stored
    server.auth_kv_url = (  # type: ignore[attr-defined]
        f"sqlite:///{tmp}/data/auth.db" if request.param == "file"
        else f"{request.getfixturevalue('redis_url')}?prefix={namespace}:plotline:auth:")
    yield server
    stop_install(server)


@pytest.fixture(scope="module", params=["file", "redis"])
def single_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  ) -> Iterator[Server]:
    """Plotline in its default single-user mode, once per store backend."""
    server = start_install(tmp_path_factory.mktemp(f"single-{request.param}"),
                           *backend_args(request.param, request))
    yield server
    stop_install(server)


def new_username() -> str:
    return "u" + uuid.uuid4().hex[:12]


@pytest.fixture
def plotline_home(tmp_path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fresh client configuration directory ($PLOTLINE_HOME, for child processes too):
    no saved login of one test leaks into the next. Modules of client tests use it with
    `pytestmark = pytest.mark.usefixtures("plotline_home")`."""
    path = tmp_path / "plotline-home"
    monkeypatch.setenv("PLOTLINE_HOME", str(path))
    return path


def person(server: Server, password: str = "correct horse battery") -> dict:
    """A new account on `server`, logged in: {name, headers (a bearer JWT)}."""
    name = new_username()
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post("/api/v1/auth/register", json={"username": name, "password": password}
                      ).status_code == 201
        token = c.post("/api/v1/auth/login", json={"username": name, "password": password}
                       ).json()["access_token"]
    return {"name": name, "headers": {"Authorization": f"Bearer {token}"}}


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

"""Session-wide fixtures: real servers on free ports, started once per test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers import start_azurite, start_nats, start_redis


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

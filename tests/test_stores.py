"""Contract tests: every backend of a store protocol must pass the same test bodies.

The kv tests run against memory, SQLite and a real Redis; the blob tests against memory, a
local directory and a real Azurite. Every test gets a fresh namespace (a new key prefix,
SQLite file, directory or container), so tests are independent of each other and of order.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from services.common.stores import (
    BlobNotFound,
    BlobStore,
    KVStore,
    VersionConflict,
    Versioned,
    open_blob,
    open_kv,
)
from services.common.stores.idlists import IdLists

KVFactory = Callable[[], Awaitable[KVStore]]


@pytest_asyncio.fixture(params=["memory", "sqlite", "redis"])
async def new_kv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KVFactory]:
    """A factory of stores, each in a namespace of its own, closed after the test."""
    opened: list[KVStore] = []
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    async def make() -> KVStore:
        ns = uuid.uuid4().hex
        url = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp_path / ns}.db",
            "redis": f"{redis_url}?prefix=test-{ns}:",
        }[request.param]
        opened.append(open_kv(url))
        return opened[-1]

    yield make
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def kv(new_kv: KVFactory) -> KVStore:
    return await new_kv()


@pytest_asyncio.fixture(params=["memory", "local", "azure"])
async def blob(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "azure":
        conn = request.getfixturevalue("azurite_connection_string")
        store = open_blob(f"azure://t{uuid.uuid4().hex}", azure_connection_string=conn)
    else:
        store = open_blob(
            {"memory": "memory://", "local": f"file://{tmp_path / 'blobs'}"}[request.param]
        )
    yield store
    await store.close()


async def test_kv_versions(kv: KVStore) -> None:
    assert await kv.get("k") is None
    assert await kv.put("k", b"one") == 1
    assert await kv.put("k", b"two") == 2
    assert await kv.get("k") == Versioned(b"two", 2)
    # Arbitrary bytes, including empty and non-UTF-8, come back unchanged.
    assert await kv.put("bin", b"") == 1
    assert await kv.get("bin") == Versioned(b"", 1)
    await kv.put("bin", bytes(range(256)))
    assert (await kv.get("bin")).value == bytes(range(256))


async def test_kv_compare_and_set(kv: KVStore) -> None:
    with pytest.raises(VersionConflict):
        await kv.put("k", b"x", expect=5)  # absent is version 0
    assert await kv.put("k", b"a", expect=0) == 1
    with pytest.raises(VersionConflict):
        await kv.put("k", b"b", expect=0)  # exists
    with pytest.raises(VersionConflict):
        await kv.put("k", b"b", expect=2)
    assert await kv.get("k") == Versioned(b"a", 1)
    assert await kv.put("k", b"b", expect=1) == 2
    assert await kv.get("k") == Versioned(b"b", 2)


async def test_kv_delete(kv: KVStore) -> None:
    assert await kv.delete("k") is False
    assert await kv.delete("k", expect=0) is False
    await kv.put("k", b"a")
    await kv.put("k", b"b")
    with pytest.raises(VersionConflict):
        await kv.delete("k", expect=1)
    with pytest.raises(VersionConflict):
        await kv.delete("k", expect=0)
    assert await kv.get("k") == Versioned(b"b", 2)
    assert await kv.delete("k", expect=2) is True
    assert await kv.get("k") is None
    with pytest.raises(VersionConflict):
        await kv.delete("k", expect=2)
    assert await kv.put("k", b"again") == 1  # a re-created key starts again at 1
    assert await kv.delete("k") is True


async def test_kv_keys_prefix(new_kv: KVFactory) -> None:
    kv, other = await new_kv(), await new_kv()
    for key in ["b/2", "a/1", "b/1", "bb", "b*", "b[x]", "c"]:
        await kv.put(key, b"")
    await other.put("b/3", b"")
    assert await kv.keys() == sorted(["b/2", "a/1", "b/1", "bb", "b*", "b[x]", "c"])
    assert await kv.keys("b/") == ["b/1", "b/2"]
    assert await kv.keys("b*") == ["b*"]  # glob characters are literal
    assert await kv.keys("b[") == ["b[x]"]
    assert await kv.keys("zz") == []
    assert await other.keys() == ["b/3"]  # namespaces are isolated
    await kv.delete("b/1")
    assert await kv.keys("b/") == ["b/2"]


async def test_kv_ttl(kv: KVStore) -> None:
    assert await kv.put("t", b"a", ttl=0.3) == 1
    assert await kv.put("t", b"b", ttl=0.3) == 2
    await kv.put("kept", b"x", ttl=0.3)
    await kv.put("kept", b"y")  # a write without ttl makes the key permanent again
    await kv.put("forever", b"z")
    assert await kv.get("t") == Versioned(b"b", 2)
    await asyncio.sleep(0.5)
    assert await kv.get("t") is None
    assert await kv.keys() == ["forever", "kept"]
    assert await kv.get("kept") == Versioned(b"y", 2)
    with pytest.raises(VersionConflict):
        await kv.put("t", b"c", expect=2)  # expired behaves as absent
    assert await kv.put("t", b"c", expect=0) == 1


async def test_kv_concurrent_cas_counter(kv: KVStore) -> None:
    async def increment() -> None:
        while True:
            current = await kv.get("counter")
            n, version = (0, 0) if current is None else (int(current.value), current.version)
            try:
                await kv.put("counter", str(n + 1).encode(), expect=version)
                return
            except VersionConflict:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment() for _ in range(50)))
    assert await kv.get("counter") == Versioned(b"50", 50)


async def test_id_lists_keep_every_concurrent_change_once(kv: KVStore) -> None:
    """The one compare-and-set id list (services/common/stores/idlists.py) that docs, data
    and auth keep their indexes in: concurrent adders lose none of each other's ids, an id
    is listed once, order is the order added, and an emptied list is gone from the store."""
    lists = IdLists(kv, "things-of:")
    await asyncio.gather(*(lists.update("ann", add=[f"id{i}"]) for i in range(20)))
    assert sorted(await lists.ids("ann")) == sorted(f"id{i}" for i in range(20))
    await lists.update("ann", add=["id3", "id3"])  # already there: still once
    assert (await lists.ids("ann")).count("id3") == 1
    await asyncio.gather(*(lists.update("ann", remove=[f"id{i}"]) for i in range(0, 20, 2)))
    left = await lists.ids("ann")
    assert len(left) == 10 and all(int(i[2:]) % 2 for i in left)
    await lists.update("bob", add=["b", "a"])
    assert await lists.ids("bob") == ["b", "a"]  # as added, not sorted
    await lists.update("bob", remove=["a", "b"])
    assert await lists.ids("bob") == [] and await kv.get("things-of:bob") is None
    assert await lists.ids("nobody") == []


async def test_blob_round_trip(blob: BlobStore) -> None:
    data = os.urandom(1 << 20)
    await blob.put("sources/abc/chunk-0001.arrow", data)
    assert await blob.get("sources/abc/chunk-0001.arrow") == data
    await blob.put("sources/abc/chunk-0001.arrow", b"smaller")  # overwrite
    assert await blob.get("sources/abc/chunk-0001.arrow") == b"smaller"
    await blob.put("empty", b"")
    assert await blob.get("empty") == b""


async def test_blob_missing_and_delete(blob: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await blob.get("nope")
    with pytest.raises(KeyError):  # BlobNotFound is a KeyError
        await blob.get("a/b/nope")
    assert await blob.delete("nope") is False
    await blob.put("a/b", b"x")
    assert await blob.delete("a/b") is True
    assert await blob.list() == []
    with pytest.raises(BlobNotFound):
        await blob.get("a/b")


async def test_blob_list_prefix(blob: BlobStore) -> None:
    assert await blob.list() == []
    names = ["docs/2", "sources/b/1", "sources/a/2", "sources/a/1", "sourcesx", "top"]
    for name in names:
        await blob.put(name, name.encode())
    assert await blob.list() == sorted(names)
    assert await blob.list("sources/") == ["sources/a/1", "sources/a/2", "sources/b/1"]
    assert await blob.list("sources/a") == ["sources/a/1", "sources/a/2"]
    assert await blob.list("sources") == ["sources/a/1", "sources/a/2", "sources/b/1", "sourcesx"]
    assert await blob.list("sources/a/1") == ["sources/a/1"]
    assert await blob.list("none/") == []


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "", "a//b", "./a"])
async def test_blob_local_rejects_escaping_names(tmp_path: Path, name: str) -> None:
    store = open_blob(f"file://{tmp_path / 'blobs'}")
    with pytest.raises(ValueError):
        await store.put(name, b"x")
    with pytest.raises(ValueError):
        await store.get(name)
    assert not (tmp_path / "x").exists()
    assert await store.list("../") == []
    await store.close()


def test_unknown_schemes_are_refused() -> None:
    with pytest.raises(ValueError):
        open_kv("etcd://localhost")
    with pytest.raises(ValueError):
        open_blob("s3://bucket")
    with pytest.raises(ValueError):
        open_blob("azure://container")  # no connection string


# --- a store that is away --------------------------------------------------------------

async def test_a_redis_that_is_away_is_a_503_for_every_call_not_a_500():
    """Nothing listens on the port (Redis killed): every call raises StoreUnavailable, an
    Unavailable (503 with Retry-After) after redis-py's two quick retries."""
    from servers import free_port

    from services.common.errors import Unavailable
    from services.common.stores.kv import StoreUnavailable

    kv = open_kv(f"redis://127.0.0.1:{free_port()}/0?prefix=away:")
    try:
        for call in (kv.get("k"), kv.put("k", b"v"), kv.put("k", b"v", expect=3),
                     kv.delete("k"), kv.keys("k")):
            with pytest.raises(StoreUnavailable) as caught:
                await call
            assert isinstance(caught.value, Unavailable) and caught.value.status == 503
            assert caught.value.headers == {"Retry-After": "2"}
    finally:
        await kv.close()


async def test_a_blob_store_that_is_away_is_a_503_without_the_sdks_long_backoff():
    from servers import AZURITE_ACCOUNT, AZURITE_KEY, free_port

    from services.common.stores.blob import BlobUnavailable

    port = free_port()
    store = open_blob("azure://away", azure_connection_string=(
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"))
    try:
        for call in (store.put("a/b", b"x"), store.get("a/b"), store.list("a/")):
            with pytest.raises(BlobUnavailable):
                await asyncio.wait_for(call, 10)  # (the SDK's default retry took 18-21 s)
    finally:
        await store.close()

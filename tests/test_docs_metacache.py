"""MetaCache: the rules that keep a replica's hot-read metadata from going back in time."""

from __future__ import annotations

import pytest

from services.docs import metacache
from services.docs.metacache import MetaCache


def meta(version: int, doc_id: str = "d1") -> dict:
    return {"id": doc_id, "version": version}


def test_newest_wins_whatever_the_order():
    cache = MetaCache()
    cache.put(meta(5))
    cache.put(meta(4))  # a slow store read finishing after the write
    assert cache.get("d1")["version"] == 5
    cache.announced("d1", 6)  # another replica wrote version 6
    assert cache.get("d1") is None
    cache.put(meta(5))  # a read that started before the event: not cached
    assert cache.get("d1") is None
    cache.put(meta(6))
    assert cache.get("d1")["version"] == 6
    cache.announced("d1", 6)  # our own event coming back changes nothing
    assert cache.get("d1")["version"] == 6


def test_deleted_documents_are_never_cached_again():
    cache = MetaCache()
    cache.put(meta(3))
    cache.announced("d1", 4, deleted=True)
    assert cache.get("d1") is None
    cache.put(meta(3))
    assert cache.get("d1") is None


def test_an_event_without_a_version_drops_the_entry_only():
    cache = MetaCache()
    cache.put(meta(3))
    cache.announced("d1", None)
    assert cache.get("d1") is None
    cache.put(meta(3))
    assert cache.get("d1")["version"] == 3


def test_entries_expire_when_no_event_comes(monkeypatch: pytest.MonkeyPatch):
    now = [1000.0]
    monkeypatch.setattr(metacache.time, "monotonic", lambda: now[0])
    cache = MetaCache(ttl=1.0)
    cache.put(meta(1))
    now[0] += 0.9
    assert cache.get("d1")["version"] == 1
    now[0] += 0.2
    assert cache.get("d1") is None


def test_size_is_bounded():
    cache = MetaCache(max_entries=10)
    for i in range(25):
        cache.put(meta(1, f"d{i}"))
        cache.announced(f"x{i}", 1)
    assert len(cache._entries) <= 10 and len(cache._floors) <= 10
    assert cache.get("d24")["version"] == 1


async def test_the_hot_read_asks_the_store_once_per_lifetime(monkeypatch: pytest.MonkeyPatch):
    from services.common.stores.blob import open_blob
    from services.common.stores.kv import open_kv
    from services.docs.repository import DocsRepository

    now = [1000.0]
    monkeypatch.setattr(metacache.time, "monotonic", lambda: now[0])
    kv = open_kv("memory://")
    repo = DocsRepository(kv, open_blob("memory://"), meta_cache_seconds=1.0)
    await kv.put("doc:d1", b'{"id": "d1", "version": 1}')
    reads = [0]
    get = kv.get

    async def counted(key: str):  # type: ignore[no-untyped-def]
        reads[0] += 1
        return await get(key)

    monkeypatch.setattr(kv, "get", counted)
    for _second in range(3):  # each lifetime: one store read, then cache hits
        for _ in range(5):
            assert (await repo.peek_meta("d1"))["version"] == 1
        now[0] += 1.5
    assert reads[0] == 3

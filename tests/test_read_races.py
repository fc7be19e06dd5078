"""A read that races a write on another replica.

Two replicas share the stores. A write puts new content under a fresh blob name, moves the
metadata to it, and then deletes the old blob; a replica that read the metadata just before
(from the store, or from its one-second MetaCache) then asks for a blob that is gone. That
is not a lost blob and not a deleted document: the read must start again from the new
metadata and answer the newer version (found by the rolling-restart fault test, where a
fresh replica's GET answered 404 "the stored data is gone").

Here the race is made certain: replica B's blob store runs replica A's write to its end
(old blob deleted) just before B's read of a blob reaches the store. Real stores (SQLite,
a local blob directory) and a real NATS for the events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from bokeh.document import Document
from bokeh_docs import figure_doc, source_id

from services.common.bus import Bus
from services.common.identity import Principal
from services.common.stores import open_blob, open_kv
from services.common.stores.blob import BlobNotFound, BlobStore
from services.data.config import DataSettings
from services.data.repository import DataRepository
from services.data.service import DataService
from services.docs.config import DocsSettings
from services.docs.repository import DocsRepository
from services.docs.service import DocsService

OWNER = Principal("alice", "test")


class Racing:
    """A blob store whose next get() of a blob first lets `before` run (another replica's
    write, to its end); every other call goes straight through."""

    def __init__(self, real: BlobStore) -> None:
        self.real = real
        self.before: Callable[[], Awaitable[None]] | None = None
        self.raced = 0

    async def get(self, name: str) -> bytes:
        before, self.before = self.before, None
        if before is not None:
            await before()
            self.raced += 1
        return await self.real.get(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
async def stores(tmp_path: Path, nats_url: str):
    kv, blobs = open_kv(f"sqlite:///{tmp_path / 'kv.db'}"), open_blob(f"file://{tmp_path}/b")
    buses = [await Bus.connect(nats_url, "docs"), await Bus.connect(nats_url, "data")]
    for bus in buses:
        await bus.ensure_stream()
    yield kv, blobs, buses
    for bus in buses:
        await bus.close()
    await kv.close()
    await blobs.close()


async def gone(blobs: BlobStore, name: str) -> None:
    """Until the writer's clean-up has deleted `name` (it runs after the write answers)."""
    for _ in range(200):
        try:
            await blobs.get(name)
        except BlobNotFound:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} was never deleted")


def docs_replicas(stores) -> tuple[DocsService, DocsService, Racing]:
    kv, blobs, (bus, _) = stores
    racing = Racing(blobs)
    # B's MetaCache holds what it read for an hour: only a store read can correct it
    a = DocsService(DocsSettings(), DocsRepository(kv, blobs), bus)
    b = DocsService(DocsSettings(), DocsRepository(kv, racing, meta_cache_seconds=3600), bus)
    return a, b, racing


def xs(doc_json: dict, doc: dict) -> list[float]:
    """The x column of `doc`'s ColumnDataSource in a stored or answered document."""
    return list(Document.from_json(doc_json).get_model_by_id(source_id(doc)).data["x"])


def stream(doc: dict, value: float) -> dict:
    return {"kind": "ColumnsStreamed", "model": {"id": source_id(doc)}, "attr": "data",
            "data": {"x": [value], "y": [value]}, "rollover": None}


async def test_a_document_read_racing_a_write_answers_the_newer_version(stores):
    a, b, racing = docs_replicas(stores)
    doc = figure_doc(points=3)
    meta = await a.create(OWNER, "t", doc)
    old = (await a.repo.get_meta(meta["id"]))[0]["blob"]
    await b.repo.peek_meta(meta["id"])  # B knows version 1

    async def write_on_a() -> None:
        await a.patch(meta["id"], OWNER, [stream(doc, 100.0)])
        await gone(a.repo.blobs, old)

    racing.before = write_on_a
    got, body = await b.read(meta["id"], OWNER)
    assert racing.raced == 1
    assert got["version"] == 2 and json.loads(body)["version"] == 2
    assert xs(json.loads(body)["doc"], doc) == [0.0, 1.0, 2.0, 100.0]  # its content


async def test_a_document_load_and_a_patch_racing_a_write_start_again(stores):
    """The loads behind exports and clones, and a patch on B (its content read after its
    metadata): each starts again from the store instead of answering 404."""
    a, b, racing = docs_replicas(stores)
    doc = figure_doc(points=3)
    meta = await a.create(OWNER, "t", doc)

    async def write_on_a() -> None:
        old = (await a.repo.get_meta(meta["id"]))[0]["blob"]
        await a.patch(meta["id"], OWNER, [stream(doc, 100.0 + racing.raced)])
        await gone(a.repo.blobs, old)

    racing.before = write_on_a
    got, loaded = await b.load(meta["id"], OWNER)
    assert racing.raced == 1 and got["version"] == 2
    assert xs(loaded.to_bokeh(), doc) == [0.0, 1.0, 2.0, 100.0]
    racing.before = write_on_a
    b.repo._parsed.clear()  # B has not seen this version's content yet
    after = await b.patch(meta["id"], OWNER, [stream(doc, 200.0)])
    assert racing.raced == 2 and after["version"] == 4  # after A's version 3
    _, final = await a.load(meta["id"], OWNER)
    assert xs(final.to_bokeh(), doc) == [0.0, 1.0, 2.0, 100.0, 101.0, 200.0]


def data_replicas(stores) -> tuple[DataService, DataService, Racing]:
    kv, blobs, (_, bus) = stores
    racing = Racing(blobs)
    settings = DataSettings(inline_tail_bytes=0, warm_up=False)  # every row in a blob
    a = DataService(settings, DataRepository(kv, blobs, 1 << 30), bus)
    b = DataService(settings, DataRepository(kv, racing, 1 << 30), bus)
    return a, b, racing


def patching(a: DataService, source: str) -> Callable[[], Awaitable[None]]:
    """A's patch of row 0, to its end: the source rewritten into one new chunk, and the
    chunks it had deleted."""
    async def patch_on_a() -> None:
        m = (await a.repo.get(source))[0]
        await a.patch(source, OWNER, {"x": [[0, -1.0]]})
        for chunk in m["chunks"]:
            await gone(a.repo.blobs, chunk["blob"])

    return patch_on_a


async def test_a_source_read_racing_a_rewrite_is_not_reported_lost(stores):
    """A's patch rewrites the source into a new chunk and deletes the old ones while B
    reads: B answers the patched rows, none null, and counts nothing lost."""
    a, b, racing = data_replicas(stores)
    made = await a.create(OWNER, "s", pa.table({"x": [1.0, 2.0, 3.0]}), None)
    source = made["id"]
    racing.before = patch_on = patching(a, source)
    m, table = await b.read(source, OWNER, None, None, None)
    assert racing.raced == 1
    assert m["lost"] == [] and b.repo.damaged == set()
    assert m["version"] == 2 and table.column("x").to_pylist() == [-1.0, 2.0, 3.0]
    racing.before = patch_on
    b.repo.forget(source)
    described = await b.describe_source(source, OWNER)
    assert racing.raced == 2 and described["lost"] == [] and described["version"] == 3


async def test_an_append_racing_a_rewrite_is_not_refused_as_data_lost(stores):
    a, b, racing = data_replicas(stores)
    source = (await a.create(OWNER, "s", pa.table({"x": [1.0, 2.0]}), None))["id"]
    racing.before = patching(a, source)
    answer = await b.append(source, OWNER, {"x": [3.0]}, None)
    assert racing.raced == 1 and answer["version"] == 3
    m = (await a.repo.get(source))[0]
    a.repo.forget(source)
    assert (await a.repo.load(m)).column("x").to_pylist() == [-1.0, 2.0, 3.0]
    assert b.repo.damaged == set()

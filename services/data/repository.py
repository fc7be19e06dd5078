"""Data storage: a manifest per source in the key-value store (compare-and-set), the column
data as Arrow IPC chunks in the blob store.

An append writes its rows as a new chunk first and then moves the manifest to include it;
the append is acknowledged only after both, so an acknowledged append is durable and an
unacknowledged one is at most an unreferenced blob (never half a row). Rollover moves an
offset and forgets whole chunks; many small chunks are merged into one.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pyarrow as pa

from services.common.stores.blob import BlobNotFound, BlobStore
from services.common.stores.kv import KVStore, VersionConflict

Manifest = dict[str, Any]


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


class DataRepository:
    def __init__(self, kv: KVStore, blobs: BlobStore, cache_bytes: int) -> None:
        self.kv = kv
        self.blobs = blobs
        self.cache_bytes = cache_bytes
        self._tables: dict[str, tuple[int, pa.Table]] = {}  # id -> (version, visible rows)
        self._sizes: dict[str, int] = {}
        self._total = 0

    async def get(self, source_id: str) -> tuple[Manifest, int] | None:
        found = await self.kv.get(f"source:{source_id}")
        return (json.loads(found.value), found.version) if found else None

    async def put(self, manifest: Manifest, expect: int) -> int:
        return await self.kv.put(f"source:{manifest['id']}", json.dumps(manifest).encode(),
                                 expect=expect)

    async def write_chunk(self, source_id: str, version: int, table: pa.Table) -> dict:
        name = f"sources/{source_id}/c{version:09d}-{secrets.token_hex(4)}.arrow"
        await self.blobs.put(name, to_ipc(table))
        return {"blob": name, "rows": table.num_rows}

    async def load(self, manifest: Manifest) -> pa.Table:
        """The source's visible rows (cached per version)."""
        cached = self._tables.get(manifest["id"])
        if cached and cached[0] == manifest["version"]:
            return cached[1]
        parts = []
        for chunk in manifest["chunks"]:
            with pa.ipc.open_stream(await self.blobs.get(chunk["blob"])) as reader:
                parts.append(reader.read_all())
        schema = pa.schema([(c["name"], pa_type(c["dtype"])) for c in manifest["schema"]])
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        table = table.slice(manifest["offset"])
        self.remember(manifest, table)
        return table

    def remember(self, manifest: Manifest, table: pa.Table) -> None:
        """Keep the source's rows; oldest sources go first when over the byte budget. Sizes
        are kept as we go: summing every table on each append cost tens of ms."""
        self.forget(manifest["id"])
        size = table.get_total_buffer_size()
        self._tables[manifest["id"]] = (manifest["version"], table)
        self._sizes[manifest["id"]] = size
        self._total += size
        while self._total > self.cache_bytes and len(self._tables) > 1:
            self.forget(next(iter(self._tables)))

    def forget(self, source_id: str) -> None:
        if self._tables.pop(source_id, None) is not None:
            self._total -= self._sizes.pop(source_id)

    async def commit(self, manifest: Manifest, kv_version: int, written: list[dict],
                     dropped: list[str]) -> int:
        """Store the manifest against `kv_version`; on a lost race delete what we wrote."""
        try:
            new_kv = await self.put(manifest, kv_version)
        except VersionConflict:
            for chunk in written:
                await self.drop_blob(chunk["blob"])
            raise
        for name in dropped:
            await self.drop_blob(name)
        return new_kv

    async def drop_blob(self, name: str) -> None:
        try:
            await self.blobs.delete(name)
        except BlobNotFound:
            pass

    async def delete(self, manifest: Manifest, kv_version: int) -> None:
        await self.kv.delete(f"source:{manifest['id']}", expect=kv_version)
        self.forget(manifest["id"])
        for chunk in manifest["chunks"]:
            await self.drop_blob(chunk["blob"])

    async def members(self, key: str) -> list[str]:
        found = await self.kv.get(key)
        return json.loads(found.value) if found else []

    async def update_members(self, key: str, *, add: str | None = None,
                             remove: str | None = None) -> None:
        while True:
            found = await self.kv.get(key)
            items = json.loads(found.value) if found else []
            items = [i for i in items if i != remove] + ([add] if add and add not in items
                                                          else [])
            try:
                await self.kv.put(key, json.dumps(items).encode(),
                                  expect=found.version if found else 0)
                return
            except VersionConflict:
                continue


def pa_type(name: str) -> pa.DataType:
    from .columns import arrow_type

    return arrow_type(name)

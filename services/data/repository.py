"""Data storage: a manifest per source in the key-value store (compare-and-set), the column
data as Arrow IPC chunks in the blob store.

An append writes its rows as a new chunk first and then moves the manifest to include it;
the append is acknowledged only after both, so an acknowledged append is durable and an
unacknowledged one is at most an unreferenced blob (never half a row). Rollover moves an
offset and forgets whole chunks; many small chunks are merged into one.

Small appends (a few rows) would cost a blob write each, which is most of their time. Their
rows are kept inside the manifest instead, as its last chunk: one Arrow record batch
(`{"inline": base64 of the batch without its schema, "rows": n}`, read with the manifest's
schema), which each small append re-encodes with its rows added, up to `inline_tail_bytes`;
the append that would overflow it writes the tail and its own rows as one blob chunk. So a
single-row append is one compare-and-set of a small value. (One batch rather than one per
append: a batch's own framing is ~300 bytes, ten times a row of four numbers, and encoding
the manifest was the largest part of an append. DESIGN.md suggests JetStream as this log;
the manifest keeps one place that orders writes and one recovery path.)
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import secrets
from typing import Any

import pyarrow as pa
from prometheus_client import Counter, Gauge

from services.common.errors import Conflict
from services.common.stores.blob import BlobNotFound, BlobStore, Superseded
from services.common.stores.idlists import IdLists
from services.common.stores.kv import KVStore, VersionConflict

from .columns import arrow_type, fixed_width_bytes

Manifest = dict[str, Any]
log = logging.getLogger("plotline.data")
LOST_CHUNKS = Counter("plotline_data_lost_chunks_total",
                      "Chunks a manifest names that the blob store no longer has")
DAMAGED = Gauge("plotline_data_damaged_sources",
                "Sources with rows lost from the blob store, as this replica last read them")


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{start}:{stop}" for start, stop in ranges)


class ChunksLost(Conflict):
    """Rows of a source whose chunk the blob store no longer has (it lost a blob it had
    acknowledged): reads still answer, with those rows null and named; writes, which
    would build on them, are refused until the owner repairs the source."""

    code = "data_lost"

    def __init__(self, source_id: str, ranges: list[tuple[int, int]]) -> None:
        super().__init__(
            f"rows {ranges_text(ranges)} of this source are missing from the blob store; "
            f"its other rows are readable. POST .../sources/{source_id}/repair drops the "
            f"lost rows, or PUT .../sources/{source_id}/data replaces every row")
        self.ranges = ranges


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
        self.owned = IdLists(kv, "sources-of:")  # a user's sources
        self._tables: dict[str, tuple[int, pa.Table]] = {}  # id -> (version, visible rows)
        self._sizes: dict[str, int] = {}
        self._total = 0
        # id -> (manifest, its key-value version) as this replica last committed it
        self._committed: dict[str, tuple[Manifest, int]] = {}
        self._missing: set[str] = set()  # blobs found lost (each logged and counted once)
        self._damaged: set[str] = set()

    async def get(self, source_id: str, *, ours: bool = False) -> tuple[Manifest, int] | None:
        """The manifest and its key-value version (a private copy: change it at will).

        `ours`: a writer may start from what this replica committed last instead of
        reading the store; its compare-and-set fails if anyone wrote since, and it then
        reads the store. (Reading and decoding the manifest was a tenth of an append.)"""
        if ours and source_id in self._committed:
            m, version = self._committed[source_id]
            return {**m, "chunks": list(m["chunks"]), "schema": list(m["schema"])}, version
        found = await self.kv.get(f"source:{source_id}")
        return (json.loads(found.value), found.version) if found else None

    async def put(self, manifest: Manifest, expect: int) -> int:
        return await self.kv.put(f"source:{manifest['id']}", json.dumps(manifest).encode(),
                                 expect=expect)

    async def write_chunk(self, source_id: str, version: int, table: pa.Table) -> dict:
        name = f"sources/{source_id}/c{version:09d}-{secrets.token_hex(4)}.arrow"
        await self.blobs.put(name, to_ipc(table))
        return {"blob": name, "rows": table.num_rows}

    async def add_chunk(self, manifest: Manifest, version: int, batch: pa.Table,
                        inline_bytes: int) -> list[dict]:
        """Append `batch` as the manifest's last rows: merged into the inline tail while that
        stays within `inline_bytes`, else one blob chunk holding the tail and the batch.
        Returns the blob chunks written (to delete if the commit loses its race)."""
        chunks = manifest["chunks"]
        # inline rows are read back with the schema the manifest names: only when it is the
        # batch's own (a type the dtype names do not tell apart goes to a blob instead)
        schema = manifest_schema(manifest)
        if chunks and "inline" in chunks[-1]:
            batch = pa.concat_tables([_inline_table(chunks.pop(), schema), batch])
            if not chunks:  # the tail is all there is: drop its rows behind the window
                batch, manifest["offset"] = batch.slice(manifest["offset"]), 0
        if batch.schema.equals(schema):
            encoded = base64.b64encode(_batch_bytes(batch)).decode()
            if len(encoded) <= inline_bytes:
                chunks.append({"inline": encoded, "rows": batch.num_rows})
                return []
        chunk = await self.write_chunk(manifest["id"], version, batch)
        chunks.append(chunk)
        return [chunk]

    async def load(self, manifest: Manifest) -> pa.Table:
        """The source's visible rows (cached per version); ChunksLost when the blob store
        no longer has one of its chunks."""
        table, lost = await self.readable(manifest)
        if lost:
            raise ChunksLost(manifest["id"], lost)
        return table

    async def readable(self, manifest: Manifest) -> tuple[pa.Table, list[tuple[int, int]]]:
        """The visible rows, and the (start, stop) ranges of them lost from the blob store
        (read as nulls: every other row keeps its index)."""
        cached = self._tables.get(manifest["id"])
        if cached and cached[0] == manifest["version"]:
            return cached[1], []
        schema = manifest_schema(manifest)
        parts, lost, at = [], [], -manifest["offset"]
        for chunk in manifest["chunks"]:
            if "inline" in chunk:
                parts.append(_inline_table(chunk, schema))
            else:
                try:
                    parts.append(_read_ipc(await self.blobs.get(chunk["blob"])))
                except BlobNotFound:
                    if await self.replaced(manifest, chunk["blob"]):
                        raise Superseded("the source") from None
                    self._lost(manifest["id"], chunk["blob"])
                    parts.append(pa.table({f.name: pa.nulls(chunk["rows"], f.type)
                                           for f in schema}, schema=schema))
                    lost.append((max(0, at), at + chunk["rows"]))
            at += chunk["rows"]
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        table = table.slice(manifest["offset"])
        if lost:  # (never cached: a repair, or the blob coming back, is seen at once)
            return table, [(a, b) for a, b in lost if b > a]
        self._damaged.discard(manifest["id"])
        DAMAGED.set(len(self._damaged))
        self.remember(manifest, table)
        return table, []

    async def replaced(self, manifest: Manifest, blob: str) -> bool:
        """Whether the store's manifest no longer holds `blob` (a write replaced or dropped
        that chunk, or the source is gone): a read of it raced that write, and nothing was
        lost. Forgets what this replica kept of the source either way."""
        self.forget(manifest["id"])
        now = await self.get(manifest["id"])
        return now is None or all(c.get("blob") != blob for c in now[0]["chunks"])

    def _lost(self, source_id: str, blob: str) -> None:
        if blob not in self._missing:
            self._missing.add(blob)
            LOST_CHUNKS.inc()
            log.error("source %s: chunk %s is missing from the blob store (its rows read "
                      "as nulls; writes are refused until the source is repaired)",
                      source_id, blob)
        self._damaged.add(source_id)
        DAMAGED.set(len(self._damaged))

    @property
    def damaged(self) -> set[str]:
        """Sources found with lost chunks (and not read whole since)."""
        return set(self._damaged)

    def remember(self, manifest: Manifest, table: pa.Table,
                 committed: int | None = None) -> None:
        """Keep the source's rows; oldest sources go first when over the byte budget. Sizes
        are kept as we go: summing every table on each append cost tens of ms.
        `committed`: the key-value version this replica just wrote the manifest at."""
        self.forget(manifest["id"])
        size = _approx_bytes(table)
        if committed is not None:
            self._committed[manifest["id"]] = (manifest, committed)
        self._tables[manifest["id"]] = (manifest["version"], table)
        self._sizes[manifest["id"]] = size
        self._total += size
        while self._total > self.cache_bytes and len(self._tables) > 1:
            self.forget(next(iter(self._tables)))

    def forget(self, source_id: str) -> None:
        self._committed.pop(source_id, None)
        if self._tables.pop(source_id, None) is not None:
            self._total -= self._sizes.pop(source_id)

    async def commit(self, manifest: Manifest, kv_version: int, written: list[dict],
                     dropped: list[str]) -> int:
        """Store the manifest against `kv_version`; on a lost race delete what we wrote."""
        try:
            new_kv = await self.put(manifest, kv_version)
        except VersionConflict:
            for chunk in written:
                if "blob" in chunk:
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
            if "blob" in chunk:
                await self.drop_blob(chunk["blob"])


def _approx_bytes(table: pa.Table) -> int:
    """The table's size for the cache budget, cheaply (a streamed table has many chunks)."""
    size = fixed_width_bytes(table)
    return table.get_total_buffer_size() if size is None else size


def manifest_schema(manifest: Manifest) -> pa.Schema:
    return _schema(tuple((c["name"], c["dtype"]) for c in manifest["schema"]))


@functools.lru_cache(maxsize=4096)
def _schema(columns: tuple[tuple[str, str], ...]) -> pa.Schema:
    return pa.schema([(name, arrow_type(dtype)) for name, dtype in columns])


def _batch_bytes(table: pa.Table) -> bytes:
    """The rows as one Arrow record batch message, without the schema."""
    batches = table.combine_chunks().to_batches()
    batch = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    return batch.serialize().to_pybytes()


def _inline_table(chunk: dict, schema: pa.Schema) -> pa.Table:
    batch = pa.ipc.read_record_batch(pa.py_buffer(base64.b64decode(chunk["inline"])), schema)
    return pa.Table.from_batches([batch], schema=schema)


def _read_ipc(data: bytes) -> pa.Table:
    with pa.ipc.open_stream(data) as reader:
        return reader.read_all()

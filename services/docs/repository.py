"""Docs storage: metadata in the key-value store (compare-and-set), content in the blob store.

A content write puts the new document under a fresh blob name first, then moves the
metadata to it by compare-and-set; the loser of a race deletes its blob. Readers therefore
see the old or the new document, never a mix, and nothing partial is ever referenced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections import OrderedDict
from typing import Any

from services.common.errors import Conflict
from services.common.stores.blob import BlobNotFound, BlobStore, Superseded
from services.common.stores.idlists import IdLists
from services.common.stores.kv import KVStore, VersionConflict

from .metacache import MetaCache
from .model import Doc

# Up to this size (de)serialising a stored document costs less than the hop to a worker
# thread and stays on the event loop (every patch writes the whole document); above it, a
# worker thread keeps the loop free: a 26 MB document is ~1.5 s of CPU to write.
INLINE_BYTES = 256 * 1024
SERIALISE_THREADS = 2

Meta = dict[str, Any]


def _title_key(owner: str, title: str) -> str:
    return f"title:{owner}:{hashlib.sha256(title.encode()).hexdigest()[:32]}"


class DocsRepository:
    def __init__(self, kv: KVStore, blobs: BlobStore, parsed_cache: int = 64,
                 meta_cache_seconds: float = 1.0) -> None:
        self.kv = kv
        self.blobs = blobs
        # parsed documents by blob name (immutable once written), most recent last
        self._parsed: OrderedDict[str, Doc] = OrderedDict()
        self._parsed_max = parsed_cache
        self._serialising = asyncio.Semaphore(SERIALISE_THREADS)
        self._cleanup: set[asyncio.Task[None]] = set()
        self._meta: dict[str, tuple[bytes, Meta]] = {}  # id -> (stored bytes, decoded)
        # the hot read's view of current metadata, kept by docs events (events.py)
        self.fresh = MetaCache(meta_cache_seconds)
        # who has which documents: ids by owner, by a user they are shared with, and the
        # documents that bind a data source
        self.owned = IdLists(kv, "docs-of:")
        self.shared = IdLists(kv, "shared-with:")
        self.binders = IdLists(kv, "source-docs:")

    # metadata
    async def get_meta(self, doc_id: str) -> tuple[Meta, int] | None:
        found = await self.kv.get(f"doc:{doc_id}")
        return (json.loads(found.value), found.version) if found else None

    async def peek_meta(self, doc_id: str) -> Meta | None:
        """The metadata for reading only (never change it): from the MetaCache when it is
        current, else from the store, decoded once per stored value."""
        if self.fresh.ttl > 0:
            hit = self.fresh.get(doc_id)
            if hit is not None:
                return hit
        found = await self.kv.get(f"doc:{doc_id}")
        if found is None:
            return None
        cached = self._meta.get(doc_id)
        if cached is not None and cached[0] == found.value:
            meta = cached[1]
        else:
            meta = json.loads(found.value)
            if len(self._meta) >= 10_000:
                self._meta.clear()
            self._meta[doc_id] = (found.value, meta)
        self.fresh.put(meta)
        return meta

    async def put_meta(self, meta: Meta, expect: int) -> int:
        value = json.dumps(meta).encode()
        version = await self.kv.put(f"doc:{meta['id']}", value, expect=expect)
        # a private copy: the caller goes on using (and may change) its meta
        self.fresh.put(json.loads(value))
        return version

    async def _cpu(self, fn: Any, *args: Any) -> Any:
        """A large document's (de)serialisation, in a worker thread (see INLINE_BYTES)."""
        async with self._serialising:
            return await asyncio.to_thread(fn, *args)

    # content
    async def load_doc(self, meta: Meta) -> Doc:
        """The stored document (shared, read-only: copy() before changing it)."""
        doc = await self.load_for_reading(meta, raw_above=None)
        assert isinstance(doc, Doc)
        return doc

    async def load_for_reading(self, meta: Meta, raw_above: int | None) -> Doc | bytes:
        """As load_doc; but a document not parsed here yet whose stored form is over
        `raw_above` bytes comes back as those bytes (docs renders it in a worker process
        rather than build its model tree here)."""
        name = meta["blob"]
        doc = self._parsed.get(name)
        if doc is not None:
            self._parsed.move_to_end(name)
            return doc
        try:
            data = await self.blobs.get(name)
        except BlobNotFound:
            if await self.replaced(meta):
                raise Superseded("the document") from None
            raise
        if raw_above is not None and len(data) > raw_above:
            return data
        doc = await self._cpu(Doc.from_store, data) if len(data) > INLINE_BYTES \
            else Doc.from_store(data)
        doc.size_hint = len(data)
        self._parsed[name] = doc
        if len(self._parsed) > self._parsed_max:
            self._parsed.popitem(last=False)
        return doc

    async def replaced(self, meta: Meta) -> bool:
        """Whether the store's metadata no longer names meta's content (a write replaced
        it, or the document is gone); the MetaCache entry is dropped either way."""
        self.fresh.forget(meta["id"])
        now = await self.get_meta(meta["id"])
        return now is None or now[0]["blob"] != meta["blob"]

    async def write_doc(self, doc_id: str, version: int, doc: Doc) -> str:
        name = f"docs/{doc_id}/v{version}-{secrets.token_hex(4)}.json"
        # a document of unknown size (just parsed) or a large one is serialised off the loop
        small = 0 < doc.size_hint <= INLINE_BYTES
        data = doc.to_store() if small else await self._cpu(doc.to_store)
        doc.size_hint = len(data)
        await self.blobs.put(name, data)
        if isinstance(doc, Doc):  # (a worker's Prepared document is parsed when first read)
            self._parsed[name] = doc
        return name

    async def drop_blob(self, name: str) -> None:
        self._parsed.pop(name, None)
        try:
            await self.blobs.delete(name)
        except BlobNotFound:
            pass

    async def commit(self, meta: Meta, kv_version: int, doc: Doc | None) -> int:
        """Store meta (and the new content, if any) atomically against `kv_version`.

        Raises VersionConflict when someone else wrote first; nothing is then changed."""
        old_blob = None
        if doc is not None:
            old_blob = meta.get("blob")
            meta["blob"] = await self.write_doc(meta["id"], meta["version"], doc)
        try:
            new_kv = await self.put_meta(meta, kv_version)
        except VersionConflict:
            if doc is not None:
                await self.drop_blob(meta["blob"])
            raise
        if old_blob and old_blob != meta["blob"]:
            # nobody refers to it any more: delete it after answering, not before
            task = asyncio.get_running_loop().create_task(self.drop_blob(old_blob))
            self._cleanup.add(task)
            task.add_done_callback(self._cleanup.discard)
        return new_kv

    # titles are unique per owner: an index key created with expect=0
    async def reserve_title(self, owner: str, title: str, doc_id: str) -> None:
        try:
            await self.kv.put(_title_key(owner, title), doc_id.encode(), expect=0)
        except VersionConflict as exc:
            raise Conflict(f"you already have a document titled {title!r}",
                           code="title_taken") from exc

    async def release_title(self, owner: str, title: str, doc_id: str) -> None:
        found = await self.kv.get(_title_key(owner, title))
        if found and found.value.decode() == doc_id:
            await self.kv.delete(_title_key(owner, title), expect=found.version)

    async def delete_meta(self, meta: Meta, kv_version: int) -> None:
        await self.kv.delete(f"doc:{meta['id']}", expect=kv_version)
        self.fresh.announced(meta["id"], None, deleted=True)
        await self.drop_blob(meta["blob"])

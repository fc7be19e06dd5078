"""What this replica knows to be a document's current metadata, for the hot read only.

`GET /api/v1/docs/{id}` needs the document's version and access fields before it can hand
out the cached answer; asking the store for them costs more than the rest of the read (a
SQLite transaction, or a Redis round trip in production). Every write is followed by a docs
event carrying the new version (`seq`), which every replica receives, so a replica can keep
the metadata it last read and drop it as soon as an event says it is old:

- this replica's own writes replace the entry at once (read-your-writes on one replica);
- another replica's write is seen when its event arrives (typically well under 1 ms after
  the writer answered), and `ttl` bounds the staleness if an event is ever lost;
- a version older than the newest event seen, or than the entry held, is never cached, so
  a slow store read racing a write cannot bring an old entry back.

Writes never use this: they read the store and commit by compare-and-set.
"""

from __future__ import annotations

import time
from typing import Any

Meta = dict[str, Any]
GONE = 1 << 62  # the floor of a deleted document: nothing may be cached for it again


class MetaCache:
    def __init__(self, ttl: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Meta]] = {}  # id -> (fetched at, meta)
        self._floors: dict[str, int] = {}  # id -> newest version announced by an event

    def get(self, doc_id: str) -> Meta | None:
        hit = self._entries.get(doc_id)
        if hit is None:
            return None
        if time.monotonic() - hit[0] > self.ttl:
            del self._entries[doc_id]
            return None
        return hit[1]

    def put(self, meta: Meta) -> None:
        """Remember meta just read from or written to the store (never change it after)."""
        doc_id, version = meta["id"], meta["version"]
        if version < self._floors.get(doc_id, 0):
            return
        hit = self._entries.get(doc_id)
        if hit is not None and hit[1]["version"] > version:  # a slower read of older state
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare, and only costs store reads until warm again
        self._entries[doc_id] = (time.monotonic(), meta)

    def announced(self, doc_id: str, version: int | None, deleted: bool = False) -> None:
        """A docs event said doc_id is now at `version` (or gone)."""
        if version is None and not deleted:  # no version to compare: just drop the entry
            self._entries.pop(doc_id, None)
            return
        floor = GONE if deleted else version
        if floor > self._floors.get(doc_id, 0):
            if len(self._floors) >= self.max_entries:
                self._floors.clear()
            self._floors[doc_id] = floor
        hit = self._entries.get(doc_id)
        if hit is not None and hit[1]["version"] < floor:
            del self._entries[doc_id]

    def forget(self, doc_id: str) -> None:
        self._entries.pop(doc_id, None)

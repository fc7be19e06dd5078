"""In-process key-value store for tests and single-process embedded runs.

No lock is needed: every method finishes without awaiting, so on one event loop each
compare-and-set is atomic.
"""

from __future__ import annotations

import time

from services.common.stores.kv import Versioned, check_expect


class MemoryKV:
    def __init__(self) -> None:
        # key -> (value, version, monotonic expiry or None)
        self._data: dict[str, tuple[bytes, int, float | None]] = {}

    def _live(self, key: str) -> tuple[bytes, int, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[2] is not None and entry[2] <= time.monotonic():
            del self._data[key]
            return None
        return entry

    async def get(self, key: str) -> Versioned | None:
        entry = self._live(key)
        return None if entry is None else Versioned(entry[0], entry[1])

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, ttl: float | None = None
    ) -> int:
        entry = self._live(key)
        current = 0 if entry is None else entry[1]
        check_expect(current, expect)
        expires = None if ttl is None else time.monotonic() + ttl
        self._data[key] = (bytes(value), current + 1, expires)
        return current + 1

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        entry = self._live(key)
        check_expect(0 if entry is None else entry[1], expect)
        return self._data.pop(key, None) is not None

    async def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in list(self._data) if k.startswith(prefix) and self._live(k))

    async def close(self) -> None:
        self._data.clear()

"""Versioned key-value store: the protocol every service codes against, and its factory.

Every key carries a version so that writers can compare-and-set instead of locking; this is
what lets several replicas of a service share one store safely.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from services.common.errors import Conflict, Unavailable


class VersionConflict(Conflict):
    """Compare-and-set failed: the key's version is not the expected one.

    Writers retry or say what the conflict means (a taken name, a stale If-Match); one that
    reaches a route anyway is a 409, not a 500."""

    code = "version_conflict"


class StoreUnavailable(Unavailable):
    """The store did not answer (in time): a 503 with Retry-After, never a 500; nothing
    was written (or, for a timed-out write, the caller's compare-and-set tells later)."""


class Versioned(NamedTuple):
    value: bytes
    version: int


class KVStore(Protocol):
    async def get(self, key: str) -> Versioned | None:
        """The live value and its version, or None when absent or expired."""
        ...

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, ttl: float | None = None
    ) -> int:
        """Write; returns the new version (1 for a new key, then +1 each write).

        expect=None: unconditional. expect=0: only if the key does not exist. expect=n: only
        if the current version is n. Otherwise raise VersionConflict. ttl (seconds) makes the
        key expire (expired keys behave as absent; a re-created key starts again at version 1);
        a write without ttl makes the key permanent again, as Redis SET does.
        """
        ...

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        """True if the key existed; VersionConflict if expect is given and does not match."""
        ...

    async def keys(self, prefix: str = "") -> list[str]:
        """Live keys starting with prefix, sorted."""
        ...

    async def close(self) -> None: ...


def check_expect(current: int, expect: int | None) -> None:
    """Shared CAS rule for the backends that check in Python (current 0 = absent)."""
    if expect is not None and current != expect:
        raise VersionConflict(f"expected version {expect}, found {current}")


def open_kv(url: str) -> KVStore:
    """Open a store by URL: memory://, sqlite:///abs/path.db, redis://host:port/db?prefix=ns:."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from services.common.stores.kv_memory import MemoryKV

        return MemoryKV()
    if scheme == "sqlite":
        from services.common.stores.kv_sqlite import SqliteKV

        return SqliteKV.from_url(url)
    if scheme in ("redis", "rediss", "unix"):
        from services.common.stores.kv_redis import RedisKV

        return RedisKV.from_url(url)
    raise ValueError(f"unsupported key-value store URL {url!r} (memory://, sqlite:, redis://)")

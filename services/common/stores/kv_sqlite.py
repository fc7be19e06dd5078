"""SQLite key-value store: the embedded mode's durable store, one file per service.

One aiosqlite connection in WAL mode. Tasks share that connection, so an asyncio lock keeps
their transactions from interleaving; BEGIN IMMEDIATE (with the busy timeout) guards against
other processes opening the same file. Expiry uses wall-clock time because it must survive
a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiosqlite

from services.common.stores.kv import Versioned, check_expect

_SCHEMA = """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires REAL NULL
)"""
_LIVE = "(expires IS NULL OR expires > ?)"


class SqliteKV:
    def __init__(self, path: str) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteKV:
        """sqlite:///abs/path.db or sqlite:relative/path.db."""
        path = urlsplit(url).path
        if not path:
            raise ValueError(f"sqlite URL without a path: {url!r}")
        return cls(path)

    async def _conn(self) -> aiosqlite.Connection:
        # Opened on first use because the factory is synchronous.
        if self._db is None:
            db = await aiosqlite.connect(self._path, isolation_level=None, timeout=10)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(_SCHEMA)
            # Expired rows are invisible; purge the leftovers of earlier runs once per open.
            await db.execute("DELETE FROM kv WHERE expires <= ?", (time.time(),))
            self._db = db
        return self._db

    async def _current(self, db: aiosqlite.Connection, key: str) -> int:
        sql = f"SELECT version FROM kv WHERE key = ? AND {_LIVE}"
        async with db.execute(sql, (key, time.time())) as cur:
            row = await cur.fetchone()
        return 0 if row is None else row[0]

    async def get(self, key: str) -> Versioned | None:
        async with self._lock:
            db = await self._conn()
            sql = f"SELECT value, version FROM kv WHERE key = ? AND {_LIVE}"
            async with db.execute(sql, (key, time.time())) as cur:
                row = await cur.fetchone()
        return None if row is None else Versioned(bytes(row[0]), row[1])

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Lock, BEGIN IMMEDIATE, COMMIT; roll back on any error or cancellation."""
        async with self._lock:
            db = await self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, ttl: float | None = None
    ) -> int:
        async with self._transaction() as db:
            version = await self._current(db, key)
            check_expect(version, expect)
            expires = None if ttl is None else time.time() + ttl
            await db.execute(
                "INSERT OR REPLACE INTO kv (key, value, version, expires) VALUES (?, ?, ?, ?)",
                (key, bytes(value), version + 1, expires),
            )
        return version + 1

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        async with self._transaction() as db:
            version = await self._current(db, key)
            check_expect(version, expect)
            # Also drops an expired row, which is invisible anyway.
            await db.execute("DELETE FROM kv WHERE key = ?", (key,))
        return version > 0

    async def keys(self, prefix: str = "") -> list[str]:
        async with self._lock:
            db = await self._conn()
            sql = f"SELECT key FROM kv WHERE substr(key, 1, ?) = ? AND {_LIVE} ORDER BY key"
            async with db.execute(sql, (len(prefix), prefix, time.time())) as cur:
                rows = await cur.fetchall()
        return [row[0] for row in rows]

    async def close(self) -> None:
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

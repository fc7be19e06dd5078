"""SQLite key-value store: the embedded mode's durable store, one file per service.

WAL mode, synchronous=NORMAL, and every call runs right on the event loop. A point read or
a one-row write transaction takes tens of microseconds, while a hop to a worker thread
costs milliseconds whenever the loop is busy (the thread waits for the GIL), which is
exactly when latency matters. Each write is one whole transaction (BEGIN IMMEDIATE ...
COMMIT); the busy timeout guards against another process on the same file, which the
embedded mode does not do. A committed write survives the process being killed (the WAL is
in the OS), not a power cut in the next instant. Expiry uses wall-clock time because it
must survive a restart.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any
from urllib.parse import urlsplit

from services.common.stores.kv import Versioned, check_expect

_SCHEMA = """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires REAL NULL
)"""
_LIVE = "(expires IS NULL OR expires > ?)"


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class SqliteKV:
    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteKV:
        """sqlite:///abs/path.db or sqlite:relative/path.db."""
        path = urlsplit(url).path
        if not path:
            raise ValueError(f"sqlite URL without a path: {url!r}")
        return cls(path)

    def _conn(self) -> sqlite3.Connection:
        # Opened on first use because the factory is synchronous.
        if self._db is None:
            db = _connect(self._path)
            db.execute(_SCHEMA)
            # Expired rows are invisible; purge the leftovers of earlier runs once per open.
            db.execute("DELETE FROM kv WHERE expires <= ?", (time.time(),))
            self._db = db
        return self._db

    def _write(self, fn: Any) -> Any:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    @staticmethod
    def _current(db: sqlite3.Connection, key: str) -> int:
        row = db.execute(f"SELECT version FROM kv WHERE key = ? AND {_LIVE}",
                         (key, time.time())).fetchone()
        return 0 if row is None else row[0]

    async def get(self, key: str) -> Versioned | None:
        row = self._conn().execute(f"SELECT value, version FROM kv WHERE key = ? AND {_LIVE}",
                                   (key, time.time())).fetchone()
        return None if row is None else Versioned(bytes(row[0]), row[1])

    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, ttl: float | None = None
    ) -> int:
        def put(db: sqlite3.Connection) -> int:
            version = self._current(db, key)
            check_expect(version, expect)
            expires = None if ttl is None else time.time() + ttl
            db.execute(
                "INSERT OR REPLACE INTO kv (key, value, version, expires) VALUES (?, ?, ?, ?)",
                (key, bytes(value), version + 1, expires),
            )
            return version + 1

        return self._write(put)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            version = self._current(db, key)
            check_expect(version, expect)
            # Also drops an expired row, which is invisible anyway.
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
            return version > 0

        return self._write(delete)

    async def keys(self, prefix: str = "") -> list[str]:
        sql = f"SELECT key FROM kv WHERE substr(key, 1, ?) = ? AND {_LIVE} ORDER BY key"
        rows = self._conn().execute(sql, (len(prefix), prefix, time.time())).fetchall()
        return [row[0] for row in rows]

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

"""SQLite key-value store: the embedded mode's durable store, one file per service.

WAL mode. Reads run on the event loop with their own connection: a WAL reader never waits
for the writer and a point lookup takes microseconds, far less than a hop to a thread.
Writes run one at a time on a single writer thread, each write one whole transaction
(BEGIN IMMEDIATE ... COMMIT) in one hop; BEGIN IMMEDIATE with the busy timeout guards
against other processes on the same file. synchronous=NORMAL: a committed write survives
the process being killed (the WAL is in the OS), not a power cut in the next instant.
Expiry uses wall-clock time because it must survive a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
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
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-kv")

    @classmethod
    def from_url(cls, url: str) -> SqliteKV:
        """sqlite:///abs/path.db or sqlite:relative/path.db."""
        path = urlsplit(url).path
        if not path:
            raise ValueError(f"sqlite URL without a path: {url!r}")
        return cls(path)

    def _open(self) -> sqlite3.Connection:
        # Opened on first use (in the writer thread) because the factory is synchronous.
        if self._writer is None:
            db = _connect(self._path)
            db.execute(_SCHEMA)
            # Expired rows are invisible; purge the leftovers of earlier runs once per open.
            db.execute("DELETE FROM kv WHERE expires <= ?", (time.time(),))
            self._writer = db
        return self._writer

    async def _write(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            if self._writer is None:  # make sure the schema exists before the first read
                self._thread.submit(self._open).result()
            self._reader = _connect(self._path)
        return self._reader

    @staticmethod
    def _current(db: sqlite3.Connection, key: str) -> int:
        row = db.execute(f"SELECT version FROM kv WHERE key = ? AND {_LIVE}",
                         (key, time.time())).fetchone()
        return 0 if row is None else row[0]

    async def get(self, key: str) -> Versioned | None:
        row = self._read().execute(f"SELECT value, version FROM kv WHERE key = ? AND {_LIVE}",
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

        return await self._write(put)

    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            version = self._current(db, key)
            check_expect(version, expect)
            # Also drops an expired row, which is invisible anyway.
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
            return version > 0

        return await self._write(delete)

    async def keys(self, prefix: str = "") -> list[str]:
        sql = f"SELECT key FROM kv WHERE substr(key, 1, ?) = ? AND {_LIVE} ORDER BY key"
        rows = self._read().execute(sql, (len(prefix), prefix, time.time())).fetchall()
        return [row[0] for row in rows]

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, writer.close)
        self._thread.shutdown(wait=False)

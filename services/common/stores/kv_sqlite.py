"""SQLite key-value store: the embedded mode's durable store, one file per service.

WAL mode, synchronous=NORMAL, and every call runs right on the event loop. A point read or
a one-row write transaction takes tens of microseconds, while a hop to a worker thread
costs milliseconds whenever the loop is busy (the thread waits for the GIL), which is
exactly when latency matters. Each write is one transaction: a put is a single statement,
a delete BEGIN IMMEDIATE ... COMMIT; the busy timeout guards against another process on the
same file, which the embedded mode does not do. A committed write survives the process
being killed (the WAL is in the OS), not a power cut in the next instant. Expiry uses
wall-clock time because it must survive a restart.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from services.common.stores.kv import VersionConflict, Versioned, check_expect

_SCHEMA = """CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires REAL NULL
)"""
log = logging.getLogger("plotline.stores")
_LIVE = "(expires IS NULL OR expires > ?)"


# The WAL is copied back into the database by a thread of our own (Checkpointer), not by
# the write that happens to fill it: that write would hold the event loop for the whole
# checkpoint (tens of ms, with an fsync) while every other request waits. The automatic
# checkpoint stays as a backstop, far above what the thread lets the WAL reach.
CHECKPOINT_SECONDS = 0.5
BACKSTOP_PAGES = 20_000  # ~80 MB of WAL


# A store file holds secrets (auth's signing keys and password hashes): owner-only,
# whatever the umask. SQLite gives the -wal and -shm files the database file's mode; they
# are chmod-ed as well in case they were left by an older run.
FILE_MODE = 0o600


def _make_private(path: str) -> None:
    if path == ":memory:" or path.startswith("file:"):
        return
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE))  # create before SQLite does
    for name in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(name):
            os.chmod(name, FILE_MODE)


def _connect(path: str) -> sqlite3.Connection:
    _make_private(path)
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    return db


class Checkpointer:
    """A thread that checkpoints the WAL every CHECKPOINT_SECONDS on its own connection.

    PASSIVE: it copies what it can without waiting for (or blocking) the loop's reads and
    writes; sqlite3 releases the GIL while it works, so the loop goes on meanwhile."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, timeout=10)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy: the next round (or the backstop) does it
                    log.warning("checkpoint of %s failed: %s", self._path, exc)
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class SqliteKV:
    def __init__(self, path: str) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None

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
            self._checkpointer = Checkpointer(self._path)
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
        # One statement, so one implicit transaction: a data append's commit is this, and
        # BEGIN / SELECT / INSERT OR REPLACE / COMMIT cost ~5x as much (the replace also
        # rewrites the row's overflow pages, which a manifest of ~16 KB has).
        now = time.time()
        expires = None if ttl is None else now + ttl
        db = self._conn()
        if expect is None:  # an expired row counts as absent: it starts again at 1
            row = db.execute(
                "INSERT INTO kv (key, value, version, expires) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                f"expires = excluded.expires, version = CASE WHEN {_LIVE} "
                "THEN version + 1 ELSE 1 END RETURNING version",
                (key, bytes(value), expires, now)).fetchone()
            return row[0]
        if expect == 0:  # create, or take the place of an expired row
            cursor = db.execute(
                "INSERT INTO kv (key, value, version, expires) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = 1, "
                f"expires = excluded.expires WHERE NOT {_LIVE}",
                (key, bytes(value), expires, now))
        else:
            cursor = db.execute(
                "UPDATE kv SET value = ?, version = version + 1, expires = ? "
                f"WHERE key = ? AND version = ? AND {_LIVE}",
                (bytes(value), expires, key, expect, now))
        if cursor.rowcount != 1:
            check_expect(self._current(db, key), expect)
            raise VersionConflict(f"expected version {expect}")  # changed in between
        return expect + 1

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
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None

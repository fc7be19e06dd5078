"""The outbox: events whose write committed while NATS could not take them.

Kept in the service's own key-value store (Redis in production, SQLite embedded), so a
queued event outlives both the NATS outage and this process: the bus publishes the
entries in key order once NATS answers again, and any replica (or the next start) drains
what a dead one left. Keys sort by enqueue time, then by this process's own counter, so
one replica's events reach the stream in the order they were written; the stream's
`Nats-Msg-Id` deduplication (and every consumer's `seq` check) absorbs an entry that two
replicas both publish.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from typing import NamedTuple

from .stores.kv import KVStore

PREFIX = "outbox:"


class Entry(NamedTuple):
    key: str
    subject: str
    msg_id: str
    payload: bytes


class Outbox:
    def __init__(self, kv: KVStore | None = None) -> None:
        # without a store (push, which writes nothing) entries live only in this process
        from .stores.kv_memory import MemoryKV

        self._kv: KVStore = kv if kv is not None else MemoryKV()
        self._token = secrets.token_hex(4)
        self._counter = itertools.count()
        self._mine: dict[str, Entry] = {}  # this process's entries: read without the store

    async def put(self, subject: str, msg_id: str, payload: bytes) -> None:
        key = f"{PREFIX}{time.time_ns():020d}:{self._token}:{next(self._counter):012d}"
        value = json.dumps({"subject": subject, "id": msg_id, "payload": payload.decode()})
        await self._kv.put(key, value.encode())
        self._mine[key] = Entry(key, subject, msg_id, payload)

    async def keys(self) -> list[str]:
        return await self._kv.keys(PREFIX)

    async def get(self, key: str) -> Entry | None:
        if key in self._mine:
            return self._mine[key]
        found = await self._kv.get(key)
        if found is None:  # another replica published it meanwhile
            return None
        value = json.loads(found.value)
        return Entry(key, value["subject"], value["id"], value["payload"].encode())

    async def remove(self, key: str) -> None:
        await self._kv.delete(key)
        self._mine.pop(key, None)

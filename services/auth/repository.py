"""Auth's storage: users, API keys, login throttling and verification tokens in its KV store."""

from __future__ import annotations

import json
from typing import Any

from services.common.errors import Conflict
from services.common.stores.idlists import IdLists
from services.common.stores.kv import KVStore, VersionConflict


def _user(name: str) -> str:
    return f"user:{name}"


def _key(key_id: str) -> str:
    return f"apikey:{key_id}"


class AuthRepository:
    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        self._key_ids = IdLists(kv, "apikeys-of:")  # a user's API keys

    async def _get_json(self, key: str) -> tuple[dict[str, Any] | list[Any], int] | None:
        found = await self.kv.get(key)
        return (json.loads(found.value), found.version) if found else None

    async def _put_json(self, key: str, value: Any, *, expect: int | None = None,
                        ttl: float | None = None) -> int:
        return await self.kv.put(key, json.dumps(value).encode(), expect=expect, ttl=ttl)

    # users
    async def get_user(self, name: str) -> tuple[dict[str, Any], int] | None:
        return await self._get_json(_user(name))  # type: ignore[return-value]

    async def create_user(self, record: dict[str, Any]) -> None:
        try:
            await self._put_json(_user(record["username"]), record, expect=0)
        except VersionConflict as exc:
            raise Conflict("username already taken", code="username_taken") from exc

    async def save_user(self, record: dict[str, Any], version: int) -> None:
        await self._put_json(_user(record["username"]), record, expect=version)

    # API keys: the record by id, plus a per-user index kept by compare-and-set
    async def add_key(self, record: dict[str, Any]) -> None:
        await self._put_json(_key(record["id"]), record, expect=0)
        await self._key_ids.update(record["username"], add=[record["id"]])

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        found = await self._get_json(_key(key_id))
        return found[0] if found else None  # type: ignore[return-value]

    async def keys_of(self, name: str) -> list[dict[str, Any]]:
        records = [await self.get_key(k) for k in await self._key_ids.ids(name)]
        return [r for r in records if r is not None]

    async def delete_key(self, record: dict[str, Any]) -> None:
        await self.kv.delete(_key(record["id"]))
        await self._key_ids.update(record["username"], remove=[record["id"]])

    # login throttling, shared by every replica through the store. Keys are counters named
    # by the caller (per username+address, per address); each failure restarts the window.
    async def failures(self, key: str) -> int:
        found = await self.kv.get(f"throttle:{key}")
        return int(found.value) if found else 0

    async def record_failure(self, key: str, window_s: float) -> int:
        while True:
            found = await self.kv.get(f"throttle:{key}")
            count = int(found.value) + 1 if found else 1
            try:
                # a lockout lasts window_s after the last failed try
                await self.kv.put(f"throttle:{key}", str(count).encode(),
                                  expect=found.version if found else 0, ttl=window_s)
                return count
            except VersionConflict:
                continue

    async def clear_failures(self, key: str) -> None:
        await self.kv.delete(f"throttle:{key}")

    # login sessions (a JWT's `sid`): present while the login stands; the TTL is the token's
    async def put_session(self, sid: str, name: str, ttl_s: float) -> None:
        await self.kv.put(f"session:{sid}", name.encode(), ttl=ttl_s)

    async def session_user(self, sid: str) -> str | None:
        found = await self.kv.get(f"session:{sid}")
        return found.value.decode() if found else None

    async def end_session(self, sid: str) -> None:
        await self.kv.delete(f"session:{sid}")

    # email verification tokens
    async def put_verification(self, token_digest: str, name: str, ttl_s: float) -> None:
        await self.kv.put(f"verify:{token_digest}", name.encode(), ttl=ttl_s)

    async def pop_verification(self, token_digest: str) -> str | None:
        found = await self.kv.get(f"verify:{token_digest}")
        if found is None:
            return None
        await self.kv.delete(f"verify:{token_digest}")
        return found.value.decode()

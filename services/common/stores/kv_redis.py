"""Redis key-value store: the production store, shared by all replicas of a service.

Each key is a hash {v: value, n: version}; Lua scripts make compare-and-set atomic on the
server, and PEXPIRE gives the TTL (so Redis itself forgets expired keys, and a re-created key
starts again at version 1). An optional ?prefix= namespaces the keys so that services (and
tests) can share one Redis database.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from services.common.stores.kv import StoreUnavailable, VersionConflict, Versioned

# ARGV: value, expect ('' = unconditional), ttl in ms ('' = none). Returns new version or -1.
_PUT = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= cur then return {-1, cur} end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'n', cur + 1)
if ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
return {cur + 1, cur}
"""
# ARGV: expect ('' = unconditional). Returns {deleted 0|1, or -1 on conflict, current}.
_DELETE = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return {-1, cur} end
return {redis.call('DEL', KEYS[1]), cur}
"""


# Bounded: a Redis that is away answers 503 within seconds (two quick retries, each
# connect or read at most TIMEOUT_S), not a request that hangs for redis-py's defaults.
TIMEOUT_S = 2.0
T = TypeVar("T")


def _reachable(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Redis away (refused, reset, timed out, loading its AOF: BusyLoadingError is a
    ConnectionError) is StoreUnavailable."""

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"the store (Redis) is not reachable: "
                                   f"{type(exc).__name__}") from exc

    return call


def _opt(value: int | float | None) -> str:
    return "" if value is None else str(value)


class RedisKV:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self._r = client
        self._prefix = prefix
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)

    @classmethod
    def from_url(cls, url: str) -> RedisKV:
        """redis://host:port/db?prefix=ns: — prefix is ours, the rest goes to redis-py."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = "".join(v for k, v in query if k == "prefix")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        client = redis.Redis.from_url(urlunsplit(parts._replace(query=rest)),
                                      socket_timeout=TIMEOUT_S,
                                      socket_connect_timeout=TIMEOUT_S,
                                      retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2))
        return cls(client, prefix)

    @_reachable
    async def get(self, key: str) -> Versioned | None:
        value, version = await self._r.hmget(self._prefix + key, ["v", "n"])
        return None if version is None else Versioned(value, int(version))

    @_reachable
    async def put(
        self, key: str, value: bytes, *, expect: int | None = None, ttl: float | None = None
    ) -> int:
        ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
        version, current = await self._put(
            keys=[self._prefix + key], args=[bytes(value), _opt(expect), _opt(ttl_ms)]
        )
        if version < 0:
            raise VersionConflict(f"expected version {expect}, found {current}")
        return int(version)

    @_reachable
    async def delete(self, key: str, *, expect: int | None = None) -> bool:
        deleted, current = await self._delete(keys=[self._prefix + key], args=[_opt(expect)])
        if deleted < 0:
            raise VersionConflict(f"expected version {expect}, found {current}")
        return deleted == 1

    @_reachable
    async def keys(self, prefix: str = "") -> list[str]:
        # SCAN MATCH is a glob: escape the literal part so '*' or '[' in a key stay literal.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._prefix + prefix) + "*"
        cut = len(self._prefix)
        found = {k.decode()[cut:] async for k in self._r.scan_iter(match=pattern, count=1000)}
        return sorted(found)

    async def close(self) -> None:
        await self._r.aclose()

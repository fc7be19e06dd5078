"""JWT verification for every service: RS256 pinned, JWKS cached, refetched on an unknown kid.

RS256 rather than EdDSA: RSA signature *checks* are several times cheaper than Ed25519 ones
on these CPUs, and every request of every service pays for a check, while only login signs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import RSAAlgorithm

from .errors import Unauthorized

ALGORITHM = "RS256"
# After a refetch that did not find a kid, wait this long before refetching again, so
# random kids cannot make us hammer auth (a fresh rotation is still picked up at once).
REFETCH_INTERVAL = 1.0

JWKSFetcher = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Claims:
    sub: str
    exp: int
    raw: dict[str, Any]


class JWKSCache:
    """Public keys by kid, fetched from auth (HTTP or NATS) and refreshed on demand."""

    def __init__(self, fetch: JWKSFetcher) -> None:
        self._fetch = fetch
        self._keys: dict[str, Any] = {}
        self._last_miss = -REFETCH_INTERVAL
        self._lock = asyncio.Lock()

    def known(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    def load(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA" and jwk.get("kid"):
                keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
        self._keys = keys

    async def get(self, kid: str) -> Any | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            if time.monotonic() - self._last_miss < REFETCH_INTERVAL:
                return None
            try:
                self.load(await self._fetch())
            except Exception as exc:  # auth unreachable: the token cannot be checked
                self._last_miss = time.monotonic()
                raise Unauthorized("cannot verify token: key set unavailable") from exc
            if kid not in self._keys:
                self._last_miss = time.monotonic()
            return self._keys.get(kid)


class TokenVerifier:
    """Checks signature, `exp`, `aud`, `iss` and `sub`; the header's `alg` must be RS256."""

    def __init__(self, jwks: JWKSCache, *, issuer: str, audience: str) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self._decoder = jwt.PyJWT()

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token", code="invalid_token") from exc
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("token algorithm not accepted", code="invalid_token")
        if not isinstance(header.get("kid"), str):
            raise Unauthorized("token has no key id", code="invalid_token")
        return header

    def _decode(self, token: str, key: Any) -> Claims:
        try:
            payload = self._decoder.decode(
                token, key, algorithms=[ALGORITHM], audience=self.audience,
                issuer=self.issuer, options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}", code="invalid_token") from exc
        return Claims(sub=str(payload["sub"]), exp=int(payload["exp"]), raw=payload)

    async def verify(self, token: str) -> Claims:
        header = self._header(token)
        key = await self.jwks.get(header["kid"])
        if key is None:
            raise Unauthorized("token signed by an unknown key", code="invalid_token")
        return self._decode(token, key)

    def verify_known(self, token: str) -> Claims:
        """Synchronous check against keys already cached (hot path, and the benchmark)."""
        header = self._header(token)
        key = self.jwks.known(header["kid"])
        if key is None:
            raise Unauthorized("token signed by an unknown key", code="invalid_token")
        return self._decode(token, key)

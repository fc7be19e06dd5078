"""JWT verification for every service: RS256 pinned, JWKS cached, refetched on an unknown kid.

RS256 rather than EdDSA: RSA signature *checks* are several times cheaper than Ed25519 ones
on these CPUs, and every request of every service pays for a check, while only login signs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
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

# Verified tokens remembered per process. A client reuses its token for every request until
# it expires, and a full RS256 check costs ~100-150 µs here (mostly PyJWT's parsing), so the
# second request with the same exact bytes only rechecks `exp`. Entries go when the key
# that signed them leaves the JWKS; invalid tokens are never cached.
VERIFIED_CACHE_SIZE = 50_000

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
        self.on_keys_removed: Callable[[], None] | None = None
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
        removed = set(self._keys) - set(keys)
        self._keys = keys
        if removed and self.on_keys_removed:
            self.on_keys_removed()

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

    def __init__(self, jwks: JWKSCache, *, issuer: str, audience: str,
                 remember: bool = True) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self._decoder = jwt.PyJWT()
        self._verified: dict[str, Claims] = {}
        self._remember = remember
        jwks.on_keys_removed = self._verified.clear

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        """Only to pick the key by `kid` and refuse other algorithms early; PyJWT then
        parses and checks the whole token (its own header parse costs ~40 µs more)."""
        try:
            segment = token.split(".", 1)[0]
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error) as exc:
            raise Unauthorized("malformed token", code="invalid_token") from exc
        if not isinstance(header, dict) or token.count(".") != 2:
            raise Unauthorized("malformed token", code="invalid_token")
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
        claims = Claims(sub=str(payload["sub"]), exp=int(payload["exp"]), raw=payload)
        if self._remember:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]  # oldest first
            self._verified[token] = claims
        return claims

    def _remembered(self, token: str) -> Claims | None:
        claims = self._verified.get(token)
        if claims is not None and claims.exp <= time.time():
            del self._verified[token]
            raise Unauthorized("token expired", code="token_expired")
        return claims

    async def verify(self, token: str) -> Claims:
        if (claims := self._remembered(token)) is not None:
            return claims
        header = self._header(token)
        key = await self.jwks.get(header["kid"])
        if key is None:
            raise Unauthorized("token signed by an unknown key", code="invalid_token")
        return self._decode(token, key)

    def verify_known(self, token: str) -> Claims:
        """Synchronous check against keys already cached (hot path, and the benchmark)."""
        if (claims := self._remembered(token)) is not None:
            return claims
        header = self._header(token)
        key = self.jwks.known(header["kid"])
        if key is None:
            raise Unauthorized("token signed by an unknown key", code="invalid_token")
        return self._decode(token, key)

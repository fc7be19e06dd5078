"""JWT signing keys: RS256, rotated on a schedule, kept in the JWKS until their tokens expire.

The ring lives in auth's store under one key and is changed by compare-and-set, so several
auth replicas agree on the current key without talking to each other.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.common.stores.kv import KVStore, VersionConflict
from services.common.tokens import ALGORITHM

from .security import new_id

RING_KEY = "signing-keys"
CLOCK_SKEW = 60  # seconds a retired key is kept beyond the last token it signed


class KeyRing:
    def __init__(self, kv: KVStore, *, rotation_s: int, token_ttl_s: int) -> None:
        self.kv = kv
        self.rotation_s = rotation_s
        self.token_ttl_s = token_ttl_s
        self._keys: list[dict[str, Any]] = []
        self._signer: tuple[str, Any] | None = None

    async def _load(self) -> tuple[list[dict[str, Any]], int]:
        found = await self.kv.get(RING_KEY)
        return (json.loads(found.value), found.version) if found else ([], 0)

    def _live(self, keys: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        horizon = self.token_ttl_s + CLOCK_SKEW
        return [k for k in keys if k.get("retired") is None or now - k["retired"] < horizon]

    async def refresh(self, *, force_rotate: bool = False) -> bool:
        """Load the ring; add a key when none is current or the current one is due. True if
        this call rotated."""
        while True:
            keys, version = await self._load()
            now = time.time()
            current = keys[-1] if keys else None
            due = current is None or force_rotate or now - current["created"] >= self.rotation_s
            if not due:
                self._use(keys)
                return False
            if current is not None:
                current["retired"] = now
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode()
            keys = self._live(keys, now) + [{"kid": new_id(), "created": now,
                                             "retired": None, "pem": pem}]
            try:
                await self.kv.put(RING_KEY, json.dumps(keys).encode(), expect=version)
            except VersionConflict:
                continue  # another replica rotated first: take its ring
            self._use(keys)
            return True

    def _use(self, keys: list[dict[str, Any]]) -> None:
        self._keys = keys
        newest = keys[-1]
        if self._signer is None or self._signer[0] != newest["kid"]:
            self._signer = (newest["kid"], serialization.load_pem_private_key(
                newest["pem"].encode(), password=None))

    @property
    def current_kid(self) -> str:
        assert self._signer is not None, "refresh() first"
        return self._signer[0]

    def sign(self, claims: dict[str, Any]) -> str:
        assert self._signer is not None, "refresh() first"
        kid, key = self._signer
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    async def jwks(self) -> dict[str, Any]:
        """Public keys read fresh from the store, so a key another replica just made is
        served at once."""
        keys, _ = await self._load()
        out = []
        for k in self._live(keys, time.time()):
            public = serialization.load_pem_private_key(k["pem"].encode(), None).public_key()
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            out.append({**jwk, "kid": k["kid"], "alg": ALGORITHM, "use": "sig"})
        return {"keys": out}

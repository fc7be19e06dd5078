"""Who may do what with a document. One place, used by routes, pages, and the NATS answer.

read: owner, readers, writers, anyone when published, anyone holding a live share key.
write: owner and writers.  admin (ACL, publish, share, delete): the owner.
Someone who may not read a document is told it does not exist (404), so ids leak nothing;
an anonymous caller is asked to authenticate (401) instead.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum
from typing import Any

from services.common.errors import Forbidden, NotFound, Unauthorized


class Right(IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2
    ADMIN = 3


def share_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def valid_share(meta: dict[str, Any], key: str | None) -> bool:
    if not key:
        return False
    digest = share_digest(key)
    return any(hmac.compare_digest(digest, s["digest"]) for s in meta.get("shares", {}).values())


def rights(meta: dict[str, Any], user: str | None, share: str | None = None) -> Right:
    if user is not None and user == meta["owner"]:
        return Right.ADMIN
    if user is not None and user in meta.get("writers", ()):
        return Right.WRITE
    if (user is not None and user in meta.get("readers", ())) or meta.get("published") or (
            valid_share(meta, share)):
        return Right.READ
    return Right.NONE


def require(meta: dict[str, Any], user: str | None, need: Right,
            share: str | None = None) -> Right:
    have = rights(meta, user, share)
    if have >= need:
        return have
    if have == Right.NONE:
        if user is None:
            raise Unauthorized()
        raise NotFound("no such document")
    if user is None:
        raise Unauthorized()
    what = "change" if need == Right.WRITE else "administer"
    raise Forbidden(f"you may read this document but not {what} it")

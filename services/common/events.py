"""The one event envelope, and the verbs each service emits (names used by several parts)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, Field


class Event(BaseModel):
    """Envelope of every event on the bus: `{id, type, time, actor, seq, data}`.

    `type` is the verb (the subject's last token); `seq` is the entity's version when the
    entity has one (documents, sources), so consumers can detect gaps and stay idempotent.
    """

    id: str = Field(default_factory=lambda: uuid4().hex)
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: str | None = None
    seq: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class AuthVerb(StrEnum):
    REGISTERED = "registered"      # plotline.auth.<username>.registered
    VERIFIED = "verified"          # plotline.auth.<username>.verified (email confirmed)
    KEY_CREATED = "key_created"    # plotline.auth.<key id>.key_created
    REVOKED = "revoked"            # plotline.auth.<key id>.revoked  {username}
    KEYS_ROTATED = "keys_rotated"  # plotline.auth.<kid>.keys_rotated (new signing key)


class DocsVerb(StrEnum):
    """plotline.docs.<doc id>.<verb>; `seq` is the document's version after the change."""

    CREATED = "created"
    PATCHED = "patched"            # {"events": [Bokeh patch events]}
    REPLACED = "replaced"          # whole document or object-layer change: {"reload": true}
    PUBLISHED = "published"        # {"sources": [...]} the bound sources now public
    UNPUBLISHED = "unpublished"    # {"sources": [...]}
    SHARED = "shared"              # {"share_id", "sources"}
    UNSHARED = "unshared"          # {"share_ids", "sources"}
    ACL_CHANGED = "acl_changed"    # {"readers", "writers", "sources"}
    DELETED = "deleted"            # {"data": keep|orphans|force, "drop_sources": [...], "sources"}


class DataVerb(StrEnum):
    """plotline.data.<source id>.<verb>; `seq` is the source's version after the change."""

    CREATED = "created"
    APPENDED = "appended"                # {"columns": {..}|null, "refetch"?, "rollover", "rows"}
    PATCHED = "patched"                  # {"patches": {...}, "rows"}
    COLUMNS_CHANGED = "columns_changed"  # {"columns": [names], "rows"}
    DELETED = "deleted"                  # {}

"""Docs on the bus: answers "may user U read/write doc D", applies browsers' patches, and
follows every replica's changes to keep this replica's MetaCache current."""

from __future__ import annotations

from typing import Any

from services.common.bus import Bus
from services.common.errors import PlotlineError, Unavailable
from services.common.events import DocsVerb, Event
from services.common.identity import Principal
from services.common.names import (
    DOCS_ACCESS,
    DOCS_PATCH,
    DOCS_SOURCE_ACCESS,
    service_subjects,
    subject_entity,
)

from .metacache import MetaCache
from .service import DocsService
from .sharing import Sharing

QUEUE = "docs"


async def start_responders(bus: Bus, docs: DocsService, sharing: Sharing) -> None:
    async def patch(request: dict[str, Any]) -> dict[str, Any]:
        """A writer's patch forwarded by push: {doc, user, events, origin?} -> {ok, version}
        (origin: the push connection's id, carried in the event)."""
        user, events = request.get("user"), request.get("events")
        origin = request.get("origin")
        if not isinstance(user, str) or not isinstance(events, list) or not (
                origin is None or isinstance(origin, str) and len(origin) <= 64):
            return {"ok": False, "error": "invalid_request", "detail": "need user and events"}
        try:
            meta = await docs.patch(str(request.get("doc")), Principal(user, "push"), events,
                                    origin=origin)
        except Unavailable:
            raise  # (Bus.serve answers a retryable error: not a refusal)
        except PlotlineError as exc:
            return {"ok": False, "error": exc.code, "detail": exc.detail}
        return {"ok": True, "version": meta["version"]}

    await bus.serve(DOCS_ACCESS, sharing.access, queue=QUEUE)
    await bus.serve(DOCS_SOURCE_ACCESS, sharing.source_access, queue=QUEUE)
    await bus.serve(DOCS_PATCH, patch, queue=QUEUE)


async def follow_changes(bus: Bus, fresh: MetaCache) -> None:
    """Every replica hears every docs event (no queue group): a newer version, or a
    deletion, makes the cached metadata stale."""

    async def changed(subject: str, event: Event) -> None:
        fresh.announced(subject_entity(subject), event.seq,
                        deleted=event.type == DocsVerb.DELETED)

    await bus.subscribe(service_subjects("docs"), changed)

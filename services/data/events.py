"""Data on the bus: reads granted through documents, and sources dropped with them.

Who may read a source besides its owner is the docs service's to say (a reader of a
document that binds the source, or a holder of that document's share key). The answer is
cached for a moment and forgotten whenever any document changes, so publishing grants and
unpublishing, unsharing or deleting revokes at once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from services.common.bus import Bus
from services.common.errors import PlotlineError, Unavailable
from services.common.events import DocsVerb
from services.common.identity import Principal
from services.common.names import (
    DATA_ACCESS,
    DOCS_SOURCE_ACCESS,
    service_subjects,
    subject_entity,
)

log = logging.getLogger("plotline.data")
DELETIONS_CONSUMER = "data-docs-deleted"
GRANT_TTL = 2.0  # seconds; any docs event clears the cache before that


class Grants:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._answers: dict[tuple, tuple[float, bool]] = {}

    async def may_read(self, source_id: str, owner: str, user: str | None,
                       via: tuple[str | None, str | None]) -> bool:
        key = (source_id, user, *via)
        hit = self._answers.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        doc, share = via
        try:
            answer = await self.bus.request(DOCS_SOURCE_ACCESS, {
                "source": source_id, "owner": owner, "user": user, "doc": doc,
                "share": share})
        except Unavailable:
            return False  # docs cannot vouch for the reader: refuse
        allowed = bool(answer.get("read"))
        if len(self._answers) > 50_000:
            self._answers.clear()
        self._answers[key] = (time.monotonic() + GRANT_TTL, allowed)
        return allowed

    def forget(self) -> None:
        self._answers.clear()


async def start_listeners(bus: Bus, grants: Grants, drop: Any) -> None:
    async def docs_changed(_subject: str, _event: Any) -> None:
        grants.forget()

    async def doc_deleted(subject: str, event: Any) -> None:
        for source_id in event.data.get("drop_sources", []):
            if await drop(source_id, event.actor):
                log.info("dropped source %s with document %s", source_id,
                         subject_entity(subject))

    await bus.subscribe(service_subjects("docs"), docs_changed)
    # a durable consumer: one replica acts on each deletion, and deletions made while the
    # data service was down are acted on when it is back (dropping is idempotent)
    await bus.consume(service_subjects("docs", DocsVerb.DELETED), doc_deleted,
                      durable=DELETIONS_CONSUMER)


async def start_responders(bus: Bus, data: Any) -> None:
    """`plotline.data.access` for push: {source, user?, doc?, share?} -> {read, write,
    version}, by the same rules as the REST reads (owner, or a document that binds it)."""

    async def access(request: dict[str, Any]) -> dict[str, Any]:
        source, user = request.get("source"), request.get("user")
        if not isinstance(source, str) or not (user is None or isinstance(user, str)):
            return {"ok": False, "error": "invalid_request"}
        principal = Principal(user, "push") if user else None
        try:
            m, _ = await data.manifest(source, principal,
                                       via=(request.get("doc"), request.get("share")))
        except Unavailable:
            raise  # (Bus.serve answers a retryable error: not a "no")
        except PlotlineError:
            return {"ok": True, "read": False}
        return {"ok": True, "read": True, "write": user == m["owner"],
                "owner": m["owner"], "version": m["version"]}

    await bus.serve(DATA_ACCESS, access, queue="data")

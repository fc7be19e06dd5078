"""Docs logic: documents, patches, objects, garbage. Sharing lives in sharing.py.

Every change goes through `_write`: read the metadata, check the right, apply the change to
a copy, commit by compare-and-set (retrying a lost race unless the caller sent If-Match),
and only then publish the event whose `seq` is the new document version.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from services.common.bus import Bus
from services.common.errors import (
    Conflict,
    NotFound,
    PlotlineError,
    PreconditionFailed,
    Unauthorized,
    Unprocessable,
)
from services.common.events import DocsVerb, Event
from services.common.identity import Principal
from services.common.names import DATA_ACCESS, DOCS_UNBOUND
from services.common.stores.blob import Superseded, read_again
from services.common.stores.kv import VersionConflict

from .access import Right, require, rights
from .bigdocs import BIG_BYTES, Prepared, Workers, render
from .config import DocsSettings
from .model import Doc
from .repository import DocsRepository, Meta

# A change: given the metadata (to edit in place) and a private copy of the content (None
# for metadata-only changes), return the event data and the content to store.
Mutation = Callable[[Meta, Doc | None], tuple[dict[str, Any], Doc | None]]


def user_of(principal: Principal | None) -> str | None:
    return principal.username if principal else None


PARSE_THREADS = 2  # documents parsed at once, in worker threads (DocsService._parse)


def parse_doc(data: Any, title: str | None = None) -> Doc:
    return Doc.from_bokeh(data, title=title) if data is not None else Doc.empty(title or "")


def missing(principal: Principal | None) -> PlotlineError:
    """A missing document looks exactly like one the caller may not read (access.require):
    404 to a signed-in caller, 401 to an anonymous one, so ids leak nothing."""
    return NotFound("no such document") if principal else Unauthorized()


def summary(meta: Meta) -> dict[str, Any]:
    return {k: meta[k] for k in ("id", "title", "owner", "version", "published", "created",
                                 "updated")}


class DocsService:
    def __init__(self, settings: DocsSettings, repo: DocsRepository, bus: Bus) -> None:
        self.settings = settings
        self.repo = repo
        self.bus = bus
        self._rendered: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._rendered_bytes = 0
        # writers of one document in this process queue up instead of racing the CAS
        self._locks = [asyncio.Lock() for _ in range(256)]
        self._parsing = asyncio.Semaphore(PARSE_THREADS)
        self.workers = Workers()  # large bodies' worker processes (bigdocs.py)

    async def _parse(self, data: Any, title: str | None) -> Doc:
        """parse_doc in a worker thread: validating a 26 MB document is a fraction of a
        second of CPU that, on the event loop, every other request (probes included) would
        wait out. At most PARSE_THREADS at once, so a burst of large writes queues instead
        of taking every core. (The hop costs ~0.2 ms, against 2-5 ms for the whole create
        of a small document: not worth a size test to keep small ones inline.)
        """
        async with self._parsing:
            return await asyncio.to_thread(parse_doc, data, title)

    async def meta(self, doc_id: str, principal: Principal | None) -> tuple[Meta, int]:
        found = await self.repo.get_meta(doc_id) if doc_id.isalnum() else None
        if found is None:
            raise missing(principal)
        return found

    # create and list
    async def create(self, principal: Principal, title: str, data: Any) -> Meta:
        """`data`: Bokeh JSON, or a large document a worker already prepared (bigdocs)."""
        doc = data if isinstance(data, Prepared) else await self._parse(data, title)
        doc.title = title
        now = time.time()
        sources = doc.bound_sources()
        meta = {"id": secrets.token_hex(8), "title": title, "owner": principal.username,
                "version": 1, "published": False, "readers": [], "writers": [],
                "shares": {}, "created": now, "updated": now, "sources": sources,
                "grants": await self._bind(principal.username, {}, sources, {})}
        await self.repo.reserve_title(meta["owner"], title, meta["id"])
        try:
            meta["blob"] = await self.repo.write_doc(meta["id"], 1, doc)
            await self.repo.put_meta(meta, expect=0)
        except BaseException:
            await self.repo.release_title(meta["owner"], title, meta["id"])
            raise
        await self.repo.owned.update(meta["owner"], add=[meta["id"]])
        await self.track_sources(meta["id"], set(), set(meta["grants"]))
        await self.bus.publish(meta["id"], DocsVerb.CREATED, {"title": title},
                               actor=meta["owner"], seq=1)
        return meta

    async def list_for(self, principal: Principal | None) -> list[dict[str, Any]]:
        if principal is None:
            return []
        user = principal.username
        ids = await self.repo.owned.ids(user)
        ids += [i for i in await self.repo.shared.ids(user) if i not in ids]
        out = []
        for doc_id in ids:
            found = await self.repo.get_meta(doc_id)
            if found and rights(found[0], user) >= Right.READ:
                out.append({**summary(found[0]), "rights": rights(found[0], user).name.lower()})
        return sorted(out, key=lambda m: -m["updated"])

    # read
    async def read(self, doc_id: str, principal: Principal | None,
                   share: str | None = None) -> tuple[Meta, bytes]:
        """The document's JSON answer, rendered once per version and cached."""
        return await read_again(lambda: self._read(doc_id, principal, share))

    async def _read(self, doc_id: str, principal: Principal | None,
                    share: str | None) -> tuple[Meta, bytes]:
        meta = await self.repo.peek_meta(doc_id) if doc_id.isalnum() else None
        if meta is None:
            raise missing(principal)
        require(meta, user_of(principal), Right.READ, share)
        key = (doc_id, meta["version"])
        body = self._rendered.get(key)
        if body is None:
            doc = await self.repo.load_for_reading(meta, raw_above=BIG_BYTES)
            if isinstance(doc, bytes):  # large: rendered in a worker process (bigdocs.py)
                body = await self.workers.render(doc, summary(meta))
            else:
                body = render(summary(meta), doc)
            self._remember(key, body)
        return meta, body

    def _remember(self, key: tuple[str, int], body: bytes) -> None:
        self._rendered[key] = body
        self._rendered_bytes += len(body)
        while self._rendered_bytes > self.settings.cache_bytes and self._rendered:
            _, old = self._rendered.popitem(last=False)
            self._rendered_bytes -= len(old)

    async def load(self, doc_id: str, principal: Principal | None, share: str | None = None,
                   need: Right = Right.READ) -> tuple[Meta, Doc]:
        async def load() -> tuple[Meta, Doc]:
            meta, _ = await self.meta(doc_id, principal)
            require(meta, user_of(principal), need, share)
            return meta, await self.repo.load_doc(meta)

        return await read_again(load)

    # the one write path
    def lock(self, doc_id: str) -> asyncio.Lock:
        """The lock this replica's writes of a document hold (one of 256: writes of one
        document queue here instead of racing to the store's compare-and-set)."""
        return self._locks[hash(doc_id) % len(self._locks)]

    async def write(self, doc_id: str, principal: Principal | None, need: Right,
                    verb: DocsVerb, mutate: Mutation, *, content: bool,
                    if_match: int | None = None) -> Meta:
        checked: dict[str, bool] = {}  # binding answers, kept across CAS retries
        async with self.lock(doc_id):
            for _ in range(self.settings.max_write_retries):
                meta, kv_version = await self.meta(doc_id, principal)
                require(meta, user_of(principal), need)
                if if_match is not None and if_match != meta["version"]:
                    raise PreconditionFailed(
                        f"document is at version {meta['version']}, not {if_match}")
                old = dict(meta)
                try:
                    doc = (await self.repo.load_doc(meta)).copy() if content else None
                except Superseded:
                    continue  # written meanwhile (elsewhere): start from its metadata
                data, doc = mutate(meta, doc)
                if doc is not None:
                    meta["title"] = doc.title or meta["title"]
                    meta["sources"] = doc.bound_sources()
                    meta["grants"] = await self._bind(user_of(principal), old,
                                                      meta["sources"], checked)
                meta["version"] += 1
                meta["updated"] = time.time()
                renamed = meta["title"] != old["title"]
                if renamed:
                    await self.repo.reserve_title(meta["owner"], meta["title"], doc_id)
                try:
                    await self.repo.commit(meta, kv_version, doc)
                except VersionConflict:
                    if renamed:
                        await self.repo.release_title(meta["owner"], meta["title"], doc_id)
                    if if_match is not None:
                        raise PreconditionFailed("document changed meanwhile") from None
                    continue
                if renamed:
                    await self.repo.release_title(meta["owner"], old["title"], doc_id)
                await self._after_commit(old, meta)
                await self.bus.publish(doc_id, verb, data, actor=user_of(principal),
                                       seq=meta["version"])
                await self._notify_unbound(old, meta, user_of(principal))
                return meta
        raise Conflict("too many concurrent writers; try again", code="busy")

    async def _bind(self, writer: str | None, old: Meta, sources: list[str],
                    checked: dict[str, bool]) -> dict[str, str]:
        """The grants of a document that binds `sources`: {source: its owner} for those its
        owner bound. A tag may name only a source its writer may read right now (else 422,
        the same for a missing and a private one); bindings already there are not asked
        again. Only the owner's own bindings let the document's readers read a source: a
        document that binds someone else's source (a clone of a published plot, say) shows
        it only to those who may read it anyway, and never deletes it."""
        before = set(old.get("sources", ())) if "grants" in old else set()
        grants = {s: o for s, o in old.get("grants", {}).items() if s in sources}
        for source in sources:
            if source in before:
                continue
            if source not in checked:
                answer = await self.bus.request(DATA_ACCESS, {"source": source,
                                                              "user": writer})
                checked[source] = bool(answer.get("read")) and answer.get("owner") == writer
                if not answer.get("read"):
                    raise Unprocessable(f"no data source {source!r} that you may read",
                                        code="unknown_source")
            if checked[source]:
                grants[source] = writer  # type: ignore[assignment]
        return grants

    async def _notify_unbound(self, old: Meta, new: Meta, actor: str | None) -> None:
        """Readers who got a source through this document lose it when a write unbinds it:
        REST reads ask again anyway, open sockets are told to (push rechecks)."""
        gone = sorted(set(old.get("grants", ())) - set(new.get("grants", ())))
        if gone:
            notice = Event(type="unbound", actor=actor, data={"doc": new["id"],
                                                               "sources": gone})
            await self.bus.hint(DOCS_UNBOUND, notice)

    async def _after_commit(self, old: Meta, new: Meta) -> None:
        await self.track_sources(new["id"], set(old.get("grants", ())),
                                  set(new.get("grants", ())))
        before = set(old["readers"]) | set(old["writers"])
        after = set(new["readers"]) | set(new["writers"])
        for user in after - before:
            await self.repo.shared.update(user, add=[new["id"]])
        for user in before - after:
            await self.repo.shared.update(user, remove=[new["id"]])

    async def track_sources(self, doc_id: str, before: set[str], after: set[str]) -> None:
        """Keep the index of the documents that bind each source (sharing.py's deletes and
        data's access questions read it)."""
        for source in after - before:
            await self.repo.binders.update(source, add=[doc_id])
        for source in before - after:
            await self.repo.binders.update(source, remove=[doc_id])

    # content changes
    async def replace(self, doc_id: str, principal: Principal | None, data: Any,
                      title: str | None, if_match: int | None) -> Meta:
        new = data if isinstance(data, Prepared) else await self._parse(data, title)

        def mutate(meta: Meta, _: Doc | None) -> tuple[dict[str, Any], Doc]:
            doc = new.copy()
            # the stored title stays unless renamed here (a Bokeh document's own title is
            # often just the default "Bokeh Application")
            doc.title = title or meta["title"]
            return {"reload": True}, doc

        # content=False: the old content is not needed, only replaced (and loading a large
        # one would cost the loop what the worker process saved)
        return await self.write(doc_id, principal, Right.WRITE, DocsVerb.REPLACED, mutate,
                                content=False, if_match=if_match)

    async def patch(self, doc_id: str, principal: Principal | None, events: list[Any],
                    if_match: int | None = None, origin: str | None = None) -> Meta:
        """Apply Bokeh patch events. `origin` (a push connection's id, for changes a viewer
        made) travels in the event, so that viewer does not apply its own change again."""
        def mutate(_: Meta, doc: Doc | None) -> tuple[dict[str, Any], Doc | None]:
            doc.apply_events(events)  # type: ignore[union-attr]
            return ({"events": events, "origin": origin} if origin else {"events": events}), doc

        return await self.write(doc_id, principal, Right.WRITE, DocsVerb.PATCHED, mutate,
                                content=True, if_match=if_match)

    async def change_objects(self, doc_id: str, principal: Principal | None,
                             change: Callable[[Doc], Any],
                             if_match: int | None = None) -> Meta:
        """Object-layer and GC writes: viewers reload (no Bokeh event describes them)."""
        def mutate(_: Meta, doc: Doc | None) -> tuple[dict[str, Any], Doc | None]:
            change(doc)  # type: ignore[arg-type]
            return {"reload": True}, doc

        return await self.write(doc_id, principal, Right.WRITE, DocsVerb.REPLACED, mutate,
                                content=True, if_match=if_match)

    async def clone(self, doc_id: str, principal: Principal, title: str | None,
                    share: str | None = None) -> Meta:
        meta, doc = await self.load(doc_id, principal, share)
        return await self.create(principal, title or f"{meta['title']} (copy)",
                                 doc.copy().to_bokeh())

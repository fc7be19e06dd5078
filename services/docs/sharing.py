"""Who else sees a document: publishing, secret share links, ACLs, deletion, and the
`plotline.docs.access` answer that push and data rely on."""

from __future__ import annotations

import secrets
import time
from typing import Any

from services.common.errors import NotFound, Unprocessable
from services.common.events import DocsVerb
from services.common.identity import Principal
from services.common.names import DELETE_DATA_MODES, VIEWER_PREFIX

from .access import Right, require, rights, share_digest
from .model import Doc
from .repository import Meta
from .service import DocsService, user_of


class Sharing:
    def __init__(self, docs: DocsService) -> None:
        self.docs = docs

    async def set_published(self, doc_id: str, principal: Principal | None,
                            published: bool) -> Meta:
        def mutate(meta: Meta, _: Doc | None) -> tuple[dict[str, Any], None]:
            meta["published"] = published
            return {"sources": meta["sources"]}, None

        verb = DocsVerb.PUBLISHED if published else DocsVerb.UNPUBLISHED
        return await self.docs.write(doc_id, principal, Right.ADMIN, verb, mutate,
                                     content=False)

    async def share(self, doc_id: str, principal: Principal | None) -> dict[str, Any]:
        key, share_id = secrets.token_urlsafe(24), secrets.token_hex(6)

        def mutate(meta: Meta, _: Doc | None) -> tuple[dict[str, Any], None]:
            meta["shares"][share_id] = {"digest": share_digest(key), "created": time.time()}
            return {"share_id": share_id, "sources": meta["sources"]}, None

        meta = await self.docs.write(doc_id, principal, Right.ADMIN, DocsVerb.SHARED, mutate,
                                     content=False)
        url = f"{self.docs.settings.public_url}{VIEWER_PREFIX}/{doc_id}?share={key}"
        return {"share_id": share_id, "key": key, "url": url, "version": meta["version"]}

    async def unshare(self, doc_id: str, principal: Principal | None,
                      share_id: str | None) -> Meta:
        def mutate(meta: Meta, _: Doc | None) -> tuple[dict[str, Any], None]:
            if share_id is not None and share_id not in meta["shares"]:
                raise NotFound("no such share link")
            gone = [share_id] if share_id else list(meta["shares"])
            for s in gone:
                del meta["shares"][s]
            return {"share_ids": gone, "sources": meta["sources"]}, None

        return await self.docs.write(doc_id, principal, Right.ADMIN, DocsVerb.UNSHARED,
                                     mutate, content=False)

    async def set_acl(self, doc_id: str, principal: Principal | None, readers: list[str],
                      writers: list[str]) -> Meta:
        def mutate(meta: Meta, _: Doc | None) -> tuple[dict[str, Any], None]:
            meta["writers"] = sorted(set(writers) - {meta["owner"]})
            meta["readers"] = sorted(set(readers) - set(meta["writers"]) - {meta["owner"]})
            return {"readers": meta["readers"], "writers": meta["writers"],
                    "sources": meta["sources"]}, None

        return await self.docs.write(doc_id, principal, Right.ADMIN, DocsVerb.ACL_CHANGED,
                                     mutate, content=False)

    async def delete(self, doc_id: str, principal: Principal | None, data: str) -> None:
        if data not in DELETE_DATA_MODES:
            raise Unprocessable(f"data must be one of {', '.join(DELETE_DATA_MODES)}")
        repo = self.docs.repo
        async with self.docs.lock(doc_id):
            meta, kv_version = await self.docs.meta(doc_id, principal)
            require(meta, user_of(principal), Right.ADMIN)
            await repo.delete_meta(meta, kv_version)
            await repo.release_title(meta["owner"], meta["title"], doc_id)
            await repo.owned.update(meta["owner"], remove=[doc_id])
            for user in set(meta["readers"]) | set(meta["writers"]):
                await repo.shared.update(user, remove=[doc_id])
            # only sources the deleter owns and bound here (data checks the owner again);
            # "orphans": those no other document grants
            drop = []
            for source, owner in meta.get("grants", {}).items():
                users = await repo.binders.ids(source)
                if owner == user_of(principal) and (
                        data == "force" or (data == "orphans" and set(users) <= {doc_id})):
                    drop.append(source)
            await self.docs.track_sources(doc_id, set(meta.get("grants", meta["sources"])),
                                          set())
        await self.docs.bus.publish(
            doc_id, DocsVerb.DELETED,
            {"data": data, "drop_sources": drop, "sources": meta["sources"],
             "owner": meta["owner"]},
            actor=user_of(principal), seq=meta["version"] + 1)

    async def access(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer of `plotline.docs.access`: {doc, user?, share?} -> rights and version."""
        doc_id = request.get("doc")
        found = await self.docs.repo.get_meta(doc_id) if isinstance(doc_id, str) and (
            doc_id.isalnum()) else None
        if found is None:
            return {"ok": False, "error": "not_found"}
        meta = found[0]
        have = rights(meta, request.get("user"), request.get("share"))
        return {"ok": True, "read": have >= Right.READ, "write": have >= Right.WRITE,
                "version": meta["version"], "sources": meta["sources"],
                "published": meta["published"]}

    async def source_access(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer of `plotline.docs.source_access`: {source, user?, doc?, share?} -> {read}.

        A source is readable by whoever may read a document its owner bound it in (`owner`,
        the source's owner, is given by data); a share key counts only for the document it
        belongs to (`doc`)."""
        source, user = request.get("source"), request.get("user")
        doc, share, owner = request.get("doc"), request.get("share"), request.get("owner")
        if not isinstance(source, str) or not isinstance(owner, str):
            return {"ok": False, "error": "invalid_request"}
        for doc_id in await self.docs.repo.binders.ids(source):
            found = await self.docs.repo.get_meta(doc_id)
            if found and grants(found[0], source, owner) and rights(
                    found[0], user, share if doc_id == doc else None) >= Right.READ:
                return {"ok": True, "read": True, "doc": doc_id}
        return {"ok": True, "read": False}


def grants(meta: Meta, source: str, owner: str) -> bool:
    """Whether a document lets its readers read `source` (owned by `owner`): only when the
    owner bound it there. Documents written before grants were recorded count as the
    owner's binding when they belong to the source's owner."""
    if "grants" in meta:
        return meta["grants"].get(source) == owner
    return meta["owner"] == owner and source in meta["sources"]

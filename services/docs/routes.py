"""Docs HTTP routes (thin): documents, sharing, objects, garbage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, Field

from services.common.deps import CurrentUser, DocReader, Large, MaybeUser, json_body
from services.common.errors import BadRequest, NotFound
from services.common.httperrors import errors
from services.common.models import Out
from services.common.names import MAX_SHARE_KEY, SERVICE_PREFIXES

from .access import Right
from .bigdocs import BIG_BYTES
from .model import Doc
from .service import DocsService, summary
from .sharing import Sharing
from .values import MAX_TITLE

router = APIRouter(prefix=SERVICE_PREFIXES["docs"], tags=["docs"])
JSON = "application/json"


async def get_docs(request: Request) -> DocsService:
    return request.app.state.docs


async def get_sharing(request: Request) -> Sharing:
    return request.app.state.sharing


Docs = Annotated[DocsService, Depends(get_docs)]
Shares = Annotated[Sharing, Depends(get_sharing)]
ShareKey = Annotated[str | None, Query(alias="share", max_length=MAX_SHARE_KEY)]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE)]
Name = Annotated[str, Field(min_length=1, max_length=64)]


async def if_match(value: str | None = Header(default=None, alias="If-Match")) -> int | None:
    """`If-Match: "7"` (or 7) -> 7; absent or `*` -> None."""
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise BadRequest("If-Match must be a document version ETag such as \"7\"") from None


IfMatch = Annotated[int | None, Depends(if_match)]


def tagged(meta: dict[str, Any], response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{meta["version"]}"'
    return summary(meta)


class CreateIn(BaseModel):
    title: Title
    doc: dict[str, Any] | None = Field(
        default=None, description="Bokeh Document.to_json() or json_item() output")


class ReplaceIn(BaseModel):
    doc: dict[str, Any]
    title: Title | None = None


def in_worker(model: type[BaseModel]) -> Large:
    """Bodies over BIG_BYTES: decoded, checked and serialised in docs' worker processes."""

    async def prepared(request: Request, raw: bytes) -> BaseModel:
        body, doc = await request.app.state.docs.workers.prepare(raw, model)
        return body.model_copy(update={"doc": doc})  # a Prepared document (bigdocs.py)

    return BIG_BYTES, prepared


# documents may be tens of MB: decoded off the event loop (deps.json_body)
_create, CREATE_DOC = json_body(CreateIn, in_worker(CreateIn))
_replace, REPLACE_DOC = json_body(ReplaceIn, in_worker(ReplaceIn))
CreateBody = Annotated[CreateIn, _create]
ReplaceBody = Annotated[ReplaceIn, _replace]


class PatchIn(BaseModel):
    events: list[dict[str, Any]] = Field(max_length=100_000)


class AclIn(BaseModel):
    readers: list[Name] = Field(default_factory=list, max_length=1000)
    writers: list[Name] = Field(default_factory=list, max_length=1000)


class CloneIn(BaseModel):
    title: Title | None = None


class DocSummary(Out):
    id: str
    title: str
    owner: str
    version: int
    published: bool
    created: float
    updated: float


class DocListed(DocSummary):
    rights: str = Field(description="read, write or admin")


class DocOut(DocSummary):
    doc: dict[str, Any] = Field(description="Bokeh Document.to_json() output")


class ShareOut(Out):
    share_id: str
    key: str = Field(description="the secret link key: shown in this answer only")
    url: str
    version: int


class AclOut(DocSummary):
    readers: list[str]
    writers: list[str]


class ObjectAddedOut(DocSummary):
    object: str = Field(description="the new model's id")


class GarbageOut(Out):
    version: int
    garbage: list[str]


class CollectedOut(DocSummary):
    removed: list[str]


# Error statuses by kind of operation. Every call may carry credentials (401 when they are
# bad, 503 when the session check is unreachable); a missing or unreadable id is 404 (401
# anonymous); a change can be refused (403), lose to too many writers (409 busy) or carry
# a body (400 when it is not UTF-8 JSON, 413, 422); If-Match is 400 when malformed, 412 when
# stale.
LIST = errors(401, 403, 503)
READ = errors(401, 403, 404, 422, 503)
CHANGE = errors(401, 403, 404, 409, 422, 503)
WITH_BODY = errors(400, 401, 403, 404, 409, 413, 422, 503)
VERSIONED = errors(400, 401, 403, 404, 409, 412, 413, 422, 503)


@router.get("/", response_model=list[DocListed], responses=LIST)
async def list_documents(user: MaybeUser, docs: Docs) -> list[dict[str, Any]]:
    """The documents I may read, most recently changed first."""
    return await docs.list_for(user)


@router.post("/", status_code=status.HTTP_201_CREATED, response_model=DocSummary,
             responses=WITH_BODY, openapi_extra=CREATE_DOC)
async def create_document(user: CurrentUser, body: CreateBody, docs: Docs,
                          response: Response) -> dict[str, Any]:
    """Store a Bokeh document under a title unique among mine."""
    return tagged(await docs.create(user, body.title, body.doc), response)


@router.get("/{doc_id}", response_model=DocOut, responses={
    304: {"description": "Not modified: If-None-Match names the current version"}, **READ})
async def get_document(doc_id: str, user: DocReader, docs: Docs, share: ShareKey = None,
                       if_none_match: str | None = Header(default=None)) -> Response:
    """`{id, title, owner, version, published, doc}` with the version as ETag."""
    meta, body = await docs.read(doc_id, user, share)
    etag = f'"{meta["version"]}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type=JSON, headers={"ETag": etag})


@router.put("/{doc_id}", response_model=DocSummary, responses=VERSIONED,
            openapi_extra=REPLACE_DOC)
async def replace_document(doc_id: str, user: CurrentUser, body: ReplaceBody, docs: Docs,
                           response: Response, version: IfMatch) -> dict[str, Any]:
    """Replace the whole document (412 when If-Match is stale)."""
    return tagged(await docs.replace(doc_id, user, body.doc, body.title, version), response)


@router.patch("/{doc_id}", response_model=DocSummary, responses=VERSIONED)
async def patch_document(doc_id: str, body: PatchIn, user: CurrentUser, docs: Docs,
                         response: Response, version: IfMatch) -> dict[str, Any]:
    """Apply Bokeh patch events, all or none."""
    return tagged(await docs.patch(doc_id, user, body.events, version), response)


@router.delete("/{doc_id}", status_code=status.HTTP_204_NO_CONTENT, responses=CHANGE)
async def delete_document(doc_id: str, user: CurrentUser, sharing: Shares,
                          data: str = "keep") -> None:
    """Delete; `data=orphans|force` also drops the data sources it bound."""
    await sharing.delete(doc_id, user, data)


@router.post("/{doc_id}/publish", response_model=DocSummary, responses=CHANGE)
async def publish(doc_id: str, user: CurrentUser, sharing: Shares,
                  response: Response) -> dict[str, Any]:
    """Make the document readable by anyone."""
    return tagged(await sharing.set_published(doc_id, user, True), response)


@router.delete("/{doc_id}/publish", response_model=DocSummary, responses=CHANGE)
async def unpublish(doc_id: str, user: CurrentUser, sharing: Shares,
                    response: Response) -> dict[str, Any]:
    """Make the document private again."""
    return tagged(await sharing.set_published(doc_id, user, False), response)


@router.post("/{doc_id}/share", status_code=status.HTTP_201_CREATED, response_model=ShareOut,
             responses=CHANGE)
async def share(doc_id: str, user: CurrentUser, sharing: Shares) -> dict[str, Any]:
    """Create a secret link; its key is shown here only."""
    return await sharing.share(doc_id, user)


@router.delete("/{doc_id}/share", response_model=DocSummary, responses=CHANGE)
async def unshare(doc_id: str, user: CurrentUser, sharing: Shares, response: Response,
                  share_id: str | None = None) -> dict[str, Any]:
    """Revoke one share link (`share_id`) or all of them."""
    return tagged(await sharing.unshare(doc_id, user, share_id), response)


@router.put("/{doc_id}/acl", response_model=AclOut, responses=WITH_BODY)
async def set_acl(doc_id: str, body: AclIn, user: CurrentUser, sharing: Shares,
                  response: Response) -> dict[str, Any]:
    """Set who may read and who may write."""
    meta = await sharing.set_acl(doc_id, user, body.readers, body.writers)
    return {**tagged(meta, response), "readers": meta["readers"], "writers": meta["writers"]}


@router.post("/{doc_id}/clone", status_code=status.HTTP_201_CREATED, response_model=DocSummary,
             responses=WITH_BODY)
async def clone(doc_id: str, user: CurrentUser, docs: Docs, response: Response,
                body: CloneIn | None = None, share: ShareKey = None) -> dict[str, Any]:
    """Copy a document I may read into a new one of mine."""
    return tagged(await docs.clone(doc_id, user, body.title if body else None, share),
                  response)


# --- objects (the seed's Backbone layer) ---------------------------------------------------

@router.get("/{doc_id}/objects", responses=READ)
async def list_objects(doc_id: str, user: MaybeUser, docs: Docs, share: ShareKey = None,
                       type: str | None = None, ids: str | None = None) -> list[dict]:
    """Every model, or those of one type, or those with the given ids (`ids=a,b,c`)."""
    _, doc = await docs.load(doc_id, user, share)
    wanted = doc.ids_of_type(type) if type else list(doc.models)
    if ids is not None:
        asked = [i for i in ids.split(",") if i]
        missing = [i for i in asked if i not in doc.models]
        if missing:
            raise NotFound(f"no such objects: {', '.join(missing[:10])}")
        wanted = [i for i in asked if i in set(wanted)]
    return [doc.model(i) for i in wanted]


@router.post("/{doc_id}/objects", status_code=status.HTTP_201_CREATED,
             response_model=ObjectAddedOut, responses=VERSIONED)
async def add_object(doc_id: str, rep: dict[str, Any], user: CurrentUser, docs: Docs,
                     response: Response, version: IfMatch) -> dict[str, Any]:
    """Add a model (a Bokeh object rep, may nest new ones)."""
    added: list[str] = []
    meta = await docs.change_objects(doc_id, user, lambda d: added.append(d.add_object(rep)),
                                     version)
    return {**tagged(meta, response), "object": added[0]}


@router.get("/{doc_id}/objects/{obj_id}", responses=READ)
async def get_object(doc_id: str, obj_id: str, user: MaybeUser, docs: Docs,
                     share: ShareKey = None) -> dict[str, Any]:
    """One model with every model it references."""
    _, doc = await docs.load(doc_id, user, share)
    return _object(doc, obj_id, doc.object_with_refs)


@router.put("/{doc_id}/objects/{obj_id}", response_model=DocSummary, responses=VERSIONED)
async def replace_object(doc_id: str, obj_id: str, rep: dict[str, Any], user: CurrentUser,
                         docs: Docs, response: Response, version: IfMatch) -> dict[str, Any]:
    """Replace one model."""
    meta = await docs.change_objects(
        doc_id, user, lambda d: _object(d, obj_id, d.replace_object, rep), version)
    return tagged(meta, response)


@router.patch("/{doc_id}/objects/{obj_id}", response_model=DocSummary, responses=VERSIONED)
async def patch_object(doc_id: str, obj_id: str, attributes: dict[str, Any], user: CurrentUser,
                       docs: Docs, response: Response, version: IfMatch) -> dict[str, Any]:
    """Change some attributes of one model."""
    meta = await docs.change_objects(
        doc_id, user, lambda d: _object(d, obj_id, d.patch_object, attributes), version)
    return tagged(meta, response)


@router.delete("/{doc_id}/objects/{obj_id}", response_model=DocSummary, responses=VERSIONED)
async def delete_object(doc_id: str, obj_id: str, user: CurrentUser, docs: Docs,
                        response: Response, version: IfMatch) -> dict[str, Any]:
    """Delete one model no other model references."""
    meta = await docs.change_objects(doc_id, user,
                                     lambda d: _object(d, obj_id, d.delete_object), version)
    return tagged(meta, response)


def _object(doc: Doc, obj_id: str, action: Any, *args: Any) -> Any:
    if obj_id not in doc.models:
        raise NotFound(f"no object {obj_id!r} in this document")
    return action(obj_id, *args)


# --- garbage -------------------------------------------------------------------------------

@router.get("/{doc_id}/gc", response_model=GarbageOut, responses=READ)
async def list_garbage(doc_id: str, user: CurrentUser, docs: Docs) -> dict[str, Any]:
    """Models unreachable from the roots."""
    meta, doc = await docs.load(doc_id, user, need=Right.WRITE)
    return {"version": meta["version"], "garbage": doc.garbage()}


@router.post("/{doc_id}/gc", response_model=CollectedOut, responses=CHANGE)
async def collect_garbage(doc_id: str, user: CurrentUser, docs: Docs,
                          response: Response) -> dict[str, Any]:
    """Delete the models unreachable from the roots."""
    removed: list[str] = []
    meta = await docs.change_objects(doc_id, user,
                                     lambda d: removed.extend(d.collect_garbage()))
    return {**tagged(meta, response), "removed": removed}

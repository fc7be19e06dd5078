"""Typed dependencies shared by every service's routes (built on app.state from the lifespan)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from .errors import Forbidden, Unauthorized
from .identity import Authenticator, Principal

Model = TypeVar("Model", bound=BaseModel)


async def get_authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator


async def optional_user(request: Request) -> Principal | None:
    """The caller, or None when anonymous in multi-user mode."""
    return await request.app.state.authenticator.resolve(request, request.method)


async def require_user(
    principal: Annotated[Principal | None, Depends(optional_user)],
) -> Principal:
    if principal is None:
        raise Unauthorized()
    return principal


async def document_reader(request: Request) -> Principal | None:
    """As optional_user, but a token scoped to one document is accepted when this request
    reads that document: the `doc_id` in the path (docs) or `?doc=` (data, reading a
    source through the document that binds it)."""
    principal = await request.app.state.authenticator.resolve(request, request.method,
                                                              scoped=True)
    return in_scope(principal, request.path_params.get("doc_id")
                    or request.query_params.get("doc"))


def in_scope(principal: Principal | None, doc: str | None) -> Principal | None:
    if principal is not None and principal.scope_doc is not None and principal.scope_doc != doc:
        raise Forbidden("this token is scoped to another document", code="token_scope")
    return principal


MaybeUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(require_user)]
# the viewer's reads (a document, a source's rows and views through it)
DocReader = Annotated[Principal | None, Depends(document_reader)]


# Bodies decoded in worker threads at once, per process (json_body): a burst of large ones
# queues instead of taking every core.
BODY_THREADS = 2
# one bound per event loop (a semaphore belongs to the loop it first waits on)
_decoding: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())

# json_body's hook for bodies of more than `limit` bytes: (request, raw) -> the model
Large = tuple[int, Callable[[Request, bytes], Awaitable[Any]]]


async def decoded_in_thread(model: type[Model], raw: bytes) -> Model:
    """`model` from a JSON body, validated in a worker thread; errors as FastAPI's (422)."""
    loop = asyncio.get_running_loop()
    bound = _decoding.get(loop) or _decoding.setdefault(loop, asyncio.Semaphore(BODY_THREADS))
    try:
        async with bound:
            return await asyncio.to_thread(model.model_validate_json, raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def json_body(model: type[Model], large: Large | None = None) -> tuple[Any, dict[str, Any]]:
    """A dependency giving the JSON body as `model`, decoded and validated off the event
    loop, and the `openapi_extra` that documents it. For routes whose bodies may be tens
    of MB (a Bokeh document): FastAPI's own body parsing runs on the loop, where a 26 MB
    document held every other request (health probes included) for ~0.8 s. Bodies over
    `large[0]` bytes go to `large[1]` instead (docs: a worker process). Errors are
    FastAPI's: 422 with the same `{"error", "detail"}` body."""

    async def decoded(request: Request) -> Model:
        raw = await request.body()
        if large is not None and len(raw) > large[0]:
            return await large[1](request, raw)
        return await decoded_in_thread(model, raw)

    schema = {"application/json": {"schema": model.model_json_schema()}}
    return Depends(decoded), {"requestBody": {"required": True, "content": schema}}

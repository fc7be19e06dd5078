"""Typed dependencies shared by every service's routes (built on app.state from the lifespan)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from .errors import Unauthorized
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


MaybeUser = Annotated[Principal | None, Depends(optional_user)]
CurrentUser = Annotated[Principal, Depends(require_user)]


# Bodies decoded in worker threads at once, per process (json_body): a burst of large ones
# queues instead of taking every core.
BODY_THREADS = 2
_decoding: asyncio.Semaphore | None = None


def json_body(model: type[Model]) -> tuple[Any, dict[str, Any]]:
    """A dependency giving the JSON body as `model`, decoded and validated in a worker
    thread, and the `openapi_extra` that documents it. For routes whose bodies may be tens
    of MB (a Bokeh document): FastAPI's own body parsing runs on the event loop, where a
    26 MB document held every other request (health probes included) for ~0.8 s. Errors
    are FastAPI's: 422 with the same `{"error", "detail"}` body."""

    async def decoded(request: Request) -> Model:
        global _decoding
        raw = await request.body()
        _decoding = _decoding or asyncio.Semaphore(BODY_THREADS)
        try:
            async with _decoding:
                return await asyncio.to_thread(model.model_validate_json, raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None

    schema = {"application/json": {"schema": model.model_json_schema()}}
    return Depends(decoded), {"requestBody": {"required": True, "content": schema}}

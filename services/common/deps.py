"""Typed dependencies shared by every service's routes (built on app.state from the lifespan)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .errors import Unauthorized
from .identity import Authenticator, Principal


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

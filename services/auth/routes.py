"""Auth HTTP routes (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, EmailStr, Field

from services.common.clientaddr import client_address
from services.common.deps import CurrentUser, in_scope
from services.common.errors import BadRequest, Forbidden, Unauthorized
from services.common.httperrors import errors
from services.common.identity import Principal
from services.common.models import Out
from services.common.names import (
    CSRF_COOKIE,
    MAX_PASSWORD,
    MIN_PASSWORD,
    RIGHT_CLAIM,
    SCOPE_CLAIM,
    SERVICE_PREFIXES,
    SESSION_COOKIE,
    USERNAME_RULE,
)

from .security import USERNAME_RE
from .service import AuthService

router = APIRouter(prefix=SERVICE_PREFIXES["auth"], tags=["auth"])


async def get_service(request: Request) -> AuthService:
    return request.app.state.auth


Service = Annotated[AuthService, Depends(get_service)]


class RegisterIn(BaseModel):
    username: str = Field(pattern=USERNAME_RE.pattern, description=USERNAME_RULE)
    password: str = Field(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)
    email: EmailStr | None = None


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class TokenIn(BaseModel):
    api_key: str | None = Field(default=None, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class DocTokenIn(BaseModel):
    doc: str = Field(pattern=r"^[A-Za-z0-9]{1,64}$", description="the document's id")
    right: Literal["read", "write"] = Field(
        default="read", description="write: the viewer's changes (widgets, selections) "
        "are stored, when the user may write the document")
    ttl: int = Field(default=600, ge=30, le=3600, description="lifetime in seconds")


class DocTokenOut(TokenOut):
    doc: str
    right: str


class KeyIn(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=100)


class AccountOut(Out):
    username: str
    email: str | None = None
    verified: bool = True


class MeOut(AccountOut):
    multi_user: bool
    auth: str = Field(description="how this request authenticated (jwt, apikey, …)")


class KeyOut(Out):
    id: str
    name: str
    created: float
    prefix: str = Field(description="how the key begins, to recognise it")


class NewKeyOut(KeyOut):
    key: str = Field(description="the secret: shown in this answer only")


class JwksOut(Out):
    keys: list[dict[str, Any]]


# the statuses every signed-in call can answer: bad credentials, the session check unreachable
SIGNED_IN = (401, 403, 503)


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=AccountOut,
             responses=errors(400, 403, 409, 413, 422))
async def register(body: RegisterIn, svc: Service) -> dict:
    """Create an account (multi-user mode only)."""
    return await svc.register(body.username, body.password, body.email)


@router.get("/verify", response_model=AccountOut, responses=errors(404, 422))
async def verify(token: str, svc: Service) -> dict:
    """Confirm an email address with the link sent at registration."""
    return await svc.verify_email(token)


@router.post("/login", responses=errors(400, 401, 403, 413, 422, 429))
async def login(body: LoginIn, request: Request, response: Response,
                svc: Service) -> TokenOut:
    """Exchange username and password for a JWT; also sets the HttpOnly login cookie."""
    # the socket's peer, or the client a trusted proxy names (clientaddr.py)
    client = client_address(request, svc.settings.trusted_proxies)
    token, csrf = await svc.login(body.username, body.password, client)
    s = svc.settings
    common = {"max_age": s.token_ttl_seconds, "secure": s.cookie_secure, "samesite": "lax",
              "path": s.cookie_path}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)
    # readable by the page's JS, which echoes it in the CSRF header (double submit; the
    # JWT carries its digest, so only this login's value passes)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)
    return TokenOut(access_token=token, expires_in=s.token_ttl_seconds)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(503))
async def logout(request: Request, response: Response, svc: Service) -> None:
    """End this login (the cookie's or the bearer JWT's): the token stops working in every
    service within a second and its sockets close. Always forgets the cookies, even when
    the session had already ended."""
    try:
        principal = await request.app.state.authenticator.resolve(request, request.method)
    except (Unauthorized, Forbidden):
        principal = None  # nothing live to end (or a cross-site try: end nothing)
    if principal is not None:
        await svc.logout(principal)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=svc.settings.cookie_path)


@router.get("/me", response_model=MeOut, responses=errors(*SIGNED_IN))
async def me(user: CurrentUser, svc: Service) -> dict:
    """Who am I (the seed's userinfo)."""
    return {**await svc.profile(user.username), "auth": user.via}


@router.post("/token", responses=errors(400, 401, 413, 422))
async def token(request: Request, svc: Service, body: TokenIn | None = None) -> TokenOut:
    """Exchange an API key (Bearer header or `api_key` field) for a short-lived JWT."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    api_key = (body.api_key if body else None) or (bearer.strip() if scheme.lower() ==
                                                    "bearer" else None)
    answer = await svc.check_key(api_key) if api_key else None
    if answer is None:
        raise Unauthorized("a valid API key is required", code="invalid_api_key")
    # the key is the token's session: revoking the key ends the token too
    return TokenOut(access_token=svc.issue_token(answer["username"], answer["key_id"]),
                    expires_in=svc.settings.token_ttl_seconds)


async def minter(request: Request) -> Principal:
    """Who asks for a scoped token (before the body is read): a login, an API key, or a
    scoped token renewing itself."""
    user = await request.app.state.authenticator.resolve(request, request.method,
                                                         scoped=True)
    if user is None:
        raise Unauthorized()
    return user


@router.post("/doc-token", responses=errors(*SIGNED_IN, 400, 413, 422))
async def doc_token(body: DocTokenIn, user: Annotated[Principal, Depends(minter)],
                    svc: Service) -> DocTokenOut:
    """A short-lived token that can only view one document: read it, read the sources it
    binds through it, follow it over /ws, and (`right: write`) send the viewer's changes.
    Give it to a page on another site (`data-plotline-token` with /embed.js) instead of a
    cookie or a key. It narrows the caller's rights, never adds to them: what the user may
    not see stays unseen. A scoped token may renew itself (same document, same or lesser
    right); it ends with the login or API key it came from."""
    in_scope(user, body.doc)
    if user.scope_doc is not None and body.right == "write" and not user.scope_write:
        raise Forbidden("a read token cannot mint a write token", code="token_scope")
    if user.credential is None:  # single-user mode: every caller is the owner already
        raise BadRequest("single-user mode has no tokens: every caller is the owner",
                         code="single_user")
    extra = {SCOPE_CLAIM: body.doc, RIGHT_CLAIM: body.right}
    return DocTokenOut(access_token=svc.issue_token(user.username, user.credential,
                                                    ttl=body.ttl, **extra),
                       expires_in=body.ttl, doc=body.doc, right=body.right)


@router.get("/apikeys", response_model=list[KeyOut], responses=errors(*SIGNED_IN))
async def list_keys(user: CurrentUser, svc: Service) -> list[dict]:
    """My API keys (never their secrets)."""
    return await svc.list_keys(user.username)


@router.post("/apikeys", status_code=status.HTTP_201_CREATED, response_model=NewKeyOut,
             responses=errors(*SIGNED_IN, 400, 403, 413, 422))
async def create_key(user: CurrentUser, svc: Service, body: KeyIn | None = None) -> dict:
    """Create an API key; its secret is in this answer and nowhere else, ever."""
    return await svc.create_key(user.username, body.name if body else "default")


@router.delete("/apikeys/{key_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(*SIGNED_IN, 403, 404, 422))
async def revoke_key(key_id: str, user: CurrentUser, svc: Service) -> None:
    """Revoke an API key; every service refuses it within a second."""
    await svc.revoke_key(user.username, key_id)


@router.get("/.well-known/jwks.json", response_model=JwksOut)
async def jwks(svc: Service) -> dict:
    """Public signing keys (RS256) with their `kid`, old ones kept until their tokens expire."""
    return await svc.ring.jwks()

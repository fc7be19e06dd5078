"""Auth HTTP routes (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, EmailStr, Field

from services.common.deps import CurrentUser
from services.common.errors import Unauthorized
from services.common.names import CSRF_COOKIE, SERVICE_PREFIXES, SESSION_COOKIE

from .security import MAX_PASSWORD, MIN_PASSWORD, USERNAME_RE, USERNAME_RULE
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


class KeyIn(BaseModel):
    name: str = Field(default="default", min_length=1, max_length=100)


def _token(svc: AuthService, username: str) -> TokenOut:
    return TokenOut(access_token=svc.issue_token(username),
                    expires_in=svc.settings.token_ttl_seconds)


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterIn, svc: Service) -> dict:
    """Create an account (multi-user mode only)."""
    return await svc.register(body.username, body.password, body.email)


@router.get("/verify")
async def verify(token: str, svc: Service) -> dict:
    """Confirm an email address with the link sent at registration."""
    return await svc.verify_email(token)


@router.post("/login")
async def login(body: LoginIn, request: Request, response: Response,
                svc: Service) -> TokenOut:
    """Exchange username and password for a JWT; also sets the HttpOnly login cookie."""
    # the socket's peer (ASGI scope client); X-Forwarded-For is not trusted
    client = request.client.host if request.client else "unknown"
    token = await svc.login(body.username, body.password, client)
    s = svc.settings
    common = {"max_age": s.token_ttl_seconds, "secure": s.cookie_secure, "samesite": "lax",
              "path": s.cookie_path}
    response.set_cookie(SESSION_COOKIE, token, httponly=True, **common)
    # readable by the page's JS, which echoes it in the CSRF header (double submit)
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), httponly=False, **common)
    return TokenOut(access_token=token, expires_in=s.token_ttl_seconds)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(response: Response, svc: Service) -> None:
    """Forget the login cookie (bearer tokens simply expire)."""
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=svc.settings.cookie_path)


@router.get("/me")
async def me(user: CurrentUser, svc: Service) -> dict:
    """Who am I (the seed's userinfo)."""
    return {**await svc.profile(user.username), "auth": user.via}


@router.post("/token")
async def token(request: Request, svc: Service, body: TokenIn | None = None) -> TokenOut:
    """Exchange an API key (Bearer header or `api_key` field) for a short-lived JWT."""
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    api_key = (body.api_key if body else None) or (bearer.strip() if scheme.lower() ==
                                                    "bearer" else None)
    answer = await svc.check_key(api_key) if api_key else None
    if answer is None:
        raise Unauthorized("a valid API key is required", code="invalid_api_key")
    return _token(svc, answer["username"])


@router.get("/apikeys")
async def list_keys(user: CurrentUser, svc: Service) -> list[dict]:
    """My API keys (never their secrets)."""
    return await svc.list_keys(user.username)


@router.post("/apikeys", status_code=status.HTTP_201_CREATED)
async def create_key(user: CurrentUser, svc: Service, body: KeyIn | None = None) -> dict:
    """Create an API key; its secret is in this answer and nowhere else, ever."""
    return await svc.create_key(user.username, body.name if body else "default")


@router.delete("/apikeys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: str, user: CurrentUser, svc: Service) -> None:
    """Revoke an API key; every service refuses it within a second."""
    await svc.revoke_key(user.username, key_id)


@router.get("/.well-known/jwks.json")
async def jwks(svc: Service) -> dict:
    """Public signing keys (RS256) with their `kid`, old ones kept until their tokens expire."""
    return await svc.ring.jwks()

"""Who is calling: one resolution of credentials shared by every service.

Order: `Authorization: Bearer <JWT | API key>`, then the login cookie. API keys are checked by
auth (over NATS for the other services) and cached briefly; a revocation event drops the
cached entry at once. A JWT is also only as good as its session (`sid` claim: a login, or
the API key it was minted from): auth is asked whether the session is live and its user
exists, with the same short cache and the same revocation. Cookie-authenticated unsafe
requests must pass the CSRF check, whose token is bound to the login's JWT.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from .errors import Forbidden, Unauthorized, Unavailable
from .names import (
    API_KEY_PREFIX,
    CSRF_COOKIE,
    CSRF_HEADER,
    DEFAULT_USER,
    RIGHT_CLAIM,
    SCOPE_CLAIM,
    SESSION_COOKIE,
)
from .tokens import TokenVerifier

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

# Answers {"username", "key_id"} for a valid key, None for an unknown or revoked one.
KeyChecker = Callable[[str], Awaitable[dict[str, Any] | None]]
# Answers {"username", "key_id": sid} for a live session, None for an ended one.
SessionChecker = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Principal:
    username: str
    via: str  # "jwt" | "apikey" | "cookie" | "single-user" | "push" | "docs-event"
    key_id: str | None = None
    # What a revocation names (`plotline.auth.<credential>.revoked`): the API key's id, or
    # a JWT's `sid` claim. Long-lived holders of a principal (push's sockets) drop it then.
    credential: str | None = None
    # When the credential stops being valid (a JWT's `exp`, epoch seconds); None: no end.
    expires: float | None = None
    # A scoped token's one document (POST /auth/doc-token): the principal may only view it
    # (and change it through push, when `scope_write`), never anything else. It narrows the
    # user's rights, never adds to them. Routes refuse it unless they accept it
    # (`Authenticator.resolve(..., scoped=True)`, deps.DocReader).
    scope_doc: str | None = None
    scope_write: bool = False


STALE_GRACE_S = 300.0


class ApiKeyCache:
    """Short cache of auth's answers about a credential (an API key, a session id), keyed
    by its SHA-256 (never an API key's secret). `revoke(id)` drops the answers whose
    `key_id` is id."""

    def __init__(self, check: KeyChecker, ttl: float) -> None:
        self._check = check
        self._ttl = ttl
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    async def lookup(self, api_key: str) -> dict[str, Any] | None:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        try:
            answer = await self._check(api_key)
        except Unavailable:
            # auth away (NATS down, say): a key it vouched for lately still works for
            # STALE_GRACE_S, so writers keep writing through a short outage; revocations
            # made meanwhile reach no one anyway until NATS is back
            if hit and hit[0] + STALE_GRACE_S > now:
                return hit[1]
            raise
        if answer is None:
            self._entries.pop(digest, None)
            return None
        if len(self._entries) > 100_000:  # bound memory against key spraying
            self._entries.clear()
        self._entries[digest] = (now + self._ttl, answer)
        return answer

    def revoke(self, key_id: str) -> None:
        for digest in [d for d, (_, a) in self._entries.items() if a.get("key_id") == key_id]:
            del self._entries[digest]


class Authenticator:
    def __init__(self, *, multi_user: bool, verifier: TokenVerifier,
                 api_keys: ApiKeyCache, sessions: ApiKeyCache) -> None:
        self.multi_user = multi_user
        self.verifier = verifier
        self.api_keys = api_keys
        self.sessions = sessions
        # called with the credential id of every `plotline.auth.<id>.revoked` event this
        # process hears (push closes the sockets that hold it)
        self.on_revoked: list[Callable[[str], Any]] = []

    def revoked(self, credential: str) -> None:
        self.api_keys.revoke(credential)
        self.sessions.revoke(credential)
        for listener in self.on_revoked:
            listener(credential)

    async def from_token(self, token: str, via: str = "jwt", *,
                         scoped: bool = False) -> Principal:
        """A bearer credential: an API key (by its prefix) or a JWT; a token scoped to one
        document only when the caller accepts one (`scoped`)."""
        if token.startswith(API_KEY_PREFIX):
            answer = await self.api_keys.lookup(token)
            if answer is None:
                raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
            return Principal(answer["username"], "apikey", answer.get("key_id"),
                             credential=answer.get("key_id"))
        principal, _ = await self._from_jwt(token, via)
        return unscoped(principal) if not scoped else principal

    async def _from_jwt(self, token: str, via: str) -> tuple[Principal, dict[str, Any]]:
        claims = await self.verifier.verify(token)
        sid = claims.raw.get("sid")
        if not isinstance(sid, str) or not sid:
            raise Unauthorized("token names no session; sign in again", code="invalid_token")
        # A signature proves auth issued the token, not that it still stands: the session
        # may have been signed out, its API key revoked, its user never have existed here.
        live = await self.sessions.lookup(sid)
        if live is None or live.get("username") != claims.sub:
            raise Unauthorized("session ended (signed out, key revoked or unknown user)",
                               code="session_ended")
        doc = claims.raw.get(SCOPE_CLAIM)
        return Principal(claims.sub, via, credential=sid, expires=float(claims.exp),
                         scope_doc=doc if isinstance(doc, str) else None,
                         scope_write=claims.raw.get(RIGHT_CLAIM) == "write"), claims.raw

    async def resolve(self, conn: HTTPConnection, method: str = "GET", *,
                      scoped: bool = False) -> Principal | None:
        """The caller, or None when anonymous (multi-user mode only). A token scoped to one
        document is refused (403) unless the caller accepts one (`scoped`)."""
        if not self.multi_user:
            return Principal(DEFAULT_USER, "single-user")
        auth = conn.headers.get("authorization")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("use 'Authorization: Bearer <token or API key>'")
            return await self.from_token(token.strip(), scoped=scoped)
        cookie = conn.cookies.get(SESSION_COOKIE)
        if cookie:
            principal, claims = await self._from_jwt(cookie, "cookie")
            if method.upper() not in SAFE_METHODS:
                check_csrf(conn, claims)
            return principal if scoped else unscoped(principal)
        return None


def unscoped(principal: Principal) -> Principal:
    """`principal`, unless it holds a scoped token: then 403 (default deny)."""
    if principal.scope_doc is not None:
        raise Forbidden("this token is scoped to viewing one document; use a login or an "
                        "API key for anything else", code="token_scope")
    return principal


def csrf_digest(token: str) -> str:
    """What a login JWT carries (`csrf` claim) of its CSRF token: the cookie's value alone
    would let a token planted by a sibling subdomain pass; bound to the JWT, it cannot."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_csrf(conn: HTTPConnection, claims: dict[str, Any]) -> None:
    """Double-submit check: the header must echo the CSRF cookie set at login, and that
    cookie must be the one this login's JWT was issued with."""
    cookie = conn.cookies.get(CSRF_COOKIE, "")
    header = conn.headers.get(CSRF_HEADER, "")
    bound = claims.get("csrf")
    if (not cookie or not isinstance(bound, str)
            or not hmac.compare_digest(cookie.encode(), header.encode())
            or not hmac.compare_digest(csrf_digest(header).encode(), bound.encode())):
        raise Forbidden(f"missing or wrong {CSRF_HEADER} header", code="csrf_failed")


async def connect_authenticator(settings: Any, bus: Any, *,
                                jwks: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                                check_key: KeyChecker | None = None,
                                check_session: SessionChecker | None = None) -> Authenticator:
    """The Authenticator every service uses. Auth passes its own key sources; the others
    ask auth over NATS (or fetch the JWKS over HTTP when `jwks_url` is set)."""
    from .bus import Bus
    from .events import AuthVerb
    from .names import AUTH_JWKS, AUTH_SESSION, AUTH_VERIFY, service_subjects, subject_entity
    from .tokens import JWKSCache

    assert isinstance(bus, Bus)

    async def jwks_over_nats() -> dict[str, Any]:
        return await bus.request(AUTH_JWKS, {})

    async def jwks_over_http() -> dict[str, Any]:
        import httpx

        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(settings.jwks_url)
            response.raise_for_status()
            return response.json()

    async def key_over_nats(api_key: str) -> dict[str, Any] | None:
        answer = await bus.request(AUTH_VERIFY, {"key": api_key})
        return answer if answer.get("ok") else None

    async def session_over_nats(sid: str) -> dict[str, Any] | None:
        answer = await bus.request(AUTH_SESSION, {"sid": sid})
        return answer if answer.get("ok") else None

    fetch = jwks or (jwks_over_http if settings.jwks_url else jwks_over_nats)
    cache = ApiKeyCache(check_key or key_over_nats, settings.api_key_cache_seconds)
    sessions = ApiKeyCache(check_session or session_over_nats, settings.api_key_cache_seconds)

    verifier = TokenVerifier(JWKSCache(fetch), issuer=settings.issuer,
                             audience=settings.audience)
    authenticator = Authenticator(multi_user=settings.multi_user, verifier=verifier,
                                  api_keys=cache, sessions=sessions)

    async def on_revoked(subject: str, _event: Any) -> None:
        authenticator.revoked(subject_entity(subject))

    await bus.subscribe(service_subjects("auth", AuthVerb.REVOKED), on_revoked)
    return authenticator

"""Auth logic: accounts, login with throttling, API keys, tokens, email verification."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from services.common.bus import Bus
from services.common.errors import Forbidden, NotFound, TooManyRequests, Unauthorized, Unprocessable
from services.common.events import AuthVerb
from services.common.identity import Principal, csrf_digest
from services.common.names import SERVICE_PREFIXES

from . import security
from .config import AuthSettings
from .mailer import Mailer
from .repository import AuthRepository
from .signing import KeyRing

log = logging.getLogger("plotline.auth")

BAD_LOGIN = "invalid username or password"  # one message for unknown user and wrong password


class AuthService:
    def __init__(self, settings: AuthSettings, repo: AuthRepository, ring: KeyRing,
                 bus: Bus, mailer: Mailer | None) -> None:
        self.settings = settings
        self.repo = repo
        self.ring = ring
        self.bus = bus
        self.mailer = mailer
        # argon2 takes tens of ms of CPU: on the event loop it would stall every request
        # (health probes included). It runs in threads (argon2-cffi releases the GIL), at
        # most password_hash_workers at once.
        self._hashing = asyncio.Semaphore(settings.password_hash_workers)

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        async with self._hashing:
            return await asyncio.to_thread(fn, *args)

    # accounts
    async def register(self, username: str, password: str, email: str | None) -> dict[str, Any]:
        if not self.settings.multi_user:
            raise Forbidden("registration is off in single-user mode (start with -m)",
                            code="single_user_mode")
        if self.mailer and not email:
            raise Forbidden("an email address is required on this server",
                            code="email_required")
        if username in security.RESERVED_USERNAMES:
            # 422 like the other refused usernames (the name breaks a rule, not a race)
            raise Unprocessable(f"username {username!r} is reserved", code="username_reserved")
        record = {"username": username,
                  "password": await self._off_loop(security.hash_password, password),
                  "email": email, "verified": self.mailer is None, "created": time.time()}
        await self.repo.create_user(record)
        await self.bus.publish(username, AuthVerb.REGISTERED, {"email": email}, actor=username)
        if self.mailer and email:
            await self._send_verification(username, email)
        log.info("registered user %s", username)
        return self.public(record)

    async def _send_verification(self, username: str, email: str) -> None:
        token = secrets.token_urlsafe(32)
        await self.repo.put_verification(security.digest(token), username,
                                         self.settings.verify_ttl_seconds)
        link = f"{self.settings.public_url}{SERVICE_PREFIXES['auth']}/verify?token={token}"
        await self.mailer.send(email, "Confirm your Plotline account",  # type: ignore[union-attr]
                               f"Hello {username},\n\nconfirm your address: {link}\n")

    async def verify_email(self, token: str) -> dict[str, Any]:
        username = await self.repo.pop_verification(security.digest(token))
        found = await self.repo.get_user(username) if username else None
        if found is None:
            raise NotFound("unknown or expired verification link", code="invalid_token")
        record, version = found
        record["verified"] = True
        await self.repo.save_user(record, version)
        await self.bus.publish(record["username"], AuthVerb.VERIFIED, actor=record["username"])
        return self.public(record)

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        return {"username": record["username"], "email": record.get("email"),
                "verified": record.get("verified", True)}

    async def profile(self, username: str) -> dict[str, Any]:
        found = await self.repo.get_user(username)
        base = self.public(found[0]) if found else {"username": username}
        return {**base, "multi_user": self.settings.multi_user}

    # login
    async def login(self, username: str, password: str, client: str) -> str:
        """`client` is the peer address: failures count against it, never against the
        username alone, so nobody can lock another person out from elsewhere."""
        s = self.settings
        pair, addr = f"user:{username}@{client}", f"addr:{client}"
        if (await self.repo.failures(pair) >= s.login_max_failures
                or await self.repo.failures(addr) >= s.login_max_address_failures):
            raise TooManyRequests("too many failed logins; try again later",
                                  headers={"Retry-After": str(s.login_window_seconds)})
        found = await self.repo.get_user(username)
        # verify_password always runs argon2 (against a dummy hash for unknown users)
        stored = found[0]["password"] if found else None
        if not await self._off_loop(security.verify_password, stored, password):
            await self.repo.record_failure(pair, s.login_window_seconds)
            await self.repo.record_failure(addr, s.login_window_seconds)
            raise Unauthorized(BAD_LOGIN, code="invalid_credentials")
        if not found[0].get("verified", True):
            raise Forbidden("confirm your email address first", code="email_unverified")
        # only this pair's count: a success must not wipe an address's spraying record
        await self.repo.clear_failures(pair)
        return await self.start_session(username)

    async def start_session(self, username: str) -> tuple[str, str]:
        """A new login: (JWT, CSRF token). The JWT names its session (`sid`), which lives
        in auth's store until logout or the token's expiry; its `csrf` claim binds the
        CSRF token to it."""
        sid = security.new_session_id()
        await self.repo.put_session(sid, username, self.settings.token_ttl_seconds)
        csrf = secrets.token_urlsafe(24)
        return self.issue_token(username, sid, csrf=csrf_digest(csrf)), csrf

    def issue_token(self, username: str, sid: str, *, ttl: int | None = None,
                    **extra: str) -> str:
        """A JWT for `username` in session `sid` (a login's, or the API key it came from:
        revoking either ends the token at once, everywhere)."""
        now = int(time.time())
        return self.ring.sign({"sub": username, "sid": sid, "iat": now,
                               "exp": now + (ttl or self.settings.token_ttl_seconds),
                               "iss": self.settings.issuer, "aud": self.settings.audience,
                               **extra})

    async def logout(self, principal: Principal) -> None:
        """End the caller's session: its JWT stops working in every service, its sockets
        close. An API key is not a session: revoke it with DELETE /apikeys/{id}."""
        sid = principal.credential
        if principal.via == "apikey" or not sid:
            return
        await self.repo.end_session(sid)
        await self.bus.publish(sid, AuthVerb.REVOKED, {"username": principal.username},
                               actor=principal.username)
        log.info("signed out session %s of %s", sid, principal.username)

    async def check_session(self, sid: str) -> dict[str, Any] | None:
        """{"username", "key_id": sid} while the session (a login, or the API key a token
        was minted from) is live and its user exists, else None."""
        username = await self.repo.session_user(sid)
        if username is None and (key := await self.repo.get_key(sid)) is not None:
            username = key["username"]
        if username is None or await self.repo.get_user(username) is None:
            return None
        return {"username": username, "key_id": sid}

    # API keys
    async def create_key(self, username: str, name: str) -> dict[str, Any]:
        key_id, secret = security.new_api_key()
        record = {"id": key_id, "username": username, "name": name,
                  "hash": security.digest(secret), "created": time.time()}
        await self.repo.add_key(record)
        await self.bus.publish(key_id, AuthVerb.KEY_CREATED, {"username": username},
                               actor=username)
        return {**self.key_view(record), "key": secret}

    @staticmethod
    def key_view(record: dict[str, Any]) -> dict[str, Any]:
        return {"id": record["id"], "name": record["name"], "created": record["created"],
                "prefix": f"pl_{record['id']}_…"}

    async def list_keys(self, username: str) -> list[dict[str, Any]]:
        return [self.key_view(r) for r in await self.repo.keys_of(username)]

    async def revoke_key(self, username: str, key_id: str) -> None:
        record = await self.repo.get_key(key_id)
        if record is None or record["username"] != username:  # others' keys look absent
            raise NotFound("no such API key")
        await self.repo.delete_key(record)
        await self.bus.publish(key_id, AuthVerb.REVOKED, {"username": username},
                               actor=username)
        log.info("revoked API key %s of %s", key_id, username)

    async def check_key(self, api_key: str) -> dict[str, Any] | None:
        """{"username", "key_id"} for a live key, else None; constant-time comparison."""
        key_id = security.parse_key_id(api_key)
        record = await self.repo.get_key(key_id) if key_id else None
        if record is None or not security.same_digest(api_key, record["hash"]):
            return None
        return {"username": record["username"], "key_id": record["id"]}

"""Secrets: argon2id password hashes, API keys (random, stored as SHA-256), username rules."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.common.names import API_KEY_PREFIX, DEFAULT_USER, USERNAME_RULE_RE

USERNAME_RE = re.compile(USERNAME_RULE_RE)
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
# Names a person could use to pass as the server, its operators or the single-user account.
RESERVED_USERNAMES = frozenset({
    DEFAULT_USER, "admin", "administrator", "root", "system", "sysadmin", "superuser",
    "plotline", "anonymous", "anon", "guest", "nobody", "api", "public", "www", "web",
    "support", "security", "help", "info", "staff", "owner", "operator", "moderator",
    "postmaster", "webmaster", "hostmaster", "abuse", "noreply", "no-reply", "service",
    "services", "auth", "docs", "data", "push", "null", "undefined", "everyone",
})

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
# Checked when the user does not exist, so a wrong username costs the same time as a
# wrong password and timing reveals nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_id() -> str:
    """A NATS-token-safe id (hex)."""
    return secrets.token_hex(8)


def new_session_id() -> str:
    """A login session's id (the JWT's `sid`): longer than a key id, so never equal to one."""
    return secrets.token_hex(16)


def new_api_key() -> tuple[str, str]:
    """Returns (key id, full secret). The secret embeds its id so lookup needs no scan.

    API keys are 256-bit random, so SHA-256 is the right hash for them (a slow password
    hash would only make every API request slow without adding safety).
    """
    key_id = new_id()
    return key_id, f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse_key_id(api_key: str) -> str | None:
    body = api_key.removeprefix(API_KEY_PREFIX)
    key_id, sep, _ = body.partition("_")
    if not api_key.startswith(API_KEY_PREFIX) or not sep or not KEY_ID_RE.fullmatch(key_id):
        return None
    return key_id


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(secret: str, stored: str) -> bool:
    return hmac.compare_digest(digest(secret), stored)

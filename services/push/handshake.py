"""Who may open a socket, for both websocket servers (asgi.py, standalone.py).

Refusals are close codes with a reason, sent after accepting: a browser sees those, never
the HTTP status of a refused handshake.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from services.common.clientaddr import client_address
from services.common.errors import PlotlineError, Unavailable
from services.common.identity import Principal
from services.common.names import SESSION_COOKIE, WS_PROTOCOL, WS_TOKEN_PREFIX

# 4000 + the HTTP status that would say the same
BAD_CREDENTIALS = 4401
BAD_ORIGIN = 4403
TOO_MANY = 4429
TRY_AGAIN_LATER = 1013  # (RFC 6455's own): credentials could not be checked just now


class Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Slots:
    """Open sockets on this replica. A socket that presents credentials counts against its
    user (at most `per_user` each), so one runaway script cannot take a replica's memory.
    One that presents none (an anonymous viewer; in single-user mode every viewer is
    `defaultuser`, so counting them per user would cap a public page at `per_user`
    viewers) counts against its client address instead (at most `per_address` each)."""

    def __init__(self, per_user: int, per_address: int) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self._held: dict[tuple[str, str], int] = {}

    def take(self, key: tuple[str, str]) -> tuple[str, str]:
        """Hold one slot of `key` (("user", name) or ("address", host)); give it back."""
        held, limit = self._held.get(key, 0), self.limits[key[0]]
        if held >= limit:
            raise Refused(TOO_MANY, f"at most {limit} open sockets per {key[0]}")
        self._held[key] = held + 1
        return key

    def give(self, key: tuple[str, str]) -> None:
        held = self._held.pop(key) - 1
        if held:
            self._held[key] = held


def offered_protocols(conn: HTTPConnection) -> list[str]:
    return [p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",")
            if p.strip()]


def chosen_protocol(conn: HTTPConnection) -> str | None:
    """The subprotocol to answer: ours when the client offered it (a browser fails a
    handshake whose answer names none of those it offered)."""
    return WS_PROTOCOL if WS_PROTOCOL in offered_protocols(conn) else None


def given_token(conn: HTTPConnection) -> str | None:
    """A token offered as the subprotocol `plotline.token.<token>`, else ?token=."""
    for protocol in offered_protocols(conn):
        if protocol.startswith(WS_TOKEN_PREFIX) and len(protocol) > len(WS_TOKEN_PREFIX):
            return protocol[len(WS_TOKEN_PREFIX):]
    return conn.query_params.get("token") or None


def presents_credentials(conn: HTTPConnection) -> bool:
    return bool(conn.headers.get("authorization") or conn.cookies.get(SESSION_COOKIE)
                or given_token(conn))


async def admit(conn: HTTPConnection, settings: Any, authenticator: Any,
                slots: Slots) -> tuple[Principal | None, tuple[str, str]]:
    """The caller (None: anonymous) and the slot it holds (give it back on close), or
    Refused. Credentials as for REST (header, cookie), plus a token for browsers (offered
    as the subprotocol plotline.token.<token>, or in ?token=). A page on another site (an
    Origin that is neither this server's host nor a listed one: a plot embedded there, or
    the sandboxed frame's opaque `null`) may not use its visitor's cookies: it is
    anonymous unless it brings a token (a scoped one, say). In single-user mode, where
    every caller is the owner, such a page is refused."""
    origin = conn.headers.get("origin")
    foreign = bool(origin) and origin not in settings.allowed_origins and \
        urlsplit(origin).netloc != conn.headers.get("host")
    token = given_token(conn)
    try:
        if token:
            principal = await authenticator.from_token(token, scoped=True)
        elif foreign:
            if not authenticator.multi_user:  # there, anyone who connects is the owner
                raise Refused(BAD_ORIGIN, "origin not allowed")
            principal = None
        else:
            principal = await authenticator.resolve(conn, "GET", scoped=True)
    except Unavailable as exc:  # auth away: not a verdict on the credentials
        raise Refused(TRY_AGAIN_LATER, "credentials cannot be checked just now: "
                      "reconnect shortly") from exc
    except PlotlineError as exc:
        raise Refused(BAD_CREDENTIALS, exc.detail[:120]) from exc
    if principal is not None and (token or (not foreign and presents_credentials(conn))):
        return principal, slots.take(("user", principal.username))
    # the socket's peer, or the client a trusted proxy names (as for login throttling)
    return principal, slots.take(("address", client_address(conn, settings.trusted_proxies)))

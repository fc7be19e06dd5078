"""Who is at the other end: the client address that limits and throttles count against.

Behind nginx or an Ingress every connection comes from the proxy, so counting the socket's
peer would put every visitor in one bucket (one visitor's failed logins would lock out
everyone; the 1,001st anonymous viewer of the whole install would be refused). The peer is
replaced by what `X-Forwarded-For` says only when the peer is a proxy we were told to
trust (`trusted_proxies`, CIDRs); then the address is the right-most entry that is not a
trusted proxy itself, since everything left of it was written by the client and proves
nothing. With no trusted proxies (the embedded default) the header is never read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in trusted if n.strip())


def _trusted(address: str, trusted: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(conn: HTTPConnection, trusted_proxies: Iterable[str] = ()) -> str:
    peer = conn.client.host if conn.client else "unknown"
    trusted = networks(tuple(trusted_proxies))
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in conn.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer

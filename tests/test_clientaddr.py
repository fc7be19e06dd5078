"""The client address limits count against (services/common/clientaddr.py)."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from services.common.clientaddr import client_address

PROXY = ["127.0.0.1/32", "10.0.0.0/8"]


def conn(peer: str, forwarded: str | None = None) -> HTTPConnection:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return HTTPConnection({"type": "http", "headers": headers, "client": (peer, 1234)})


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    # no trusted proxies: the header is never read
    ("127.0.0.1", "203.0.113.9", [], "127.0.0.1"),
    # a peer that is not a trusted proxy cannot name someone else
    ("198.51.100.7", "203.0.113.9", PROXY, "198.51.100.7"),
    # through the proxy: the client it saw
    ("127.0.0.1", "203.0.113.9", PROXY, "203.0.113.9"),
    # what the client wrote itself (left of the proxy's entry) proves nothing
    ("127.0.0.1", "1.2.3.4, 203.0.113.9", PROXY, "203.0.113.9"),
    # two trusted hops (Ingress controller, then nginx): the first untrusted from the right
    ("127.0.0.1", "203.0.113.9, 10.1.2.3", PROXY, "203.0.113.9"),
    # junk in the chain is an untrusted hop like any other, never an error
    ("127.0.0.1", "not-an-address", PROXY, "not-an-address"),
    # a trusted peer with no header: the peer
    ("127.0.0.1", None, PROXY, "127.0.0.1"),
    ("127.0.0.1", " , ", PROXY, "127.0.0.1"),
    # IPv6
    ("::1", "2001:db8::5", ["::1/128"], "2001:db8::5"),
])
def test_client_address(peer, forwarded, trusted, expected) -> None:
    assert client_address(conn(peer, forwarded), trusted) == expected

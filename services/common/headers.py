"""Security headers on every HTTP answer of every service (OWASP API8, misconfiguration).

API answers get a policy that lets nothing run or frame them; pages set their own policy
(services/docs/pages.py PAGE_CSP) and keep it. Plain ASGI, like Metrics: only the response
start is touched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# An API answer is data: nothing in it may load, run or be framed if a browser opens it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
UNLESS_SET: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", API_CSP.encode()),
    (b"x-frame-options", b"DENY"),
)


def secured(send: Send) -> Send:
    """`send`, adding the headers to the response start (front doors use it directly)."""

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            # a response with its own policy says who may frame it (frame-ancestors)
            owned = b"content-security-policy" in present
            headers += [(n, v) for n, v in ALWAYS + UNLESS_SET
                        if n not in present and not (owned and n == b"x-frame-options")]
            message = {**message, "headers": headers}
        await send(message)

    return with_headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        await self.app(scope, receive, secured(send))

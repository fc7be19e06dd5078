"""Cross-origin calls for viewers on other sites: what `/embed` needs, and no more.

An embedded plot's page (viewer.js on someone else's site) reloads its document, fills its
bound sources and renews its scoped token with `fetch`; a browser lets it read those
answers only with CORS headers. They are given on those calls alone, as
`Access-Control-Allow-Origin: *` without credentials: a browser never sends the visitor's
cookies with such a request nor shows it a cookie-authenticated answer, so another
site sees only what is anonymous (published, or a share link's), or what a scoped token it
was given lets it read (`Authorization: Bearer`). In single-user mode nothing is given:
there every caller is the owner.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .front import route_path
from .headers import secured
from .names import SERVICE_PREFIXES

ID = "[A-Za-z0-9]+"
# What a viewer on another site calls, per service (paths below the app's root path), and
# with which method: its document, a source's rows and views, and renewing its token.
VIEWER_CALLS = {
    "docs": (re.compile(rf"^{SERVICE_PREFIXES['docs']}/{ID}$"), "GET"),
    "data": (re.compile(
        rf"^{SERVICE_PREFIXES['data']}/sources/{ID}(/data|/downsample|/aggregate)?$"), "GET"),
    "auth": (re.compile(rf"^{SERVICE_PREFIXES['auth']}/doc-token$"), "POST"),
}
ALLOW = [(b"access-control-allow-origin", b"*"),
         (b"access-control-expose-headers",
          b"ETag, X-Plotline-Version, X-Plotline-X-Range, X-Plotline-Y-Range")]
PREFLIGHT = ALLOW + [(b"access-control-allow-headers", b"Authorization, Accept, Content-Type"),
                     (b"access-control-max-age", b"600"),
                     (b"content-length", b"0")]


class ViewerCORS:
    """ASGI wrapper (outermost, so that a service's front door is covered too)."""

    def __init__(self, app: ASGIApp, state: Any, service: str) -> None:
        self.app = app
        self.state = state  # app.state: its authenticator says whether multi-user
        self.paths, self.method = VIEWER_CALLS[service]

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] not in (self.method, "HEAD", "OPTIONS"):
            return False
        if not any(name == b"origin" for name, _ in scope["headers"]):
            return False
        authenticator = getattr(self.state, "authenticator", None)
        if authenticator is None or not authenticator.multi_user:
            return False
        return bool(self.paths.match(route_path(scope)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._applies(scope):
            return await self.app(scope, receive, send)
        if scope["method"] == "OPTIONS":  # a preflight (for the Authorization header)
            send = secured(send)
            methods = (b"access-control-allow-methods", self.method.encode())
            await send({"type": "http.response.start", "status": 204,
                        "headers": [*PREFLIGHT, methods]})
            await send({"type": "http.response.body", "body": b""})
            return

        async def allowed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *ALLOW]}
            await send(message)

        await self.app(scope, receive, allowed)

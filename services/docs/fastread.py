"""The hot read, `GET /api/v1/docs/{id}`, answered before FastAPI's routing.

Viewers and scripts poll documents far more often than anything else; the answer is cached
bytes per version, so FastAPI's own work would be most of the request (services/common/
front.py). Its FastAPI twin, for OpenAPI, is routes.get_document.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from services.common.deps import in_scope
from services.common.errors import Unprocessable
from services.common.front import Front, send_json
from services.common.names import MAX_SHARE_KEY, SERVICE_PREFIXES

PREFIX = SERVICE_PREFIXES["docs"] + "/"


class FastRead(Front):
    method, service, route = "GET", "docs", SERVICE_PREFIXES["docs"] + "/{doc_id}"

    def key(self, path: str) -> str | None:
        doc_id = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        return doc_id if doc_id.isalnum() else None

    async def answer(self, scope: Scope, doc_id: str, receive: Receive, send: Send) -> int:
        share = None
        if scope.get("query_string"):
            share = parse_qs(scope["query_string"].decode()).get("share", [None])[0]
        if share is not None and len(share) > MAX_SHARE_KEY:  # (as the twin's ShareKey)
            raise Unprocessable(f"query.share: String should have at most {MAX_SHARE_KEY} "
                                "characters")
        # (as routes.get_document: a token scoped to this document may read it)
        principal = in_scope(await self.state.authenticator.resolve(
            HTTPConnection(scope), "GET", scoped=True), doc_id)
        meta, body = await self.state.docs.read(doc_id, principal, share)
        etag = f'"{meta["version"]}"'.encode()
        if (b"if-none-match", etag) in scope["headers"]:
            await send({"type": "http.response.start", "status": 304,
                        "headers": [(b"etag", etag)]})
            await send({"type": "http.response.body", "body": b""})
            return 304
        return await send_json(send, 200, body, [(b"etag", etag)])

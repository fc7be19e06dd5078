"""The one error root: every error an answer can carry is a PlotlineError, and its class
says the status and the stable code.

Only the classes live here; how they become HTTP answers ({"error", "detail"}, the handlers,
the OpenAPI responses) is services/common/httperrors.py.
"""

from __future__ import annotations

from typing import Any


class PlotlineError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.headers = headers


class BadRequest(PlotlineError):
    pass


class Unauthorized(PlotlineError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str = "authentication required", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(PlotlineError):
    status, code = 403, "forbidden"


class NotFound(PlotlineError):
    status, code = 404, "not_found"


class Conflict(PlotlineError):
    status, code = 409, "conflict"


class PreconditionFailed(PlotlineError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(PlotlineError):
    status, code = 413, "payload_too_large"


class BodyTooLarge(PayloadTooLarge):
    """A request body over `limit` (BodyLimit's and the front doors'). The rest of the body
    is never read, so the connection cannot carry another request: say so, or a keep-alive
    client would send its next one into a closing socket."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes", headers={"Connection": "close"})


class Unprocessable(PlotlineError):
    status, code = 422, "invalid_request"


class TooManyRequests(PlotlineError):
    status, code = 429, "too_many_requests"


class Unavailable(PlotlineError):
    """A dependency (NATS, the store, another service) is away: retry shortly. Every 503
    says when, so clients back off instead of hammering (and never mistake it for a no)."""

    status, code = 503, "unavailable"
    RETRY_AFTER_S = 2

    def __init__(self, detail: str, **kw: Any) -> None:
        kw.setdefault("headers", {"Retry-After": str(self.RETRY_AFTER_S)})
        super().__init__(detail, **kw)

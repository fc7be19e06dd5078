"""Domain errors carry their status; one handler renders every error as {"error", "detail"}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("plotline.errors")


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


def body_too_large(limit: int) -> PayloadTooLarge:
    """The 413 for a body over `limit` (BodyLimit's and the front doors'). The rest of the
    body is never read, so the connection cannot carry another request: say so, or a
    keep-alive client would send its next one into a closing socket."""
    return PayloadTooLarge(f"request body exceeds {limit} bytes",
                           headers={"Connection": "close"})


def announced_too_large(scope: Any, limit: int) -> bool:
    """The request's Content-Length says its body is over `limit`."""
    return any(name == b"content-length" and value.isdigit() and int(value) > limit
               for name, value in scope["headers"])


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


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 412: "precondition_failed",
               413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 429: "too_many_requests", 503: "unavailable"}


class ErrorBody(BaseModel):
    """The body of every error answer."""

    error: str = Field(description="a stable code for programs, e.g. not_found")
    detail: str = Field(description="what went wrong, for people")


# What each error status means on this API, for the OpenAPI document.
_MEANINGS = {
    400: "Malformed request: a body that is not UTF-8 JSON, a bad If-Match header",
    401: "Not signed in, or the credentials are invalid, expired or revoked",
    403: "Signed in but not allowed (or a missing CSRF header on a cookie request)",
    404: "No such resource, or one the caller may not see",
    409: "Conflicts with the current state (a name taken, a model in use, a busy writer)",
    412: "If-Match names a version that is no longer current",
    413: "The request body, or the data it decodes to, is too large",
    422: "The request is well-formed but its content is invalid",
    429: "Too many attempts; retry after the Retry-After header",
    503: "A service this answer depends on is not reachable",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the error statuses it can answer, all `{error, detail}`."""
    return {s: {"model": ErrorBody, "description": _MEANINGS[s]} for s in statuses}


def error_response(status: int, code: str, detail: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the one rendering of errors; nothing escapes as a bare 500 page."""

    @app.exception_handler(PlotlineError)
    async def _domain(_: Request, exc: PlotlineError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _describe(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error")

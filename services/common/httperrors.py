"""How errors become HTTP answers: the `{"error", "detail"}` body, the handlers that render
every error so (nothing escapes as a bare 500 page), and what each status means in the
OpenAPI document. The error classes are services/common/errors.py.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import PlotlineError

log = logging.getLogger("plotline.errors")


def announced_too_large(scope: Any, limit: int) -> bool:
    """The request's Content-Length says its body is over `limit`."""
    return any(name == b"content-length" and value.isdigit() and int(value) > limit
               for name, value in scope["headers"])


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


def answer_for(exc: PlotlineError) -> JSONResponse:
    """The answer an error is."""
    return error_response(exc.status, exc.code, exc.detail, exc.headers)


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
        return answer_for(exc)

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

"""Data HTTP routes (thin): sources, rows, appends, patches, columns."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, Field

from services.common.deps import CurrentUser, DocReader, MaybeUser
from services.common.errors import Unprocessable
from services.common.httperrors import errors
from services.common.models import Out
from services.common.names import ARROW_STREAM, MAX_SHARE_KEY, SERVICE_PREFIXES

from . import columns as cols
from .repository import ranges_text
from .service import DataService

router = APIRouter(prefix=SERVICE_PREFIXES["data"], tags=["data"])
ARROW = ARROW_STREAM
LOST_HEADER = "X-Plotline-Lost-Rows"  # start:stop,... of rows the blob store lost
Name = Annotated[str, Field(min_length=1, max_length=200)]
Rollover = Annotated[int | None, Field(default=None, ge=0)]


def via(doc: str | None = None,
        share: Annotated[str | None, Query(max_length=MAX_SHARE_KEY)] = None
        ) -> tuple[str | None, str | None]:
    """A reader coming through a document (`?doc=`), with its share key (`&share=`)."""
    return doc, share


Via = Annotated[tuple[str | None, str | None], Depends(via)]


async def get_data(request: Request) -> DataService:
    return request.app.state.data


Data = Annotated[DataService, Depends(get_data)]


class CreateIn(BaseModel):
    name: Name
    columns: dict[str, Any] = Field(default_factory=dict)
    dtypes: dict[str, str] | None = None
    rollover: Rollover = None


class ReplaceIn(BaseModel):
    columns: dict[str, Any]
    dtypes: dict[str, str] | None = None


class AppendIn(BaseModel):
    columns: dict[str, Any]
    rollover: Rollover = None


class PatchIn(BaseModel):
    patches: dict[str, list[Any]]


class ColumnIn(BaseModel):
    values: list[Any]
    dtype: str | None = None


class SourceListed(Out):
    id: str
    name: str
    owner: str
    version: int
    rows: int


class ColumnOut(Out):
    name: str
    dtype: str
    hash: str


LOST = Field(default_factory=list, description="[start, stop) ranges of rows the blob store "
             "lost (read as nulls; POST .../repair drops them); empty when whole")


class SourceOut(SourceListed):
    rollover: int | None
    created: float
    updated: float
    columns: list[ColumnOut]
    lost: list[list[int]] = LOST


class VersionOut(Out):
    version: int
    rows: int = Field(description="the source's rows after the change")


class RepairOut(VersionOut):
    dropped_rows: int = Field(description="rows dropped with the lost chunks (0: none lost)")


class RowsOut(Out):
    version: int
    rows: int = Field(description="the rows in this answer")
    lost: list[list[int]] = LOST
    columns: dict[str, list[Any] | dict[str, Any]] = Field(
        description="lists; with encoding=binary, numeric columns as Bokeh's ndarray "
        "encoding ({type: ndarray, array: {type: bytes, data: base64}, shape, dtype, order})")


class PointsOut(Out):
    version: int
    x: list[Any]
    y: list[Any]
    n: int
    lost: list[list[int]] = Field(default_factory=list, description="[start, stop) ranges "
                                  "of rows the blob store lost, left out of the points")


class RasterOut(Out):
    version: int
    agg: str
    width: int
    height: int
    grid: list[list[float | None]] = Field(description="row 0 = lowest y; null = no data")


BINARY = {"schema": {"type": "string", "format": "binary"}}
# Error statuses by kind of operation. Every call may carry credentials (401 when they are
# bad, 503 when the session check or a document's grant is unreachable); a missing or
# unreadable id is 404 (401 anonymous); a change can be refused (403: read-only), lose to
# too many writers (409 busy) or carry a body (413, 422; 400 when FastAPI cannot decode it:
# create and append read their bodies themselves, and answer 422).
LIST = errors(401, 403, 503)
READ = errors(401, 403, 404, 422, 503)
CHANGE = errors(401, 403, 404, 409, 413, 422, 503)
WITH_BODY = errors(400, 401, 403, 404, 409, 413, 422, 503)


def is_arrow(content_type: str) -> bool:
    return content_type.split(";")[0].strip() in (ARROW, "application/vnd.apache.arrow.file")


def parse_json(body: bytes, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(body)
    except ValueError as exc:
        raise Unprocessable(f"invalid JSON body: {str(exc).splitlines()[0]}") from exc


async def json_body(request: Request, model: type[BaseModel]) -> Any:
    return parse_json(await request.body(), model)


def version(m: dict[str, Any]) -> dict[str, int]:
    return {"version": m["version"], "rows": m["rows"]}


@router.get("/sources", response_model=list[SourceListed], responses=LIST)
async def list_sources(user: MaybeUser, data: Data) -> list[dict[str, Any]]:
    """My sources."""
    return await data.list_for(user)


@router.post("/sources", status_code=status.HTTP_201_CREATED, response_model=SourceOut,
             responses=CHANGE, openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": CreateIn.model_json_schema()},
                 ARROW: BINARY}}})
async def create_source(request: Request, user: CurrentUser, data: Data,
                        name: str | None = None, rollover: int | None = None) -> dict:
    """Create from JSON columns, or from an Arrow IPC body (`?name=&rollover=`)."""
    if is_arrow(request.headers.get("content-type", "")):
        table = cols.table_from_arrow(await request.body(),
                                      max_bytes=data.settings.max_body_bytes)
        if not name:
            raise Unprocessable("an Arrow body needs ?name=")
    else:
        body = await json_body(request, CreateIn)
        name, rollover = body.name, body.rollover
        table = cols.table_from_json(body.columns, body.dtypes,
                                     max_bytes=data.settings.max_body_bytes)
    if rollover is not None and rollover < 0:
        raise Unprocessable("rollover must be >= 0")
    return await data.create(user, name, table, rollover)


@router.get("/sources/{source_id}", response_model=SourceOut, responses=READ)
async def describe(source_id: str, user: DocReader, data: Data, through: Via) -> dict:
    """Rows, version, rollover, and each column's dtype and content hash."""
    return await data.describe_source(source_id, user, through)


@router.get("/sources/{source_id}/data", response_model=RowsOut,
            responses={200: {"content": {ARROW: BINARY}}, **READ})
async def read_rows(source_id: str, request: Request, user: DocReader, data: Data,
                    through: Via, columns: str | None = None, start: int | None = None,
                    stop: int | None = None,
                    encoding: Literal["json", "binary"] = "json") -> Response:
    """Columnar JSON, or Arrow IPC with `Accept: application/vnd.apache.arrow.stream`.
    `encoding=binary`: numeric columns as Bokeh's ndarray encoding (base64 bytes, typed
    arrays in a browser: what the viewer reads)."""
    names = [c for c in columns.split(",") if c] if columns else None
    m, table = await data.read(source_id, user, names, start, stop, through)
    headers = {"ETag": f'"{m["version"]}"', "X-Plotline-Version": str(m["version"])}
    if m["lost"]:  # (Arrow answers too: their nulls say nothing of why)
        headers[LOST_HEADER] = ranges_text(m["lost"])
    if ARROW in request.headers.get("accept", ""):
        return Response(cols.to_arrow(table), media_type=ARROW, headers=headers)
    encoded = cols.to_bokeh(table) if encoding == "binary" else cols.to_json(table)
    body = {"version": m["version"], "rows": table.num_rows, "columns": encoded}
    if m["lost"]:
        body["lost"] = [list(r) for r in m["lost"]]
    return Response(json.dumps(body, allow_nan=False, separators=(",", ":")),
                    media_type="application/json", headers=headers)


KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def idempotency_key(value: str | None) -> str | None:
    """The `Idempotency-Key` header of an append: 1-64 letters, digits, '_' or '-'."""
    if not value:
        return None
    if not KEY_RE.fullmatch(value):
        raise Unprocessable("Idempotency-Key is 1-64 letters, digits, '_' or '-'")
    return value


@router.put("/sources/{source_id}/data", response_model=VersionOut, responses=WITH_BODY,
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": ReplaceIn.model_json_schema()},
                ARROW: BINARY}}})
async def replace_rows(source_id: str, request: Request, user: CurrentUser,
                       data: Data) -> dict[str, int]:
    """Replace every row and column (JSON columns or Arrow), as `source.data = {...}` does
    in Bokeh; the source keeps its id, name and rollover. Viewers refetch it."""
    if is_arrow(request.headers.get("content-type", "")):
        table = cols.table_from_arrow(await request.body(),
                                      max_bytes=data.settings.max_body_bytes)
    else:
        body = await json_body(request, ReplaceIn)
        table = cols.table_from_json(body.columns, body.dtypes,
                                     max_bytes=data.settings.max_body_bytes)
    return version(await data.replace(source_id, user, table))


def append_input(body: bytes, content_type: str, rollover: int | None, max_bytes: int
                 ) -> tuple[Any, int | None]:
    """An append's rows (an Arrow table, or the JSON columns) and its rollover (`?rollover=`,
    or the JSON body's, which wins when given); shared by this route and its front door
    (fastappend.py). `max_bytes` bounds the decoded Arrow rows (JSON: DataService.append)."""
    if is_arrow(content_type):
        batch = cols.table_from_arrow(body, max_bytes=max_bytes)
    else:
        parsed = parse_json(body, AppendIn)
        batch = parsed.columns
        if parsed.rollover is not None:
            rollover = parsed.rollover
    if rollover is not None and rollover < 0:
        raise Unprocessable("rollover must be >= 0")
    return batch, rollover


# Requests are answered by fastappend.FastAppend before they reach FastAPI; this route is
# their OpenAPI description (and serves an app used without its front door).
@router.post("/sources/{source_id}/append", response_model=VersionOut, responses=CHANGE,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": AppendIn.model_json_schema()},
                 ARROW: BINARY}}})
async def append(source_id: str, request: Request, user: CurrentUser, data: Data,
                 rollover: int | None = None,
                 idempotency: Annotated[str | None, Header(alias="Idempotency-Key")] = None
                 ) -> dict[str, int]:
    """Stream rows in (JSON columns or Arrow); acknowledged once durable. With an
    `Idempotency-Key` header, sending the same append again (after a lost answer) appends
    nothing and answers as the first time (the source remembers its last 64 keys)."""
    key = idempotency_key(idempotency)
    batch, rollover = append_input(await request.body(),
                                   request.headers.get("content-type", ""), rollover,
                                   data.settings.max_body_bytes)
    return await data.append(source_id, user, batch, rollover, key)


@router.post("/sources/{source_id}/patch", response_model=VersionOut, responses=WITH_BODY)
async def patch(source_id: str, body: PatchIn, user: CurrentUser, data: Data) -> dict:
    """Change cells: `{"patches": {col: [[index or slice, value], ...]}}` as Bokeh does."""
    return version(await data.patch(source_id, user, body.patches))


@router.put("/sources/{source_id}/columns/{name}", response_model=VersionOut,
            responses=WITH_BODY)
async def put_column(source_id: str, name: str, body: ColumnIn, user: CurrentUser,
                     data: Data) -> dict[str, int]:
    """Add or replace one column."""
    column = cols.table_from_json({name: body.values},
                                  {name: body.dtype} if body.dtype else None,  # one column
                                  max_bytes=data.settings.max_body_bytes)
    return version(await data.set_column(source_id, user, name, column))


@router.delete("/sources/{source_id}/columns/{name}", response_model=VersionOut,
               responses=CHANGE)
async def delete_column(source_id: str, name: str, user: CurrentUser, data: Data) -> dict:
    """Remove one column."""
    return version(await data.set_column(source_id, user, name, None))


@router.post("/sources/{source_id}/repair", response_model=RepairOut, responses=CHANGE)
async def repair_source(source_id: str, user: CurrentUser, data: Data) -> dict:
    """Drop the rows whose chunks the blob store lost (`lost` in the source's description,
    `X-Plotline-Lost-Rows` on its reads), so the source takes writes again; the rows after
    them move up. Nothing lost: nothing dropped. To rebuild them instead, PUT the whole
    data again."""
    m, dropped = await data.repair(source_id, user)
    return {**version(m), "dropped_rows": dropped}


@router.delete("/sources/{source_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=CHANGE)
async def delete_source(source_id: str, user: CurrentUser, data: Data) -> None:
    """Delete the source and its data."""
    await data.delete(source_id, user)


# --- large data ----------------------------------------------------------------------------

async def get_views(request: Request) -> Any:
    return request.app.state.views


def parse_range(text: str | None, name: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise Unprocessable(f"{name} must be 'low,high'") from None
    return lo, hi


@router.get("/sources/{source_id}/downsample", response_model=PointsOut, responses=READ)
async def downsample(source_id: str, user: DocReader, x: str, y: str,
                     views: Annotated[Any, Depends(get_views)], through: Via,
                     response: Response, n: int = 2000, method: str = "minmaxlttb",
                     x0: float | None = None, x1: float | None = None) -> dict[str, Any]:
    """At most n representative points of y over x in [x0, x1] (MinMaxLTTB by default);
    rows the blob store lost are left out and named (`lost`, X-Plotline-Lost-Rows)."""
    points = await views.downsample(source_id, user, x, y, n, method, x0, x1, through)
    if points["lost"]:
        response.headers[LOST_HEADER] = ranges_text(points["lost"])
    return points


@router.get("/sources/{source_id}/aggregate", response_model=RasterOut,
            responses={200: {"content": {"image/png": BINARY}}, **READ})
async def aggregate(source_id: str, request: Request, user: DocReader, x: str, y: str,
                    views: Annotated[Any, Depends(get_views)], through: Via, width: int = 800,
                    height: int = 600, x_range: str | None = None, y_range: str | None = None,
                    agg: str = "count", value: str | None = None,
                    format: str | None = None) -> Response:
    """A raster of the points (count, sum or mean per pixel): PNG (`format=png` or
    `Accept: image/png`) or a JSON array, row 0 = lowest y. `X-Plotline-X-Range` and
    `X-Plotline-Y-Range` say the ranges drawn (the data's own where none was given)."""
    png = format == "png" or "image/png" in request.headers.get("accept", "")
    m, content = await views.aggregate(source_id, user, x, y, width, height,
                                       parse_range(x_range, "x_range"),
                                       parse_range(y_range, "y_range"), agg, value, through,
                                       png=png)
    (x0, x1), (y0, y1) = m["ranges"]
    headers = {"X-Plotline-Version": str(m["version"]), "X-Plotline-X-Range": f"{x0!r},{x1!r}",
               "X-Plotline-Y-Range": f"{y0!r},{y1!r}"}
    if m["lost"]:  # (their points are not in the raster)
        headers[LOST_HEADER] = ranges_text(m["lost"])
    return Response(content, media_type="image/png" if png else "application/json",
                    headers=headers)

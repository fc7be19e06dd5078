"""Remote data sources: `Session.data_source(...)` returns a `DataSource`.

A DataSource is a handle on one source of the data service. Its rows live there, not in this
process (unless asked for with `to_arrow`), so a document that binds it (`bind`) stays small
and every viewer's page reads the rows from the server. Bulk transfers go as Arrow IPC in
chunks with a progress callback; a small `stream` goes as JSON (for ten rows, JSON is smaller
and quicker to make than Arrow's framing).

    src = session.data_source("prices", {"t": [1, 2], "price": [10.0, 10.5]}, rollover=1000)
    src.stream({"t": [3], "price": [10.7]})      # every open viewer draws the new row
    src.patch({"price": [(0, 9.9)]})             # as ColumnDataSource.patch
    src.add("volume", [5, 7, 1]); src.remove("volume")
    src.to_pandas(); src.downsample("t", "price", n=500); src.aggregate("t", "price")
    p.line("t", "price", source=src.bind(ColumnDataSource()))  # the plot reads the source
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from services.common.bokeh.wire import number
from services.common.names import ARROW_STREAM, SERVICE_PREFIXES, SOURCE_TAG
from services.common.names import channel as channel_name

if TYPE_CHECKING:
    from .session import Session

# A stream of at most this many cells of plain Python values goes as JSON, a bigger one (or
# one holding numpy arrays, datetimes, NaN...) as Arrow.
JSON_CELLS = 10_000
DATA = SERVICE_PREFIXES["data"]
Progress = Callable[[int, int], object]


def as_table(data: Any) -> Any:
    """A pyarrow Table from what people hold columns in: a dict of columns (lists or numpy
    arrays), a pandas or polars DataFrame, a pyarrow Table or RecordBatch, or a Bokeh
    ColumnDataSource (its `data`). A column with no values yet (or only None) is float64.
    TypeError for anything else, ValueError for columns of different lengths."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        return pa.table({str(name): _column(data[name]) for name in data.columns})
    if module == "polars":
        return data.to_arrow()
    if module == "bokeh" and hasattr(data, "data"):
        data = dict(data.data)
    if isinstance(data, dict):
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise ValueError("every column must have the same number of values, not "
                             + ", ".join(f"{k}: {len(v)}" for k, v in data.items()))
        return pa.table({str(k): _column(v) for k, v in data.items()})
    raise TypeError(f"cannot make columns of a {type(data).__name__}: give a dict of "
                    "columns, a pandas or polars DataFrame, or a pyarrow Table")


def _column(values: Any) -> Any:
    import pyarrow as pa

    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    if type(values).__module__.split(".")[0] == "pandas":
        # NaN stays NaN in a float column (a gap in a Bokeh line; pandas would make it a
        # null, which a plot draws at 0); pandas' own nullable types keep their nulls
        if values.dtype.kind == "f":
            return pa.array(values.to_numpy(), from_pandas=False)
        return pa.Array.from_pandas(values)
    array = pa.array(values if not isinstance(values, tuple) else list(values))
    # a column with no values (or only None) has no type to tell: float64, Bokeh's default
    return array.cast(pa.float64()) if pa.types.is_null(array.type) else array


def chunks(table: Any, chunk_rows: int, chunk_bytes: int) -> Iterator[tuple[Any, int]]:
    """(slice, rows so far) of at most `chunk_rows` rows and about `chunk_bytes` bytes; one
    empty slice for a table without rows (so a source still gets its columns)."""
    per_row = table.nbytes / table.num_rows if table.num_rows else 0
    step = max(1, min(chunk_rows, int(chunk_bytes // per_row) if per_row else chunk_rows))
    if not table.num_rows:
        yield table, 0
        return
    for start in range(0, table.num_rows, step):
        part = table.slice(start, step)
        yield part, start + part.num_rows


def json_columns(data: Any) -> dict[str, list] | None:
    """`data` (a dict of columns: lists, tuples, numpy arrays or pandas Series of numbers)
    as JSON lists when it is at most JSON_CELLS plain finite values; else None, and it goes
    as Arrow (NaN, datetimes, strings in numpy, many rows)."""
    if not isinstance(data, dict) or not data:
        return None
    out, cells = {}, 0
    for name, values in data.items():
        if hasattr(values, "tolist"):
            if getattr(values, "dtype", None) is None or values.dtype.kind not in "biuf":
                return None
            values = values.tolist()
        if not isinstance(values, list | tuple):
            return None
        cells += len(values)
        if cells > JSON_CELLS:
            return None
        for v in values:
            if not (v is None or isinstance(v, str | bool | int)
                    or (type(v) is float and math.isfinite(v))):
                return None
        out[str(name)] = list(values)
    return out


def json_patches(patches: dict[str, list]) -> dict[str, list]:
    """ColumnDataSource.patch's `{column: [(index or slice, value), ...]}` as the data
    service's JSON (a slice as `{"start", "stop", "step"}`, NaN as Bokeh writes it)."""
    return {name: [[_index(i), _value(v)] for i, v in changes]
            for name, changes in patches.items()}


class DataSource:
    """One data source of the server (see the module's docstring). `meta` is the server's
    last description of it: `{id, name, owner, version, rows, rollover, columns}`."""

    def __init__(self, session: Session, meta: dict[str, Any]) -> None:
        self.session = session
        self.id: str = meta["id"]
        self.meta = meta
        self._callbacks: list[Callable[[dict | None, dict], Any]] = []

    def __repr__(self) -> str:
        return (f"DataSource({self.id!r}, name={self.meta.get('name')!r}, "
                f"rows={self.meta.get('rows')}, version={self.meta.get('version')})")

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def version(self) -> int:
        """The version this handle last saw (`describe()` asks the server)."""
        return self.meta["version"]

    @property
    def rows(self) -> int:
        return self.meta["rows"]

    @property
    def path(self) -> str:
        return f"{DATA}/sources/{self.id}"

    # --- reading -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The server's description now (and this handle's `meta` from now on)."""
        self.meta = self.session._json("GET", self.path)
        return self.meta

    def columns(self) -> list[str]:
        """The column names, in order."""
        return [c["name"] for c in self.describe()["columns"]]

    def dtypes(self) -> dict[str, str]:
        return {c["name"]: c["dtype"] for c in self.describe()["columns"]}

    def to_arrow(self, columns: list[str] | None = None, start: int | None = None,
                 stop: int | None = None, *, progress: Progress | None = None) -> Any:
        """The rows (or `columns`, rows `start:stop`) as a pyarrow Table, read as Arrow IPC;
        `progress(bytes done, bytes total)` as the answer arrives."""
        import pyarrow as pa

        params: dict[str, Any] = {}
        if columns:
            params["columns"] = ",".join(columns)
        if start is not None:
            params["start"] = start
        if stop is not None:
            params["stop"] = stop
        body = self.session._download(f"{self.path}/data", params=params,
                                      headers={"Accept": ARROW_STREAM}, progress=progress)
        with pa.ipc.open_stream(body) as reader:
            return reader.read_all()

    def to_pandas(self, columns: list[str] | None = None, start: int | None = None,
                  stop: int | None = None, *, progress: Progress | None = None) -> Any:
        return self.to_arrow(columns, start, stop, progress=progress).to_pandas()

    def downsample(self, x: str, y: str, n: int = 2000, *,
                   x_range: tuple[float, float] | None = None,
                   method: str = "minmaxlttb") -> dict[str, Any]:
        """At most `n` points of `y` over `x` that look like the whole line (MinMaxLTTB by
        default), over `x_range` if given: `{x: [...], y: [...], n, version}`."""
        params: dict[str, Any] = {"x": x, "y": y, "n": n, "method": method}
        if x_range is not None:
            params["x0"], params["x1"] = x_range
        return self.session._json("GET", f"{self.path}/downsample", params=params)

    def aggregate(self, x: str, y: str, width: int = 800, height: int = 600, *,
                  x_range: tuple[float, float] | None = None,
                  y_range: tuple[float, float] | None = None, agg: str = "count",
                  value: str | None = None) -> dict[str, Any]:
        """A raster of the points (datashader): `agg` count, sum or mean (of `value`) per
        pixel. Returns the server's answer with `grid` as a numpy array (row 0 = lowest y,
        NaN = no data) and `x_range`/`y_range`, the ranges drawn."""
        import numpy as np

        params: dict[str, Any] = {"x": x, "y": y, "width": width, "height": height,
                                  "agg": agg}
        for name, given in (("x_range", x_range), ("y_range", y_range)):
            if given is not None:
                params[name] = f"{given[0]},{given[1]}"
        if value is not None:
            params["value"] = value
        response = self.session._request("GET", f"{self.path}/aggregate", params=params)
        answer = response.json()
        answer["grid"] = np.array(answer["grid"], dtype=float)
        for name, header in (("x_range", "x-plotline-x-range"),
                             ("y_range", "x-plotline-y-range")):
            if header in response.headers:
                answer[name] = tuple(float(v) for v in response.headers[header].split(","))
        return answer

    # --- changing ------------------------------------------------------------------------

    def stream(self, rows: Any, rollover: int | None = None, *,
               progress: Progress | None = None) -> int:
        """Append rows (a dict of columns, a DataFrame, an Arrow table), then keep only the
        last `rollover` rows if given (else the source's own rollover), as
        ColumnDataSource.stream does; every open viewer draws them. Returns the new version.
        Rows beyond the server's body limit go as several appends (each its own version)."""
        plain = json_columns(rows)
        if plain is not None:
            body: dict[str, Any] = {"columns": plain}
            if rollover is not None:
                body["rollover"] = rollover
            return self._changed(self.session._json("POST", f"{self.path}/append", json=body))
        table = as_table(rows)
        params = {"rollover": rollover} if rollover is not None else {}
        answer: dict[str, Any] = {}
        for part, done in chunks(table, self.session.chunk_rows, self.session.chunk_bytes):
            answer = self.session._json(
                "POST", f"{self.path}/append", params=params,
                content=_ipc(part), headers={"Content-Type": ARROW_STREAM})
            if progress:
                progress(done, table.num_rows)
        return self._changed(answer)

    def patch(self, patches: dict[str, list]) -> int:
        """Change cells as ColumnDataSource.patch: `{column: [(index, value), (slice,
        [values]), ...]}` (a slice as Python's, or `{"start", "stop", "step"}`)."""
        return self._changed(self.session._json("POST", f"{self.path}/patch",
                                                json={"patches": json_patches(patches)}))

    def add(self, name: str, values: Any, dtype: str | None = None) -> int:
        """Add (or replace) column `name`: as many values as the source has rows."""
        body: dict[str, Any] = {"values": [_value(v) for v in values]}
        if dtype:
            body["dtype"] = dtype
        return self._changed(self.session._json("PUT", f"{self.path}/columns/{name}",
                                                json=body))

    def remove(self, name: str) -> int:
        """Remove column `name`."""
        return self._changed(self.session._json("DELETE", f"{self.path}/columns/{name}"))

    def delete(self) -> None:
        """Delete the source and its rows (documents that bind it then show no rows)."""
        self.session.delete_source(self.id)

    def _changed(self, answer: dict[str, Any]) -> int:
        self.meta = {**self.meta, "version": answer["version"], "rows": answer["rows"]}
        return answer["version"]

    # --- live ----------------------------------------------------------------------------

    def on_append(self, callback: Callable[[dict | None, dict], Any]) -> None:
        """Call `callback(columns, event)` for every append to this source from now on
        (this process's own included), in the thread that runs the Session's loop
        (`loop_until_closed`, `process_events`, `run`). `columns` is the appended rows,
        or None when they were too large to travel in the event (read them with to_arrow)
        or some were missed (history gone: the source's rows are what to_arrow reads)."""
        first = not self._callbacks
        self._callbacks.append(callback)
        if not first:
            return

        def event(msg: dict) -> None:
            if msg.get("type") != "appended":
                return
            data = msg.get("data") or {}
            for cb in list(self._callbacks):
                cb(None if data.get("refetch") else data.get("columns"), msg)

        def resync() -> None:
            for cb in list(self._callbacks):
                cb(None, {"op": "resync", "channel": channel_name("data", self.id)})

        self.session.link.watch(channel_name("data", self.id), event, resync)

    # --- documents -----------------------------------------------------------------------

    def bind(self, cds: Any) -> Any:
        """Tag a Bokeh ColumnDataSource with this source (`plotline:source=<id>`) and empty
        its own data, so that a published document stays small and its viewers fill it from
        the server (and stream into it live). Returns `cds`."""
        tag = f"{SOURCE_TAG}{self.id}"
        cds.tags = [t for t in cds.tags if not (isinstance(t, str)
                                                and t.startswith(SOURCE_TAG))] + [tag]
        columns = [c["name"] for c in self.meta.get("columns", [])] or list(cds.data)
        cds.data = {name: [] for name in columns}
        return cds


def _ipc(table: Any) -> bytes:
    from .datafiles import to_ipc

    return to_ipc(table)


def _index(index: Any) -> Any:
    if isinstance(index, slice):
        return {"start": index.start, "stop": index.stop, "step": index.step}
    return index


def _value(value: Any) -> Any:
    """A value as JSON has it (numpy scalars and arrays, NaN as Bokeh writes it)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_value(v) for v in value]
    if isinstance(value, float):
        return number(value)  # NaN and infinities as Bokeh writes them
    return value

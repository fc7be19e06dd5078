"""A data source's columns as an Arrow table: create, read, append (stream), patch, hash.

Pure functions on pyarrow tables (no I/O); none mutates its inputs, and each either returns a
complete new table or raises DataError (HTTP 422; DataTooLarge is 413) before producing
anything. Append / rollover / patch follow bokeh's ColumnDataSource.stream / .patch (see
tests/test_data_semantics.py for the proof and for where Bokeh is laxer than this).

JSON in lives in `convert.py`, JSON and Bokeh arrays out in `jsonout.py` (Bokeh's encodings
and ColumnDataSource's rules themselves, shared with docs, in services/common/bokeh), Arrow IPC
and content hashes in `arrowio.py`, dtypes and errors in `dtypes.py`; everything public is
re-exported here, so other modules import from `services.data.columns` only.
For a JSON append use `json_batch(schema, columns)` (it reads the values with the source's
dtypes, so `[]`, `1.0` into int64 and ISO strings into datetime columns work), then `stream`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.common.bokeh.rules import quote_names
from services.common.bokeh.wire import is_rep

from .arrowio import _normalise_column, column_hash, normalise, table_from_arrow, to_arrow
from .convert import (
    _to_arrow,
    cast_array,
    column_from_json,
    decode_column,
    table_from_json,
    values_to_arrow,
)
from .dtypes import (
    BOKEH,
    DTYPES,
    MAX_COLUMNS,
    MAX_NAME_LENGTH,
    DataError,
    DataTooLarge,
    arrow_type,
    check_name,
    dtype_name,
)
from .jsonout import column_to_json, to_bokeh, to_json

__all__ = [
    "DTYPES", "MAX_COLUMNS", "MAX_NAME_LENGTH", "DataError", "DataTooLarge", "UnknownColumn",
    "arrow_type", "column_from_json", "column_hash", "column_to_json", "compact", "conform",
    "describe", "dtype_name", "fixed_width_bytes", "json_batch", "normalise", "patch",
    "put_column", "remove_column", "select", "slice_rows", "stream", "table_from_arrow",
    "table_from_json", "to_arrow", "to_bokeh", "to_json",
]

MAX_CHUNKS = 64          # stream() compacts a table whose columns have more chunks than this
BIG_CHUNK_ROWS = 1 << 20  # ...leaving chunks of at least this many rows as they are


class UnknownColumn(DataError):
    """The source has no such column (HTTP 404 where the column is the resource)."""

    status = 404
    code = "column_not_found"


# --- append ---------------------------------------------------------------------------------


def conform(schema: pa.Schema, batch: pa.Table) -> pa.Table:
    """`batch` with exactly `schema`'s columns, types and order, for appending.

    The batch must name exactly the schema's columns (in any order). A column is cast when
    no value changes meaning (see convert.cast_array); float -> int is refused. A schema with
    no columns takes any batch (Bokeh: streaming into an empty source sets its columns).
    """
    if len(schema) == 0 or batch.schema.equals(schema):  # (a schema's names are unique)
        return batch
    BOKEH.streamed_names(schema.names, batch.column_names, "an append")
    if len(set(batch.column_names)) != batch.num_columns:
        raise DataError("an append names a column more than once")
    cols = [cast_array(batch[f.name], f.type, f.name) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def json_batch(schema: pa.Schema, columns: Any, *, max_bytes: int | None = None) -> pa.Table:
    """An append's JSON columns read with the source's dtypes, conformed to `schema`."""
    if len(schema) == 0:
        return table_from_json(columns, max_bytes=max_bytes)
    plain = _plain_batch(schema, columns)
    if plain is not None:
        return plain
    if is_rep(columns, "map"):
        columns = BOKEH.entries(columns, "columns")
    if type(columns) is dict:
        BOKEH.streamed_names(schema.names, list(columns), "an append")
    dtypes = {f.name: dtype_name(f.type) for f in schema}
    return conform(schema, table_from_json(columns, dtypes, max_bytes=max_bytes))


# The usual live append, a few plain numbers or strings per column, skips the general
# reader's checks (Bokeh encodings, mixed kinds, dtype casts), which cost more than the rows:
# value kinds each of these dtypes takes as they are, read exactly as the general path would.
_PLAIN = {pa.float64(): (float, int), pa.int64(): (int,), pa.string(): (str,),
          pa.bool_(): (bool,)}


def _plain_batch(schema: pa.Schema, columns: Any) -> pa.Table | None:
    """`columns` as a table of `schema` when every column is a list of values its dtype
    takes as they are (see _PLAIN); None means: use the general reader."""
    if type(columns) is not dict or len(columns) != len(schema):
        return None
    arrays, length = [], None
    for field in schema:
        values, kinds = columns.get(field.name), _PLAIN.get(field.type)
        if type(values) is not list or kinds is None or (
                length is not None and len(values) != length):
            return None
        length = len(values)
        if not all(type(v) in kinds for v in values):
            return None
        try:
            arrays.append(pa.array(np.array(values, dtype=np.float64)) if kinds[0] is float
                          else pa.array(values, type=field.type))
        except (OverflowError, pa.ArrowInvalid):  # out of range: the general reader says so
            return None
    return pa.Table.from_arrays(arrays, schema=schema)


def stream(table: pa.Table, batch: pa.Table, rollover: int | None) -> pa.Table:
    """Append `batch`'s rows, then keep only the last `rollover` rows (when given).

    As ColumnDataSource.stream: rollover 0 leaves no rows; a rollover smaller than the batch
    keeps the batch's tail; a table with no columns becomes the batch.
    """
    BOKEH.rollover(rollover)
    if table.num_columns == 0:
        result = batch
    else:
        batch = conform(table.schema, batch)
        result = pa.concat_tables([table, batch]) if batch.num_rows else table
    sliced = rollover is not None and result.num_rows > rollover
    if sliced:
        result = result.slice(result.num_rows - rollover)
    return compact(result, check_waste=sliced)


def fixed_width_bytes(table: pa.Table) -> int | None:
    """What the rows need when every column is fixed-width (None otherwise), counted from
    the schema: Table.nbytes would say, but costs ~0.5 ms for a table of many chunks (it
    de-duplicates buffers), and a streamed table has dozens."""
    try:
        return sum((table.num_rows * f.type.bit_width + 7) // 8 for f in table.schema)
    except ValueError:  # a variable-width column (strings, lists)
        return None


def _needed_bytes(table: pa.Table) -> int:
    needed = fixed_width_bytes(table)
    return table.nbytes if needed is None else needed


def compact(table: pa.Table, *, force: bool = False, check_waste: bool = True) -> pa.Table:
    """Bound the number of chunks (appends add one each) and free rows a rollover dropped.

    Runs of small chunks are merged when a column has more than MAX_CHUNKS chunks; the whole
    table is copied when it holds more than twice the memory its rows need (only a slice can
    make that so: `check_waste=False` skips the measuring when nothing was sliced).
    """
    if table.num_columns == 0:
        return table
    chunks = max(col.num_chunks for col in table.columns)
    wasted = check_waste and (
        table.get_total_buffer_size() > 2 * _needed_bytes(table) + (16 << 20))
    if force or wasted:
        return pa.Table.from_arrays(
            [pa.chunked_array([pa.concat_arrays(c.chunks)] if c.num_chunks else [], c.type)
             for c in table.columns], schema=table.schema)
    if chunks <= MAX_CHUNKS:
        return table
    out, run = [], []
    for batch in table.to_batches():
        if batch.num_rows >= BIG_CHUNK_ROWS:
            if run:
                out.append(pa.concat_batches(run))
                run = []
            out.append(batch)
        else:
            run.append(batch)
    if run:
        out.append(pa.concat_batches(run))
    return pa.Table.from_batches(out, schema=table.schema)


# --- patch ----------------------------------------------------------------------------------


def _slice_of(ind: Any) -> slice | None:
    # Bokeh's serializer writes a slice as {"type": "slice", ...}; hand-written JSON and the
    # Python client leave the type out
    if isinstance(ind, slice):
        return ind
    if type(ind) is dict and ind.get("type", "slice") == "slice" and \
            set(ind) <= {"type", "start", "stop", "step"}:
        return slice(ind.get("start"), ind.get("stop"), ind.get("step"))
    return None


def _patch_plan(col: pa.ChunkedArray, name: str, items: Any, n: int, max_bytes: int | None
                ) -> tuple[np.ndarray, pa.Array]:
    """Every position a column's patches write, in order, and the values (column typed)."""
    positions: list[np.ndarray] = []
    arrays: list[pa.Array] = []
    singles: list[int] = []
    values: list[Any] = []

    def flush() -> None:
        if singles:
            positions.append(np.array(singles, dtype=np.int64))
            arrays.append(values_to_arrow(list(values), col.type, name))
            singles.clear()
            values.clear()

    for ind, value in BOKEH.patch_items(items, name):
        if type(ind) is int:
            BOKEH.index(ind, n, name)
            if type(value) in (list, tuple) or is_rep(value, "ndarray") or is_rep(value, "array"):
                raise DataError(f"column {name!r}: an index patch takes one value, not a list")
            singles.append(ind)
            values.append(value)
            continue
        s = _slice_of(ind)
        if s is None:
            if type(ind) in (list, tuple):
                raise DataError(f"column {name!r}: multi-dimensional patches are not supported "
                                "(columns are 1-d)")
            raise DataError(f"column {name!r}: invalid patch index {ind!r}")
        rows = BOKEH.slice(s, n, name)
        if not (type(value) in (list, tuple) or type(value) is dict) and \
                not isinstance(value, np.ndarray):
            raise DataError(f"column {name!r}: a slice patch takes a list of values")
        decoded, _ = decode_column(value, name, max_bytes)
        BOKEH.slice_count(len(rows), len(decoded), name)
        flush()
        positions.append(np.arange(rows.start, rows.stop, rows.step, dtype=np.int64))
        arrays.append(_to_arrow(decoded, col.type, name))
    flush()
    if not positions:
        return np.zeros(0, np.int64), pa.array([], col.type)
    return np.concatenate(positions), pa.concat_arrays(arrays)


def patch(table: pa.Table, patches: Any, *, max_bytes: int | None = None) -> pa.Table:
    """Apply Bokeh `ColumnDataSource.patch` patches given in their JSON form.

    `{column: [[index, value], [{"start", "stop", "step"}, [values]], ...]}` (a slice may
    carry `"type": "slice"`, as Bokeh's serializer writes it). Patches apply in order, so a
    later write to a row wins. Refused (with nothing applied): unknown columns, an index out of
    `0 <= i < rows`, negative or reversed slices or a stop past the end, step 0, a slice's
    value count differing from the rows it selects, values the column's dtype cannot hold,
    multi-dimensional indices. `max_bytes` bounds what a slice's ndarray value decodes to
    (as `table_from_json`'s).
    """
    patches = BOKEH.patches(patches, table.column_names)
    n = table.num_rows
    plans = {name: _patch_plan(table[name], name, items, n, max_bytes)
             for name, items in patches.items()}
    for name, (pos, vals) in plans.items():
        if len(pos):
            i = table.column_names.index(name)
            table = table.set_column(i, name, _apply(table[name], pos, vals))
    return table


def _apply(col: pa.ChunkedArray, pos: np.ndarray, vals: pa.Array) -> pa.ChunkedArray:
    last = len(pos) - 1 - np.unique(pos[::-1], return_index=True)[1]  # the last write wins
    rows = pos[last]  # ascending
    vals = vals.take(pa.array(last))
    chunks, start = [], 0
    for chunk in col.chunks:
        lo, hi = np.searchsorted(rows, [start, start + len(chunk)])
        if lo == hi:
            chunks.append(chunk)
        else:
            mask = np.zeros(len(chunk), dtype=bool)
            mask[rows[lo:hi] - start] = True
            chunks.append(pc.replace_with_mask(chunk, pa.array(mask), vals.slice(lo, hi - lo)))
        start += len(chunk)
    return pa.chunked_array(chunks, col.type)


# --- summary --------------------------------------------------------------------------------


def describe(table: pa.Table) -> list[dict[str, str]]:
    """The source summary's columns: `[{name, dtype, hash}]`."""
    return [{"name": name, "dtype": dtype_name(col.type), "hash": column_hash(col)}
            for name, col in zip(table.column_names, table.columns, strict=True)]


# --- reading and column edits ---------------------------------------------------------------


def _bound(value: Any, what: str) -> int | None:
    if value is not None and type(value) is not int:
        raise DataError(f"{what} must be an integer, got {value!r}")
    return value


def slice_rows(table: pa.Table, start: int | None = None, stop: int | None = None
               ) -> pa.Table:
    """Rows `start:stop` with Python slice semantics (negatives count from the end; clamped)."""
    rows = range(table.num_rows)[slice(_bound(start, "start"), _bound(stop, "stop"))]
    return table.slice(rows.start, len(rows))


def select(table: pa.Table, names: list[str] | None) -> pa.Table:
    """Only the named columns, in the order named (all when `names` is None)."""
    if names is None:
        return table
    if type(names) not in (list, tuple) or not all(type(n) is str for n in names):
        raise DataError("columns must be a list of column names")
    unknown = [n for n in names if n not in table.column_names]
    if unknown:
        raise DataError(f"unknown columns: {quote_names(unknown)}")
    if len(set(names)) != len(names):
        raise DataError("a column is named more than once")
    return table.select(list(names))


def put_column(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Add or replace a column (build it with `column_from_json` or take it from an Arrow
    table); it must have the table's row count unless the table has no columns."""
    check_name(name)
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], column.type)
    column = _normalise_column(column, name)
    if table.num_columns and len(column) != table.num_rows:
        raise DataError(f"column {name!r} has {len(column)} rows; the source has "
                        f"{table.num_rows}")
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    if table.num_columns >= MAX_COLUMNS:
        raise DataError(f"too many columns (at most {MAX_COLUMNS})")
    if table.num_columns == 0:
        return pa.Table.from_arrays([column], names=[name])
    return table.append_column(name, column)


def remove_column(table: pa.Table, name: str) -> pa.Table:
    if name not in table.column_names:
        raise UnknownColumn(f"no column {name!r}")
    return table.remove_column(table.column_names.index(name))

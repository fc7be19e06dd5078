"""A table's columns as JSON values and as Bokeh's ndarrays, for answers and events.

JSON: plain values; NaN and ±inf as Bokeh's number encodings (so `json.dumps(...,
allow_nan=False)` works and BokehJS reads them back); datetimes as float milliseconds since
the epoch (Bokeh's convention); Arrow nulls as null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from services.common.bokeh.wire import ndarray_rep, number

from .dtypes import is_datetime, is_float, is_int

__all__ = ["column_to_bokeh", "column_to_json", "to_bokeh", "to_json"]


def to_json(table: pa.Table) -> dict[str, list]:
    """`{name: [values]}` in plain JSON values (see the module doc)."""
    return {name: column_to_json(col)
            for name, col in zip(table.column_names, table.columns, strict=True)}


def column_to_json(column: pa.ChunkedArray | pa.Array) -> list:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list = []
    for chunk in chunks:
        out.extend(_chunk_to_json(chunk))
    return out


_INFINITIES = (math.inf, -math.inf)
_SMALL = 64  # rows: below this, Python's own list beats a round trip through numpy


def _chunk_to_json(chunk: pa.Array) -> list:
    t = chunk.type
    if len(chunk) <= _SMALL and (is_float(t) or is_int(t) or pa.types.is_boolean(t)):
        values = chunk.to_pylist()  # (nulls are None already)
        if is_float(t):
            for i, x in enumerate(values):
                if x is not None and (x != x or x in _INFINITIES):
                    values[i] = number(x)
        return values
    if is_float(t):
        array = chunk.to_numpy(zero_copy_only=False)
        values = array.tolist()
        for i in np.flatnonzero(~np.isfinite(array)).tolist():
            values[i] = number(values[i])
    elif is_datetime(t):
        ms = chunk.cast(pa.int64()).fill_null(0).to_numpy()
        values = (ms / 1000.0 if t.unit == "us" else ms.astype(np.float64)).tolist()
    elif (is_int(t) or pa.types.is_boolean(t)) and chunk.null_count == 0:
        values = chunk.to_numpy(zero_copy_only=False).tolist()
    else:
        return chunk.to_pylist()
    if chunk.null_count:
        for i in np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False)).tolist():
            values[i] = None
    return values


# --- Bokeh's binary arrays out ----------------------------------------------------------------

# dtypes a browser holds as typed arrays, as Bokeh names them (its ndarray encoding)
_TYPED = {pa.float64(): "float64", pa.float32(): "float32", pa.int32(): "int32",
          pa.int16(): "int16", pa.int8(): "int8", pa.uint32(): "uint32", pa.uint16(): "uint16",
          pa.uint8(): "uint8"}
_SAFE_INT = 2 ** 53


def to_bokeh(table: pa.Table) -> dict[str, Any]:
    """`{name: column}` with numeric columns as Bokeh's ndarray encoding (`{"type":
    "ndarray", "array": {"type": "bytes", "data": <base64>}, "shape": [n], "dtype",
    "order": "little"}`), which a page turns into a typed array without parsing numbers;
    times as float64 ms (Bokeh's convention), int64 as int32 or float64 when its values fit.
    Other columns, and integer columns with nulls, as to_json's lists."""
    return {name: column_to_bokeh(col)
            for name, col in zip(table.column_names, table.columns, strict=True)}


def column_to_bokeh(column: pa.ChunkedArray) -> Any:
    t = column.type
    array: np.ndarray | None = None
    if t in _TYPED and (column.null_count == 0 or is_float(t)):
        array = column.to_numpy()  # (float nulls become NaN)
    elif is_datetime(t):
        ms = column.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
        array = ms / 1000.0 if t.unit == "us" else ms
        if column.null_count:
            array[np.asarray(column.is_null())] = np.nan
    elif is_int(t) and column.null_count == 0 and len(column):
        values = column.to_numpy()
        lo, hi = int(values.min()), int(values.max())
        if -2 ** 31 <= lo and hi < 2 ** 31:
            array = values.astype(np.int32)
        elif -_SAFE_INT <= lo and hi <= _SAFE_INT:
            array = values.astype(np.float64)
    if array is None:
        return column_to_json(column)
    # plain base64, not gzipped: the viewer page reads these bytes itself, not BokehJS
    return ndarray_rep(array, gzipped=False)

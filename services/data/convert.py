"""Columns between Bokeh-style JSON and Arrow arrays, and checked casts between dtypes.

JSON in: a column is a list of values (or one of Bokeh's array encodings, see `wire.py`). Values are
numbers, booleans, strings or null; Bokeh's `{"type": "number", "value": "nan"|"+inf"|"-inf"}`
stands for a non-finite float. Null is NaN in a float column, missing in a string or datetime
column, and refused in integer and boolean columns. Datetimes are milliseconds since the epoch
(Bokeh's convention) or ISO 8601 strings.

JSON out: plain JSON values; NaN and ±inf as Bokeh's number encodings (so `json.dumps(...,
allow_nan=False)` works and BokehJS reads them back); datetimes as float milliseconds since the
epoch; Arrow nulls as null.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .dtypes import (
    DataError,
    DataTooLarge,
    arrow_type,
    check_names,
    dtype_name,
    is_datetime,
    is_float,
    is_int,
    quote_names,
)
from .wire import declared_bytes, decode_column, map_entries, numpy_default, short

_NONE = type(None)
_NUMBER_WORDS = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf, "inf": math.inf,
                 "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _label(t: pa.DataType) -> str:
    try:
        return dtype_name(t)
    except DataError:
        return str(t)


# --- JSON in --------------------------------------------------------------------------------


def table_from_json(columns: Any, dtypes: Any = None, *, max_bytes: int | None = None
                    ) -> pa.Table:
    """A table from `{name: [values]}` (see the module doc); DataError on anything invalid.

    `dtypes` (`{name: dtype}`) fixes a column's type; without it the type is inferred (ints
    int64, any float float64, bools bool, strings string) and an empty or all-null column is
    refused. `max_bytes` bounds the decoded size of the columns together (DataTooLarge).
    """
    if type(columns) is dict and columns.get("type") == "map":
        columns = map_entries(columns)
    if type(columns) is not dict:
        raise DataError("columns must be an object mapping column names to lists of values")
    names = list(columns)
    check_names(names)
    if dtypes is None:
        dtypes = {}
    if type(dtypes) is not dict:
        raise DataError("dtypes must be an object mapping column names to dtype names")
    unknown = [n for n in dtypes if n not in columns]
    if unknown:
        raise DataError(f"dtypes names columns that are not given: {quote_names(unknown)}")
    targets = {n: _declared(n, d) for n, d in dtypes.items()}
    if max_bytes is not None:
        # before decoding any: a gzipped ndarray is a JSON body's compression bomb (its
        # shape is the sender's word), and every column may carry one
        size = sum(declared_bytes(columns[n]) for n in names)
        if size > max_bytes:
            raise DataTooLarge(f"the columns decode to {size} bytes, more than the limit "
                               f"of {max_bytes}")
    decoded = [decode_column(columns[n], n, max_bytes) for n in names]
    lengths = {n: len(values) for n, (values, _) in zip(names, decoded, strict=True)}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{n!r} has {k}" for n, k in list(lengths.items())[:6])
        raise DataError(f"all columns must have the same length ({shown})")
    arrays = [_to_arrow(values, targets.get(n) or hint, n)
              for n, (values, hint) in zip(names, decoded, strict=True)]
    return pa.Table.from_arrays(arrays, names=names)


def column_from_json(name: str, values: Any, dtype: str | pa.DataType | None = None, *,
                     max_bytes: int | None = None) -> pa.Array:
    """One column from its JSON values (as `table_from_json` reads a column)."""
    target = _declared(name, dtype) if isinstance(dtype, str) else dtype
    decoded, hint = decode_column(values, name, max_bytes)
    return _to_arrow(decoded, target or hint, name)


def values_to_arrow(values: list[Any], target: pa.DataType, name: str) -> pa.Array:
    """JSON values (a list) into an array of exactly `target` (for patches)."""
    return _to_arrow(values, target, name)


def _declared(name: str, dtype: Any) -> pa.DataType:
    try:
        return arrow_type(dtype)
    except DataError as e:
        raise DataError(f"column {name!r}: {e}") from None


def _to_arrow(values: list | np.ndarray, target: pa.DataType | None, name: str) -> pa.Array:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "fiub" or target is not None and is_datetime(target):
            # (Bokeh sends datetimes as a float64 ndarray of ms, NaN for NaT)
            return _from_list(values.tolist(), target, name)
        return cast_array(pa.array(values), target or numpy_default(values.dtype), name,
                          lenient=True)
    return _from_list(values, target, name)


def _number(value: dict, name: str) -> float:
    if value.get("type") == "number":
        x = value.get("value")
        if type(x) is str and x.lower() in _NUMBER_WORDS:
            return _NUMBER_WORDS[x.lower()]
        if type(x) in (int, float):
            return float(x)
    raise DataError(f"column {name!r}: unsupported value {short(value)}")


def _from_list(values: list, target: pa.DataType | None, name: str) -> pa.Array:
    kinds = set(map(type, values))
    if dict in kinds:
        values = [_number(v, name) if type(v) is dict else v for v in values]
        kinds = set(map(type, values))
    if kinds - {int, float, bool, str, _NONE}:
        if any(issubclass(k, np.generic) for k in kinds):  # numpy scalars from Python callers
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
            kinds = set(map(type, values))
        odd = kinds - {int, float, bool, str, _NONE}
        if odd:
            raise DataError(f"column {name!r}: values must be numbers, booleans, strings or "
                            f"null, not {sorted(k.__name__ for k in odd)[0]}")
    has_null = _NONE in kinds
    kinds.discard(_NONE)
    if bool in kinds and len(kinds) > 1 or str in kinds and len(kinds) > 1:
        found = sorted({"booleans" if k is bool else "strings" if k is str else "numbers"
                        for k in kinds})
        if not (target is not None and is_datetime(target) and bool not in kinds):
            raise DataError(f"column {name!r} mixes {' and '.join(found)}")
    if target is None:
        target = _infer(kinds, has_null, name, len(values))
    if is_float(target):
        return _floats(values, kinds, has_null, target, name)
    if is_int(target):
        return _ints(values, kinds, has_null, target, name)
    if is_datetime(target):
        return _datetimes(values, kinds, target, name)
    wanted = bool if pa.types.is_boolean(target) else str
    if kinds - {wanted}:
        raise DataError(f"column {name!r}: a {dtype_name(target)} column cannot hold "
                        f"{_kind_words(kinds - {wanted})}")
    if has_null and wanted is bool:
        raise DataError(f"column {name!r}: a bool column cannot hold null")
    return pa.array(values, type=target)


def _kind_words(kinds: set[type]) -> str:
    words = {"booleans" if k is bool else "strings" if k is str else "numbers" for k in kinds}
    return " or ".join(sorted(words))


def _infer(kinds: set[type], has_null: bool, name: str, n: int) -> pa.DataType:
    if not kinds:
        what = "is empty" if n == 0 else "holds only nulls"
        raise DataError(f"column {name!r} {what}: give its dtype")
    if kinds == {bool}:
        if has_null:
            raise DataError(f"column {name!r}: a bool column cannot hold null")
        return pa.bool_()
    if kinds == {str}:
        return pa.string()
    if kinds == {int} and not has_null:
        return pa.int64()
    return pa.float64()


def _floats(values: list, kinds: set[type], has_null: bool, target: pa.DataType,
            name: str) -> pa.Array:
    if kinds - {int, float}:
        raise DataError(f"column {name!r}: a {dtype_name(target)} column cannot hold "
                        f"{_kind_words(kinds - {int, float})}")
    if has_null:
        values = [math.nan if v is None else v for v in values]
    try:
        array = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError, TypeError):
        raise DataError(f"column {name!r}: a number is out of range for float64") from None
    if target == pa.float32():
        with np.errstate(over="ignore"):
            narrow = array.astype(np.float32)
        if (np.isinf(narrow) & np.isfinite(array)).any():
            raise DataError(f"column {name!r}: a number is out of range for float32")
        array = narrow
    return pa.array(array)


def _ints(values: list, kinds: set[type], has_null: bool, target: pa.DataType,
          name: str) -> pa.Array:
    if kinds - {int, float}:
        raise DataError(f"column {name!r}: a {dtype_name(target)} column cannot hold "
                        f"{_kind_words(kinds - {int, float})}")
    if has_null:
        raise DataError(f"column {name!r}: an integer column cannot hold null (or NaN)")
    if float in kinds:
        values = [_integral(v, target, name) if type(v) is float else v for v in values]
    try:
        return pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        raise DataError(f"column {name!r}: a value is out of range for "
                        f"{dtype_name(target)}") from None


def _integral(value: float, target: pa.DataType, name: str) -> int:
    if not value.is_integer():
        what = "NaN or infinity" if not math.isfinite(value) else repr(value)
        raise DataError(f"column {name!r}: {what} is not a valid {dtype_name(target)} value")
    return int(value)


def _datetimes(values: list, kinds: set[type], target: pa.DataType, name: str) -> pa.Array:
    per_ms = 1 if target.unit == "ms" else 1000
    if kinds - {int, float, str}:
        raise DataError(f"column {name!r}: a {dtype_name(target)} column holds numbers "
                        "(ms since the epoch) or ISO 8601 strings, not booleans")
    if str in kinds:
        values = [_parse_datetime(v, per_ms, name) if type(v) is str else v for v in values]
    numbers = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    missing = np.isnan(numbers)  # Bokeh writes NaT as NaN
    scaled = numbers * per_ms if per_ms != 1 else numbers
    if not np.isfinite(scaled[~missing]).all() or (np.abs(scaled[~missing]) >= 2.0**63).any():
        raise DataError(f"column {name!r}: a datetime is out of range")
    scaled[missing] = 0
    whole = np.round(scaled)
    if per_ms == 1 and (whole != scaled).any():
        raise DataError(f"column {name!r}: a datetime64[ms] column cannot hold fractions of a "
                        "millisecond (use datetime64[us])")
    return pa.array(whole.astype(np.int64), type=target, mask=missing if missing.any() else None)


def _parse_datetime(text: str, per_ms: int, name: str) -> float:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"column {name!r}: {short(text)} is not an ISO 8601 datetime") from None
    us = (when - (_EPOCH_UTC if when.tzinfo else _EPOCH)) // _US
    return us / 1000


# --- checked casts --------------------------------------------------------------------------


def cast_array(array: Any, target: pa.DataType, name: str, *, lenient: bool = False) -> Any:
    """`array` (Array or ChunkedArray) as `target` when no value changes meaning.

    int -> int (range checked), int -> float (exact in float64), float -> float (float64 ->
    float32 rounds; overflow refused), datetime -> datetime (no lost precision). float -> int
    only with `lenient` (JSON-ish sources) and only integral values. Anything else: DataError.
    """
    src = array.type
    if src == target:
        return array
    refuse = DataError(f"column {name!r}: cannot store {_label(src)} values in a "
                       f"{_label(target)} column")
    try:
        if is_float(target) and (is_float(src) or is_int(src)):
            wide = array.cast(pa.float64(), safe=True) if is_int(src) else array
            out = wide.cast(target, safe=False)
            if target == pa.float32() and src == pa.float64() and pc.any(
                    pc.and_(pc.is_inf(out), pc.invert(pc.is_inf(wide)))).as_py():
                raise DataError(f"column {name!r}: a number is out of range for float32")
            return out
        if is_int(target) and (is_int(src) or lenient and is_float(src)):
            return array.cast(target, safe=True)
        if is_datetime(target) and is_datetime(src) and src.tz is None:
            return array.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataError(f"column {name!r}: cannot store these {_label(src)} values in a "
                        f"{_label(target)} column ({e})") from None
    raise refuse


# --- JSON out -------------------------------------------------------------------------------


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


def _encode_float(x: float) -> dict:
    return {"type": "number", "value": "nan" if x != x else "+inf" if x > 0 else "-inf"}


_SMALL = 64  # rows: below this, Python's own list beats a round trip through numpy


def _chunk_to_json(chunk: pa.Array) -> list:
    t = chunk.type
    if len(chunk) <= _SMALL and (is_float(t) or is_int(t) or pa.types.is_boolean(t)):
        values = chunk.to_pylist()  # (nulls are None already)
        if is_float(t):
            for i, x in enumerate(values):
                if x is not None and (x != x or x in _INFINITIES):
                    values[i] = _encode_float(x)
        return values
    if is_float(t):
        array = chunk.to_numpy(zero_copy_only=False)
        values = array.tolist()
        for i in np.flatnonzero(~np.isfinite(array)).tolist():
            values[i] = _encode_float(values[i])
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


__all__ = ["cast_array", "column_from_json", "column_to_json", "table_from_json", "to_json",
           "values_to_arrow"]


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
    array = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return {"type": "ndarray", "shape": [len(array)], "dtype": str(array.dtype.name),
            "order": "little",
            "array": {"type": "bytes", "data": base64.b64encode(array.tobytes()).decode()}}

"""Columns from Bokeh-style JSON into Arrow arrays, and checked casts between dtypes.

A column is a list of values, or one of Bokeh's array encodings (an `{"type": "array"}` rep,
an ndarray rep: services/common/bokeh/wire.py). Values are
numbers, booleans, strings or null; Bokeh's `{"type": "number", "value": "nan"|"+inf"|"-inf"}`
stands for a non-finite float. Null is NaN in a float column, missing in a string or datetime
column, and refused in integer and boolean columns. Datetimes are milliseconds since the epoch
(Bokeh's convention) or ISO 8601 strings.

The way back, to JSON and to Bokeh's arrays, is `jsonout.py`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.common.bokeh.rules import quote_names
from services.common.bokeh.wire import DTYPES as NDARRAY_DTYPES
from services.common.bokeh.wire import MAX_INFLATED_BYTES, is_rep, short

from .dtypes import (
    BOKEH,
    DataError,
    DataTooLarge,
    arrow_type,
    check_names,
    dtype_name,
    is_datetime,
    is_float,
    is_int,
)

_NONE = type(None)
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
    if is_rep(columns, "map"):
        columns = BOKEH.entries(columns, "columns")
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
    BOKEH.same_length({n: len(values) for n, (values, _) in zip(names, decoded, strict=True)})
    arrays = [_to_arrow(values, targets.get(n) or hint, n)
              for n, (values, hint) in zip(names, decoded, strict=True)]
    return pa.Table.from_arrays(arrays, names=names)


def column_from_json(name: str, values: Any, dtype: str | pa.DataType | None = None, *,
                     max_bytes: int | None = None) -> pa.Array:
    """One column from its JSON values (as `table_from_json` reads a column)."""
    target = _declared(name, dtype) if isinstance(dtype, str) else dtype
    size = declared_bytes(values)
    if max_bytes is not None and size > max_bytes:
        raise DataTooLarge(f"column {name!r}: {size} bytes is more than {max_bytes}")
    decoded, hint = decode_column(values, name, max_bytes)
    return _to_arrow(decoded, target or hint, name)


def values_to_arrow(values: list[Any], target: pa.DataType, name: str) -> pa.Array:
    """JSON values (a list) into an array of exactly `target` (for patches)."""
    return _to_arrow(values, target, name)


# --- a column's JSON forms -------------------------------------------------------------------


def decode_column(value: Any, name: str, max_bytes: int | None
                  ) -> tuple[list | np.ndarray, pa.DataType | None]:
    """A column's values as a list or a 1-d numpy array, and the type its encoding implies."""
    if type(value) is list:
        return value, None
    if type(value) is tuple:
        return list(value), None
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise DataError(f"column {name!r}: only 1-d columns are supported")
        return value, None
    if is_rep(value, "ndarray"):
        array = BOKEH.ndarray(value, f"column {name!r}", ndim=1,
                              limit=MAX_INFLATED_BYTES if max_bytes is None else max_bytes)
        hint = None if array.dtype == "object" else numpy_default(np.dtype(array.dtype))
        return array.items, hint
    if is_rep(value, "array"):
        entries = value.get("entries", [])
        if type(entries) is list:
            return entries, None
    raise DataError(f"column {name!r} must be a list of values")


def declared_bytes(value: Any) -> int:
    """About how many bytes a column decodes to, from its encoding alone (8 per listed
    value; an ndarray's shape times its itemsize, before its data is decoded)."""
    if is_rep(value, "array"):
        value = value.get("entries")
    if type(value) in (list, tuple):
        return 8 * len(value)
    if is_rep(value, "ndarray"):
        shape, dtype = value.get("shape"), value.get("dtype")
        if type(shape) is list and all(type(k) is int and k >= 0 for k in shape) \
                and dtype in NDARRAY_DTYPES:
            return math.prod(shape) * np.dtype(dtype).itemsize
        data = value.get("array")
        return 8 * len(data) if type(data) is list else 0  # (else refused when decoded)
    return 0


def numpy_default(dtype: np.dtype) -> pa.DataType:
    """The column type a numpy array infers: ints widen to int64 (Bokeh's serializer narrows
    int64 to int32 on the wire, so the wire width is not the user's choice), floats keep theirs.
    """
    if dtype.kind == "f":
        return pa.float32() if dtype.itemsize == 4 else pa.float64()
    if dtype.kind == "b":
        return pa.bool_()
    if dtype == np.uint64:
        return pa.uint64()
    if dtype.kind in "iu":
        return pa.int64()
    raise DataError(f"unsupported array dtype {dtype}")


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


def _from_list(values: list, target: pa.DataType | None, name: str) -> pa.Array:
    kinds = set(map(type, values))
    if dict in kinds:
        values = [BOKEH.number(v, f"column {name!r}") if type(v) is dict else v
                  for v in values]
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
    _holds_only(kinds, {wanted}, target, name)
    if has_null and wanted is bool:
        raise DataError(f"column {name!r}: a bool column cannot hold null")
    return pa.array(values, type=target)


def _holds_only(kinds: set[type], allowed: set[type], target: pa.DataType, name: str) -> None:
    if kinds - allowed:
        raise DataError(f"column {name!r}: a {dtype_name(target)} column cannot hold "
                        f"{_kind_words(kinds - allowed)}")


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
    _holds_only(kinds, {int, float}, target, name)
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
    _holds_only(kinds, {int, float}, target, name)
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


__all__ = ["cast_array", "column_from_json", "decode_column", "table_from_json",
           "values_to_arrow"]

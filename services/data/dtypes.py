"""The column dtypes a source may hold, the data errors, and the limits on names.

Pure: no I/O. The public face of the data-column modules is `services.data.columns`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from services.common.bokeh.rules import Rules
from services.common.errors import Unprocessable

MAX_COLUMNS = 1000
MAX_NAME_LENGTH = 200


class DataError(Unprocessable, ValueError):
    """Bad column data, a bad append / patch, or a bad Arrow body (HTTP 422).

    The message is shown to the user as the error's `detail`. Also a ValueError, as bad
    input is in Python: the pure column code is used (and tested) outside any route, where
    `except ValueError` is the natural catch.
    """

    code = "invalid_data"


class DataTooLarge(DataError):
    """The decoded data exceeds a size limit (HTTP 413)."""

    status = 413
    code = "payload_too_large"


# Bokeh's wire format and ColumnDataSource rules (services/common/bokeh), refusing with
# DataError.
BOKEH = Rules(DataError)


_TYPES: dict[str, pa.DataType] = {
    "float64": pa.float64(),
    "float32": pa.float32(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "int8": pa.int8(),
    "uint64": pa.uint64(),
    "uint32": pa.uint32(),
    "uint16": pa.uint16(),
    "uint8": pa.uint8(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "datetime64[ms]": pa.timestamp("ms"),
    "datetime64[us]": pa.timestamp("us"),
}
_NAMES: dict[pa.DataType, str] = {t: n for n, t in _TYPES.items()}

DTYPES: tuple[str, ...] = tuple(_TYPES)


def dtype_name(arrow_type: pa.DataType) -> str:
    """The dtype name of an Arrow type a source may hold (DataError for any other)."""
    try:
        return _NAMES[arrow_type]
    except (KeyError, TypeError):
        raise DataError(f"unsupported column type {arrow_type}") from None


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type for a dtype name (DataError on an unknown name)."""
    if type(name) is str and name in _TYPES:
        return _TYPES[name]
    raise DataError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")


def is_float(t: pa.DataType) -> bool:
    return pa.types.is_floating(t)


def is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t)


def is_datetime(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t)


def check_name(name: Any) -> str:
    if type(name) is not str or not name:
        raise DataError(f"column names must be non-empty strings, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise DataError(f"column name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} "
                        "characters")
    return name


def check_names(names: list[Any]) -> None:
    """Names non-empty strings of at most 200 characters, at most 1000, no repeats."""
    if len(names) > MAX_COLUMNS:
        raise DataError(f"too many columns ({len(names)}; at most {MAX_COLUMNS})")
    seen: set[str] = set()
    for name in names:
        check_name(name)
        if name in seen:
            raise DataError(f"column {name!r} appears more than once")
        seen.add(name)

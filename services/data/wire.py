"""Bokeh's wire forms of a column: a list, an `{"type": "array"}` rep, or an ndarray rep.

`{"type": "ndarray", "array": ..., "shape": [n], "dtype": ..., "order": ...}` as
`bokeh.core.serialization.Serializer(deferred=False)` writes it: base64 bytes (gzipped since
Bokeh 3.5, plain before) for numeric dtypes, a list for "object" arrays.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from .dtypes import DataError, DataTooLarge

_NUMPY_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                           "uint64", "int64", "float32", "float64"})


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def map_entries(rep: dict) -> dict:
    entries = rep.get("entries", [])
    if type(entries) is not list or not all(
            type(e) in (list, tuple) and len(e) == 2 for e in entries):
        raise DataError("columns map entries must be [name, values] pairs")
    return {k: v for k, v in entries}


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
    if type(value) is dict:
        kind = value.get("type")
        if kind == "ndarray":
            return _decode_ndarray(value, name, max_bytes)
        if kind == "array":
            entries = value.get("entries", [])
            if type(entries) is list:
                return entries, None
    raise DataError(f"column {name!r} must be a list of values")


def declared_bytes(value: Any) -> int:
    """About how many bytes a column decodes to, from its encoding alone (8 per listed
    value; an ndarray's shape times its itemsize, before its data is decoded)."""
    if type(value) is dict and value.get("type") == "array":
        value = value.get("entries")
    if type(value) in (list, tuple):
        return 8 * len(value)
    if type(value) is dict and value.get("type") == "ndarray":
        shape, dtype = value.get("shape"), value.get("dtype")
        if type(shape) is list and all(type(k) is int and k >= 0 for k in shape) \
                and dtype in _NUMPY_DTYPES:
            return math.prod(shape) * np.dtype(dtype).itemsize
        data = value.get("array")
        return 8 * len(data) if type(data) is list else 0  # (else refused when decoded)
    return 0


def _decode_ndarray(rep: dict, name: str, max_bytes: int | None
                    ) -> tuple[list | np.ndarray, pa.DataType | None]:
    shape, dtype, order, data = rep.get("shape"), rep.get("dtype"), rep.get("order"), \
        rep.get("array")
    if type(shape) is not list or not all(type(k) is int and k >= 0 for k in shape):
        raise DataError(f"column {name!r}: ndarray shape must be a list of sizes")
    if len(shape) != 1:
        raise DataError(f"column {name!r}: only 1-d ndarrays are supported, got shape {shape}")
    if dtype != "object" and dtype not in _NUMPY_DTYPES:
        raise DataError(f"column {name!r}: unsupported ndarray dtype {short(dtype)}")
    hint = None if dtype == "object" else numpy_default(np.dtype(dtype))
    if type(data) is dict and data.get("type") == "array":
        data = data.get("entries", [])
    if type(data) is list:
        if len(data) != shape[0]:
            raise DataError(f"column {name!r}: ndarray has {len(data)} values for shape {shape}")
        return data, hint
    if type(data) is not dict or data.get("type") != "bytes":
        raise DataError(f"column {name!r}: ndarray array must be a list or a bytes rep")
    if dtype == "object":
        raise DataError(f"column {name!r}: an object ndarray cannot be binary")
    raw = data.get("data")
    if type(raw) is dict:
        raise DataError(f"column {name!r}: ndarray refers to a binary buffer; send base64 "
                        "data (Serializer(deferred=False)) or an Arrow body instead")
    if type(raw) is not str:
        raise DataError(f"column {name!r}: ndarray bytes must be base64 text")
    np_dtype = np.dtype(dtype)
    expected = shape[0] * np_dtype.itemsize
    if max_bytes is not None and expected > max_bytes:
        raise DataTooLarge(f"column {name!r}: {expected} bytes is more than {max_bytes}")
    try:
        buf = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f"column {name!r}: ndarray data is not valid base64") from None
    if buf[:2] == b"\x1f\x8b":  # Bokeh >= 3.5 gzips the bytes; older versions did not
        buf = _gunzip(buf, expected, name)
    if len(buf) != expected:
        raise DataError(f"column {name!r}: ndarray data has {len(buf)} bytes, "
                        f"shape {shape} of {dtype} needs {expected}")
    if order not in (None, "little", "big"):
        raise DataError(f"column {name!r}: ndarray order must be 'little' or 'big'")
    array = np.frombuffer(buf, dtype=np_dtype.newbyteorder("<" if order != "big" else ">"))
    return array.astype(np_dtype.newbyteorder("="), copy=False), None


def _gunzip(buf: bytes, expected: int, name: str) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(buf, expected + 1)
    except zlib.error:
        raise DataError(f"column {name!r}: ndarray data is not valid gzip") from None
    if len(out) > expected or not d.eof:
        raise DataError(f"column {name!r}: ndarray data does not match its shape")
    return out


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

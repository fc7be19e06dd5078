"""Bokeh 3's JSON value encodings (numbers, bytes, ndarrays), and the document errors.

Works on JSON-shaped data (dict, list, str, int, float, bool, None), plus numpy for the
arrays: decoding and encoding follow bokeh.core.serialization's Deserializer and Serializer.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import sys
from importlib import metadata
from typing import Any

import numpy as np

from services.common.errors import Unprocessable

# Longest document title, for every way of setting one (create, PUT, TitleChanged).
MAX_TITLE = 200

# --- errors ---------------------------------------------------------------------------------


class DocumentError(Unprocessable, ValueError):
    """Bad document JSON or a bad event; the message is shown to the user (HTTP 422).

    Also a ValueError, as bad input is in Python: the model is pure and used (and tested)
    outside any route."""

    code = "invalid_document"


class ModelExists(DocumentError):
    """A new object rep reuses the id of a model the document already has (HTTP 409)."""

    status = 409
    code = "model_exists"


class ModelInUse(DocumentError):
    """The model is a root or still referenced by a live model, so it can't be deleted (409)."""

    status = 409
    code = "model_in_use"


class ModelNotFound(DocumentError, KeyError):
    """No model with that id (HTTP 404). Also a KeyError, as `Doc.model` promises."""

    status = 404
    code = "model_not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.detail


# --- scalars and bytes ----------------------------------------------------------------------

_INF = float("inf")
SCALARS = frozenset({str, int, bool, type(None)})
SCALARS_OR_FLOAT = SCALARS | {float}
# Encodings that never contain models, so walks looking for references can skip them.
LEAF_TYPES = frozenset({"ndarray", "typed_array", "bytes", "number", "slice"})

# The exact dtypes Bokeh sends as binary (bokeh.util.serialization.BINARY_ARRAY_TYPES);
# anything else travels as a list of items with dtype "object".
_BINARY = frozenset(np.dtype(t) for t in (
    np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32,
    np.float32, np.float64))


def _bokeh_gzips() -> bool:
    # Bokeh 3.8 started gzipping base64 buffers, and its BokehJS can only read them gzipped
    # (older BokehJS only plain). We serve the installed BokehJS, so write what it reads.
    try:
        major, minor = (int(p) for p in metadata.version("bokeh").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (3, 8)


GZIP_BUFFERS = _bokeh_gzips()
_GZIP_B64 = "H4sI"  # base64 of the gzip magic bytes 1f 8b 08


def number(x: float) -> Any:
    """A float as Bokeh writes it: NaN and infinities become {"type": "number"} reps."""
    if x != x:
        return {"type": "number", "value": "nan"}
    if x == _INF:
        return {"type": "number", "value": "+inf"}
    if x == -_INF:
        return {"type": "number", "value": "-inf"}
    return x


def has_containers(items: list) -> bool:
    # map(type, ...) and set() run in C: much faster than a Python loop on long columns.
    return not set(map(type, items)) <= SCALARS_OR_FLOAT


def encode_bytes(raw: bytes) -> dict:
    if GZIP_BUFFERS:
        # compresslevel 2 and mtime 1: what Bokeh itself uses (settings.compression_level).
        raw = gzip.compress(raw, compresslevel=2, mtime=1)
    return {"type": "bytes", "data": base64.b64encode(raw).decode("ascii")}


def decode_bytes(rep: dict) -> bytes:
    data = rep.get("data")
    if not isinstance(data, str):
        raise DocumentError("bytes must be inline base64 (serialize with deferred=False)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise DocumentError("bytes data is not valid base64") from None
    if raw[:2] == b"\x1f\x8b":  # gzipped (Bokeh >= 3.8); earlier versions sent it plain
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError):
            pass
    return raw


def normalize_bytes(rep: dict) -> dict:
    """A bytes rep in the installed Bokeh's convention (gzipped or not)."""
    data = rep.get("data")
    if isinstance(data, dict):
        raise DocumentError("binary buffer references are not supported: "
                            "serialize with Document.to_json(deferred=False)")
    if not isinstance(data, str):
        raise DocumentError("bytes data must be a base64 string")
    if data.startswith(_GZIP_B64) == GZIP_BUFFERS:
        return {"type": "bytes", "data": data}
    return encode_bytes(decode_bytes(rep))


# --- ndarrays -------------------------------------------------------------------------------


def is_ndarray(value: Any) -> bool:
    return type(value) is dict and value.get("type") == "ndarray"


def ndarray_length(rep: dict) -> int:
    shape = rep.get("shape")
    if not isinstance(shape, list) or not shape or not isinstance(shape[0], int):
        raise DocumentError("ndarray has no valid shape")
    return shape[0]


def decode_array(rep: dict) -> np.ndarray:
    """An ndarray rep as numpy, as bokeh's Deserializer would build it."""
    try:
        dtype = np.dtype(rep["dtype"])
        shape = rep["shape"]
        data = rep["array"]
        if isinstance(data, dict) and data.get("type") == "bytes":
            array = np.frombuffer(decode_bytes(data), dtype=dtype).copy()
            if rep.get("order", sys.byteorder) != sys.byteorder:
                array.byteswap(inplace=True)
        elif isinstance(data, list):
            array = np.array(to_python(data), dtype=dtype)
        else:
            raise DocumentError("ndarray data must be bytes or a list")
        if not isinstance(shape, list) or int(np.prod(shape)) != array.size:
            raise DocumentError(f"ndarray shape {shape} does not match its {array.size} items")
        return array.reshape(shape) if len(shape) > 1 else array
    except DocumentError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise DocumentError(f"bad ndarray encoding: {e}") from None


def encode_array(array: np.ndarray) -> dict:
    """A numpy array as bokeh's Serializer writes it (including its int64 -> int32 narrowing)."""
    for wide, narrow in ((np.int64, np.int32), (np.uint64, np.uint32)):
        if array.dtype == wide:
            info = np.iinfo(narrow)
            if not np.any((array < info.min) | (array > info.max)):
                array = array.astype(narrow)
    data: Any
    if array.dtype.kind == "U":
        data, dtype = array.ravel().tolist(), "object"
    elif array.dtype not in _BINARY:
        data, dtype = [encode_value(x) for x in array.ravel().tolist()], "object"
    else:
        data, dtype = encode_bytes(np.ascontiguousarray(array).tobytes()), array.dtype.name
    return {"type": "ndarray", "array": data, "shape": list(array.shape), "dtype": dtype,
            "order": sys.byteorder}


def encode_value(x: Any) -> Any:
    """A Python/numpy value (column items after numpy work) in Bokeh's JSON encoding."""
    if isinstance(x, float):
        return number(float(x))
    if isinstance(x, np.ndarray):
        return encode_array(x)
    if isinstance(x, np.generic):
        return encode_value(x.item())
    if isinstance(x, (list, tuple)):
        return [encode_value(item) for item in x]
    return x


def to_python(value: Any) -> Any:
    """Column values as Python/numpy, the way bokeh's Deserializer hands them to numpy."""
    if type(value) is list:
        if not has_containers(value):
            return value
        return [to_python(item) for item in value]
    if type(value) is dict:
        kind = value.get("type")
        if kind == "number":
            raw = value.get("value")
            return float(raw) if isinstance(raw, str) else raw
        if kind == "ndarray":
            return decode_array(value)
    return value

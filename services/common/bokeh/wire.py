"""Bokeh's JSON encodings: what `bokeh.core.serialization.Serializer(deferred=False)` writes
and its Deserializer and BokehJS read.

- a non-finite float: `{"type": "number", "value": "nan" | "+inf" | "-inf"}`;
- bytes: `{"type": "bytes", "data": <base64>}`. Bokeh 3.8 started gzipping the bytes before
  the base64 (bokeh/bokeh#14485), and the BokehJS of 3.8 and later reads them gzipped,
  earlier ones plain;
- an ndarray: `{"type": "ndarray", "array": <bytes rep | list>, "shape": [n, ...], "dtype",
  "order": "little" | "big"}`. Bokeh sends the dtypes in `_BINARY` as bytes (int64 narrowed
  to int32 when the values fit) and anything else as a flat list with dtype "object";
- a dict: `{"type": "map", "entries": [[key, value], ...]}` (`{"type": "map"}` when empty).

The encoders are functions. The decoders read untrusted input: they are methods of `Wire`,
which raises the calling service's own error class, and they never trust a size the sender
states (a gzipped buffer inflates at most to what its shape needs, under a limit).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import math
import sys
import zlib
from importlib import metadata
from typing import Any, NamedTuple

import numpy as np

from ..errors import PayloadTooLarge, PlotlineError

# BokehJS's NDDataType less "object": the dtypes an ndarray's bytes may hold.
DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64",
                    "int64", "float32", "float64"})
# The dtypes Bokeh's Serializer writes as bytes (bokeh.util.serialization.BINARY_ARRAY_TYPES).
_BINARY = frozenset(np.dtype(t) for t in (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"))

# What a number rep's value may say: Bokeh writes the first three; hand-written JSON gets
# the usual spellings too.
_NUMBER_WORDS = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf, "inf": math.inf,
                 "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}
_INF = math.inf

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_B64 = "H4sI"  # base64 of the gzip magic bytes 1f 8b 08
# The most any buffer inflates to unless the caller allows more: far above a document's
# images and a JSON append's arrays (large data travels as Arrow), far below what would
# hurt a worker. A gzip bomb is stopped here, not by the memory running out.
MAX_INFLATED_BYTES = 64 << 20


def _bokeh_gzips() -> bool:
    # We serve the installed BokehJS, so write the bytes the way it reads them.
    try:
        major, minor = (int(p) for p in metadata.version("bokeh").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (3, 8)


GZIP_BUFFERS = _bokeh_gzips()


def short(value: Any) -> str:
    """`value` quoted for an error message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- writing --------------------------------------------------------------------------------


def number(x: float) -> Any:
    """A float as Bokeh writes it: NaN and infinities become number reps."""
    if x != x:
        return {"type": "number", "value": "nan"}
    if x == _INF:
        return {"type": "number", "value": "+inf"}
    if x == -_INF:
        return {"type": "number", "value": "-inf"}
    return x


def encode_bytes(raw: bytes, *, gzipped: bool = GZIP_BUFFERS) -> dict:
    if gzipped:
        # compresslevel 2 and mtime 1: what Bokeh itself uses (settings.compression_level).
        raw = gzip.compress(raw, compresslevel=2, mtime=1)
    return {"type": "bytes", "data": base64.b64encode(raw).decode("ascii")}


def ndarray_rep(array: np.ndarray, *, gzipped: bool = GZIP_BUFFERS) -> dict:
    """A numeric array as an ndarray rep of its bytes (little-endian)."""
    array = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
    return {"type": "ndarray", "array": encode_bytes(array.tobytes(), gzipped=gzipped),
            "shape": list(array.shape), "dtype": array.dtype.name, "order": "little"}


def encode_ndarray(array: np.ndarray) -> dict:
    """A numpy array as Bokeh's Serializer writes it (including its int64 -> int32 narrowing
    and its lists of items for the dtypes it does not send as bytes)."""
    for wide, narrow in ((np.int64, np.int32), (np.uint64, np.uint32)):
        if array.dtype == wide:
            info = np.iinfo(narrow)
            if not np.any((array < info.min) | (array > info.max)):
                array = array.astype(narrow)
    if array.dtype in _BINARY:
        return ndarray_rep(array)
    items = array.ravel().tolist()
    if array.dtype.kind != "U":
        items = [encode_value(x) for x in items]
    return {"type": "ndarray", "array": items, "shape": list(array.shape), "dtype": "object",
            "order": sys.byteorder}


def encode_value(x: Any) -> Any:
    """A Python/numpy value (a column's items after numpy work) in Bokeh's encoding."""
    if isinstance(x, float):
        return number(float(x))
    if isinstance(x, np.ndarray):
        return encode_ndarray(x)
    if isinstance(x, np.generic):
        return encode_value(x.item())
    if isinstance(x, (list, tuple)):
        return [encode_value(item) for item in x]
    return x


def map_rep(entries: dict[str, Any]) -> dict:
    """A dict as Bokeh's map rep (`{"type": "map"}` when empty, as Bokeh writes it)."""
    if not entries:
        return {"type": "map"}
    return {"type": "map", "entries": [[key, value] for key, value in entries.items()]}


# --- reading --------------------------------------------------------------------------------


class Array(NamedTuple):
    """A decoded ndarray rep, flat: its items as numpy (native byte order, read-only) when
    they came as bytes, or the list as sent (dtype "object", or a list with a numeric dtype,
    which Bokeh's Deserializer also takes)."""

    items: np.ndarray | list
    shape: list[int]
    dtype: str


def is_rep(value: Any, kind: str) -> bool:
    """`value` is Bokeh's `{"type": kind, ...}` rep."""
    return type(value) is dict and value.get("type") == kind


class Wire:
    """Bokeh's decoders for one service: every refusal is `error` (a 422 the service owns;
    sizes over a limit are PayloadTooLarge, 413). `what` names the value in messages, e.g.
    "column 'x'"."""

    def __init__(self, error: type[PlotlineError]) -> None:
        self.error = error

    def number(self, rep: dict, what: str) -> float:
        """A number rep's float."""
        value = rep.get("value")
        if type(value) is str and value.lower() in _NUMBER_WORDS:
            return _NUMBER_WORDS[value.lower()]
        if type(value) in (int, float):
            return float(value)
        raise self.error(f"{what}: unsupported value {short(rep)}")

    def entries(self, rep: dict, what: str) -> dict[str, Any]:
        """A map rep's entries as a dict (keys are names: strings)."""
        entries = rep.get("entries", [])
        if type(entries) is not list:
            raise self.error(f"{what}: map entries must be a list")
        out: dict[str, Any] = {}
        for entry in entries:
            if type(entry) not in (list, tuple) or len(entry) != 2 or type(entry[0]) is not str:
                raise self.error(f"{what}: map entries must be [name, value] pairs")
            out[entry[0]] = entry[1]
        return out

    def buffer(self, rep: dict, what: str, size: int | None = None,
               limit: int = MAX_INFLATED_BYTES) -> bytes:
        """A bytes rep's bytes, gunzipped when gzipped. `size` is what they must inflate to
        (an ndarray's shape); without one they inflate to at most `limit`."""
        data = rep.get("data")
        if type(data) is dict:
            raise self.error(f"{what}: refers to a binary buffer; send inline base64 "
                             "(serialize with deferred=False)")
        if type(data) is not str:
            raise self.error(f"{what}: bytes must be base64 text")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise self.error(f"{what}: data is not valid base64") from None
        if raw[:2] != _GZIP_MAGIC:
            return raw
        cap = limit if size is None else size
        inflate = zlib.decompressobj(wbits=31)
        try:
            out = inflate.decompress(raw, cap + 1)
        except zlib.error:
            raise self.error(f"{what}: data is not valid gzip") from None
        if len(out) > cap or not inflate.eof:
            if size is None:
                raise PayloadTooLarge(f"{what}: bytes inflate to more than {cap}")
            raise self.error(f"{what}: ndarray data does not match its shape")
        return out

    def normalized_bytes(self, rep: dict, what: str) -> dict:
        """A bytes rep as the installed Bokeh writes it (gzipped or not)."""
        data = rep.get("data")
        if type(data) is str and data.startswith(_GZIP_B64) == GZIP_BUFFERS:
            return {"type": "bytes", "data": data}
        return encode_bytes(self.buffer(rep, what))

    def ndarray(self, rep: dict, what: str, *, ndim: int | None = None,
                limit: int = MAX_INFLATED_BYTES) -> Array:
        """An ndarray rep's items, checked against its shape and dtype; with `ndim`, only
        arrays of that many dimensions. Binary data over `limit` bytes is PayloadTooLarge."""
        shape, dtype, order, data = (rep.get(k) for k in ("shape", "dtype", "order", "array"))
        if type(shape) is not list or not all(type(k) is int and k >= 0 for k in shape):
            raise self.error(f"{what}: ndarray shape must be a list of sizes")
        if ndim is not None and len(shape) != ndim:
            raise self.error(f"{what}: only {ndim}-d ndarrays are supported, got shape {shape}")
        if dtype != "object" and dtype not in DTYPES:
            raise self.error(f"{what}: unsupported ndarray dtype {short(dtype)}")
        count = math.prod(shape)
        if is_rep(data, "array"):
            data = data.get("entries", [])
        if type(data) is list:
            if len(data) != count:
                raise self.error(f"{what}: ndarray has {len(data)} values for shape {shape}")
            return Array(data, shape, dtype)
        if not is_rep(data, "bytes"):
            raise self.error(f"{what}: ndarray array must be a list or a bytes rep")
        if dtype == "object":
            raise self.error(f"{what}: an object ndarray cannot be binary")
        if order not in (None, "little", "big"):
            raise self.error(f"{what}: ndarray order must be 'little' or 'big'")
        np_dtype = np.dtype(dtype)
        size = count * np_dtype.itemsize
        if size > limit:
            raise PayloadTooLarge(f"{what}: {size} bytes is more than {limit}")
        raw = self.buffer(data, what, size)
        if len(raw) != size:
            raise self.error(f"{what}: ndarray data has {len(raw)} bytes, shape {shape} of "
                             f"{dtype} needs {size}")
        items = np.frombuffer(raw, dtype=np_dtype.newbyteorder(">" if order == "big" else "<"))
        return Array(items.astype(np_dtype.newbyteorder("="), copy=False), shape, dtype)

"""Bokeh 3's JSON value encodings, and the walks over them that a document needs.

Everything here works on JSON-shaped data (dict, list, str, int, float, bool, None). Walks are
iterative, not recursive, so a deeply nested document (a long chain of models, each written
inside the previous one) cannot overflow the interpreter stack.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import sys
from collections.abc import Container
from importlib import metadata
from typing import Any

import numpy as np

# --- errors ---------------------------------------------------------------------------------


class DocumentError(ValueError):
    """Bad document JSON or a bad event; the message is shown to the user (HTTP 422)."""

    status = 422
    code = "invalid_document"

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else ""


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
_SCALARS = frozenset({str, int, bool, type(None)})
_SCALARS_OR_FLOAT = _SCALARS | {float}
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
    return not set(map(type, items)) <= _SCALARS_OR_FLOAT


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


# --- walking values -------------------------------------------------------------------------


def check_id(model_id: Any) -> str:
    if type(model_id) is not str or not model_id:
        raise DocumentError(f"model ids must be non-empty strings, got {model_id!r}")
    return model_id


def ref_id(value: Any) -> str | None:
    """The id if `value` is a reference ({"id": ...}, as stored), else None."""
    if type(value) is dict and "id" in value and "type" not in value:
        return value["id"]
    return None


def refs_in(values: list) -> list[str]:
    """Ids referenced by stored (flat) values: unique, in first-occurrence (DFS) order."""
    found: dict[str, None] = {}
    stack = list(reversed(values))
    while stack:
        v = stack.pop()
        if type(v) is list:
            if has_containers(v):
                stack.extend(reversed(v))
        elif type(v) is dict:
            if "type" not in v and "id" in v:
                found[v["id"]] = None
            elif v.get("type") not in LEAF_TYPES:
                stack.extend(reversed(v.values()))
    return list(found)


class Flattener:
    """Copies incoming JSON values, lifting every nested object rep into `self.models`.

    Each rep is replaced by a reference {"id": ...}; `self.models` collects the new flat reps
    in first-occurrence order and `self.refs` every id mentioned (the caller checks that they
    resolve). Bare NaN/Infinity floats become Bokeh's number reps, and bytes are normalized to
    the installed Bokeh's buffer encoding.

    `known` holds the ids the document already has. A full rep for one of them is, as in
    Bokeh's Deserializer, only a reference (its attributes are ignored) unless
    `known_is_error`, when it raises ModelExists. With `strict`, the same id written twice
    with different content is an error (Bokeh would silently keep the first).
    `allow_models=False` is for column data, where a model can't appear at all.
    """

    def __init__(self, known: Container[str] = (), *, known_is_error: bool = False,
                 strict: bool = False, allow_models: bool = True) -> None:
        self.known = known
        self.known_is_error = known_is_error
        self.strict = strict
        self.allow_models = allow_models
        self.models: dict[str, dict] = {}
        self.refs: list[str] = []
        self._raw: dict[str, dict] = {}

    def __call__(self, value: Any) -> Any:
        holder: list[Any] = [None]
        stack: list[tuple[Any, Any, Any]] = [(holder, 0, value)]
        while stack:
            parent, key, v = stack.pop()
            parent[key] = self._copy(v, stack)
        return holder[0]

    def _copy(self, v: Any, stack: list) -> Any:
        t = type(v)
        if t in _SCALARS:
            return v
        if t is float:
            return number(v)
        if t is list or t is tuple:
            kinds = set(map(type, v))
            if kinds <= _SCALARS:
                return list(v)
            if kinds <= _SCALARS_OR_FLOAT:
                return [number(x) if type(x) is float else x for x in v]
            out: list[Any] = [None] * len(v)
            stack.extend((out, i, v[i]) for i in range(len(v) - 1, -1, -1))
            return out
        if t is dict:
            return self._copy_dict(v, stack)
        # subclasses (numpy scalars, str enums...) from Python callers
        for base in (bool, int, float, str):
            if isinstance(v, base):
                return self._copy(base(v), stack)
        raise DocumentError(f"unsupported value of type {t.__name__}")

    def _copy_dict(self, v: dict, stack: list) -> Any:
        kind = v.get("type")
        if kind == "object":
            return self._object(v, stack)
        if kind == "ref" or (kind is None and "id" in v):
            return self._ref(v)
        if kind == "bytes":
            return normalize_bytes(v)
        for key in v:
            if type(key) is not str:
                raise DocumentError(f"object keys must be strings, got {key!r}")
        out = dict.fromkeys(v)
        stack.extend((out, k, v[k]) for k in reversed(list(v)))
        return out

    def _no_models(self) -> None:
        if not self.allow_models:
            raise DocumentError("column data can't contain models or references")

    def _ref(self, v: dict) -> dict:
        self._no_models()
        extra = set(v) - {"type", "id"}
        if extra:
            raise DocumentError(f"reference {v.get('id')!r} has unexpected keys {sorted(extra)}")
        model_id = check_id(v["id"])
        self.refs.append(model_id)
        return {"id": model_id}

    def _object(self, v: dict, stack: list) -> dict:
        self._no_models()
        if "id" not in v:
            raise DocumentError(f"object rep of type {v.get('name')!r} has no id")
        model_id = check_id(v["id"])
        name = v.get("name")
        if type(name) is not str or not name:
            raise DocumentError(f"model {model_id!r} has no type name")
        attributes = v.get("attributes")
        if attributes is None:
            attributes = {}
        if type(attributes) is not dict:
            raise DocumentError(f"attributes of model {model_id!r} must be an object")
        self.refs.append(model_id)
        if model_id in self.models:
            if self.strict and v is not self._raw[model_id] and v != self._raw[model_id]:
                raise DocumentError(f"model {model_id!r} is defined twice, differently")
            return {"id": model_id}
        if model_id in self.known:
            if self.known_is_error:
                raise ModelExists(f"model {model_id!r} already exists")
            return {"id": model_id}
        for key in attributes:
            if type(key) is not str or not key:
                raise DocumentError(f"attribute names of {model_id!r} must be non-empty strings")
        flat = dict.fromkeys(attributes)
        self.models[model_id] = {"type": "object", "name": name, "id": model_id,
                                 "attributes": flat}
        self._raw[model_id] = v
        stack.extend((flat, k, attributes[k]) for k in reversed(list(attributes)))
        return {"id": model_id}


def expand(values: list, models: dict[str, dict], seen: set[str]) -> list:
    """Copies stored values back to Bokeh's wire form: each model in full at its first
    occurrence (DFS, attributes in stored order, as bokeh's Serializer does), a reference
    after. `seen` carries over between calls, so config, roots and callbacks share it."""
    holder: list[Any] = [None] * len(values)
    stack: list[tuple[Any, Any, Any]] = [(holder, i, values[i])
                                         for i in range(len(values) - 1, -1, -1)]
    while stack:
        parent, key, v = stack.pop()
        t = type(v)
        if t is list:
            if has_containers(v):
                out: Any = [None] * len(v)
                stack.extend((out, i, v[i]) for i in range(len(v) - 1, -1, -1))
            else:
                out = list(v)
        elif t is dict:
            model_id = ref_id(v)
            if model_id is None:
                out = dict.fromkeys(v)
                stack.extend((out, k, v[k]) for k in reversed(list(v)))
            elif model_id in seen:
                out = {"id": model_id}
            else:
                seen.add(model_id)
                rep = models[model_id]
                out = {"type": "object", "name": rep["name"], "id": model_id}
                attributes = rep["attributes"]
                if attributes:  # Bokeh leaves out an empty attributes object
                    out["attributes"] = flat = dict.fromkeys(attributes)
                    stack.extend((flat, k, attributes[k]) for k in reversed(list(attributes)))
        else:
            out = v
        parent[key] = out
    return holder

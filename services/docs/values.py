"""The document errors, and a document's values: JSON-shaped data (dict, list, str, int,
float, bool, None) in Bokeh 3's encodings, plus numpy for the arrays.

The encodings themselves (numbers, bytes, ndarrays, maps) and ColumnDataSource's rules are
Bokeh's, shared with the data service: services/common/bokeh. `BOKEH` is them, refusing with
DocumentError.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from services.common.bokeh.rules import Rules
from services.common.bokeh.wire import encode_ndarray, encode_value, is_rep, number
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


BOKEH = Rules(DocumentError)

# --- values ---------------------------------------------------------------------------------

SCALARS = frozenset({str, int, bool, type(None)})
SCALARS_OR_FLOAT = SCALARS | {float}
# Encodings that never contain models, so walks looking for references can skip them.
LEAF_TYPES = frozenset({"ndarray", "typed_array", "bytes", "number", "slice"})

__all__ = ["BOKEH", "LEAF_TYPES", "SCALARS", "SCALARS_OR_FLOAT", "DocumentError", "ModelExists",
           "ModelInUse", "ModelNotFound", "decode_array", "encode_array", "encode_value",
           "has_containers", "is_ndarray", "number", "to_python"]

encode_array = encode_ndarray


def has_containers(items: list) -> bool:
    # map(type, ...) and set() run in C: much faster than a Python loop on long columns.
    return not set(map(type, items)) <= SCALARS_OR_FLOAT


def is_ndarray(value: Any) -> bool:
    return is_rep(value, "ndarray")


def decode_array(rep: dict) -> np.ndarray:
    """An ndarray rep as numpy (a writable copy), as bokeh's Deserializer would build it."""
    array = BOKEH.ndarray(rep, "ndarray")
    if type(array.items) is not list:
        items = array.items.copy()
    else:
        try:
            items = np.array(to_python(array.items), dtype=array.dtype)
        except (TypeError, ValueError) as e:
            raise DocumentError(f"bad ndarray encoding: {e}") from None
        if items.size != math.prod(array.shape):  # (items that are arrays themselves)
            raise DocumentError(f"ndarray shape {array.shape} does not match its "
                                f"{items.size} items")
    return items.reshape(array.shape) if len(array.shape) > 1 else items


def to_python(value: Any) -> Any:
    """Column values as Python/numpy, the way bokeh's Deserializer hands them to numpy."""
    if type(value) is list:
        if not has_containers(value):
            return value
        return [to_python(item) for item in value]
    if type(value) is dict:
        kind = value.get("type")
        if kind == "number":
            return BOKEH.number(value, "a number")
        if kind == "ndarray":
            return decode_array(value)
    return value

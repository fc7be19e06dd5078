"""A ColumnDataSource's `data` in a document, under Bokeh's stream / patch / column-replace
semantics.

Mirrors bokeh.models.sources.ColumnDataSource._stream/patch and
PropertyValueColumnData._stream/_patch on the JSON encodings; what a stream or a patch may
be is checked by the rules both services share (services/common/bokeh/rules.py).
Plain-list columns stay plain JSON lists; ndarray columns are decoded, changed with numpy
exactly as Bokeh does it (so dtype promotion and casting match), and re-encoded as Bokeh's
Serializer would. Every function returns a new value and never mutates its inputs: the
document relies on that to undo a failed batch of events for free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.common.bokeh.wire import is_rep, map_rep

from .values import BOKEH, DocumentError, decode_array, encode_array, encode_value, to_python

# Models whose `data` is a column map even when the attribute was never written (an empty
# ColumnDataSource leaves `data` out of its JSON).
CDS_TYPES = frozenset({"ColumnDataSource", "AjaxDataSource", "ServerSentDataSource"})


def read_columns(value: Any, what: str = "data") -> dict[str, Any]:
    """Columns of a `data` value in either JSON form: Bokeh's map rep, or a plain object."""
    if value is None:
        return {}
    if is_rep(value, "map"):
        return BOKEH.entries(value, what)
    if type(value) is dict and "type" not in value and "id" not in value:
        return dict(value)
    raise DocumentError(f"{what} is not a column map")


def write_columns(columns: dict[str, Any], like: Any) -> Any:
    """Columns back in the form `like` had (a map rep when there was nothing)."""
    if type(like) is dict and like.get("type") != "map":
        return dict(columns)
    return map_rep(columns)


def column_length(column: Any, name: str) -> int:
    if type(column) is list:
        return len(column)
    if is_rep(column, "ndarray"):
        shape = column.get("shape")
        if type(shape) is list and shape and type(shape[0]) is int:
            return shape[0]
        raise DocumentError(f"column {name!r}: ndarray has no valid shape")
    raise DocumentError(f"column {name!r} is neither a list nor an ndarray")


def _numpy(operation: str, fn, *args: Any) -> Any:
    # numpy refuses some of what a client can send (NaN into an int column, ragged rows...):
    # that is the client's error, reported as such.
    try:
        return fn(*args)
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise DocumentError(f"{operation}: {e}") from None


# --- ColumnsStreamed ------------------------------------------------------------------------


def stream(current: Any, new_data: dict[str, Any], rollover: int | None) -> Any:
    """`current` (a data value) with `new_data` (flat columns) appended, as Bokeh streams."""
    old = read_columns(current)
    if not old:
        old = {name: [] for name in new_data}
    else:
        BOKEH.streamed_names(list(old), list(new_data), "a stream")
    lengths = {}
    for name, column in new_data.items():
        if is_rep(column, "ndarray") and len(column.get("shape") or []) != 1:
            raise DocumentError(f"stream only takes 1-d arrays (column {name!r})")
        lengths[name] = column_length(column, name)
    BOKEH.same_length(lengths)
    columns = dict(old)
    for name, new in new_data.items():
        columns[name] = _stream_column(old[name], new, rollover, name)
    return write_columns(columns, current)


def _stream_column(old: Any, new: Any, rollover: int | None, name: str) -> Any:
    if type(old) is list and type(new) is list:
        seq = old + new
        return seq[len(seq) - rollover:] if rollover is not None and len(seq) > rollover else seq
    # An ndarray on either side: Bokeh keeps whichever side is non-empty as it is, or
    # np.append()s them (flattening, promoting the dtype), then cuts to the rollover.
    if column_length(old, name) == 0:
        seq = new
    elif column_length(new, name) == 0:
        seq = old
    else:
        seq = _numpy(f"stream to {name!r}", np.append, _as_numpy(old), _as_numpy(new))
    if rollover is not None and _length(seq, name) > rollover:
        if type(seq) is list:
            return seq[len(seq) - rollover:]
        seq = _as_numpy(seq)
        seq = seq[len(seq) - rollover:]
    return encode_array(seq) if isinstance(seq, np.ndarray) else seq


def _length(seq: Any, name: str) -> int:
    return len(seq) if isinstance(seq, np.ndarray) else column_length(seq, name)


def _as_numpy(column: Any) -> Any:
    return decode_array(column) if is_rep(column, "ndarray") else to_python(column)


# --- ColumnsPatched -------------------------------------------------------------------------


def patch(current: Any, patches: dict[str, Any]) -> Any:
    """`current` (a data value) with Bokeh's `patches` {column: [[index, value], ...]} done."""
    columns = dict(read_columns(current))
    for name, items in BOKEH.patches(patches, list(columns)).items():
        columns[name] = _patch_column(columns[name], BOKEH.patch_items(items, name), name)
    return write_columns(columns, current)


def _patch_column(column: Any, items: list[tuple[Any, Any]], name: str) -> Any:
    length = column_length(column, name)
    if type(column) is list:
        out: Any = list(column)
        for item, value in items:
            index = _index(item, name)
            if type(index) is int:
                out[BOKEH.index(index, length, name)] = value
            elif type(index) is slice:
                span = BOKEH.slice(index, length, name)
                if is_rep(value, "ndarray"):  # a list takes the array's items one by one
                    value = [encode_value(x) for x in decode_array(value).tolist()]
                _check_count(value, len(span), name)
                out[index] = value
            else:
                out[index[0]] = _patch_item_array(out, index, value, name)
        return out
    array = decode_array(column)
    for item, value in items:
        index = _index(item, name)
        if type(index) is int:
            BOKEH.index(index, length, name)
            _numpy(f"patch {name!r}", array.__setitem__, index, to_python(value))
        elif type(index) is slice:
            span = BOKEH.slice(index, length, name)
            if is_rep(value, "ndarray"):
                value = decode_array(value)
            _check_count(value, len(span), name)
            _numpy(f"patch {name!r}", array.__setitem__, index, to_python(value))
        else:
            BOKEH.index(index[0], length, name)
            _patch_subarray(array[index[0]], index, value, name)
    return encode_array(array)


def _index(index: Any, name: str) -> int | slice | tuple:
    """A patch's index: an int, a slice, or (int, sub-indices...) for an item's array."""
    if is_rep(index, "slice"):
        return BOKEH.slice(index, None, name)
    if type(index) is list:
        if len(index) < 2:
            raise DocumentError(f"a multi-index patch of {name!r} needs more than one index")
        if type(index[0]) is not int:
            raise DocumentError(f"the first index of a multi-index patch of {name!r} "
                                "must be an integer")
        return (index[0], *(_sub_index(i, name) for i in index[1:]))
    if type(index) is int:
        return index
    raise DocumentError(f"column {name!r}: invalid patch index {index!r}")


def _sub_index(index: Any, name: str) -> Any:
    if type(index) is not dict:
        return index  # (an int; anything else is refused against the item's shape)
    if not is_rep(index, "slice"):
        raise DocumentError(f"column {name!r}: invalid patch sub-index {index!r}")
    return BOKEH.slice(index, None, name)


def _check_count(value: Any, count: int, name: str) -> None:
    if type(value) is not list and not isinstance(value, np.ndarray):
        raise DocumentError(f"column {name!r}: a slice patch takes a list of values")
    BOKEH.slice_count(count, len(value), name)


def _patch_item_array(column: list, index: tuple, value: Any, name: str) -> Any:
    # a list column of arrays (images): the item is an ndarray rep we change and re-encode
    item = column[BOKEH.index(index[0], len(column), name)]
    if not is_rep(item, "ndarray"):
        raise DocumentError(f"can only sub-patch column {name!r} items that are ndarrays")
    array = decode_array(item)
    _patch_subarray(array, index, value, name)
    return encode_array(array)


def _patch_subarray(item: Any, index: tuple, value: Any, name: str) -> None:
    if not isinstance(item, np.ndarray) or item.ndim != len(index) - 1:
        raise DocumentError(f"shape mismatch between patch index {list(index)} "
                            f"and column {name!r}")
    for sub, size in zip(index[1:], item.shape, strict=True):
        if type(sub) is int:
            BOKEH.index(sub, size, name)
        elif type(sub) is not slice:
            raise DocumentError(f"column {name!r}: invalid patch sub-index {sub!r}")
    target = item[index[1:]]
    shape = np.shape(target)
    reshaped = _numpy(f"patch {name!r}", lambda: np.asarray(to_python(value)).reshape(shape))
    _numpy(f"patch {name!r}", item.__setitem__, index[1:], reshaped)


# --- ColumnDataChanged ----------------------------------------------------------------------


def replace_columns(current: Any, data: Any, cols: list[str] | None) -> Any:
    """Bokeh's ColumnDataChanged: `data` (a flat data value) replaces the attribute, or with
    `cols` only replaces those columns and the others stay. bokeh's Python
    Document.apply_json_patch drops the others too, but the live document that sent the
    event keeps them, and so does BokehJS: we follow those two."""
    new_columns = read_columns(data)
    if cols is None:
        return data
    columns = dict(read_columns(current))
    columns.update(new_columns)
    return write_columns(columns, current if current is not None else data)

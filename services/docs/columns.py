"""ColumnDataSource `data` under Bokeh's stream / patch / column-replace semantics.

Mirrors bokeh.models.sources.ColumnDataSource._stream/patch and
PropertyValueColumnData._stream/_patch, on the JSON encodings. Plain-list columns stay plain
JSON lists; ndarray columns are decoded, changed with numpy exactly as Bokeh does it (so dtype
promotion and casting match), and re-encoded as Bokeh's Serializer would. Every function
returns a new value and never mutates its inputs: the document relies on that to undo a
failed batch of events for free.

Where Bokeh is lax in ways BokehJS would not follow (an index equal to the column length
passes Bokeh's check; a slice given the wrong number of values resizes a Python list), these
functions refuse instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .values import (
    DocumentError,
    decode_array,
    encode_array,
    encode_value,
    is_ndarray,
    ndarray_length,
    to_python,
)

# Models whose `data` is a column map even when the attribute was never written (an empty
# ColumnDataSource leaves `data` out of its JSON).
CDS_TYPES = frozenset({"ColumnDataSource", "AjaxDataSource", "ServerSentDataSource"})


def read_columns(value: Any, what: str = "data") -> dict[str, Any]:
    """Columns of a `data` value in either JSON form: Bokeh's map rep, or a plain object."""
    if value is None:
        return {}
    if type(value) is dict:
        if value.get("type") == "map":
            entries = value.get("entries", [])
            if type(entries) is not list:
                raise DocumentError(f"{what}: map entries must be a list")
            columns: dict[str, Any] = {}
            for entry in entries:
                if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str:
                    raise DocumentError(f"{what}: map entries must be [name, column] pairs")
                columns[entry[0]] = entry[1]
            return columns
        if "type" not in value and "id" not in value:
            return dict(value)
    raise DocumentError(f"{what} is not a column map")


def write_columns(columns: dict[str, Any], like: Any) -> Any:
    """Columns back in the form `like` had (a map rep when there was nothing)."""
    if type(like) is dict and like.get("type") != "map":
        return dict(columns)
    if not columns:
        return {"type": "map"}  # Bokeh writes an empty dict without entries
    return {"type": "map", "entries": [[name, col] for name, col in columns.items()]}


def column_length(column: Any, name: str) -> int:
    if type(column) is list:
        return len(column)
    if is_ndarray(column):
        return ndarray_length(column)
    raise DocumentError(f"column {name!r} is neither a list nor an ndarray")


def _numpy(operation: str, fn, *args: Any) -> Any:
    # numpy refuses some of what a client can send (NaN into an int column, ragged rows...):
    # that is the client's error, reported as such.
    try:
        return fn(*args)
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise DocumentError(f"{operation}: {e}") from None


# --- ColumnsStreamed ------------------------------------------------------------------------


def check_rollover(rollover: Any) -> int | None:
    if rollover is None or (type(rollover) is int and rollover >= 0):
        return rollover
    raise DocumentError(f"rollover must be a non-negative integer or null, got {rollover!r}")


def stream(current: Any, new_data: dict[str, Any], rollover: int | None) -> Any:
    """`current` (a data value) with `new_data` (flat columns) appended, as Bokeh streams."""
    old = read_columns(current)
    if not old:
        old = {name: [] for name in new_data}
    elif set(old) != set(new_data):
        missing, extra = sorted(set(old) - set(new_data)), sorted(set(new_data) - set(old))
        detail = ", ".join(f"{label}: {', '.join(names)}"
                           for label, names in (("missing", missing), ("extra", extra)) if names)
        raise DocumentError(f"must stream updates to all existing columns ({detail})")
    lengths = set()
    for name, column in new_data.items():
        if is_ndarray(column) and len(column.get("shape") or []) != 1:
            raise DocumentError(f"stream only takes 1-d arrays (column {name!r})")
        lengths.add(column_length(column, name))
    if len(lengths) > 1:
        raise DocumentError("all streamed columns must have the same length")
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
    return decode_array(column) if is_ndarray(column) else to_python(column)


# --- ColumnsPatched -------------------------------------------------------------------------


def patch(current: Any, patches: dict[str, Any]) -> Any:
    """`current` (a data value) with Bokeh's `patches` {column: [[index, value], ...]} done."""
    columns = read_columns(current)
    extra = sorted(set(patches) - set(columns))
    if extra:
        raise DocumentError(f"can only patch existing columns (extra: {', '.join(extra)})")
    columns = dict(columns)
    for name, items in patches.items():
        if type(items) is not list:
            raise DocumentError(f"patches for column {name!r} must be a list")
        columns[name] = _patch_column(columns[name], items, name)
    return write_columns(columns, current)


def _patch_column(column: Any, items: list, name: str) -> Any:
    length = column_length(column, name)
    if type(column) is list:
        out: Any = list(column)
        for item in items:
            index, value = _patch_item(item, name)
            if type(index) is int:
                out[_check_index(index, length, name)] = value
            elif type(index) is slice:
                span = _check_slice(index, length, name)
                if is_ndarray(value):  # a list takes the array's items one by one
                    value = [encode_value(x) for x in decode_array(value).tolist()]
                _check_count(value, len(span), name)
                out[index] = value
            else:
                out[index[0]] = _patch_item_array(out, index, value, name)
        return out
    array = decode_array(column)
    for item in items:
        index, value = _patch_item(item, name)
        if type(index) is int:
            _check_index(index, length, name)
            _numpy(f"patch {name!r}", array.__setitem__, index, to_python(value))
        elif type(index) is slice:
            span = _check_slice(index, length, name)
            _numpy(f"patch {name!r}", array.__setitem__, index,
                   _values(value, len(span), name))
        else:
            _check_index(index[0], length, name)
            _patch_subarray(array[index[0]], index, value, name)
    return encode_array(array)


def _patch_item(item: Any, name: str) -> tuple[Any, Any]:
    if type(item) is not list or len(item) != 2:
        raise DocumentError(f"a patch of column {name!r} must be an [index, value] pair")
    index, value = item
    if type(index) is dict and index.get("type") == "slice":
        return _slice(index, name), value
    if type(index) is list:
        if len(index) < 2:
            raise DocumentError(f"a multi-index patch of {name!r} needs more than one index")
        if type(index[0]) is not int:
            raise DocumentError(f"the first index of a multi-index patch of {name!r} "
                                "must be an integer")
        subs = [_slice(i, name) if type(i) is dict else i for i in index[1:]]
        return (index[0], *subs), value
    if type(index) is int:
        return index, value
    raise DocumentError(f"invalid patch index {index!r} for column {name!r}")


def _slice(rep: dict, name: str) -> slice:
    if rep.get("type") != "slice":
        raise DocumentError(f"invalid patch sub-index {rep!r} for column {name!r}")
    parts = [rep.get(k) for k in ("start", "stop", "step")]
    for part in parts:
        if part is not None and (type(part) is not int or part < 0):
            raise DocumentError(f"patch slices need non-negative integer bounds, got {parts}")
    start, stop, step = parts
    if start is not None and stop is not None and start > stop:
        raise DocumentError(f"patch slices must have start <= stop, got {parts}")
    if step == 0:
        raise DocumentError("patch slices can't have step 0")
    return slice(start, stop, step)


def _check_index(index: int, length: int, name: str) -> int:
    if not 0 <= index < length:
        raise DocumentError(f"out-of-bounds index ({index}) in patch for column {name!r} "
                            f"of length {length}")
    return index


def _check_slice(index: slice, length: int, name: str) -> range:
    if index.stop is not None and index.stop > length:
        raise DocumentError(f"out-of-bounds slice stop ({index.stop}) in patch for column "
                            f"{name!r} of length {length}")
    return range(*index.indices(length))


def _values(value: Any, count: int, name: str) -> Any:
    """The values of a slice patch of an ndarray column, for numpy."""
    if is_ndarray(value):
        value = decode_array(value)
    _check_count(value, count, name)
    return to_python(value)


def _check_count(value: Any, count: int, name: str) -> None:
    # Exactly one value per patched position: a Python list would otherwise grow or shrink,
    # and numpy would broadcast, where BokehJS just walks the slice.
    if type(value) is not list and not isinstance(value, np.ndarray):
        raise DocumentError(f"a slice patch of {name!r} needs a list of values")
    if len(value) != count:
        raise DocumentError(f"a slice patch of {name!r} covers {count} items "
                            f"but has {len(value)} values")


def _patch_item_array(column: list, index: tuple, value: Any, name: str) -> Any:
    # a list column of arrays (images): the item is an ndarray rep we change and re-encode
    item = column[_check_index(index[0], len(column), name)]
    if not is_ndarray(item):
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
            _check_index(sub, size, name)
        elif type(sub) is not slice:
            raise DocumentError(f"invalid patch sub-index {sub!r} for column {name!r}")
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

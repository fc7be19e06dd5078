"""What ColumnDataSource.stream and .patch accept, checked once for docs and data.

Follows bokeh.models.sources.ColumnDataSource._stream / .patch and
PropertyValueColumnData._stream / _patch. Where Bokeh is lax in ways BokehJS would not
follow (an index equal to the column's length passes Bokeh's check; a slice given the wrong
number of values resizes a Python list; step 0 fails half-way through), these refuse the
whole change instead. tests/test_data_semantics.py and tests/test_docs_semantics.py hold
both services to Bokeh.
"""

from __future__ import annotations

from typing import Any

from .wire import Wire, is_rep


def quote_names(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


class Rules(Wire):
    """The checks, raising the service's error (see Wire)."""

    def rollover(self, rollover: Any) -> int | None:
        if rollover is None or (type(rollover) is int and rollover >= 0):
            return rollover
        raise self.error(f"rollover must be a non-negative integer or null, got {rollover!r}")

    def streamed_names(self, names: list[str], given: list[str], what: str) -> None:
        """A stream (`what`: "an append") gives every column of the source and no other."""
        have, want = set(given), set(names)
        missing = [n for n in names if n not in have]
        extra = [n for n in given if n not in want]
        if missing or extra:
            parts = ([f"missing: {quote_names(missing)}"] if missing else []) + \
                ([f"extra: {quote_names(extra)}"] if extra else [])
            raise self.error(f"{what} must give every column of the source and no other "
                             f"({'; '.join(parts)})")

    def same_length(self, lengths: dict[str, int]) -> None:
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n!r} has {k}" for n, k in list(lengths.items())[:6])
            raise self.error(f"all columns must have the same length ({shown})")

    # --- patches --------------------------------------------------------------------------

    def patches(self, patches: Any, names: list[str]) -> dict[str, Any]:
        """`{column: [[index, value], ...]}` (or Bokeh's map rep of it), naming only
        existing columns."""
        if is_rep(patches, "map"):
            patches = self.entries(patches, "patches")
        if type(patches) is not dict:
            raise self.error("patches must map column names to lists of [index, value] pairs")
        unknown = [n for n in patches if n not in names]
        if unknown:
            raise self.error(f"can only patch existing columns (unknown: {quote_names(unknown)})")
        return patches

    def patch_items(self, items: Any, name: str) -> list[tuple[Any, Any]]:
        """A column's patches as (index, value) pairs."""
        if type(items) not in (list, tuple):
            raise self.error(f"column {name!r}: patches must be a list of [index, value] pairs")
        pairs = []
        for item in items:
            if type(item) not in (list, tuple) or len(item) != 2:
                raise self.error(f"column {name!r}: each patch must be an [index, value] pair")
            pairs.append((item[0], item[1]))
        return pairs

    def index(self, index: int, n: int, name: str) -> int:
        if not 0 <= index < n:
            raise self.error(f"column {name!r}: patch index {index} is out of range for "
                             f"{n} rows")
        return index

    def slice(self, rep: Any, n: int | None, name: str) -> range | slice:
        """A patch slice (a slice, or its rep `{"type": "slice", "start", "stop", "step"}`)
        checked: integer or null bounds, none negative, start <= stop, step not 0, and with
        `n` (the rows it indexes) a stop within them; the rows it selects (a range), or the
        slice when `n` is not known (a sub-index of a multi-dimensional patch)."""
        s = rep if isinstance(rep, slice) else slice(rep.get("start"), rep.get("stop"),
                                                      rep.get("step"))
        for part in (s.start, s.stop, s.step):
            if part is not None and type(part) is not int:
                raise self.error(f"column {name!r}: slice bounds must be integers or null, "
                                 f"got {part!r}")
        start, stop, step = s.start, s.stop, s.step
        if any(p is not None and p < 0 for p in (start, stop, step)):
            raise self.error(f"column {name!r}: patch slices must have non-negative start, "
                             "stop and step")
        if start is not None and stop is not None and start > stop:
            raise self.error(f"column {name!r}: patch slice start {start} is after stop "
                             f"{stop}")
        if step == 0:
            raise self.error(f"column {name!r}: patch slice step must not be zero")
        if n is None:
            return s
        if stop is not None and stop > n:
            raise self.error(f"column {name!r}: patch slice stop {stop} is out of range for "
                             f"{n} rows")
        return range(*s.indices(n))

    def slice_count(self, rows: int, given: int, name: str) -> None:
        """Exactly one value per position a slice selects: a Python list would otherwise
        grow or shrink, and numpy would broadcast, where BokehJS walks the slice."""
        if given != rows:
            raise self.error(f"column {name!r}: patch slice selects {rows} rows but {given} "
                             "values were given")

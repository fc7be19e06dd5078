"""The proof: append / rollover / patch on Arrow tables equal Bokeh's ColumnDataSource.

Hundreds of seeded random cases: random columns (floats with NaN and ±inf, ints, strings,
bools), held by Bokeh as lists or numpy arrays, and random sequences of stream (with and
without rollover, rollover 0 and rollover smaller than the batch) and patch (index and slice
forms). Each operation is encoded once, by Bokeh's own Serializer, and sent through real JSON;
our side reads that wire form (`json_batch` + `stream`, `patch`), Bokeh's side either calls
`ColumnDataSource.stream/.patch` with the Python values or applies the very same wire JSON as a
`ColumnsStreamed` / `ColumnsPatched` event through `Document.apply_json_patch`. After every
operation the columns are compared, NaN-aware.

Then invalid input: everything Bokeh refuses we refuse, and the places where Bokeh does
something odd instead of refusing are pinned down one by one (we refuse those too).
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from bokeh.core.serialization import Deserializer, Serializer
from bokeh.document import Document
from bokeh.models import ColumnDataSource

from services.data import columns as c
from services.data.columns import DataError

N_CASES = 320
KINDS = ("float", "int", "str", "bool")
DTYPE = {"float": "float64", "int": "int64", "str": "string", "bool": "bool"}
NUMPY = {"float": np.float64, "int": np.int64, "str": object, "bool": np.bool_}
WORDS = ["", "a", "b", "zz", "é", "naïve ✓", "NaN", "null", "0", " x "]


def wire(value: Any) -> Any:
    """Bokeh's encoding of `value`, through real JSON (no bare NaN / Infinity allowed)."""
    return json.loads(json.dumps(Serializer(deferred=False).encode(value), allow_nan=False))


class Case:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.numpy = bool(self.rng.integers(2))     # Bokeh holds lists or numpy arrays
        self.via_document = bool(self.rng.integers(2))  # Python API or the wire event
        n_cols = int(self.rng.integers(1, 5))
        self.kinds = {f"c{i}": KINDS[int(self.rng.integers(4))] for i in range(n_cols)}

    def value(self, kind: str, *, patch: bool = False) -> Any:
        r = self.rng
        if kind == "float":
            u = r.random()
            if u < 0.15:
                return math.nan
            if u < 0.2:
                return math.inf if r.integers(2) else -math.inf
            if patch and u < 0.25 and not self.numpy:
                return None  # Bokeh's list keeps None; its numpy array and we hold NaN
            return float(np.round(r.normal() * 100, int(r.integers(0, 6))))
        if kind == "int":
            v = int(r.integers(-10**6, 10**6))
            return float(v) if patch and r.random() < 0.1 else v  # 5.0 is a fine int
        if kind == "str":
            return WORDS[int(r.integers(len(WORDS)))]
        return bool(r.integers(2))

    def values(self, kind: str, n: int, *, patch: bool = False) -> Any:
        vals = [self.value(kind, patch=patch) for _ in range(n)]
        if self.numpy:
            return np.array(vals, dtype=NUMPY[kind]) if kind != "str" else \
                np.array(vals + [None], dtype=object)[:-1]  # 1-d object array
        return vals

    def columns(self, n: int) -> dict[str, Any]:
        return {name: self.values(kind, n) for name, kind in self.kinds.items()}


def normal(values: Any, kind: str) -> list:
    out = values.tolist() if isinstance(values, np.ndarray) else list(values)
    out = [v.item() if isinstance(v, np.generic) else v for v in out]
    if kind == "float":
        out = [math.nan if v is None else float(v) for v in out]
    return out


def equal(ours: list, theirs: list, kind: str) -> bool:
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        if kind == "float":
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                return False
        elif kind == "bool":
            if type(a) is not bool or a != b:
                return False
        elif a != b or (kind == "int" and type(a) is not int):
            return False
    return True


def compare(table: pa.Table, cds: ColumnDataSource, case: Case, what: str) -> None:
    ours = {n: Deserializer().decode(v) for n, v in c.to_json(table).items()}
    assert set(ours) == set(cds.data), what
    for name, kind in case.kinds.items():
        theirs = normal(cds.data[name], kind)
        assert equal(ours[name], theirs, kind), (what, name, ours[name], theirs)
    assert [c.dtype_name(f.type) for f in table.schema] == [DTYPE[k] for k in case.kinds.values()]


def random_slice(case: Case, n: int) -> slice:
    """A slice Bokeh accepts: non-negative, start <= stop <= n, step >= 1."""
    r = case.rng
    start = None if r.random() < 0.25 else int(r.integers(0, n + 1))
    stop = None if r.random() < 0.25 else int(r.integers(start or 0, n + 1))
    step = None if r.random() < 0.5 else int(r.integers(1, 4))
    return slice(start, stop, step)


def random_patches(case: Case, n: int) -> dict[str, list]:
    r = case.rng
    names = list(case.kinds)
    chosen = [names[i] for i in r.permutation(len(names))[: int(r.integers(1, len(names) + 1))]]
    patches: dict[str, list] = {}
    for name in chosen:
        kind = case.kinds[name]
        items: list = []
        for _ in range(int(r.integers(0, 5))):
            if n and r.random() < 0.55:
                items.append((int(r.integers(0, n)), case.value(kind, patch=True)))
            else:
                s = random_slice(case, n)
                items.append((s, case.values(kind, len(range(*s.indices(n))), patch=True)))
        patches[name] = items
    return patches


def run_case(seed: int) -> dict[str, int]:
    case = Case(seed)
    n0 = int(case.rng.integers(0, 12))
    initial = case.columns(n0)
    table = c.table_from_json(wire(initial), {n: DTYPE[k] for n, k in case.kinds.items()})
    cds = ColumnDataSource(data=initial)
    doc = None
    if case.via_document:
        doc = Document()
        doc.add_root(cds)
    counts = {"stream": 0, "rollover": 0, "rollover 0": 0, "rollover < batch": 0, "patch": 0,
              "slices": 0, "empty start": int(n0 == 0)}
    compare(table, cds, case, f"seed {seed} initial")
    for step in range(int(case.rng.integers(1, 9))):
        if case.rng.random() < 0.5:
            k = int(case.rng.integers(0, 7))
            new = case.columns(k)
            u = case.rng.random()
            rollover = None if u < 0.35 else 0 if u < 0.45 else \
                max(k - 1, 0) if u < 0.6 else int(case.rng.integers(0, 25))
            data = wire(new)
            table = c.stream(table, c.json_batch(table.schema, data), rollover)
            if doc is not None:
                doc.apply_json_patch({"events": [{
                    "kind": "ColumnsStreamed", "model": {"id": cds.id}, "attr": "data",
                    "data": data, "rollover": rollover}]})
            else:
                cds.stream(new, rollover)
            counts["stream"] += 1
            counts["rollover"] += rollover is not None
            counts["rollover 0"] += rollover == 0
            counts["rollover < batch"] += rollover is not None and 0 < rollover < k
            what = f"seed {seed} step {step}: stream {k} rows, rollover {rollover}"
        else:
            patches = random_patches(case, table.num_rows)
            data = wire(patches)
            table = c.patch(table, data)
            if doc is not None:
                doc.apply_json_patch({"events": [{
                    "kind": "ColumnsPatched", "model": {"id": cds.id}, "attr": "data",
                    "patches": data}]})
            else:
                cds.patch(patches)
            counts["patch"] += 1
            counts["slices"] += sum(isinstance(i, slice) for p in patches.values() for i, _ in p)
            what = f"seed {seed} step {step}: patch {patches}"
        compare(table, cds, case, what)
    return counts


@pytest.mark.parametrize("seed", range(N_CASES))
def test_random_stream_and_patch_sequence_matches_bokeh(seed):
    run_case(seed)


def test_the_random_cases_cover_every_form():
    totals: dict[str, int] = {}
    modes = set()
    for seed in range(N_CASES):
        case = Case(seed)
        modes.add((case.numpy, case.via_document))
        for key, value in run_case(seed).items():
            totals[key] = totals.get(key, 0) + value
    assert len(modes) == 4  # lists / numpy, Python API / wire events
    assert totals["stream"] > 400 and totals["rollover"] > 250
    assert totals["patch"] > 400 and totals["slices"] > 300
    assert totals["rollover 0"] > 30 and totals["rollover < batch"] > 30
    assert totals["empty start"] > 10


# --- invalid input --------------------------------------------------------------------------


def bokeh_outcome(data: dict, action) -> str:
    """'raises' or 'silent' for Bokeh doing `action` on a source holding `data`."""
    cds = ColumnDataSource(data=data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            action(cds)
    except (ValueError, IndexError, TypeError):
        return "raises"
    return "silent"


def invalid_patches(rng: np.random.Generator, n: int) -> tuple[str, dict]:
    """A patch to column 'f' (floats, n rows) Bokeh's validation is meant to refuse."""
    category = ["unknown", "index>len", "index<0", "slice<0", "start>stop", "stop>len",
                "multi"][int(rng.integers(7))]
    if category == "unknown":
        return category, {"nope": [(0, 1.0)]}
    if category == "index>len":
        return category, {"f": [(int(rng.integers(n + 1, n + 5)), 1.0)]}
    if category == "index<0":
        return category, {"f": [(-int(rng.integers(1, n + 2)), 1.0)]}
    if category == "slice<0":
        part = int(rng.integers(3))
        bounds = [None, None, None]
        bounds[part] = -int(rng.integers(1, 3))
        return category, {"f": [(slice(*bounds), [1.0])]}
    if category == "start>stop":
        stop = int(rng.integers(0, n))
        return category, {"f": [(slice(stop + 1, stop), [])]}
    if category == "stop>len":
        return category, {"f": [(slice(0, n + int(rng.integers(1, 4))), [1.0] * (n + 1))]}
    return category, {"f": [([0, int(rng.integers(n))], 1.0)]}


def test_invalid_patches_refused_where_bokeh_refuses():
    seen = set()
    for seed in range(120):
        rng = np.random.default_rng(10_000 + seed)
        n = int(rng.integers(1, 8))
        values = [float(v) for v in rng.normal(size=n)]
        category, patches = invalid_patches(rng, n)
        for numpy in (False, True):
            data = {"f": np.array(values) if numpy else list(values)}
            assert bokeh_outcome(data, lambda s, p=patches: s.patch(p)) == "raises", category
        table = c.table_from_json({"f": values})
        with pytest.raises(DataError):
            c.patch(table, wire(patches))
        seen.add(category)
    assert len(seen) == 7


def test_invalid_streams_refused_where_bokeh_refuses():
    data = {"a": [1.0, 2.0], "b": ["x", "y"]}
    table = c.table_from_json(data)
    for new in ({"a": [1.0]}, {"a": [1.0], "b": ["z"], "c": [1]}, {"a": [1.0], "c": ["z"]}):
        assert bokeh_outcome(dict(data), lambda s, v=new: s.stream(v)) == "raises"
        with pytest.raises(DataError, match="missing|extra"):
            c.json_batch(table.schema, wire(new))
    uneven = {"a": [1.0], "b": ["z", "w"]}
    assert bokeh_outcome(dict(data), lambda s: s.stream(uneven)) == "raises"
    with pytest.raises(DataError, match="same length"):
        c.json_batch(table.schema, wire(uneven))


# --- where Bokeh is odd (each one we refuse) ------------------------------------------------


def refused(table: pa.Table, patches: dict) -> None:
    with pytest.raises(DataError):
        c.patch(table, wire(patches))


def test_bokeh_index_equal_to_length_is_not_atomic():
    """Bokeh's check is `ind > len`, so index == len passes it and fails while applying,
    after the earlier patches in the same call were already applied."""
    for data in ([1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0])):
        cds = ColumnDataSource(data={"f": data})
        with pytest.raises(IndexError):
            cds.patch({"f": [(0, 9.0), (3, 5.0)]})
        assert normal(cds.data["f"], "float")[0] == 9.0  # half applied
    refused(c.table_from_json({"f": [1.0, 2.0, 3.0]}), {"f": [(0, 9.0), (3, 5.0)]})


def test_bokeh_accepts_booleans_as_indices():
    cds = ColumnDataSource(data={"f": [1.0, 2.0]})
    cds.patch({"f": [(True, 9.0)]})
    assert cds.data["f"] == [1.0, 9.0]
    refused(c.table_from_json({"f": [1.0, 2.0]}), {"f": [(True, 9.0)]})


def test_bokeh_slice_value_counts():
    """A list column is resized by a slice given too many or too few values (columns end up
    with unequal lengths); a numpy column broadcasts a single value or a scalar."""
    cds = ColumnDataSource(data={"f": [1.0, 2.0, 3.0]})
    cds.patch({"f": [(slice(0, 2), [7.0, 8.0, 9.0, 10.0])]})
    assert cds.data["f"] == [7.0, 8.0, 9.0, 10.0, 3.0]
    cds = ColumnDataSource(data={"f": [1.0, 2.0, 3.0]})
    cds.patch({"f": [(slice(5, None), [4.0])]})  # start past the end with stop None: appends
    assert cds.data["f"] == [1.0, 2.0, 3.0, 4.0]
    cds = ColumnDataSource(data={"f": np.array([1.0, 2.0, 3.0])})
    cds.patch({"f": [(slice(0, 3), [7.0]), (slice(1, 3), 5.0)]})
    assert cds.data["f"].tolist() == [7.0, 5.0, 5.0]
    table = c.table_from_json({"f": [1.0, 2.0, 3.0]})
    for patches in ({"f": [(slice(0, 2), [7.0, 8.0, 9.0])]}, {"f": [(slice(5, None), [4.0])]},
                    {"f": [(slice(0, 3), [7.0])]}, {"f": [(slice(1, 3), 5.0)]}):
        refused(table, patches)


def test_bokeh_step_zero_fails_late():
    cds = ColumnDataSource(data={"f": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="step cannot be zero"):
        cds.patch({"f": [(0, 9.0), (slice(0, 2, 0), [1.0])]})
    assert cds.data["f"][0] == 9.0  # half applied
    refused(c.table_from_json({"f": [1.0, 2.0, 3.0]}), {"f": [(slice(0, 2, 0), [1.0])]})


def test_bokeh_patch_values_of_the_wrong_type():
    """Lists take anything; numpy arrays cast silently (1.5 -> 1, None -> False, 5 -> '5')
    and truncate strings to the array's width."""
    cds = ColumnDataSource(data={"f": [1.0, 2.0], "i": [1, 2], "l": [1.0, 2.0]})
    cds.patch({"f": [(0, "x")], "i": [(0, 1.5)], "l": [(0, [1, 2])]})
    assert cds.data == {"f": ["x", 2.0], "i": [1.5, 2], "l": [[1, 2], 2.0]}
    cds = ColumnDataSource(data={"i": np.array([1, 2]), "b": np.array([True, True]),
                                 "s": np.array(["a", "bb"])})
    cds.patch({"i": [(0, 1.5)], "b": [(0, None), (1, 5)], "s": [(0, "cccc"), (1, 7)]})
    assert cds.data["i"].tolist() == [1, 2]
    assert cds.data["b"].tolist() == [False, True]
    assert cds.data["s"].tolist() == ["cc", "7"]
    table = c.table_from_json({"f": [1.0, 2.0], "i": [1, 2], "b": [True, True],
                               "s": ["a", "bb"]})
    for patches in ({"f": [(0, "x")]}, {"i": [(0, 1.5)]}, {"f": [(0, [1, 2])]},
                    {"b": [(0, None)]}, {"b": [(1, 5)]}, {"s": [(1, 7)]}):
        refused(table, patches)
    assert c.patch(table, {"s": [[0, "cccc"]]})["s"].to_pylist() == ["cccc", "bb"]


def test_bokeh_stream_changes_column_types():
    """Streaming floats into an int array promotes it; strings into a float array turn it
    into a '<U32' string array; a list column simply holds the mix. We refuse all three."""
    cds = ColumnDataSource(data={"i": np.array([1, 2])})
    cds.stream({"i": np.array([1.5])})
    assert cds.data["i"].dtype == np.float64
    cds = ColumnDataSource(data={"f": np.array([1.0])})
    cds.stream({"f": np.array(["x"])})
    assert cds.data["f"].dtype.kind == "U"
    cds = ColumnDataSource(data={"f": [1.0]})
    cds.stream({"f": ["x"]})
    assert cds.data["f"] == [1.0, "x"]
    ints = c.table_from_json({"i": [1, 2]})
    floats = c.table_from_json({"f": [1.0]})
    with pytest.raises(DataError):
        c.stream(ints, c.json_batch(ints.schema, {"i": [1.5]}), None)
    with pytest.raises(DataError):
        c.stream(ints, c.table_from_json({"i": [1.5]}), None)
    with pytest.raises(DataError):
        c.stream(floats, c.json_batch(floats.schema, {"f": ["x"]}), None)


def test_bokeh_rollover_not_validated():
    """A negative rollover silently empties the columns; a float one fails after the rows were
    already appended to a list column."""
    cds = ColumnDataSource(data={"f": [1.0, 2.0]})
    cds.stream({"f": [3.0]}, rollover=-1)
    assert cds.data["f"] == []
    cds = ColumnDataSource(data={"f": [1.0, 2.0]})
    with pytest.raises(TypeError):
        cds.stream({"f": [3.0]}, rollover=1.5)
    assert cds.data["f"] == [1.0, 2.0, 3.0]
    table = c.table_from_json({"f": [1.0, 2.0]})
    batch = c.table_from_json({"f": [3.0]})
    for rollover in (-1, 1.5):
        with pytest.raises(DataError, match="rollover"):
            c.stream(table, batch, rollover)

"""services.data.columns: JSON / Arrow conversion, validation, append, patch, hashes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from bokeh.core.serialization import Deserializer, Serializer
from bokeh.util.serialization import convert_datetime_array

from services.data import columns as c
from services.data.columns import DataError

NAN = {"type": "number", "value": "nan"}
PINF = {"type": "number", "value": "+inf"}
NINF = {"type": "number", "value": "-inf"}


def encode(value):
    return Serializer(deferred=False).encode(value)


def wire(value):
    """Through real JSON, as a client would send it."""
    return json.loads(json.dumps(value, allow_nan=False))


def same(a, b) -> bool:
    """NaN-aware list equality."""
    return len(a) == len(b) and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)
        for x, y in zip(a, b, strict=True))


def plain(table: pa.Table) -> dict[str, list]:
    return {n: Deserializer().decode(v) for n, v in c.to_json(table).items()}


def err(fn, *args, match: str = "", **kw) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kw)
    return info.value


# --- dtypes ---------------------------------------------------------------------------------


def test_dtypes_round_trip():
    assert c.DTYPES[:13] == ("float64", "float32", "int64", "int32", "int16", "int8", "uint64",
                             "uint32", "uint16", "uint8", "bool", "string", "datetime64[ms]")
    assert "datetime64[us]" in c.DTYPES
    for name in c.DTYPES:
        assert c.dtype_name(c.arrow_type(name)) == name
    assert c.arrow_type("float64") == pa.float64()
    assert c.arrow_type("datetime64[ms]") == pa.timestamp("ms")


@pytest.mark.parametrize("bad", ["float", "object", "datetime64[ns]", "", None, 3, ["int64"]])
def test_arrow_type_unknown(bad):
    err(c.arrow_type, bad, match="unknown dtype")


@pytest.mark.parametrize("t", [pa.list_(pa.int64()), pa.large_string(), pa.timestamp("ns"),
                               pa.timestamp("ms", tz="UTC"), pa.binary(), pa.float16()])
def test_dtype_name_unsupported(t):
    err(c.dtype_name, t, match="unsupported")


def test_errors_carry_status():
    e = DataError("nope")
    assert (e.status, e.code, e.detail, str(e)) == (422, "invalid_data", "nope", "nope")
    assert isinstance(e, ValueError)
    big = c.DataTooLarge("big")
    assert isinstance(big, DataError) and big.status == 413
    assert c.UnknownColumn("x").status == 404


# --- table_from_json ------------------------------------------------------------------------


def test_infers_dtypes():
    t = c.table_from_json({"i": [1, 2, 3], "f": [1, 2.5, 3], "b": [True, False, True],
                           "s": ["a", "b", ""], "n": [1, None, 3], "e": [1, NAN, 2]})
    assert [c.dtype_name(f.type) for f in t.schema] == \
        ["int64", "float64", "bool", "string", "float64", "float64"]
    assert t.column_names == ["i", "f", "b", "s", "n", "e"]
    got = plain(t)
    assert got["i"] == [1, 2, 3] and all(type(v) is int for v in got["i"])
    assert same(got["n"], [1.0, math.nan, 3.0])
    assert same(got["e"], [1.0, math.nan, 2.0])


def test_number_encodings_and_nulls():
    t = c.table_from_json({"f": [NAN, PINF, NINF, {"type": "number", "value": 2.5}, None, 1],
                           "s": ["a", None, "c", "", None, "f"]})
    assert t["f"].null_count == 0  # null is NaN in a float column, as Bokeh reads it
    f = t["f"].to_pylist()
    assert math.isnan(f[0]) and f[1] == math.inf and f[2] == -math.inf and f[3] == 2.5
    assert math.isnan(f[4]) and f[5] == 1.0
    assert t["s"].to_pylist() == ["a", None, "c", "", None, "f"]
    # Python floats (json.loads accepts NaN / Infinity) work too
    t2 = c.table_from_json({"f": [math.nan, math.inf, -math.inf]})
    assert c.column_hash(t2["f"]) == c.column_hash(t["f"].slice(0, 3))


@pytest.mark.parametrize("dtype,values,expected", [
    ("float64", [1, 2.5, None], [1.0, 2.5, math.nan]),
    ("float32", [1, 0.5, NAN], [1.0, 0.5, math.nan]),
    ("int64", [1, 2.0, -3], [1, 2, -3]),
    ("int32", [2**31 - 1, -(2**31)], [2**31 - 1, -(2**31)]),
    ("int16", [1, -2], [1, -2]),
    ("int8", [127, -128], [127, -128]),
    ("uint64", [2**64 - 1, 0], [2**64 - 1, 0]),
    ("uint32", [2**32 - 1], [2**32 - 1]),
    ("uint16", [65535], [65535]),
    ("uint8", [255, 0], [255, 0]),
    ("bool", [True, False], [True, False]),
    ("string", ["x", None], ["x", None]),
])
def test_declared_dtypes(dtype, values, expected):
    t = c.table_from_json({"c": values}, {"c": dtype})
    assert c.dtype_name(t["c"].type) == dtype
    assert same(t["c"].to_pylist(), expected)


@pytest.mark.parametrize("dtype", c.DTYPES)
def test_declared_empty_columns(dtype):
    t = c.table_from_json({"a": [], "b": []}, {"a": dtype, "b": "string"})
    assert t.num_rows == 0 and c.dtype_name(t["a"].type) == dtype
    assert c.to_json(t) == {"a": [], "b": []}


@pytest.mark.parametrize("columns,dtypes,match", [
    ({"a": [1, 2], "b": [1]}, None, "same length"),
    ({"a": [1, "x"]}, None, "mixes numbers and strings"),
    ({"a": [True, 1]}, None, "mixes booleans and numbers"),
    ({"a": [True, "x"]}, None, "mixes booleans and strings"),
    ({"a": []}, None, "'a' is empty: give its dtype"),
    ({"a": [None, None]}, None, "only nulls"),
    ({"a": [True, None]}, None, "bool column cannot hold null"),
    ({"a": [1]}, {"a": "float"}, "column 'a': unknown dtype"),
    ({"a": [1]}, {"b": "int64"}, "not given: 'b'"),
    ({"a": [1]}, ["int64"], "dtypes must be an object"),
    ({"a": [1.5]}, {"a": "int64"}, "column 'a': 1.5 is not a valid int64"),
    ({"a": [NAN]}, {"a": "int64"}, "NaN or infinity"),
    ({"a": [None]}, {"a": "int32"}, "cannot hold null"),
    ({"a": [300]}, {"a": "int8"}, "out of range for int8"),
    ({"a": [-1]}, {"a": "uint8"}, "out of range for uint8"),
    ({"a": [2**63]}, {"a": "int64"}, "out of range for int64"),
    ({"a": [1e300]}, {"a": "float32"}, "out of range for float32"),
    ({"a": ["a"]}, {"a": "float64"}, "'a': a float64 column cannot hold strings"),
    ({"a": [True]}, {"a": "int64"}, "int64 column cannot hold booleans"),
    ({"a": [1]}, {"a": "bool"}, "bool column cannot hold numbers"),
    ({"a": [None]}, {"a": "bool"}, "cannot hold null"),
    ({"a": [1]}, {"a": "string"}, "string column cannot hold numbers"),
    ({"a": [[1, 2]]}, None, "not list"),
    ({"a": [{"x": 1}]}, None, "unsupported value"),
    ({"a": [{"type": "number", "value": "lots"}]}, None, "unsupported value"),
    ({"a": "abc"}, None, "must be a list"),
    ({"a": {"x": 1}}, None, "must be a list"),
    ({"": [1]}, None, "non-empty"),
    ({"x" * 201: [1]}, None, "longer than 200"),
    ([1, 2], None, "columns must be an object"),
    ("x", None, "columns must be an object"),
])
def test_json_errors(columns, dtypes, match):
    err(c.table_from_json, columns, dtypes, match=match)


def test_column_count_and_name_limits():
    ok = c.table_from_json({f"c{i}": [i] for i in range(1000)})
    assert ok.num_columns == 1000
    err(c.table_from_json, {f"c{i}": [i] for i in range(1001)}, match="too many columns")
    assert c.table_from_json({"x" * 200: [1]}).column_names == ["x" * 200]


def test_empty_table():
    t = c.table_from_json({})
    assert t.num_columns == 0 and t.num_rows == 0 and c.to_json(t) == {}


def test_bokeh_map_rep_and_ndarray_encodings():
    data = {"f": np.array([1.0, np.nan, np.inf, -2.0]), "i": np.array([1, 2, 3, 2**40]),
            "i32": np.arange(4, dtype=np.int64), "b": np.array([True, False, True, True]),
            "f32": np.array([0.5, 1, 2, 3], dtype=np.float32), "s": np.array(["a", "b", "", "d"]),
            "u8": np.array([1, 2, 3, 255], dtype=np.uint8), "l": [1, math.nan, 2, None]}
    rep = wire(encode(data))
    assert rep["type"] == "map"
    assert dict(rep["entries"])["i32"]["dtype"] == "int32"  # bokeh narrows int64 on the wire
    assert dict(rep["entries"])["i"]["dtype"] == "object"  # ... unless it can't
    t = c.table_from_json(rep)
    assert {f.name: c.dtype_name(f.type) for f in t.schema} == {
        "f": "float64", "i": "int64", "i32": "int64", "b": "bool", "f32": "float32",
        "s": "string", "u8": "int64", "l": "float64"}
    got = plain(t)
    assert same(got["f"], [1.0, math.nan, math.inf, -2.0])
    assert got["i"] == [1, 2, 3, 2**40] and got["i32"] == [0, 1, 2, 3]
    assert got["b"] == [True, False, True, True] and got["s"] == ["a", "b", "", "d"]
    assert got["f32"] == [0.5, 1.0, 2.0, 3.0] and got["u8"] == [1, 2, 3, 255]
    # a declared dtype wins over the ndarray's
    t2 = c.table_from_json(rep, {"u8": "uint8", "f32": "float64"})
    assert t2["u8"].type == pa.uint8() and t2["f32"].type == pa.float64()


def _ndarray(data: bytes, dtype: str, n: int, order: str = "little", gz: bool = False) -> dict:
    import gzip
    raw = gzip.compress(data) if gz else data
    return {"type": "ndarray", "array": {"type": "bytes", "data": base64.b64encode(raw).decode()},
            "shape": [n], "dtype": dtype, "order": order}


def test_ndarray_byte_orders_and_plain_base64():
    values = np.array([1.5, -2.0, 3.25])
    big = _ndarray(values.astype(">f8").tobytes(), "float64", 3, order="big")
    little = _ndarray(values.astype("<f8").tobytes(), "float64", 3, gz=True)
    old = _ndarray(values.astype("<f8").tobytes(), "float64", 3)  # bokeh < 3.5: no gzip
    for rep in (big, little, old):
        assert c.table_from_json({"x": rep})["x"].to_pylist() == [1.5, -2.0, 3.25]


@pytest.mark.parametrize("rep,match", [
    ({"type": "ndarray", "array": {"type": "bytes", "data": {"id": "b1"}}, "shape": [2],
      "dtype": "float64", "order": "little"}, "binary buffer"),
    ({"type": "ndarray", "array": {"type": "bytes", "data": "!!notbase64"}, "shape": [1],
      "dtype": "float64", "order": "little"}, "base64"),
    (_ndarray(b"\0" * 8, "float64", 2), "needs 16"),
    (_ndarray(b"\0" * 8, "float64", 1, order="middle"), "order"),
    (_ndarray(b"\0" * 16, "float64", 2) | {"shape": [1, 2]}, "1-d"),
    (_ndarray(b"\0" * 8, "complex64", 1), "unsupported ndarray dtype"),
    (_ndarray(b"\0" * 8, "float64", 1) | {"shape": "x"}, "shape"),
    ({"type": "ndarray", "array": [1, 2, 3], "shape": [2], "dtype": "object"}, "3 values"),
    ({"type": "ndarray", "array": "x", "shape": [1], "dtype": "object"}, "list or a bytes"),
])
def test_ndarray_errors(rep, match):
    err(c.table_from_json, {"x": rep}, match=match)


def test_ndarray_size_limit():
    rep = _ndarray(np.zeros(1000).tobytes(), "float64", 1000, gz=True)
    assert c.table_from_json({"x": rep}, max_bytes=8000).num_rows == 1000
    with pytest.raises(c.DataTooLarge):
        c.table_from_json({"x": rep}, max_bytes=7999)
    # a gzip bomb claiming a small shape is stopped at the claimed size
    bomb = _ndarray(np.zeros(1_000_000).tobytes(), "float64", 10, gz=True)
    err(c.table_from_json, {"x": bomb}, match="does not match")


def test_numpy_values_from_python_callers():
    t = c.table_from_json({"a": np.arange(3), "b": [np.float64(1.5), np.int64(2), None]})
    assert t["a"].type == pa.int64() and same(t["b"].to_pylist(), [1.5, 2.0, math.nan])
    err(c.table_from_json, {"a": np.zeros((2, 2))}, match="1-d")


# --- datetimes ------------------------------------------------------------------------------


def test_datetimes_in_and_out():
    when = dt.datetime(2024, 2, 29, 12, 30, 15, 250000)
    ms = (when - dt.datetime(1970, 1, 1)) / dt.timedelta(milliseconds=1)
    t = c.table_from_json(
        {"d": [ms, int(ms), "2024-02-29T12:30:15.250", "2024-02-29T13:30:15.250+01:00",
               "2024-02-29T12:30:15.250Z", None, NAN]},
        {"d": "datetime64[ms]"})
    assert t["d"].type == pa.timestamp("ms")
    assert t["d"].to_pylist()[:5] == [when] * 5 and t["d"].to_pylist()[5:] == [None, None]
    out = c.to_json(t)["d"]
    assert out == [ms] * 5 + [None, None] and all(type(v) is float for v in out[:5])
    # what bokeh sends for the same datetimes, read back the same
    arr = np.array([when, when, "NaT"], dtype="datetime64[ms]")
    assert c.to_json(c.table_from_json({"d": convert_datetime_array(arr).tolist()},
                                       {"d": "datetime64[ms]"}))["d"] == [ms, ms, None]
    rep = wire(encode({"d": arr}))  # a float64 ndarray of ms, NaN for NaT
    assert c.to_json(c.table_from_json(rep, {"d": "datetime64[ms]"}))["d"] == [ms, ms, None]
    assert c.to_json(c.json_batch(t.schema, rep))["d"] == [ms, ms, None]


def test_datetime_precision():
    err(c.table_from_json, {"d": [1.5]}, {"d": "datetime64[ms]"}, match="fractions")
    err(c.table_from_json, {"d": ["2020-01-01T00:00:00.0005"]}, {"d": "datetime64[ms]"},
        match="fractions")
    t = c.table_from_json({"d": [1.5, "1970-01-01T00:00:00.000002"]}, {"d": "datetime64[us]"})
    assert t["d"].cast(pa.int64()).to_pylist() == [1500, 2]
    assert c.to_json(t)["d"] == [1.5, 0.002]
    err(c.table_from_json, {"d": ["yesterday"]}, {"d": "datetime64[ms]"}, match="ISO 8601")
    err(c.table_from_json, {"d": [True]}, {"d": "datetime64[ms]"}, match="not booleans")
    err(c.table_from_json, {"d": [PINF]}, {"d": "datetime64[ms]"}, match="out of range")
    err(c.table_from_json, {"d": [1e300]}, {"d": "datetime64[us]"}, match="out of range")


# --- to_json --------------------------------------------------------------------------------


def test_nan_inf_round_trip_json_arrow_json():
    columns = {"f": [1.5, NAN, PINF, NINF, -0.0, 2], "f32": [NAN, 1, PINF, 0.25, NINF, 3]}
    t = c.table_from_json(wire(columns), {"f32": "float32"})
    t2 = c.table_from_arrow(c.to_arrow(t))
    out = c.to_json(t2)
    text = json.dumps(out, allow_nan=False)  # no bare NaN / Infinity in the wire form
    assert json.loads(text) == {"f": [1.5, NAN, PINF, NINF, -0.0, 2.0],
                                "f32": [NAN, 1.0, PINF, 0.25, NINF, 3.0]}
    assert math.copysign(1, out["f"][4]) == -1
    # BokehJS's reader (bokeh's Deserializer is its Python twin) gets the floats back
    assert same(Deserializer().decode(out["f"]), [1.5, math.nan, math.inf, -math.inf, 0, 2])
    assert c.column_hash(t2["f"]) == c.column_hash(t["f"])


def test_to_json_nulls_chunks_and_types():
    t = pa.table({"f": pa.chunked_array([[1.0, None], [math.nan, 2.0]]),
                  "i": pa.chunked_array([[1, None], [3, 4]], pa.int64()),
                  "b": pa.chunked_array([[True, None], [False, True]]),
                  "s": pa.chunked_array([["a", None], ["", "d"]]),
                  "u": pa.chunked_array([[2**64 - 1, 0], [1, 2]], pa.uint64())})
    assert c.to_json(t) == {"f": [1.0, None, NAN, 2.0], "i": [1, None, 3, 4],
                            "b": [True, None, False, True], "s": ["a", None, "", "d"],
                            "u": [2**64 - 1, 0, 1, 2]}


def test_plain_appends_read_as_the_general_reader_reads_them():
    """json_batch's shortcut for plain lists (floats/ints, ints, strings, bools) gives what
    the general reader gives, and leaves everything else to it (errors included)."""
    import random

    rng = random.Random(5)
    schema = pa.schema([("f", pa.float64()), ("i", pa.int64()), ("s", pa.string()),
                        ("b", pa.bool_())])
    dtypes = {"f": "float64", "i": "int64", "s": "string", "b": "bool"}
    pick = {"f": lambda: rng.choice([1.5, -0.0, 2, 10**300, 2**63 + 1, 1e308, math.inf]),
            "i": lambda: rng.choice([0, -5, 2**63 - 1, -(2**63)]),
            "s": lambda: rng.choice(["", "a", "é\u2603", "x" * 50]),
            "b": lambda: rng.choice([True, False])}
    for _ in range(300):
        n = rng.choice([0, 1, 1, 2, 7])
        columns = {name: [make() for _ in range(n)] for name, make in pick.items()}
        fast = c._plain_batch(schema, columns)
        general = c.conform(schema, c.table_from_json(columns, dtypes))
        assert fast is not None and fast.equals(general), columns
        assert c.json_batch(schema, columns).equals(general)
    for odd in ({"f": [True]}, {"f": [None]}, {"i": [1.0]}, {"i": [2**64]}, {"s": [1]},
                {"b": [1]}, {"f": [NAN]}, {"f": {"type": "ndarray"}}):
        columns = {"f": [1.0], "i": [1], "s": ["a"], "b": [True], **odd}
        assert c._plain_batch(schema, columns) is None, odd
    with pytest.raises(DataError, match="cannot hold booleans"):
        c.json_batch(schema, {"f": [True], "i": [1], "s": ["a"], "b": [True]})
    with pytest.raises(DataError, match="out of range"):
        c.json_batch(schema, {"f": [1.0], "i": [2**64], "s": ["a"], "b": [True]})
    assert c._plain_batch(schema, {"f": [1.0], "i": [1, 2], "s": ["a"], "b": [True]}) is None


def test_to_json_small_and_large_chunks_agree():
    """Up to 64 rows a chunk goes through Python lists, above through numpy: same JSON."""
    small = pa.table({"f": pa.array([1.5, None, math.nan, math.inf, -math.inf, -0.0]),
                      "f32": pa.array([0.1, None, math.nan, 2, 3, -0.0], pa.float32()),
                      "i": pa.array([1, None, -3, 2**62, 0, 5], pa.int64()),
                      "n": pa.array([1, 2, 3, 4, 5, 6], pa.int32()),
                      "b": pa.array([True, False, True, True, False, False])})
    large = pa.concat_tables([small] * 20).combine_chunks()  # 120 rows in one chunk
    assert large["f"].num_chunks == 1 and large.num_rows > 64
    one, many = c.to_json(small), c.to_json(large)
    assert json.dumps(many, allow_nan=False) == json.dumps(
        {k: v * 20 for k, v in one.items()}, allow_nan=False)
    assert one["f"] == [1.5, None, NAN, PINF, NINF, -0.0] and one["i"][1] is None


# --- Arrow IPC ------------------------------------------------------------------------------


def _every_dtype() -> pa.Table:
    return pa.table({
        "f64": pa.array([1.5, None, math.nan, -math.inf]),
        "f32": pa.array([1.5, 2, None, 4], pa.float32()),
        **{d: pa.array([1, 0, None, 7], c.arrow_type(d)) for d in
           ("int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8")},
        "bool": pa.array([True, False, None, True]),
        "string": pa.array(["a", "", None, "ü€"]),
        "ms": pa.array([0, 1_700_000_000_000, None, -5], pa.timestamp("ms")),
        "us": pa.array([0, 1_700_000_000_000_123, None, -5], pa.timestamp("us")),
    })


def _ipc(table: pa.Table, file: bool = False, **options) -> bytes:
    sink = pa.BufferOutputStream()
    opts = pa.ipc.IpcWriteOptions(**options) if options else None
    new = pa.ipc.new_file if file else pa.ipc.new_stream
    with new(sink, table.schema, options=opts) as writer:
        writer.write_table(table, max_chunksize=2)
    return sink.getvalue().to_pybytes()


def test_arrow_round_trip_every_dtype():
    t = _every_dtype()
    body = c.to_arrow(t)
    assert isinstance(body, bytes)
    for raw in (body, _ipc(t, file=True), _ipc(t, compression="zstd"), bytearray(body)):
        back = c.table_from_arrow(raw)
        assert back.schema == t.schema
        assert [c.column_hash(x) for x in back.columns] == [c.column_hash(x) for x in t.columns]
        assert json.dumps(c.to_json(back)) == json.dumps(c.to_json(t))
    assert c.to_json(t)["ms"] == [0.0, 1.7e12, None, -5.0]
    assert c.to_json(t)["us"] == [0.0, 1_700_000_000_000.123, None, -0.005]


@pytest.mark.parametrize("body,match", [
    (b"", "empty"),
    (b"garbage, not arrow", "not a readable Arrow"),
    (b"\xff\xff\xff\xff" + b"\x00" * 40, "not a readable Arrow"),
    ("text", "must be bytes"),
])
def test_bad_arrow_bodies(body, match):
    err(c.table_from_arrow, body, match=match)


def test_truncated_arrow_body():
    body = c.to_arrow(_every_dtype())
    for cut in (8, len(body) // 2, len(body) - 9):
        with pytest.raises(DataError):
            c.table_from_arrow(body[:cut])


@pytest.mark.parametrize("array", [
    pa.array([[1, 2], [3]]), pa.array([{"a": 1}, {"a": 2}]), pa.array([b"x", b"y"]),
    pa.array([1, 2], pa.int8()).cast(pa.decimal128(5, 2)),
    pa.array([None, None]), pa.array([1, 2], pa.duration("s")),
    pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
    pa.array([1, 2], pa.time32("s")),
])
def test_unsupported_arrow_types(array):
    e = err(c.table_from_arrow, c.to_arrow(pa.table({"col": array})), match="'col'")
    assert "not supported" in str(e)


def test_arrow_types_normalised():
    t = pa.table({
        "dict": pa.array(["a", "b", "a", None]).dictionary_encode(),
        "dnum": pa.array([1.5, 2.5, 1.5, 0]).dictionary_encode(),
        "large": pa.array(["x", "y", None, "z"], pa.large_string()),
        "half": pa.array(np.array([1, 2, 3, 4], dtype=np.float16)),
        "utc": pa.array([0, 1000, 2000, None], pa.timestamp("ms", tz="Europe/Paris")),
        "sec": pa.array([0, 1, 2, 3], pa.timestamp("s")),
        "ns": pa.array([0, 1_999, 2_000, 3], pa.timestamp("ns")),
        "date": pa.array([0, 1, 2, 3], pa.date32()),
    })
    back = c.table_from_arrow(_ipc(t))
    assert {f.name: c.dtype_name(f.type) for f in back.schema} == {
        "dict": "string", "dnum": "float64", "large": "string", "half": "float32",
        "utc": "datetime64[ms]", "sec": "datetime64[ms]", "ns": "datetime64[us]",
        "date": "datetime64[ms]"}
    got = c.to_json(back)
    assert got["dict"] == ["a", "b", "a", None] and got["large"] == ["x", "y", None, "z"]
    assert got["utc"] == [0.0, 1000.0, 2000.0, None] and got["sec"] == [0, 1000, 2000, 3000]
    assert got["ns"] == [0.0, 0.001, 0.002, 0.0]  # truncated to µs, as bokeh does
    assert got["date"] == [0.0, 86_400_000.0, 172_800_000.0, 259_200_000.0]


def test_arrow_names_and_metadata():
    dup = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    err(c.table_from_arrow, c.to_arrow(dup), match="more than once")
    err(c.table_from_arrow, c.to_arrow(pa.table({"": [1]})), match="non-empty")
    meta = pa.table({"a": [1]}).replace_schema_metadata({"pandas": "{}"})
    assert c.table_from_arrow(c.to_arrow(meta)).schema.metadata is None


def test_arrow_size_limit():
    body = c.to_arrow(pa.table({"x": np.zeros(10_000)}))
    assert c.table_from_arrow(body, max_bytes=80_000).num_rows == 10_000
    with pytest.raises(c.DataTooLarge):
        c.table_from_arrow(body, max_bytes=79_999)


def test_arrow_invalid_utf8_refused():
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(
        np.array([0, 2], np.int32).tobytes()), pa.py_buffer(b"\xff\xfe")])
    err(c.table_from_arrow, c.to_arrow(pa.Table.from_arrays([bad], names=["s"])),
        match="not a readable")


# --- conform / json_batch -------------------------------------------------------------------


SCHEMA = pa.schema([("f", pa.float64()), ("i", pa.int64()), ("s", pa.string())])


def test_conform_orders_and_casts():
    batch = pa.table({"s": ["x"], "i": pa.array([7], pa.int32()), "f": [3]})
    out = c.conform(SCHEMA, batch)
    assert out.schema == SCHEMA and out.to_pylist() == [{"f": 3.0, "i": 7, "s": "x"}]


@pytest.mark.parametrize("batch,match", [
    (pa.table({"f": [1.0], "i": [1]}), r"missing: 's'"),
    (pa.table({"f": [1.0], "i": [1], "s": ["a"], "z": [1]}), r"extra: 'z'"),
    (pa.table({"f": [1.0], "i": [1], "t": ["a"]}), r"missing: 's'; extra: 't'"),
    (pa.table({"f": [1.0], "i": [1.0], "s": ["a"]}), "'i': cannot store float64 values in a "
                                                       "int64 column"),
    (pa.table({"f": ["x"], "i": [1], "s": ["a"]}), "'f': cannot store string"),
    (pa.table({"f": [True], "i": [1], "s": ["a"]}), "'f': cannot store bool"),
    (pa.table({"f": [1.0], "i": [1], "s": [1]}), "'s': cannot store int64"),
    (pa.table({"f": [2**53 + 1], "i": [1], "s": ["a"]}), "'f': cannot store these"),
    (pa.table({"f": [1.0], "i": pa.array([2**64 - 1], pa.uint64()), "s": ["a"]}),
     "'i': cannot store these"),
])
def test_conform_refuses(batch, match):
    err(c.conform, SCHEMA, batch, match=match)


def test_conform_narrowing():
    schema = pa.schema([("f", pa.float32()), ("i", pa.int8()), ("d", pa.timestamp("ms"))])
    ok = pa.table({"f": [0.1], "i": [5], "d": pa.array([2000], pa.timestamp("us"))})
    out = c.conform(schema, ok)
    assert out.schema == schema and out["d"].cast(pa.int64()).to_pylist() == [2]
    err(c.conform, schema, ok.set_column(0, "f", pa.array([1e300])), match="out of range")
    err(c.conform, schema, ok.set_column(1, "i", pa.array([300])), match="'i'")
    err(c.conform, schema, ok.set_column(2, "d", pa.array([2001], pa.timestamp("us"))),
        match="'d'")
    err(c.conform, schema, ok.set_column(2, "d", pa.array([2001])), match="'d'")


def test_conform_to_empty_schema_takes_anything():
    batch = pa.table({"z": [1]})
    assert c.conform(pa.schema([]), batch) is batch


def test_json_batch():
    schema = pa.schema([("i", pa.int64()), ("d", pa.timestamp("ms")), ("s", pa.string())])
    out = c.json_batch(schema, {"s": ["a"], "d": ["2020-01-01"], "i": [2.0]})
    assert out.schema == schema and out["i"].to_pylist() == [2]
    assert c.json_batch(schema, {"s": [], "d": [], "i": []}).num_rows == 0
    assert c.json_batch(schema, encode({"s": ["a"], "d": [0], "i": [1]})).num_rows == 1
    err(c.json_batch, schema, {"s": ["a"], "i": [1]}, match="missing: 'd'")
    err(c.json_batch, schema, {"s": ["a"], "d": [0], "i": [1.5]}, match="1.5")
    assert c.json_batch(pa.schema([]), {"x": [1]}).column_names == ["x"]


# --- stream ---------------------------------------------------------------------------------


def _t(**cols) -> pa.Table:
    return c.table_from_json(cols)


def test_stream_appends_and_rolls_over():
    t = _t(x=[1, 2, 3], y=["a", "b", "c"])
    b = _t(y=["d", "e"], x=[4, 5])
    assert c.stream(t, b, None).to_pydict() == {"x": [1, 2, 3, 4, 5],
                                                "y": ["a", "b", "c", "d", "e"]}
    assert c.stream(t, b, 4).to_pydict() == {"x": [2, 3, 4, 5], "y": ["b", "c", "d", "e"]}
    assert c.stream(t, b, 10).num_rows == 5
    assert c.stream(t, b, 1).to_pydict() == {"x": [5], "y": ["e"]}  # rollover < batch
    assert c.stream(t, b, 0).num_rows == 0  # rollover 0: nothing kept (as Bokeh)
    assert c.stream(t, b, 0).schema == t.schema
    assert c.stream(t, b, 5).to_pydict() == c.stream(t, b, None).to_pydict()
    assert t.num_rows == 3  # inputs untouched


def test_stream_edge_cases():
    t = _t(x=[1.5, 2.5])
    none = c.table_from_json({"x": []}, {"x": "float64"})
    same_t = c.stream(t, none, None)
    assert c.column_hash(same_t["x"]) == c.column_hash(t["x"])
    assert c.stream(t, none, 1).to_pydict() == {"x": [2.5]}
    assert c.stream(c.table_from_json({}), t, None).equals(t)  # empty source: takes the batch
    assert c.stream(c.table_from_json({}), t, 1).to_pydict() == {"x": [2.5]}
    assert c.stream(t, _t(x=[7]), None)["x"].type == pa.float64()  # int batch into floats
    for bad in (-1, 1.5, True, "3"):
        err(c.stream, t, t, bad, match="rollover")
    err(c.stream, t, _t(y=[1.0]), None, match="missing: 'x'; extra: 'y'")


def test_stream_compacts_chunks():
    t = c.table_from_json({"x": [], "s": []}, {"x": "int64", "s": "string"})
    for i in range(300):
        t = c.stream(t, _t(x=[i, i], s=[str(i), "z"]), None)
    assert t.column(0).num_chunks <= c.MAX_CHUNKS + 1
    assert t["x"].to_pylist() == [v for i in range(300) for v in (i, i)]
    assert t["s"].to_pylist()[:4] == ["0", "z", "1", "z"]
    big = c.table_from_json({"x": np.zeros(200_000)})
    for _ in range(20):  # rollover drops rows; their memory is let go
        big = c.stream(big, c.table_from_json({"x": np.ones(100_000)}), 200_000)
    assert big.num_rows == 200_000 and big.get_total_buffer_size() < 6 * big.nbytes


@pytest.mark.parametrize("column", [np.zeros(3_000_000), np.array(["abcdefgh"] * 3_000_000)])
def test_a_rollover_lets_go_of_a_large_chunk(column):
    big = c.table_from_json({"x": column})  # one chunk of ~24 MB or more
    small = c.stream(big, c.table_from_json({"x": column[:5]}), 10)
    assert small.num_rows == 10 and small.get_total_buffer_size() < 1 << 20
    assert small["x"].to_pylist() == column[-10:].tolist()


def test_compact_force():
    t = pa.concat_tables([_t(x=[1, 2]), _t(x=[3])]).slice(1)
    out = c.compact(t, force=True)
    assert out.column(0).num_chunks == 1 and out.to_pydict() == {"x": [2, 3]}


# --- patch ----------------------------------------------------------------------------------


def test_patch_forms():
    t = _t(f=[0.0, 1, 2, 3, 4], s=["a", "b", "c", "d", "e"], i=[0, 1, 2, 3, 4])
    out = c.patch(t, {
        "f": [[0, 10], [1, NAN], [2, None], [{"start": 3, "stop": None, "step": None}, [7, 8]]],
        "s": [[{"type": "slice", "start": None, "stop": 5, "step": 2}, ["x", None, "z"]],
              [0, "last wins"]],
        "i": [[slice(1, 3), [9, 9.0]], [4, 4.0]],
    })
    got = plain(out)
    assert same(got["f"], [10.0, math.nan, math.nan, 7.0, 8.0])
    assert got["s"] == ["last wins", "b", None, "d", "z"]
    assert got["i"] == [0, 9, 9, 3, 4] and out.schema == t.schema
    assert plain(t)["f"] == [0.0, 1.0, 2.0, 3.0, 4.0]  # input untouched
    assert c.patch(t, {}).equals(t) and c.patch(t, {"f": []}).equals(t)


def test_patch_encodings_and_chunks():
    t = pa.concat_tables([_t(x=[0.0, 1.0]), _t(x=[2.0, 3.0]), _t(x=[4.0])])
    patches = wire(encode({"x": [(slice(1, 4), np.array([9.0, np.nan, 9.0])), (4, np.inf)]}))
    out = c.patch(t, patches)
    assert same(plain(out)["x"], [0.0, 9.0, math.nan, 9.0, math.inf])
    assert out["x"].chunks[0].to_pylist()[0] == 0.0


@pytest.mark.parametrize("patches,match", [
    ({"zz": [[0, 1]]}, "unknown: 'zz'"),
    ({"f": [[3, 1.0]]}, "index 3 is out of range for 3 rows"),
    ({"f": [[-1, 1.0]]}, "index -1 is out of range"),
    ({"f": [[True, 1.0]]}, "invalid patch index"),
    ({"f": [[1.0, 1.0]]}, "invalid patch index"),
    ({"f": [["0", 1.0]]}, "invalid patch index"),
    ({"f": [[{"start": -1, "stop": None, "step": None}, [1.0]]]}, "non-negative"),
    ({"f": [[{"start": None, "stop": 2, "step": -1}, [1.0]]]}, "non-negative"),
    ({"f": [[{"start": 2, "stop": 1, "step": None}, []]]}, "after stop"),
    ({"f": [[{"start": 0, "stop": 4, "step": None}, [1.0] * 4]]}, "stop 4 is out of range"),
    ({"f": [[{"start": 0, "stop": 2, "step": 0}, [1.0]]]}, "step must not be zero"),
    ({"f": [[{"start": 0, "stop": 2, "step": None}, [1.0]]]}, "selects 2 rows but 1"),
    ({"f": [[{"start": 0, "stop": 3, "step": 2}, [1.0] * 3]]}, "selects 2 rows but 3"),
    ({"f": [[{"start": 0.5, "stop": 2, "step": None}, [1.0]]]}, "integers or null"),
    ({"f": [[{"start": 0, "stop": 1}, 1.0]]}, "takes a list"),
    ({"f": [[0, [1.0]]]}, "takes one value"),
    ({"f": [[[0, 1], 1.0]]}, "multi-dimensional"),
    ({"f": [[0, "a"]]}, "float64 column cannot hold strings"),
    ({"f": [[0, True]]}, "cannot hold booleans"),
    ({"i": [[0, 1.5]]}, "1.5 is not a valid int64"),
    ({"i": [[0, NAN]]}, "NaN"),
    ({"i": [[0, None]]}, "cannot hold null"),
    ({"i": [[0, 2**63]]}, "out of range"),
    ({"b": [[0, None]]}, "cannot hold null"),
    ({"b": [[0, 1]]}, "cannot hold numbers"),
    ({"s": [[0, 5]]}, "cannot hold numbers"),
    ({"f": [[0]]}, "pair"),
    ({"f": 5}, "list of"),
    ([["f", 0, 1]], "patches must map"),
])
def test_patch_refused(patches, match):
    t = _t(f=[0.0, 1.0, 2.0], i=[1, 2, 3], b=[True, False, True], s=["a", "b", "c"])
    # the bad patch comes last: nothing before it is applied either
    if type(patches) is dict and "f" in patches and type(patches["f"]) is list:
        patches = {"s": [[0, "changed"]], **patches}
    err(c.patch, t, patches, match=match)
    assert t["s"].to_pylist() == ["a", "b", "c"]


def test_patch_map_rep_and_datetimes():
    t = c.table_from_json({"d": [0, 1000]}, {"d": "datetime64[ms]"})
    out = c.patch(t, {"type": "map", "entries": [["d", [[0, "1970-01-01T00:00:02"],
                                                       [1, None]]]]})
    assert c.to_json(out) == {"d": [2000.0, None]}


# --- hashes ---------------------------------------------------------------------------------


def _tables_for_hash() -> list[pa.Table]:
    return [
        _t(v=[1.5, math.nan, -0.0, 3.0, math.inf]),
        c.table_from_json({"v": [1, 2, 3, 4, 5]}, {"v": "int32"}),
        _t(v=[1, 2, 3, 4, 5]),
        _t(v=[True, False, True, True, False]),
        _t(v=["a", "bc", "", "déf", "g"]),
        c.table_from_json({"v": [0, 1, 2, 3, None]}, {"v": "datetime64[ms]"}),
        pa.table({"v": pa.array([1.0, None, 3.0, math.nan, 5.0])}),
        pa.table({"v": pa.array(["a", None, "", "d", None])}),
    ]


@pytest.mark.parametrize("table", _tables_for_hash())
def test_hash_chunking_invariant(table):
    col = table["v"]
    h = c.column_hash(col)
    assert len(h) == 32 and int(h, 16) >= 0
    assert c.column_hash(col.combine_chunks()) == h
    for cuts in ([1], [2, 4], [0, 1, 2, 3, 4, 5], [5]):
        bounds = [0, *cuts, len(col)]
        parts = [col.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
        chunked = pa.chunked_array([p.combine_chunks() for p in parts], col.type)
        assert c.column_hash(chunked) == h
    empty = pa.array([], col.type)
    assert c.column_hash(pa.chunked_array([empty, *col.chunks, empty], col.type)) == h
    # sliced out of a bigger array (non-zero offsets)
    bigger = pa.concat_arrays([col.combine_chunks(), col.combine_chunks()]).slice(len(col))
    assert c.column_hash(bigger) == h
    # built by appends, and through Arrow IPC
    built = table.slice(0, 0)
    for i in range(len(col)):
        built = c.stream(built, table.slice(i, 1), None)
    assert c.column_hash(built["v"]) == h
    assert c.column_hash(c.table_from_arrow(c.to_arrow(table))["v"]) == h
    # append of nothing
    assert c.column_hash(c.stream(table, table.slice(0, 0), None)["v"]) == h


@pytest.mark.parametrize("table", _tables_for_hash())
def test_hash_changes_with_any_cell(table):
    col = table["v"]
    h = c.column_hash(col)
    t = col.type
    replacements = {
        pa.float64(): [0.0, math.nan, 2.0, -0.5], pa.int32(): [0, 9], pa.int64(): [0, 9],
        pa.bool_(): [True, False], pa.string(): ["", "x", "bc"],
        pa.timestamp("ms"): [dt.datetime(1970, 1, 1), dt.datetime(2000, 1, 1)],
    }[t]
    seen = {h}
    for i in range(len(col)):
        for value in [*replacements, None]:
            cells = col.to_pylist()
            old = cells[i]
            if value == old and type(value) is type(old) and not (
                    isinstance(value, float) and (math.isnan(value) != math.isnan(old)
                                                  or math.copysign(1, value)
                                                  != math.copysign(1, old))):
                continue
            if isinstance(old, float) and isinstance(value, float) and math.isnan(old) and \
                    math.isnan(value):
                continue
            cells[i] = value
            h2 = c.column_hash(pa.array(cells, t))
            assert h2 != h, (i, old, value)
            seen.add(h2)
    assert len(seen) > len(col)


def test_hash_details():
    f = pa.array
    h = c.column_hash
    assert h(f([0.0])) != h(f([-0.0]))
    assert h(f([math.nan])) != h(f([None], pa.float64()))
    assert h(f([0.0])) != h(f([None], pa.float64()))
    assert h(f([""])) != h(f([None], pa.string()))
    assert h(f(["ab", "c"])) != h(f(["a", "bc"]))
    assert h(f([0], pa.int32())) != h(f([0], pa.float32()))  # same bytes, other dtype
    assert h(f([], pa.float64())) != h(f([], pa.int64()))
    assert h(f([1.0, 2.0])) != h(f([1.0, 2.0, 0.0]))
    quiet = np.array([np.nan])
    odd = np.array([0x7FF8000000000123], dtype=np.int64).view(np.float64)  # another NaN
    negative = -quiet
    assert h(f(quiet)) == h(f(odd)) == h(f(negative))
    err(h, f([[1]]), match="unsupported")


def test_describe():
    t = _t(x=[1, 2], y=["a", "b"])
    assert c.describe(t) == [{"name": "x", "dtype": "int64", "hash": c.column_hash(t["x"])},
                             {"name": "y", "dtype": "string", "hash": c.column_hash(t["y"])}]


# --- slice_rows / select / column edits -----------------------------------------------------


@pytest.mark.parametrize("start", [None, 0, 1, 3, 7, 100, -1, -3, -100])
@pytest.mark.parametrize("stop", [None, 0, 2, 7, 100, -1, -4, -100])
def test_slice_rows_is_python_slicing(start, stop):
    values = list(range(7))
    t = _t(x=values)
    assert c.slice_rows(t, start, stop)["x"].to_pylist() == values[start:stop]


def test_slice_rows_and_select_errors():
    t = _t(a=[1], b=[2], c=[3])
    err(c.slice_rows, t, 1.5, None, match="start must be an integer")
    err(c.slice_rows, t, None, True, match="stop must be an integer")
    assert c.select(t, None) is t
    assert c.select(t, ["c", "a"]).column_names == ["c", "a"]
    assert c.select(t, []).num_columns == 0
    err(c.select, t, ["a", "zz", "yy"], match="unknown columns: 'zz', 'yy'")
    err(c.select, t, ["a", "a"], match="more than once")
    err(c.select, t, "a", match="list of column names")


def test_put_and_remove_columns():
    t = _t(a=[1, 2], b=["x", "y"])
    t2 = c.put_column(t, "c", c.column_from_json("c", [1.5, NAN]))
    assert t2.column_names == ["a", "b", "c"] and t2["c"].type == pa.float64()
    t3 = c.put_column(t2, "a", c.column_from_json("a", [True, False], "bool"))
    assert t3.column_names == ["a", "b", "c"] and t3["a"].to_pylist() == [True, False]
    err(c.put_column, t, "d", pa.array([1, 2, 3]), match="has 3 rows; the source has 2")
    err(c.put_column, t, "", pa.array([1, 2]), match="non-empty")
    err(c.put_column, t, "d", pa.array([[1], [2]]), match="not supported")
    assert c.put_column(c.table_from_json({}), "z", pa.array([1, 2, 3])).num_rows == 3
    assert c.remove_column(t, "a").column_names == ["b"]
    with pytest.raises(c.UnknownColumn):
        c.remove_column(t, "zz")
    err(c.column_from_json, "d", [1], "nope", match="unknown dtype")

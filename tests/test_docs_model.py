"""Doc: loading Bokeh JSON and writing it back, validation, the object layer, the model graph."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import math
import time
from typing import Any

import numpy as np
import pytest
from bokeh.core.serialization import Serializer
from bokeh.document import Document
from bokeh.embed import json_item
from bokeh.layouts import column, gridplot, row
from bokeh.models import (
    Button,
    ColumnDataSource,
    CustomJS,
    DataTable,
    Div,
    Select,
    Slider,
    TableColumn,
    TextInput,
)
from bokeh.plotting import figure
from test_docs_semantics import canonical, normalized, wire

from services.docs.model import (
    Doc,
    DocumentError,
    ModelExists,
    ModelInUse,
    ModelNotFound,
)

pytestmark = pytest.mark.filterwarnings("ignore:ColumnDataSource's columns must be")


# --- real documents ---------------------------------------------------------------------------


def lines() -> list:
    src = ColumnDataSource(data={
        "x": np.arange(20, dtype=np.float64), "y": [math.sin(i) for i in range(20)],
        "n": np.arange(20, dtype=np.int32), "label": [f"p{i}" for i in range(20)],
        "gap": [1.0, math.nan, math.inf, -math.inf] * 5},
        tags=["plotline:source=src-1"])
    p = figure(title="lines", tags=["plotline:source=src-2"])
    p.line("x", "y", source=src)
    p.scatter("x", "gap", source=src, size=8)
    p.line([1, 2, 3], [3, 1, 2], color="red")
    return [p]


def layout() -> list:
    shared = ColumnDataSource(data={"x": np.linspace(0, 1, 50), "y": np.random.default_rng(1)
                                    .normal(size=50)})
    plots = []
    for i in range(3):
        p = figure(title=f"plot {i}", width=250, height=250)
        p.scatter("x", "y", source=shared)
        plots.append(p)
    button = Button(label="go")
    button.js_on_click(CustomJS(args={"src": shared}, code="src.change.emit()"))
    table = DataTable(source=shared, columns=[TableColumn(field="x"), TableColumn(field="y")])
    return [column(gridplot([plots[:2], [plots[2], None]]), row(button, table))]


def widgets() -> list:
    return [column(Slider(start=0, end=10, value=3, step=.5, title="s"),
                   Select(options=["a", "b"], value="a"), TextInput(value="ü"), Div(text="<p>")),
            Div(text="second root")]


def image() -> list:
    src = ColumnDataSource(data={"img": [np.arange(12, dtype=np.float64).reshape(3, 4),
                                         np.full((3, 4), np.nan)],
                                 "x": [0, 5], "y": [0, 0], "dw": [4, 4], "dh": [3, 3]})
    p = figure()
    p.image("img", x="x", y="y", dw="dw", dh="dh", source=src, palette="Viridis256")
    return [p]


BUILDERS = {"lines": lines, "layout": layout, "widgets": widgets, "image": image}


def bokeh_doc(roots: list, title: str = "a title") -> Document:
    doc = Document()
    for root in roots:
        doc.add_root(root)
    doc.title = title
    return doc


@pytest.fixture(scope="module")
def jsons() -> dict[str, dict]:
    return {name: wire(bokeh_doc(build()).to_json(deferred=False))
            for name, build in BUILDERS.items()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_to_json_round_trip(jsons, name: str) -> None:
    doc = Doc.from_bokeh(copy.deepcopy(jsons[name]))
    out = doc.to_bokeh()
    assert out == jsons[name]  # identical: the same order, the same encodings
    back = Document.from_json(wire(out)).to_json(deferred=False)
    assert normalized(back) == normalized(jsons[name])
    assert doc.title == "a title" and doc.bokeh_version == jsons[name]["version"]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_json_item_input(name: str) -> None:
    roots = BUILDERS[name]()
    bokeh_doc(roots)
    item = wire(json_item(roots[0]))
    doc = Doc.from_bokeh(item, title="mine")
    assert doc.roots == [item["root_id"]] and doc.title == "mine"
    assert canonical(doc.to_bokeh())["models"] == canonical(item["doc"])["models"]
    Document.from_json(wire(doc.to_bokeh()))


def test_document_callbacks_and_defs_survive() -> None:
    doc = bokeh_doc(widgets())
    doc.js_on_event("document_ready", CustomJS(code="console.log('ready')"))
    data = wire(doc.to_json(deferred=False))
    assert "callbacks" in data
    ours = Doc.from_bokeh(copy.deepcopy(data))
    assert ours.to_bokeh() == data
    callback = ours.ids_of_type("CustomJS")[0]
    assert callback in ours.reachable() and callback not in ours.garbage()
    with pytest.raises(ModelInUse):
        ours.delete_object(callback)
    extra = {**data, "defs": [{"type": "model", "name": "My", "properties": []}]}
    assert Doc.from_bokeh(extra).to_bokeh()["defs"] == extra["defs"]


def test_empty_doc_loads_in_bokeh() -> None:
    doc = Doc.empty("nothing yet")
    out = doc.to_bokeh()
    assert out["roots"] == [] and out["config"] is None
    assert Document.from_json(copy.deepcopy(out)).title == "nothing yet"  # (it mutates)
    assert Doc.from_store(doc.to_store()).to_bokeh() == out


def test_store_round_trip_has_no_bare_nan(jsons) -> None:
    doc = Doc.from_bokeh(copy.deepcopy(jsons["lines"]))
    stored = doc.to_store()
    json.loads(stored, parse_constant=lambda c: pytest.fail(f"bare {c} in storage"))
    again = Doc.from_store(stored)
    assert again.to_bokeh() == doc.to_bokeh() and again.to_store() == stored
    assert again.models == doc.models and again.roots == doc.roots


def test_bare_nan_and_infinity_become_number_reps(jsons) -> None:
    data = copy.deepcopy(jsons["widgets"])
    slider = data["roots"][0]["attributes"]["children"][0]
    slider["attributes"]["tags"] = [math.nan, math.inf, -math.inf, 1.5]
    doc = Doc.from_bokeh(data)
    tags = doc.model(slider["id"])["attributes"]["tags"]
    assert tags == [{"type": "number", "value": "nan"}, {"type": "number", "value": "+inf"},
                    {"type": "number", "value": "-inf"}, 1.5]
    doc.to_store()  # would raise on a bare NaN


def test_plain_base64_from_older_bokeh_is_gzipped(jsons) -> None:
    # Bokeh < 3.8 sent buffers as plain base64; 3.8+ (and its BokehJS) only reads gzip
    data = copy.deepcopy(jsons["lines"])
    plain = []

    def ungzip(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "bytes":
                raw = gzip.decompress(base64.b64decode(value["data"]))
                value["data"] = base64.b64encode(raw).decode()
                plain.append(raw)
            for v in value.values():
                ungzip(v)
        elif isinstance(value, list):
            for v in value:
                ungzip(v)

    ungzip(data)
    assert plain
    out = Doc.from_bokeh(data).to_bokeh()
    assert normalized(out) == normalized(jsons["lines"])
    assert '"data": "H4sI' in json.dumps(out)
    Document.from_json(wire(out))


# --- validation -------------------------------------------------------------------------------


def rep(model_id: Any, name: str = "Div", **attributes: Any) -> dict:
    return {"type": "object", "name": name, "id": model_id, "attributes": attributes}


def nested_list(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def doc_json(*roots: Any, **extra: Any) -> dict:
    return {"version": "3.9.2", "title": "t", "roots": list(roots), **extra}


MALFORMED = {
    "a list": [rep("a")],
    "a string": "{}",
    "null": None,
    "no roots": {"title": "t"},
    "roots not a list": doc_json() | {"roots": {"a": 1}},
    "root a scalar": doc_json(5),
    "root a plain object": doc_json({"x": 1}),
    "dangling reference": doc_json(rep("a", "Column", children=[{"id": "b"}])),
    "dangling root reference": doc_json({"id": "zz"}),
    "object rep without id": doc_json(rep("a", "Column", children=[
        {"type": "object", "name": "Div", "attributes": {}}])),
    "numeric id": doc_json(rep(5)),
    "empty id": doc_json(rep("")),
    "reference with a numeric id": doc_json(rep("a", child={"id": 7})),
    "reference with extra keys": doc_json(rep("a", child={"id": "a", "x": 1})),
    "no type name": doc_json({"type": "object", "id": "a"}),
    "attributes not an object": doc_json({"type": "object", "name": "Div", "id": "a",
                                          "attributes": [1]}),
    "same id, different content": doc_json(rep("a", text="x"), rep("a", text="y")),
    "title not a string": doc_json(rep("a")) | {"title": 3},
    "buffer reference": doc_json(rep("a", data={"type": "bytes", "data": {"id": "buf"}})),
    "config a scalar": doc_json(rep("a"), config=3),
    "json_item doc not an object": {"target_id": None, "root_id": "a", "doc": [1]},
    "json_item root not in doc": {"root_id": "b", "doc": doc_json(rep("a"))},
    "a tuple key": doc_json(rep("a", data={(1, 2): 3})),
    "a value nested 5000 deep": doc_json(rep("a", tags=nested_list(5000))),
    "an unknown value type": doc_json(rep("a", tags={1, 2})),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_documents_are_refused(case: str) -> None:
    with pytest.raises(DocumentError):
        Doc.from_bokeh(MALFORMED[case])


def test_bokeh_serialized_wrapper_is_refused_with_a_hint() -> None:
    with pytest.raises(DocumentError, match="deferred=False"):
        Doc.from_bokeh(bokeh_doc(widgets()).to_json())  # a Serialized, not a dict


def test_identical_repeats_and_repeated_roots_are_fine() -> None:
    doc = Doc.from_bokeh(doc_json(rep("a", text="x"), rep("a", text="x"), {"id": "a"}))
    assert doc.roots == ["a"] and list(doc.models) == ["a"]


def test_huge_nesting_is_fine() -> None:
    # a chain of 3000 models, each written inside the previous one (Bokeh's own
    # from_json would hit the recursion limit; we walk iteratively and store flat)
    depth = 3000
    inner: dict = rep("m2999")
    for i in range(depth - 2, -1, -1):
        inner = rep(f"m{i}", "Column", children=[inner])
    data = doc_json(inner, rep("lists", tags=nested_list(90)))
    doc = Doc.from_bokeh(data)
    assert len(doc.models) == depth + 1
    assert doc.closure("m0") == [f"m{i}" for i in range(depth)]
    out = doc.to_bokeh()["roots"]
    chain = out[0]
    for i in range(depth - 1):  # == itself would recurse too deep
        assert chain["id"] == f"m{i}" and chain["type"] == "object"
        chain = chain["attributes"]["children"][0]
    assert chain == rep(f"m{depth - 1}") | {"attributes": {}} or chain == {
        "type": "object", "name": "Div", "id": f"m{depth - 1}"}
    assert out[1]["attributes"]["tags"] == nested_list(90)
    assert Doc.from_store(doc.to_store()).garbage() == []
    doc.apply_events([{"kind": "RootRemoved", "model": {"id": "m0"}}])
    assert len(doc.collect_garbage()) == depth


# --- the model graph --------------------------------------------------------------------------


@pytest.fixture()
def lines_doc(jsons) -> Doc:
    return Doc.from_bokeh(copy.deepcopy(jsons["lines"]))


def test_closure_is_bokehs_serialization_order() -> None:
    roots = lines()
    doc = Doc.from_bokeh(wire(bokeh_doc(roots).to_json(deferred=False)))
    renderer = roots[0].renderers[0]
    expected: list[str] = []

    def walk(value: Any) -> None:  # ids in the order bokeh writes their full reps
        if isinstance(value, dict):
            if value.get("type") == "object":
                expected.append(value["id"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(wire(Serializer(deferred=False).encode(renderer)))
    assert doc.closure(renderer.id) == expected
    refs = doc.object_with_refs(renderer.id)
    assert refs["model"] == doc.model(renderer.id)
    assert [m["id"] for m in refs["references"]] == expected[1:]
    assert renderer.data_source.id in expected and renderer.glyph.id in expected


def test_ids_of_type_and_model_lookup(lines_doc: Doc) -> None:
    sources = lines_doc.ids_of_type("ColumnDataSource")
    assert len(sources) == 2
    assert all(lines_doc.model(s)["name"] == "ColumnDataSource" for s in sources)
    with pytest.raises(KeyError):
        lines_doc.model("nope")
    with pytest.raises(ModelNotFound):
        lines_doc.closure("nope")


def test_garbage_after_root_removed() -> None:
    shared = ColumnDataSource(data={"x": [1, 2]})
    p1, p2 = figure(), figure()
    p1.scatter("x", "x", source=shared)
    p2.line("x", "x", source=shared)
    doc = Doc.from_bokeh(wire(bokeh_doc([p1, p2]).to_json(deferred=False)))
    assert doc.garbage() == []
    before = doc.to_bokeh()
    doc.apply_events([{"kind": "RootRemoved", "model": {"id": p2.id}}])
    garbage = doc.garbage()
    assert p2.id in garbage and shared.id not in garbage
    assert set(garbage) == set(doc.closure(p2.id)) - set(doc.closure(p1.id))
    reachable = doc.reachable()
    assert doc.collect_garbage() == garbage and doc.garbage() == []
    assert doc.reachable() == reachable and set(doc.models) == reachable
    assert doc.to_bokeh()["roots"] == before["roots"][:1]


def test_bound_sources_come_from_tags_on_live_models(lines_doc: Doc) -> None:
    assert lines_doc.bound_sources() == ["src-1", "src-2"]
    lines_doc.add_object(rep("loose", "ColumnDataSource", tags=["plotline:source=zzz"]))
    assert lines_doc.bound_sources() == ["src-1", "src-2"]  # garbage doesn't bind
    fig = lines_doc.roots[0]
    lines_doc.patch_object(fig, {"tags": ["plotline:source=src-1", 3, None,
                                          "plotline:source=", "plotline:source=a"]})
    assert lines_doc.bound_sources() == ["a", "src-1"]


def test_copy_is_independent(lines_doc: Doc) -> None:
    twin = lines_doc.copy()
    before = lines_doc.to_store()
    twin.apply_events([{"kind": "TitleChanged", "title": "other"}])
    twin.roots.append("x")  # containers are the copy's own; reps are shared, read-only
    assert lines_doc.to_store() == before
    assert twin.title == "other"


# --- the object layer -------------------------------------------------------------------------


def test_add_object_with_nested_new_models(lines_doc: Doc) -> None:
    new = rep("cds-new", "ColumnDataSource",
              selected=rep("sel-new", "Selection", indices=[]),
              data={"type": "map", "entries": [["x", [1, math.nan]]]})
    assert lines_doc.add_object(new) == "cds-new"
    assert lines_doc.model("cds-new")["attributes"]["selected"] == {"id": "sel-new"}
    assert lines_doc.model("sel-new")["name"] == "Selection"
    assert lines_doc.garbage() == ["cds-new", "sel-new"]  # until something uses them
    with pytest.raises(ModelExists):
        lines_doc.add_object(rep("cds-new", "ColumnDataSource"))
    with pytest.raises(ModelExists):  # a nested rep reusing an id
        lines_doc.add_object(rep("other", "Column", children=[rep("sel-new", "Selection")]))
    with pytest.raises(DocumentError, match="unknown model"):
        lines_doc.add_object(rep("dangling", "Column", children=[{"id": "ghost"}]))
    with pytest.raises(DocumentError):
        lines_doc.add_object({"name": "Div", "id": "x"})
    assert "other" not in lines_doc.models and "dangling" not in lines_doc.models


def test_patch_and_replace_object(lines_doc: Doc) -> None:
    fig = lines_doc.roots[0]
    title = lines_doc.model(fig)["attributes"]["title"]["id"]
    lines_doc.patch_object(title, {"text": "patched", "text_color": "red"})
    attributes = lines_doc.model(title)["attributes"]
    assert attributes["text"] == "patched" and attributes["text_color"] == "red"
    lines_doc.patch_object(fig, {"title": rep("t2", "Title", text="new title")})
    assert lines_doc.model(fig)["attributes"]["title"] == {"id": "t2"}
    assert title in lines_doc.garbage()
    lines_doc.replace_object(title, rep(title, "Title", text="only this"))
    assert lines_doc.model(title)["attributes"] == {"text": "only this"}
    with pytest.raises(DocumentError, match="is not"):
        lines_doc.replace_object(title, rep("different", "Title"))
    with pytest.raises(ModelNotFound):
        lines_doc.patch_object("ghost", {"text": "x"})
    with pytest.raises(ModelNotFound):
        lines_doc.replace_object("ghost", rep("ghost"))
    with pytest.raises(DocumentError):
        lines_doc.patch_object(fig, {"renderers": [{"id": "ghost"}]})
    assert Document.from_json(wire(lines_doc.to_bokeh())).get_model_by_id("t2").text == \
        "new title"


def test_delete_object(lines_doc: Doc) -> None:
    fig = lines_doc.roots[0]
    source = lines_doc.ids_of_type("ColumnDataSource")[0]
    with pytest.raises(ModelInUse, match="root"):
        lines_doc.delete_object(fig)
    with pytest.raises(ModelInUse, match="referenced by"):
        lines_doc.delete_object(source)
    with pytest.raises(ModelInUse):
        lines_doc.delete_object(lines_doc.config)
    with pytest.raises(ModelNotFound):
        lines_doc.delete_object("ghost")
    lines_doc.add_object(rep("loose", "Div"))
    lines_doc.delete_object("loose")
    assert "loose" not in lines_doc.models

    # a model that only garbage references may go; that garbage can't come back then
    lines_doc.add_object(rep("holder", "Column", children=[rep("child", "Div")]))
    lines_doc.delete_object("child")
    assert lines_doc.garbage() == ["holder"]
    with pytest.raises(DocumentError, match="deleted model"):
        lines_doc.apply_events([{"kind": "RootAdded", "model": {"id": "holder"}}])
    with pytest.raises(DocumentError, match="deleted model"):
        lines_doc.patch_object(fig, {"tags": [{"id": "holder"}]})
    assert lines_doc.collect_garbage() == ["holder"]


def test_events_may_still_name_garbage(lines_doc: Doc) -> None:
    # bokeh forgets detached models (and drops later patches naming them); we keep them
    # until collected, so a root can be removed and added back
    fig = lines_doc.roots[0]
    lines_doc.apply_events([{"kind": "RootRemoved", "model": {"id": fig}}])
    lines_doc.apply_events([{"kind": "ModelChanged", "model": {"id": fig}, "attr": "width",
                             "new": 123},
                            {"kind": "RootAdded", "model": {"id": fig}}])
    assert lines_doc.roots == [fig] and lines_doc.garbage() == []
    assert lines_doc.model(fig)["attributes"]["width"] == 123


# --- how fast ---------------------------------------------------------------------------------


def big_document() -> tuple[dict, str]:
    """About 200 models: five figures, two sources of 1000 rows."""
    rng = np.random.default_rng(0)
    sources = [ColumnDataSource(data={"x": np.arange(1000.0), "y": rng.normal(size=1000),
                                      "n": list(range(1000))}) for _ in range(2)]
    plots = []
    for i in range(5):
        p = figure(title=f"p{i}", width=200, height=200)
        p.line("x", "y", source=sources[i % 2])
        p.scatter("x", "n", source=sources[i % 2])
        plots.append(p)
    doc = bokeh_doc([gridplot(plots, ncols=3)])
    return wire(doc.to_json(deferred=False)), sources[0].id


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_stream_on_a_200_model_document_takes_milliseconds() -> None:
    data, source = big_document()
    doc = Doc.from_bokeh(data)
    stored = doc.to_store()
    batch = [{"kind": "ColumnsStreamed", "model": {"id": source}, "attr": "data",
              "data": {"x": list(range(10)), "y": [0.5] * 10, "n": list(range(10))},
              "rollover": 1000}]

    def cycle() -> None:
        loaded = Doc.from_store(stored)
        loaded.apply_events(batch)
        loaded.to_store()

    streamed = best_of(30, cycle)
    copied = best_of(30, doc.copy)
    print(f"\n{len(doc.models)} models, {len(stored)} bytes stored: from_store + stream 10 rows "
          f"+ to_store {streamed * 1000:.2f} ms, copy() {copied * 1000:.2f} ms")
    assert len(doc.models) >= 200
    assert streamed < 0.05 and copied < 0.05  # generous: a few ms on a laptop


def test_copies_never_change_the_original():
    """copy() shares the (immutable) reps: every way of changing a copy leaves the
    original byte for byte as it was."""
    from bokeh_docs import figure_doc, source_id

    data = figure_doc(points=5)
    cds, root = source_id(data), data["roots"][0]["id"]
    original = Doc.from_bokeh(data)
    before = original.to_store()
    changes = [
        lambda d: d.apply_events([{"kind": "ColumnsStreamed", "model": {"id": cds},
                                   "attr": "data", "data": {"x": [9.0], "y": [9.0]},
                                   "rollover": 2}]),
        lambda d: d.apply_events([{"kind": "ColumnsPatched", "model": {"id": cds},
                                   "attr": "data", "patches": {"y": [[0, 5.0]]}}]),
        lambda d: d.apply_events([{"kind": "ModelChanged", "model": {"id": root},
                                   "attr": "width", "new": 123}]),
        lambda d: d.apply_events([{"kind": "RootRemoved", "model": {"id": root}}]),
        lambda d: d.apply_events([{"kind": "TitleChanged", "title": "changed"}]),
        lambda d: d.patch_object(root, {"height": 77}),
        lambda d: d.add_object({"type": "object", "name": "ColumnDataSource", "id": "new1",
                                "attributes": {}}),
        lambda d: (d.apply_events([{"kind": "RootRemoved", "model": {"id": root}}]),
                   d.collect_garbage()),
    ]
    for change in changes:
        clone = original.copy()
        change(clone)
        assert clone.to_store() != before
        assert original.to_store() == before

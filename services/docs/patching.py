"""Bokeh's patch events (what `Document.apply_json_patch` takes), applied to a Doc.

Each event is checked in full before it changes anything, and the Doc it is applied to is a
draft (see `Doc.apply_events`), so a bad event anywhere in a batch changes nothing at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import cds
from .flat import Flattener, check_id, ref_id
from .values import BOKEH, MAX_TITLE, DocumentError

if TYPE_CHECKING:
    from .model import Doc

# event kind -> (required fields, optional fields), besides "kind". bokeh builds the event
# from these as keyword arguments, so it refuses anything else too.
EVENTS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "ModelChanged": (frozenset({"model", "attr", "new"}), frozenset()),
    "ColumnsStreamed": (frozenset({"model", "attr", "data"}), frozenset({"rollover"})),
    "ColumnsPatched": (frozenset({"model", "attr", "patches"}), frozenset()),
    "ColumnDataChanged": (frozenset({"model", "attr", "data"}), frozenset({"cols"})),
    "RootAdded": (frozenset({"model"}), frozenset()),
    "RootRemoved": (frozenset({"model"}), frozenset()),
    "TitleChanged": (frozenset({"title"}), frozenset()),
}


def apply_event(doc: Doc, event: Any) -> None:
    if type(event) is not dict:
        raise DocumentError("an event must be an object")
    kind = event.get("kind")
    if kind not in EVENTS:
        raise DocumentError(f"unknown event kind {kind!r}")
    required, optional = EVENTS[kind]
    fields = set(event) - {"kind"}
    if required - fields or fields - required - optional:
        raise DocumentError(f"needs fields {sorted(required)}"
                            + (f" (optional {sorted(optional)})" if optional else "")
                            + f", got {sorted(fields)}")
    if kind == "TitleChanged":
        # empty is Bokeh's "no title" (the stored title stays); longer than create allows
        # is refused as create refuses it
        if type(event["title"]) is not str or len(event["title"]) > MAX_TITLE:
            raise DocumentError(f"title must be a string of at most {MAX_TITLE} characters")
        doc.title = event["title"]
    elif kind == "RootAdded":
        flatten = _flattener(doc)
        model_id = ref_id(flatten(event["model"]))
        if model_id is None:
            raise DocumentError("model must be an object rep or a reference")
        doc.commit_flattened(flatten, [])
        if model_id not in doc.roots:  # as Document.add_root: a root once
            doc.roots.append(model_id)
    elif kind == "RootRemoved":
        model_id = _target(doc, event)
        if model_id in doc.roots:  # as Document.remove_root: a non-root is a no-op
            doc.roots.remove(model_id)
    elif kind == "ModelChanged":
        model_id, attr = _target(doc, event), _attr(event)
        flatten = _flattener(doc)
        new = flatten(event["new"])
        doc.commit_flattened(flatten, [_with(doc.models[model_id], attr, new)])
    else:
        _change_columns(doc, kind, _target(doc, event), _attr(event), event)


def _flattener(doc: Doc) -> Flattener:
    """For values that may hold object reps. As in bokeh's Deserializer, a full rep of a
    live model is only a reference to it; bokeh has forgotten garbage, though, so a full rep
    of a garbage model defines it again (a root removed, changed and added back arrives so)."""
    live: set[str] = set()

    def redefines(model_id: str) -> bool:
        if not live:  # computed once, and only if a known model comes in full
            live.update(doc.reachable())
        return model_id not in live

    return Flattener(doc.models, redefines=redefines)


def _target(doc: Doc, event: dict) -> str:
    model_id = ref_id(event["model"])
    if model_id is None:
        raise DocumentError('model must be a reference {"id": ...}')
    if model_id not in doc.models:
        raise DocumentError(f"no model {check_id(model_id)!r} in this document")
    return model_id


def _attr(event: dict) -> str:
    attr = event["attr"]
    if type(attr) is not str or not attr:
        raise DocumentError("attr must be a non-empty string")
    return attr


def _change_columns(doc: Doc, kind: str, model_id: str, attr: str, event: dict) -> None:
    rep = doc.models[model_id]
    if kind != "ColumnDataChanged" and attr != "data":  # bokeh asserts this
        raise DocumentError(f"{kind} only applies to 'data', not {attr!r}")
    current = rep["attributes"].get(attr)
    if current is None and rep["name"] not in cds.CDS_TYPES:
        raise DocumentError(f"model {model_id!r} ({rep['name']}) has no column data {attr!r}")
    data_only = Flattener(allow_models=False)
    if kind == "ColumnsStreamed":
        rollover = BOKEH.rollover(event.get("rollover"))
        data = cds.read_columns(data_only(event["data"]), "streamed data")
        new = cds.stream(current, data, rollover)
    elif kind == "ColumnsPatched":
        patches = cds.read_columns(data_only(event["patches"]), "patches")
        new = cds.patch(current, patches)
    else:
        cols = event.get("cols")
        if cols is not None and (type(cols) is not list
                                 or not all(type(c) is str for c in cols)):
            raise DocumentError("cols must be a list of column names or null")
        new = cds.replace_columns(current, data_only(event["data"]), cols)
    # column data holds no models, so the model's references (and their cache) stay valid
    doc.models[model_id] = _with(rep, attr, new)


def _with(rep: dict, attr: str, value: Any) -> dict:
    """A new rep with one attribute changed: stored reps are never changed in place."""
    return {**rep, "attributes": {**rep["attributes"], attr: value}}

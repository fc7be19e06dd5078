"""A Bokeh 3 document as its JSON, indexed by model id, with Bokeh's patch-event semantics.

Pure: no I/O. `Doc.from_bokeh` takes `Document.to_json(deferred=False)` or `json_item()`
output, `Doc.to_bokeh` gives back what `Document.from_json` and BokehJS load. Values stay in
Bokeh's JSON encodings; every object rep nested in a value is stored as a reference
{"id": ...} with the model itself in `Doc.models`.

Stored reps are never changed in place: a change builds new containers along its path and
swaps the model in. That makes `apply_events` atomic almost for free (a failed batch leaves a
draft behind, not a half-changed document). Treat what `model()` etc. return as read-only.

Deliberate differences from bokeh's Python `Document`:
- A model that is no longer reachable from the roots stays (as garbage) until
  `collect_garbage`, and events may still reference it. Bokeh forgets it and silently drops
  any later patch that references it. (A full rep of it redefines it, in both.)
- ColumnDataChanged with `cols` keeps the other columns, as the sending document and BokehJS
  do (bokeh's apply_json_patch replaces the whole `data`).
- Patches that Bokeh only half-checks are refused: an index equal to the column length, a
  slice given more or fewer values than it covers, negative sub-indices.
- Attribute names and values are not checked against Bokeh's model classes.
"""

from __future__ import annotations

import copy
import json
from importlib import metadata
from typing import Any

from services.common.names import SOURCE_TAG

from . import patching
from .flat import Flattener, check_id, expand, ref_id, refs_in
from .values import DocumentError, ModelExists, ModelInUse, ModelNotFound

__all__ = ["Doc", "DocumentError", "ModelExists", "ModelInUse", "ModelNotFound"]

try:
    BOKEH_VERSION = metadata.version("bokeh")
except metadata.PackageNotFoundError:  # pragma: no cover - bokeh is a dependency
    BOKEH_VERSION = "3"

_STORE_FORMAT = 1


def stored_with_title(title: str, untitled: bytes) -> bytes:
    """Doc.store_untitled() output with the title put in (a copy, not a re-encoding)."""
    return b'{"title":' + json.dumps(title).encode() + b"," + untitled[1:]


class Doc:
    """A Bokeh document: title, root ids and flat model reps by id.

    Besides the roots, Bokeh documents carry `config` (the id of a DocumentConfig model, or
    None), `callbacks` (document-level js_event_callbacks, a stored value holding references)
    and `defs` (DataModel definitions, kept verbatim). All three count as roots for
    reachability and are written back by `to_bokeh`.
    """

    def __init__(self, title: str = "", bokeh_version: str = BOKEH_VERSION, *,
                 roots: list[str] | None = None, models: dict[str, dict] | None = None,
                 config: str | None = None, callbacks: Any = None, defs: Any = None) -> None:
        self.title = title
        self.bokeh_version = bokeh_version
        self.roots: list[str] = roots if roots is not None else []
        self.models: dict[str, dict] = models if models is not None else {}
        self.config = config
        self.callbacks = callbacks
        self.defs = defs
        self._refs: dict[str, list[str]] = {}  # model id -> ids it references, computed lazily
        # bytes of its stored form when last read or written (0: not known yet); tells the
        # repository whether serialising it is worth a worker thread
        self.size_hint = 0

    def __repr__(self) -> str:
        return f"<Doc {self.title!r}: {len(self.roots)} roots, {len(self.models)} models>"

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def empty(cls, title: str = "") -> Doc:
        return cls(title)

    @classmethod
    def from_bokeh(cls, data: Any, *, title: str | None = None) -> Doc:
        """From `Document.to_json(deferred=False)` or `json_item()` output. `title`, when
        given, replaces the document's own title. Every reference must resolve."""
        if type(data) is not dict:
            raise DocumentError("a Bokeh document must be a JSON object "
                                "(Document.to_json(deferred=False) or json_item() output)")
        if "roots" not in data and "doc" in data:  # json_item(): the document is inside
            root_id, data = data.get("root_id"), data["doc"]
            if type(data) is not dict:
                raise DocumentError("json_item 'doc' must be an object")
        else:
            root_id = None
        roots = data.get("roots")
        if type(roots) is not list:
            raise DocumentError("a Bokeh document needs a 'roots' list")
        doc_title = data.get("title", "") if title is None else title
        version = data.get("version", BOKEH_VERSION)
        if type(doc_title) is not str or type(version) is not str:
            raise DocumentError("the document's title and version must be strings")

        flatten = Flattener(strict=True)
        config = None
        if data.get("config") is not None:
            config = ref_id(flatten(data["config"]))
            if config is None:
                raise DocumentError("the document's config must be a model")
        root_ids: dict[str, None] = {}
        for root in roots:
            root_id_ = ref_id(flatten(root))
            if root_id_ is None:
                raise DocumentError("every root must be a model (object rep or reference)")
            root_ids[root_id_] = None  # as Document.add_root, a repeated root counts once
        callbacks = flatten(data["callbacks"]) if data.get("callbacks") is not None else None
        for ref in flatten.refs:
            if ref not in flatten.models:
                raise DocumentError(f"reference to unknown model {ref!r}")
        if root_id is not None and root_id not in root_ids:
            raise DocumentError(f"json_item root_id {root_id!r} is not a root of its doc")
        defs = _opaque_copy(data["defs"]) if data.get("defs") is not None else None
        return cls(doc_title, version, roots=list(root_ids), models=flatten.models,
                   config=config, callbacks=callbacks, defs=defs)

    def to_bokeh(self) -> dict:
        """`Document.to_json()`'s shape: each model written in full at its first occurrence
        (config first, then the roots, then callbacks, as bokeh serializes), references after.
        Garbage is left out."""
        seen: set[str] = set()
        out: dict[str, Any] = {"version": self.bokeh_version, "title": self.title}
        # bokeh's Document.from_json needs "config" present, even if null
        out["config"] = (expand([{"id": self.config}], self.models, seen)[0]
                         if self.config is not None else None)
        out["roots"] = expand([{"id": r} for r in self.roots], self.models, seen)
        if self.defs is not None:
            out["defs"] = json.loads(json.dumps(self.defs))
        if self.callbacks is not None:
            out["callbacks"] = expand([self.callbacks], self.models, seen)[0]
        return out

    def to_store(self) -> bytes:
        """Compact storage form: the flat models as JSON (strict: no bare NaN)."""
        return stored_with_title(self.title, self.store_untitled())

    def store_untitled(self) -> bytes:
        """The storage form without its title, which alone may still change after the
        (costly) serialisation of the rest: see stored_with_title."""
        body = {"format": _STORE_FORMAT, "version": self.bokeh_version, "roots": self.roots,
                "config": self.config, "callbacks": self.callbacks, "defs": self.defs,
                "models": list(self.models.values())}
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_store(cls, data: bytes) -> Doc:
        """Back from `to_store` output (trusted: not re-validated)."""
        try:
            body = json.loads(data)
            if body.get("format") != _STORE_FORMAT:
                raise ValueError(f"unknown store format {body.get('format')!r}")
            return cls(body["title"], body["version"], roots=body["roots"],
                       models={rep["id"]: rep for rep in body["models"]},
                       config=body["config"], callbacks=body["callbacks"], defs=body["defs"])
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DocumentError(f"corrupt stored document: {e}") from None

    def copy(self) -> Doc:
        """An independent copy. Stored reps are never changed in place (every change builds
        a new rep, see patching._with and patch_object), so the copy shares them and copies
        only the containers: ~20x cheaper than a deep copy on a 200-model document."""
        doc = Doc.__new__(Doc)
        doc.__dict__.update(self.__dict__)
        doc.roots = list(self.roots)
        doc.models = dict(self.models)
        doc._refs = dict(self._refs)
        doc.callbacks = copy.deepcopy(self.callbacks)
        doc.defs = copy.deepcopy(self.defs)
        return doc

    # --- reading ----------------------------------------------------------------------------

    def model(self, model_id: str) -> dict:
        """The flat rep of a model (read-only: copies share reps); ModelNotFound if absent."""
        try:
            return self.models[model_id]
        except (KeyError, TypeError):
            raise ModelNotFound(f"no model {model_id!r} in this document") from None

    def references(self, model_id: str) -> list[str]:
        """Ids the model references directly, in first-occurrence order."""
        refs = self._refs.get(model_id)
        if refs is None:
            refs = self._refs[model_id] = refs_in(list(self.model(model_id)["attributes"]
                                                       .values()))
        return refs

    def closure(self, model_id: str) -> list[str]:
        """The model and every model it references, transitively, in DFS order."""
        self.model(model_id)
        return self._closure([model_id])

    def _closure(self, start: list[str]) -> list[str]:
        # iterative DFS; popping in reverse push order gives the recursive pre-order
        order: dict[str, None] = {}
        stack = list(reversed(start))
        while stack:
            model_id = stack.pop()
            if model_id in order or model_id not in self.models:
                continue  # a dangling reference can only be left inside garbage
            order[model_id] = None
            stack.extend(reversed(self.references(model_id)))
        return list(order)

    def object_with_refs(self, model_id: str) -> dict:
        ids = self.closure(model_id)
        return {"model": self.models[model_id],
                "references": [self.models[i] for i in ids[1:]]}

    def ids_of_type(self, name: str) -> list[str]:
        return [i for i, rep in self.models.items() if rep["name"] == name]

    def _live_roots(self) -> list[str]:
        start = [self.config] if self.config is not None else []
        start += self.roots
        if self.callbacks is not None:
            start += refs_in([self.callbacks])
        return start

    def reachable(self) -> set[str]:
        """Models reachable from the roots (and from config and callbacks)."""
        return set(self._closure(self._live_roots()))

    def garbage(self) -> list[str]:
        return sorted(set(self.models) - self.reachable())

    def collect_garbage(self) -> list[str]:
        dead = self.garbage()
        for model_id in dead:
            del self.models[model_id]
            self._refs.pop(model_id, None)
        return dead

    def bound_sources(self) -> list[str]:
        """Data-source ids bound by "plotline:source=<id>" tags on reachable models."""
        found = set()
        for model_id in self.reachable():
            tags = self.models[model_id]["attributes"].get("tags")
            if type(tags) is list:
                for tag in tags:
                    if type(tag) is str and tag.startswith(SOURCE_TAG) and tag[len(SOURCE_TAG):]:
                        found.add(tag[len(SOURCE_TAG):])
        return sorted(found)

    # --- the object layer (the seed's Backbone API) -----------------------------------------

    def add_object(self, rep: dict) -> str:
        """Adds a full object rep (which may nest new reps); ModelExists if any id is taken.
        The new model is garbage until something references it."""
        _check_rep(rep)
        flatten = Flattener(self.models, known_is_error=True, strict=True)
        model_id = ref_id(flatten(rep))
        self.commit_flattened(flatten, [])
        return model_id

    def replace_object(self, model_id: str, rep: dict) -> None:
        """Replaces a model's type and attributes; `rep` must carry the same id."""
        old = self.model(model_id)
        _check_rep(rep)
        if rep["id"] != model_id:
            raise DocumentError(f"the object's id {rep['id']!r} is not {model_id!r}")
        new = {**old, "name": rep["name"], "attributes": {}}
        self._set_attributes(new, rep.get("attributes") or {})

    def patch_object(self, model_id: str, attributes: dict) -> None:
        """Merges `attributes` into the model's (values may nest new reps)."""
        old = self.model(model_id)
        self._set_attributes({**old, "attributes": dict(old["attributes"])}, attributes)

    def _set_attributes(self, rep: dict, attributes: Any) -> None:
        if type(attributes) is not dict:
            raise DocumentError("attributes must be an object")
        flatten = Flattener(self.models, known_is_error=True, strict=True)
        for key, value in attributes.items():
            if type(key) is not str or not key:
                raise DocumentError("attribute names must be non-empty strings")
            rep["attributes"][key] = flatten(value)
        self.commit_flattened(flatten, [rep])

    def commit_flattened(self, flatten: Flattener, changed: list[dict]) -> None:
        """Adds (or, for redefined garbage, replaces) the models `flatten` lifted out and swaps
        in the `changed` reps, once every reference they make resolves. (For this package:
        the object layer and patching.)"""
        new = {**flatten.models, **{rep["id"]: rep for rep in changed}}
        _check_refs(flatten.refs, new, set(flatten.models), self)
        self.models.update(new)
        for model_id in new:
            self._refs.pop(model_id, None)

    def delete_object(self, model_id: str) -> None:
        """Deletes a model; ModelInUse if it is a root (or the config) or a live model
        references it. Garbage that references it keeps a dangling reference until
        collected, and can't be brought back to life before (see `_check_refs`)."""
        self.model(model_id)
        if model_id in self.roots or model_id == self.config:
            raise ModelInUse(f"model {model_id!r} is a root of the document")
        if self.callbacks is not None and model_id in refs_in([self.callbacks]):
            raise ModelInUse(f"model {model_id!r} is a document callback")
        users = [i for i in self.reachable() if i != model_id and model_id in self.references(i)]
        if users:
            raise ModelInUse(f"model {model_id!r} is referenced by {', '.join(sorted(users))}")
        del self.models[model_id]
        self._refs.pop(model_id, None)

    # --- events -----------------------------------------------------------------------------

    def apply_events(self, events: list) -> None:
        """Applies Bokeh patch events in order, all or nothing: DocumentError (naming the
        event) and no change at all if any event is invalid."""
        if type(events) is not list:
            raise DocumentError("events must be a list")
        draft = Doc.__new__(Doc)
        draft.__dict__.update(self.__dict__, roots=list(self.roots), models=dict(self.models),
                              _refs=dict(self._refs))
        for number, event in enumerate(events):
            kind = event.get("kind") if type(event) is dict else None
            try:
                patching.apply_event(draft, event)
            except DocumentError as e:
                label = f"event {number}" + (f" ({kind})" if type(kind) is str else "")
                raise DocumentError(f"{label}: {e}") from None
        self.__dict__.update(draft.__dict__)


def _opaque_copy(value: Any) -> Any:
    # `defs` is kept as it came, but it must store as strict JSON like everything else
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as e:
        raise DocumentError(f"the document's defs are not plain JSON: {e}") from None


def _check_rep(rep: Any) -> None:
    if type(rep) is not dict or rep.get("type") != "object":
        raise DocumentError('an object must be a full rep {"type": "object", "name", "id", ...}')
    check_id(rep.get("id"))
    if type(rep.get("name")) is not str or not rep["name"]:
        raise DocumentError(f"model {rep['id']!r} has no type name")


def _check_refs(refs: list[str], new: dict[str, dict], lifted: set[str], doc: Doc) -> None:
    """Every reference resolves, given the `new` reps about to be stored (of which the
    `lifted` ones have their references in `refs` already); also inside the garbage that a
    reference may bring back to life, which can point at a deleted model."""
    stack = list(dict.fromkeys(refs))
    stack += (ref for model_id, rep in new.items() if model_id not in lifted
              for ref in refs_in(list(rep["attributes"].values())))
    seen: set[str] = set()
    while stack:
        model_id = stack.pop()
        if model_id in seen:
            continue
        seen.add(model_id)
        if model_id in new:
            continue  # its references are on the stack already
        if model_id not in doc.models:
            raise DocumentError(f"reference to unknown model {model_id!r}" if model_id in refs
                                else f"a referenced model refers to deleted model {model_id!r}")
        stack.extend(doc.references(model_id))

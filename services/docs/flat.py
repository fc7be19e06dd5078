"""The flat form: object reps lifted out of values into a map by id, and written back.

Bokeh writes each model in full where it first occurs and as a reference {"id": ...} after;
a stored document keeps every model once, flat, with references only. The walks are
iterative, not recursive, so a deeply nested document (a long chain of models, each written
inside the previous one) cannot overflow the interpreter stack.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from .values import (
    BOKEH,
    LEAF_TYPES,
    SCALARS,
    SCALARS_OR_FLOAT,
    DocumentError,
    ModelExists,
    has_containers,
    number,
)

# Deepest plain value (inside one attribute) we accept. Bokeh's own values go a handful of
# levels deep; the limit keeps every stored model encodable by the json module, whose
# recursion gives out near 1000.
MAX_VALUE_DEPTH = 100


# Longest model id: Bokeh's own are "p1234" or a UUID; ids are keys of every stored model
# and appear in every reference, so an unbounded one would multiply a document's size.
MAX_ID_LENGTH = 128


def check_id(model_id: Any) -> str:
    if type(model_id) is not str or not model_id:
        raise DocumentError(f"model ids must be non-empty strings, got {model_id!r:.80}")
    if len(model_id) > MAX_ID_LENGTH:
        raise DocumentError(f"model ids have at most {MAX_ID_LENGTH} characters")
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
    resolve). Models may nest without limit, a plain value only MAX_VALUE_DEPTH deep. Bare
    NaN/Infinity floats become Bokeh's number reps, and bytes are normalized to the installed
    Bokeh's buffer encoding.

    `known` holds the ids the document already has. A full rep for one of them is, as in
    Bokeh's Deserializer, only a reference (its attributes are ignored) unless
    `known_is_error`, when it raises ModelExists, or `redefines(id)` says yes: Bokeh forgets
    a model once it is unreachable, so a full rep of what we keep as garbage defines it anew.
    With `strict`, the same id written twice with different content is an error (Bokeh
    would silently keep the first). `allow_models=False` is for column data, where a model
    can't appear at all.
    """

    def __init__(self, known: Container[str] = (), *, known_is_error: bool = False,
                 redefines: Callable[[str], bool] | None = None, strict: bool = False,
                 allow_models: bool = True) -> None:
        self.known = known
        self.known_is_error = known_is_error
        self.redefines = redefines
        self.strict = strict
        self.allow_models = allow_models
        self.models: dict[str, dict] = {}
        self.refs: list[str] = []
        self._raw: dict[str, dict] = {}

    def __call__(self, value: Any) -> Any:
        holder: list[Any] = [None]
        stack: list[tuple[Any, Any, Any, int]] = [(holder, 0, value, 0)]
        while stack:
            parent, key, v, depth = stack.pop()
            if depth > MAX_VALUE_DEPTH:
                raise DocumentError(f"a value is nested more than {MAX_VALUE_DEPTH} levels deep")
            parent[key] = self._copy(v, depth, stack)
        return holder[0]

    def _copy(self, v: Any, depth: int, stack: list) -> Any:
        t = type(v)
        if t in SCALARS:
            return v
        if t is float:
            return number(v)
        if t is list or t is tuple:
            kinds = set(map(type, v))
            if kinds <= SCALARS:
                return list(v)
            if kinds <= SCALARS_OR_FLOAT:
                return [number(x) if type(x) is float else x for x in v]
            out: list[Any] = [None] * len(v)
            stack.extend((out, i, v[i], depth + 1) for i in range(len(v) - 1, -1, -1))
            return out
        if t is dict:
            return self._copy_dict(v, depth, stack)
        # subclasses (numpy scalars, str enums...) from Python callers
        for base in (bool, int, float, str):
            if isinstance(v, base):
                return self._copy(base(v), depth, stack)
        raise DocumentError(f"unsupported value of type {t.__name__}")

    def _copy_dict(self, v: dict, depth: int, stack: list) -> Any:
        kind = v.get("type")
        if kind == "object":
            return self._object(v, stack)
        if kind == "ref" or (kind is None and "id" in v):
            return self._ref(v)
        if kind == "bytes":
            return BOKEH.normalized_bytes(v, "bytes")
        for key in v:
            if type(key) is not str:
                raise DocumentError(f"object keys must be strings, got {key!r}")
        out = dict.fromkeys(v)
        stack.extend((out, k, v[k], depth + 1) for k in reversed(list(v)))
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
            if self.redefines is None or not self.redefines(model_id):
                return {"id": model_id}
        for key in attributes:
            if type(key) is not str or not key:
                raise DocumentError(f"attribute names of {model_id!r} must be non-empty strings")
        flat = dict.fromkeys(attributes)
        self.models[model_id] = {"type": "object", "name": name, "id": model_id,
                                 "attributes": flat}
        self._raw[model_id] = v
        # a model's attributes start again at depth 0: it is stored flat, on its own
        stack.extend((flat, k, attributes[k], 0) for k in reversed(list(attributes)))
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

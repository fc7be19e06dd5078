"""Bokeh documents on the client side: what `publish` sends and what `gc` reads.

Bokeh is imported lazily: the account verbs do not pay for it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from services.common.names import SOURCE_TAG

DEFAULT_TITLE = "Bokeh Application"  # what Bokeh calls an untitled document


class DocumentFileError(ValueError):
    """A file that cannot be published (the message is for people)."""


def to_json(obj: Any) -> dict[str, Any]:
    """What the docs API's `doc` field takes: a `Document`'s `to_json(deferred=False)`; a
    model or layout in a fresh Document (or, if it already belongs to one, `json_item`); a
    dict is taken to be one of those already."""
    if isinstance(obj, dict):
        return obj
    from bokeh.document import Document
    from bokeh.model import Model

    if isinstance(obj, Document):
        if not obj.roots:
            raise DocumentFileError("the document has no roots: nothing to publish")
        return obj.to_json(deferred=False)
    if isinstance(obj, Model):
        if obj.document is not None:  # a model belongs to one Document only
            from bokeh.embed import json_item

            return json_item(obj)  # type: ignore[return-value]
        doc = Document()
        doc.add_root(obj)
        try:
            return doc.to_json(deferred=False)
        finally:  # leave the model free for a Document of the caller's
            doc.remove_root(obj)
    raise TypeError(f"cannot publish a {type(obj).__name__}: give a bokeh Document, a "
                    "Bokeh model or layout, or a document's JSON")


def title_of(doc_json: dict[str, Any]) -> str | None:
    """The document's own title, unless it is Bokeh's default (or missing)."""
    inner = doc_json.get("doc") if isinstance(doc_json.get("doc"), dict) else doc_json
    title = inner.get("title") if isinstance(inner, dict) else None
    return title if isinstance(title, str) and title.strip() and title != DEFAULT_TITLE \
        else None


def untitled() -> str:
    return time.strftime("Untitled %Y-%m-%d %H:%M:%S")


def bound_sources(value: Any) -> set[str]:
    """Data-source ids bound by `plotline:source=<id>` tags anywhere in a document's JSON
    (the server counts only models reachable from the roots; this errs on the side of
    keeping a source)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.startswith(SOURCE_TAG) and item[len(SOURCE_TAG):]:
            found.add(item[len(SOURCE_TAG):])
    return found


def load(path: str | Path) -> tuple[Any, str | None]:
    """The document in FILE and its title (None if it has none of its own): a `.py` script
    run as `bokeh serve` runs one, with a fresh `curdoc()` (what it adds is the document),
    or a `.json` Bokeh document (`Document.to_json()` or `json_item()` output)."""
    path = Path(path)
    if not path.is_file():
        raise DocumentFileError(f"{path}: no such file")
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DocumentFileError(f"{path}: {exc.strerror or exc}") from None
        except ValueError as exc:  # UnicodeDecodeError too
            raise DocumentFileError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise DocumentFileError(f"{path}: not a Bokeh document (a JSON object)")
        return data, title_of(data)
    if path.suffix == ".py":
        doc = run_script(path)
        return doc, (doc.title if doc.title and doc.title != DEFAULT_TITLE else None)
    raise DocumentFileError(f"{path}: cannot publish a {path.suffix or 'extensionless'} "
                            "file: give a Python script (.py) or a Bokeh document (.json)")


def run_script(path: Path) -> Any:
    """Run a script with Bokeh's own ScriptHandler (as `bokeh serve` does) into a fresh
    Document; its `show()`/`output_file()` do nothing there."""
    from bokeh.application.handlers import ScriptHandler
    from bokeh.document import Document

    quiet = logging.getLogger("bokeh")  # the handler logs failures; we report them ourselves
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        handler = ScriptHandler(filename=str(path))
        doc = Document()
        handler.modify_document(doc)
    finally:
        quiet.level = level
    if handler.failed:
        raise DocumentFileError(f"{path}: the script failed: {handler.error}")
    if not doc.roots:
        raise DocumentFileError(f"{path}: the script added nothing to curdoc(); "
                                "end it with curdoc().add_root(...)")
    return doc

"""Live documents: a local Bokeh `Document` kept in sync with a stored one, both ways, as
`bokeh.client.push_session` does for `bokeh serve`.

    live = session.live(figure_or_document, "my dashboard")  # publish, and stay in sync
    slider.on_change("value", update)   # what viewers do fires ordinary Bokeh callbacks ...
    live.loop_until_closed()            # ... here, in this thread, in order, once each
    # asyncio code: await live.run()

Code -> plot. A change to the Document made in this process (an attribute, a root added or
removed, the title) goes to the docs service as Bokeh's own patch events, over the Session's
websocket. A stream, patch or new `data` of a bound ColumnDataSource goes to the data
service instead (an append, a patch, a replace): its rows live there, the stored document
holds none, and every viewer draws the change.

Which sources are bound (the rule): when the document goes live, and when a root is added
later, every ColumnDataSource whose columns are all flat (numbers, strings, booleans,
datetimes; no lists of lists, no 2-D arrays) is uploaded as a data source of its own and
tagged `plotline:source=<id>`; the rest (multi_line's lists, images) stay in the document and
their changes go as document patches. A source the caller bound already (DataSource.bind)
stays bound to it. The local ColumnDataSource keeps the rows this process gave it; appends
made to the source by others reach DataSource.on_append callbacks, not this Document.

Plot -> code. The document's `patched` events from viewers (widget values, selections) are
applied to the Document with Bokeh's `apply_json_patch`, which fires the callbacks, in the
thread that calls `loop_until_closed()` / `process_events()` / `run()`. A viewer's change
never comes back as a change of ours, and ours never come back to us.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from services.common.names import ARROW_STREAM, SERVICE_PREFIXES, SOURCE_TAG
from services.common.names import channel as channel_name

from .link import Op
from .sources import DataSource, as_table, json_columns, json_patches

if TYPE_CHECKING:
    from bokeh.document import Document

    from .session import Session

log = logging.getLogger("plotline.live")
DOCS, DATA = SERVICE_PREFIXES["docs"], SERVICE_PREFIXES["data"]
_SCALARS = (str, bool, int, float, type(None))


def flat(data: dict[str, Any]) -> bool:
    """Whether every column holds plain values (what a data source can hold)."""
    if not data:
        return False
    for values in data.values():
        shape = getattr(values, "shape", None)
        if shape is not None:
            if len(shape) != 1 or getattr(values, "dtype", None) is None or \
                    values.dtype.kind not in "biufMmUSO":
                return False
            if values.dtype.kind == "O" and not all(isinstance(v, _SCALARS) for v in values):
                return False
        elif isinstance(values, list | tuple):
            if not all(isinstance(v, _SCALARS) for v in values):
                return False
        else:
            return False
    return True


class LiveDocument:
    """A stored document and the local Bokeh Document that follows it (module docstring).
    `id`, `url` (the viewer page), `doc`; `sources` maps bound ColumnDataSources (by model
    id) to their DataSource."""

    def __init__(self, session: Session, doc: Document, meta: dict[str, Any],
                 sources: dict[str, DataSource]) -> None:
        self.session = session
        self.doc = doc
        self.meta = meta
        self.id: str = meta["id"]
        self.sources = sources
        self._quiet = False
        self.closed = False
        doc.models.flush_synced()  # every model is on the server now
        doc.on_change(self._changed)
        session.link.watch(channel_name("doc", self.id), self._apply, self._resync,
                           since=meta["version"])

    def __repr__(self) -> str:
        return f"LiveDocument({self.id!r}, title={self.meta.get('title')!r})"

    @property
    def url(self) -> str:
        return self.session.viewer_url(self.id)

    def source(self, cds: Any) -> DataSource | None:
        """The data source a ColumnDataSource of this document is bound to (None if none)."""
        return self.sources.get(cds.id)

    # --- the loop ------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30) -> None:
        """Wait until every change made so far is stored (raises what failed)."""
        self.session.link.flush(timeout)

    def process_events(self, timeout: float | None = 0) -> int:
        """Apply what viewers changed (their callbacks run here); see Session."""
        return self.session.process_events(timeout)

    def loop_until_closed(self) -> None:
        """Apply viewers' changes as they come, until close() or Ctrl-C (which closes)."""
        self.session.loop_until_closed(lambda: self.closed)

    async def run(self) -> None:
        """loop_until_closed for asyncio code: callbacks run on the caller's event loop."""
        await self.session.run(lambda: self.closed)

    def close(self) -> None:
        """Stop following (what was sent is flushed first); the document stays stored."""
        if self.closed:
            return
        try:
            self.session.link.flush(30)
        finally:
            self.closed = True
            self.doc.remove_on_change(self._changed)
            self.session.link._hand(None, ())

    # --- code -> plot ----------------------------------------------------------------------

    def _changed(self, event: Any) -> None:
        from bokeh.document.events import (
            ColumnDataChangedEvent,
            ColumnsPatchedEvent,
            ColumnsStreamedEvent,
            DocumentPatchedEvent,
            ModelChangedEvent,
            RootAddedEvent,
        )

        if self._quiet or self.closed or event.setter is self or \
                not isinstance(event, DocumentPatchedEvent):
            return
        model = getattr(event, "model", None)
        bound = self.sources.get(model.id) if model is not None else None
        if bound is not None:
            if isinstance(event, ColumnsStreamedEvent):
                return self._append(bound, event.data, event.rollover)
            if isinstance(event, ColumnsPatchedEvent):
                return self._data_patch(bound, event.patches)
            if isinstance(event, ColumnDataChangedEvent) or (
                    isinstance(event, ModelChangedEvent) and event.attr == "data"):
                return self._replace(bound, model.data)
        if isinstance(event, RootAddedEvent):
            self._bind(event.model.references())
        self._send([event])

    def _send(self, events: list) -> None:
        from bokeh.core.serialization import Serializer

        serializer = Serializer(references=self.doc.models.synced_references, deferred=False)
        encoded = serializer.encode(events)
        self.doc.models.flush_synced(lambda model: not serializer.has_ref(model))
        strip_bound(encoded, set(self.sources))
        self.session.link.submit(Op("patch", doc=self.id, events=encoded))

    def _append(self, src: DataSource, data: Any, rollover: int | None) -> None:
        columns = json_columns(dict(data))
        if columns is not None:
            self.session.link.submit(Op("http", method="POST", path=f"{src.path}/append",
                                        source=src.id, merge=columns, rollover=rollover))
            return
        from .datafiles import to_ipc

        params = {"rollover": rollover} if rollover is not None else {}
        self.session.link.submit(Op(
            "http", method="POST", path=f"{src.path}/append", source=src.id,
            kw={"content": to_ipc(as_table(dict(data))), "params": params,
                "headers": {"Content-Type": ARROW_STREAM}}))

    def _data_patch(self, src: DataSource, patches: dict) -> None:
        self.session.link.submit(Op("http", method="POST", path=f"{src.path}/patch",
                                    kw={"json": {"patches": json_patches(patches)}}))

    def _replace(self, src: DataSource, data: Any) -> None:
        from .datafiles import to_ipc

        self.session.link.submit(Op(
            "http", method="PUT", path=f"{src.path}/data",
            kw={"content": to_ipc(as_table(dict(data))),
                "headers": {"Content-Type": ARROW_STREAM}}))

    def _bind(self, models: Any) -> None:
        """Upload every flat ColumnDataSource among `models` not bound yet (the rule)."""
        bind(self.session, models, self.sources, quiet=self)

    # --- plot -> code ----------------------------------------------------------------------

    def _apply(self, msg: dict[str, Any]) -> None:
        from bokeh.document.callbacks import invoke_with_curdoc

        data = msg.get("data") or {}
        kind = msg.get("type")
        if kind == "patched" and isinstance(data.get("events"), list):
            try:
                invoke_with_curdoc(self.doc, lambda: self.doc.apply_json_patch(
                    {"events": data["events"]}, setter=self))
            except Exception:
                log.exception("plotline live: a change from a viewer could not be applied;"
                              " reloading the document")
                self._resync()
        elif kind == "replaced" or data.get("reload"):
            self._resync()
        elif kind == "deleted":
            self.closed = True
            from .session import PlotlineError

            raise PlotlineError(404, "deleted", f"document {self.id} was deleted")

    def _resync(self) -> None:
        """The events are no longer enough (history gone, or the whole document replaced):
        bring every attribute of every model we hold to its stored value (callbacks fire
        for what changed); unknown models mean a new document: it replaces ours."""
        from bokeh.document.callbacks import invoke_with_curdoc

        stored = self.session.document(self.id)
        models = _models_of(stored["doc"])
        events = []
        for model_id, rep in models.items():
            local = self.doc.get_model_by_id(model_id)
            if local is None:
                continue
            for attr, value in (rep.get("attributes") or {}).items():
                if model_id in self.sources and attr == "data":
                    continue  # (the rows live in the data service)
                events.append({"kind": "ModelChanged", "model": {"id": model_id},
                               "attr": attr, "new": value})
        try:
            invoke_with_curdoc(self.doc, lambda: self.doc.apply_json_patch(
                {"events": events}, setter=self))
        except Exception:
            log.warning("plotline live: document %s was replaced on the server; its models "
                        "are new objects now", self.id)
            self._quiet = True
            try:
                self.doc.replace_with_json(stored["doc"])
            finally:
                self._quiet = False
        self.meta = {k: v for k, v in stored.items() if k != "doc"}


def bind(session: Session, models: Any, sources: dict[str, DataSource],
         quiet: LiveDocument | None = None) -> list[tuple[Any, DataSource]]:
    """Bind every flat ColumnDataSource among `models` (by the rule) to a new data source of
    its rows; those tagged already are bound to their source. Returns the (model, source)
    pairs made here (to undo with `unbind` if what they were made for fails)."""
    from bokeh.models import ColumnDataSource

    made = []
    for model in models:
        if not isinstance(model, ColumnDataSource) or model.id in sources:
            continue
        tagged = [t[len(SOURCE_TAG):] for t in model.tags
                  if isinstance(t, str) and t.startswith(SOURCE_TAG)]
        if tagged:
            sources[model.id] = DataSource(session, {"id": tagged[0], "name": model.name,
                                                     "version": 0, "rows": 0})
            continue
        if not flat(dict(model.data)):
            continue
        try:
            src = session.data_source(model.name or f"{type(model).__name__} {model.id}",
                                      dict(model.data))
        except Exception as exc:  # what the data service cannot hold stays in the document
            log.info("plotline live: source %s stays in the document: %s", model.id, exc)
            continue
        if quiet is not None:
            quiet._quiet = True
        try:
            model.tags = [*model.tags, f"{SOURCE_TAG}{src.id}"]
        finally:
            if quiet is not None:
                quiet._quiet = False
        sources[model.id] = src
        made.append((model, src))
    return made


def unbind(made: list[tuple[Any, DataSource]]) -> None:
    """Undo `bind`: the tags off, the data sources deleted (best effort)."""
    from .session import PlotlineError

    for model, src in made:
        model.tags = [t for t in model.tags if t != f"{SOURCE_TAG}{src.id}"]
        try:
            src.delete()
        except PlotlineError as exc:
            log.warning("plotline live: source %s not deleted: %s", src.id, exc)


def strip_bound(value: Any, bound: set[str]) -> None:
    """In encoded Bokeh JSON, empty the `data` of every bound ColumnDataSource (its rows
    live in the data service; the document holds the column names only)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and item.get("id") in bound:
                attributes = item.get("attributes") or {}
                data = attributes.get("data")
                if isinstance(data, dict) and data.get("type") == "map":
                    data["entries"] = [[e[0], []] for e in data.get("entries", [])]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _models_of(doc_json: dict[str, Any]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    stack: list[Any] = [doc_json]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "object" and isinstance(item.get("id"), str) and \
                    "attributes" in item:
                found[item["id"]] = item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found



"""Large documents are decoded, checked, serialised and rendered in worker processes.

A worker thread is not enough for them: decoding the JSON of a 26 MB body and encoding its
storage form are each one C call that holds the GIL throughout (~0.2 s and ~0.6 s), so the
event loop, and every request on it (health probes included), would wait them out anyway.
A body over BIG_BYTES therefore goes to a small process pool as bytes and comes back as a
`Prepared` document: the storage form (without its title, which the write may still set),
the sources it binds, and nothing else. The docs service writes that as it would a Doc; it
never builds the model tree of a large document in its own process on the write path, and
a read of one it has not parsed is rendered by a worker from the stored bytes.
Smaller bodies stay in threads (deps.json_body): a process hop costs more than they do.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from services.common.errors import PlotlineError, Unavailable, Unprocessable

from .model import Doc, stored_with_title

BIG_BYTES = 1 << 20
WORKERS = 2


@dataclass
class Prepared:
    """A document decoded and serialised by a worker: enough of a Doc for the write path
    (title, bound_sources, copy, to_store, size_hint)."""

    title: str
    untitled: bytes
    sources: list[str]

    @property
    def size_hint(self) -> int:
        return len(self.untitled)

    @size_hint.setter
    def size_hint(self, _: int) -> None:
        pass  # always known: the length of the storage form

    def bound_sources(self) -> list[str]:
        return list(self.sources)

    def copy(self) -> Prepared:
        return Prepared(self.title, self.untitled, list(self.sources))

    def to_store(self) -> bytes:
        return stored_with_title(self.title, self.untitled)


def _prepare(raw: bytes, model: type[BaseModel]) -> tuple[str, Any]:
    """In the worker: ("ok", (body without doc, Prepared)), or ("invalid", errors), or
    ("refused", (status, code, detail)). Exceptions are answered as values: a pickled
    exception would lose its code and its FastAPI shape."""
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        return "invalid", [{**e, "loc": ("body", *e["loc"])}
                           for e in exc.errors(include_url=False, include_context=False)]
    try:
        doc = Doc.from_bokeh(body.doc, title=getattr(body, "title", None)) \
            if body.doc is not None else Doc.empty(getattr(body, "title", None) or "")
        prepared = Prepared(doc.title, doc.store_untitled(), doc.bound_sources())
    except PlotlineError as exc:
        return "refused", (exc.status, exc.code, exc.detail)
    except ValueError as exc:  # e.g. NaN in the document: not storable as strict JSON
        return "refused", (Unprocessable.status, "invalid_document", str(exc))
    return "ok", (body.model_copy(update={"doc": None}), prepared)


def render(head: dict[str, Any], doc: Doc) -> bytes:
    """A document's JSON answer: its summary fields and the Bokeh document."""
    return json.dumps({**head, "doc": doc.to_bokeh()}, separators=(",", ":")).encode()


def _render(stored: bytes, head: dict[str, Any]) -> bytes:
    """In the worker: the JSON answer of a large stored document."""
    return render(head, Doc.from_store(stored))


class Workers:
    """The pool, started on first use (most installs never see a large document) and
    stopped with the service."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(WORKERS)

    async def prepare(self, raw: bytes, model: type[BaseModel]) -> tuple[BaseModel, Prepared]:
        kind, value = await self._run(_prepare, raw, model)
        if kind == "invalid":
            raise RequestValidationError(value)
        if kind == "refused":
            status, code, detail = value
            error = PlotlineError(detail, code=code)
            error.status = status  # as the worker's error said
            raise error
        return value

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            # spawn: a fork of a process with threads and an event loop is not safe
            self._pool = ProcessPoolExecutor(WORKERS, multiprocessing.get_context("spawn"))
        async with self._slots:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
            except BrokenProcessPool:  # a worker died (killed, out of memory): start afresh
                self.close()
                raise Unavailable("the document worker stopped; try again",
                                  headers={"Retry-After": "1"}) from None

    async def render(self, stored: bytes, head: dict[str, Any]) -> bytes:
        return await self._run(_render, stored, head)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


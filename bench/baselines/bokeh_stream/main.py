"""The `bokeh serve` baseline for bench/push_fanout.py: the old bokeh-server way of pushing.

Every browser session of a Bokeh server app owns its own Document, so "push one row to every
watcher" means: stream the row into each session's ColumnDataSource, and let Bokeh turn each
of those changes into a PATCH-DOC message on that session's websocket. This app does just
that, so the benchmark can compare Plotline's push service against the same workload here.

    BOKEH_BASELINE_PUSH_PORT=P2 python -m bokeh serve bench/baselines/bokeh_stream \\
        --port P --address 127.0.0.1 --allow-websocket-origin 127.0.0.1:P --num-procs 1

Each session: a ColumnDataSource with columns x, y (float) and seq (int), and one figure
with a line glyph. A producer outside Bokeh pushes rows over a tiny HTTP endpoint served by
the same process (and IOLoop) on 127.0.0.1:$BOKEH_BASELINE_PUSH_PORT:

    POST /push  {"x": float, "y": float, "seq": int}
        -> 200 {"seq": seq, "sessions": n} once `source.stream(row)` has been scheduled with
           `doc.add_next_tick_callback` on each of the n live sessions (400 on a bad row)
    GET  /push  -> 200 {"sessions": n}

Why this file imports itself: `bokeh serve` runs main.py once per session, each time as a
fresh `bokeh_app_<id>` module whose namespace Bokeh clears when the session is destroyed. So
the listener and the session registry live in a second copy of this file, imported once per
process under a fixed name (HUB) and kept in sys.modules; the per-session part only runs in
the `bokeh_app_*` copies. The listener starts with the first session (a directory app has no
other hook without a server_lifecycle.py), so the push port is closed until then.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from functools import partial
from types import ModuleType
from typing import Any

import tornado.web
from bokeh.document import Document
from bokeh.models import ColumnDataSource

HUB = "_bokeh_baseline_push_hub"
log = logging.getLogger("bokeh.baseline_push")  # under "bokeh": shown in its log

# --- the hub: one per process (only used in the copy imported as HUB) -------------------------

sessions: dict[str, tuple[Document, ColumnDataSource]] = {}  # session id -> (doc, source)


def register(doc: Document, source: ColumnDataSource) -> None:
    session_id = doc.session_context.id
    sessions[session_id] = (doc, source)
    doc.on_session_destroyed(unregister)


def unregister(session_context: Any) -> None:
    sessions.pop(session_context.id, None)


class PushHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"sessions": len(sessions)})

    def post(self) -> None:
        try:
            row = json.loads(self.request.body)
            data = {"x": [float(row["x"])], "y": [float(row["y"])], "seq": [int(row["seq"])]}
        except (ValueError, KeyError, TypeError) as e:
            raise tornado.web.HTTPError(400, f"expected {{x, y, seq}}: {e!r}") from e
        for doc, source in list(sessions.values()):
            # the same dict for every session: stream() only reads it
            doc.add_next_tick_callback(partial(source.stream, data))
        self.write({"seq": data["seq"][0], "sessions": len(sessions)})


def start_listener() -> None:
    port = os.environ.get("BOKEH_BASELINE_PUSH_PORT")
    if not port:
        log.warning("BOKEH_BASELINE_PUSH_PORT is not set: no push endpoint")
        return
    # The IOLoop of `bokeh serve` is running (we are inside its session creation).
    tornado.web.Application([(r"/push", PushHandler)]).listen(int(port), address="127.0.0.1")
    log.info("push endpoint on http://127.0.0.1:%s/push", port)


def hub() -> ModuleType:
    """This file imported once per process under HUB, its listener started."""
    module = sys.modules.get(HUB)
    if module is None:
        spec = importlib.util.spec_from_file_location(HUB, __file__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[HUB] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[HUB]
            raise
        module.start_listener()  # once: if it fails, the first session's error says why
    return module


# --- the app: once per session (Bokeh runs this file as a bokeh_app_<id> module) ------------

if __name__.startswith("bokeh_app_"):
    from bokeh.io import curdoc
    from bokeh.plotting import figure

    doc = curdoc()
    source = ColumnDataSource(data={"x": [], "y": [], "seq": []})
    plot = figure(title="bokeh serve baseline", height=300, width=600)
    plot.line("x", "y", source=source)
    doc.add_root(plot)
    hub().register(doc, source)

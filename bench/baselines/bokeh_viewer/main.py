"""The `bokeh serve` baseline for bench/viewer.py: one tab watching a streaming line.

    python -m bokeh serve bench/baselines/bokeh_viewer --port P --address 127.0.0.1 \\
        --allow-websocket-origin 127.0.0.1:P --num-procs 1

Each session holds the figure that bench/viewer.py also publishes to Plotline (`build()`,
imported from this file by the bench, so both pages draw the same document): a line over a
ColumnDataSource named "probe" with columns t (the producer's clock, ms since the epoch,
Date.now()-comparable), y and a (the append's number: 10 rows share one), pre-filled with
ROWS rows (a = -1).

The producer is the usual Bokeh-app one: a periodic callback of the session itself (every
TICK_MS), which calls `source.stream(10 rows, rollover=ROLLOVER)` once per append that is
due at the requested rate, each row stamped with time.time() at that call; Bokeh sends each
stream() as one PATCH-DOC message on the session's websocket. That is generous to Bokeh:
its rows cost no ingest request (Plotline's come over HTTP from another process), and the
stamp is taken inside the server, after what would be the ingest.

The page starts a run by setting the figure's tags from JavaScript (BokehJS syncs the change
to the server, as a widget would): ["run", rows_per_s, seconds, first_append_number]. When
the run is over the server sets them to ["done", appends_sent, seconds_taken]; that patch
follows the last stream on the same websocket, so a page that sees it has received every row.
"""

from __future__ import annotations

import math
import time

from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

ROWS, BATCH, ROLLOVER, TICK_MS = 10_000, 10, 10_000, 2


def rows(first_row: int, count: int, append: int, now_ms: float) -> dict[str, list]:
    """`count` rows of append number `append`, all stamped now_ms (plain lists: see
    TOOLCHAIN.md, typed arrays did not shrink under rollover)."""
    return {"t": [now_ms] * count,
            "y": [math.sin((first_row + i) / 300) for i in range(count)],
            "a": [append] * count}


def build() -> tuple[figure, ColumnDataSource]:
    """The figure both benchmarks draw, and its source (ROWS rows, a = -1)."""
    now = time.time() * 1000
    data = {"t": [now - (ROWS - i) for i in range(ROWS)],
            "y": [math.sin(i / 300) for i in range(ROWS)], "a": [-1] * ROWS}
    source = ColumnDataSource(data, name="probe")
    plot = figure(name="probe-plot", title="10-row appends, rollover 10,000", width=800,
                  height=400, tools="")
    plot.line("t", "y", source=source)
    return plot, source


if __name__.startswith("bokeh_app_"):
    from bokeh.io import curdoc

    doc = curdoc()
    plot, source = build()
    doc.add_root(plot)
    run: dict = {"callback": None}

    def tick() -> None:
        due = min(run["total"], int((time.perf_counter() - run["t0"]) * run["per_s"]) + 1)
        while run["sent"] < due:
            append = run["first"] + run["sent"]
            source.stream(rows(append * BATCH, BATCH, append, time.time() * 1000),
                          rollover=ROLLOVER)
            run["sent"] += 1
        if run["sent"] >= run["total"]:
            doc.remove_periodic_callback(run["callback"])
            run["callback"] = None
            plot.tags = ["done", run["sent"], time.perf_counter() - run["t0"]]

    def start(attr: str, old: list, new: list) -> None:
        if len(new) != 4 or new[0] != "run" or run["callback"] is not None:
            return
        _, rate, seconds, first = new
        per_s = rate / BATCH  # appends a second
        run.update(per_s=per_s, total=max(1, round(per_s * seconds)), first=int(first),
                   sent=0, t0=time.perf_counter())
        run["callback"] = doc.add_periodic_callback(tick, TICK_MS)

    plot.on_change("tags", start)

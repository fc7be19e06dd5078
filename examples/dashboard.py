"""A two-way dashboard: viewers pick a signal and a frequency, this script recomputes.
`python examples/dashboard.py` (a server running), open the URL it prints, change the
widgets: the callbacks below run here and every viewer sees the result. Ctrl-C stops.
"""

import argparse
import math
import time

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, Select, Slider
from bokeh.plotting import figure
from plotline import Session

SIGNALS = {"sine": math.sin, "square": lambda v: 1.0 if math.sin(v) >= 0 else -1.0,
           "sawtooth": lambda v: (v / math.pi) % 2 - 1}
X = [i / 40 for i in range(400)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="the Plotline server (default: $PLOTLINE_URL or "
                        "http://127.0.0.1:5006)")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    args = parser.parse_args()

    signal = Select(title="signal", value="sine", options=list(SIGNALS))
    freq = Slider(title="frequency", start=0.5, end=5, step=0.5, value=1)
    source = ColumnDataSource({"x": X, "y": [math.sin(x) for x in X]})
    stats = Div(text="")
    p = figure(title="signal", width=700, height=320)
    p.line("x", "y", source=source, line_width=2)

    def update(attr: str, old: object, new: object) -> None:
        fn, f = SIGNALS[signal.value], freq.value
        y = [fn(f * x) for x in X]
        source.data = {"x": X, "y": y}
        p.title.text = f"{signal.value} at {f:g}"
        stats.text = f"mean {sum(y) / len(y):+.3f}, max {max(y):.3f}"
        print(f"recomputed: {signal.value} at {f:g}", flush=True)

    signal.on_change("value", update)
    freq.on_change("value", update)
    with Session(args.url) as s:
        live = s.live(column(row(signal, freq), p, stats),
                      f"Dashboard {time.strftime('%H:%M:%S')}", public=True)
        print(live.url, flush=True)
        start = time.monotonic()
        s.loop_until_closed(lambda: args.seconds is not None
                            and time.monotonic() - start > args.seconds)


if __name__ == "__main__":
    main()

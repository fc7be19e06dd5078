"""Stream a random walk into a live plot: `python examples/live_stream.py` and open the URL
it prints; every open page draws the new points as they come. Ctrl-C stops
(`--seconds N` stops by itself)."""

import argparse
import random
import time

from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from plotline import Session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="the Plotline server (default: $PLOTLINE_URL or "
                        "http://127.0.0.1:5006)")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--rate", type=float, default=20, help="points a second (20)")
    args = parser.parse_args()
    source = ColumnDataSource({"t": [0.0], "y": [0.0]})
    p = figure(title="a random walk, streamed from Python", width=800, height=350)
    p.line("t", "y", source=source, line_width=2)
    with Session(args.url) as s:
        live = s.live(p, f"Live stream {time.strftime('%H:%M:%S')}", public=True)
        print(live.url, flush=True)
        t, y, start = 0.0, 0.0, time.monotonic()
        try:
            while args.seconds is None or time.monotonic() - start < args.seconds:
                t, y = t + 1, y + random.gauss(0, 1)
                source.stream({"t": [t], "y": [y]}, rollover=2000)
                s.process_events(1 / args.rate)  # (and raises what failed)
            live.flush()
        except KeyboardInterrupt:
            pass
        print(f"streamed {int(t)} points", flush=True)


if __name__ == "__main__":
    main()

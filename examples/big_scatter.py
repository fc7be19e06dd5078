"""Ten million points in a scatter that stays interactive: the rows go to a data source
(Arrow, in chunks, with a progress bar), the plot binds it, and each viewer gets an aggregate
raster of what is visible (datashader on the server), asked again as it pans and zooms.
`python examples/big_scatter.py` (a server running); `--points N` for another size.
"""

import argparse
import sys
import time

import numpy as np
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from plotline import Session


def bar(done: int, total: int) -> None:
    filled = 30 * done // max(total, 1)
    sys.stderr.write(f"\ruploading [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total:,}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="the Plotline server (default: $PLOTLINE_URL or "
                        "http://127.0.0.1:5006)")
    parser.add_argument("--points", type=int, default=10_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    n = args.points
    centers = rng.normal(0, 3, size=(8, 2))
    which = rng.integers(0, len(centers), n)
    x = centers[which, 0] + rng.normal(0, 0.6, n)
    y = centers[which, 1] + rng.normal(0, 0.6, n)
    with Session(args.url) as s:
        src = s.data_source(f"{n:,} points", {"x": x, "y": y}, progress=bar)
        p = figure(title=f"{n:,} points", width=700, height=500,
                   tools="pan,wheel_zoom,box_zoom,reset")
        p.scatter("x", "y", source=src.bind(ColumnDataSource()), size=2)
        doc = s.publish(p, f"Big scatter {time.strftime('%H:%M:%S')}", public=True)
    print(doc["url"], flush=True)


if __name__ == "__main__":
    main()

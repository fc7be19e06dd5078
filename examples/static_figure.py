"""Publish a static Bokeh figure: `python examples/static_figure.py` (a server running, as
`make run` starts it). Prints the page to open."""

import argparse
import math

from bokeh.plotting import figure
from plotline import Session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="the Plotline server (default: $PLOTLINE_URL or "
                        "http://127.0.0.1:5006)")
    parser.add_argument("--title", default="A static figure")
    args = parser.parse_args()
    x = [i / 10 for i in range(200)]
    p = figure(title="sin and cos", width=700, height=350)
    p.line(x, [math.sin(v) for v in x], legend_label="sin", line_width=2)
    p.line(x, [math.cos(v) for v in x], legend_label="cos", color="orange", line_width=2)
    with Session(args.url) as s:
        doc = s.publish(p, args.title, public=True)
    print(doc["url"])


if __name__ == "__main__":
    main()

"""An applet: a slider that recomputes a curve. Run it beside the server with
`plotline serve --script examples/slider_applet.py`, open the "Slider applet" plot and move
the slider: this script recomputes y = sin(k x) and every viewer sees the new curve. Run
again (a restart), it finds its document and carries on with it.
"""

import math

from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure
from plotline import Session

TITLE = "Slider applet"
X = [i / 50 for i in range(315)]


def curve(k: float) -> dict:
    return {"x": X, "y": [math.sin(k * x) for x in X]}


def main() -> None:
    s = Session()  # the server that runs the applet ($PLOTLINE_URL)
    doc = s.use_doc(TITLE)
    if not doc.roots:  # the first run: build it
        slider = Slider(start=0.5, end=5, value=1, step=0.5, title="k", name="k")
        source = ColumnDataSource(curve(1), name="curve")
        p = figure(title="y = sin(k x)", width=700, height=350, name="plot")
        p.line("x", "y", source=source, line_width=2)
        curdoc().add_root(column(slider, p))
        print("published", s.publish(), flush=True)
    slider = doc.select_one({"name": "k"})
    source = doc.select_one({"name": "curve"})

    def recompute(attr: str, old: float, new: float) -> None:
        source.data = curve(new)
        print(f"k = {new}", flush=True)

    slider.on_change("value", recompute)
    print("ready", flush=True)
    s.loop_until_closed()


if __name__ == "__main__":
    main()

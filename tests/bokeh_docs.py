"""Real Bokeh documents for the tests, made with the bokeh library itself."""

from __future__ import annotations

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure


def figure_doc(points: int = 20, title: str = "plot", source_tag: str | None = None) -> dict:
    """Document.to_json() of a figure with a line and a scatter over one ColumnDataSource."""
    x = np.arange(points, dtype="float64")
    source = ColumnDataSource({"x": x, "y": np.sin(x / 3)}, name="src")
    if source_tag:
        source.tags = [f"plotline:source={source_tag}"]
    plot = figure(title=title, width=400, height=300)
    plot.line("x", "y", source=source)
    plot.scatter("x", "y", source=source, size=6)
    doc = Document()
    doc.add_root(plot)
    doc.title = title
    return doc.to_json(deferred=False)


def layout_doc(plots: int = 2) -> dict:
    doc = Document()
    figures = []
    for i in range(plots):
        f = figure(title=f"p{i}", width=300, height=200)
        f.line([1, 2, 3], [i, i + 1, i + 2])
        figures.append(f)
    doc.add_root(column(*figures))
    return doc.to_json(deferred=False)


def source_id(doc_json: dict) -> str:
    """Id of the first ColumnDataSource in a document's JSON."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get("type") == "object" and value.get("name") == "ColumnDataSource":
                found.append(value["id"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc_json)
    return found[0]

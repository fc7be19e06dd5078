"""Large bound sources in the live viewer (issue 11), in headless Chromium against a real
server: a 10M-point line is never sent whole, only a MinMaxLTTB downsample of what is
visible at the plot's width; zooming asks again (debounced, latest wins); rows appended
to it update the view; a marker-only source is drawn as an aggregate raster image."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from browsing import plot_frame, screenshot
from conftest import new_username

DOCS, DATA = "/api/v1/docs", "/api/v1/data"
ARROW = "application/vnd.apache.arrow.stream"
ROWS = 10_000_000

on_file_stores = pytest.mark.parametrize("multi_server", ["file"], indirect=True)


def arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema,
                           options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def big_source(account, columns: dict[str, np.ndarray]) -> str:
    c, h = account["client"], account["headers"]
    r = c.post(f"{DATA}/sources", params={"name": new_username()}, timeout=120,
               content=arrow(pa.table(columns)), headers={**h, "content-type": ARROW})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def plot_doc(source: str, glyph: str) -> tuple[dict, str]:
    """A figure drawing the bound source with a line (zoomed in x, as time series are; y
    fits what is shown) or with markers (zoomed in both); wheel zoom active."""
    cds = ColumnDataSource({"x": [0.0, 1.0], "y": [0.0, 1.0]}, tags=[f"plotline:source={source}"])
    zoom = "xwheel_zoom" if glyph == "line" else "wheel_zoom"
    plot = figure(width=600, height=320, tools=f"pan,{zoom},box_zoom,reset,save",
                  active_scroll=zoom, title=glyph)
    if glyph == "line":
        plot.line("x", "y", source=cds)
    else:
        plot.scatter("x", "y", source=cds, size=2)
    doc = Document()
    doc.add_root(plot)
    return doc.to_json(deferred=False), cds.id


def published(account, doc: dict) -> str:
    c, h = account["client"], account["headers"]
    r = c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc}, headers=h, timeout=30)
    assert r.status_code == 201, r.text
    assert c.post(f"{DOCS}/{r.json()['id']}/publish", headers=h).status_code == 200
    return r.json()["id"]


def watch_requests(tab) -> list[str]:
    seen: list[str] = []
    tab.on("request", lambda request: seen.append(request.url))
    return seen


def shown_view(frame) -> str:
    return frame.evaluate("document.getElementById('plotline-roots').dataset.view || ''")


def wait_for_view_after(frame, before: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while (view := shown_view(frame)) in ("", before):
        assert time.monotonic() < deadline, f"no new view after {before!r}"
        time.sleep(0.05)
    return view


def settled(frame, quiet: float = 0.6, timeout: float = 20.0) -> str:
    """The view shown once no new one has arrived for `quiet` seconds."""
    deadline, view, since = time.monotonic() + timeout, shown_view(frame), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the view never settled"
        time.sleep(0.05)
        if (now := shown_view(frame)) != view:
            view, since = now, time.monotonic()
    return view


def open_large(tab, server, account, columns: dict[str, np.ndarray], glyph: str):
    """A published plot of a new large source, open in `tab` and showing its first view:
    (frame, the requests the page made, that view, the CDS id, the source id)."""
    source = big_source(account, columns)
    doc, cds = plot_doc(source, glyph)
    doc_id = published(account, doc)
    requests = watch_requests(tab)
    tab.goto(f"{server.url}/plots/{doc_id}")
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    frame = plot_frame(tab)
    return frame, requests, wait_for_view_after(frame, ""), cds, source


@on_file_stores
def test_zooming_a_10m_point_line_asks_for_the_window_and_ends_on_the_last(
        multi_server, account, page):
    tab, errors = page
    x = np.arange(ROWS, dtype="float64")
    y = np.sin(x / 200_000) + np.where(x % 1_000_000 == 0, 3.0, 0.0)  # spikes MinMax keeps
    frame, requests, first, cds, source = open_large(tab, multi_server, account,
                                                     {"x": x, "y": y}, "line")
    column = f"Bokeh.documents[0].get_model_by_id({cds!r}).data"
    shown = frame.evaluate(f"[{column}.x.length, {column}.x[0], {column}.x.at(-1), "
                           f"Math.max(...{column}.y)]")
    width = frame.evaluate("Bokeh.documents[0].roots()[0].inner_width")
    assert 100 <= shown[0] <= 2 * width, shown    # about two points per pixel, not 10M
    assert shown[1] == 0.0 and shown[2] == ROWS - 1  # the whole extent
    assert shown[3] == pytest.approx(float(y.max()))  # a one-sample spike is not lost
    assert not any(f"/sources/{source}/data" in u for u in requests)  # never sent whole
    screenshot(tab, "viewer_large_line")

    # one zoom with the mouse wheel, as a person would: the window is asked for
    box = tab.locator("iframe.plotline-frame").bounding_box()
    tab.mouse.move(box["x"] + 300, box["y"] + 160)
    before = len([u for u in requests if "/downsample" in u])
    tab.mouse.wheel(0, -600)
    zoomed = wait_for_view_after(frame, first)
    start, end = frame.evaluate("[Bokeh.documents[0].roots()[0].x_range.start, "
                                "Bokeh.documents[0].roots()[0].x_range.end]")
    assert end - start < 0.9 * ROWS
    xs = frame.evaluate(f"[{column}.x[0], {column}.x.at(-1), {column}.x.length]")
    assert start - 1 <= xs[0] and xs[1] <= end + 1 and xs[2] >= 100, (start, end, xs)
    asked = [u for u in requests if "/downsample" in u][before:]
    assert asked and "x0=" in asked[-1] and "x1=" in asked[-1]

    # 20 rapid zooms: fewer requests than zooms (debounced), and the plot ends on the last
    before = len([u for u in requests if "/downsample" in u])
    for _ in range(20):
        tab.mouse.wheel(0, -120)
        tab.wait_for_timeout(15)
    settled(frame)
    assert shown_view(frame) != zoomed
    start, end = frame.evaluate("[Bokeh.documents[0].roots()[0].x_range.start, "
                                "Bokeh.documents[0].roots()[0].x_range.end]")
    xs = frame.evaluate(f"[{column}.x[0], {column}.x.at(-1), {column}.x.length]")
    # the data shown is the final window's: it starts and ends at that window's edges
    assert start - 1 <= xs[0] <= start + (end - start) * 0.02 + 1, (start, end, xs)
    assert end - (end - start) * 0.02 - 1 <= xs[1] <= end + 1, (start, end, xs)
    asked = [u for u in requests if "/downsample" in u][before:]
    assert 1 <= len(asked) < 20, len(asked)
    screenshot(tab, "viewer_large_zoomed")
    assert errors == [], errors


@on_file_stores
def test_rows_appended_to_a_large_source_update_its_view(multi_server, account, page):
    tab, errors = page
    c, h = account["client"], account["headers"]
    x = np.arange(200_000, dtype="float64")
    frame, requests, first, cds, source = open_large(
        tab, multi_server, account, {"x": x, "y": np.zeros_like(x)}, "line")
    column = f"Bokeh.documents[0].get_model_by_id({cds!r}).data"
    tab.wait_for_timeout(300)  # (the ranges settle after the first view)
    # new rows at the right end, inside the padding of the range fitted to the first view
    r = c.post(f"{DATA}/sources/{source}/append", headers=h, json={"columns": {
        "x": [200_000.0 + i for i in range(1000)], "y": [5.0] * 1000}})
    assert r.status_code == 200, r.text
    wait_for_view_after(frame, first)
    assert frame.evaluate(f"Math.max(...{column}.y)") == 5.0
    assert frame.evaluate(f"{column}.x.at(-1)") == 200_999.0
    assert not any(f"/sources/{source}/data" in u for u in requests)
    assert errors == [], errors


@on_file_stores
def test_a_large_marker_source_is_drawn_as_an_aggregate_image(multi_server, account, page):
    tab, errors = page
    rng = np.random.default_rng(7)
    n = 1_000_000
    frame, requests, first, _, source = open_large(
        tab, multi_server, account, {"x": rng.normal(0, 1, n), "y": rng.normal(0, 1, n)},
        "scatter")
    image = ("(() => { for (const m of Bokeh.documents[0].all_models) "
             "if (m.glyph && m.glyph.type === 'ImageURL') return m.data_source.data; })()")
    shown = frame.evaluate(f"(() => {{ const d = {image}; return [d.url[0], d.w[0], d.h[0]]; }})()")
    assert shown[0].startswith("blob:") and shown[1] > 4 and shown[2] > 4, shown
    assert any("/aggregate" in u and "format=png" in u for u in requests)
    assert not any(f"/sources/{source}/data" in u for u in requests)
    tab.wait_for_timeout(300)
    screenshot(tab, "viewer_large_scatter")
    box = tab.locator("iframe.plotline-frame").bounding_box()
    tab.mouse.move(box["x"] + 300, box["y"] + 160)
    tab.mouse.wheel(0, -600)
    wait_for_view_after(frame, first)
    asked = [u for u in requests if "/aggregate" in u]
    assert "x_range=" in asked[-1] and "y_range=" in asked[-1]
    w = frame.evaluate(f"{image}.w[0]")
    assert w < shown[1] * 0.9  # the image covers the zoomed window now
    tab.wait_for_timeout(300)
    screenshot(tab, "viewer_large_scatter_zoomed")
    assert errors == [], errors

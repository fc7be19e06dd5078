"""The live viewer (issue 11), in headless Chromium against a real server: bound sources are
filled from the data service, and what is appended or patched over REST appears in the open
page without a reload."""

from __future__ import annotations

import time

import httpx
import pytest
from bokeh_docs import figure_doc, source_id
from browsing import cds_column, drag_slider_to_the_left_end, plot_frame, screenshot, wait_for
from conftest import new_username

DOCS, DATA = "/api/v1/docs", "/api/v1/data"

# one server is enough: the page does not depend on the store backend
on_file_stores = pytest.mark.parametrize("multi_server", ["file"], indirect=True)


def open_plot(tab, server, doc_id: str) -> None:
    response = tab.goto(f"{server.url}/plots/{doc_id}")
    assert response is not None and response.status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=15_000)


def published(account, doc: dict) -> str:
    c, h = account["client"], account["headers"]
    r = c.post(f"{DOCS}/", json={"title": new_username(), "doc": doc}, headers=h)
    assert r.status_code == 201, r.text
    assert c.post(f"{DOCS}/{r.json()['id']}/publish", headers=h).status_code == 200
    return r.json()["id"]


@on_file_stores
def test_a_bound_source_fills_the_plot_and_appends_arrive_live(multi_server, account, page):
    tab, errors = page
    c, h = account["client"], account["headers"]
    r = c.post(f"{DATA}/sources", headers=h, json={
        "name": "live", "columns": {"x": [0.0, 1.0, 2.0], "y": [5.0, 6.0, 7.0]}})
    assert r.status_code == 201, r.text
    source = r.json()["id"]
    doc = figure_doc(points=20, source_tag=source)  # it holds 20 frozen points of its own
    cds = source_id(doc)
    doc_id = published(account, doc)
    open_plot(tab, multi_server, doc_id)  # anonymous: it is published
    # the source's rows, not the document's frozen copy
    assert cds_column(tab, cds, "x") == [0.0, 1.0, 2.0]
    for i in range(3, 103):  # 100 appends over REST, one row each
        r = c.post(f"{DATA}/sources/{source}/append", headers=h,
                   json={"columns": {"x": [float(i)], "y": [float(i) * 2]}})
        assert r.status_code == 200, r.text
    wait_for(lambda: len(cds_column(tab, cds, "x")) == 103)
    assert cds_column(tab, cds, "x")[-3:] == [100.0, 101.0, 102.0]
    assert cds_column(tab, cds, "y")[-1] == 204.0
    # an append with rollover keeps the last N rows, as on the server
    r = c.post(f"{DATA}/sources/{source}/append?rollover=50", headers=h,
               json={"columns": {"x": [103.0], "y": [206.0]}})
    assert r.status_code == 200 and r.json()["rows"] == 50
    wait_for(lambda: len(cds_column(tab, cds, "x")) == 50)
    assert cds_column(tab, cds, "x") == [float(i) for i in range(54, 104)]
    assert tab.locator("#plotline-status").inner_text().strip().endswith("live")
    tab.wait_for_timeout(300)
    screenshot(tab, "viewer_live_appends")
    assert errors == []


@on_file_stores
def test_a_patch_of_the_document_arrives_live(multi_server, account, page):
    tab, errors = page
    c, h = account["client"], account["headers"]
    doc = figure_doc(points=5)
    cds = source_id(doc)
    doc_id = published(account, doc)
    open_plot(tab, multi_server, doc_id)
    assert len(cds_column(tab, cds, "x")) == 5
    stream = {"kind": "ColumnsStreamed", "model": {"id": cds}, "attr": "data",
              "data": {"x": [50.0, 51.0], "y": [1.0, -1.0]}, "rollover": None}
    r = c.patch(f"{DOCS}/{doc_id}", headers=h, json={"events": [stream]})
    assert r.status_code == 200, r.text
    wait_for(lambda: cds_column(tab, cds, "x")[-2:] == [50.0, 51.0])
    # and a title change, a plain ModelChanged
    plot = doc["roots"][0]["id"]
    title_id = doc["roots"][0]["attributes"]["title"]["id"]
    r = c.patch(f"{DOCS}/{doc_id}", headers=h, json={"events": [
        {"kind": "ModelChanged", "model": {"id": title_id}, "attr": "text",
         "new": "changed live"}]})
    assert r.status_code == 200, r.text
    wait_for(lambda: plot_frame(tab).evaluate(
        f"Bokeh.documents[0].get_model_by_id({title_id!r}).text") == "changed live")
    assert plot
    # a whole replace reloads the snapshot in place
    r = c.put(f"{DOCS}/{doc_id}", headers=h, json={"doc": figure_doc(points=8)})
    assert r.status_code == 200, r.text
    new_cds = source_id(c.get(f"{DOCS}/{doc_id}", headers=h).json()["doc"])
    # (while the page re-renders there is for a moment no document at all)
    wait_for(lambda: plot_frame(tab).evaluate(
        f"!!(Bokeh.documents[0] && Bokeh.documents[0].get_model_by_id({new_cds!r}))"))
    assert len(cds_column(tab, new_cds, "x")) == 8
    tab.wait_for_timeout(300)
    screenshot(tab, "viewer_live_patch")
    assert errors == []


def test_the_page_reconnects_after_a_restart_and_misses_nothing(tmp_path, page):
    """The server (push with it) is SIGKILLed under an open page and started again; what
    was appended before the page got back arrives through `since`, and the page ends equal
    to a fresh load. The default single-user mode, as `make run` starts it."""
    from servers import free_port, start_plotline

    tab, errors = page
    port = free_port()
    server = start_plotline(tmp_path, port=port)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            source = c.post(f"{DATA}/sources", json={
                "name": "restart", "columns": {"x": [0.0], "y": [0.0]}}).json()["id"]
            doc = figure_doc(points=3, source_tag=source)
            cds = source_id(doc)
            doc_id = c.post(f"{DOCS}/", json={"title": "restart", "doc": doc}).json()["id"]
        open_plot(tab, server, doc_id)
        server.process.kill()  # SIGKILL: no goodbye frame
        server.process.wait()
        tab.wait_for_selector("#plotline-status[data-state=reconnecting]", timeout=10_000)
        screenshot(tab, "viewer_reconnecting")
        server = start_plotline(tmp_path, port=port)
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for i in range(1, 21):  # while the page is still away
                r = c.post(f"{DATA}/sources/{source}/append",
                           json={"columns": {"x": [float(i)], "y": [float(-i)]}})
                assert r.status_code == 200, r.text
            fresh = c.get(f"{DATA}/sources/{source}/data").json()["columns"]
        tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
        wait_for(lambda: len(cds_column(tab, cds, "x")) == 21)
        assert cds_column(tab, cds, "x") == fresh["x"]
        assert cds_column(tab, cds, "y") == fresh["y"]
        # the page may write here (single-user), but what it got from the server it never
        # sends back: the stored document is as created
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.get(f"{DOCS}/{doc_id}").json()["version"] == 1
    finally:
        server.stop()
    # what the browser reported while the server was away: the failed socket attempts only
    assert all("WebSocket" in e or "Failed to load resource" in e for e in errors), errors


def slider_doc() -> tuple[dict, str]:
    from bokeh.document import Document
    from bokeh.models import Slider

    slider = Slider(start=0, end=10, value=1, step=1, title="n")
    doc = Document()
    doc.add_root(slider)
    return doc.to_json(deferred=False), slider.id


def stored_value(c, h, doc_id: str, model_id: str):
    doc = c.get(f"{DOCS}/{doc_id}", headers=h).json()["doc"]
    root = next(r for r in doc["roots"] if r["id"] == model_id)
    return root["attributes"].get("value")


@on_file_stores
def test_a_writers_slider_reaches_the_stored_document_and_other_viewers(
        multi_server, account, page, browser):
    tab, errors = page
    c, h = account["client"], account["headers"]
    doc, slider = slider_doc()
    doc_id = published(account, doc)
    # the writer's browser is signed in; a second, anonymous browser watches
    assert tab.context.request.post(f"{multi_server.url}/api/v1/auth/login", data={
        "username": account["username"], "password": account["password"]}).ok
    open_plot(tab, multi_server, doc_id)
    other = browser.new_context().new_page()
    try:
        open_plot(other, multi_server, doc_id)
        value_of = f"Bokeh.documents[0].get_model_by_id({slider!r}).value"
        set_value = value_of + " = "
        for value in (3, 5, 7):  # as a drag would: several values, the last one counts
            plot_frame(tab).evaluate(set_value + str(value))
        wait_for(lambda: stored_value(c, h, doc_id, slider) == 7)
        wait_for(lambda: plot_frame(other).evaluate(
            f"Bokeh.documents[0].get_model_by_id({slider!r}).value") == 7)
        assert plot_frame(tab).evaluate(value_of) == 7
        drag_slider_to_the_left_end(tab)  # and with the mouse, as a person would
        wait_for(lambda: stored_value(c, h, doc_id, slider) == 0)
        wait_for(lambda: plot_frame(other).evaluate(
            f"Bokeh.documents[0].get_model_by_id({slider!r}).value") == 0)
        plot_frame(tab).evaluate(set_value + "7")
        wait_for(lambda: stored_value(c, h, doc_id, slider) == 7)
        # the anonymous viewer may play with it: it stays on that page
        plot_frame(other).evaluate(set_value + "2")
        time.sleep(1.0)
        assert stored_value(c, h, doc_id, slider) == 7
        assert plot_frame(tab).evaluate(value_of) == 7
        screenshot(tab, "viewer_two_way_writer")
    finally:
        other.context.close()
    assert errors == []

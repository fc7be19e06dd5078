"""Live documents from Python (plotline.live): ordinary Bokeh code in this process, real
viewers in headless Chromium, the default single-user server as `make run` starts it.

- code -> plot: `cds.stream(..., rollover=)` and attribute changes reach an open page;
- plot -> code: a slider moved in the page fires the Python `on_change` callback, whose
  `cds.data = ...` reaches the page;
- a server restart under a live session: the script goes on, no append and no callback is
  lost or doubled.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Slider
from bokeh.plotting import figure
from browsing import cds_column, drag_slider_to_the_left_end, plot_frame, screenshot, wait_for
from plotline import Session
from servers import Server, free_port, start_plotline

DATA = "/api/v1/data"


pytestmark = pytest.mark.usefixtures("plotline_home")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_plotline(tmp_path_factory.mktemp("live"))
    yield srv
    srv.stop()


def open_plot(tab, url: str) -> None:  # type: ignore[no-untyped-def]
    response = tab.goto(url)
    assert response is not None and response.status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=15_000)


class Loop:
    """`session.loop_until_closed()` in a thread of its own (the test's thread drives the
    browser): every callback runs there."""

    def __init__(self, session: Session) -> None:
        self.stop = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(session,), daemon=True)
        self.thread.start()

    def _run(self, session: Session) -> None:
        try:
            session.loop_until_closed(lambda: self.stop)
        except BaseException as exc:  # (reported by close)
            self.error = exc

    def close(self) -> None:
        self.stop = True
        self.thread.join(10)
        assert self.error is None, self.error


def test_a_stream_with_rollover_ends_with_exactly_the_last_rows_in_the_page(server, page):
    tab, errors = page
    with Session(server.url) as s:
        cds = ColumnDataSource({"x": [], "y": []})
        p = figure(width=600, height=300, title="streamed from Python")
        p.line("x", "y", source=cds)
        live = s.live(p, "rollover")
        src = live.source(cds)
        assert src is not None  # the rule: a flat source lives in the data service
        open_plot(tab, live.url)
        for start in range(0, 1000, 10):  # 1,000 rows, 10 at a time, as a script streams
            cds.stream({"x": list(range(start, start + 10)),
                        "y": [float(i % 37) for i in range(start, start + 10)]}, rollover=500)
        p.title.text = "1,000 rows later"
        live.flush()
        expected = list(range(500, 1000))
        assert src.to_arrow(["x"]).to_pydict()["x"] == expected
        assert list(cds.data["x"]) == expected  # (the local source rolled over too)
        wait_for(lambda: cds_column(tab, cds.id, "x") == expected, timeout=30)
        assert cds_column(tab, cds.id, "y") == [float(i % 37) for i in expected]
        wait_for(lambda: plot_frame(tab).evaluate(
            f"Bokeh.documents[0].get_model_by_id({p.title.id!r}).text") == "1,000 rows later")
        # the stored document holds no rows of it
        assert "999" not in json.dumps(s.document(live.id)["doc"])
        screenshot(tab, "live_session_rollover")
        live.close()
    assert errors == []


def test_a_slider_in_the_page_fires_the_python_callback_and_its_change_comes_back(
        server, page):
    tab, errors = page
    with Session(server.url) as s:
        cds = ColumnDataSource({"x": [0, 1, 2, 3], "y": [0, 1, 2, 3]})
        p = figure(width=600, height=300, title="y = k x")
        p.line("x", "y", source=cds)
        slider = Slider(start=0, end=10, value=1, step=1, title="k")
        seen: list[tuple[int, int, float]] = []

        def recompute(attr: str, old: int, new: int) -> None:
            seen.append((old, new, time.monotonic()))
            cds.data = {"x": [0, 1, 2, 3], "y": [new * x for x in range(4)]}

        slider.on_change("value", recompute)
        live = s.live(column(slider, p), "two-way")
        open_plot(tab, live.url)
        tab.wait_for_timeout(600)  # (the page sends no change of its first render's frames)
        loop = Loop(s)
        try:
            moved = time.monotonic()
            plot_frame(tab).evaluate(
                f"Bokeh.documents[0].get_model_by_id({slider.id!r}).value = 7")
            wait_for(lambda: seen)
            print(f"slider -> Python callback: {(seen[0][2] - moved) * 1e3:.0f} ms")
            assert [(old, new) for old, new, _ in seen] == [(1, 7)]
            assert slider.value == 7
            wait_for(lambda: cds_column(tab, cds.id, "y") == [0, 7, 14, 21], timeout=15)
            drag_slider_to_the_left_end(tab)  # and by mouse, as a person would
            wait_for(lambda: seen[-1][1] == 0)
            wait_for(lambda: cds_column(tab, cds.id, "y") == [0, 0, 0, 0], timeout=15)
            values = [new for _, new, _ in seen]
            assert values == sorted(values, reverse=True) and len(set(values)) == len(values)
            screenshot(tab, "live_session_two_way")
        finally:
            loop.close()
        live.close()
    assert errors == []


def test_a_live_session_survives_a_server_restart_and_loses_or_doubles_nothing(tmp_path):
    """SIGKILL of the whole server (push, docs and data with it) while the script streams
    and a viewer moves a slider; started again on the same port and data. The script's
    appends made meanwhile are retried (each stored once: Idempotency-Key), the viewer's
    changes fire the callback once each, in order, through the reconnect's `since`."""
    port = free_port()
    srv = start_plotline(tmp_path, port=port)
    try:
        with Session(srv.url) as s:
            cds = ColumnDataSource({"i": [0]})
            p = figure()
            p.scatter("i", "i", source=cds)
            slider = Slider(start=0, end=100, value=0, step=1)
            values: list[int] = []
            slider.on_change("value", lambda attr, old, new: values.append(new))
            live = s.live(column(slider, p), "restart")
            src = live.source(cds)
            loop = Loop(s)
            viewer_url = srv.url.replace("http", "ws", 1) + "/ws"

            def viewer_moves(to: range) -> None:
                from websockets.sync.client import connect

                with connect(viewer_url) as ws:
                    for v in to:
                        ws.send(json.dumps({"op": "patch", "doc": live.id, "events": [
                            {"kind": "ModelChanged", "model": {"id": slider.id},
                             "attr": "value", "new": v}]}))
                        assert json.loads(ws.recv())["op"] == "patched"

            try:
                for i in range(1, 51):
                    cds.stream({"i": [i]})
                viewer_moves(range(1, 6))
                live.flush()
                wait_for(lambda: len(values) == 5)
                srv.process.kill()
                srv.process.wait()
                for i in range(51, 101):  # while the server is away: queued, then retried
                    cds.stream({"i": [i]})
                time.sleep(1.0)
                srv = start_plotline(tmp_path, port=port)
                viewer_moves(range(6, 11))
                live.flush(timeout=60)
                wait_for(lambda: len(values) >= 10, timeout=30)
                time.sleep(0.5)  # (anything doubled would have come by now)
            finally:
                loop.close()
            assert values == list(range(1, 11))
            rows = httpx.get(f"{srv.url}{DATA}/sources/{src.id}/data").json()["columns"]["i"]
            assert rows == list(range(101))
            live.close()
    finally:
        srv.stop()


def test_the_seeds_session_flow(server):
    """Session(url), use_doc(name), plots on curdoc(), publish() -> the public URL; then
    use_doc of that name again follows it, and load() reads it back with its rows."""
    from bokeh.io import curdoc

    title = f"mydocument {time.time_ns()}"
    with Session(server.url) as s:
        doc = s.use_doc(title)
        assert curdoc() is doc and not doc.roots
        p = figure(title="from the seed's flow")
        p.line("x", "y", source=ColumnDataSource({"x": [1, 2, 3], "y": [2, 4, 8]}))
        curdoc().add_root(p)
        url = s.publish()
        assert url == s.current.url and url.endswith(f"/plots/{s.current.id}")
        anonymous = httpx.get(url)
        assert anonymous.status_code == 200  # public: anyone may open it
        assert s.document(s.current.id)["published"] is True
        p.title.text = "changed live"
        s.current.flush()
        doc_id = s.current.id
    with Session(server.url) as s:
        again = s.use_doc(title)
        assert s.current is not None and s.current.id == doc_id
        (plot,) = again.roots
        assert plot.title.text == "changed live"
        (cds,) = [m for m in again.models if isinstance(m, ColumnDataSource)]
        assert cds.data == {"x": [1, 2, 3], "y": [2, 4, 8]}  # filled from the data service
        loaded = s.load(doc_id)
        assert loaded is not again and loaded.roots[0].title.text == "changed live"


def test_on_append_sees_every_append_in_order_and_unflat_sources_stay_in_the_document(
        server):
    with Session(server.url) as s, Session(server.url) as other:
        flat_cds = ColumnDataSource({"t": [0], "v": [0.5]})
        lines = ColumnDataSource({"xs": [[0, 1]], "ys": [[1, 0]]})  # lists of lists
        p = figure()
        p.scatter("t", "v", source=flat_cds)
        p.multi_line("xs", "ys", source=lines)
        live = s.live(p, f"rule {time.time_ns()}")
        assert live.source(flat_cds) is not None and live.source(lines) is None
        src = live.source(flat_cds)
        got: list = []
        src.on_append(lambda columns, event: got.append(columns["t"]))
        s.link.flush()
        time.sleep(0.3)  # (subscribed before the appends below)
        theirs = other.data_source(id=src.id)
        for i in range(1, 21):
            theirs.stream({"t": [i], "v": [i / 2]})
        flat_cds.stream({"t": [21], "v": [10.5]})
        lines.stream({"xs": [[2, 3]], "ys": [[0, 1]]})
        live.flush()
        deadline = time.monotonic() + 15
        while len(got) < 21 and time.monotonic() < deadline:
            s.process_events(0.2)
        assert got == [[i] for i in range(1, 22)]  # others' and ours, in order, once each
        # the multi_line source streamed as a document patch: the stored document has it
        from plotline.live import _models_of

        stored = _models_of(s.document(live.id)["doc"])[lines.id]["attributes"]["data"]
        assert dict(stored["entries"])["xs"] == [[0, 1], [2, 3]]
        live.close()


def test_the_asyncio_interface_runs_callbacks_on_the_callers_loop(server):
    """`await session.run(until=...)`: a viewer's change fires the callback in the event
    loop's own thread, and run() returns when asked. (The loop runs in a thread of its own:
    this module's browser holds the main thread's.)"""
    import asyncio

    from websockets.asyncio.client import connect

    async def body() -> list[tuple[int, int]]:
        with Session(server.url) as s:
            slider = Slider(start=0, end=10, value=0, step=1)
            seen: list[tuple[int, int]] = []
            slider.on_change("value", lambda attr, old, new: seen.append(
                (new, threading.get_ident())))
            live = await asyncio.to_thread(s.live, slider, f"asyncio {time.time_ns()}")
            runner = asyncio.create_task(s.run(until=lambda: len(seen) >= 3))
            async with connect(server.url.replace("http", "ws", 1) + "/ws") as ws:
                for v in (4, 5, 6):
                    await ws.send(json.dumps({"op": "patch", "doc": live.id, "events": [
                        {"kind": "ModelChanged", "model": {"id": slider.id},
                         "attr": "value", "new": v}]}))
                    assert json.loads(await ws.recv())["op"] == "patched"
            await asyncio.wait_for(runner, 15)
            await asyncio.to_thread(live.close)
            return seen

    result: dict = {}

    def run() -> None:
        result["loop thread"] = threading.get_ident()
        result["seen"] = asyncio.run(body())

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert [v for v, _ in result["seen"]] == [4, 5, 6]
    assert {t for _, t in result["seen"]} == {result["loop thread"]}


def test_pull_brings_the_document_to_what_is_stored(server):
    """Changes stored by someone else reach the Document through pull() as well as through
    the loop: every attribute takes its stored value, callbacks fire for what changed, and
    the models stay the objects the script holds."""
    with Session(server.url) as s, Session(server.url) as other:
        doc = s.use_doc(f"pulled {time.time_ns()}")
        slider = Slider(start=0, end=10, value=1, step=1, title="before")
        doc.add_root(slider)
        s.publish()
        changed: list = []
        slider.on_change("title", lambda attr, old, new: changed.append(new))
        r = httpx.patch(f"{server.url}/api/v1/docs/{s.current.id}", json={"events": [
            {"kind": "ModelChanged", "model": {"id": slider.id}, "attr": "title",
             "new": "after"}, {"kind": "ModelChanged", "model": {"id": slider.id},
                               "attr": "value", "new": 9}]})
        assert r.status_code == 200, r.text
        assert other.document(s.current.id)["version"] == r.json()["version"]
        pulled = s.pull()  # (without running the loop)
        assert pulled is doc and doc.roots[0] is slider
        assert (slider.title, slider.value) == ("after", 9)
        assert changed == ["after"]


def test_a_refused_publish_leaves_no_sources_behind(server):
    from plotline import PlotlineError

    title = f"taken {time.time_ns()}"
    with Session(server.url) as s:
        s.publish(figure(), title)
        before = {x["id"] for x in s.sources()}
        cds = ColumnDataSource({"x": [1, 2], "y": [3, 4]})
        p = figure()
        p.line("x", "y", source=cds)
        with pytest.raises(PlotlineError) as err:
            s.live(p, title)
        assert err.value.code == "title_taken"
        assert {x["id"] for x in s.sources()} == before and cds.tags == []

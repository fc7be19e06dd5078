"""Every script in examples/ run with its one command against a real server (the default
single-user mode, as `make run` starts it), and what it promises checked: a page, live
rows, a two-way callback, a 10M-style scatter drawn as a raster, and an applet that answers
a browser and is restarted when killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browsing import cds_column, plot_frame, screenshot, wait_for
from servers import Server, start_plotline

EXAMPLES = Path(__file__).parent.parent / "examples"
DOCS, DATA = "/api/v1/docs", "/api/v1/data"


pytestmark = pytest.mark.usefixtures("plotline_home")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_plotline(tmp_path_factory.mktemp("examples"))
    yield srv
    srv.stop()


def run(name: str, server: Server, *args: str, timeout: float = 120) -> list[str]:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), "--url", server.url, *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def doc_of(server: Server, url: str) -> dict:
    doc_id = url.rsplit("/", 1)[1]
    r = httpx.get(f"{server.url}{DOCS}/{doc_id}")
    assert r.status_code == 200, r.text
    return r.json()


def bound_sources(doc: dict) -> list[str]:
    text = json.dumps(doc["doc"])
    return sorted({part.split('"')[0] for part in text.split("plotline:source=")[1:]})


def test_static_figure(server, page):
    (url,) = run("static_figure.py", server)
    meta = doc_of(server, url)
    assert meta["published"] and meta["title"] == "A static figure"
    tab, errors = page
    assert tab.goto(url).status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    screenshot(tab, "example_static_figure")
    assert errors == []


def test_live_stream(server):
    out = run("live_stream.py", server, "--seconds", "2", "--rate", "50")
    url, streamed = out[0], int(out[-2])
    (source,) = bound_sources(doc_of(server, url))
    rows = httpx.get(f"{server.url}{DATA}/sources/{source}").json()["rows"]
    assert streamed > 20 and rows == streamed + 1  # the first point and every one streamed


def test_dashboard_answers_a_viewer(server):
    from websockets.sync.client import connect

    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "dashboard.py"), "--url",
                             server.url, "--seconds", "30"], stdout=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        meta = doc_of(server, url)
        select = next(m for m in _models(meta["doc"]) if m.get("name") == "Select")
        with connect(server.url.replace("http", "ws", 1) + "/ws") as ws:
            ws.send(json.dumps({"op": "patch", "doc": meta["id"], "events": [
                {"kind": "ModelChanged", "model": {"id": select["id"]}, "attr": "value",
                 "new": "square"}]}))
            assert json.loads(ws.recv())["op"] == "patched"
        assert proc.stdout.readline().strip() == "recomputed: square at 1"
        (source,) = bound_sources(meta)
        y = wait_for(lambda: set(httpx.get(f"{server.url}{DATA}/sources/{source}/data")
                                 .json()["columns"]["y"]) == {1.0, -1.0})
        assert y
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def test_big_scatter_is_drawn_as_a_raster(server, page):
    (url,) = run("big_scatter.py", server, "--points", "300000")
    (source,) = bound_sources(doc_of(server, url))
    assert httpx.get(f"{server.url}{DATA}/sources/{source}").json()["rows"] == 300_000
    tab, errors = page
    assert tab.goto(url).status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    frame = plot_frame(tab)
    # above the large-source threshold: a raster of the visible part, never every row
    wait_for(lambda: frame.evaluate(
        "document.getElementById('plotline-roots').dataset.view || ''"), timeout=30)
    tab.wait_for_timeout(500)
    screenshot(tab, "example_big_scatter")
    assert errors == []


def _models(doc: dict) -> list[dict]:
    from plotline.live import _models_of

    return list(_models_of(doc).values())


def test_an_applet_answers_the_browser_and_comes_back_when_killed(tmp_path, page):
    srv = start_plotline(tmp_path, "--script", str(EXAMPLES / "slider_applet.py"))
    tab, errors = page
    try:
        log = tmp_path / "data" / "applets" / "slider_applet.log"
        wait_for(lambda: log.exists() and "ready" in log.read_text(), timeout=60)
        (listed,) = [d for d in httpx.get(f"{srv.url}{DOCS}/").json()
                     if d["title"] == "Slider applet"]
        meta = doc_of(srv, f"/{listed['id']}")
        models = _models(meta["doc"])
        slider = next(m for m in models if m.get("attributes", {}).get("name") == "k")
        curve = next(m for m in models if m.get("attributes", {}).get("name") == "curve")
        assert tab.goto(f"{srv.url}/plots/{meta['id']}").status == 200
        tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
        tab.wait_for_timeout(600)  # (the page sends no change of its first render's frames)

        def move(to: float) -> None:
            plot_frame(tab).evaluate(
                f"Bokeh.documents[0].get_model_by_id({slider['id']!r}).value = {to}")

        def peak() -> float:
            return round(max(cds_column(tab, curve["id"], "y")[:40]), 3)

        move(3)
        wait_for(lambda: "k = 3" in log.read_text(), timeout=15)
        wait_for(lambda: peak() == 1.0, timeout=15)  # sin(3x) peaks within x < 0.8
        first = wait_for(lambda: _applet_pid(srv))
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (_applet_pid(srv) or first) != first, timeout=30)
        wait_for(lambda: log.read_text().count("ready") >= 2, timeout=60)
        move(0.5)
        wait_for(lambda: "k = 0.5" in log.read_text(), timeout=15)
        wait_for(lambda: peak() < 0.4, timeout=15)  # sin(x / 2) is small below x = 0.8
        screenshot(tab, "example_slider_applet")
        assert "applet slider_applet exited" in srv.log.read_text()
    finally:
        srv.stop()
    assert "applet slider_applet stopped" in srv.log.read_text()
    assert _applet_pid(srv) is None
    assert [e for e in errors if "WebSocket" not in e] == []


def _applet_pid(server: Server) -> int | None:
    """The applet's process (a child of the server), if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == server.process.pid and "slider_applet.py" in cmdline:
            return int(entry.name)
    return None

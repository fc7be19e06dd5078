"""The live viewer against the local distributed stack (issue 11): the push replica that
holds an open page's websocket is SIGKILLed while rows are appended over REST; nginx sends
the page's next socket to the other replica, which replays what the page missed (`since`,
from JetStream), and the page ends equal to a fresh load, with no gap and no duplicate.
The same for a Python live session (issue 12): its callbacks see each viewer change once.

The stack is this module's own (`make stack`'s `start_stack`, nginx on a free port): its
replicas are killed here, and the other modules' stacks must not lose theirs. A killed
replica is started again, on its port and with its environment, before the next test.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from bokeh_docs import figure_doc, source_id
from browsing import cds_column, screenshot, wait_for
from conftest import new_username
from servers import Server, free_port, start_plotline
from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack, start_stack  # noqa: E402

AUTH, DOCS, DATA = "/api/v1/auth", "/api/v1/docs", "/api/v1/data"
PASSWORD = "correct horse battery"
APPENDS = 60  # rows appended one by one, 50 ms apart, while replicas are killed

# the page's status transitions, on the page's clock (ms since the epoch: this machine's)
WATCH_STATUS = """() => {
  const status = document.getElementById("plotline-status");
  window.__states = [[status.dataset.state, Date.now()]];
  new MutationObserver(() => window.__states.push([status.dataset.state, Date.now()]))
    .observe(status, {attributes: true, attributeFilter: ["data-state"]});
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local distributed stack, as `make stack` starts it (nginx on a free port)."""
    running = start_stack(tmp_path_factory.mktemp("viewer-stack"), free_port())
    yield running
    running.stop()


@pytest.fixture
def replicas(stack: Stack) -> Stack:
    """The stack with every push replica running (a test before may have killed one)."""
    for replica in stack.push:
        if replica.process.poll() is not None:
            restart(stack, replica)
    assert stack.dead() is None, stack.dead()
    return stack


def ws_url(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://", 1) + "/ws"


def push_env(stack: Stack) -> dict[str, str]:
    """What stack.py gave the push replicas (the same to each): read from a live one."""
    alive = next(p for p in stack.push if p.process.poll() is None)
    environ = Path(f"/proc/{alive.process.pid}/environ").read_bytes().split(b"\0")
    return dict(v.decode().split("=", 1) for v in environ
                if v.startswith(b"PLOTLINE_PUSH_"))


def restart(stack: Stack, replica: Server, env: dict[str, str] | None = None) -> Server:
    """A dead replica started again as stack.py started it (its ports, its environment),
    in its place in `stack.servers`, so that the stack stops it at the end."""
    internal = int(replica.internal_url.rsplit(":", 1)[1])
    again = start_plotline(stack.directory / replica.name, "push", env=env or push_env(stack),
                           port=replica.port, internal_port=internal)
    again.name = replica.name
    stack.servers[stack.servers.index(replica)] = again
    return again


def connections(replica: Server) -> int:
    text = httpx.get(f"{replica.internal_url}/metrics", timeout=5).text
    return int(float(re.search(r"^plotline_push_connections (\S+)$", text, re.M).group(1)))


def holder_of_the_socket(stack: Stack) -> Server:
    """The replica with the page's (or a probe's) socket: the stack's only websocket."""
    def one() -> list[int] | None:
        counts = [connections(p) if p.process.poll() is None else 0 for p in stack.push]
        return counts if sum(counts) == 1 else None

    return stack.push[wait_for(one).index(1)]


@contextmanager
def held_socket(stack: Stack, page_on: Server) -> Iterator[Server]:
    """A second websocket through nginx, held open: least_conn gives it to the replica
    without the page's. With it there, once the page's replica dies nginx's fewest
    connections are on the dead one, which it then tries first: the failover path
    (connect() refused, the next upstream, the dead one marked failed for fail_timeout)."""
    with ws_connect(ws_url(stack), open_timeout=10, origin=stack.url):
        other = next(p for p in stack.push if p is not page_on)
        wait_for(lambda: connections(other) == 1 and connections(page_on) == 1)
        yield other


def refused_connects(stack: Stack, replica: Server) -> int:
    """How often nginx could not connect to this replica (its error.log, level warn)."""
    log = (stack.directory / "nginx" / "error.log").read_text()
    return len(re.findall(rf"connect\(\) failed .* upstream: \S+127\.0\.0\.1:{replica.port}/",
                          log))


def live_page(stack: Stack, tab) -> dict[str, Any]:
    """A new user (REST through nginx), a source, a published document bound to it, and
    the page open on it, anonymous, live: {client, source, cds, fetches}."""
    name = new_username()
    c = httpx.Client(base_url=stack.url, timeout=10)
    r = c.post(f"{AUTH}/register", json={"username": name, "password": PASSWORD})
    assert r.status_code == 201, (r.status_code, r.headers.get("server"), r.text[:200])
    token = c.post(f"{AUTH}/login",
                   json={"username": name, "password": PASSWORD}).json()["access_token"]
    c.cookies.clear()
    c.headers["Authorization"] = f"Bearer {token}"
    r = c.post(f"{DATA}/sources", json={"name": "stack-kill",
                                        "columns": {"x": [0.0], "y": [0.0]}})
    assert r.status_code == 201, r.text
    source = r.json()["id"]
    doc = figure_doc(points=3, source_tag=source)
    r = c.post(f"{DOCS}/", json={"title": "stack-kill", "doc": doc})
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]
    assert c.post(f"{DOCS}/{doc_id}/publish").status_code == 200
    fetches: list[str] = []  # the page's reads of the whole source (a reload reads it again)
    tab.on("request", lambda req: fetches.append(req.url)
           if f"/data/sources/{source}/data" in req.url else None)
    response = tab.goto(f"{stack.url}/plots/{doc_id}")
    assert response is not None and response.status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=15_000)
    tab.evaluate(WATCH_STATUS)
    assert cds_column(tab, source_id(doc), "x") == [0.0]
    return {"client": c, "source": source, "cds": source_id(doc), "fetches": fetches}


def outages(tab, kills: list[float]) -> list[float]:
    """For each kill (time.time()), how long the page took to be live again."""
    states = [(s, t / 1000) for s, t in tab.evaluate("window.__states")]
    took = []
    for killed in kills:
        lost = next(i for i, (s, t) in enumerate(states)
                    if s == "reconnecting" and t >= killed - 0.05)
        back = next(t for s, t in states[lost:] if s == "live")
        took.append(back - killed)
    return took


def appends_with_kills(c: httpx.Client, source: str, kill_at: dict[int, Any]
                       ) -> tuple[list[float], list[float]]:
    """APPENDS appends of one row; after append i, kill_at[i]() (which returns the time of
    its SIGKILL). The time of each append, and of each kill."""
    stamps, kills = [], []
    for i in range(1, APPENDS + 1):
        r = c.post(f"{DATA}/sources/{source}/append",
                   json={"columns": {"x": [float(i)], "y": [float(-i)]}})
        assert r.status_code == 200, r.text
        stamps.append(time.time())
        if i in kill_at:
            kills.append(kill_at[i]())
        time.sleep(0.05)
    return stamps, kills


def sigkill(replica: Server) -> float:
    """SIGKILL: no close frame, the page's socket just ends."""
    killed = time.time()
    replica.process.kill()
    replica.process.wait()
    return killed


def ends_equal_to_a_fresh_load(tab, live: dict[str, Any]) -> tuple[list, float]:
    """The page is live and its bound source holds exactly the source's rows (none missing,
    none twice); the rows and how long after the call it took."""
    t0 = time.time()
    fresh = live["client"].get(f"{DATA}/sources/{live['source']}/data").json()["columns"]
    assert fresh["x"] == [float(i) for i in range(APPENDS + 1)]
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    wait_for(lambda: len(cds_column(tab, live["cds"], "x")) >= len(fresh["x"]), timeout=30)
    caught_up = time.time() - t0
    tab.wait_for_timeout(500)  # (a late duplicate would show by now)
    assert cds_column(tab, live["cds"], "x") == fresh["x"]
    assert cds_column(tab, live["cds"], "y") == fresh["y"]
    return fresh["x"], caught_up


def test_the_replica_with_the_socket_killed_the_page_goes_to_the_other_and_misses_nothing(
        replicas: Stack, page) -> None:
    stack, (tab, errors) = replicas, page
    live = live_page(stack, tab)
    holder = holder_of_the_socket(stack)
    with held_socket(stack, holder) as survivor:  # nginx tries the dead replica first
        stamps, kills = appends_with_kills(live["client"], live["source"],
                                           {20: lambda: sigkill(holder)})
        rows, caught_up = ends_equal_to_a_fresh_load(tab, live)
        assert wait_for(lambda: connections(survivor) == 2), "the page is not on the survivor"
    live["client"].close()
    assert stack.dead() is holder  # the other replica, and everything else, still runs
    assert refused_connects(stack, holder) >= 1  # nginx tried it, then went on to the other
    [outage] = outages(tab, kills)
    assert outage < 5, outage
    # rows were appended while the page was away, and came by replay, not by a reload
    away = sum(kills[0] < t < kills[0] + outage for t in stamps)
    assert away > 0, (away, outage)
    assert len(live["fetches"]) == 1, live["fetches"]
    print(f"\nkilled {holder.name}: live again {outage:.2f} s later, on {survivor.name} "
          f"(nginx refused {refused_connects(stack, holder)}x by {holder.name} first); "
          f"{away} rows appended meanwhile, replayed; all {len(rows)} rows in the page "
          f"{caught_up:.2f} s after the last append")
    tab.wait_for_timeout(300)
    screenshot(tab, "viewer_stack_replica_killed")
    # what the browser reported: the lost socket only
    assert all("WebSocket" in e or "Failed to load resource" in e for e in errors), errors


def test_a_replica_restarted_then_the_other_killed_the_page_follows_it_back(
        replicas: Stack, page) -> None:
    """Rolling replacement: the replica with the page's socket is killed (nginx tries it
    first, as above), started again, and then the other one is killed, while rows are
    appended. With nginx's default `max_fails=1 fail_timeout=10s` the restarted replica
    counted as failed after that refused connect and the page met 502s for ~12 s; the
    stack's push upstream has `max_fails=0`, so it is live again at once."""
    stack, (tab, errors) = replicas, page
    env = push_env(stack)
    live = live_page(stack, tab)
    first = holder_of_the_socket(stack)
    restarted: list[Server] = []

    def restart_first_kill_second() -> float:
        restarted.append(restart(stack, first, env))
        return sigkill(second)

    with held_socket(stack, first) as second:
        stamps, kills = appends_with_kills(
            live["client"], live["source"],
            {15: lambda: sigkill(first), 35: restart_first_kill_second})
        rows, caught_up = ends_equal_to_a_fresh_load(tab, live)
    live["client"].close()
    assert wait_for(lambda: connections(restarted[0]) == 1), "the page is not on it"
    assert stack.dead() is second
    took = outages(tab, kills)
    assert took[0] < 5 and took[1] < 5, took  # (the page's first retries: 0.25–1.5 s)
    assert len(live["fetches"]) == 1, live["fetches"]
    log = (stack.directory / "nginx" / "error.log").read_text()
    ws_502 = len(re.findall(r'"GET /ws HTTP/1.1" 502',
                            (stack.directory / "nginx" / "access.log").read_text()))
    print(f"\nkilled {first.name}: live again {took[0]:.2f} s later on {second.name}; "
          f"{first.name} started again ({restarted[0].process.pid}), {second.name} killed: "
          f"live again {took[1]:.2f} s later on {first.name}; all {len(rows)} rows "
          f"{caught_up:.2f} s after the last append; nginx: "
          f"{log.count('no live upstreams')} 'no live upstreams', {ws_502} /ws 502s, "
          f"refused by {first.name} {refused_connects(stack, first)}x, by {second.name} "
          f"{refused_connects(stack, second)}x")
    screenshot(tab, "viewer_stack_replica_rolled")
    assert all("WebSocket" in e or "Failed to load resource" in e for e in errors), errors
    # nginx wrote the page's failed /ws connects down: with no credential in them (the
    # page offers its token as a subprotocol, never in the URL)
    assert refused_connects(stack, first) + refused_connects(stack, second) > 0
    assert "token=" not in log and "token=" not in (
        stack.directory / "nginx" / "access.log").read_text()


def test_a_python_live_session_survives_the_kill_of_its_push_replica(replicas):
    """A Python live session (Session.live) through nginx; the push replica holding its
    socket is SIGKILLed, then started again, while a viewer (on the other replica) moves a
    slider and the script streams and retitles. The script goes on: every viewer change
    fires the callback once, in order (the reconnect's `since`), and every change of the
    script's is stored once."""
    import threading

    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Slider
    from bokeh.plotting import figure
    from plotline import Session

    stack = replicas
    name = new_username()
    with Session(stack.url) as s:
        s.register(name, PASSWORD)
        s.login(name, PASSWORD, save=False)
        cds = ColumnDataSource({"i": [0]})
        p = figure(title="start")
        p.scatter("i", "i", source=cds)
        slider = Slider(start=0, end=100, value=0, step=1)
        values: list[int] = []
        slider.on_change("value", lambda attr, old, new: values.append(new))
        live = s.live(column(slider, p), f"stack live {name}")
        holder = holder_of_the_socket(stack)  # (the session's is the only socket so far)
        stop = threading.Event()
        loop = threading.Thread(target=s.loop_until_closed, args=(stop.is_set,), daemon=True)
        loop.start()
        with ws_connect(ws_url(stack), open_timeout=10,
                        additional_headers={"Authorization": f"Bearer {s.token}"}) as viewer:

            def move(to: range) -> None:
                for v in to:
                    viewer.send(json.dumps({"op": "patch", "doc": live.id, "events": [
                        {"kind": "ModelChanged", "model": {"id": slider.id},
                         "attr": "value", "new": v}]}))
                    assert json.loads(viewer.recv())["op"] == "patched"
                    time.sleep(0.05)

            try:
                wait_for(lambda: all(connections(r) == 1 for r in stack.push))  # one each
                move(range(1, 6))
                for i in range(1, 21):
                    cds.stream({"i": [i]})
                wait_for(lambda: len(values) == 5)
                sigkill(holder)
                move(range(6, 11))  # while the session's socket is gone
                for i in range(21, 41):
                    cds.stream({"i": [i]})
                p.title.text = "after the kill"
                restart(stack, holder)
                move(range(11, 16))
                live.flush(60)
                wait_for(lambda: len(values) >= 15, timeout=30)
                time.sleep(0.5)  # (anything doubled would have come by now)
            finally:
                stop.set()
                loop.join(10)
        assert values == list(range(1, 16))
        rows = s.data_source(id=live.source(cds).id).to_arrow().to_pydict()["i"]
        assert rows == list(range(41))
        stored = json.dumps(s.document(live.id)["doc"])
        assert "after the kill" in stored
        live.close()


def test_a_change_whose_answer_died_with_its_replica_is_stored_once(replicas):
    """The hardest moment for "never twice": the Python session has sent a document patch
    (a stream into a source that stays in the document) and its push replica dies before
    answering, while docs (SIGSTOPped meanwhile) applies it only after. The reconnect's
    replay shows the change under the old socket's origin: it is not sent again."""
    import os
    import signal

    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure
    from plotline import Session

    stack = replicas
    name = new_username()
    with Session(stack.url) as s:
        s.register(name, PASSWORD)
        s.login(name, PASSWORD, save=False)
        lines = ColumnDataSource({"xs": [[0, 1]], "ys": [[1, 0]]})  # nested: in the document
        p = figure()
        p.multi_line("xs", "ys", source=lines)
        live = s.live(p, f"in doubt {name}")
        assert live.source(lines) is None
        holder = holder_of_the_socket(stack)
        docs = [d for d in stack.servers if d.name.startswith("docs")]
        for d in docs:
            os.kill(d.process.pid, signal.SIGSTOP)
        try:
            lines.stream({"xs": [[2, 3]], "ys": [[0, 1]]})
            time.sleep(0.5)  # (sent; push waits for docs' answer)
            sigkill(holder)
        finally:
            for d in docs:
                os.kill(d.process.pid, signal.SIGCONT)
        live.flush(60)
        restart(stack, holder)
        assert s.link.in_doubt == {"applied": 1, "resent": 0}
        stored = json.dumps(s.document(live.id)["doc"])
        assert stored.count("[2, 3]") == 1 and "[0, 1]" in stored
        live.close()

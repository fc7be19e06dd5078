"""End to end through the one URL of an installation, against both shapes of it: the embedded
mode (`plotline serve -m`: every service in one process) and the local distributed stack
(`make stack`: a process per service, push twice, NATS, Redis, Azurite, nginx in front),
started by scripts/stack.py's own `start_stack`. Every scenario runs against both, and
against the embedded mode on uvicorn (`--server uvicorn`): the same apps on another ASGI
server.

In the stack each request crosses processes: docs and data verify auth's JWTs with keys
they get over NATS, data asks docs who may read a source, push asks data, and the events of
an append reach sockets on both push replicas through NATS. Health, readiness and metrics
answer only on each process's internal port, never through the one URL.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import websockets
from bokeh.plotting import figure
from bokeh_docs import figure_doc
from conftest import new_username, start_install, stop_install
from plotline import Session
from servers import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from stack import Stack, start_stack  # noqa: E402

AUTH, DOCS, DATA = "/api/v1/auth", "/api/v1/docs", "/api/v1/data"
ARROW = "application/vnd.apache.arrow.stream"
PASSWORD = "correct horse battery"


@dataclass
class Target:
    """An installation under test: its one URL, the /metrics of each push replica, and the
    internal port of each service (one process: the same for all)."""

    kind: str
    url: str
    push_metrics: list[str]
    internal: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local distributed stack, exactly as `make stack` starts it (nginx on a free port)."""
    running = start_stack(tmp_path_factory.mktemp("stack"), free_port())
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["embedded", "uvicorn", "stack"])
def target(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "stack":
        running: Stack = request.getfixturevalue("stack")
        yield Target("stack", running.url,
                     [f"{p.internal_url}/metrics" for p in running.push],
                     {s.name.partition("-")[0]: s.internal_url for s in running.servers
                      if s.internal_url})
        return
    server = start_install(tmp_path_factory.mktemp(request.param), "-m",
                           *(["--server", "uvicorn"] if request.param == "uvicorn" else []))
    try:
        yield Target(request.param, server.url, [f"{server.internal_url}/metrics"],
                     dict.fromkeys(("auth", "docs", "data", "push"), server.internal_url))
    finally:
        stop_install(server)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def user(target: Target) -> dict[str, Any]:
    """A fresh registered, logged-in user: `name`, `token`, `headers`."""
    name = new_username()
    with httpx.Client(base_url=target.url, timeout=10) as c:
        r = c.post(f"{AUTH}/register", json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, (r.status_code, r.headers.get("server"), r.text[:200])
        token = c.post(f"{AUTH}/login",
                       json={"username": name, "password": PASSWORD}).json()["access_token"]
    return {"name": name, "token": token, "headers": bearer(token)}


def client(target: Target, who: dict[str, Any] | None = None) -> httpx.Client:
    return httpx.Client(base_url=target.url, timeout=10, headers=who["headers"] if who else None)


def new_source(c: httpx.Client, columns: dict[str, list]) -> str:
    r = c.post(f"{DATA}/sources", json={"name": new_username(), "columns": columns})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def new_doc(c: httpx.Client, source: str | None = None) -> str:
    title = new_username()
    r = c.post(f"{DOCS}/", json={"title": title, "doc": figure_doc(title=title,
                                                                     source_tag=source)})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def eventually(check, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Grants follow docs events from one service to another: allow them a moment."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_register_then_login_by_bearer_and_by_cookie(target: Target) -> None:
    name = new_username()
    with httpx.Client(base_url=target.url, timeout=10) as c:
        r = c.post(f"{AUTH}/register", json={"username": name, "password": PASSWORD})
        assert r.status_code == 201, (r.status_code, r.headers.get("server"), r.text[:200])
        assert r.json()["username"] == name
        assert c.post(f"{AUTH}/register",
                      json={"username": name, "password": PASSWORD}).status_code == 409
        assert c.post(f"{AUTH}/login",
                      json={"username": name, "password": "wrong!"}).status_code == 401
        r = c.post(f"{AUTH}/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200 and r.json()["token_type"] == "bearer"
        token = r.json()["access_token"]
        assert "plotline_session" in c.cookies  # set over plain http: not a Secure cookie
        cookies = dict(c.cookies)
        c.cookies.clear()
        assert c.get(f"{AUTH}/me").status_code == 401
        me = c.get(f"{AUTH}/me", headers=bearer(token)).json()
        assert me["username"] == name and me["auth"] == "jwt" and me["multi_user"] is True
        c.cookies.update(cookies)
        me = c.get(f"{AUTH}/me").json()
        assert me["username"] == name and me["auth"] == "cookie"
        assert c.get(f"{DOCS}/").status_code == 200  # docs reads the same cookie


def test_a_token_from_auth_is_accepted_by_docs_and_data(target: Target) -> None:
    owner = user(target)
    head, _, signature = owner["token"].rpartition(".")
    forged = f"{head}.{signature[:10]}{'B' if signature[10] == 'A' else 'A'}{signature[11:]}"
    with client(target, owner) as c, client(target) as anonymous:
        key = c.post(f"{AUTH}/apikeys", json={"name": "e2e"}).json()["key"]
        source, doc_id = new_source(c, {"x": [1.0]}), new_doc(c)  # as the JWT's user
        assert c.get(f"{DATA}/sources/{source}").json()["owner"] == owner["name"]
        assert c.get(f"{DOCS}/{doc_id}").json()["owner"] == owner["name"]
        for path in (f"{DOCS}/", f"{DATA}/sources"):
            assert [x["id"] for x in c.get(path, headers=bearer(key)).json()] == [
                doc_id if path.startswith(DOCS) else source]  # an API key: the same user
            assert c.get(path, headers=bearer(forged)).status_code == 401, path
            assert anonymous.post(path, json={}).status_code == 401, path


def test_publish_a_document_and_view_it_under_the_same_origin(target: Target) -> None:
    owner = user(target)
    title = new_username()
    doc = figure_doc(title=title)
    with client(target, owner) as c:
        r = c.post(f"{DOCS}/", json={"title": title, "doc": doc})
        assert r.status_code == 201, r.text
        doc_id = r.json()["id"]
        r = c.get(f"{DOCS}/{doc_id}")
        assert r.status_code == 200 and r.headers["etag"]
        got = r.json()
        assert (got["title"], got["owner"], got["version"]) == (title, owner["name"], 1)
        assert [root["id"] for root in got["doc"]["roots"]] == [
            root["id"] for root in doc["roots"]]
        assert doc_id in [d["id"] for d in c.get(f"{DOCS}/").json()]

        page = c.get(f"/plots/{doc_id}")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'content="{doc_id}"' in page.text
        # the document is drawn in a sandboxed frame, which loads BokehJS
        frame = c.get(re.search(r'data-frame="([^"]+)"', page.text).group(1))
        assert frame.status_code == 200
        assert frame.headers["content-security-policy"].startswith("sandbox allow-scripts")
        script = re.search(r'src="(/static/bokeh/[^"]+/bokeh\.min\.js)"', frame.text).group(1)
        js = c.get(script)  # BokehJS from the same origin (docs, through the ingress)
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        home = c.get("/")
        assert home.status_code == 200 and title in home.text
    with client(target) as anonymous:
        r = anonymous.get(f"/plots/{doc_id}")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def test_a_data_source_appends_and_reads_as_json_and_arrow(target: Target) -> None:
    with client(target, user(target)) as c:
        source = new_source(c, {"x": [0.0, 1.0], "y": [10, 11]})
        url = f"{DATA}/sources/{source}"
        r = c.post(f"{url}/append", json={"columns": {"x": [2.0], "y": [12]}})
        assert r.status_code == 200 and r.json() == {"version": 2, "rows": 3}
        table = pa.table({"x": pa.array([3.0]), "y": pa.array([13], pa.int64())})
        r = c.post(f"{url}/append", content=arrow(table), headers={"content-type": ARROW})
        assert r.status_code == 200 and r.json() == {"version": 3, "rows": 4}

        want = {"x": [0.0, 1.0, 2.0, 3.0], "y": [10, 11, 12, 13]}
        r = c.get(f"{url}/data")
        assert r.status_code == 200 and r.json()["columns"] == want
        r = c.get(f"{url}/data", headers={"accept": ARROW})
        assert r.status_code == 200 and r.headers["content-type"] == ARROW
        assert pa.ipc.open_stream(r.content).read_all().to_pydict() == want
        summary = c.get(url).json()
        assert (summary["rows"], summary["version"]) == (4, 3)
        assert [col["dtype"] for col in summary["columns"]] == ["float64", "int64"]

        big = arrow(pa.table({"x": pa.array(range(300_000), pa.float64())}))  # 2.4 MB
        r = c.post(f"{DATA}/sources", params={"name": new_username()}, content=big,
                   headers={"content-type": ARROW})  # over nginx's default body limit (1 MB)
        assert r.status_code == 201 and r.json()["rows"] == 300_000


def test_another_user_sees_neither_the_document_nor_the_source(target: Target) -> None:
    with client(target, user(target)) as owner, client(target, user(target)) as other:
        source = new_source(owner, {"x": [1.0]})
        doc_id = new_doc(owner, source)
        for path in (f"{DOCS}/{doc_id}", f"/plots/{doc_id}", f"{DATA}/sources/{source}",
                     f"{DATA}/sources/{source}/data"):
            assert owner.get(path).status_code == 200, path
            r = other.get(path)
            assert r.status_code == 404, (path, r.status_code)
        r = other.post(f"{DATA}/sources/{source}/append", json={"columns": {"x": [2.0]}})
        assert r.status_code == 404
        assert other.get(f"{DOCS}/").json() == [] and other.get(f"{DATA}/sources").json() == []


def test_a_share_link_opens_the_plot_and_its_data_anonymously(target: Target) -> None:
    with client(target, user(target)) as owner, client(target) as anonymous:
        source = new_source(owner, {"x": [1.0, 2.0]})
        doc_id = new_doc(owner, source)
        rows = f"{DATA}/sources/{source}/data"
        assert anonymous.get(f"{DOCS}/{doc_id}").status_code == 401
        r = owner.post(f"{DOCS}/{doc_id}/share")
        assert r.status_code == 201
        link, key = r.json()["url"], r.json()["key"]
        assert link == f"{target.url}/plots/{doc_id}?share={key}"  # the public URL is right
        page = anonymous.get(link)
        assert page.status_code == 200 and f'content="{doc_id}"' in page.text
        assert anonymous.get(f"{DOCS}/{doc_id}", params={"share": key}).status_code == 200
        eventually(lambda: anonymous.get(rows, params={"doc": doc_id, "share": key})
                   .status_code == 200)
        assert anonymous.get(rows, params={"doc": doc_id, "share": key}).json()["columns"] == {
            "x": [1.0, 2.0]}
        assert anonymous.get(rows).status_code == 401


def push_connections(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    return float(re.search(r"^plotline_push_connections (\S+)$", text, re.M).group(1))


async def test_sockets_on_every_push_replica_receive_an_append(target: Target) -> None:
    owner = user(target)
    with client(target, owner) as c:
        source = new_source(c, {"x": [1.0]})
    channel = f"data:{source}"
    ws_url = target.url.replace("http://", "ws://", 1) + f"/ws?token={owner['token']}"
    sockets: list[Any] = []
    try:
        while True:  # nginx gives each new socket to the replica with the fewest
            ws = await websockets.connect(ws_url, open_timeout=10)
            sockets.append(ws)
            await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
            got = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert got["op"] == "subscribed" and (got["channel"], got["seq"]) == (channel, 1)
            counts = [push_connections(m) for m in target.push_metrics]
            if len(sockets) >= 2 and min(counts) >= 1:
                break
            assert len(sockets) < 8, f"sockets never reached every push replica: {counts}"
        assert sum(counts) >= len(sockets)
        async with httpx.AsyncClient(base_url=target.url, headers=owner["headers"]) as h:
            r = await h.post(f"{DATA}/sources/{source}/append",
                             json={"columns": {"x": [5.0]}})
            assert r.status_code == 200 and r.json()["version"] == 2
        for ws in sockets:
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event == {"op": "event", "channel": channel, "seq": 2, "type": "appended",
                             "data": {"columns": {"x": [5.0]}, "rollover": None, "rows": 2}}
    finally:
        for ws in sockets:
            await ws.close()


def test_the_python_client_and_a_bokeh_figure(target: Target, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Session signs up, makes and saves an API key, and publishes a real Bokeh figure
    (public); anyone then reads it and opens its viewer page."""
    monkeypatch.setenv("PLOTLINE_HOME", str(tmp_path / "home"))
    name, title = new_username(), new_username()
    plot = figure(title=title, width=300, height=200)
    plot.line([1, 2, 3], [4, 6, 5])
    with Session(target.url) as s:
        assert s.register(name, PASSWORD)["username"] == name
        s.login(name, PASSWORD)
        s.create_key("e2e", save=True)
        assert s.whoami()["username"] == name
        made = s.publish(plot, title, public=True)
        assert [d["id"] for d in s.documents()] == [made["id"]]
    with client(target, {}) as c:  # anonymous
        got = c.get(f"{DOCS}/{made['id']}").json()
        assert got["owner"] == name and got["doc"]["roots"][0]["id"] == plot.id
        page = c.get(made["url"].removeprefix(target.url))
        assert page.status_code == 200 and made["id"] in page.text


INTERNAL_PATHS = ("/healthz", "/readyz", "/metrics")


def test_health_readiness_and_metrics_are_internal_only(target: Target) -> None:
    """Through the one public URL (nginx in the stack) they are JSON 404s; every service's
    internal port answers them."""
    with httpx.Client(base_url=target.url, timeout=10) as c:
        for path in INTERNAL_PATHS:
            for method in ("GET", "HEAD"):
                r = c.request(method, path)
                assert r.status_code == 404, (method, path, r.status_code)
            r = c.get(path)
            assert r.json().keys() == {"error", "detail"} and r.json()["error"] == "not_found"
    assert sorted(target.internal) == ["auth", "data", "docs", "push"]
    for service, internal in target.internal.items():
        health = httpx.get(f"{internal}/healthz", timeout=5)
        assert health.status_code == 200 and service in health.json()["services"]
        ready = httpx.get(f"{internal}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["checks"][f"{service}.nats"] is True
        metrics = httpx.get(f"{internal}/metrics", timeout=5)
        assert metrics.status_code == 200 and "# TYPE" in metrics.text


def request_series(metrics_url: str) -> set[str]:
    """The labelled series of the HTTP request counter."""
    text = httpx.get(metrics_url, timeout=5).text
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if line.startswith("plotline_http_requests_total{")}


def test_invented_methods_add_at_most_one_metric_series(target: Target) -> None:
    """Labels come from fixed sets: 20 made-up methods on a made-up path are one series
    (method "other", route "unmatched")."""
    before = request_series(f"{target.internal['docs']}/metrics")
    with httpx.Client(base_url=target.url, timeout=10) as c:
        for letter in "ABCDEFGHIJKLMNOPQRST":  # (nginx refuses methods with digits)
            r = c.request(f"INVENTED{letter}", f"/nowhere-{letter}")
            assert r.status_code in (404, 405), r.status_code
    after = request_series(f"{target.internal['docs']}/metrics")
    added = after - before
    assert len(added) <= 1, sorted(added)
    assert all('method="other"' in s and 'route="unmatched"' in s for s in added), added
    assert not any("INVENTED" in s or "nowhere" in s for s in after)


# --- issue 10 through the whole shape: the same answers behind nginx ---------------------

def test_a_tag_binds_only_a_source_its_writer_may_read(target: Target) -> None:
    with client(target, user(target)) as alice, client(target, user(target)) as bob:
        private = new_source(alice, {"x": [1.0]})
        r = bob.post(f"{DOCS}/", json={"title": new_username(),
                                       "doc": figure_doc(source_tag=private)})
        assert r.status_code == 422 and r.json()["error"] == "unknown_source"
        # a clone of a published plot grants nothing once it is unpublished, and deleting
        # the clone with data=force leaves the owner's source alone
        plot = new_doc(alice, private)
        assert alice.post(f"{DOCS}/{plot}/publish").status_code == 200
        eventually(lambda: bob.get(f"{DATA}/sources/{private}").status_code == 200)
        clone = bob.post(f"{DOCS}/{plot}/clone", json={}).json()["id"]
        assert alice.delete(f"{DOCS}/{plot}/publish").status_code == 200
        eventually(lambda: bob.get(f"{DATA}/sources/{private}").status_code == 404)
        assert bob.delete(f"{DOCS}/{clone}", params={"data": "force"}).status_code == 204
        time.sleep(0.5)  # the deletion event has reached data
        assert alice.get(f"{DATA}/sources/{private}").status_code == 200


def test_logout_ends_the_token_in_every_service(target: Target) -> None:
    who = user(target)
    with client(target, who) as c:
        assert c.get(f"{DOCS}/").status_code == 200
        assert c.post(f"{AUTH}/logout").status_code == 204
        eventually(lambda: [c.get(p).status_code for p in
                            (f"{AUTH}/me", f"{DOCS}/", f"{DATA}/sources")] == [401] * 3,
                   within=1.0)


def test_login_throttling_counts_the_client_behind_the_proxy(target: Target) -> None:
    """Behind nginx every connection comes from nginx: the client it names is counted
    (trusted_proxies), so one guesser does not lock everyone else out."""
    who = user(target)
    guess = {"username": who["name"], "password": "not-the-password"}
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=target.url, transport=transport, timeout=10) as guesser:
        statuses = [guesser.post(f"{AUTH}/login", json=guess).status_code for _ in range(7)]
        assert statuses[-1] == 429, statuses
    with httpx.Client(base_url=target.url, timeout=10,
                      transport=httpx.HTTPTransport(local_address="127.0.0.3")) as owner:
        r = owner.post(f"{AUTH}/login", json={"username": who["name"], "password": PASSWORD})
        assert r.status_code == 200, r.text
    # and a client cannot pick its own address: a forged header is just another hop
    with httpx.Client(base_url=target.url, transport=transport, timeout=10) as guesser:
        r = guesser.post(f"{AUTH}/login", json=guess,
                         headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 429


def test_pages_and_answers_carry_the_security_headers(target: Target) -> None:
    with httpx.Client(base_url=target.url, timeout=10) as c:
        page = c.get("/login")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        api = c.get(f"{AUTH}/.well-known/jwks.json")
        assert api.headers["content-security-policy"] == \
            "default-src 'none'; frame-ancestors 'none'"
        assert api.headers["x-content-type-options"] == "nosniff"

"""The docs service's web pages over real HTTP: home, login, viewer, embed script, BokehJS."""

from __future__ import annotations

import html
import json
import re
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import bokeh
import httpx
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from conftest import new_username
from servers import Server, start_plotline

DOCS = "/api/v1/docs"
BOKEH_JS = f"/static/bokeh/{bokeh.__version__}/js/bokeh.min.js"


def bokeh_doc(title: str = "plot") -> dict:
    source = ColumnDataSource({"x": [1, 2, 3, 4], "y": [4, 1, 3, 2]})
    plot = figure(title=title, width=300, height=200)
    plot.line("x", "y", source=source)
    plot.scatter("x", "y", source=source, size=8)
    doc = Document()
    doc.add_root(plot)
    return doc.to_json(deferred=False)


def create(c: httpx.Client, h: dict, title: str | None = None) -> dict:
    r = c.post(f"{DOCS}/", json={"title": title or "t-" + new_username(), "doc": bokeh_doc()},
               headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def register(client: httpx.Client) -> dict:
    """Another account on the same server: its bearer headers."""
    name, password = new_username(), "correct horse battery"
    assert client.post("/api/v1/auth/register",
                       json={"username": name, "password": password}).status_code == 201
    token = client.post("/api/v1/auth/login",
                        json={"username": name, "password": password}).json()["access_token"]
    client.cookies.clear()
    return {"Authorization": f"Bearer {token}"}


def anonymous(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10)


def is_html(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert r.text.startswith("<!doctype html>")


def is_js(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/javascript")


def test_home_lists_my_documents(multi_server, account):
    c, h = account["client"], account["headers"]
    made = create(c, h)
    r = c.get("/", headers=h)
    is_html(r, 200)
    assert f'<a href="/plots/{made["id"]}">{made["title"]}</a>' in r.text
    assert "log out" in r.text and account["username"] in r.text
    others = c.get("/", headers=register(c))
    is_html(others, 200)
    assert made["id"] not in others.text and "No plots yet" in others.text


def test_home_anonymous_gets_the_login_form(multi_server):
    with anonymous(multi_server) as c:
        r = c.get("/")
    is_html(r, 200)
    assert 'id="login"' in r.text and 'data-api="/api/v1/auth/login"' in r.text
    assert 'data-next="/"' in r.text


def test_login_cookie_opens_pages(multi_server, account):
    c, h = account["client"], account["headers"]
    made = create(c, h)
    with anonymous(multi_server) as browser:
        assert browser.post("/api/v1/auth/login", json={
            "username": account["username"], "password": account["password"]}
        ).status_code == 200
        is_html(browser.get(f"/plots/{made['id']}"), 200)
        assert made["id"] in browser.get("/").text
        browser.cookies.set("plotline_session", "not-a-token")  # stale cookie: anonymous
        assert browser.get(f"/plots/{made['id']}").status_code == 303


@pytest.mark.parametrize("target, expected", [
    ("/plots/abc?share=k", "/plots/abc?share=k"),
    ("https://evil.example/", "/"), ("//evil.example/x", "/"), ("/\\evil.example", "/"),
    ("///evil.example", "/"), ("javascript:alert(1)", "/"), ("plots/abc", "/"),
])
def test_login_next_stays_on_this_server(multi_server, target, expected):
    with anonymous(multi_server) as c:
        r = c.get("/login", params={"next": target})
    is_html(r, 200)
    assert f'data-next="{html.escape(expected)}"' in r.text


def test_titles_are_escaped(multi_server, account):
    c, h = account["client"], account["headers"]
    title = f'<script>alert("{new_username()}")</script> & <img src=x onerror=alert(1)>'
    made = create(c, h, title)
    for r in (c.get("/", headers=h), c.get(f"/plots/{made['id']}", headers=h)):
        is_html(r, 200)
        assert "<script>alert" not in r.text and "<img src=x" not in r.text
        assert html.escape(title) in r.text
    viewer = c.get(f"/plots/{made['id']}", headers=h).text
    assert f"<title>{html.escape(title)}</title>" in viewer
    # the JSON payload cannot close its <script> element
    payload = re.search(r'<script type="application/json" id="plotline-data">(.*?)</script>',
                        viewer, re.S)
    assert payload and "<" not in payload.group(1)
    assert json.loads(payload.group(1))["title"] == title


def test_viewer_access(multi_server, account):
    c, h = account["client"], account["headers"]
    made = create(c, h)
    doc_id, path = made["id"], f"/plots/{made['id']}"
    r = c.get(path, headers=h)
    is_html(r, 200)
    assert f'<meta name="plotline-doc" content="{doc_id}" data-version="1">' in r.text
    # BokehJS runs in the sandboxed frame, not on the page (which holds the viewer's rights)
    assert "bokeh.min.js" not in r.text
    frame_url = re.search(r'data-frame="([^"]+)"', r.text).group(1)
    assert frame_url.startswith("/frames/viewer?v=")
    frame = c.get(frame_url)
    is_html(frame, 200)
    assert f'src="{BOKEH_JS}"' in frame.text and "bokeh-api.min.js" in frame.text
    assert frame.headers["content-security-policy"].startswith("sandbox allow-scripts")
    payload = re.search(r'id="plotline-data">(.*?)</script>', r.text, re.S).group(1)
    stored = c.get(f"{DOCS}/{doc_id}", headers=h).json()
    assert json.loads(payload)["doc"] == stored["doc"]

    with anonymous(multi_server) as anon:
        r = anon.get(path)
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next=%2Fplots%2F{doc_id}"
        is_html(anon.get(r.headers["location"]), 200)

        assert c.post(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
        is_html(anon.get(path), 200)
        assert c.delete(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
        assert anon.get(path).status_code == 303

        key = c.post(f"{DOCS}/{doc_id}/share", headers=h).json()["key"]
        is_html(anon.get(path, params={"share": key}), 200)
        # a key that surely differs ("xx" in place of the last two characters was the key
        # itself once in 4,096 runs, and so failed a CI run)
        other_key = key[:-1] + ("A" if key[-1] != "A" else "B")
        wrong = anon.get(path, params={"share": other_key})
        is_html(wrong, 404)
        assert "no such plot" in wrong.text.lower()
        is_html(anon.get(path, params={"share": "k" * 500}), 404)

    other = register(c)
    is_html(c.get(path, headers=other), 404)
    is_html(c.get(path, headers=other, params={"share": key}), 200)
    is_html(c.get("/plots/0123456789abcdef", headers=h), 404)
    is_html(c.get("/plots/not..an-id", headers=h), 404)


def test_embed_script(multi_server, account):
    c, h = account["client"], account["headers"]
    made = create(c, h)
    doc_id, path = made["id"], f"/embed/{made['id']}.js"
    r = c.get(path, headers=h)
    is_js(r, 200)
    assert "PlotlineViewer" in r.text and "document.currentScript" in r.text
    assert f'"id":"{doc_id}"' in r.text and '"frame":"../frames/viewer?v=' in r.text

    with anonymous(multi_server) as anon:
        r = anon.get(path)
        is_js(r, 401)
        assert r.text.count("console.error(") == 1 and "401" in r.text
        missing = anon.get("/embed/0123456789abcdef.js")
        is_js(missing, 401)  # exactly as a private one: ids leak nothing
        assert missing.text == r.text.replace(doc_id, "0123456789abcdef")
        key = c.post(f"{DOCS}/{doc_id}/share", headers=h).json()["key"]
        is_js(anon.get(path, params={"share": key}), 200)
        is_js(anon.get(path, params={"share": "wrong"}), 404)
        assert c.post(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
        is_js(anon.get(path), 200)
    is_js(c.get(path, headers=register(c)), 200)  # published: anyone


def test_bokehjs_is_served_with_long_cache(multi_server):
    with anonymous(multi_server) as c:
        for name in ("bokeh", "bokeh-gl", "bokeh-widgets", "bokeh-tables", "bokeh-api"):
            r = c.get(BOKEH_JS.replace("bokeh.min.js", f"{name}.min.js"))
            assert r.status_code == 200, name
            assert "javascript" in r.headers["content-type"]
            assert "max-age=31536000" in r.headers["cache-control"]
            assert "immutable" in r.headers["cache-control"]
        assert len(c.get(BOKEH_JS).content) > 100_000
        assert c.get(BOKEH_JS.replace(bokeh.__version__, "0.0.1")).status_code == 404
        assert c.get(BOKEH_JS.replace("bokeh.min.js", "nope.js")).status_code == 404
        r = c.get("/static/plotline/pages.js")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        assert c.get("/static/plotline/pages.py").status_code == 404


@pytest.mark.parametrize("path", [
    f"/static/bokeh/{bokeh.__version__}/%2e%2e/%2e%2e/%2e%2e/__init__.py",
    f"/static/bokeh/{bokeh.__version__}/js/..%2f..%2f..%2f__init__.py",
    f"/static/bokeh/{bokeh.__version__}/%2e%2e%2f%2e%2e%2fserver%2fstatic%2fjs%2fbokeh.js",
    f"/static/bokeh/{bokeh.__version__}/js/../../../../../../etc/passwd",
    f"/static/bokeh/{bokeh.__version__}//etc/passwd",
    f"/static/bokeh/{bokeh.__version__}/js%5c..%5c..%5c__init__.py",
])
def test_static_refuses_traversal(multi_server, path):
    """Sent byte for byte (httpx would normalise `..` away)."""
    parts = urlsplit(multi_server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status == 404, answer[:300]
    assert b"import" not in answer and b"root:" not in answer


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own private NATS: two servers on one bus would answer each other's questions."""
    server = start_plotline(tmp_path_factory.mktemp("prefixed"), "-m", "--backend", "file",
                            prefix="/plots-prefix")
    yield server
    server.stop()


def test_pages_under_a_url_prefix(prefixed):
    p = "/plots-prefix"
    with anonymous(prefixed) as c:
        h = register(c)
        made = create(c, h)
        doc_id = made["id"]
        home = c.get("/", headers=h)
        is_html(home, 200)
        assert f'href="{p}/plots/{doc_id}"' in home.text
        assert f'href="{p}/static/plotline/style.css' in home.text
        assert f'data-logout="{p}/api/v1/auth/logout"' in home.text

        viewer = c.get(f"/plots/{doc_id}", headers=h)
        is_html(viewer, 200)
        frame_url = re.search(r'data-frame="([^"]+)"', viewer.text).group(1)
        assert frame_url.startswith(f"{p}/frames/viewer")
        frame = c.get(frame_url.removeprefix(p))
        is_html(frame, 200)
        scripts = re.findall(r'<script defer src="([^"]+)"', viewer.text + frame.text)
        assert f"{p}{BOKEH_JS}" in scripts and len(scripts) == 8
        for src in scripts:
            assert src.startswith(f"{p}/static/")
            assert c.get(src.removeprefix(p)).status_code == 200, src

        r = c.get(f"/plots/{doc_id}")
        assert r.status_code == 303
        assert r.headers["location"] == f"{p}/login?next=%2Fplots-prefix%2Fplots%2F{doc_id}"
        login = c.get("/login", params={"next": f"{p}/plots/{doc_id}"})
        assert f'data-api="{p}/api/v1/auth/login"' in login.text
        assert f'data-next="{p}/plots/{doc_id}"' in login.text
        assert f'data-next="{p}/"' in c.get("/login", params={"next": "/elsewhere"}).text

        is_js(c.get(f"/embed/{doc_id}.js", headers=h), 200)
        assert httpx.get(prefixed.url.removesuffix(p) + f"/plots/{doc_id}").status_code == 404

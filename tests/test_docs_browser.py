"""The Must-show: a figure made with the real bokeh library, published over REST, rendered by
BokehJS in headless Chromium — on the viewer page and through the embed script."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.layouts import row
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from bokeh_docs import figure_doc, source_id
from browsing import plot_frame, screenshot
from conftest import new_username

DOCS = "/api/v1/docs"

# one server is enough here: the page does not depend on the store backend
pytestmark = pytest.mark.parametrize("multi_server", ["file"], indirect=True)


def two_plots(title: str) -> dict:
    """A row of two figures over one ColumnDataSource: line + scatter, and a scatter."""
    x = np.linspace(0, 4 * np.pi, 60)
    source = ColumnDataSource({"x": x, "y": np.sin(x), "z": np.cos(x) * x})
    left = figure(title="sin(x)", width=420, height=320)
    left.line("x", "y", source=source, line_width=2)
    left.scatter("x", "y", source=source, size=7, color="firebrick")
    right = figure(title="x·cos(x)", width=420, height=320)
    right.scatter("x", "z", source=source, size=8, marker="triangle", color="seagreen")
    right.line("x", "z", source=source, color="gray")
    doc = Document()
    doc.add_root(row(left, right))
    doc.title = title
    return doc.to_json(deferred=False)


def publish(account: dict, title: str, *, public: bool = True) -> tuple[str, list[str]]:
    """Store the document over REST (and publish it); its id and stored root ids."""
    c, h = account["client"], account["headers"]
    r = c.post(f"{DOCS}/", json={"title": title, "doc": two_plots(title)}, headers=h)
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]
    if public:
        assert c.post(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
    stored = c.get(f"{DOCS}/{doc_id}", headers=h).json()
    return doc_id, [root["id"] for root in stored["doc"]["roots"]]


FRAME = "iframe.plotline-frame"


def test_viewer_renders_a_published_bokeh_figure(multi_server, account, page):
    tab, errors = page
    title = f"Waves <{new_username()}>"
    doc_id, root_ids = publish(account, title)
    response = tab.goto(f"{multi_server.url}/plots/{doc_id}")  # anonymous: it is published
    assert response is not None and response.status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    frame = plot_frame(tab)
    tab.frame_locator(FRAME).locator("canvas").first.wait_for(timeout=30_000)
    assert tab.frame_locator(FRAME).locator("canvas").count() >= 2  # two plots
    assert frame.evaluate("Bokeh.documents.length") == 1
    assert frame.evaluate("Bokeh.documents[0].roots().map(r => r.id)") == root_ids
    assert tab.evaluate("window.Bokeh === undefined")  # the page itself runs no BokehJS
    assert tab.title() == title
    assert tab.locator('meta[name="plotline-doc"]').get_attribute("content") == doc_id
    # the frame is as tall as what it shows (viewer.js sizes it from the frame's report)
    tab.wait_for_function(f"document.querySelector({FRAME!r}).offsetHeight < 400")
    height = tab.locator(FRAME).bounding_box()["height"]
    assert 320 <= height <= 340, height  # (two 320 px plots in a row)
    tab.wait_for_timeout(300)  # let the canvases paint before the picture
    screenshot(tab, "docs_viewer")
    assert errors == []


def test_viewer_with_login_and_share_link(multi_server, account, page):
    tab, errors = page
    doc_id, root_ids = publish(account, f"private {new_username()}", public=False)
    tab.goto(f"{multi_server.url}/plots/{doc_id}")
    assert tab.url.endswith(f"/login?next=%2Fplots%2F{doc_id}")
    tab.fill("input[name=username]", account["username"])
    tab.fill("input[name=password]", account["password"])
    tab.click("button[type=submit]")
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    assert tab.url == f"{multi_server.url}/plots/{doc_id}"
    assert plot_frame(tab).evaluate("Bokeh.documents[0].roots().map(r => r.id)") == root_ids
    tab.goto(f"{multi_server.url}/")  # my plots, with the one just stored
    tab.click(f'a[href="/plots/{doc_id}"]')
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    tab.go_back()
    screenshot(tab, "docs_home")
    session = next(c["value"] for c in tab.context.cookies() if c["name"] == "plotline_session")
    tab.click("[data-logout]")
    tab.wait_for_selector("form#login", timeout=10_000)
    # the button ended the login itself, not just the browser's copy of it
    assert httpx.get(f"{multi_server.url}/api/v1/auth/me",
                     headers={"Authorization": f"Bearer {session}"}).status_code == 401
    assert errors == []


def test_a_share_link_opens_anonymously_and_stops_when_revoked(multi_server, account, page):
    """The link works for a browser with no account, live; revoked, the open page stops
    (its socket is told, and says so) and the link opens nothing any more."""
    tab, errors = page
    c, h = account["client"], account["headers"]
    doc_id, root_ids = publish(account, f"shared {new_username()}", public=False)
    key = c.post(f"{DOCS}/{doc_id}/share", headers=h).json()["key"]
    tab.goto(f"{multi_server.url}/plots/{doc_id}?share={key}")
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    frame = plot_frame(tab)
    assert frame.evaluate("Bokeh.documents[0].roots().map(r => r.id)") == root_ids
    title_id = c.get(f"{DOCS}/{doc_id}", headers=h).json()["doc"]["roots"][0]["attributes"][
        "children"][0]["attributes"]["title"]["id"]
    assert c.patch(f"{DOCS}/{doc_id}", headers=h, json={"events": [
        {"kind": "ModelChanged", "model": {"id": title_id}, "attr": "text",
         "new": "seen through the link"}]}).status_code == 200
    frame.wait_for_function(
        f"Bokeh.documents[0].get_model_by_id({title_id!r}).text === 'seen through the link'",
        timeout=10_000)
    assert c.delete(f"{DOCS}/{doc_id}/share", headers=h).status_code == 200
    tab.wait_for_selector("#plotline-status[data-state=offline]", timeout=10_000)
    assert "no longer works" in tab.locator("#plotline-status").inner_text()
    # a change after the revocation does not reach the page
    assert c.patch(f"{DOCS}/{doc_id}", headers=h, json={"events": [
        {"kind": "ModelChanged", "model": {"id": title_id}, "attr": "text",
         "new": "not for you"}]}).status_code == 200
    tab.wait_for_timeout(700)
    assert frame.evaluate(f"Bokeh.documents[0].get_model_by_id({title_id!r}).text") == (
        "seen through the link")
    screenshot(tab, "viewer_share_revoked")
    response = tab.goto(f"{multi_server.url}/plots/{doc_id}?share={key}")
    assert response is not None and response.status == 404
    assert "new link" in tab.locator("main").inner_text()  # what to do next
    assert tab.locator(FRAME).count() == 0
    assert all("404" in e for e in errors), errors  # (the dead link's page itself)


@contextlib.contextmanager
def other_site(html: str) -> Iterator[str]:
    """A page of another site: served from 127.0.0.2, another origin (and site) than the
    server's 127.0.0.1, both loopback (Chromium keeps public pages from loopback)."""
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_embed_script_on_another_site_is_live(multi_server, account, page):
    tab, errors = page
    c, h = account["client"], account["headers"]
    public_id, public_roots = publish(account, f"embedded {new_username()}")
    private_id, private_roots = publish(account, f"shared {new_username()}", public=False)
    key = c.post(f"{DOCS}/{private_id}/share", headers=h).json()["key"]
    with httpx.Client(base_url=multi_server.url) as anon:  # what the host page will get
        assert anon.get(f"/embed/{private_id}.js").status_code == 401
    host = other_site(f"""<!doctype html><html><head><title>Someone else's site</title></head>
        <body><h1>A page on another site</h1>
        <script src="{multi_server.url}/embed/{public_id}.js" id="one"></script>
        <p>Between the plots.</p>
        <script src="{multi_server.url}/embed/{private_id}.js?share={key}" id="two"></script>
        <p>After the plots.</p></body></html>""")
    with host as url:
        embedded_live(tab, errors, account, url, (public_id, public_roots),
                      (private_id, private_roots))


def embedded_live(tab, errors, account, url, public, private) -> None:
    c, h = account["client"], account["headers"]
    (public_id, public_roots), (private_id, private_roots) = public, private
    tab.goto(url)
    tab.wait_for_function(
        "document.querySelectorAll('.plotline-embed[data-live=live]').length == 2",
        timeout=30_000)
    # each embed sits right after its own script tag, its plot in a frame of its own
    assert tab.evaluate("document.getElementById('one').nextElementSibling.dataset.plotlineDoc"
                        ) == public_id
    assert tab.evaluate("document.getElementById('two').nextElementSibling.dataset.plotlineDoc"
                        ) == private_id
    frames = [plot_frame(tab, 0), plot_frame(tab, 1)]
    rendered = [f.evaluate("Bokeh.documents[0].roots().map(r => r.id)") for f in frames]
    assert rendered == [public_roots, private_roots]
    assert tab.evaluate("window.Bokeh === undefined")  # nothing of it runs in the host page
    assert tab.title() == "Someone else's site"
    # live on the other site: a change of the shared document reaches its embed
    title_id = c.get(f"{DOCS}/{private_id}", headers=h).json()["doc"]["roots"][0][
        "attributes"]["children"][0]["attributes"]["title"]["id"]
    assert c.patch(f"{DOCS}/{private_id}", headers=h, json={"events": [
        {"kind": "ModelChanged", "model": {"id": title_id}, "attr": "text",
         "new": "live on another site"}]}).status_code == 200
    frames[1].wait_for_function(
        f"Bokeh.documents[0].get_model_by_id({title_id!r}).text === 'live on another site'",
        timeout=10_000)
    tab.wait_for_timeout(300)
    screenshot(tab, "docs_embed")
    assert errors == []


def hostile_doc(title: str) -> dict:
    """A plot whose author tries to act as its viewer: markup with an inline handler, a
    script element, and a CustomJS run when the document is ready (eval is allowed in the
    frame), each trying to read the viewer's cookies, reach the page around it, and mint an
    API key in the viewer's name. The CustomJS writes down what each attempt got."""
    from bokeh.events import DocumentReady
    from bokeh.models import CustomJS, Div

    steal = ("fetch('/api/v1/auth/apikeys',{method:'POST',credentials:'include',"
             "headers:{'Content-Type':'application/json','X-CSRF-Token':"
             "(document.cookie.match(/plotline_csrf=([^;]+)/)||[])[1]},"
             "body:JSON.stringify({name:'stolen'})});window.__pwned=true;")
    record = """
        const note = (name, value) => document.body.setAttribute('data-' + name, value);
        const attempt = (f) => {
          try { return 'got:' + f(); } catch (e) { return 'blocked:' + e.name; } };
        note('cookie', attempt(() => document.cookie));
        note('parent', attempt(() => window.parent.document.cookie));
        note('storage', attempt(() => window.localStorage.length));
        fetch('/api/v1/auth/apikeys', {method: 'POST', credentials: 'include',
              headers: {'Content-Type': 'application/json'}, body: '{"name":"stolen"}'})
          .then(r => note('fetch', 'status:' + r.status), e => note('fetch', 'blocked:' + e.name));
    """
    div = Div(text=f'<b>hello</b><img src="x" onerror="{steal}"><script>{steal}</script>')
    plot = figure(title="still a plot", width=420, height=300)
    plot.line([0, 1, 2], [1, 0, 1])
    doc = Document()
    doc.add_root(row(div, plot))
    doc.js_on_event(DocumentReady, CustomJS(code=record))
    doc.title = title
    return doc.to_json(deferred=False)


def test_document_content_cannot_act_as_its_viewer(multi_server, account, page):
    tab, errors = page
    c, h = account["client"], account["headers"]
    title = f"hostile {new_username()}"
    r = c.post(f"{DOCS}/", json={"title": title, "doc": hostile_doc(title)}, headers=h)
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]
    assert c.post(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
    keys_before = c.get("/api/v1/auth/apikeys", headers=h).json()
    # the viewer is signed in (cookie + CSRF cookie in the browser), as the author hopes
    login = tab.context.request.post(f"{multi_server.url}/api/v1/auth/login", data={
        "username": account["username"], "password": account["password"]})
    assert login.ok
    response = tab.goto(f"{multi_server.url}/plots/{doc_id}")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    frame = plot_frame(tab)
    frame.wait_for_selector("body[data-fetch]", timeout=10_000)  # the CustomJS ran
    tab.wait_for_timeout(500)  # give any other handler time to run
    screenshot(tab, "docs_viewer_hostile")
    # the document's code runs in an opaque origin: no cookies, no page, no storage, no API
    assert frame.evaluate("window.origin") == "null"
    noted = frame.evaluate("Object.assign({}, document.body.dataset)")
    assert noted["cookie"] == "blocked:SecurityError", noted
    assert noted["parent"] == "blocked:SecurityError", noted
    assert noted["storage"] == "blocked:SecurityError", noted
    assert noted["fetch"] == "blocked:TypeError", noted  # connect-src 'none'
    assert tab.evaluate("window.__pwned === undefined")
    assert c.get("/api/v1/auth/apikeys", headers=h).json() == keys_before
    # the refused inline handler, script element and fetch are reported as such
    assert errors, "the refused inline handler and fetch should be reported"
    assert all("Content Security Policy" in e or "Failed to load resource" in e
               or "Failed to fetch" in e for e in errors), errors


def test_the_frame_is_sandboxed_even_when_opened_on_its_own(multi_server, page):
    """Opened as a top-level page (not in the viewer's <iframe sandbox>), the frame is still
    an opaque origin: its own CSP says `sandbox`."""
    tab, errors = page
    response = tab.goto(f"{multi_server.url}/frames/viewer")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert csp.startswith("sandbox allow-scripts") and "allow-same-origin" not in csp
    assert "connect-src 'none'" in csp
    assert "x-frame-options" not in response.headers  # any site may frame it (embeds)
    assert tab.evaluate("window.origin") == "null"
    assert tab.evaluate("(() => { try { return document.cookie; } "
                        "catch (e) { return e.name; } })()") == "SecurityError"
    assert errors == []


def test_embed_js_with_a_scoped_token_shows_a_private_plot_on_another_site(
        multi_server, account, page):
    """The other site's backend mints a token for one private document (30 s, the least);
    its page shows the plot live with no Plotline cookie, and the page renews the token
    before it ends: appends made after the first token expired still arrive."""
    tab, errors = page
    c, h = account["client"], account["headers"]
    src = c.post("/api/v1/data/sources", headers=h, json={
        "name": "private rows", "columns": {"x": [0.0, 1.0], "y": [1.0, 2.0]}}).json()["id"]
    doc = figure_doc(points=5, source_tag=src)
    made = c.post(f"{DOCS}/", headers=h, json={"title": "private", "doc": doc})
    doc_id, cds = made.json()["id"], source_id(doc)
    minted = c.post("/api/v1/auth/doc-token", headers=h, json={"doc": doc_id, "ttl": 30})
    assert minted.status_code == 200, minted.text
    token = minted.json()["access_token"]
    host = other_site(f"""<!doctype html><html><head><title>Team dashboard</title></head>
        <body><h1>Numbers of the day</h1>
        <div data-plotline-doc="{doc_id}" data-plotline-token="{token}"></div>
        <script src="{multi_server.url}/embed.js"></script></body></html>""")
    with host as url:
        tab.goto(url)
        tab.wait_for_selector(".plotline-embed[data-live=live]", timeout=30_000)
        frame = plot_frame(tab)
        rows = f"Bokeh.documents[0].get_model_by_id({cds!r}).data.x.length"
        assert frame.evaluate(rows) == 2  # the source's rows, read with the token
        time.sleep(31)  # the first token has ended; the page renewed it at 24 s
        r = c.post(f"/api/v1/data/sources/{src}/append", headers=h,
                   json={"columns": {"x": [2.0], "y": [3.0]}})
        assert r.status_code == 200, r.text
        frame.wait_for_function(f"{rows} === 3", timeout=10_000)
        tab.wait_for_selector(".plotline-embed[data-live=live]", timeout=10_000)
        screenshot(tab, "docs_embed_token")
    assert errors == []


def test_the_owner_publishes_and_shares_from_the_viewer(multi_server, account, page, browser):
    """The owner's controls on the viewer: publish (by keyboard), a share link shown once
    that opens for a browser without an account, and revoking it stops that browser."""
    tab, errors = page
    c, h = account["client"], account["headers"]
    doc_id, _ = publish(account, f"mine {new_username()}", public=False)
    assert tab.context.request.post(f"{multi_server.url}/api/v1/auth/login", data={
        "username": account["username"], "password": account["password"]}).ok
    tab.goto(f"{multi_server.url}/plots/{doc_id}")
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    assert account["username"] in tab.locator(".doc-meta").inner_text()
    assert tab.locator("#doc-state").text_content() == "private"
    tab.focus("[data-action=publish]")
    tab.keyboard.press("Enter")
    tab.wait_for_selector("#doc-state.published", timeout=10_000)
    assert httpx.get(f"{multi_server.url}{DOCS}/{doc_id}").status_code == 200  # anyone now
    tab.click("[data-action=publish]")  # and private again
    tab.wait_for_selector("#doc-state.private", timeout=10_000)
    assert httpx.get(f"{multi_server.url}{DOCS}/{doc_id}").status_code == 401
    tab.click("[data-action=share]")
    tab.wait_for_selector(".share-link:not([hidden])", timeout=10_000)
    url = tab.locator(".share-link .secret-value").inner_text()
    assert url.startswith("http") and f"/plots/{doc_id}?share=" in url
    screenshot(tab, "viewer_owner_controls")
    stranger = browser.new_context().new_page()
    try:
        stranger.goto(f"{multi_server.url}/plots/{doc_id}?share={url.split('share=')[1]}")
        stranger.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
        assert stranger.locator("#doc-controls").count() == 0  # not the owner's page
        tab.once("dialog", lambda dialog: dialog.accept())
        tab.click("[data-action=unshare]")
        stranger.wait_for_selector("#plotline-status[data-state=offline]", timeout=10_000)
        assert tab.locator("[data-action=unshare]").is_hidden()
    finally:
        stranger.context.close()
    assert c.get(f"{DOCS}/{doc_id}", headers=h).json()["published"] is False
    assert errors == []


def test_a_documents_code_cannot_make_the_page_hammer_the_server(multi_server, account, page):
    """The frame's code may post the page anything: 'reload me' 100 times a second for 2 s
    makes at most a reload every 2 s, and made-up messages are dropped."""
    from bokeh.events import DocumentReady
    from bokeh.models import CustomJS

    tab, errors = page
    c, h = account["client"], account["headers"]
    spam = """
        let n = 0;
        const timer = setInterval(() => {
          parent.postMessage({plotline: 1, op: "failed", channel: "doc"}, "*");
          parent.postMessage({plotline: 1, op: "view", source: "__proto__", seq: 1,
                              kind: "line", x: "x", y: "y", n: 10}, "*");
          parent.postMessage({plotline: 1, op: "changes", events: [
            {kind: "ModelChanged", model: {id: "x"}, attr: "title", new: "pwned"}]}, "*");
          if (++n >= 200) { clearInterval(timer); document.body.dataset.spammed = "yes"; }
        }, 10);
    """
    plot = figure(title="noisy", width=300, height=200)
    plot.line([0, 1], [0, 1])
    doc = Document()
    doc.add_root(plot)
    doc.js_on_event(DocumentReady, CustomJS(code=spam))
    r = c.post(f"{DOCS}/", headers=h, json={"title": new_username(),
                                            "doc": doc.to_json(deferred=False)})
    doc_id = r.json()["id"]
    assert c.post(f"{DOCS}/{doc_id}/publish", headers=h).status_code == 200
    reads: list[str] = []
    tab.on("request", lambda request: reads.append(request.url)
           if request.url.endswith(f"{DOCS}/{doc_id}") else None)
    started = time.monotonic()
    tab.goto(f"{multi_server.url}/plots/{doc_id}")
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    plot_frame(tab).wait_for_selector("body[data-spammed=yes]", timeout=15_000)
    took = time.monotonic() - started
    # (each reload renders the document again, and its code starts asking again)
    assert 1 <= len(reads) <= took / 2 + 2, (len(reads), took)
    assert c.get(f"{DOCS}/{doc_id}", headers=h).json()["version"] == 2  # (publish only)
    assert all("plotline:" in e or "Failed to load" in e for e in errors), errors

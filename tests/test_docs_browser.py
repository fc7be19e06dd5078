"""The Must-show: a figure made with the real bokeh library, published over REST, rendered by
BokehJS in headless Chromium — on the viewer page and through the embed script."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from bokeh.document import Document
from bokeh.layouts import row
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from browsing import screenshot
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


def test_viewer_renders_a_published_bokeh_figure(multi_server, account, page):
    tab, errors = page
    title = f"Waves <{new_username()}>"
    doc_id, root_ids = publish(account, title)
    response = tab.goto(f"{multi_server.url}/plots/{doc_id}")  # anonymous: it is published
    assert response is not None and response.status == 200
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    tab.locator("canvas").first.wait_for(timeout=30_000)
    assert tab.locator("canvas").count() >= 2  # two plots (shadow DOM is pierced)
    assert tab.evaluate("Bokeh.documents.length") == 1
    assert tab.evaluate("Bokeh.documents[0].roots().map(r => r.id)") == root_ids
    assert tab.title() == title
    assert tab.locator('meta[name="plotline-doc"]').get_attribute("content") == doc_id
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
    assert tab.evaluate("Bokeh.documents[0].roots().map(r => r.id)") == root_ids
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

    key = account["client"].post(f"{DOCS}/{doc_id}/share",
                                 headers=account["headers"]).json()["key"]
    tab.context.clear_cookies()
    tab.goto(f"{multi_server.url}/plots/{doc_id}?share={key}")
    tab.wait_for_selector("#plotline-roots[data-rendered=true]", timeout=30_000)
    assert tab.locator("canvas").count() >= 2
    assert errors == []


def test_embed_script_on_another_page(multi_server, account, page):
    tab, errors = page
    public_id, public_roots = publish(account, f"embedded {new_username()}")
    private_id, _ = publish(account, f"shared {new_username()}", public=False)
    key = account["client"].post(f"{DOCS}/{private_id}/share",
                                 headers=account["headers"]).json()["key"]
    with httpx.Client(base_url=multi_server.url) as anon:  # what the host page will get
        assert anon.get(f"/embed/{private_id}.js").status_code == 401
    tab.set_content(f"""<!doctype html><html><head><title>Someone else's site</title></head>
        <body><h1>A page on another site</h1>
        <script src="{multi_server.url}/embed/{public_id}.js" id="one"></script>
        <p>Between the plots.</p>
        <script src="{multi_server.url}/embed/{private_id}.js?share={key}" id="two"></script>
        <p>After the plots.</p></body></html>""")
    tab.wait_for_function(
        "document.querySelectorAll('.plotline-embed[data-rendered=true]').length == 2",
        timeout=30_000)
    assert tab.locator("canvas").count() >= 4
    # each embed sits right after its own script tag
    assert tab.evaluate("document.getElementById('one').nextElementSibling.dataset.plotlineDoc"
                        ) == public_id
    assert tab.evaluate("document.getElementById('two').nextElementSibling.dataset.plotlineDoc"
                        ) == private_id
    assert tab.evaluate("Bokeh.documents.length") == 2
    rendered = tab.evaluate("Bokeh.documents.map(d => d.roots().map(r => r.id))")
    assert public_roots in rendered
    assert tab.title() == "Someone else's site"
    tab.wait_for_timeout(300)
    screenshot(tab, "docs_embed")
    assert errors == []


def hostile_doc(title: str) -> dict:
    """A plot whose author tries to act as its viewer: markup with an inline handler, a
    script element, and a CustomJS run when the document is ready, each trying to mint an
    API key in the viewer's name with the viewer's cookie."""
    from bokeh.events import DocumentReady
    from bokeh.models import CustomJS, Div

    steal = ("fetch('/api/v1/auth/apikeys',{method:'POST',credentials:'include',"
             "headers:{'Content-Type':'application/json','X-CSRF-Token':"
             "(document.cookie.match(/plotline_csrf=([^;]+)/)||[])[1]},"
             "body:JSON.stringify({name:'stolen'})});window.__pwned=true;")
    div = Div(text=f'<b>hello</b><img src="x" onerror="{steal}"><script>{steal}</script>')
    plot = figure(title="still a plot", width=420, height=300)
    plot.line([0, 1, 2], [1, 0, 1])
    doc = Document()
    doc.add_root(row(div, plot))
    doc.js_on_event(DocumentReady, CustomJS(code=steal))
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
    tab.locator("canvas").first.wait_for(timeout=30_000)
    tab.wait_for_timeout(800)  # give any handler time to run
    screenshot(tab, "docs_viewer_hostile")
    assert tab.evaluate("window.__pwned === undefined")
    assert c.get("/api/v1/auth/apikeys", headers=h).json() == keys_before
    # what the browser refused is reported as such, and nothing else went wrong
    assert errors, "the refused inline handler and eval should be reported"
    # (and the <img src="x"> itself: a 404)
    assert all("Content Security Policy" in e or "Failed to load resource" in e
               for e in errors), errors

"""The account pages (register, API keys, data sources), the header's links and the error
page: over real HTTP, and in headless Chromium (what a person would do, keyboard included)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from browsing import screenshot
from conftest import new_username
from playwright.sync_api import Page
from servers import Server, start_plotline

AUTH, DATA = "/api/v1/auth", "/api/v1/data"

# the pages do not depend on the store backend: one server of each mode is enough
multi = pytest.mark.parametrize("multi_server", ["file"], indirect=True)
single = pytest.mark.parametrize("single_server", ["file"], indirect=True)


def is_page(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'self'" in csp
    return r.text


def make_source(account: dict, name: str, rows: int = 5) -> dict:
    r = account["client"].post(f"{DATA}/sources", headers=account["headers"], json={
        "name": name, "columns": {"x": list(range(rows)), "y": [i * 0.5 for i in range(rows)],
                                  "label": [f"p{i}" for i in range(rows)]}})
    assert r.status_code == 201, r.text
    return r.json()


def sign_in(tab: Page, server, account: dict) -> None:
    """The browser logs in as `account` (session and CSRF cookies in its context)."""
    assert tab.context.request.post(f"{server.url}{AUTH}/login", data={
        "username": account["username"], "password": account["password"]}).ok


def only_http_errors(errors: list[str]) -> None:
    """Errors the browser logs for answers the page expected (a 409, a 401) and nothing else."""
    assert all("Failed to load resource" in e for e in errors), errors


# --- over HTTP -------------------------------------------------------------------------------

@multi
@pytest.mark.parametrize("path", ["/keys", "/sources"])
def test_anonymous_visitor_logs_in_first(multi_server, path):
    with httpx.Client(base_url=multi_server.url, timeout=10) as c:
        r = c.get(path)
        assert r.status_code == 303
        assert r.headers["location"] == f"/login?next=%2F{path[1:]}"
        login = is_page(c.get(r.headers["location"]), 200)
    assert f'data-next="{path}"' in login
    assert f'href="/register?next=%2F{path[1:]}"' in login


@multi
def test_pages_carry_the_policy_and_the_links(multi_server, account):
    c, h = account["client"], account["headers"]
    register = is_page(c.get("/register", params={"next": "/sources"}), 200)
    assert 'id="register"' in register and 'data-api="/api/v1/auth/register"' in register
    assert 'data-login="/api/v1/auth/login"' in register and 'data-next="/sources"' in register
    assert 'href="/login?next=%2Fsources"' in register
    assert 'data-next="/"' in c.get("/register", params={"next": "https://evil.example/"}).text
    keys = is_page(c.get("/keys", headers=h), 200)
    assert 'data-api="/api/v1/auth/apikeys"' in keys
    sources = is_page(c.get("/sources", headers=h), 200)
    assert 'data-api="/api/v1/data/sources"' in sources and "No data sources yet" in sources
    for text, current in ((keys, "/keys"), (sources, "/sources")):
        nav = re.search(r'<nav class="nav" aria-label="Main">(.*?)</nav>', text, re.S)
        assert nav, text[:800]
        assert re.findall(r'href="([^"]+)"', nav.group(1)) == ["/", "/sources", "/keys"]
        assert f'<a href="{current}" aria-current="page">' in nav.group(1)
        assert account["username"] in text and "data-logout=" in text


@multi
def test_home_marks_published_and_private(multi_server, account):
    c, h = account["client"], account["headers"]
    made = []
    for title in ("open " + new_username(), "closed " + new_username()):
        r = c.post("/api/v1/docs/", headers=h, json={"title": title, "doc": None})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    assert c.post(f"/api/v1/docs/{made[0]}/publish", headers=h).status_code == 200
    home = is_page(c.get("/", headers=h), 200)
    for doc_id, state in zip(made, ("published", "private"), strict=True):
        row = re.search(rf'<tr><td data-label="Title"><a href="/plots/{doc_id}">.*?</tr>', home)
        assert row and f'<span class="badge {state}">{state}</span>' in row.group(0)


@multi
def test_error_page_says_what_to_do(multi_server, account):
    c, h = account["client"], account["headers"]
    text = is_page(c.get("/plots/0123456789abcdef", headers=h), 404)
    assert "<h1 id=\"error-heading\">Not found</h1>" in text and "HTTP 404" in text
    assert "Check the address" in text and '<a class="button" href="/">Back to my plots</a>' in text
    with httpx.Client(base_url=multi_server.url, timeout=10) as anon:
        # anonymous: a plot that may exist behind a login is a login, not a 404
        r = anon.get("/plots/0123456789abcdef")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@single
def test_single_user_mode_has_no_accounts(single_server):
    with httpx.Client(base_url=single_server.url, timeout=10) as c:
        r = c.get("/register")
        assert r.status_code == 303 and r.headers["location"] == "/"
        keys = is_page(c.get("/keys"), 200)
        assert "single-user mode" in keys and "apikeys" not in keys
        sources = is_page(c.get("/sources"), 200)
        assert 'data-api="/api/v1/data/sources"' in sources
        home = is_page(c.get("/"), 200)
        assert 'href="/sources"' in home and 'href="/keys"' not in home
        assert "data-logout" not in home


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_plotline(tmp_path_factory.mktemp("acct-prefixed"), "-m", "--backend", "file",
                            prefix="/team")
    yield server
    server.stop()


def test_pages_under_a_url_prefix(prefixed):
    with httpx.Client(base_url=prefixed.url, timeout=10) as c:
        r = c.get("/keys")
        assert r.status_code == 303 and r.headers["location"] == "/team/login?next=%2Fteam%2Fkeys"
        login = is_page(c.get("/login", params={"next": "/team/keys"}), 200)
        assert 'href="/team/register?next=%2Fteam%2Fkeys"' in login
        register = is_page(c.get("/register", params={"next": "/team/keys"}), 200)
        assert 'data-api="/team/api/v1/auth/register"' in register
        assert 'data-login="/team/api/v1/auth/login"' in register
        assert 'href="/team/login?next=%2Fteam%2Fkeys"' in register
        name, password = new_username(), "correct horse battery"
        assert c.post("/api/v1/auth/register",
                      json={"username": name, "password": password}).status_code == 201
        assert c.post("/api/v1/auth/login",
                      json={"username": name, "password": password}).status_code == 200
        keys = is_page(c.get("/keys"), 200)  # the login cookie
        assert 'data-api="/team/api/v1/auth/apikeys"' in keys
        assert '<a href="/team/keys" aria-current="page">API keys</a>' in keys
        sources = is_page(c.get("/sources"), 200)
        assert 'data-api="/team/api/v1/data/sources"' in sources
        assert 'href="/team/" aria-current' not in sources and 'href="/team/"' in sources


# --- in the browser --------------------------------------------------------------------------

@multi
def test_register_then_home_signed_in(multi_server, account, page):
    tab, errors = page
    tab.goto(f"{multi_server.url}/login")
    tab.get_by_role("link", name="Register").click()
    tab.wait_for_selector("form#register")
    assert tab.url == f"{multi_server.url}/register?next=%2F"
    # a taken name: the server's own words, and the form stays
    tab.get_by_label("Username").fill(account["username"])
    tab.get_by_label("Password").fill("correct horse battery")
    tab.get_by_role("button", name="Create account").click()
    alert = tab.locator("form#register .error")
    alert.wait_for(state="visible")
    assert alert.text_content() == "username already taken"
    # past the browser's own check (minlength): what auth says of a short password
    tab.locator("input[name=password]").evaluate("input => input.removeAttribute('minlength')")
    tab.get_by_label("Username").fill(new_username())
    tab.get_by_label("Password").fill("short")
    tab.get_by_role("button", name="Create account").click()
    tab.wait_for_function("() => /password/.test(document.querySelector("
                          "'form#register .error').textContent)")
    assert "8" in alert.text_content()
    screenshot(tab, "acct_register_refused")
    tab.get_by_label("Password").fill("correct horse battery")
    name = new_username()
    tab.get_by_label("Username").fill(name)
    tab.get_by_label("Email").fill(f"{name}@example.org")
    tab.get_by_role("button", name="Create account").click()
    tab.wait_for_url(f"{multi_server.url}/")
    tab.get_by_role("heading", name="My plots").wait_for()
    assert name in tab.locator("header .user").text_content()
    assert tab.locator("nav a[aria-current=page]").text_content() == "My plots"
    screenshot(tab, "acct_home_new_user")
    tab.get_by_role("link", name="API keys").click()
    tab.wait_for_selector("#keys[data-loaded='0']")
    assert tab.locator("#keys .empty").is_visible()
    only_http_errors(errors)


@multi
def test_api_keys_created_shown_once_and_revoked(multi_server, account, page):
    tab, errors = page
    sign_in(tab, multi_server, account)
    tab.goto(f"{multi_server.url}/keys")
    tab.wait_for_selector("#keys[data-loaded]")
    # by keyboard only: type a name, Tab to the button, Enter
    name = f"laptop <{new_username()}>"
    tab.get_by_label("Name").focus()
    tab.keyboard.type(name)
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.textContent") == "Create key"
    tab.keyboard.press("Enter")
    box = tab.locator("#key-secret")
    box.wait_for(state="visible")
    secret = box.locator(".secret-value").text_content()
    assert secret and secret.startswith("pl_")
    assert "will not be shown again" in box.text_content()
    assert tab.evaluate("document.activeElement.textContent") == "Copy"  # focus moved there
    tab.locator(f"#keys tbody tr:has-text('{name}')").wait_for()
    tab.context.grant_permissions(["clipboard-read", "clipboard-write"])
    box.get_by_role("button", name="Copy").click()
    box.locator(".copied").filter(has_text="Copied").wait_for()
    assert tab.evaluate("navigator.clipboard.readText()") == secret
    screenshot(tab, "acct_keys_new_secret")

    bearer = {"Authorization": f"Bearer {secret}"}
    me = httpx.get(f"{multi_server.url}{AUTH}/me", headers=bearer, timeout=10)
    assert me.status_code == 200 and me.json()["username"] == account["username"]

    tab.reload()
    tab.wait_for_selector("#keys[data-loaded]")
    assert secret not in tab.content() and not tab.locator("#key-secret").is_visible()
    row = tab.locator("#keys tbody tr", has_text=name)
    assert row.count() == 1 and secret[:12] in row.text_content()  # its prefix, not more

    tab.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("Revoke")).click()
    row.wait_for(state="detached")
    deadline = time.monotonic() + 5  # every service refuses it within a second
    while (status := httpx.get(f"{multi_server.url}{AUTH}/me", headers=bearer,
                               timeout=10).status_code) == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 401
    assert errors == []


@multi
def test_revoke_asks_first(multi_server, account, page):
    tab, errors = page
    made = account["client"].post(f"{AUTH}/apikeys", headers=account["headers"],
                                  json={"name": "kept"}).json()
    sign_in(tab, multi_server, account)
    tab.goto(f"{multi_server.url}/keys")
    row = tab.locator(f"#keys tr[data-key='{made['id']}']")
    questions = []

    def dismiss(dialog):
        questions.append(dialog.message)
        dialog.dismiss()

    tab.once("dialog", dismiss)
    row.get_by_role("button", name="Revoke key kept").click()
    assert questions and "kept" in questions[0]
    assert row.count() == 1
    assert httpx.get(f"{multi_server.url}{AUTH}/me", timeout=10,
                     headers={"Authorization": f"Bearer {made['key']}"}).status_code == 200
    assert errors == []


@multi
def test_sources_listed_and_deleted(multi_server, account, page):
    tab, errors = page
    name = f"points {new_username()}"
    source = make_source(account, name, rows=1234)
    other = make_source(account, "second " + new_username(), rows=3)
    sign_in(tab, multi_server, account)
    tab.goto(f"{multi_server.url}/sources")
    row = tab.locator(f"#sources tr[data-source='{source['id']}']")
    row.wait_for()
    assert name in row.text_content() and source["id"] in row.text_content()
    assert row.locator("td[data-label=Rows]").text_content() == "1,234"
    columns = row.locator("td[data-label=Columns]")
    tab.wait_for_function("s => !s.textContent.includes('\u2026')",
                          arg=columns.element_handle())
    assert columns.text_content() == "3" and "label (" in columns.get_attribute("title")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC",
                        row.locator("td[data-label=Updated]").text_content())
    screenshot(tab, "acct_sources")

    for made in (source, other):
        tab.once("dialog", lambda dialog: dialog.accept())
        tab.locator(f"#sources tr[data-source='{made['id']}']").get_by_role(
            "button", name=re.compile("Delete")).click()
        tab.locator(f"#sources tr[data-source='{made['id']}']").wait_for(state="detached")
    tab.locator("#sources .empty").wait_for(state="visible")
    assert "plotline upload" in tab.locator("#sources .empty").text_content()
    r = account["client"].get(f"{DATA}/sources/{source['id']}", headers=account["headers"])
    assert r.status_code == 404
    assert errors == []


@single
def test_single_user_sources_page(single_server, page):
    tab, errors = page
    name = "solo " + new_username()
    with httpx.Client(base_url=single_server.url, timeout=10) as c:
        r = c.post(f"{DATA}/sources", json={"name": name, "columns": {"x": [1, 2, 3]}})
        assert r.status_code == 201, r.text
    tab.goto(f"{single_server.url}/sources")
    row = tab.locator(f"#sources tr[data-source='{r.json()['id']}']")
    row.wait_for()
    assert name in row.text_content()
    assert tab.locator("header .user").text_content() == "single-user mode"
    assert tab.locator("nav a").all_text_contents() == ["My plots", "Data sources"]
    screenshot(tab, "acct_single_user_sources")
    tab.goto(f"{single_server.url}/keys")
    assert "single-user mode" in tab.locator("main").text_content()
    assert errors == []


@multi
def test_narrow_and_dark(multi_server, account, browser):
    make_source(account, "narrow " + new_username())
    account["client"].post(f"{AUTH}/apikeys", headers=account["headers"], json={"name": "ci"})
    account["client"].post("/api/v1/docs/", headers=account["headers"],
                           json={"title": "A plot with a rather long title", "doc": None})
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 375, "height": 700},
                                      color_scheme=scheme)
        tab = context.new_page()
        try:
            sign_in(tab, multi_server, account)
            for path, ready in (("/", "table.plots"), ("/keys", "#keys[data-loaded]"),
                                ("/sources", "#sources[data-loaded]")):
                tab.goto(f"{multi_server.url}{path}")
                tab.wait_for_selector(ready)
                # nothing wider than the screen: the rows stack instead
                assert tab.evaluate("document.documentElement.scrollWidth") <= 375, path
                screenshot(tab, f"acct_{scheme}_375_{path.strip('/') or 'home'}")
            tab.context.clear_cookies()
            for path in ("/register", "/login"):
                tab.goto(f"{multi_server.url}{path}")
                tab.get_by_role("button").first.wait_for()
                screenshot(tab, f"acct_{scheme}_375_{path.strip('/')}")
        finally:
            context.close()


@multi
def test_error_page_in_the_browser(multi_server, account, page):
    tab, errors = page
    sign_in(tab, multi_server, account)
    response = tab.goto(f"{multi_server.url}/plots/0123456789abcdef")
    assert response is not None and response.status == 404
    assert tab.get_by_role("heading", name="Not found").is_visible()
    screenshot(tab, "acct_error_404")
    tab.get_by_role("link", name="Back to my plots").click()
    tab.get_by_role("heading", name="My plots").wait_for()
    only_http_errors(errors)

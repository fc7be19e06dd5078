"""The OWASP API Security Top 10 (2023), one group per item, against a real installation.

Where another file holds the full treatment of an item, its group here checks the item
across the whole API at once and the docstring names the rest (so a new route that forgets
a check fails here, not in a probe months later):

- API1 object-level authorization: every data and key route with someone else's id;
  tests/test_docs_access.py has the docs route x role matrix, tests/test_source_binding.py
  binding someone else's source.
- API2 authentication: every operation of the OpenAPI without, with bogus and with ended
  credentials; tests/test_auth_tokens.py forged JWTs, tests/test_auth_sessions.py sessions.
- API3 property-level authorization: fields a caller may not set, fields a viewer may not see.
- API4 resource consumption: body limits on every service, id lengths; decoded sizes and
  raster caps in tests/test_data_limits.py, socket limits in tests/test_push_security.py.
- API5 function-level authorization: readers of a published plot and its bound source may
  call no writing function.
- API6 sensitive flows: password guessing (tests/test_auth_security.py holds the rest).
- API7 SSRF: content naming internal URLs makes the server fetch nothing.
- API8 misconfiguration: security headers, no version banners, no tracebacks, no CORS.
- API9 inventory: the OpenAPI lists every API route; no docs UI, no internals on the port.
- API10 unsafe consumption: the bus refuses a client without credentials
  (tests/test_nats_auth.py); a forged patch naming a user is not obeyed.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid

import httpx
import pytest
from bokeh_docs import figure_doc
from conftest import person, start_install, stop_install
from servers import start_plotline
from test_nats_auth import refused

from services.common.names import SERVICE_PREFIXES

DOCS, DATA, AUTH = (SERVICE_PREFIXES[s] for s in ("docs", "data", "auth"))
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One multi-user installation on the embedded stores (the matrix checks decisions
    the services make, which do not depend on the store backend)."""
    installed = start_install(tmp_path_factory.mktemp("owasp"), "-m")
    yield installed
    stop_install(installed)


@pytest.fixture(scope="module")
def people(server) -> dict[str, dict]:
    return {"owner": person(server), "other": person(server),
            "anonymous": {"name": None, "headers": {}}}


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error", "detail"}, body
    return body["error"]


def new_source(http, owner: dict) -> dict:
    r = http.post(f"{DATA}/sources", headers=owner["headers"], json={
        "name": "matrix", "columns": {"x": [0.0, 1.0, 2.0], "y": [3.0, 4.0, 5.0]}})
    assert r.status_code == 201, r.text
    return r.json()


def new_doc(http, who: dict, **extra) -> dict:
    r = http.post(f"{DOCS}/", headers=who["headers"],
                  json={"doc": figure_doc(points=3), "title": f"matrix {uuid.uuid4().hex}",
                        **extra})
    assert r.status_code == 201, r.text
    return r.json()


def state_of_source(http, owner: dict, source_id: str) -> tuple:
    summary = http.get(f"{DATA}/sources/{source_id}", headers=owner["headers"]).json()
    rows = http.get(f"{DATA}/sources/{source_id}/data", headers=owner["headers"]).json()
    return summary["version"], summary["rows"], rows["columns"]


# every data route that names a source: (method, path after /sources/{id}, body, writes)
DATA_ROUTES = {
    "summary": ("GET", "", None, False),
    "data": ("GET", "/data", None, False),
    "downsample": ("GET", "/downsample?x=x&y=y&n=10", None, False),
    "aggregate": ("GET", "/aggregate?x=x&y=y&width=8&height=8", None, False),
    "append": ("POST", "/append", {"columns": {"x": [9.0], "y": [9.0]}}, True),
    "patch": ("POST", "/patch", {"patches": {"y": [[0, 99.0]]}}, True),
    "put_column": ("PUT", "/columns/z", {"values": [1.0, 2.0, 3.0]}, True),
    "replace": ("PUT", "/data", {"columns": {"x": [9.0], "y": [9.0]}}, True),
    "delete_column": ("DELETE", "/columns/y", None, True),
    "repair": ("POST", "/repair", None, True),
    "delete": ("DELETE", "", None, True),
}


def call(http, who: dict, route: str, source_id: str) -> httpx.Response:
    method, tail, body, _ = DATA_ROUTES[route]
    return http.request(method, f"{DATA}/sources/{source_id}{tail}", json=body,
                        headers=who["headers"])


def template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


# --- API1: broken object-level authorization ---------------------------------------------

def test_api1_the_matrix_names_every_data_route_with_a_source_id(server):
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    with_id = {(m.upper(), template(p)) for p, ops in spec["paths"].items()
               if p.startswith(f"{DATA}/sources/{{") for m in ops}
    covered = {(m, template(f"{DATA}/sources/{{source_id}}{t.split('?')[0]}"))
               for m, t, _, _ in DATA_ROUTES.values()}
    covered |= {(m, template(p)) for m, p in
                [("PUT", f"{DATA}/sources/{{id}}/columns/{{name}}"),
                 ("DELETE", f"{DATA}/sources/{{id}}/columns/{{name}}")]}
    assert with_id <= covered, f"data routes missing from the matrix: {with_id - covered}"


@pytest.mark.parametrize("route", list(DATA_ROUTES))
@pytest.mark.parametrize("role", ["other", "anonymous"])
def test_api1_someone_elses_source_is_out_of_reach(http, people, route, role):
    owner = people["owner"]
    source = new_source(http, owner)
    before = state_of_source(http, owner, source["id"])
    r = call(http, people[role], route, source["id"])
    # another user cannot tell it exists (404, as for a missing id); a stranger must sign in
    assert r.status_code == (404 if role == "other" else 401), r.text
    assert error_of(r) in {"not_found", "unauthorized"}
    assert state_of_source(http, owner, source["id"]) == before
    # and the answer is the same as for an id that does not exist
    missing = call(http, people[role], route, "0" * 16)
    assert (missing.status_code, error_of(missing)) == (r.status_code, error_of(r))


@pytest.mark.parametrize("role", ["other", "anonymous"])
def test_api1_someone_elses_api_key_cannot_be_revoked(http, people, role):
    owner = people["owner"]
    key = http.post(f"{AUTH}/apikeys", json={"name": "k"}, headers=owner["headers"]).json()
    r = http.delete(f"{AUTH}/apikeys/{key['id']}", headers=people[role]["headers"])
    assert r.status_code == (404 if role == "other" else 401)
    assert http.get(f"{AUTH}/me", headers={"Authorization": f"Bearer {key['key']}"}
                    ).status_code == 200
    listed = http.get(f"{AUTH}/apikeys", headers=people["other"]["headers"]).json()
    assert key["id"] not in {k["id"] for k in listed}


# --- API2: broken authentication ---------------------------------------------------------

# operations anyone may call (registering, signing in, the public key set)
PUBLIC = {("POST", f"{AUTH}/register"), ("POST", f"{AUTH}/login"), ("POST", f"{AUTH}/logout"),
          ("POST", f"{AUTH}/token"), ("GET", f"{AUTH}/verify"),
          ("GET", f"{AUTH}/.well-known/jwks.json"),
          # listings answer an anonymous caller with what is public to everyone: nothing
          ("GET", f"{DOCS}/"), ("GET", f"{DATA}/sources")}


def operations(server) -> list[tuple[str, str, dict]]:
    """(method, path, well-formed query) of every operation that needs a caller: the
    refusal must be about who is asking, not about a malformed request."""
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if (method.upper(), path) in PUBLIC:
                continue
            query = {p["name"]: 1 if p.get("schema", {}).get("type") == "integer" else "x"
                     for p in op.get("parameters", [])
                     if p.get("in") == "query" and p.get("required")}
            out.append((method.upper(), path, query))
    return out


def test_api2_every_operation_refuses_missing_bogus_and_ended_credentials(server, http):
    ended = person(server)
    assert http.post(f"{AUTH}/logout", headers=ended["headers"]).status_code == 204
    credentials = {"none": {}, "bogus jwt": {"Authorization": "Bearer a.b.c"},
                   "bogus key": {"Authorization": "Bearer pl_0000000000000000_x"},
                   "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
                   "signed out": ended["headers"]}
    ops = operations(server)
    assert len(ops) > 25  # every service's operations are in the combined document
    for method, path, query in ops:
        url = re.sub(r"\{[^}]+\}", "0" * 16, path)
        for what, headers in credentials.items():
            r = http.request(method, url, headers=headers, params=query, json={})
            assert r.status_code == 401, f"{method} {path} with {what}: {r.status_code}"
            assert r.headers.get("www-authenticate", "").startswith("Bearer")


# --- API3: broken object property-level authorization ------------------------------------

def test_api3_fields_a_caller_may_not_set_are_not_taken(http, people):
    owner, other = people["owner"], people["other"]
    doc = new_doc(http, owner, owner=other["name"], version=99, id="chosen-id",
                  readers=[other["name"]], published=True)
    got = http.get(f"{DOCS}/{doc['id']}", headers=owner["headers"]).json()
    assert got["owner"] == owner["name"] and got["version"] == 1
    assert got["id"] != "chosen-id"
    assert http.get(f"{DOCS}/{doc['id']}", headers=other["headers"]).status_code == 404
    assert http.get(f"{DOCS}/{doc['id']}").status_code == 401  # not published
    r = http.post(f"{DATA}/sources", headers=owner["headers"], json={
        "name": "p", "columns": {"x": [1.0]}, "owner": other["name"], "id": "mine"})
    assert r.status_code in (201, 422)
    if r.status_code == 201:
        assert r.json()["id"] != "mine"
        assert http.get(f"{DATA}/sources/{r.json()['id']}", headers=other["headers"]
                        ).status_code == 404


def test_api3_a_public_viewer_sees_no_acl_no_share_keys_no_secrets(http, people):
    owner = people["owner"]
    doc = new_doc(http, owner)
    share = http.post(f"{DOCS}/{doc['id']}/share", headers=owner["headers"]).json()
    http.put(f"{DOCS}/{doc['id']}/acl", headers=owner["headers"],
             json={"readers": [people["other"]["name"]], "writers": []})
    assert http.post(f"{DOCS}/{doc['id']}/publish", headers=owner["headers"]
                     ).status_code == 200
    seen = http.get(f"{DOCS}/{doc['id']}")
    assert seen.status_code == 200
    text = seen.text
    key = share.get("share_id") or share.get("key") or share.get("share")
    assert key and key not in text
    assert people["other"]["name"] not in text
    me = http.get(f"{AUTH}/me", headers=owner["headers"]).json()
    assert "password" not in me and "$argon2" not in str(me)
    keys = http.get(f"{AUTH}/apikeys", headers=owner["headers"]).json()
    assert all("hash" not in k and "key" not in k for k in keys)


# --- API4: unrestricted resource consumption ---------------------------------------------

def announce(server, path: str, headers: dict, size: int) -> tuple[int, dict]:
    """POST announcing a `size`-byte JSON body but sending 1 KiB of it: the answer must
    come without the server waiting for (or buffering) the rest."""
    host, port = server.url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
             f"Content-Length: {size}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b"{" + b" " * 1023)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body[body.index(b"{"):]) if b"{" in body else {}


@pytest.mark.parametrize("path", [f"{DOCS}/", f"{DATA}/sources", f"{AUTH}/register"])
def test_api4_every_service_refuses_a_body_over_its_limit_before_reading_it(server, people,
                                                                            path):
    status, body = announce(server, path, people["owner"]["headers"], 300 * 1024 * 1024)
    assert status == 413 and body.get("error") == "payload_too_large", (status, body)


def test_api4_ids_and_names_have_length_limits(http, people):
    h = people["owner"]["headers"]
    for url in (f"{DOCS}/{'a' * 5000}", f"{DATA}/sources/{'a' * 5000}"):
        r = http.get(url, headers=h)
        assert r.status_code in (404, 422) and error_of(r)
    r = http.post(f"{DATA}/sources", headers=h, json={"name": "n" * 5000, "columns": {}})
    assert r.status_code == 422
    r = http.post(f"{DOCS}/", headers=h, json={"doc": figure_doc(points=2), "title": "t" * 500})
    assert r.status_code == 422


# --- API5: broken function-level authorization -------------------------------------------

def test_api5_a_published_plots_readers_may_call_no_writing_function(http, people):
    owner = people["owner"]
    source = new_source(http, owner)
    doc = http.post(f"{DOCS}/", headers=owner["headers"], json={
        "doc": figure_doc(points=3, source_tag=source["id"]), "title": "published"}).json()
    assert http.post(f"{DOCS}/{doc['id']}/publish", headers=owner["headers"]
                     ).status_code == 200
    before = state_of_source(http, owner, source["id"])
    for role in ("other", "anonymous"):
        who = people[role]
        # reading is what publishing grants: the plot and its bound source
        assert http.get(f"{DOCS}/{doc['id']}", headers=who["headers"]).status_code == 200
        assert call(http, who, "data", source["id"]).status_code == 200
        for route, (_, _, _, writes) in DATA_ROUTES.items():
            if writes:
                r = call(http, who, route, source["id"])
                assert r.status_code in (401, 403), (role, route, r.status_code)
        for method, tail in (("PATCH", ""), ("DELETE", ""), ("POST", "/share"),
                             ("DELETE", "/publish"), ("PUT", "/acl"), ("POST", "/gc")):
            r = http.request(method, f"{DOCS}/{doc['id']}{tail}", headers=who["headers"],
                             json={"events": [], "readers": [], "writers": []})
            assert r.status_code in (401, 403), (role, method, tail, r.status_code)
    assert state_of_source(http, owner, source["id"]) == before
    assert http.get(f"{DOCS}/{doc['id']}", headers=owner["headers"]).json()["version"] == \
        doc["version"] + 1  # the publish itself, nothing else


# --- API6: unrestricted access to sensitive business flows -------------------------------

def test_api6_password_guessing_is_throttled_per_client(server, people):
    name = people["owner"]["name"]
    guesser = httpx.Client(base_url=server.url,
                           transport=httpx.HTTPTransport(local_address="127.0.0.9"))
    with guesser:
        statuses = [guesser.post(f"{AUTH}/login", json={"username": name,
                                                        "password": f"guess-{i}"}).status_code
                    for i in range(8)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    with httpx.Client(base_url=server.url) as owner:
        assert owner.post(f"{AUTH}/login", json={"username": name, "password": PASSWORD}
                          ).status_code == 200


# --- API7: server-side request forgery ---------------------------------------------------

def test_api7_urls_in_content_make_the_server_fetch_nothing(server, http, people):
    """A plot may name URLs (images, tiles, GeoJSON, AjaxDataSource); the browser fetches
    them, never the server. A listener on another loopback address records any visit."""
    listener = socket.socket()
    listener.bind(("127.0.0.7", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    url = f"http://127.0.0.7:{listener.getsockname()[1]}/internal"
    visits: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
                visits.append(str(peer))
                conn.close()
            except TimeoutError:
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        owner = people["owner"]
        doc_json = figure_doc(points=3)
        doc_json["roots"][0]["attributes"]["title"] = None
        doc_json["roots"].append({"type": "object", "name": "AjaxDataSource",
                                  "id": "ssrf-ajax", "attributes": {"data_url": url}})
        r = http.post(f"{DOCS}/", headers=owner["headers"], json={"doc": doc_json,
                                                                  "title": url})
        assert r.status_code in (201, 422), r.text
        if r.status_code == 201:
            doc_id = r.json()["id"]
            http.post(f"{DOCS}/{doc_id}/publish", headers=owner["headers"])
            for path in (f"/plots/{doc_id}", f"/embed/{doc_id}.js", f"{DOCS}/{doc_id}"):
                http.get(path)
        http.post(f"{DATA}/sources", headers=owner["headers"],
                  json={"name": url, "columns": {"u": [url]}})
        time.sleep(0.5)
    finally:
        stop.set()
        watcher.join()
        listener.close()
    assert visits == []


# --- API8: security misconfiguration -----------------------------------------------------

def test_api8_pages_send_a_content_security_policy_and_frame_rules(http, people):
    doc = new_doc(http, people["owner"])
    http.post(f"{DOCS}/{doc['id']}/publish", headers=people["owner"]["headers"])
    for path in ("/", "/login", f"/plots/{doc['id']}", "/plots/missing"):
        r = http.get(path, follow_redirects=True)  # a missing plot: to /login, then a page
        assert r.headers["content-type"].startswith("text/html"), path
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split(
            "script-src")[1].split(";")[0], (path, csp)
        assert "'unsafe-eval'" not in csp and "object-src 'none'" in csp
        assert "frame-ancestors 'self'" in csp
        assert r.headers.get("x-content-type-options") == "nosniff"
        assert r.headers.get("referrer-policy") == "same-origin"


def test_api8_api_answers_cannot_run_or_be_framed_and_show_no_versions(http, people):
    for r in (http.get(f"{DOCS}/", headers=people["owner"]["headers"]),
              http.get(f"{DATA}/sources/{'0' * 16}", headers=people["owner"]["headers"]),
              http.request("BREW", f"{DOCS}/"), http.get("/no/such/page")):
        assert r.headers.get("x-content-type-options") == "nosniff"
        assert r.headers.get("content-security-policy") == \
            "default-src 'none'; frame-ancestors 'none'" or \
            r.headers["content-type"].startswith("text/html")
        assert not re.search(r"\d+\.\d+", r.headers.get("server", "")), r.headers["server"]
        assert "x-powered-by" not in r.headers
        assert "Traceback" not in r.text


def test_api8_no_cross_origin_access_is_granted(http, people):
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    pre = http.options(f"{DOCS}/", headers=evil)
    assert "access-control-allow-origin" not in pre.headers
    r = http.get(f"{DOCS}/", headers={**people["owner"]["headers"],
                                      "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


# --- API9: improper inventory management -------------------------------------------------

# routes that are not API operations: pages, BokehJS files, the socket
NOT_API = re.compile(r"^(/|/login|/plots/.*|/embed/.*|/static/.*|/ws.*|/api/v1/\w+/openapi"
                     r"\.json|/api/v1/openapi\.json)$")


def test_api9_the_combined_openapi_lists_every_api_route_of_every_service(server):
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    documented = {template(p) for p in spec["paths"]}
    for service in ("auth", "docs", "data"):
        assert any(p.startswith(SERVICE_PREFIXES[service]) for p in documented), service
        own = httpx.get(f"{server.url}{SERVICE_PREFIXES[service]}/openapi.json").json()
        assert {template(p) for p in own["paths"]} <= documented


def test_api9_no_docs_ui_and_no_internals_on_the_public_port(http):
    for path in ("/docs", "/redoc", "/api/v1/docs/docs", "/healthz", "/readyz", "/metrics",
                 "/api/v1/data/metrics", "/api/v1/auth/healthz"):
        r = http.get(path)
        assert r.status_code in (401, 404), (path, r.status_code)
        assert "plotline_http_requests_total" not in r.text


# --- API10: unsafe consumption of APIs ---------------------------------------------------

async def test_api10_the_bus_refuses_a_client_without_credentials(tmp_path):
    """Services obey requests from the bus (a docs patch naming a user, say), so the bus
    takes them only from services: the embedded private nats-server refuses anyone
    without its generated credentials (per-service permissions: tests/test_nats_auth.py)."""
    installed = start_plotline(tmp_path, "-m")  # no --nats-url: the private nats-server
    try:
        url = re.search(r"private nats-server on (\S+)", installed.log.read_text()).group(1)
        assert await refused(url)
        assert await refused(url, user="plotline-docs", password="guessed")
    finally:
        installed.stop()

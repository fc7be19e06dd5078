"""The docs service's web pages: home (my plots), login, the viewer and its sandboxed frame,
the embed scripts, and BokehJS served from the bokeh wheel's own files (the account pages
are in account_pages.py).

HTML is rendered on the server from templates/ (string.Template; every value is escaped
unless it is `Safe`). The pages carry no inline script: page data travels in
`<script type="application/json">` and the small vanilla JS lives in templates/*.js.
Links are built from `root_path`, the URL prefix the app is mounted under.
"""

from __future__ import annotations

import hashlib
import html
import json
import string
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import bokeh
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from services.common.errors import NotFound, PlotlineError, Unauthorized
from services.common.identity import Principal
from services.common.names import API_PREFIX, MAX_SHARE_KEY, SERVICE_PREFIXES, VIEWER_PREFIX

from .access import Right, rights
from .service import DocsService

TEMPLATES = Path(__file__).parent / "templates"
BOKEH_STATIC = (Path(bokeh.__file__).parent / "server" / "static").resolve()
BOKEH_VERSION = bokeh.__version__
BOKEH_FILES = tuple(f"js/{name}.min.js" for name in
                    ("bokeh", "bokeh-gl", "bokeh-widgets", "bokeh-tables", "bokeh-api"))
IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE = "private, no-cache"
# Every page's policy: scripts only from here (no inline script, no inline event handlers,
# no eval: markup a document carries in a Div cannot run as the viewer), styles also
# inline (BokehJS injects its own), never framed by another site.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'self'")
# The frame a document's content is drawn in (frame.html): a sandbox with an opaque origin
# whoever frames or opens it (the `sandbox` directive, not only the <iframe> attribute), no
# network of its own, and eval allowed for the document's CustomJS: what runs there can
# neither read the viewer's cookies nor call the API as the viewer. Any site may frame it
# (/embed): it holds nothing until its parent sends a document.
FRAME_SANDBOX = "allow-scripts allow-popups allow-popups-to-escape-sandbox allow-downloads"
FRAME_CSP = (f"sandbox {FRAME_SANDBOX}; default-src 'none'; "
             "script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
             "img-src * data: blob:; media-src * data: blob:; font-src 'self' data:; "
             "connect-src 'none'; base-uri 'none'; form-action 'none'")
JS = "application/javascript; charset=utf-8"

# Our own small assets, read once; their URLs carry a digest so they can be cached long.
ASSETS = {name: (TEMPLATES / name).read_bytes()
          for name in ("pages.js", "viewer.js", "style.css", "frame.js", "frame.css")}
ASSET_TYPES = {".js": JS, ".css": "text/css; charset=utf-8"}
ASSET_DIGEST = hashlib.sha256(b"".join(ASSETS.values())).hexdigest()[:12]

router = APIRouter(include_in_schema=False)


# --- rendering ------------------------------------------------------------------------------

class Safe(str):
    """Text already escaped for where it goes (rendered templates, escaped JSON)."""


@cache
def _template(name: str) -> string.Template:
    return string.Template((TEMPLATES / name).read_text())


def render(name: str, **values: Any) -> Safe:
    """Fill a template; values that are not `Safe` are HTML-escaped."""
    return Safe(_template(name).substitute(
        {k: v if isinstance(v, Safe) else html.escape(str(v)) for k, v in values.items()}))


def script_json(data: bytes | Any) -> Safe:
    """JSON that is safe inside a <script> element or a JS file: `<`, `>` and `&` occur in
    JSON only inside strings, where their \\u escapes mean the same."""
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    for char, escaped in ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"),
                          ("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029")):
        raw = raw.replace(char, escaped)
    return Safe(raw.decode())


def prefix_of(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def asset_url(prefix: str, name: str) -> str:
    return f"{prefix}/static/plotline/{name}?v={ASSET_DIGEST}"


def bokeh_url(prefix: str, file: str) -> str:
    return f"{prefix}/static/bokeh/{quote(BOKEH_VERSION)}/{file}"


def multi_user(request: Request) -> bool:
    return request.app.state.authenticator.multi_user


async def visitor(request: Request) -> Principal | None:
    """Who is looking; a stale or broken credential just makes the visitor anonymous."""
    try:
        return await request.app.state.authenticator.resolve(request, "GET")
    except PlotlineError:
        return None


# The header's links: (page kind, path, text); shown to whoever has an account here.
NAV = (("home", "/", "My plots"), ("sources", "/sources", "Data sources"),
       ("keys", "/keys", "API keys"))


def nav_bar(request: Request, user: Principal | None, kind: str) -> Safe:
    """The header's links and who is signed in (single-user mode: no keys, no log out)."""
    if user is None:
        return Safe("")
    prefix, multi = prefix_of(request), multi_user(request)
    current = ' aria-current="page"'
    links = "".join(f'<a href="{html.escape(prefix + path)}"{current if name == kind else ""}>'
                    f"{text}</a>" for name, path, text in NAV if multi or name != "keys")
    who = (render("user.html", username=user.username,
                  logout_url=f"{prefix}{SERVICE_PREFIXES['auth']}/logout") if multi
           else Safe('<span class="user">single-user mode</span>'))
    return Safe(f'<nav class="nav" aria-label="Main">{links}</nav>\n  {who}')


def page(request: Request, title: str, body: Safe, *, user: Principal | None,
         status: int = 200, head: Safe = Safe(""), kind: str = "page") -> HTMLResponse:
    prefix = prefix_of(request)
    scripts = Safe(f'<script defer src="{html.escape(asset_url(prefix, "pages.js"))}">'
                   "</script>\n")
    text = render("base.html", title=title, css=asset_url(prefix, "style.css"),
                  head=Safe(scripts + head), page=kind, home=f"{prefix}/",
                  nav=nav_bar(request, user, kind), body=body)
    return HTMLResponse(text, status, headers={"Cache-Control": PRIVATE,
                                               "Content-Security-Policy": PAGE_CSP,
                                               "X-Frame-Options": "SAMEORIGIN"})


# What a visitor can do next, by status (error.html)
ERROR_HINTS = {
    401: "Log in, then open the link again.",
    403: "Ask the owner to share it with you, or log in as another user.",
    404: "Check the address, or ask whoever sent it for a new link.",
    500: "Try again in a moment; if it keeps happening, tell whoever runs this server.",
}


def error_page(request: Request, status: int, message: str, *, user: Principal | None,
               link: str | None = None, link_text: str = "Back to my plots") -> HTMLResponse:
    heading = "Not found" if status == 404 else f"Error {status}"
    body = render("error.html", heading=heading, message=message, status=status,
                  hint=ERROR_HINTS.get(status, ERROR_HINTS[500]),
                  link=link or f"{prefix_of(request)}/", link_text=link_text)
    return page(request, heading, body, user=user, status=status, kind="error")


# --- home and login ------------------------------------------------------------------------

def safe_next(prefix: str, value: str | None) -> str:
    """Where to go after logging in: only a path under our prefix (no open redirect)."""
    home = f"{prefix}/"
    if not value or len(value) > 2000 or "\\" in value or any(ord(c) < 33 for c in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//") or not value.startswith(home):
        return home
    return value


def login_url(prefix: str, next_path: str) -> str:
    return f"{prefix}/login?{urlencode({'next': next_path})}"


def login_page(request: Request, next_path: str) -> HTMLResponse:
    prefix = prefix_of(request)
    next_path = safe_next(prefix, next_path)
    body = render("login.html", api=f"{prefix}{SERVICE_PREFIXES['auth']}/login",
                  next=next_path, register=f"{prefix}/register?{urlencode({'next': next_path})}")
    return page(request, "Log in – Plotline", body, user=None, kind="login")


def when(timestamp: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds"), moment.strftime("%Y-%m-%d %H:%M UTC")


@router.get("/")
async def home(request: Request) -> Response:
    """My plots, or the login form for an anonymous visitor in multi-user mode."""
    prefix = prefix_of(request)
    user = await visitor(request)
    if user is None:
        return login_page(request, f"{prefix}/")
    docs: DocsService = request.app.state.docs
    rows = []
    for meta in await docs.list_for(user):
        iso, shown = when(meta["updated"])
        rows.append(render("home_row.html", url=f"{prefix}{VIEWER_PREFIX}/{meta['id']}",
                           title=meta["title"], owner=meta["owner"], version=meta["version"],
                           state="published" if meta["published"] else "private",
                           updated_iso=iso, updated=shown))
    content = (render("home_table.html", rows=Safe("".join(rows))) if rows else
               render("home_empty.html", api=f"{prefix}{SERVICE_PREFIXES['docs']}/"))
    return page(request, "My plots – Plotline", render("home.html", content=content),
                user=user, kind="home")


@router.get("/login")
async def login(request: Request) -> Response:
    """The login form; afterwards the browser goes to `next` (a path under the prefix)."""
    next_path = safe_next(prefix_of(request), request.query_params.get("next"))
    if not multi_user(request):
        return RedirectResponse(next_path, 303)
    return login_page(request, next_path)


# --- the viewer and the embed script -------------------------------------------------------

async def readable(request: Request, doc_id: str) -> tuple[Principal | None, dict, bytes]:
    """The visitor, the document's metadata and its JSON answer (cached per version)."""
    user = await visitor(request)
    share = request.query_params.get("share")
    if share is not None and len(share) > MAX_SHARE_KEY:
        raise NotFound("no such document")
    docs: DocsService = request.app.state.docs
    try:
        meta, body = await docs.read(doc_id, user, share)
    except Unauthorized:
        if share:  # a dead share link: there is nothing to log in for
            raise NotFound("no such document, or the link is no longer valid") from None
        raise
    return user, meta, body


def may_write(meta: dict[str, Any], user: Principal | None) -> bool:
    """The viewer sends its changes to the server only for writers (viewer.js)."""
    return rights(meta, user.username if user else None) >= Right.WRITE


@router.get(VIEWER_PREFIX + "/{doc_id}")
async def viewer(request: Request, doc_id: str) -> Response:
    """The viewer: title, owner, live mark (and the owner's controls) on the page; the
    document drawn by BokehJS in the sandboxed frame, kept live by viewer.js."""
    prefix = prefix_of(request)
    here = f"{prefix}{VIEWER_PREFIX}/{quote(doc_id)}"
    try:
        user, meta, body = await readable(request, doc_id)
    except Unauthorized:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(login_url(prefix, f"{here}{query}"), 303)
    except PlotlineError as exc:
        user = await visitor(request)
        if exc.status == 404:
            anonymous = user is None and multi_user(request)
            return error_page(
                request, 404, "There is no such plot, or you may not see it.", user=user,
                link=login_url(prefix, here) if anonymous else None,
                link_text="Log in" if anonymous else "Back to my plots")
        return error_page(request, exc.status, exc.detail, user=user)
    head = render("viewer_head.html", doc_id=doc_id, version=meta["version"],
                  viewer_js=asset_url(prefix, "viewer.js"))
    controls = Safe("")
    if user is not None and multi_user(request) and rights(meta, user.username) >= Right.ADMIN:
        controls = render("viewer_owner.html", api=f"{prefix}{SERVICE_PREFIXES['docs']}/{doc_id}",
                          published=str(bool(meta["published"])).lower(),
                          shares=len(meta.get("shares") or {}))
    iso, shown = when(meta["updated"])
    content = render("viewer.html", title=meta["title"], doc_id=doc_id,
                     owner=meta["owner"], state="published" if meta["published"] else "private",
                     updated_iso=iso, updated=shown, controls=controls,
                     version=meta["version"], payload=script_json(body),
                     api=f"{prefix}{API_PREFIX}", ws=f"{prefix}{SERVICE_PREFIXES['push']}",
                     share=request.query_params.get("share") or "",
                     write=str(may_write(meta, user)).lower(), frame=frame_url(prefix),
                     large=request.app.state.docs.settings.large_source_rows)
    return page(request, meta["title"], content, user=user, head=head, kind="viewer")


def frame_url(prefix: str) -> str:
    return f"{prefix}/frames/viewer?v={ASSET_DIGEST}"


@router.get("/frames/viewer")
async def frame(request: Request) -> Response:
    """The sandboxed frame viewer.js draws a document in (the same for every document)."""
    prefix = prefix_of(request)
    scripts = "".join(f'<script defer src="{html.escape(bokeh_url(prefix, f))}"></script>\n'
                      for f in BOKEH_FILES)
    text = render("frame.html", css=asset_url(prefix, "frame.css"), scripts=Safe(scripts),
                  frame_js=asset_url(prefix, "frame.js"))
    # (no frame-ancestors and no X-Frame-Options: /embed frames it on other sites)
    return HTMLResponse(text, headers={"Cache-Control": "public, max-age=86400",
                                       "Content-Security-Policy": FRAME_CSP})


@router.get("/embed/{doc_id}.js")
async def embed(request: Request, doc_id: str) -> Response:
    """Autoload script: `<script src=".../embed/ID.js?share=KEY"></script>` shows the
    document live right after itself, in a sandboxed frame from here (templates/embed.js)."""
    headers = {"Cache-Control": "no-cache", "Vary": "Cookie, Authorization",
               "X-Content-Type-Options": "nosniff"}
    try:
        _, meta, body = await readable(request, doc_id)
    except PlotlineError as exc:
        reason = ("authentication required: publish it or use a share link"
                  if exc.status == 401 else exc.detail)
        message = f"Plotline: cannot embed document {doc_id!r}: {reason} (HTTP {exc.status})"
        return Response(render("embed_error.js", message=script_json(message)), exc.status,
                        media_type=JS, headers=headers)
    text = render("embed.js", payload=script_json(body),
                  config=embed_config(request, ".."))
    return Response(text, media_type=JS, headers=headers)


def embed_config(request: Request, root: str) -> Safe:
    """Where embed.js finds the rest, relative to its own URL (which the host page knows)."""
    return script_json({"api": f"{root}{API_PREFIX}", "ws": f"{root}{SERVICE_PREFIXES['push']}",
                        "frame": f"{root}{frame_url('')}",
                        "viewer_js": f"{root}{asset_url('', 'viewer.js')}",
                        "large": request.app.state.docs.settings.large_source_rows})


@router.get("/embed.js")
async def embed_any(request: Request) -> Response:
    """Loader for `<div data-plotline-doc="ID" data-plotline-token="…">` elements: each is
    read with its scoped token (viewer.js), so the script itself is the same for everyone."""
    return Response(render("embed.js", payload=Safe("null"),
                           config=embed_config(request, ".")),
                    media_type=JS, headers={"Cache-Control": "public, max-age=300",
                                            "X-Content-Type-Options": "nosniff"})


# --- static files --------------------------------------------------------------------------

def _static_404() -> Response:
    return Response("not found\n", 404, media_type="text/plain")


@router.api_route("/static/bokeh/{version}/{path:path}", methods=["GET", "HEAD"])
async def bokeh_static(version: str, path: str) -> Response:
    """BokehJS from the installed wheel; the version in the URL makes it cacheable forever."""
    parts = path.split("/")
    if version != BOKEH_VERSION or any(p in ("", ".", "..") or "\\" in p or "\0" in p
                                       for p in parts):
        return _static_404()
    file = (BOKEH_STATIC / path).resolve()
    if not file.is_relative_to(BOKEH_STATIC) or not file.is_file():
        return _static_404()
    return FileResponse(file, headers={"Cache-Control": IMMUTABLE,
                                       "X-Content-Type-Options": "nosniff"})


@router.api_route("/static/plotline/{name}", methods=["GET", "HEAD"])
async def plotline_static(name: str) -> Response:
    """The pages' own script and style sheet."""
    if name not in ASSETS:
        return _static_404()
    return Response(ASSETS[name], media_type=ASSET_TYPES[Path(name).suffix],
                    headers={"Cache-Control": "public, max-age=86400",
                             "X-Content-Type-Options": "nosniff"})

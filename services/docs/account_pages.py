"""The account pages: register, my API keys, my data sources.

They are shells: the docs service cannot call auth's or data's code (separate services), so
pages.js fills them from the REST API with the visitor's cookie (and the CSRF header on
changes). The URLs it needs travel in data-* attributes. In single-user mode there are no
accounts: /register goes home and /keys says why there is nothing to see.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

# (the account rules auth enforces, shown beside the fields)
from services.common.names import DEFAULT_USER, MIN_PASSWORD, SERVICE_PREFIXES, USERNAME_RULE

from .pages import login_url, multi_user, page, prefix_of, render, safe_next, visitor

router = APIRouter(include_in_schema=False)


def api(request: Request, service: str, path: str = "") -> str:
    return f"{prefix_of(request)}{SERVICE_PREFIXES[service]}{path}"


@router.get("/register")
async def register(request: Request) -> Response:
    """The registration form; it logs the new account in and goes to `next`."""
    prefix = prefix_of(request)
    next_path = safe_next(prefix, request.query_params.get("next"))
    if not multi_user(request):
        return RedirectResponse(next_path, 303)
    body = render("acct_register.html", register_api=api(request, "auth", "/register"),
                  login_api=api(request, "auth", "/login"), next=next_path,
                  login=login_url(prefix, next_path), username_rule=USERNAME_RULE,
                  min_password=MIN_PASSWORD)
    return page(request, "Register – Plotline", body, user=None, kind="register")


async def signed_in_page(request: Request, path: str, title: str, kind: str,
                         body_of: str, api_url: str) -> Response:
    """A page for a signed-in visitor; an anonymous one logs in first and comes back."""
    prefix = prefix_of(request)
    user = await visitor(request)
    if user is None:
        return RedirectResponse(login_url(prefix, f"{prefix}{path}"), 303)
    return page(request, title, render(body_of, api=api_url), user=user, kind=kind)


@router.get("/keys")
async def keys(request: Request) -> Response:
    """My API keys: create (the secret is shown once), list, revoke."""
    if not multi_user(request):
        body = render("acct_single_user.html", heading="API keys", user=DEFAULT_USER,
                      home=f"{prefix_of(request)}/")
        return page(request, "API keys – Plotline", body, user=await visitor(request),
                    kind="keys")
    return await signed_in_page(request, "/keys", "API keys – Plotline", "keys",
                                "acct_keys.html", api(request, "auth", "/apikeys"))


@router.get("/sources")
async def sources(request: Request) -> Response:
    """My data sources: rows, columns, version, last change; delete."""
    return await signed_in_page(request, "/sources", "Data sources – Plotline", "sources",
                                "acct_sources.html", api(request, "data", "/sources"))

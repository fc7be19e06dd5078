"""One source of truth for names used by several parts: URL prefixes, NATS subjects, cookies.

Services, the embedded launcher, the nginx config, the Helm chart and the tests all read
these; tests check the generated copies (nginx, chart) against them.
"""

from __future__ import annotations

API_PREFIX = "/api/v1"

# Where each service's routes live under the combined URL prefix.
SERVICE_PREFIXES: dict[str, str] = {
    "auth": f"{API_PREFIX}/auth",
    "docs": f"{API_PREFIX}/docs",
    "data": f"{API_PREFIX}/data",
    "push": "/ws",
}
SERVICES = tuple(SERVICE_PREFIXES)

# JetStream stream that captures every event (subjects with four tokens) for recovery.
# Request subjects have three tokens, so they are never captured.
STREAM_NAME = "PLOTLINE"
EVENT_SUBJECTS = "plotline.*.*.*"

# Request-reply subjects (questions one service asks another).
AUTH_VERIFY = "plotline.auth.verify"
AUTH_JWKS = "plotline.auth.jwks"
DOCS_ACCESS = "plotline.docs.access"
DOCS_SOURCE_ACCESS = "plotline.docs.source_access"  # may U (or share key K) read source S?
DOCS_PATCH = "plotline.docs.patch"  # two-way: a browser's patch, forwarded by push
DATA_ACCESS = "plotline.data.access"  # may U (via doc D / share key K) read source S?

# Login cookie and its CSRF companion (double-submit: the companion is readable by JS and
# must be echoed in the CSRF header on unsafe requests that authenticate by cookie).
SESSION_COOKIE = "plotline_session"
CSRF_COOKIE = "plotline_csrf"
CSRF_HEADER = "X-CSRF-Token"

DEFAULT_USER = "defaultuser"
API_KEY_PREFIX = "pl_"


def event_subject(service: str, entity_id: str, verb: str) -> str:
    """`plotline.<service>.<id>.<verb>`; ids are generated token-safe (no dots or wildcards)."""
    return f"plotline.{service}.{entity_id}.{verb}"


def service_subjects(service: str, verb: str = "*") -> str:
    """Wildcard over every entity of one service, e.g. all revocations."""
    return f"plotline.{service}.*.{verb}"

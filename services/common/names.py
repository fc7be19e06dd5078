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

# A ColumnDataSource tagged `plotline:source=<id>` is bound to data source <id>: viewers fill
# it from the data service (docs finds the bindings, the viewer and the client make them).
SOURCE_TAG = "plotline:source="
# Arrow IPC stream bodies (data service uploads, appends and reads).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

# JetStream stream that captures every event (subjects with four tokens) for recovery.
# Request subjects have three tokens, so they are never captured.
STREAM_NAME = "PLOTLINE"
EVENT_SUBJECTS = "plotline.*.*.*"

# Request-reply subjects (questions one service asks another).
AUTH_VERIFY = "plotline.auth.verify"
AUTH_JWKS = "plotline.auth.jwks"
AUTH_SESSION = "plotline.auth.session"  # is the JWT session (`sid`) S still live?
DOCS_ACCESS = "plotline.docs.access"
DOCS_SOURCE_ACCESS = "plotline.docs.source_access"  # may U (or share key K) read source S?
DOCS_PATCH = "plotline.docs.patch"  # two-way: a browser's patch, forwarded by push
# Notice (not an event: three tokens, so not in the stream): a write of document D stopped
# binding sources it granted; push has their channels' listeners ask again. Under
# `plotline.notice`, not `plotline.docs`: each service's NATS user may subscribe to no other
# service's three-token subjects (those are its questions, nats_permissions).
DOCS_UNBOUND = "plotline.notice.unbound"
DATA_ACCESS = "plotline.data.access"  # may U (via doc D / share key K) read source S?

# Login cookie and its CSRF companion (double-submit: the companion is readable by JS and
# must be echoed in the CSRF header on unsafe requests that authenticate by cookie).
# Browsers cannot set headers on a websocket: a page offers its token as a subprotocol,
# `new WebSocket(url, [WS_PROTOCOL, WS_TOKEN_PREFIX + token])`, and push answers
# WS_PROTOCOL. (Not ?token=: a query string lands in proxies' error logs.)
WS_PROTOCOL = "plotline"
WS_TOKEN_PREFIX = "plotline.token."
SESSION_COOKIE = "plotline_session"
CSRF_COOKIE = "plotline_csrf"
CSRF_HEADER = "X-CSRF-Token"
# A scoped token's claims (POST /auth/doc-token): the one document, and "read" or "write"
SCOPE_CLAIM = "doc"
RIGHT_CLAIM = "right"

DEFAULT_USER = "defaultuser"
# Account rules: auth enforces them, the register page shows them.
USERNAME_RULE_RE = r"^[a-z0-9][a-z0-9_-]{2,31}$"
USERNAME_RULE = "3-32 characters: lowercase letters, digits, '_' and '-', starting alphanumeric"
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
API_KEY_PREFIX = "pl_"


def event_subject(service: str, entity_id: str, verb: str) -> str:
    """`plotline.<service>.<id>.<verb>`; ids are generated token-safe (no dots or wildcards)."""
    return f"plotline.{service}.{entity_id}.{verb}"


# Push's channels, `doc:<id>` and `data:<id>`: the events of one entity of a service.
CHANNEL_SERVICES = {"doc": "docs", "data": "data"}


def channel(kind: str, entity_id: str) -> str:
    """A channel's name, e.g. channel("data", source_id) (kind: a key of CHANNEL_SERVICES)."""
    return f"{kind}:{entity_id}"


def subject_entity(subject: str) -> str:
    """The entity id of an event subject (event_subject's `entity_id`)."""
    return subject.split(".")[2]


def service_subjects(service: str, verb: str = "*") -> str:
    """Wildcard over every entity of one service, e.g. all revocations."""
    return f"plotline.{service}.*.{verb}"


# The internal port of every process: health, readiness and metrics, for probes and
# Prometheus only. No Ingress or nginx route reaches it; the public port answers 404 here.
INTERNAL_PATHS = ("/healthz", "/readyz", "/metrics")
PUBLIC_PORT_NAME = "http"  # the chart's container/Service port names
INTERNAL_PORT_NAME = "internal"
INTERNAL_IP = "127.0.0.1"  # `plotline serve --internal-ip` default; --internal-port: --port + 1

# What deleting a document does with the data sources it binds (?data= on the delete):
# keep them, drop the orphans (those no other document binds), or force (drop them all).
DELETE_DATA_MODES = ("keep", "orphans", "force")

# Where a document's page is: VIEWER_PREFIX/<id> below the URL prefix (docs' pages, share
# links, the client's Session.page_url).
VIEWER_PREFIX = "/plots"

# The longest share key any way in takes (?share= on documents, sources and pages, and
# push's subscribe): the keys docs makes have 32 characters, so a longer one is never a key,
# only a way to make every service forward a large string.
MAX_SHARE_KEY = 100

# HTTP methods that get a metrics label of their own; any other is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def nats_user(service: str) -> str:
    """The NATS user each service authenticates as (embedded, stack and chart alike)."""
    return f"plotline-{service}"


def nats_permissions(service: str) -> dict[str, dict[str, list[str]]]:
    """What a service's NATS user may not do (deny lists, so a new question between services
    needs no change here): publish another service's events, answer (subscribe to)
    another service's questions, and, but for push, forward a browser's patch."""
    others = [s for s in SERVICES if s != service]
    publish = [f"plotline.{other}.*.*" for other in others]
    if service != "push":
        publish.append(DOCS_PATCH)
    return {"publish": {"deny": publish},
            "subscribe": {"deny": [f"plotline.{other}.*" for other in others]}}


def env_prefix(service: str) -> str:
    """The prefix of a service's settings variables: PLOTLINE_<SERVICE>_ (settings.py)."""
    return f"PLOTLINE_{service.upper()}_"


def nats_env(service: str) -> tuple[str, str]:
    """The variables carrying a service's NATS credentials (fields nats_user/nats_password)."""
    return f"{env_prefix(service)}NATS_USER", f"{env_prefix(service)}NATS_PASSWORD"

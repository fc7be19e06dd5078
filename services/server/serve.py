"""`plotline serve`: the embedded mode (all services + private NATS) or one service alone."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
from pathlib import Path
from typing import Any

from services.common.names import SERVICES, nats_user

from .applets import check_scripts, with_applets

# service -> (settings class, app factory); imported lazily so `serve auth` loads only auth
FACTORIES = {
    "auth": ("services.auth.config:AuthSettings", "services.auth.app:create_app"),
    "docs": ("services.docs.config:DocsSettings", "services.docs.app:create_app"),
    "data": ("services.data.config:DataSettings", "services.data.app:create_app"),
    "push": ("services.push.config:PushSettings", "services.push.app:create_app"),
}
AVAILABLE = tuple(s for s in SERVICES if s in FACTORIES)
STATELESS = {"push"}  # keeps nothing: no store to place

log = logging.getLogger("plotline.serve")


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def store_urls(service: str, args: argparse.Namespace) -> dict[str, Any]:
    """Where a service keeps its state, from --backend and -D (one store per service)."""
    data = Path(args.data_directory).expanduser().resolve()
    backend = "memory" if args.dev and not args.backend else (args.backend or "file")
    if backend == "memory":
        return {"kv_url": "memory://", "blob_url": "memory://"}
    blob = f"file://{data / 'blobs' / service}"
    if backend == "file":
        data.mkdir(parents=True, exist_ok=True)
        return {"kv_url": f"sqlite:///{data / (service + '.db')}", "blob_url": blob}
    if not args.redis_url:
        raise SystemExit(f"--backend {backend} needs --redis-url redis://host:port/db")
    # a `?prefix=ns:` on --redis-url lets several installations share one Redis
    base, _, query = args.redis_url.partition("?")
    namespace = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get("prefix", "")
    kv = f"{base.rstrip('/')}?prefix={namespace}plotline:{service}:"
    if backend == "redis":
        return {"kv_url": kv, "blob_url": blob}
    if not args.azure_connection_string:
        raise SystemExit("--backend azure needs --azure-connection-string")
    return {"kv_url": kv, "blob_url": f"azure://plotline-{service}",
            "azure_connection_string": args.azure_connection_string}


def build_settings(service: str, args: argparse.Namespace, nats_url: str | None,
                   embedded: bool, nats_password: str | None = None) -> Any:
    """Settings from the environment (PLOTLINE_<SERVICE>_*), overridden by explicit flags
    (and by the credentials of the private nats-server, when it runs)."""
    overrides: dict[str, Any] = {}
    if (embedded or args.backend or args.dev) and service not in STATELESS:
        overrides.update(store_urls(service, args))
    if nats_url:
        overrides["nats_url"] = nats_url
    if nats_password:
        overrides.update(nats_user=nats_user(service), nats_password=nats_password)
    if args.multi_user:
        overrides["multi_user"] = True
    if args.dev:
        overrides["dev"] = True
    if embedded:  # links in mails and share URLs point at this server
        overrides["public_url"] = f"http://{args.ip}:{args.port}{args.url_prefix}"
    if service == "auth" and args.url_prefix:
        overrides["cookie_path"] = args.url_prefix
    return _load(FACTORIES[service][0])(**overrides)


def run(args: argparse.Namespace) -> int:
    from .embedded import Embedded
    from .natsproc import NatsChild

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # the Azure SDK logs every request and its headers at INFO
        logging.getLogger("azure").setLevel(logging.WARNING)
    prefix = (args.url_prefix or "").rstrip("/")
    if prefix and not prefix.startswith("/"):
        raise SystemExit("--url-prefix must start with '/', e.g. --url-prefix /plots")
    args.url_prefix = prefix
    if args.internal_port is None:
        args.internal_port = args.port + 1
    scripts = check_scripts(args.script) if getattr(args, "script", None) else []
    _refuse_taken_port(args.ip, args.port)
    if args.internal_port:
        _refuse_taken_port(args.internal_ip, args.internal_port, "--internal-port")
    child = None
    nats_url = args.nats_url
    embedded = args.service is None
    names = AVAILABLE if embedded else (args.service,)
    if embedded and not nats_url:
        child = NatsChild(Path(args.data_directory).expanduser().resolve() / "nats", names)
        nats_url = child.start()
    try:
        passwords = child.passwords if child else {}
        settings = {n: build_settings(n, args, nats_url, embedded, passwords.get(n))
                    for n in names}
        apps = {n: _load(FACTORIES[n][1])(settings[n]) for n in names}
        app = Embedded(apps, prefix, after_shutdown=child.stop if child else None)
        # (-m, or PLOTLINE_<SERVICE>_MULTI_USER for one service, as the stack and chart set)
        multi = any(s.multi_user for s in settings.values())
        log.info("Plotline %s on http://%s:%d%s/ (%s mode)", "+".join(names), args.ip,
                 args.port, prefix, "multi-user" if multi else "single-user")
        # Documents are many small dicts: the default gen-0 threshold (700) makes the
        # collector run on nearly every patch; objects alive at start never need scanning.
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        if names == ("push",):  # alone, push runs on its own lean websocket server
            from services.push.standalone import run as run_push

            _event_loop_run(_with_internal(apps, args, run_push(apps["push"], args.ip,
                                                                 args.port)))
            return 0
        drain = max(s.drain_seconds for s in settings.values())
        main = _http_server(app, args, drain)
        if scripts:
            main = _with_applets(main, scripts, args)
        _event_loop_run(_with_internal(apps, args, main))
        return 0 if app.started else 1
    finally:
        if child:
            child.stop()


def _with_applets(main: Any, scripts: list[Path], args: argparse.Namespace) -> Any:
    """The server with its applets beside it (applets.py), once it answers."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(args.ip, args.ip)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    url = f"http://{host}:{args.port}{args.url_prefix}"
    ready = (f"http://{args.internal_ip}:{args.internal_port}/readyz" if args.internal_port
             else f"{url}/api/v1/openapi.json")
    log_dir = Path(args.data_directory).expanduser().resolve() / "applets"
    return with_applets(main, scripts, url, ready, log_dir)


def _refuse_taken_port(ip: str, port: int, option: str = "--port") -> None:
    """granian listens with SO_REUSEPORT (one socket per worker), so a second server on a
    taken port would silently share its traffic instead of failing: check first."""
    import socket

    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((ip, port))
        except OSError as exc:
            raise SystemExit(f"cannot listen on {ip}:{port}: {exc.strerror} (is another "
                             f"plotline serve running? choose another {option})") from None


def _event_loop_run(main: Any) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency; this only keeps odd platforms working
        import asyncio

        asyncio.run(main)
    else:
        uvloop.run(main)


async def _with_internal(apps: dict[str, Any], args: argparse.Namespace, main: Any) -> None:
    """Run `main` (the public server) with the internal port listening beside it."""
    from services.common.internal import start_internal

    try:
        internal = await start_internal(apps, args.internal_ip, args.internal_port)
    except BaseException:
        main.close()  # never started
        raise
    host, port = internal.sockets[0].getsockname()[:2]
    log.info("internal port (/healthz, /readyz, /metrics) on http://%s:%d", host, port)
    try:
        await main
    finally:
        internal.close()


async def _http_server(app: Any, args: argparse.Namespace, drain: float = 0.0) -> None:
    """Serve `app` with --server (granian or uvicorn) in this process and this event loop
    until SIGINT/SIGTERM. Both run in our loop, so the lifespan, the services and the
    private NATS child keep one owner: this process.

    granian is the default: its HTTP/1.1 and websocket handling is Rust (hyper), and per
    request it costs about half of what uvicorn costs, which is most of the hot read's time
    (bench/docs.py). uvicorn runs the same app (the design's reference ASGI server) for
    those who know it or need what it has (tests/test_e2e.py runs every scenario on it).
    """
    import asyncio
    import signal

    from services.common.internal import Stopping

    server = (_uvicorn if args.server == "uvicorn" else _granian)(app, args)
    loop = asyncio.get_running_loop()
    stopped = False

    def stop_now() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    def stop() -> None:
        """Not ready first; after the drain (a second signal ends it), stop accepting and
        finish what is in flight."""
        if Stopping.now or drain <= 0:
            Stopping.now = True
            return stop_now()
        Stopping.now = True  # /readyz 503; every answer closes its connection (embedded.py)
        log.info("stopping in %.1f s: not ready, each answer closes its connection", drain)
        loop.call_later(drain, stop_now)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await server.serve()


def _granian(app: Any, args: argparse.Namespace) -> Any:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    server = Server(
        app, address=args.ip, port=args.port, interface=Interfaces.ASGI, websockets=True,
        log_level=LogLevels.debug if args.verbose else LogLevels.info,
        log_access=args.verbose,
        # granian's records go to our handlers and format (the root logger's)
        log_dictconfig={"loggers": {"_granian": {"propagate": True},
                                    "granian.access": {"propagate": True}}})
    logging.getLogger("_granian").addFilter(_QuietExperimental())
    return server


def _uvicorn(app: Any, args: argparse.Namespace) -> Any:
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        # our signal handlers decide when to stop (the drain), not uvicorn's
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

        def stop(self) -> None:
            self.should_exit = True

    # log_config None: uvicorn's records go to our handlers and format (the root logger's)
    return Server(uvicorn.Config(
        app, host=args.ip, port=args.port, lifespan="on", log_config=None,
        log_level="debug" if args.verbose else "info", access_log=args.verbose))


class _QuietExperimental(logging.Filter):
    """granian labels its embedded server experimental at every start; we test what we use
    of it (tests/test_serve.py), so the warning would only alarm operators."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()

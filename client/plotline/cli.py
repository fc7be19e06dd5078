"""The `plotline` command: `serve` runs the server; the other verbs talk to one."""

from __future__ import annotations

import argparse
import sys

from services.common.names import INTERNAL_IP
from services.server import serve

from . import commands, content
from .cliutil import Verbs


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run Plotline (all services, or one of them)",
        description="Run Plotline. Without a service name: the embedded mode, every service "
        "in this process with a private nats-server and local stores under -D. With a "
        "name: that service alone, configured by PLOTLINE_<SERVICE>_* variables (what the "
        "Kubernetes Deployments run).")
    p.add_argument("service", nargs="?", choices=serve.AVAILABLE,
                   help="run only this service (production shape)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=5006, help="port (default: %(default)s)")
    p.add_argument("--internal-ip", default=INTERNAL_IP,
                   help="address of the internal port (default: %(default)s)")
    p.add_argument("--internal-port", type=int, metavar="PORT",
                   help="internal port: /healthz, /readyz and /metrics, which the public "
                   "port does not answer (default: --port + 1; 0: any free port, logged)")
    p.add_argument("--url-prefix", default="", metavar="/PREFIX",
                   help="serve everything under this path, e.g. /plots")
    p.add_argument("-D", "--data-directory", default="~/.plotline/data", metavar="DIR",
                   help="where the file backend, SQLite stores and JetStream keep their "
                   "data (default: %(default)s)")
    p.add_argument("-m", "--multi-user", action="store_true",
                   help="require accounts (default: single user 'defaultuser')")
    p.add_argument("--backend", choices=["memory", "file", "redis", "azure"],
                   help="storage backend (default: file; memory with --dev)")
    p.add_argument("--nats-url", help="use this NATS instead of starting a private one "
                   "(credentials: nats://user:password@host:port, or each service's "
                   "PLOTLINE_<SERVICE>_NATS_USER and _NATS_PASSWORD)")
    p.add_argument("--redis-url", help="Redis for --backend redis|azure")
    p.add_argument("--azure-connection-string", help="Azure Blob for --backend azure")
    p.add_argument("--dev", action="store_true",
                   help="development: memory backend, placeholder secrets allowed")
    p.add_argument("--script", action="append", default=[], metavar="APP.py",
                   help="run this Python script beside the server as an applet (repeatable):"
                   " its own process, with PLOTLINE_URL set, restarted if it exits, stopped"
                   " with the server; output in DIR/applets/<name>.log")
    p.add_argument("--server", choices=["granian", "uvicorn"], default="granian",
                   help="the ASGI server of the public port (default: %(default)s, the "
                   "faster; push alone always runs on its own websocket server)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs and access log")
    p.set_defaults(func=serve.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plotline", description="Plotline: a self-hosted plot server.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    verbs = Verbs(sub)
    commands.add_account_commands(verbs)
    content.add_content_commands(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

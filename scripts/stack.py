"""`make stack`: the local distributed stack, the production shape on one machine.

Starts, all on 127.0.0.1 and each on a free port: nats-server with JetStream (the venv's),
redis-server, Azurite's blob service (from node_modules, always --disableTelemetry), two
`plotline serve <service>` processes per service (REPLICAS), and nginx in front of them on
one port as the ingress. Each service is configured only by its PLOTLINE_<SERVICE>_*
environment, as the Helm chart configures it (deploy/helm/plotline/templates/_helpers.tpl,
`plotline.env`): NATS URL and credentials, Redis for its key-value store under its own
`?prefix=`, Azure blobs (Azurite) for docs and data, multi-user, JWT issuer/audience, public
URL. NATS accepts only the services: each has a user with a password generated at start,
kept in nats/nats-server.conf (0600) and handed to the service in its environment.

Each service process also listens on an internal port of its own (/healthz, /readyz,
/metrics; listed in stack.json) that nginx never routes to: through nginx those paths are
404s, as through the chart's Ingress.

Everything lives under one directory (default .stack/ in the repository): each server's
state and log in a subdirectory of its name, nginx's generated config in nginx/, and
stack.json (what runs, while it runs). The state is kept from one start to the next:
NATS's JetStream store, Redis's append-only file and Azurite's blobs and metadata, so a
restart keeps every account, document and source (--fresh starts empty). Redis runs with
`appendonly yes` and `appendfsync everysec`: Redis writes each command to the file before
it answers, so a crashed or killed Redis loses nothing acknowledged; only a crash of the
whole machine can lose up to the last second (`always` would fsync every write, at a
cost on every request; the chart's values offer both).

A process that dies is started again, as Kubernetes restarts a crashed container: with
the same ports, environment and state, after a back-off that doubles from 1 s to 30 s
while it keeps dying (its previous log kept beside as <name>.log.prev). SIGHUP to this
script restarts every service process one at a time, as a rolling update does (SIGTERM,
wait for it to exit, start it, wait until ready): with two replicas of each, no client
sees a failed request (tests/test_faults.py).

The servers are started by tests/servers.py's starters, each in a session of its own, so
Ctrl-C or SIGTERM reaches this script only, which then stops them by PID in order: nginx,
the services (they drain), Azurite, Redis, NATS. tests/test_e2e.py starts the same stack
through `start_stack`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from servers import (  # noqa: E402
    Server,
    start_azurite,
    start_nats,
    start_plotline,
    start_redis,
)

from services.common.names import (  # noqa: E402
    SERVICE_PREFIXES,
    SERVICES,
    env_prefix,
    nats_env,
    nats_user,
)
from services.server.natsproc import new_passwords  # noqa: E402

# Replicas per service: two of each, so that one can stop (a crash, a rolling restart)
# while the other serves. start_stack(replicas=) asks for others (bench/scale.py, and
# tests/test_faults.py's one-of-each stack, where a kill is felt). A service with more
# than one names them <name>-1, <name>-2, …, else just <name>; push always has numbers.
REPLICAS = {"auth": 2, "docs": 2, "data": 2, "push": 2}
BLOB_SERVICES = ("docs", "data")  # as the chart's plotline.blobServices
WS_TIMEOUT = "3600s"  # websockets are long-lived; the Ingress annotations say the same
STATE = ("nats", "redis", "azurite", "nginx")  # and each service process's own (--fresh)
NGINX_TEMPS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
MARKER = ".plotline-stack"  # only a directory holding it may have its state removed
APPENDFSYNC = "everysec"  # Redis: see the module's docstring
RESTART_BACKOFF = (1.0, 30.0)  # first and longest wait before starting a dead process again
SHUTDOWN_S = 25.0  # after SIGTERM, before SIGKILL: the chart's shutdownSeconds
DRAIN_S = 1.0  # after SIGTERM, each HTTP service answers this long, closing connections


@dataclass
class Stack:
    """A running stack; `servers` in start order (stopped in reverse); `starters` start
    each one again as it first started (its ports, environment and state)."""

    directory: Path
    url: str
    multi_user: bool
    servers: list[Server]
    starters: dict[str, Callable[[], Server]] = field(default_factory=dict)

    @property
    def push(self) -> list[Server]:
        return [s for s in self.servers if s.name.startswith("push-")]

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)

    def dead(self) -> Server | None:
        return next((s for s in self.servers if s.process.poll() is not None), None)

    def restart(self, name: str) -> Server:
        """Start `name` again (it must have exited) in its place in `servers`."""
        old = self.server(name)
        if old.process.poll() is None:
            raise RuntimeError(f"{name} is still running (PID {old.process.pid})")
        if old.log.exists():
            old.log.replace(old.log.with_name(old.log.name + ".prev"))
        again = self.starters[name]()
        again.name = name
        self.servers[self.servers.index(old)] = again
        self.write_state()
        return again

    def roll(self, name: str) -> Server:
        """Replace `name` as a rolling update replaces a pod: SIGTERM (it says not ready,
        stops accepting, finishes what is in flight, publishes its outbox, closes
        websockets with a reconnect hint), wait for it to exit, start it again; back once
        ready. Raises when it was still running SHUTDOWN_S after SIGTERM (then SIGKILLed),
        as Kubernetes kills a pod past its grace period."""
        old = self.server(name)
        old.stop(SHUTDOWN_S)
        if old.process.returncode == -signal.SIGKILL:
            raise RuntimeError(f"{name} was still running {SHUTDOWN_S:.0f} s after SIGTERM "
                               f"and was killed (log: {old.log})")
        return self.restart(name)

    def services(self) -> list[str]:
        """The service processes' names, in start order."""
        return [s.name for s in self.servers if s.internal_url]

    def write_state(self) -> None:
        (self.directory / "stack.json").write_text(json.dumps({
            "pid": os.getpid(), "url": self.url, "multi_user": self.multi_user,
            "servers": {s.name: {"pid": s.process.pid, "port": s.port, "url": s.url,
                                 "internal_url": s.internal_url, "log": str(s.log)}
                        for s in self.servers}}, indent=2) + "\n")

    def stop(self) -> None:
        _stop_all(self.servers)
        (self.directory / "stack.json").unlink(missing_ok=True)


def service_env(service: str, *, nats_url: str, nats_password: str, redis_url: str,
                azure: str, multi_user: bool, public_url: str) -> dict[str, str]:
    """The PLOTLINE_<SERVICE>_* variables the Helm chart gives this service."""
    p = env_prefix(service)
    user_var, password_var = nats_env(service)
    env = {p + "NATS_URL": nats_url, user_var: nats_user(service), password_var: nats_password,
           p + "MULTI_USER": str(multi_user).lower(),
           p + "ISSUER": "plotline", p + "AUDIENCE": "plotline"}
    if service in ("auth", "push"):  # nginx (on loopback) names the client it forwards
        env[p + "TRUSTED_PROXIES"] = '["127.0.0.1/32"]'
    if service != "push":
        env[p + "KV_URL"] = f"{redis_url}?prefix=plotline:{service}:"
        # (not the chart's: there the preStop sleep lets the Ingress drop the pod first;
        # this nginx learns of a stopping replica only from its answers, see
        # ServiceSettings.drain_seconds)
        env[p + "DRAIN_SECONDS"] = str(DRAIN_S)
    if service in BLOB_SERVICES:
        env[p + "BLOB_URL"] = f"azure://plotline-{service}"
        env[p + "AZURE_CONNECTION_STRING"] = azure
    if service in ("auth", "docs"):  # share links, embed scripts, verification mails
        env[p + "PUBLIC_URL"] = public_url
    if service == "auth":
        env[p + "COOKIE_SECURE"] = "false"  # plain http on loopback
    return env


def body_limit() -> int:
    """nginx's client_max_body_size: above every service's own limit (data's 256 MiB Arrow
    bodies), so a body just over a limit gets that service's JSON 413, not nginx's page."""
    from services.server.serve import FACTORIES, _load

    biggest = max(_load(settings).model_fields["max_body_bytes"].default
                  for settings, _ in FACTORIES.values())
    return biggest + (1 << 20)


def nginx_conf(root: Path, port: int, ports: dict[str, list[int]]) -> str:
    """The ingress: each prefix of SERVICE_PREFIXES to its service (push: websockets, to
    the replica with the fewest connections), everything else to docs (pages)."""
    temps = "".join(f"    {t}_temp_path {root}/tmp/{t};\n" for t in NGINX_TEMPS)
    upstreams = "".join(
        f"    upstream plotline_{name} {{\n"
        + ("        least_conn;\n        zone plotline_push 64k;\n" if name == "push"
           # data: one source's requests to one replica (its id is in the path), so its
           # appends meet in one group commit instead of racing each other's
           # compare-and-set from two replicas (bench/scale.py: 5x the CPU per append)
           else "        hash $uri consistent;\n        keepalive 16;\n" if name == "data"
           else "        keepalive 16;\n")
        # max_fails=0 (ingress-nginx's default too): nginx's own, 1 in 10 s, marks a
        # replica down after one refused connect. For push a websocket then held the mark
        # long after: a restarted replica got one new socket per 10 s, and when the other
        # died every page met 502s for ~12 s (tests/test_viewer_stack.py). For the others,
        # a rolling restart stopped the second replica while the first, back and ready,
        # was still marked down: "no live upstreams", 502. A refused connect is still
        # passed on to the next server at once, POSTs too (nothing was sent).
        + "".join(f"        server 127.0.0.1:{p} max_fails=0;\n" for p in service_ports)
        + "    }\n" for name, service_ports in ports.items())
    forwarded = ("proxy_set_header Host $http_host;",  # keeps the port (links, Origin)
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;")
    # a location with a proxy_set_header of its own inherits none of the server's
    websocket = " ".join(("proxy_pass http://plotline_push;", *forwarded,
                          "proxy_set_header Upgrade $http_upgrade;",
                          "proxy_set_header Connection $connection_upgrade;",
                          "proxy_buffering off;", f"proxy_read_timeout {WS_TIMEOUT};",
                          f"proxy_send_timeout {WS_TIMEOUT};"))
    locations = ""
    for name, prefix in SERVICE_PREFIXES.items():  # the prefix itself and what lies below
        body = websocket if name == "push" else f"proxy_pass http://plotline_{name};"
        if name == "data":  # stream large Arrow uploads through instead of spooling them
            body += " proxy_request_buffering off;"
        locations += (f"        location = {prefix} {{ {body} }}\n"
                      f"        location ^~ {prefix}/ {{ {body} }}\n")
    server_headers = "".join(f"        {h}\n" for h in forwarded)
    return (
        "# Generated by scripts/stack.py for this run; edits are lost at the next start.\n"
        f"worker_processes auto;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        # no query strings: ?token= and ?share= carry credentials
        "    log_format plotline '$remote_addr [$time_local] \"$request_method $uri "
        "$server_protocol\" $status $body_bytes_sent $request_time \"$http_user_agent\"';\n"
        f"    access_log {root}/access.log plotline;\n{temps}"
        f"    client_max_body_size {body_limit()};\n"
        "    map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n"
        f"{upstreams}"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        proxy_http_version 1.1;\n"
        f"{server_headers}"
        '        proxy_set_header Connection "";  # keep-alive to the upstreams\n'
        f"{locations}"
        "        location / { proxy_pass http://plotline_docs; }\n"
        "    }\n"
        "}\n")


def start_nginx(root: Path, port: int, ports: dict[str, list[int]],
                detach: bool = False) -> Server:
    """nginx (Debian package) with the generated config, waited for until docs' OpenAPI
    document answers 200 through it (the route to docs works)."""
    binary = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if not binary:
        raise RuntimeError("nginx not found; `make install` installs it")
    for temp in NGINX_TEMPS:
        (root / "tmp" / temp).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(nginx_conf(root, port, ports))
    log = root / "nginx.log"
    argv = [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log"),
            "-g", "daemon off;"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                start_new_session=detach)
    server = Server("nginx", proc, port, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}:\n{log.read_text()}"
                               f"{(root / 'error.log').read_text()}")
        try:
            answer = httpx.get(f"{server.url}{SERVICE_PREFIXES['docs']}/openapi.json",
                               timeout=1)
        except httpx.HTTPError:
            answer = None
        if answer is not None and answer.status_code == 200:
            if not answer.headers.get("server", "").startswith("nginx"):
                server.stop()  # something else holds the port
                raise RuntimeError(f"port {port} is answered by something other than nginx")
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"nginx did not reach docs on port {port} in 30 s")


def _parallel(starters: dict[str, Callable[[], Server]], started: list[Server]) -> None:
    """Run the starters at once; each server joins `started` (and so is stopped on any
    failure) as soon as it is up, under its stack name."""
    def run(name: str, starter: Callable[[], Server]) -> None:
        server = starter()
        server.name = name
        started.append(server)

    order = list(starters)

    pool = ThreadPoolExecutor(len(starters))
    futures = [pool.submit(run, name, fn) for name, fn in starters.items()]
    try:
        for future in futures:
            future.result()  # the first failure, if any
    finally:  # even when interrupted: every server that comes up is in `started` first
        pool.shutdown(wait=True)
        started.sort(key=lambda s: order.index(s.name) if s.name in order else -1)


def _stop_all(servers: list[Server]) -> None:
    """In reverse start order: nginx, then every service at once (each drains, publishes
    its outbox, closes its sockets), then Azurite, Redis and NATS."""
    running = [s for s in servers if s.internal_url and s.process.poll() is None]
    signalled = False
    for server in reversed(servers):
        if not server.internal_url:
            server.stop()
            continue
        if not signalled:  # one SIGTERM each: a second would cut its drain short
            for each in running:
                each.process.terminate()
            signalled = True
        _wait(server)


def _wait(server: Server, timeout: float = SHUTDOWN_S) -> None:
    try:
        server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()


def _refuse_running(directory: Path) -> None:
    """One stack per directory: its servers' state would be pulled from under it."""
    try:
        pid = json.loads((directory / "stack.json").read_text())["pid"]
        alive = "stack.py" in Path(f"/proc/{pid}/cmdline").read_text()
    except (OSError, ValueError, KeyError):
        return
    if alive and pid != os.getpid():
        raise SystemExit(f"a stack is already running from {directory} (PID {pid}); "
                         f"stop it first (Ctrl-C there, or kill {pid})")


def process_names(replicas: dict[str, int]) -> list[str]:
    """One name per service process, in start order (see REPLICAS)."""
    return [name if replicas[name] == 1 and name != "push" else f"{name}-{i}"
            for name in REPLICAS for i in range(1, replicas[name] + 1)]


def start_stack(directory: Path, port: int = 5006, multi_user: bool = True,
                detach: bool = False, fresh: bool = False,
                replicas: dict[str, int] | None = None) -> Stack:
    """Start the whole stack under `directory`, on the state a previous run left there
    (`fresh`: removed first); on any failure or interruption, stop what was started and
    re-raise."""
    directory = directory.resolve()
    counts = {**REPLICAS, **(replicas or {})}
    _refuse_running(directory)
    if directory.is_dir() and any(directory.iterdir()) and not (directory / MARKER).exists():
        raise SystemExit(f"{directory} is neither empty nor a stack's directory; "
                         "choose another --dir")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("scripts/stack.py: its state; --fresh removes it\n")
    if fresh:
        for name in (*STATE, *process_names(counts)):
            shutil.rmtree(directory / name, ignore_errors=True)
    url = f"http://127.0.0.1:{port}"
    # Hold nginx's port until nginx starts: nginx would fail only later, and less clearly,
    # and meanwhile a service picking a free port must not be handed this one (it was: the
    # service then answered on nginx's port, and every route but docs' was a 404).
    try:
        hold = _hold(port)  # (listening: no socket with SO_REUSEADDR may bind it either)
    except OSError as exc:
        raise SystemExit(f"cannot listen on 127.0.0.1:{port}: {exc.strerror} "
                         "(choose another --port)") from None
    started: list[Server] = []
    holds: dict[str, socket.socket] = {}
    passwords = new_passwords(SERVICES)
    starters: dict[str, Callable[[], Server]] = {}

    def infra_starters(ports: dict[str, int | None]) -> dict[str, Callable[[], Server]]:
        return {"nats": lambda: start_nats(_mkdir(directory / "nats"), detach=detach,
                                           passwords=passwords, port=ports.get("nats")),
                "redis": lambda: start_redis(_mkdir(directory / "redis"), detach=detach,
                                             port=ports.get("redis"),
                                             appendfsync=APPENDFSYNC),
                "azurite": lambda: start_azurite(_mkdir(directory / "azurite"),
                                                 detach=detach, port=ports.get("azurite"))}

    try:
        _parallel(infra_starters({}), started)
        infra = {s.name: s for s in started}
        starters.update(infra_starters({name: s.port for name, s in infra.items()}))
        names = process_names(counts)

        # each service's port is held from now until it starts: ports picked one by one
        # while others start could repeat, and two services would then share one
        # (and its internal port)
        holds.update({key: _hold() for name in names for key in (name, f"{name}:internal")})

        def service(name: str) -> Callable[[], Server]:
            kind = name.partition("-")[0]
            env = service_env(kind, nats_url=infra["nats"].url, nats_password=passwords[kind],
                              redis_url=infra["redis"].url,
                              azure=infra["azurite"].connection_string or "",
                              multi_user=multi_user, public_url=url)

            port, internal = (holds[key].getsockname()[1]
                              for key in (name, f"{name}:internal"))

            def start() -> Server:
                holds[name].close()
                holds[f"{name}:internal"].close()
                return start_plotline(directory / name, kind, env=env, detach=detach,
                                      port=port, internal_port=internal)

            starters[name] = start
            return start

        _parallel({name: service(name) for name in names}, started)
        _check_identities([s for s in started if s.name in names])
        ports: dict[str, list[int]] = {}
        for name in names:
            ports.setdefault(name.partition("-")[0], []).append(
                next(s.port for s in started if s.name == name))
        hold.close()
        starters["nginx"] = lambda: start_nginx(directory / "nginx", port, ports, detach)
        started.append(starters["nginx"]())
    except BaseException:
        _stop_all(started)
        raise
    finally:
        for held in (hold, *holds.values()):
            held.close()
    stack = Stack(directory, url, multi_user, started, starters)
    stack.write_state()
    return stack


def _check_identities(services: list[Server]) -> None:
    """Each port is answered by the service started on it, and by it alone (a port two
    servers shared would answer for one or the other: ask on a few new connections)."""
    for server in services:
        kind = server.name.partition("-")[0]
        for _ in range(4):
            said = httpx.get(f"{server.internal_url}/healthz", timeout=5).json().get("services")
            if said != [kind]:
                raise RuntimeError(f"port {server.port} of {server.name} is answered by "
                                   f"{said}: two servers share it")


def _hold(port: int = 0) -> socket.socket:
    """A listening socket on `port` (0: a free one), which no other socket may take."""
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        hold.bind(("127.0.0.1", port))
        hold.listen(1)
    except OSError:
        hold.close()
        raise
    return hold


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def describe(stack: Stack) -> str:
    lines = [f"Plotline local distributed stack ({'multi' if stack.multi_user else 'single'}"
             f"-user) in {stack.directory}"]
    for s in stack.servers:
        log = s.log.relative_to(stack.directory)
        if s.name == "nginx":
            log = f"{log}, nginx/error.log, nginx/access.log"
        internal = f" (internal {s.internal_url})" if s.internal_url else ""
        lines.append(f"  {s.name:8} pid {s.process.pid:<8} {s.url:44} {log}{internal}")
    lines.append(f"\nPlotline is at {stack.url}/  (Ctrl-C or SIGTERM stops everything; "
                 f"kill -HUP {os.getpid()} restarts every service, one replica at a time)")
    return "\n".join(lines)


def roll_all(stack: Stack) -> None:
    """A rolling restart of every service process, one at a time (as `kubectl rollout
    restart` does): each picks up the code as it is now while its twin serves."""
    started = time.monotonic()
    for name in stack.services():
        began = time.monotonic()
        try:
            again = stack.roll(name)
        except RuntimeError as exc:  # the supervisor starts what exited
            print(f"rolling restart: {exc}", file=sys.stderr, flush=True)
            continue
        print(f"  {name} restarted (pid {again.process.pid}) in "
              f"{time.monotonic() - began:.1f} s", flush=True)
    print(f"rolling restart done in {time.monotonic() - started:.1f} s", flush=True)


def supervise(stack: Stack, roll: list[bool] | None = None) -> None:
    """Start each process that dies again, as Kubernetes would, until interrupted: the
    wait doubles from RESTART_BACKOFF[0] to [1] while it keeps dying within a minute.
    Whenever `roll` holds a request (SIGHUP), restart every service, one at a time."""
    first, longest = RESTART_BACKOFF
    waits: dict[str, float] = {}
    up_since: dict[str, float] = {}
    roll = [] if roll is None else roll
    while True:
        if roll:
            roll.clear()
            print("SIGHUP: a rolling restart of every service, one replica at a time",
                  flush=True)
            roll_all(stack)
        dead = stack.dead()
        if dead is None:
            time.sleep(0.5)
            continue
        name = dead.name
        if time.monotonic() - up_since.get(name, 0.0) > 60:
            waits[name] = first  # it had run a while: no back-off
        wait = waits.get(name, first)
        print(f"{name} exited with {dead.process.returncode} (log: {dead.log}); starting it "
              f"again in {wait:.0f} s", file=sys.stderr, flush=True)
        time.sleep(wait)
        waits[name] = min(longest, wait * 2)
        try:
            again = stack.restart(name)
        except RuntimeError as exc:  # it would not start: try again after the next wait
            print(f"{name} did not start: {exc}", file=sys.stderr, flush=True)
            continue
        up_since[name] = time.monotonic()
        print(f"{name} running again (pid {again.process.pid})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__, epilog="Routes through nginx: " + ", ".join(
            f"{prefix} -> {name}" for name, prefix in SERVICE_PREFIXES.items())
        + ", everything else -> docs (pages); each service runs "
        + ", ".join(f"{n} x{k}" for n, k in REPLICAS.items()) + ".")
    parser.add_argument("--dir", type=Path, default=REPO / ".stack",
                        help="where state, logs and nginx.conf go (default: %(default)s); "
                             "the previous run's state there is kept (a directory that "
                             "is not empty must be one this script made)")
    parser.add_argument("--fresh", action="store_true",
                        help="start empty: remove the previous run's accounts, documents, "
                             "sources and events first")
    parser.add_argument("--port", type=int, default=5006,
                        help="nginx's port, the stack's one URL (default: %(default)s)")
    parser.add_argument("--single-user", action="store_true",
                        help="every request acts as defaultuser (default: multi-user)")
    args = parser.parse_args(argv)

    signalled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if signalled:  # the first one is already stopping everything, each by its timeout
            print("still stopping…", file=sys.stderr, flush=True)
            return
        signalled.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    roll: list[bool] = []
    signal.signal(signal.SIGHUP, lambda _s, _f: roll.append(True))
    stack, status = None, 0
    try:
        print(f"starting the stack in {args.dir.resolve()} …", flush=True)
        t0 = time.monotonic()
        stack = start_stack(args.dir, args.port, not args.single_user, detach=True,
                            fresh=args.fresh)
        print(describe(stack), f"(started in {time.monotonic() - t0:.1f} s)", sep="\n",
              flush=True)
        supervise(stack, roll)
    except KeyboardInterrupt:
        if stack is None:
            print("interrupted while starting; what had started is stopped", file=sys.stderr)
    except RuntimeError as exc:  # a server that would not start (its log is in the message)
        print(f"the stack did not start: {exc}", file=sys.stderr)
        status = 1
    finally:
        signalled.append(0)  # from here on, Ctrl-C and SIGTERM only print
        if stack:
            print("stopping…", flush=True)
            stack.stop()
            print("stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

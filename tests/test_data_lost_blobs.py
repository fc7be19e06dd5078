"""A chunk the blob store lost: detected, reported, the rest of the source readable, and a
repair the owner can run (Redis for manifests and Azure Blob on Azurite, the production
shape, with the data service restarted so that nothing is served from its memory).

How a blob goes missing here: deleted through the blob store's own API behind Plotline's
back. That is what a store that loses an acknowledged blob looks like to Plotline (Azurite
did, SIGKILLed before saving its metadata), without depending on the timing of a kill.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import backend_args, new_username, start_install, stop_install

from services.common.stores import open_blob

DATA, AUTH = "/api/v1/data", "/api/v1/auth"
PASSWORD = "correct horse battery"


class Install:
    """One installation that can be restarted on the same stores."""

    def __init__(self, tmp: Path, args: list[str]) -> None:
        self.tmp, self.args, self.runs = tmp, args, 0
        self.server = self._start()

    def _start(self):  # type: ignore[no-untyped-def]
        self.runs += 1
        return start_install(self.tmp / f"run{self.runs}", "-m", *self.args)

    def restart(self) -> None:
        stop_install(self.server)
        self.server = self._start()

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def install(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    running = Install(tmp_path_factory.mktemp("lost"),
                      backend_args("azure", request, uuid.uuid4().hex))
    yield running
    stop_install(running.server)


def person(url: str) -> dict[str, str]:
    name = new_username()
    httpx.post(f"{url}{AUTH}/register", json={"username": name, "password": PASSWORD})
    token = httpx.post(f"{url}{AUTH}/login", json={"username": name, "password": PASSWORD}
                       ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_a_lost_chunk_leaves_the_rest_readable_and_the_owner_repairs_it(
        install, azurite_connection_string):
    owner, other = person(install.url), person(install.url)
    c = httpx.Client(base_url=install.url, timeout=30, headers=owner)
    first = [float(i) for i in range(1000)]
    r = c.post(f"{DATA}/sources", json={"name": new_username(), "columns": {"x": first}})
    assert r.status_code == 201, r.text
    source = r.json()["id"]
    second = [float(i) for i in range(1000, 2000)]
    assert c.post(f"{DATA}/sources/{source}/append",
                  json={"columns": {"x": second}}).status_code == 200
    assert c.post(f"{DATA}/sources/{source}/append",
                  json={"columns": {"x": [2000.0, 2001.0, 2002.0]}}).status_code == 200
    blobs = open_blob("azure://plotline-data", azure_connection_string=azurite_connection_string)
    try:
        chunks = await blobs.list(f"sources/{source}/")
        assert len(chunks) == 2  # the first 1000 rows, the next 1000 (the last 3: inline)
        await blobs.delete(chunks[0])
    finally:
        await blobs.close()
    install.restart()  # nothing from memory now (a new port, the same stores)
    c = httpx.Client(base_url=install.url, timeout=30, headers=owner)

    # read: every row but the lost ones, which are null and named
    r = c.get(f"{DATA}/sources/{source}/data")
    assert r.status_code == 200 and r.headers["x-plotline-lost-rows"] == "0:1000"
    body = r.json()
    assert body["rows"] == 2003 and body["lost"] == [[0, 1000]]
    assert body["columns"]["x"][:1000] == [None] * 1000
    assert body["columns"]["x"][1000:] == [*second, 2000.0, 2001.0, 2002.0]
    assert c.get(f"{DATA}/sources/{source}").json()["lost"] == [[0, 1000]]
    # the views of large data draw the rows that are left, and name the lost ones
    r = c.get(f"{DATA}/sources/{source}/downsample", params={"x": "x", "y": "x", "n": 10})
    assert r.status_code == 200 and r.headers["x-plotline-lost-rows"] == "0:1000", r.text
    assert r.json()["lost"] == [[0, 1000]] and min(r.json()["x"]) == 1000.0
    assert max(r.json()["x"]) == 2002.0 and None not in r.json()["x"]
    r = c.get(f"{DATA}/sources/{source}/aggregate",
              params={"x": "x", "y": "x", "width": 4, "height": 4})
    assert r.status_code == 200 and r.headers["x-plotline-lost-rows"] == "0:1000"
    assert sum(map(sum, r.json()["grid"])) == 1003  # every row that is left, once
    # reported: log, metric, /readyz (still ready: the rest serves)
    internal = install.server.internal_url
    ready = httpx.get(f"{internal}/readyz").json()
    assert ready["ready"] is True and ready["checks"]["data.blobs"] is False
    assert re.search(r"^plotline_data_lost_chunks_total 1\.0$",
                     httpx.get(f"{internal}/metrics").text, re.M)
    assert f"source {source}: chunk {chunks[0]} is missing" in install.server.log.read_text()

    # writes that build on the rows are refused, saying what to do; to others, as ever
    r = c.post(f"{DATA}/sources/{source}/append", json={"columns": {"x": [1.0]}})
    assert r.status_code == 409 and r.json()["error"] == "data_lost"
    assert "0:1000" in r.json()["detail"] and "repair" in r.json()["detail"]
    r = httpx.post(f"{install.url}{DATA}/sources/{source}/append", headers=other,
                   json={"columns": {"x": [1.0]}})
    assert r.status_code == 404  # (not a 409 that would tell a stranger it exists)
    assert httpx.post(f"{install.url}{DATA}/sources/{source}/repair",
                      headers=other).status_code == 404
    assert httpx.post(f"{install.url}{DATA}/sources/{source}/repair").status_code == 401
    assert c.get(f"{DATA}/sources/{source}/data").json()["rows"] == 2003  # unchanged

    # the owner's repair drops the lost rows; the source is whole and writable again
    r = c.post(f"{DATA}/sources/{source}/repair")
    assert r.status_code == 200, r.text
    assert r.json()["dropped_rows"] == 1000 and r.json()["rows"] == 1003
    r = c.get(f"{DATA}/sources/{source}/data")
    assert "x-plotline-lost-rows" not in r.headers and "lost" not in r.json()
    assert r.json()["columns"]["x"] == [*second, 2000.0, 2001.0, 2002.0]
    assert c.post(f"{DATA}/sources/{source}/append",
                  json={"columns": {"x": [10.0]}}).status_code == 200
    assert httpx.get(f"{internal}/readyz").json()["checks"]["data.blobs"] is True
    r = c.post(f"{DATA}/sources/{source}/repair")  # nothing lost: nothing dropped
    assert r.status_code == 200 and r.json()["dropped_rows"] == 0 and r.json()["rows"] == 1004


def test_a_viewer_of_a_damaged_source_is_told_which_rows_are_missing(
        install, azurite_connection_string, page):
    """A published plot whose source lost a chunk, opened in Chromium: the plot draws what
    is left and the page says which rows of which source are missing and who can repair
    it; after the owner's repair the notice goes away by itself (the repair's event)."""
    import asyncio
    import math
    from concurrent.futures import ThreadPoolExecutor

    from bokeh_docs import figure_doc
    from browsing import screenshot, wait_for

    tab, errors = page
    owner = person(install.url)
    c = httpx.Client(base_url=install.url, timeout=30, headers=owner)
    name = new_username()
    rows = [float(i) for i in range(2000)]
    r = c.post(f"{DATA}/sources", json={"name": name, "columns": {
        "x": rows[:1000], "y": [math.sin(v / 50) for v in rows[:1000]]}})
    source = r.json()["id"]
    assert c.post(f"{DATA}/sources/{source}/append", json={"columns": {
        "x": rows[1000:], "y": [math.sin(v / 50) for v in rows[1000:]]}}).status_code == 200
    doc = c.post("/api/v1/docs/", json={"title": name, "doc": figure_doc(
        points=3, title="damaged", source_tag=source)}).json()["id"]
    assert c.post(f"/api/v1/docs/{doc}/publish").status_code == 200

    async def lose_first_chunk() -> None:
        blobs = open_blob("azure://plotline-data",
                          azure_connection_string=azurite_connection_string)
        try:
            await blobs.delete((await blobs.list(f"sources/{source}/"))[0])
        finally:
            await blobs.close()

    with ThreadPoolExecutor(1) as thread:  # (Playwright's sync API holds this thread's loop)
        thread.submit(asyncio.run, lose_first_chunk()).result()
    install.restart()
    tab.goto(f"{install.url}/plots/{doc}")
    tab.wait_for_selector("#plotline-status[data-state=live]", timeout=30_000)
    notice = tab.locator("#plotline-notice")
    notice.wait_for(state="visible", timeout=15_000)
    text = notice.text_content() or ""
    assert f"rows 0–999 of “{name}” (source {source})" in text, text
    assert f"/api/v1/data/sources/{source}/repair" in text and "gaps" in text
    screenshot(tab, "viewer_damaged_source")
    c = httpx.Client(base_url=install.url, timeout=30, headers=owner)
    assert c.post(f"{DATA}/sources/{source}/repair").json()["dropped_rows"] == 1000
    wait_for(lambda: notice.is_hidden())
    screenshot(tab, "viewer_damaged_source_repaired")
    assert errors == []

"""The README's "From any language" walkthrough, run as written (bash, curl, jq, and the
Node.js example it calls) against a real multi-user server: a README that drifts from the
API fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import Server, start_plotline

ROOT = Path(__file__).parent.parent
MARK = "<!-- walkthrough:curl"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_plotline(tmp_path_factory.mktemp("walkthrough"), "-m")
    yield srv
    srv.stop()


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(MARK):]
    return after[after.index("```sh\n") + 6:after.index("\n```", after.index("```sh"))]


def test_the_curl_and_node_walkthrough_runs_as_written(server):
    for tool in ("bash", "curl", "jq", "node"):
        assert shutil.which(tool), f"{tool} is needed by the walkthrough"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                               "PLOTLINE": server.url})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    opened = re.fullmatch(rf"open {re.escape(server.url)}/plots/(\w+)", lines[0])
    assert opened, lines[0]
    assert [json.loads(line) for line in lines[1:4]] == [
        {"version": v, "rows": v} for v in (2, 3, 4)]
    assert json.loads(lines[4]) == {"t": [0, 1, 2, 3], "c": [20.5, 21.5, 22.5, 23.5]}
    assert re.fullmatch(rf"{re.escape(server.url)}/plots/\w+", lines[5])  # node's plot
    assert lines[6] == "streamed 20 rows; 20 appended events arrived, in order"
    # the curl plot is public: a browser with no account opens it
    assert httpx.get(f"{server.url}/plots/{opened.group(1)}").status_code == 200


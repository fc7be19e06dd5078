"""How a source is stored (manifest, blob chunks, the inline tail, the rollover offset) against
what its rows must be (columns.stream / patch, which tests/test_data_semantics.py holds to
Bokeh's behaviour).

Random sequences of appends (single rows and batches, with and without rollover), patches and
column changes go through DataService on real stores and a real NATS; after every step a
repository with a cold cache reads the source back from the stores and must find exactly the
rows the column functions give. The limits are set small, so tails spill into blobs, chunks
get merged and rollovers cut into the tail many times in each sequence.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from services.common.bus import Bus
from services.common.identity import Principal
from services.common.stores import open_blob, open_kv
from services.data import columns as cols
from services.data.config import DataSettings
from services.data.repository import DataRepository
from services.data.service import DataService

OWNER = Principal("alice", "test")
STEPS = 120


@pytest.fixture(params=["sqlite+local", "redis+azure"])
def store_urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict]:
    if request.param == "sqlite+local":
        return f"sqlite:///{tmp_path / 'kv.db'}", f"file://{tmp_path / 'blobs'}", {}
    ns = uuid.uuid4().hex
    return (f"{request.getfixturevalue('redis_url')}?prefix=t{ns}:", f"azure://t{ns}",
            {"azure_connection_string": request.getfixturevalue("azurite_connection_string")})


def rows(rng: random.Random, start: int, n: int) -> dict[str, list]:
    return {"i": list(range(start, start + n)),
            "x": [rng.choice([0.5, -1.25, float(start + k)]) for k in range(n)],
            "s": [rng.choice(["", "a", f"row {start + k}", None]) for k in range(n)]}


@pytest.mark.parametrize("seed", range(4))
async def test_stored_rows_follow_every_change(store_urls, nats_url, seed):
    kv_url, blob_url, blob_kw = store_urls
    kv, blobs = open_kv(kv_url), open_blob(blob_url, **blob_kw)
    bus = await Bus.connect(nats_url, "data")
    await bus.ensure_stream()
    settings = DataSettings(inline_tail_bytes=700, max_chunks=5, warm_up=False)
    service = DataService(settings, DataRepository(kv, blobs, 1 << 30), bus)
    rng = random.Random(seed)
    try:
        expected = cols.table_from_json(rows(rng, 0, 3), {"s": "string"})
        source = (await service.create(OWNER, "t", expected, None))["id"]
        counter, spilled, cut, blob_names = 3, 0, 0, set()
        for step in range(STEPS):
            u = rng.random()
            if u < 0.8:  # mostly small appends, as a live plot streams them
                n = rng.choice([0, 1, 1, 1, 1, 2, 3, 40])
                rollover = rng.choice([None, None, None, 0, 2, 7, 30])
                batch = json.loads(json.dumps(rows(rng, counter, n)))
                counter += n
                await service.append(source, OWNER, batch, rollover)
                expected = cols.stream(expected, cols.json_batch(expected.schema, batch),
                                       rollover)
                what = f"append {n} rows, rollover {rollover}"
            elif u < 0.93 and expected.num_rows:
                k = rng.randrange(expected.num_rows)
                patches = {"x": [[k, -7.5]],
                           "s": [[{"start": 0, "stop": k + 1}, ["p"] * (k + 1)]]}
                await service.patch(source, OWNER, patches)
                expected = cols.patch(expected, patches)
                what = f"patch {patches}"
            else:
                column = pa.table({"x": pa.array(
                    [rng.random() for _ in range(expected.num_rows)], pa.float64())})
                await service.set_column(source, OWNER, "x", column)
                expected = cols.put_column(expected, "x", column.column(0))
                what = "replace column x"
            cold = DataRepository(kv, blobs, 1 << 30)
            found = await cold.get(source)
            assert found is not None
            m = found[0]
            got = await cold.load(m)
            assert got.to_pydict() == expected.to_pydict(), f"seed {seed} step {step}: {what}"
            assert m["rows"] == expected.num_rows and m["version"] == step + 2
            tail = [c for c in m["chunks"] if "inline" in c]
            assert len(tail) <= 1 and (not tail or m["chunks"][-1] is tail[0])
            assert all(len(c["inline"]) <= settings.inline_tail_bytes for c in tail)
            assert len(m["chunks"]) <= settings.max_chunks + 1
            assert m["offset"] == 0 or m["offset"] < m["chunks"][0]["rows"]
            names = {c["blob"] for c in m["chunks"] if "blob" in c}
            spilled += what.startswith("append") and bool(names - blob_names)
            blob_names = names
            cut += m["offset"] > 0
        # the sequence went through the paths this test is for
        assert spilled and cut, (spilled, cut)
    finally:
        await bus.close()
        await kv.close()
        await blobs.close()

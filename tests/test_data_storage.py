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


async def test_concurrent_appends_are_grouped_each_with_its_own_version_and_event(
        tmp_path, nats_url):
    """Appends that reach a source together are written as one commit (DataService.append's
    group commit), yet each keeps what it had alone: its own version and answer, its own
    `appended` event with seq = that version and the row count after it, in arrival order;
    an append that may not write, or whose rows are bad, fails alone."""
    import asyncio

    from services.common.errors import NotFound
    from services.common.names import event_subject
    from services.data.columns import DataError

    kv, blobs = open_kv(f"sqlite:///{tmp_path / 'kv.db'}"), open_blob(f"file://{tmp_path / 'b'}")
    bus = await Bus.connect(nats_url, "data")
    await bus.ensure_stream()
    service = DataService(DataSettings(inline_tail_bytes=700, max_chunks=5, warm_up=False),
                          DataRepository(kv, blobs, 1 << 30), bus)
    events: list = []
    try:
        made = await service.create(OWNER, "t", cols.table_from_json({"i": [0]}, {}), 25)
        source = made["id"]
        await bus.subscribe(event_subject("data", source, "appended"),
                            lambda subject, event: _record(events, event))
        stranger = Principal("mallory", "test")
        calls = []
        for k in range(1, 61):
            if k == 20:
                calls.append(service.append(source, stranger, {"i": [-1]}, None))
            elif k == 40:
                calls.append(service.append(source, OWNER, {"i": ["not a number"]}, None))
            else:  # every 7th with a rollover of its own, the rest the source's (25)
                calls.append(service.append(source, OWNER, {"i": [k, k]},
                                            10 if k % 7 == 0 else None))
        before = _grouping()
        answers = await asyncio.gather(*calls, return_exceptions=True)
        commits, appended = (a - b for a, b in zip(_grouping(), before, strict=True))

        assert isinstance(answers[19], NotFound), answers[19]
        assert isinstance(answers[39], DataError), answers[39]
        ok = [a for a in answers if isinstance(a, dict)]
        assert len(ok) == 58
        # versions in arrival order, dense, after the create's 1
        assert [a["version"] for a in ok] == list(range(2, 60))
        expected = cols.table_from_json({"i": [0]}, {})
        for k, answer in zip([k for k in range(1, 61) if k not in (20, 40)], ok, strict=True):
            expected = cols.stream(expected, cols.table_from_json({"i": [k, k]}, {}),
                                   10 if k % 7 == 0 else 25)
            assert answer["rows"] == expected.num_rows, k
        cold = DataRepository(kv, blobs, 1 << 30)
        m = (await cold.get(source))[0]
        assert (await cold.load(m)).to_pydict() == expected.to_pydict()
        assert m["version"] == 59
        # they were grouped: fewer commits than appends (58, and the 2 refused in groups)
        assert appended == 60 and commits < 30, (commits, appended)

        for _ in range(100):
            if len(events) >= 58:
                break
            await asyncio.sleep(0.05)
        assert [e.seq for e in events] == list(range(2, 60))
        assert [e.data["rows"] for e in events] == [a["rows"] for a in ok]
        assert [e.data["columns"]["i"][0] for e in events] == [
            k for k in range(1, 61) if k not in (20, 40)]
    finally:
        await bus.close()
        await kv.close()
        await blobs.close()


def _grouping() -> tuple[float, float]:
    from prometheus_client import REGISTRY

    return (REGISTRY.get_sample_value("plotline_data_appends_per_commit_count") or 0.0,
            REGISTRY.get_sample_value("plotline_data_appends_per_commit_sum") or 0.0)


async def _record(events: list, event) -> None:  # type: ignore[no-untyped-def]
    events.append(event)


async def test_a_key_sent_twice_in_one_group_appends_once(tmp_path, nats_url):
    import asyncio

    kv, blobs = open_kv(f"sqlite:///{tmp_path / 'kv.db'}"), open_blob(f"file://{tmp_path / 'b'}")
    bus = await Bus.connect(nats_url, "data")
    await bus.ensure_stream()
    service = DataService(DataSettings(warm_up=False), DataRepository(kv, blobs, 1 << 30), bus)
    try:
        source = (await service.create(OWNER, "t", cols.table_from_json({"i": [0]}, {}),
                                       None))["id"]
        answers = await asyncio.gather(
            service.append(source, OWNER, {"i": [1]}, None, "k1"),
            service.append(source, OWNER, {"i": [2]}, None),
            service.append(source, OWNER, {"i": [1]}, None, "k1"))
        assert answers == [{"version": 2, "rows": 2}, {"version": 3, "rows": 3},
                           {"version": 2, "rows": 2}]
        m = (await DataRepository(kv, blobs, 1 << 30).get(source))[0]
        assert m["keys"] == [["k1", 2, 2]]
        assert (await service.repo.load(m)).to_pydict() == {"i": [0, 1, 2]}
    finally:
        await bus.close()
        await kv.close()
        await blobs.close()

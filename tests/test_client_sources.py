"""Remote data sources from Python (`Session.data_source` -> `DataSource`), against a real
multi-user server: what each method stores is read back over plain REST, bad input is a
PlotlineError that changes nothing, and another user's source is out of reach."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from bokeh.models import ColumnDataSource
from conftest import new_username
from plotline import PlotlineError, Session
from servers import Server, start_plotline

PASSWORD = "correct horse battery"


pytestmark = pytest.mark.usefixtures("plotline_home")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> Iterator[Server]:
    srv = start_plotline(tmp_path_factory.mktemp("sources"), "-m", "--nats-url", nats_url)
    yield srv
    srv.stop()


def session(server: Server) -> Session:
    name = new_username()
    s = Session(server.url)
    s.register(name, PASSWORD)
    s.login(name, PASSWORD, save=False)
    return s


def rest_rows(s: Session, source_id: str) -> dict:
    """The source's rows as the REST API gives them (not through DataSource)."""
    r = httpx.get(f"{s.root_url}/api/v1/data/sources/{source_id}/data",
                  headers={"Authorization": f"Bearer {s.token}"})
    r.raise_for_status()
    return r.json()["columns"]


def test_create_from_each_kind_of_columns(server: Server) -> None:
    with session(server) as s:
        expected = {"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]}
        kinds = {"dict": expected,
                 "numpy": {"x": np.array([1, 2, 3]), "y": np.array([0.5, 1.5, 2.5])},
                 "pandas": pd.DataFrame(expected),
                 "arrow": pa.table(expected),
                 "bokeh": ColumnDataSource(expected)}
        try:
            import polars as pl
            kinds["polars"] = pl.DataFrame(expected)
        except ImportError:  # (polars is not a dependency: tested where it is installed)
            pass
        for kind, data in kinds.items():
            src = s.data_source(f"from {kind}", data)
            assert src.rows == 3 and src.columns() == ["x", "y"], kind
            assert rest_rows(s, src.id) == expected, kind
            assert src.dtypes() == {"x": "int64", "y": "float64"}, kind


def test_stream_patch_add_remove_read_back(server: Server) -> None:
    with session(server) as s:
        src = s.data_source("live", {"t": [0, 1], "v": [0.0, 1.0]}, rollover=5)
        first = src.version
        # small plain rows go as JSON, arrays and frames as Arrow: both keep the rollover
        assert src.stream({"t": [2, 3], "v": [2.0, 3.0]}) == first + 1
        assert src.stream(pd.DataFrame({"t": [4, 5], "v": [4.0, float("nan")]})) == first + 2
        assert src.rows == 5
        rows = src.to_arrow().to_pydict()
        assert rows["t"] == [1, 2, 3, 4, 5]
        assert rows["v"][:4] == [1.0, 2.0, 3.0, 4.0] and math.isnan(rows["v"][4])
        # a rollover of the call's own wins for that call
        src.stream({"t": [6], "v": [6.0]}, rollover=2)
        assert src.to_pandas()["t"].tolist() == [5, 6]
        src.patch({"v": [(0, -1.0)], "t": [(slice(0, 2), [50, 60])]})
        assert rest_rows(s, src.id)["t"] == [50, 60]
        assert rest_rows(s, src.id)["v"][0] == -1.0
        src.add("w", np.array([7, 8]))
        assert src.columns() == ["t", "v", "w"]
        src.remove("w")
        assert src.columns() == ["t", "v"]
        assert src.to_arrow(["t"], start=1).to_pydict() == {"t": [60]}


def test_large_transfers_go_in_chunks_with_progress(server: Server) -> None:
    with session(server) as s:
        s.chunk_rows = 10_000
        n = 35_000
        calls: list[tuple[int, int]] = []
        src = s.data_source("big", {"x": np.arange(n), "y": np.arange(n) * 0.5},
                            progress=lambda done, total: calls.append((done, total)))
        assert [c[0] for c in calls] == [10_000, 20_000, 30_000, 35_000]
        assert {c[1] for c in calls} == {n} and src.rows == n
        calls.clear()
        src.stream({"x": np.arange(n, n + 25_000), "y": np.zeros(25_000)},
                   progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (25_000, 25_000) and len(calls) == 3
        read: list[tuple[int, int]] = []
        table = src.to_arrow(progress=lambda done, total: read.append((done, total)))
        assert table.num_rows == n + 25_000 and table["x"].to_pylist()[-1] == n + 24_999
        assert read and read[-1][0] == read[-1][1]


def test_downsample_and_aggregate(server: Server) -> None:
    with session(server) as s:
        x = np.arange(20_000, dtype=float)
        src = s.data_source("wave", {"x": x, "y": np.sin(x / 500)})
        line = src.downsample("x", "y", n=400)
        assert 0 < len(line["x"]) <= 400 and line["x"] == sorted(line["x"])
        window = src.downsample("x", "y", n=100, x_range=(1000, 2000))
        assert min(window["x"]) >= 1000 and max(window["x"]) <= 2000
        raster = src.aggregate("x", "y", width=40, height=20)
        assert raster["grid"].shape == (20, 40)
        assert np.nansum(raster["grid"]) == 20_000
        assert raster["x_range"] == (0.0, 19_999.0)


def test_open_by_name_and_id(server: Server) -> None:
    with session(server) as s:
        made = s.data_source("named", {"a": [1]})
        assert s.data_source("named").id == made.id
        assert s.data_source(id=made.id).rows == 1
        s.data_source("named", {"a": [2]})
        with pytest.raises(PlotlineError) as ambiguous:
            s.data_source("named")
        assert ambiguous.value.status == 409
        with pytest.raises(PlotlineError) as missing:
            s.data_source("never made")
        assert missing.value.status == 404


def test_bad_input_is_an_error_and_changes_nothing(server: Server) -> None:
    with session(server) as s:
        src = s.data_source("strict", {"a": [1, 2]})
        version = src.version
        for bad in ({"a": ["text"]}, {"b": [1]}, {"a": [1], "b": [2]}):
            with pytest.raises(PlotlineError) as err:
                src.stream(bad)
            assert err.value.status == 422, bad
        with pytest.raises(PlotlineError) as err:
            src.add("c", [1, 2, 3])  # one value too many
        assert err.value.status == 422
        with pytest.raises(PlotlineError) as err:
            src.patch({"a": [(9, 1)]})  # past the end
        assert err.value.status == 422
        assert src.describe()["version"] == version
        assert rest_rows(s, src.id) == {"a": [1, 2]}
        with pytest.raises(PlotlineError) as err:
            s.data_source("ragged", {"a": [1, 2], "b": [1]})
        assert err.value.code == "invalid_data"
        with pytest.raises(PlotlineError):
            s.data_source("odd", object())


def test_another_users_source_is_out_of_reach(server: Server) -> None:
    with session(server) as alice, session(server) as mallory:
        src = alice.data_source("private", {"a": [1, 2]})
        with pytest.raises(PlotlineError) as err:
            mallory.data_source(id=src.id)
        assert err.value.status == 404
        # a handle made with alice's description but mallory's session cannot act either
        from plotline.sources import DataSource
        stolen = DataSource(mallory, src.meta)
        for act in (lambda: stolen.stream({"a": [3]}), lambda: stolen.to_arrow(),
                    lambda: stolen.patch({"a": [(0, 9)]}), stolen.delete,
                    lambda: stolen.downsample("a", "a")):
            with pytest.raises(PlotlineError) as err:
                act()
            assert err.value.status == 404
        assert rest_rows(alice, src.id) == {"a": [1, 2]}


def test_bind_tags_a_column_data_source_and_keeps_rows_out_of_the_document(server: Server) -> None:
    from bokeh.plotting import figure

    with session(server) as s:
        src = s.data_source("bound", {"x": [1, 2, 3], "y": [3, 1, 2]})
        cds = src.bind(ColumnDataSource({"x": [9], "y": [9]}))
        assert cds.tags == [f"plotline:source={src.id}"] and cds.data == {"x": [], "y": []}
        p = figure()
        p.line("x", "y", source=cds)
        doc = s.publish(p, "bound plot")
        # the stored document holds no rows, and the docs service knows the binding
        stored = s.document(doc["id"])["doc"]
        assert f"plotline:source={src.id}" in str(stored)
        assert "[1, 2, 3]" not in str(stored)

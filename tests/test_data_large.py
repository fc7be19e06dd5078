"""services.data.large: downsampling (tsdownsample) and abstract rendering (datashader)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from tsdownsample import LTTBDownsampler, MinMaxDownsampler, MinMaxLTTBDownsampler

from services.data import large
from services.data.large import LargeDataError, aggregate, downsample, is_sorted, to_png

LIBRARY = {"minmaxlttb": MinMaxLTTBDownsampler, "lttb": LTTBDownsampler,
           "minmax": MinMaxDownsampler}


@pytest.fixture(scope="module")
def walk() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 300_000
    x = np.sort(rng.uniform(0.0, 1e4, n))
    y = rng.standard_normal(n).cumsum()
    return x, y


def direct(method: str, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    return LIBRARY[method]().downsample(x, y, n_out=n)


# ------------------------------------------------------------------ downsample


@pytest.mark.parametrize("method", large.METHODS)
@pytest.mark.parametrize("n", [4, 100, 2000, 30_000])
def test_downsample_matches_tsdownsample(walk, method, n):
    x, y = walk
    gx, gy = downsample(x, y, n, method)
    idx = direct(method, x, y, n)
    assert np.array_equal(gx, x[idx]) and np.array_equal(gy, y[idx])
    assert len(gx) <= n
    assert not np.shares_memory(gx, x) and not np.shares_memory(gy, y)


@pytest.mark.parametrize("dtype", ["int64", "int32", "float32", "datetime64[ms]"])
def test_downsample_other_x_dtypes(walk, dtype):
    _, y = walk
    x = np.arange(len(y)).astype(dtype)
    for method in large.METHODS:
        gx, gy = downsample(x, y, 500, method)
        idx = direct(method, x, y, 500)
        assert gx.dtype == x.dtype
        assert np.array_equal(gx, x[idx]) and np.array_equal(gy, y[idx])


def test_downsample_window(walk):
    x, y = walk
    x0, x1 = 2500.0, 6000.0
    lo, hi = np.searchsorted(x, x0), np.searchsorted(x, x1, side="right")
    for method in large.METHODS:
        gx, gy = downsample(x, y, 300, method, x0=x0, x1=x1)
        assert x0 <= gx.min() and gx.max() <= x1
        idx = direct(method, x[lo:hi], y[lo:hi], 300)
        assert np.array_equal(gx, x[lo:hi][idx]) and np.array_equal(gy, y[lo:hi][idx])
    # open-ended windows
    gx, _ = downsample(x, y, 300, x0=x0)
    assert gx[0] == x[lo] and gx[-1] == x[-1]
    gx, _ = downsample(x, y, 300, x1=x1)
    assert gx[0] == x[0] and gx[-1] == x[hi - 1]


def test_window_bounds_are_inclusive_and_exact():
    x = np.arange(100, dtype=np.float64)
    y = np.arange(100, dtype=np.float64)
    gx, _ = downsample(x, y, 50, x0=10, x1=20)
    assert gx.tolist() == list(range(10, 21))
    gx, _ = downsample(x, y, 50, x0=9.5, x1=20.5)
    assert gx.tolist() == list(range(10, 21))
    # float32 x: a float64 bound just above a float32 value must not take that value
    x32 = np.arange(100, dtype=np.float32) / np.float32(3)
    v = float(x32[30])
    gx, _ = downsample(x32, x32, 50, x0=np.nextafter(v, 1e9), x1=float(x32[40]))
    assert gx[0] == x32[31] and gx[-1] == x32[40]
    # int x, bounds beyond the dtype's range
    xi = np.arange(100, dtype=np.int16)
    assert downsample(xi, y, 50, x0=-1e30, x1=2.5)[0].tolist() == [0, 1, 2]
    assert len(downsample(xi, y, 50, x0=1e30)[0]) == 0
    # datetime x: bounds are ms since the epoch
    xt = np.arange("2024-01-01", "2024-01-02", dtype="datetime64[h]")
    ms = float(xt[3].astype("datetime64[ms]").astype(np.int64))
    gx, _ = downsample(xt, np.arange(24.0), 10, x0=ms, x1=ms + 2 * 3600e3)
    assert gx.tolist() == xt[3:6].tolist()


def test_small_window_returned_as_is(walk):
    x, y = walk
    lo = np.searchsorted(x, 5000.0)
    x1 = float(x[lo + 99])
    gx, gy = downsample(x, y, 100, "lttb", x0=5000.0, x1=x1)
    assert np.array_equal(gx, x[lo:lo + 100]) and np.array_equal(gy, y[lo:lo + 100])
    assert not np.shares_memory(gx, x)
    gx, gy = downsample(x[:10], y[:10], 10)
    assert np.array_equal(gx, x[:10]) and np.array_equal(gy, y[:10])
    gx, gy = downsample(x, y, 10, x0=-5.0, x1=-1.0)  # empty window
    assert len(gx) == len(gy) == 0
    gx, gy = downsample(np.array([]), np.array([]), 10)
    assert len(gx) == 0


def test_minmax_odd_n_and_tiny_n(walk):
    x, y = walk
    gx, _ = downsample(x, y, 101, "minmax")
    idx = direct("minmax", x, y, 100)
    assert np.array_equal(gx, x[idx])
    gx, gy = downsample(x, y, 3, "minmax")  # one bin: its min and max
    assert sorted(gy.tolist()) == [y.min(), y.max()]


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 2}, "n must be between"),
    ({"n": 1_000_001}, "n must be between"),
    ({"n": 10.5}, "n must be an integer"),
    ({"n": True}, "n must be an integer"),
    ({"method": "m4"}, "method must be one of"),
    ({"x0": 10.0, "x1": 5.0}, "x0 must not exceed x1"),
    ({"x0": float("nan")}, "x0 must be a number"),
    ({"x1": "5"}, "x1 must be a number"),
])
def test_downsample_bad_params(walk, kwargs, message):
    x, y = walk
    args = {"n": 100} | kwargs
    with pytest.raises(LargeDataError, match=message) as err:
        downsample(x, y, **args)
    assert err.value.status == 422 and err.value.code == "invalid_request"
    assert isinstance(err.value, ValueError)


def test_downsample_bad_columns():
    x = np.arange(10.0)
    with pytest.raises(LargeDataError, match="same length"):
        downsample(x, x[:5], 3)
    with pytest.raises(LargeDataError, match="one-dimensional"):
        downsample(x.reshape(2, 5), x.reshape(2, 5), 3)
    with pytest.raises(LargeDataError, match="numeric"):
        downsample(x.astype(str), x, 3)


def test_unsorted_x(walk):
    x, y = walk
    bad = x.copy()
    bad[[1000, 1001]] = bad[[1001, 1000]]
    with pytest.raises(LargeDataError, match="x must be sorted ascending for downsampling"):
        downsample(bad, y, 100)
    with pytest.raises(LargeDataError, match="sorted"):  # even for a window elsewhere
        downsample(bad, y, 100, x0=5000.0)
    nan_x = x.copy()
    nan_x[5] = np.nan
    with pytest.raises(LargeDataError, match="sorted"):
        downsample(nan_x, y, 100)
    # the caller may vouch for a cached flag: no O(n) check, no error
    gx, _ = downsample(bad, y, 100, assume_sorted=True)
    assert len(gx) <= 100


def test_is_sorted(monkeypatch):
    monkeypatch.setattr(large, "_CHUNK", 7)  # exercise the chunk seams
    x = np.arange(100.0)
    assert is_sorted(x) and is_sorted(x[:0]) and is_sorted(x[:1])
    assert is_sorted(np.repeat(x, 3))  # repeats are fine
    for i in range(99):  # a descent at any position, including across chunk seams
        bad = x.copy()
        bad[i + 1] = bad[i] - 0.5
        assert not is_sorted(bad), i
    nan = x.copy()
    nan[50] = np.nan
    assert not is_sorted(nan)
    # incremental: rows from `start` on, plus the seam with the row before
    grown = np.concatenate([x, [99.0, 100.0, 101.0]])
    assert is_sorted(grown, start=100)
    grown[100] = 98.0
    assert not is_sorted(grown, start=100)
    assert is_sorted(grown, start=101)
    assert is_sorted(np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"))


def test_nan_in_y_is_ignored(walk):
    x, y = walk
    y = y.copy()
    rng = np.random.default_rng(3)
    y[rng.choice(len(y), 5000, replace=False)] = np.nan  # scattered
    y[100_000:160_000] = np.nan  # a long gap: all-NaN bins
    y[:10] = np.nan  # leading and trailing NaNs
    y[-25:] = np.nan
    valid = ~np.isnan(y)
    for method in large.METHODS:
        gx, gy = downsample(x, y, 1000, method)
        assert 0 < len(gx) <= 1000
        assert not np.isnan(gy).any(), method
        assert np.isin(gx, x[valid]).all()
        assert not ((gx > x[100_000]) & (gx < x[159_999])).any()  # nothing made up in the gap
    # lttb: exactly LTTB over the non-NaN points
    gx, gy = downsample(x, y, 1000, "lttb")
    idx = direct("lttb", x[valid], y[valid], 1000)
    assert np.array_equal(gx, x[valid][idx]) and np.array_equal(gy, y[valid][idx])
    # minmax: the library's choice less the NaN points (an all-NaN bin yields NaN)
    gx, _ = downsample(x, y, 1000, "minmax")
    idx = direct("minmax", x, y, 1000)
    assert np.array_equal(gx, x[idx[valid[idx]]])
    # minmaxlttb keeps the first and last real points
    gx, _ = downsample(x, y, 1000, "minmaxlttb")
    first, last = np.flatnonzero(valid)[[0, -1]]
    assert gx[0] == x[first] and gx[-1] == x[last]


def test_nan_small_window_kept_and_all_nan():
    x = np.arange(50.0)
    y = np.where(np.arange(50) % 5 == 0, np.nan, 1.0)
    gx, gy = downsample(x, y, 50)  # whole window fits: as it is, NaNs included
    assert np.isnan(gy).sum() == 10 and len(gx) == 50
    gx, gy = downsample(x, np.full(50, np.nan), 10)
    assert len(gx) == len(gy) == 0
    gx, gy = downsample(x, y, 45, "lttb")  # 40 real points left: all of them
    assert len(gx) == 40 and not np.isnan(gy).any()


@pytest.mark.parametrize("x", [
    np.zeros(50_000),  # all x equal
    np.concatenate([np.zeros(49_999), [1e9]]),  # all equal but the last
    1e16 + np.repeat(np.arange(5.0), 10_000) * 2,  # bins finer than x's resolution
    np.concatenate([[-np.inf], np.arange(49_998.0), [np.inf]]),
])
def test_degenerate_x_does_not_crash(x):
    y = np.random.default_rng(0).standard_normal(len(x))
    for method in large.METHODS:
        gx, gy = downsample(x, y, 1000, method)
        assert 0 < len(gx) <= 1000 and np.isfinite(gx).all()


# ------------------------------------------------------------------ aggregate


@pytest.fixture(scope="module")
def cloud() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 200_000
    return rng.normal(size=n), rng.normal(size=n) * 2, rng.uniform(size=n)


W, H, XR, YR = 37, 23, (-2.0, 2.5), (-3.0, 4.0)


def hist(x, y, xr=XR, yr=YR, weights=None):
    h, _, _ = np.histogram2d(y, x, bins=[H, W], range=[yr, xr], weights=weights)
    return h


def test_aggregate_count_matches_histogram2d(cloud):
    x, y, _ = cloud
    grid = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR)
    assert grid.shape == (H, W) and grid.dtype == np.uint32
    expected = hist(x, y)
    assert grid.sum() == expected.sum() < len(x)  # points outside the ranges are left out
    assert np.array_equal(grid, expected)


def test_aggregate_default_ranges(cloud):
    x, y, _ = cloud
    grid = aggregate(x, y, width=W, height=H)
    assert grid.sum() == len(x)  # the data's own extent: every point lands
    expected = hist(x, y, (x.min(), x.max()), (y.min(), y.max()))
    assert np.array_equal(grid, expected)
    assert large.data_range(x) == (x.min(), x.max())


def test_aggregate_sum_and_mean(cloud):
    x, y, v = cloud
    count = hist(x, y)
    total = hist(x, y, weights=v)
    s = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR, agg="sum", value=v)
    m = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR, agg="mean", value=v)
    assert s.dtype == m.dtype == np.float64
    empty = count == 0
    assert np.isnan(s[empty]).all() and np.isnan(m[empty]).all()
    np.testing.assert_allclose(s[~empty], total[~empty], rtol=1e-9)
    np.testing.assert_allclose(m[~empty], total[~empty] / count[~empty], rtol=1e-9)
    # NaN values are skipped
    v2 = v.copy()
    v2[::3] = np.nan
    ok = ~np.isnan(v2)
    s2 = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR, agg="sum", value=v2)
    expected = hist(x[ok], y[ok], weights=v2[ok])
    np.testing.assert_allclose(np.nan_to_num(s2), expected, rtol=1e-9)


def test_aggregate_orientation():
    # points only at low y and low x: row 0 is the lowest y, column 0 the lowest x
    x = np.array([0.1, 0.1, 0.9])
    y = np.array([0.1, 0.1, 0.9])
    grid = aggregate(x, y, width=4, height=3, x_range=(0, 1), y_range=(0, 1))
    assert grid[0, 0] == 2 and grid[2, 3] == 1 and grid.sum() == 3
    # the upper edges belong to the last row / column (as np.histogram2d)
    grid = aggregate(np.array([1.0]), np.array([1.0]), width=4, height=3,
                     x_range=(0, 1), y_range=(0, 1))
    assert grid[2, 3] == 1


def test_aggregate_datetime_and_nan_points():
    t = np.array(["2024-01-01T00", "2024-01-01T12", "NaT"], dtype="datetime64[h]")
    y = np.array([0.0, 1.0, 0.5])
    start = float(np.datetime64("2024-01-01", "ms").astype(np.int64))
    grid = aggregate(t, y, width=2, height=1, x_range=(start, start + 24 * 3600e3),
                     y_range=(0, 1))
    assert grid.tolist() == [[1, 1]]  # NaT is left out
    assert large.data_range(t) == (start, start + 12 * 3600e3)
    grid = aggregate(np.array([0.0, np.nan, 1.0]), np.array([0.0, 1.0, np.nan]),
                     width=2, height=2, x_range=(0, 1), y_range=(0, 1))
    assert grid.sum() == 1


def test_data_range_degenerate():
    assert large.data_range(np.array([])) == (-1.0, 1.0)
    assert large.data_range(np.array([np.nan, np.nan])) == (-1.0, 1.0)
    assert large.data_range(np.array([3.0, 3.0])) == (2.0, 4.0)
    lo, hi = large.data_range(np.array([1e17]))
    assert lo < 1e17 < hi
    with pytest.raises(LargeDataError, match="infinite"):
        large.data_range(np.array([0.0, np.inf]))
    grid = aggregate(np.full(5, 2.0), np.full(5, 2.0), width=3, height=3)
    assert grid[1, 1] == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 0}, "width must be between"),
    ({"height": 4097}, "height must be between"),
    ({"width": 2.5}, "width must be an integer"),
    ({"agg": "max"}, "agg must be one of"),
    ({"agg": "sum"}, "needs a value column"),
    ({"agg": "mean", "value": np.ones(3)}, "value must be"),
    ({"agg": "sum", "value": np.array(["a"] * 10)}, "value must be numeric"),
    ({"x_range": (1.0, 1.0)}, "x_range must be two finite numbers"),
    ({"y_range": (2.0, 1.0)}, "y_range must be two finite numbers"),
    ({"x_range": (0.0, float("nan"))}, "x_range must be two finite numbers"),
    ({"x_range": (0.0,)}, "x_range must be two numbers"),
    ({"y_range": "ab"}, "y_range must be two numbers"),
])
def test_aggregate_bad_params(kwargs, message):
    x = np.arange(10.0)
    args = {"width": 10, "height": 10} | kwargs
    with pytest.raises(LargeDataError, match=message):
        aggregate(x, x, **args)


# ------------------------------------------------------------------ PNG


def test_png(cloud):
    x, y, v = cloud
    grid = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR)
    for how in large.HOWS:
        image = Image.open(io.BytesIO(to_png(grid, how=how)))
        assert image.format == "PNG" and image.size == (W, H) and image.mode == "RGBA"
    m = aggregate(x, y, width=W, height=H, x_range=XR, y_range=YR, agg="mean", value=v)
    assert Image.open(io.BytesIO(to_png(m))).size == (W, H)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty grid has nothing to equalise
        assert Image.open(io.BytesIO(to_png(np.zeros((3, 5), np.uint32)))).size == (5, 3)
    with pytest.raises(LargeDataError, match="how must be one of"):
        to_png(grid, how="sqrt")
    with pytest.raises(LargeDataError, match="2-D"):
        to_png(np.zeros(5))


def test_png_is_right_way_up():
    # points at the bottom of the plot only: the image's bottom rows are drawn, its top not
    x = np.random.default_rng(1).uniform(0, 1, 1000)
    y = np.zeros(1000)
    grid = aggregate(x, y, width=20, height=10, x_range=(0, 1), y_range=(0, 1))
    alpha = np.asarray(Image.open(io.BytesIO(to_png(grid))))[:, :, 3]
    assert alpha[-1].all() and not alpha[:-1].any()


def test_warm_up():
    large.warm_up()

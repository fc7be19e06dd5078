"""Large-data views of a source: downsampled lines and aggregated rasters (abstract
rendering), on the columns as numpy arrays without copies where Arrow allows.

The work (column copies, sortedness scans, tsdownsample, datashader, encoding the answer)
runs in worker threads: a 100M-point view takes seconds of CPU, and on the event loop it
would hold every other request of the service (health probes included) for that long.
numpy, tsdownsample and datashader's numba kernels release the GIL for most of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pyarrow as pa

from services.common.identity import Principal

from . import large
from .service import DataService, Via


def as_numpy(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise large.LargeDataError(f"no column {name!r}")
    column = table.column(name)
    if column.null_count and pa.types.is_floating(column.type):
        column = column.fill_null(float("nan"))
    chunk = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return chunk.to_numpy(zero_copy_only=False)


def grid_json(grid: np.ndarray, version: int, agg: str) -> bytes:
    """An aggregate's JSON answer (NaN, an empty pixel of sum/mean, as null).

    Row by row: `tolist` and `json.dumps` are C calls that keep the GIL until they return,
    so over a whole 4M-pixel grid they would hold the event loop's thread back for most of a
    second, worker thread or not; between rows, the loop gets its turn.
    """
    height, width = grid.shape
    floats = grid.dtype.kind == "f"
    rows = ",".join(json.dumps(np.where(np.isnan(row), None, row).tolist() if floats
                               else row.tolist()) for row in grid)
    head = json.dumps({"version": version, "agg": agg, "width": width, "height": height})
    return f'{head[:-1]}, "grid": [{rows}]}}'.encode()


class Views:
    def __init__(self, data: DataService) -> None:
        self.data = data
        self._sorted: dict[tuple[str, int, str], bool] = {}  # per source version and column
        self._arrays: dict[tuple[str, int, str], np.ndarray] = {}
        # a bounded pool of our own: anyio's default one (40 threads) is shared with
        # everything else that runs in a thread
        self._limiter = anyio.CapacityLimiter(data.settings.view_threads)

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _check_raster(self, width: int, height: int) -> None:
        """Refuse a raster over the configured size before reading anything."""
        side, pixels = self.data.settings.max_raster_side, self.data.settings.max_raster_pixels
        for name, v in (("width", width), ("height", height)):
            if not 1 <= v <= side:
                raise large.LargeDataError(
                    f"{name} must be between 1 and {side} pixels (max_raster_side), got {v}")
        if width * height > pixels:
            raise large.LargeDataError(
                f"width x height must be at most {pixels} pixels (max_raster_pixels), got "
                f"{width} x {height} = {width * height}")

    async def _columns(self, source_id: str, principal: Principal | None, *names: str,
                       via: Via = (None, None)) -> tuple[dict, list[np.ndarray]]:
        m, table = await self.data.read(source_id, principal, None, None, None, via)
        arrays = []
        for name in names:
            key = (source_id, m["version"], name)
            if key not in self._arrays:
                if len(self._arrays) > 64:
                    self._arrays.clear()
                self._arrays[key] = await self._off_loop(as_numpy, table, name)
            arrays.append(self._arrays[key])
        return m, arrays

    async def downsample(self, source_id: str, principal: Principal | None, x: str, y: str,
                         n: int, method: str, x0: float | None, x1: float | None,
                         via: Via = (None, None)) -> dict[str, Any]:
        m, (xs, ys) = await self._columns(source_id, principal, x, y, via=via)
        if m["lost"]:  # rows the blob store lost are nulls (NaN): draw the others
            keep = _outside(len(xs), m["lost"])
            xs, ys = xs[keep], ys[keep]
        key = (source_id, m["version"], x, bool(m["lost"]))
        if key not in self._sorted:
            self._sorted[key] = await self._off_loop(large.is_sorted, xs)
        if not self._sorted[key]:
            raise large.LargeDataError(f"column {x!r} must be sorted ascending to downsample")

        def compute() -> dict[str, Any]:
            dx, dy = large.downsample(xs, ys, n, method, x0, x1, assume_sorted=True)
            return {"version": m["version"], "x": dx.tolist(), "y": dy.tolist(),
                    "n": int(len(dx)), "lost": m["lost"]}

        return await self._off_loop(compute)

    async def aggregate(self, source_id: str, principal: Principal | None, x: str, y: str,
                        width: int, height: int, x_range: Any, y_range: Any, agg: str,
                        value: str | None, via: Via = (None, None), png: bool = False
                        ) -> tuple[dict, bytes]:
        """The raster, encoded: PNG (`png`) or JSON (grid_json)."""
        self._check_raster(width, height)
        names = (x, y, value) if value else (x, y)
        m, arrays = await self._columns(source_id, principal, *names, via=via)

        def compute() -> tuple[dict, bytes]:
            # the ranges drawn (the data's own where none was asked), for the image's place
            ranges = (x_range if x_range is not None else large.data_range(arrays[0]),
                      y_range if y_range is not None else large.data_range(arrays[1]))
            grid = large.aggregate(arrays[0], arrays[1], width=width, height=height,
                                   x_range=ranges[0], y_range=ranges[1], agg=agg,
                                   value=arrays[2] if value else None)
            content = large.to_png(grid) if png else grid_json(grid, m["version"], agg)
            return {**m, "ranges": ranges}, content

        return await self._off_loop(compute)


def _outside(rows: int, lost: list[tuple[int, int]]) -> np.ndarray:
    """A mask of the rows outside the `lost` [start, stop) ranges."""
    keep = np.ones(rows, dtype=bool)
    for start, stop in lost:
        keep[start:stop] = False
    return keep

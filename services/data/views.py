"""Large-data views of a source: downsampled lines and aggregated rasters (abstract
rendering), on the columns as numpy arrays without copies where Arrow allows."""

from __future__ import annotations

from typing import Any

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


class Views:
    def __init__(self, data: DataService) -> None:
        self.data = data
        self._sorted: dict[tuple[str, int, str], bool] = {}  # per source version and column
        self._arrays: dict[tuple[str, int, str], np.ndarray] = {}

    async def _columns(self, source_id: str, principal: Principal | None, *names: str,
                       via: Via = (None, None)) -> tuple[dict, list[np.ndarray]]:
        m, table = await self.data.read(source_id, principal, None, None, None, via)
        arrays = []
        for name in names:
            key = (source_id, m["version"], name)
            if key not in self._arrays:
                if len(self._arrays) > 64:
                    self._arrays.clear()
                self._arrays[key] = as_numpy(table, name)
            arrays.append(self._arrays[key])
        return m, arrays

    async def downsample(self, source_id: str, principal: Principal | None, x: str, y: str,
                         n: int, method: str, x0: float | None, x1: float | None,
                         via: Via = (None, None)) -> dict[str, Any]:
        m, (xs, ys) = await self._columns(source_id, principal, x, y, via=via)
        key = (source_id, m["version"], x)
        if key not in self._sorted:
            self._sorted[key] = large.is_sorted(xs)
        if not self._sorted[key]:
            raise large.LargeDataError(f"column {x!r} must be sorted ascending to downsample")
        dx, dy = large.downsample(xs, ys, n, method, x0, x1, assume_sorted=True)
        return {"version": m["version"], "x": dx.tolist(), "y": dy.tolist(),
                "n": int(len(dx))}

    async def aggregate(self, source_id: str, principal: Principal | None, x: str, y: str,
                        width: int, height: int, x_range: Any, y_range: Any, agg: str,
                        value: str | None, via: Via = (None, None)) -> tuple[dict, np.ndarray]:
        names = (x, y, value) if value else (x, y)
        m, arrays = await self._columns(source_id, principal, *names, via=via)
        grid = large.aggregate(arrays[0], arrays[1], width=width, height=height,
                               x_range=x_range, y_range=y_range, agg=agg,
                               value=arrays[2] if value else None)
        return m, grid

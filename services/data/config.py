"""Data settings (env prefix PLOTLINE_DATA_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.names import env_prefix
from services.common.settings import ServiceSettings


class DataSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("data"), extra="ignore")

    # Arrow bodies of large appends and creates.
    max_body_bytes: int = 256 << 20
    # Hot sources kept decoded in memory, in bytes.
    cache_bytes: int = 1 << 30
    # An appended batch travels inside its event (and so to viewers) up to this size.
    inline_event_bytes: int = 64 << 10
    # Small appends are kept inside the manifest (one compare-and-set, no blob write) until
    # they add up to this many bytes of Arrow IPC; then they go to one blob chunk together.
    inline_tail_bytes: int = 4 << 10
    # Merge a source's chunks into one when it has more than this many.
    max_chunks: int = 64
    max_write_retries: int = 50
    # Rasters (GET .../aggregate): a side may be up to a 4K screen's width (3840 px), the
    # whole up to 4 Mi pixels (2048 x 2048, or a full-width 3840 x 1092 strip). A 4096 x
    # 4096 count grid is 64 MiB to compute and ~40 MB of JSON to send, for more pixels than
    # any screen shows.
    max_raster_side: int = 4096
    max_raster_pixels: int = 4 << 20
    # Downsamples and rasters run in worker threads, at most this many at once (the rest
    # wait their turn), so a burst of them neither stalls the event loop nor takes every core.
    view_threads: int = 2
    # Compile datashader's kernels at start (seconds of CPU in a background thread); the
    # service reports ready only after, so its first aggregate does not stall.
    warm_up: bool = True

"""Docs settings (env prefix PLOTLINE_DOCS_)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.names import env_prefix
from services.common.settings import ServiceSettings


class DocsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=env_prefix("docs"), extra="ignore")

    # Bokeh documents carry their column data, so bodies are larger than elsewhere.
    max_body_bytes: int = 32 << 20
    # Rendered GET answers kept per process (by document id and version), in bytes.
    cache_bytes: int = 256 << 20
    # How long a replica may answer reads from metadata it read earlier when no docs event
    # has told it of a change (events normally refresh it within a millisecond; see
    # metacache.py). 0 reads the store on every GET.
    meta_cache_seconds: float = 1.0
    # PATCH without If-Match retries a lost compare-and-set this many times.
    max_write_retries: int = 50
    # A bound source with more rows than this is never sent whole to a viewer: its lines
    # are downsampled (MinMaxLTTB) for the visible x-range and the plot's width, its
    # markers drawn as an aggregate raster, asked again as the viewer pans and zooms.
    large_source_rows: int = 100_000
    # Base URL used in share links and embed scripts, e.g. https://plots.example.org/prefix
    public_url: str = "http://127.0.0.1:5006"

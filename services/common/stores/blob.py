"""Blob store: large immutable-ish byte objects (data chunks, document snapshots).

Names are '/'-separated paths such as "sources/abc/chunk-0001.arrow". A put is atomic:
readers see the old or the new bytes, never a partial write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from services.common.errors import NotFound, Unavailable


class BlobNotFound(NotFound, KeyError):
    """No blob of that name. A KeyError, as a mapping's miss is; one that reaches a route (a
    read racing a delete) is a 404 that names no internal path."""

    def __init__(self, name: str) -> None:
        super().__init__("the stored data is gone (deleted meanwhile?)")
        self.name = name


class Superseded(Unavailable):
    """A read met the blob its metadata named already deleted because a write (on this
    replica or another) replaced it meanwhile: not a lost blob. The reader starts again
    from the metadata (`read_again`); one that still reaches a route (replaced on every
    attempt) is a 503 to retry."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} changed while it was being read; retry")


T = TypeVar("T")
READ_ATTEMPTS = 5


async def read_again(read: Callable[[], Awaitable[T]]) -> T:
    """read(), started again while it raises Superseded (READ_ATTEMPTS times at most)."""
    for _ in range(READ_ATTEMPTS - 1):
        try:
            return await read()
        except Superseded:
            pass
    return await read()


class BlobUnavailable(Unavailable):
    """The blob store did not answer (in time): a 503 with Retry-After, never a 500."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the blob store is not reachable ({why}); retry shortly")


class BlobStore(Protocol):
    async def put(self, name: str, data: bytes) -> None:
        """Create or replace the blob, atomically."""
        ...

    async def get(self, name: str) -> bytes:
        """The blob's bytes; BlobNotFound if absent."""
        ...

    async def delete(self, name: str) -> bool:
        """True if the blob existed."""
        ...

    async def list(self, prefix: str = "") -> list[str]:
        """Names starting with prefix, sorted."""
        ...

    async def close(self) -> None: ...


def open_blob(url: str, *, azure_connection_string: str | None = None) -> BlobStore:
    """Open a store by URL: memory://, file:///abs/dir, azure://<container>."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from services.common.stores.blob_memory import MemoryBlob

        return MemoryBlob()
    if parts.scheme == "file":
        from services.common.stores.blob_local import LocalBlob

        if not parts.path:
            raise ValueError(f"file URL without a path: {url!r}")
        return LocalBlob(unquote(parts.path))
    if parts.scheme == "azure":
        from services.common.stores.blob_azure import AzureBlob

        if not azure_connection_string:
            raise ValueError("azure:// blob store needs azure_connection_string")
        if not parts.netloc:
            raise ValueError(f"azure URL without a container: {url!r}")
        return AzureBlob(azure_connection_string, parts.netloc)
    raise ValueError(f"unsupported blob store URL {url!r} (memory://, file://, azure://)")

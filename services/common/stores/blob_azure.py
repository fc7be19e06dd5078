"""Azure Blob Storage store: production blobs. In tests and the local stack the emulator
stands in for Azure (Azurite, always started with --disableTelemetry).

upload_blob commits the whole blob at once (one Put Blob, or for large blobs one Put Block
List over staged blocks), so readers never see a partial one.
The container is created on first use, so a fresh account needs no setup step.

Bounded: the SDK's default retry (exponential from 15 s) held an append 18-21 s while
Azurite was away; here two quick retries, then BlobUnavailable (a 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry

from services.common.stores.blob import BlobNotFound, BlobUnavailable

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 30  # per socket read: a large chunk still uploads
T = TypeVar("T")


def _reachable(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except (ServiceRequestError, ServiceResponseError, OSError) as exc:
            raise BlobUnavailable(type(exc).__name__) from exc
        except HttpResponseError as exc:
            if exc.status_code is not None and exc.status_code >= 500:
                raise BlobUnavailable(f"HTTP {exc.status_code}") from exc
            raise

    return call


class AzureBlob:
    def __init__(self, connection_string: str, container: str) -> None:
        self._service = BlobServiceClient.from_connection_string(
            connection_string, retry_policy=LinearRetry(backoff=0.5, random_jitter_range=0,
                                                        retry_total=2),
            connection_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S)
        self._container = self._service.get_container_client(container)
        self._ready = False
        self._lock = asyncio.Lock()

    async def _client(self) -> ContainerClient:
        if not self._ready:
            async with self._lock:
                if not self._ready:
                    try:
                        await self._container.create_container()
                    except ResourceExistsError:
                        pass
                    self._ready = True
        return self._container

    @_reachable
    async def put(self, name: str, data: bytes) -> None:
        client = await self._client()
        await client.upload_blob(name, bytes(data), overwrite=True)

    @_reachable
    async def get(self, name: str) -> bytes:
        client = await self._client()
        try:
            download = await client.download_blob(name)
            return await download.readall()
        except ResourceNotFoundError:
            raise BlobNotFound(name) from None

    @_reachable
    async def delete(self, name: str) -> bool:
        client = await self._client()
        try:
            await client.delete_blob(name)
        except ResourceNotFoundError:
            return False
        return True

    @_reachable
    async def list(self, prefix: str = "") -> list[str]:
        client = await self._client()
        names = [b.name async for b in client.list_blobs(name_starts_with=prefix or None)]
        return sorted(names)

    async def close(self) -> None:
        await self._service.close()

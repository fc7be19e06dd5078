"""Azure Blob Storage store: production blobs. In tests and the local stack the emulator
stands in for Azure (Azurite, always started with --disableTelemetry).

upload_blob commits the whole blob at once (one Put Blob, or for large blobs one Put Block
List over staged blocks), so readers never see a partial one.
The container is created on first use, so a fresh account needs no setup step.
"""

from __future__ import annotations

import asyncio

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from services.common.stores.blob import BlobNotFound


class AzureBlob:
    def __init__(self, connection_string: str, container: str) -> None:
        self._service = BlobServiceClient.from_connection_string(connection_string)
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

    async def put(self, name: str, data: bytes) -> None:
        client = await self._client()
        await client.upload_blob(name, bytes(data), overwrite=True)

    async def get(self, name: str) -> bytes:
        client = await self._client()
        try:
            download = await client.download_blob(name)
            return await download.readall()
        except ResourceNotFoundError:
            raise BlobNotFound(name) from None

    async def delete(self, name: str) -> bool:
        client = await self._client()
        try:
            await client.delete_blob(name)
        except ResourceNotFoundError:
            return False
        return True

    async def list(self, prefix: str = "") -> list[str]:
        client = await self._client()
        names = [b.name async for b in client.list_blobs(name_starts_with=prefix or None)]
        return sorted(names)

    async def close(self) -> None:
        await self._service.close()

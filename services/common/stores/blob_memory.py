"""In-process blob store for tests and throwaway embedded runs."""

from __future__ import annotations

from services.common.stores.blob import BlobNotFound


class MemoryBlob:
    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def put(self, name: str, data: bytes) -> None:
        self._data[name] = bytes(data)

    async def get(self, name: str) -> bytes:
        try:
            return self._data[name]
        except KeyError:
            raise BlobNotFound(name) from None

    async def delete(self, name: str) -> bool:
        return self._data.pop(name, None) is not None

    async def list(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self._data if n.startswith(prefix))

    async def close(self) -> None:
        self._data.clear()

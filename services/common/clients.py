"""The outside clients every service opens in its lifespan: its key-value store, its blob
store and the NATS bus, closed in reverse order (the bus drained first)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .bus import Bus
from .settings import ServiceSettings
from .stores.blob import BlobStore, open_blob
from .stores.kv import KVStore, open_kv


@dataclass
class Clients:
    kv: KVStore
    blobs: BlobStore
    bus: Bus


@contextlib.asynccontextmanager
async def service_clients(settings: ServiceSettings, service: str) -> AsyncIterator[Clients]:
    kv = open_kv(settings.kv_url)
    azure = settings.azure_connection_string
    blobs = open_blob(settings.blob_url,
                      azure_connection_string=azure.get_secret_value() if azure else None)
    try:
        bus = await Bus.connect(settings.nats_url, service, outbox=kv,
                                **settings.nats_credentials())
        try:
            await bus.ensure_stream()
            yield Clients(kv, blobs, bus)
        finally:
            await bus.close()
    finally:
        await blobs.close()
        await kv.close()

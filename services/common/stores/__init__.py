"""Storage protocols shared by the services: a versioned key-value store and a blob store.

Each protocol has one small module per backend, imported lazily by the factory so that an
embedded install never imports the Redis or Azure clients it does not use.
"""

from services.common.stores.blob import BlobNotFound, BlobStore, open_blob
from services.common.stores.kv import KVStore, VersionConflict, Versioned, open_kv

__all__ = [
    "BlobNotFound",
    "BlobStore",
    "KVStore",
    "VersionConflict",
    "Versioned",
    "open_blob",
    "open_kv",
]

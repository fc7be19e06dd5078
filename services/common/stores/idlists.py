"""Small id lists in a kv store (a user's documents, the documents bound to a source, a
user's API keys), one key each, changed by compare-and-set.

Several replicas may add to and remove from the same list at once; a retry on a version
conflict means none loses another's change. Ids keep the order they were added in and
appear once; an emptied list is deleted. The repositories own these (their key names are
theirs); services ask the repository, never the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .kv import KVStore, VersionConflict


class IdLists:
    """The lists whose keys start with `prefix` (e.g. "docs-of:" + a username)."""

    def __init__(self, kv: KVStore, prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix

    async def ids(self, name: str) -> list[str]:
        found = await self.kv.get(self.prefix + name)
        return json.loads(found.value) if found else []

    async def update(self, name: str, *, add: Iterable[str] = (),
                     remove: Iterable[str] = ()) -> None:
        adding, removing = list(dict.fromkeys(add)), set(remove)
        if not adding and not removing:
            return
        key = self.prefix + name
        while True:
            found = await self.kv.get(key)
            ids = json.loads(found.value) if found else []
            new = [i for i in ids if i not in removing]
            new += [a for a in adding if a not in new]
            try:
                if new:
                    await self.kv.put(key, json.dumps(new).encode(),
                                      expect=found.version if found else 0)
                elif found:
                    await self.kv.delete(key, expect=found.version)
                return
            except VersionConflict:
                continue

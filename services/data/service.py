"""Data logic: sources, appends with rollover, patches, column changes.

Every change goes through `_write`: read the manifest, check the right, compute the new rows,
write what is new to the blob store, commit the manifest by compare-and-set, and only then
publish the event whose `seq` is the source's new version (appends without waiting for
JetStream's ack: Bus.notify).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from prometheus_client import Histogram

from services.common.bus import Bus
from services.common.errors import Conflict, Forbidden, NotFound, Unauthorized, Unavailable
from services.common.events import DataVerb
from services.common.identity import Principal
from services.common.stores.blob import Superseded, read_again
from services.common.stores.kv import VersionConflict

from . import columns as cols
from .config import DataSettings
from .events import Grants
from .repository import ChunksLost, DataRepository, Manifest

# Idempotency keys of the latest appends a source remembers (in its manifest).
KEPT_KEYS = 64

# (how far appends are grouped: the count is commits, the sum appends)
GROUPED = Histogram("plotline_data_appends_per_commit", "Appends written by one commit",
                    buckets=(1, 2, 4, 8, 16, 32, 64))

Via = tuple[str | None, str | None]  # (document id, its share key) a reader comes through

# A change: (manifest to edit in place, current rows) -> (event data, new rows, chunks
# written to the blob store, blob names no longer referenced).
Change = Callable[[Manifest, pa.Table], Awaitable[tuple[dict, pa.Table, list, list]]]


def summary(m: Manifest, hashes: dict[str, str]) -> dict[str, Any]:
    return {"id": m["id"], "name": m["name"], "owner": m["owner"], "version": m["version"],
            "rows": m["rows"], "rollover": m["rollover"], "created": m["created"],
            "updated": m["updated"],
            "columns": [{"name": c["name"], "dtype": c["dtype"], "hash": hashes[c["name"]]}
                        for c in m["schema"]]}


@dataclass(eq=False)
class _Pending:
    """An append waiting for its source's writer (DataService.append)."""
    principal: Principal | None
    batch: pa.Table | dict[str, Any]
    rollover: int | None
    key: str | None
    done: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class DataService:
    def __init__(self, settings: DataSettings, repo: DataRepository, bus: Bus,
                 grants: Grants | None = None) -> None:
        self.settings = settings
        self.grants = grants
        self.repo = repo
        self.bus = bus
        self._locks = [asyncio.Lock() for _ in range(256)]
        self._hashes: dict[tuple[str, int], dict[str, str]] = {}
        self._queued: dict[str, list[_Pending]] = {}  # source id -> appends for its writer

    async def manifest(self, source_id: str, principal: Principal | None,
                       write: bool = False, via: Via = (None, None),
                       ours: bool = False) -> tuple[Manifest, int]:
        """The manifest, if the caller may read it (or change it, with `write`). Besides the
        owner, readers of a document binding the source may read (`via` = the document and
        its share key, for share links). `ours`: see DataRepository.get."""
        found = (await self.repo.get(source_id, ours=ours) if source_id.isalnum()
                 else None)
        await self._authorize(source_id, found, principal, write, via)
        assert found is not None
        return found

    async def _authorize(self, source_id: str, found: tuple[Manifest, int] | None,
                         principal: Principal | None, write: bool = False,
                         via: Via = (None, None)) -> None:
        if found is None:  # looks like a private one: 404 signed in, 401 anonymous
            raise NotFound("no such source") if principal else Unauthorized()
        user = principal.username if principal else None
        if user == found[0]["owner"]:
            return
        readable = self.grants is not None and await self.grants.may_read(
            source_id, found[0]["owner"], user, via)
        if readable and not write:
            return
        if user is None:
            raise Unauthorized()
        if readable:
            raise Forbidden("you may read this source but not change it")
        raise NotFound("no such source")

    async def drop(self, source_id: str, deleter: str | None) -> bool:
        """Delete a source a deleted document took with it (no caller: the docs event), only
        when the one who deleted the document owns it."""
        found = await self.repo.get(source_id) if source_id.isalnum() else None
        if found is None or found[0]["owner"] != deleter:
            return False
        await self.delete(source_id, Principal(found[0]["owner"], "docs-event"))
        return True

    async def create(self, principal: Principal, name: str, table: pa.Table,
                     rollover: int | None) -> dict[str, Any]:
        if rollover is not None:
            table = cols.stream(table.schema.empty_table(), table, rollover)
        source_id, now = secrets.token_hex(8), time.time()
        chunks = [await self.repo.write_chunk(source_id, 1, table)] if table.num_rows else []
        m = {"id": source_id, "name": name, "owner": principal.username, "version": 1,
             "rows": table.num_rows, "rollover": rollover, "offset": 0, "chunks": chunks,
             "schema": [{"name": f.name, "dtype": cols.dtype_name(f.type)}
                        for f in table.schema],
             "readers": [], "created": now, "updated": now}
        await self.repo.put(m, expect=0)
        self.repo.remember(m, table)
        await self.repo.owned.update(m["owner"], add=[source_id])
        await self.bus.publish(source_id, DataVerb.CREATED, {"rows": m["rows"]},
                               actor=m["owner"], seq=1)
        return self.describe(m, table)

    def describe(self, m: Manifest, table: pa.Table, *, whole: bool = True) -> dict[str, Any]:
        """`whole=False`: rows were lost (nulls in their place): hash, never cache."""
        key = (m["id"], m["version"])
        hashes = self._hashes.get(key) if whole else None
        if hashes is None:
            hashes = {name: cols.column_hash(table[name]) for name in table.column_names}
            if len(self._hashes) > 10_000:
                self._hashes.clear()
            if whole:
                self._hashes[key] = hashes
        return summary(m, hashes)

    async def list_for(self, principal: Principal | None) -> list[dict[str, Any]]:
        if principal is None:
            return []
        out = []
        for source_id in await self.repo.owned.ids(principal.username):
            found = await self.repo.get(source_id)
            if found:
                m = found[0]
                out.append({k: m[k] for k in ("id", "name", "owner", "version", "rows")})
        return out

    async def describe_source(self, source_id: str, principal: Principal | None,
                              via: Via = (None, None)) -> dict:
        async def describe() -> dict:
            m, _ = await self.manifest(source_id, principal, via=via)
            table, lost = await self.repo.readable(m)
            return {**self.describe(m, table, whole=not lost),
                    "lost": [list(r) for r in lost]}

        return await read_again(describe)

    async def read(self, source_id: str, principal: Principal | None,
                   names: list[str] | None, start: int | None, stop: int | None,
                   via: Via = (None, None)) -> tuple[Manifest, pa.Table]:
        """The rows asked for; rows lost from the blob store read as nulls, and the
        manifest's `lost` (a copy) names them: [(start, stop), ...] of the whole source."""
        async def read() -> tuple[Manifest, pa.Table]:
            m, _ = await self.manifest(source_id, principal, via=via)
            table, lost = await self.repo.readable(m)
            return {**m, "lost": lost}, cols.slice_rows(cols.select(table, names), start,
                                                        stop)

        return await read_again(read)

    async def _write(self, source_id: str, principal: Principal | None, verb: DataVerb,
                     change: Change, *, await_ack: bool = True,
                     reads: bool = True) -> Manifest:
        """`await_ack=False`: publish the event without waiting for JetStream (Bus.notify).
        `reads=False`: the change does not build on the rows (a replacement), so it works
        on a source with lost rows too (`change` gets an empty table)."""
        async with self._locks[hash(source_id) % len(self._locks)]:
            for attempt in range(self.settings.max_write_retries):
                m, kv_version = await self.manifest(source_id, principal, write=True,
                                                    ours=attempt == 0)
                try:  # (a change's own reads come before it writes anything)
                    table = await self.repo.load(m) if reads else pa.table({})
                    data, table, written, dropped = await change(m, table)
                except Superseded:
                    continue  # written meanwhile (elsewhere): start from its manifest
                m["version"] += 1
                m["rows"] = table.num_rows
                m["updated"] = time.time()
                if not await self._commit(m, kv_version, written, dropped, table):
                    continue
                publish = self.bus.publish if await_ack else self.bus.notify
                await publish(source_id, verb, {**data, "rows": m["rows"]},
                              actor=principal.username if principal else None,
                              seq=m["version"])
                return m
        raise Conflict("too many concurrent writers; try again", code="busy")

    async def _commit(self, m: Manifest, kv_version: int, written: list, dropped: list,
                      table: pa.Table) -> bool:
        """Compare-and-set the manifest, then keep its rows in the cache; False when another
        writer got there first (the caller reads the manifest again and retries)."""
        try:
            new_kv = await self.repo.commit(m, kv_version, written, dropped)
        except VersionConflict:
            self.repo.forget(m["id"])
            return False
        self.repo.remember(m, table, committed=new_kv)
        return True

    async def _rewrite(self, m: Manifest, table: pa.Table) -> tuple[list, list]:
        """Replace every chunk by one holding `table` (patches, column changes, compaction)."""
        chunk = await self.repo.write_chunk(m["id"], m["version"] + 1, table)
        dropped = [c["blob"] for c in m["chunks"] if "blob" in c]
        m["chunks"], m["offset"] = [chunk], 0
        return [chunk], dropped

    async def append(self, source_id: str, principal: Principal | None,
                     batch: pa.Table | dict[str, Any], rollover: int | None,
                     key: str | None = None) -> dict[str, int]:
        """Add rows (`batch`: an Arrow table, or JSON columns read with the source's own
        dtypes); returns this append's {"version", "rows"}.

        `key` (the Idempotency-Key header) makes a retry safe: an append whose key is among
        the source's last KEPT_KEYS answers what it answered then and appends nothing (a
        client that lost the answer to a timeout or a restart sends it again).

        Group commit: appends that reach a source while one of them waits for or holds its
        lock are written together (one load, one chunk, one manifest commit), each still
        with its own version, answer and event, in the order they arrived. When the process
        is idle a group is one append; when it falls behind, groups grow and each append
        costs less, so a burst drains instead of queueing (bench/viewer.py)."""
        item = _Pending(principal, batch, rollover, key)
        queue = self._queued.get(source_id)
        if queue is not None:  # a writer of this source is waiting or writing: it takes ours
            queue.append(item)
            return await item.done
        self._queued[source_id] = queue = [item]
        group: list[_Pending] = []
        try:
            async with self._locks[hash(source_id) % len(self._locks)]:
                await asyncio.sleep(0)  # appends already read by this loop turn join us
                while queue:
                    group = queue[:]
                    queue.clear()
                    GROUPED.observe(len(group))
                    await self._append_group(source_id, group)
        except BaseException as exc:  # (only what _append_group did not hand to its items)
            for left in group + queue:
                if not left.done.done():
                    left.done.set_exception(
                        exc if isinstance(exc, Exception) else Unavailable("shutting down"))
            raise
        finally:
            del self._queued[source_id]
        return item.done.result()

    async def _append_group(self, source_id: str, group: list[_Pending]) -> None:
        """Write `group` as one commit; every item's future gets its answer or its error."""
        for attempt in range(self.settings.max_write_retries):
            found = await self.repo.get(source_id, ours=attempt == 0)
            lost: ChunksLost | None = None
            try:
                table = await self.repo.load(found[0]) if found else None
            except ChunksLost as exc:  # told only to those who may write (below)
                table, lost = None, exc
            except Superseded:
                continue  # written meanwhile (elsewhere): start from its manifest
            live, batches, repeats = [], [], []
            keys = dict((k, (v, r)) for k, v, r in found[0].get("keys", [])) if found else {}
            for item in group:
                if item.done.done():  # refused in an earlier attempt
                    continue
                try:
                    await self._authorize(source_id, found, item.principal, write=True)
                    if lost is not None:
                        raise lost
                    assert table is not None
                    if item.key is not None and (item.key in keys or any(
                            item.key == other.key for other in live)):
                        repeats.append(item)  # a retry: it gets the first one's answer
                        continue
                    batches.append(self._conform(table, item.batch))
                except Exception as exc:  # this append's own fault: the others go on
                    item.done.set_exception(exc)
                    continue
                live.append(item)
            if not live:
                self._answer_repeats(repeats, keys)
                return
            assert found is not None and table is not None
            if len(live) > 1 and len({b.schema for b in batches}) > 1:
                for item in live:  # (a source without columns yet takes the first's)
                    await self._append_group(source_id, [item])
                return
            m, kv_version = found
            keeps = [it.rollover if it.rollover is not None else m["rollover"] for it in live]
            new, rows = table, []
            for b, keep in zip(batches, keeps, strict=True):
                new = cols.stream(new, b, keep)
                rows.append(new.num_rows)
            first = m["version"] + 1
            written, dropped = await self._place(m, first, table, batches, new)
            m["version"] += len(live)
            m["rows"] = new.num_rows
            m["updated"] = time.time()
            kept = [(it.key, first + k, n) for k, (it, n) in enumerate(zip(live, rows,
                                                                            strict=True))
                    if it.key is not None]
            if kept:  # (a source whose appends carry no key keeps no list at all)
                m["keys"] = ([list(e) for e in m.get("keys", [])] +
                             [list(e) for e in kept])[-KEPT_KEYS:]
            if not await self._commit(m, kv_version, written, dropped, new):
                continue
            # appends are the stream of small writes: their events go without waiting for
            # JetStream's ack (see Bus.notify); the rarer changes wait for it
            for k, (item, b, keep, n) in enumerate(zip(live, batches, keeps, rows,
                                                        strict=True)):
                await self.bus.notify(source_id, DataVerb.APPENDED,
                                      {**self._appended(b, keep), "rows": n},
                                      actor=item.principal.username if item.principal
                                      else None, seq=first + k)
                item.done.set_result({"version": first + k, "rows": n})
            self._answer_repeats(repeats, {**keys, **{e[0]: (e[1], e[2]) for e in kept}})
            return
        busy = Conflict("too many concurrent writers; try again", code="busy")
        for item in group:
            if not item.done.done():
                item.done.set_exception(busy)

    async def _place(self, m: Manifest, version: int, table: pa.Table,
                     batches: list[pa.Table], new: pa.Table) -> tuple[list, list]:
        """Put the batches' rows in the manifest as one chunk (`table` + batches -> `new`
        after rollovers); returns the blobs written and those no longer referenced."""
        combined = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
        written = await self.repo.add_chunk(m, version, combined,
                                            self.settings.inline_tail_bytes)
        # rows before the window: move the offset, forget chunks wholly behind it (the rows
        # kept are always the last ones of table + the batches, whatever the rollovers)
        m["offset"] += table.num_rows + combined.num_rows - new.num_rows
        dropped = []
        while m["chunks"] and m["chunks"][0]["rows"] <= m["offset"]:
            m["offset"] -= m["chunks"][0]["rows"]
            gone = m["chunks"].pop(0)
            if "blob" in gone:
                dropped.append(gone["blob"])
        if len(m["chunks"]) > self.settings.max_chunks:
            more_written, more_dropped = await self._rewrite(m, new)
            written, dropped = written + more_written, dropped + more_dropped
        return written, dropped

    @staticmethod
    def _answer_repeats(repeats: list[_Pending], keys: dict[str, tuple[int, int]]) -> None:
        for item in repeats:
            version, rows = keys[item.key]  # type: ignore[index]
            item.done.set_result({"version": version, "rows": rows})

    def _conform(self, table: pa.Table, batch: pa.Table | dict) -> pa.Table:
        return (cols.conform(table.schema, batch) if isinstance(batch, pa.Table)
                else cols.json_batch(table.schema, batch, max_bytes=self.settings.max_body_bytes))

    def _appended(self, batch: pa.Table, rollover: int | None) -> dict[str, Any]:
        """The rows themselves when small, else a marker that tells viewers to refetch."""
        limit = self.settings.inline_event_bytes
        size = batch.get_total_buffer_size()  # (Table.nbytes de-duplicates buffers: slow)
        if size <= limit:
            encoded = cols.to_json(batch)
            # a cell encodes to at most ~40 characters (NaN as Bokeh's {"type": "number",
            # ...}), string bytes to at most 6 (\uXXXX): small batches need no measuring
            surely_small = 40 * batch.num_rows * batch.num_columns + 6 * size + 1024 <= limit
            if surely_small or len(json.dumps(encoded)) <= limit:
                return {"columns": encoded, "rollover": rollover}
        return {"columns": None, "refetch": True, "rollover": rollover}

    async def replace(self, source_id: str, principal: Principal | None,
                      table: pa.Table) -> Manifest:
        """Every row and column anew (the source's rollover still applies)."""
        async def change(m: Manifest, _: pa.Table):  # type: ignore[no-untyped-def]
            new = table if m["rollover"] is None else cols.stream(
                table.schema.empty_table(), table, m["rollover"])
            m["schema"] = [{"name": f.name, "dtype": cols.dtype_name(f.type)}
                           for f in new.schema]
            written, dropped = await self._rewrite(m, new)
            return {"columns": new.column_names}, new, written, dropped

        return await self._write(source_id, principal, DataVerb.COLUMNS_CHANGED, change,
                                 reads=False)

    async def repair(self, source_id: str, principal: Principal | None) -> tuple[Manifest, int]:
        """Drop the rows whose chunks the blob store lost (the owner's call: nothing can
        bring them back), so the source takes writes again; the rows after them move up.
        Returns the manifest and the visible rows dropped (0: nothing was lost)."""
        dropped_rows = 0

        async def change(m: Manifest, _: pa.Table):  # type: ignore[no-untyped-def]
            nonlocal dropped_rows
            dropped_rows = 0  # (counted afresh when a lost race makes _write call again)
            have = set(await self.repo.blobs.list(f"sources/{source_id}/"))
            kept, at = [], -m["offset"]
            for chunk in m["chunks"]:
                if "blob" in chunk and chunk["blob"] not in have:
                    dropped_rows += chunk["rows"] + min(0, at)  # (its visible rows)
                    if at < 0:
                        m["offset"] = 0  # the window's start fell in the lost chunk
                else:
                    kept.append(chunk)
                at += chunk["rows"]
            m["chunks"] = kept
            table = await self.repo.load(m)
            return {"columns": table.column_names, "repaired": True}, table, [], []

        m = await self._write(source_id, principal, DataVerb.COLUMNS_CHANGED, change,
                              reads=False)
        return m, dropped_rows

    async def patch(self, source_id: str, principal: Principal | None,
                    patches: Any) -> Manifest:
        async def change(m: Manifest, table: pa.Table):  # type: ignore[no-untyped-def]
            new = cols.patch(table, patches, max_bytes=self.settings.max_body_bytes)
            written, dropped = await self._rewrite(m, new)
            return {"patches": patches}, new, written, dropped

        return await self._write(source_id, principal, DataVerb.PATCHED, change)

    async def set_column(self, source_id: str, principal: Principal | None, name: str,
                         column: pa.Table | None) -> Manifest:
        """Add or replace column `name` (a one-column table), or remove it (None)."""
        async def change(m: Manifest, table: pa.Table):  # type: ignore[no-untyped-def]
            new = (cols.remove_column(table, name) if column is None
                   else cols.put_column(table, name, column.column(0)))
            m["schema"] = [{"name": f.name, "dtype": cols.dtype_name(f.type)}
                           for f in new.schema]
            written, dropped = await self._rewrite(m, new)
            return {"columns": [name]}, new, written, dropped

        return await self._write(source_id, principal, DataVerb.COLUMNS_CHANGED, change)

    async def delete(self, source_id: str, principal: Principal | None) -> None:
        async with self._locks[hash(source_id) % len(self._locks)]:
            m, kv_version = await self.manifest(source_id, principal, write=True)
            await self.repo.delete(m, kv_version)
            await self.repo.owned.update(m["owner"], remove=[source_id])
        await self.bus.publish(source_id, DataVerb.DELETED, {}, seq=m["version"] + 1,
                               actor=principal.username if principal else None)

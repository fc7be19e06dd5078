"""Data files read in chunks for `upload`: CSV, Parquet, Arrow IPC (file or stream).

pyarrow is imported lazily. Each format yields tables of at most `chunk_rows` rows (and
about `chunk_bytes` bytes) with a progress position: rows for Parquet and Arrow IPC files
(whose row count is known up front), bytes of the file read for CSV and Arrow IPC streams
(whose row count is not known before reading them whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow"}
CSV_BLOCK = 1 << 20


class DataFileError(ValueError):
    """A file that cannot be uploaded (the message is for people)."""


class DataFile:
    """One file opened for upload. Iterate `chunks()`; `total` and `unit` ("rows" or
    "bytes") are final once the first chunk is out."""

    def __init__(self, path: str | Path, chunk_rows: int, chunk_bytes: int) -> None:
        self.path = Path(path)
        kind = FORMATS.get(self.path.suffix.lower())
        if kind is None:
            raise DataFileError(f"{self.path}: cannot upload a "
                                f"{self.path.suffix or 'extensionless'} file: give CSV (.csv, "
                                ".tsv), Parquet (.parquet) or Arrow IPC (.arrow, .feather, "
                                ".arrows)")
        if not self.path.is_file():
            raise DataFileError(f"{self.path}: no such file")
        if chunk_rows < 1 or chunk_bytes < 1:
            raise ValueError("chunk_rows and chunk_bytes must be positive")
        self.kind, self.chunk_rows, self.chunk_bytes = kind, chunk_rows, chunk_bytes
        self.size = self.path.stat().st_size
        # bytes of the file, until a format that knows its rows says how many
        self.total, self.unit = self.size, "bytes"
        self._file: Any = None

    def chunks(self) -> Iterator[tuple[Any, int]]:
        """(table, position) pairs; the last position is `total`."""
        import pyarrow as pa

        try:
            with self.path.open("rb") as self._file:
                done = 0
                for table in self._rebatch(self._batches()):
                    done = max(done, self._position(table))
                    yield _plain(table), min(done, self.total)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(f"{self.path}: cannot read it as {self.kind}: "
                                f"{str(exc).splitlines()[0]}") from None

    # the formats

    def _batches(self) -> Iterator[Any]:
        import pyarrow as pa

        self._rows = self._parsed = 0
        if self.kind == "csv":
            from pyarrow import csv

            parse = csv.ParseOptions(delimiter="\t" if self.path.suffix.lower() == ".tsv"
                                     else ",")
            # pyarrow reads far ahead of what it has parsed, so the file's position says
            # little; a batch is one block, so blocks parsed x block size is the progress
            read = csv.ReadOptions(use_threads=False, block_size=CSV_BLOCK)
            reader = csv.open_csv(self._file, read_options=read, parse_options=parse)
            self._schema = reader.schema
            for batch in reader:
                self._parsed += CSV_BLOCK
                yield batch
        elif self.kind == "parquet":
            from pyarrow import parquet

            pq = parquet.ParquetFile(self._file)
            self.total, self._schema = pq.metadata.num_rows, pq.schema_arrow
            self.unit = "rows"
            yield from pq.iter_batches(batch_size=self.chunk_rows)
        else:
            try:
                ipc = pa.ipc.open_file(self._file)
            except pa.ArrowInvalid:  # not the file format: a stream
                self._file.seek(0)
                stream = pa.ipc.open_stream(self._file)
                self._schema = stream.schema
                yield from stream
            else:
                self._schema, self.total, self.unit = ipc.schema, ipc.count_rows(), "rows"
                for i in range(ipc.num_record_batches):
                    yield ipc.get_batch(i)

    def _position(self, table: Any) -> int:
        self._rows += table.num_rows
        if self.unit == "rows":
            return self._rows
        return self._parsed if self.kind == "csv" else self._file.tell()

    def _rebatch(self, batches: Iterator[Any]) -> Iterator[Any]:
        """Tables of `chunk_rows` rows (the last fewer), split further past `chunk_bytes`;
        one empty table for a file without rows (so the source still gets its columns)."""
        import pyarrow as pa

        pending: list[Any] = []
        count, sent = 0, False
        for batch in batches:
            pending.append(batch)
            count += batch.num_rows
            while count >= self.chunk_rows:
                table = pa.Table.from_batches(pending, schema=self._schema)
                yield from self._by_bytes(table.slice(0, self.chunk_rows))
                rest = table.slice(self.chunk_rows)
                pending, count, sent = rest.to_batches(), rest.num_rows, True
        if count or not sent:
            yield from self._by_bytes(pa.Table.from_batches(pending, schema=self._schema))

    def _by_bytes(self, table: Any) -> Iterator[Any]:
        parts = max(1, -(-table.nbytes // self.chunk_bytes))
        step = max(1, -(-table.num_rows // parts))
        if parts == 1 or table.num_rows <= 1:
            yield table
            return
        for start in range(0, table.num_rows, step):
            yield table.slice(start, step)


def _plain(table: Any) -> Any:
    """Columns with no values at all (CSV's `null` type) as strings, no schema metadata."""
    import pyarrow as pa

    columns = [c.cast(pa.string()) if pa.types.is_null(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def to_ipc(table: Any) -> bytes:
    """The table as an Arrow IPC stream body."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()

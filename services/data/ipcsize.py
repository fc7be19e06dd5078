"""How many bytes an Arrow IPC body decodes to, read from its metadata before decoding.

A compressed body can be tiny and decode to gigabytes (6 KiB of zstd made a 200M-row
source), and pyarrow decompresses a whole record batch as it reads it, so counting after
each batch is too late. Every batch's metadata lists its buffers; a compressed buffer starts
with its uncompressed length (int64, -1 = stored as it is). Summing those gives the decoded
size exactly, without decompressing anything.

pyarrow does not expose a message's fields, so this reads the few flatbuffer fields it needs
(format/Message.fbs, format/File.fbs of the Arrow spec) by hand: a flatbuffer table starts
with an int32 offset back to its vtable, whose uint16 entries give each field's offset in the
table (0 = absent); a reference to a table or vector is a uint32 offset from where it is
stored; a vector is a uint32 count followed by its elements.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from .dtypes import DataError

_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3  # Message.header_type (MessageHeader union)
_FILE_MAGIC = b"ARROW1"


class _Table:
    """One flatbuffer table in `buf` at `pos`."""

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - _read(buf, "<i", pos)
        self.vtable_size = _read(buf, "<H", self.vtable)

    def _offset(self, field: int) -> int:
        at = 4 + 2 * field
        return _read(self.buf, "<H", self.vtable + at) if at < self.vtable_size else 0

    def scalar(self, field: int, fmt: str, default: int = 0) -> int:
        off = self._offset(field)
        return _read(self.buf, fmt, self.pos + off) if off else default

    def table(self, field: int) -> _Table | None:
        off = self._offset(field)
        if not off:
            return None
        at = self.pos + off
        return _Table(self.buf, at + _read(self.buf, "<I", at))

    def structs(self, field: int, fmt: str) -> list[tuple]:
        """A vector of structs, each unpacked with `fmt`."""
        off = self._offset(field)
        if not off:
            return []
        at = self.pos + off
        at += _read(self.buf, "<I", at)
        count, size = _read(self.buf, "<I", at), struct.calcsize(fmt)
        if at + 4 + count * size > len(self.buf):
            raise DataError("the Arrow body's metadata is damaged")
        return [struct.unpack_from(fmt, self.buf, at + 4 + i * size) for i in range(count)]


def _read(buf: memoryview, fmt: str, at: int) -> int:
    if at < 0 or at + struct.calcsize(fmt) > len(buf):
        raise DataError("the Arrow body's metadata is damaged")
    return struct.unpack_from(fmt, buf, at)[0]


def message_size(message: pa.ipc.Message) -> int:
    """The bytes a record or dictionary batch message's buffers decode to (0 for others)."""
    meta = memoryview(message.metadata)
    root = _Table(meta, _read(meta, "<I", 0))
    kind = root.scalar(1, "<B")
    batch = root.table(2)
    if kind == _DICTIONARY_BATCH and batch is not None:
        batch = batch.table(1)  # DictionaryBatch.data: a RecordBatch
    elif kind != _RECORD_BATCH:
        return 0
    if batch is None:
        return 0
    compressed = batch.table(3) is not None  # RecordBatch.compression
    body = memoryview(message.body) if message.body is not None else memoryview(b"")
    total = 0
    for offset, length in batch.structs(2, "<qq"):  # RecordBatch.buffers: (offset, length)
        if compressed and length >= 8:
            declared = _read(body, "<q", offset)
            total += length - 8 if declared == -1 else max(declared, 0)
        else:
            total += max(length, 0)
    return total


def decoded_size(body: pa.Buffer, *, file: bool) -> int:
    """The decoded bytes of every batch the reader will read: the messages in stream order
    for a stream; for a file, the blocks its footer lists (the reader follows the footer,
    not the order of the bytes)."""
    if not file:
        total = 0
        reader = pa.ipc.MessageReader.open_stream(body)
        while True:
            try:
                total += message_size(reader.read_next_message())
            except StopIteration:
                return total
    # a file ends with its footer, the footer's int32 length and the magic
    data = memoryview(body)
    end = len(data) - len(_FILE_MAGIC) - 4
    footer_start = end - _read(data, "<i", end)
    if footer_start < 0 or footer_start > end:
        raise DataError("the Arrow file's footer is damaged")
    footer_buf = data[footer_start:end]
    footer = _Table(footer_buf, _read(footer_buf, "<I", 0))
    total = 0
    # Footer.dictionaries and .recordBatches: Blocks (offset, metaDataLength, pad, bodyLength)
    for field in (2, 3):
        for offset, meta_length, _, body_length in footer.structs(field, "<qiiq"):
            if offset < 0 or offset + meta_length + body_length > len(data):
                raise DataError("the Arrow file's footer is damaged")
            block = body.slice(offset, meta_length + body_length)
            total += message_size(pa.ipc.read_message(block))
    return total

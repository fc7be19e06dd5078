"""Local-directory blob store: the embedded mode's blobs, one file per blob.

A put writes a temporary file and os.replace()s it into place, so readers never see a partial
blob. Temporary files live in ROOT/.tmp (same filesystem, so the rename is atomic), which is
therefore a reserved name. File I/O runs in a thread to keep the event loop free.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from services.common.stores.blob import BlobNotFound

_TMP = ".tmp"
# Blobs are users' data: directories owner-only whatever the umask (files from mkstemp are
# already 0600).
DIR_MODE = 0o700


def _mkdirs(path: Path, root: Path) -> None:
    """mkdir -p with DIR_MODE for the root and every directory made below it (mkdir's mode
    is cut by the umask, hence the chmod)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path == root or path.parent == path:
            break
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(d, DIR_MODE)


# Blobs up to this size are written on the event loop: the write lands in the page cache in
# microseconds, while a hop to a worker thread costs far more under load.
INLINE_BYTES = 256 << 10


class LocalBlob:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    def _path(self, name: str) -> Path:
        # Names are store-relative: refuse anything that could escape the root.
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or parts[0] == _TMP:
            raise ValueError(f"invalid blob name {name!r}")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid blob name {name!r}")
        return self._root.joinpath(*parts)

    def _put(self, path: Path, data: bytes) -> None:
        tmp_dir = self._root / _TMP
        _mkdirs(tmp_dir, self._root)
        _mkdirs(path.parent, self._root)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _list(self, prefix: str) -> list[str]:
        # Walk only the deepest directory the prefix names; a directory part no valid name
        # could have (say "..") matches nothing, and must not walk outside the root.
        dirs = prefix.split("/")[:-1]
        if any(p in ("", ".", "..") for p in dirs) or dirs[:1] == [_TMP]:
            return []
        start = self._root.joinpath(*dirs)
        names = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel = Path(dirpath).relative_to(self._root).as_posix()
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d != _TMP]
                rel = ""
            else:
                rel += "/"
            names += [rel + f for f in filenames if (rel + f).startswith(prefix)]
        return sorted(names)

    async def put(self, name: str, data: bytes) -> None:
        if len(data) <= INLINE_BYTES:  # a small write to the page cache beats a thread hop
            self._put(self._path(name), bytes(data))
        else:
            await asyncio.to_thread(self._put, self._path(name), bytes(data))

    async def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(name) from None

    async def delete(self, name: str) -> bool:
        path = self._path(name)
        try:
            path.unlink()  # one syscall: cheaper than a hop to a thread
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return True

    async def list(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    async def close(self) -> None:
        pass

"""A read-only, seekable window onto part of a file (a layer inside an outer tar)."""

from __future__ import annotations

import io
import os


class FileSlice(io.RawIOBase):
    """Reads `size` bytes of `path` starting at `offset`, with its own file handle."""

    def __init__(self, path: str | os.PathLike, offset: int, size: int):
        super().__init__()
        self._f = open(path, "rb", buffering=0)
        self._start = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        left = self._size - self._pos
        if left <= 0:
            return 0
        view = memoryview(b)[: min(len(b), left)]
        self._f.seek(self._start + self._pos)
        n = self._f.readinto(view)
        self._pos += n or 0
        return n or 0

    def readinto_at(self, b, pos: int) -> int:
        """Fill `b` from position `pos` on (as far as the slice goes) without moving the
        position: positioned reads, no seek; returns the count."""
        view = memoryview(b)[: max(0, min(len(b), self._size - pos))]
        fd = self._f.fileno()
        got = 0
        while got < len(view):
            k = os.preadv(fd, [view[got:]], self._start + pos + got)
            if not k:
                break
            got += k
        return got

    def span(self) -> tuple[int, int, int]:
        """(file descriptor, offset in the file, bytes) of what is left to read."""
        return self._f.fileno(), self._start + self._pos, max(0, self._size - self._pos)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == io.SEEK_CUR:
            pos += self._pos
        elif whence == io.SEEK_END:
            pos += self._size
        self._pos = max(0, min(pos, self._size))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_slice(path: str | os.PathLike, offset: int, size: int, buffer_size: int = 1 << 20):
    """A buffered FileSlice; the usual way to open a member of an uncompressed outer tar."""
    return io.BufferedReader(FileSlice(path, offset, size), buffer_size)

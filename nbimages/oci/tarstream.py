"""Members of a layer tar with their contents as streams, for readers that need the bytes.

`tarscan` lists a layer fast without the file data; hashing a file or copying it into a new
layer needs the data, and a file can be gigabytes: Python's `tarfile` in stream mode hands
each regular file over as a reader of the underlying stream, never as bytes. Member names
are normalised exactly as `tarscan` does, so the two agree on every path.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Collection, Iterator, Mapping
from typing import BinaryIO

from .tarscan import _normalise

CHUNK = 1 << 20


def members(stream: BinaryIO) -> Iterator[tuple[str, tarfile.TarInfo, BinaryIO | None]]:
    """(normalised path, TarInfo, reader or None) for each member, in tar order.

    The reader (regular files only) is valid until the next member is asked for.
    """
    with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tf:
        for info in tf:
            path = _normalise(info.name)[0]
            yield path, info, tf.extractfile(info) if info.isreg() else None


def selected(stream: BinaryIO, wanted: Mapping[str, Collection[int]]
             ) -> Iterator[tuple[str, int, tarfile.TarInfo, BinaryIO | None]]:
    """(path, occurrence, TarInfo, reader) of the members whose path is in `wanted` at one of
    the wanted occurrences (0 = the first entry of that path; a tar may hold a path twice)."""
    seen: dict[str, int] = {}
    left = sum(len(w) for w in wanted.values())  # stop parsing headers once all are found
    if not left:
        return
    for path, info, reader in members(stream):
        want = wanted.get(path)
        if want is None:
            continue
        n = seen.get(path, 0)
        seen[path] = n + 1
        if n in want:
            yield path, n, info, reader
            left -= 1
            if not left:
                return


def sha256_of(reader: BinaryIO) -> str:
    """The sha256 of what `reader` holds, read in chunks."""
    h = hashlib.sha256()
    while chunk := reader.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()

"""The codes of the layer walk: entry kinds, changes, why a path was wasted.

Shared by walk.py (which fills arrays of these) and dive.py (which reads them).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..oci.tarscan import KINDS

FILE, DIR, SYMLINK, HARDLINK = 0, 1, 2, 3
WHITEOUT, OPAQUE, META = 7, 8, 9
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
KIND_NAME = list(KINDS) + ["whiteout", "opaque", "meta"]

ADDED, MODIFIED, DELETED, UNSAFE, SKIPPED = 0, 1, 2, 3, 255
# why a copy left the filesystem
OVERWRITTEN, BY_WHITEOUT, BY_PARENT_WHITEOUT, BY_OPAQUE, BY_REPLACED_DIR = 0, 1, 2, 3, 4
REASON = {OVERWRITTEN: "overwritten", BY_WHITEOUT: "deleted",
          BY_PARENT_WHITEOUT: "deleted with its directory",
          BY_OPAQUE: "hidden by an opaque directory",
          BY_REPLACED_DIR: "directory replaced by a file"}
CHANGE_NAME = {ADDED: "added", MODIFIED: "modified", DELETED: "deleted", UNSAFE: "unsafe"}

# A copy of a path is identified by one int: layer index in the high bits, entry index below.
SHIFT = 32
MASK = (1 << SHIFT) - 1
ESCAPES = "path escapes the image root"
MISSING_LINK = "hard link to a missing path (extraction fails)"


def positions(kinds: bytearray, code: int) -> Iterator[int]:
    """The indices of the entries of one kind in a layer's `kinds` (bytes.find: C speed)."""
    j = kinds.find(code)
    while j >= 0:
        yield j
        j = kinds.find(code, j + 1)

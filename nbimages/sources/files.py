"""What the file transports share: reading image tars in place, and writing files safely.

The transports themselves are docker_archive.py, oci_archive.py and oci_layout.py, each with
its opener and its writer; this module indexes image tars for them and gives their writers
one way to report a place that cannot be written.

Tars are read in place through member offsets. A compressed outer tar (`docker save | gzip`)
cannot be seeked into, so it is inflated once into the store's tmp directory; that copy is
deleted when the last Image/Layer using it is garbage collected. The inflation is read as a
tar while it streams: it stops at the tar's end, a stream that is not a tar is refused at its
first header, and a stream that inflates far beyond any image tar (a decompression bomb) is
refused before it fills the disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import weakref
from pathlib import Path
from typing import Iterator

from ..errors import ImageNotFound, InvalidImage, NbimagesError, os_errors
from ..oci import compression
from ..oci.archive import TarIndex, is_oci_archive
from ..oci.tarscan import records
from ..store import default_store


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def missing(path: Path, what: str) -> ImageNotFound:
    """ImageNotFound for a file or directory that is not there, saying what to give."""
    return ImageNotFound(f"{path} does not exist. Give the path of {what}.")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """The destination path (user-expanded, its folder made); an OSError about that place
    becomes a one-paragraph error (a missing, read-only or full place is the user's call)."""
    dest = Path(os.path.expanduser(str(path)))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        yield dest
    except OSError as e:
        where = [str(f) for f in (e.filename, e.filename2) if f]
        if not any(os.path.abspath(f).startswith(os.path.abspath(dest.parent)) for f in where):
            raise
        raise NbimagesError(f"cannot write {dest}: {e.strerror or e}. Choose a folder you can "
                            "write to (with room for the image).") from None


def tar_file_destination(dest: Path) -> None:
    """Refuse a directory where a tar file is to be written."""
    if dest.is_dir():
        raise InvalidImage(f"{dest} is a directory; give a file name for the tar (or use "
                           "format='oci-dir' / oci:DIR to write a layout directory).")


def tar_index(path: str | os.PathLike) -> TarIndex:
    """Index an image tar; a gzip/zstd-compressed tar is inflated to a temporary copy first."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise missing(p, "an image tar (`docker save -o FILE`, `skopeo copy ... oci-archive:FILE`)")
    if p.is_dir():
        raise InvalidImage(f"{p} is a directory, not a tar file; an OCI layout directory opens "
                           f"as oci:{p}.")
    with open(p, "rb") as f:
        kind = compression.sniff(f.read(4))
    if kind is None:
        return TarIndex(p)
    with os_errors(f"inflating {p}"):
        fd, tmp = default_store().tmpfile("inflated-", ".tar")
    try:
        with os_errors(f"inflating {p}"), os.fdopen(fd, "wb") as out, open(p, "rb") as raw:
            limit = max(MIN_INFLATE, inflate_ratio() * p.stat().st_size)
            tee = _TeeInflate(compression.decompressing(raw, kind), out, limit, p, kind)
            try:
                for _ in records(tee):  # stops at the end-of-archive blocks
                    pass
            except InvalidImage as e:
                if tee.over:
                    raise tee.bomb() from None
                raise InvalidImage(f"{p} is {kind}-compressed but does not hold a readable tar: "
                                   f"{e}") from None
        index = TarIndex(tmp, shown=p)
    except BaseException:
        _unlink(tmp)
        raise
    weakref.finalize(index, _unlink, tmp)
    return index


# An image tar holds compressed layers or tars of real files: it inflates a few times over at
# most. 8 MiB of gzip'd zeros inflate to 8 GiB; refuse long before that.
MIN_INFLATE = 1 << 30


def inflate_ratio() -> int:
    """NBIMAGES_MAX_INFLATE_RATIO (default 100): how far a compressed image tar may inflate."""
    try:
        return max(1, int(os.environ.get("NBIMAGES_MAX_INFLATE_RATIO", "100")))
    except ValueError:
        return 100


class _TeeInflate(io.RawIOBase):
    """Reads of the inflated stream, copied to `out` as they pass, refused past `limit` bytes."""

    def __init__(self, src, out, limit: int, path: Path, kind: str):
        super().__init__()
        self._src, self._out, self._limit = src, out, limit
        self._path, self._kind = path, kind
        self.count = 0
        self.over = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._src.readinto(b) or 0
        self.count += n
        if self.count > self._limit:
            self.over = True
            raise self.bomb()
        self._out.write(memoryview(b)[:n])
        return n

    def bomb(self) -> InvalidImage:
        return InvalidImage(
            f"{self._path} inflates to more than {self._limit:,} bytes, over "
            f"{inflate_ratio()} times its compressed size: no image tar does that, a "
            f"decompression bomb does, so it was not inflated further. If you trust the file, "
            f"set NBIMAGES_MAX_INFLATE_RATIO higher, or decompress it yourself and open the .tar.")


def tar_kind(index: TarIndex) -> str:
    """'docker-archive' or 'oci-archive' from the members; InvalidImage for other tars."""
    if index.has("manifest.json"):
        return "docker-archive"
    if is_oci_archive(index):
        return "oci-archive"
    names = sorted(index.members)[:5]
    raise InvalidImage(f"{index.path} is not an image tar: it has neither manifest.json (docker "
                       f"save) nor oci-layout and index.json (OCI archive); it starts with "
                       f"{', '.join(names) or 'nothing'}. Give a tar written by `docker save`, "
                       "`skopeo copy` or nbimages.save().")

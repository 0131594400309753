"""Compressed layer streams: open any layer blob as its uncompressed tar, sniffing if needed.

gzip is inflated with ISA-L (`isal`), about three times zlib's speed here (see
shared/research/oci-building.md §5); zstd with `zstandard`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from typing import BinaryIO

import zstandard
from isal import igzip, isal_zlib

from ..errors import InvalidImage
from . import mediatypes as mt

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff(head: bytes) -> str | None:
    """'gzip', 'zstd' or None from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


# What the inflaters raise for damaged input (a truncated stream, a bad CRC, a flipped byte).
# Plain OSError is not among them: a failing disk is not a damaged layer.
DAMAGED = (EOFError, gzip.BadGzipFile, zlib.error, isal_zlib.error, zstandard.ZstdError)


class Inflating(io.RawIOBase):
    """Reads of a decompressor, with damage reported as InvalidImage instead of the
    inflater's own exception; closing it closes the compressed stream too.

    A compressed stream that can say why it is damaged (`damage()`, the store's blobs) is
    asked first, and the error it returns is raised instead (the store's StoreDamaged)."""

    def __init__(self, inner: BinaryIO, compressed: BinaryIO, kind: str):
        super().__init__()
        self._inner = inner
        self._compressed = compressed
        self.kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            return self._inner.readinto(b) or 0
        except DAMAGED as e:
            raise self._damaged(e) from None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except DAMAGED as e:
            raise self._damaged(e) from None

    def _damaged(self, err: BaseException) -> BaseException:
        """What to raise for the inflater's `err`: the compressed stream's own account of its
        damage when it gives one, else InvalidImage."""
        damage = getattr(self._compressed, "damage", None)
        found = damage() if damage is not None else None
        return found if isinstance(found, BaseException) else damaged(self.kind, err)

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                self._compressed.close()
        super().close()


def damaged(kind: str, err: BaseException) -> InvalidImage:
    why = str(err) or type(err).__name__
    return InvalidImage(f"the {kind} stream is damaged ({why}): it is truncated or was altered "
                        "after it was written. Fetch or save the image again.")


def decompressing(stream: BinaryIO, compression: str | None) -> BinaryIO:
    """Wrap `stream` so reads return uncompressed bytes (damage raises InvalidImage)."""
    if compression == "gzip":
        return Inflating(igzip.IGzipFile(fileobj=stream, mode="rb"), stream, "gzip")
    if compression == "zstd":
        inner = zstandard.ZstdDecompressor().stream_reader(stream, closefd=True,
                                                          read_across_frames=True)
        return Inflating(inner, stream, "zstd")
    return stream


def open_uncompressed(stream: BinaryIO, media_type: str | None = None) -> BinaryIO:
    """The uncompressed tar of a layer blob; the media type decides, else the magic bytes do.

    Docker's legacy archives hold plain or gzip `layer.tar` files under a tar media type,
    so a declared plain tar is still sniffed.
    """
    declared = None
    if media_type and media_type in mt.LAYERS:
        declared = mt.layer_compression(media_type)
    if declared:
        return decompressing(stream, declared)
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    return decompressing(stream, sniff(stream.peek(4)[:4]))

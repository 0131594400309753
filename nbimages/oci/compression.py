"""Compressed layer streams: open any layer blob as its uncompressed tar, sniffing if needed.

gzip is inflated with ISA-L (`isal`), about three times zlib's speed here (see
shared/research/oci-building.md §5); zstd with `zstandard`.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from . import mediatypes as mt
import gzip

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def sniff(head: bytes) -> str | None:
    """'gzip', 'zstd' or None from the first bytes of a blob."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def decompressing(stream: BinaryIO, compression: str | None) -> BinaryIO:
    """Wrap `stream` so reads return uncompressed bytes."""
    if compression == "gzip":
        try:
            from isal import igzip
            return igzip.IGzipFile(fileobj=stream, mode="rb")
        except ImportError:  # pragma: no cover - isal is a dependency
            return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(stream, closefd=True)
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
    if not isinstance(stream, io.BufferedIOBase) or not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    return decompressing(stream, sniff(stream.peek(4)[:4]))

"""Pinned layer compressors and the one-pass layer pipeline (tar -> diff_id -> deflate -> digest).

A compressed layer's digest is only as stable as the compressor that made it, so one
implementation and level is pinned and recorded (research/oci-building.md §5):

- gzip members get a fixed 10-byte header: mtime 0, XFL 0, OS 255 (unknown), no file name;
- the raw deflate stream comes from one library at one level; its name, version and level
  go into the manifest annotations (`COMPRESSOR_ANNOTATION`) and into build cache keys;
- input reaches the deflater in fixed 1 MiB blocks, because ISA-L's output depends on how
  the input is cut into calls (zlib's does not); the tar stream's own chunking then cannot
  leak into the digest.

The diff_id (uncompressed tar digest) and so the config digest never depend on any of this.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import BuildError
from . import mediatypes as mt

FEED = 1 << 20
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
COMPRESSOR_ANNOTATION = "org.nbimages.layer.compressor"


@dataclass(frozen=True)
class Compressor:
    """One pinned way of compressing layers: `algorithm` (gzip, zstd or none), library, level."""

    algorithm: str
    library: str
    level: int

    @property
    def version(self) -> str:
        if self.library == "isal":
            import isal
            return isal.__version__
        if self.library == "zlib":
            return zlib.ZLIB_RUNTIME_VERSION
        if self.library == "zstandard":
            import zstandard
            return zstandard.__version__
        return ""

    @property
    def ident(self) -> str:
        """`gzip isal-1.9.1 level 2`: what made the blob; part of cache keys and annotations."""
        if self.algorithm == "none":
            return "none"
        return f"{self.algorithm} {self.library}-{self.version} level {self.level}"

    @property
    def media_type(self) -> str:
        return {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD,
                "none": mt.OCI_LAYER}[self.algorithm]

    def stream(self, write: Callable[[bytes], Any]) -> "_Stream":
        """A writer that compresses what it is given and passes the output to `write`."""
        if self.algorithm == "gzip":
            return _GzipStream(self, write)
        if self.algorithm == "zstd":
            return _ZstdStream(self, write)
        return _PlainStream(write)


# isal level 2 is igzip's default: ~12x zlib-6's speed here for ~10% more bytes
# (BENCHMARKS.md "Compression (issue 3)"; benchmarks/bench_compression.py).
DEFAULT = Compressor("gzip", "isal", 2)

_NAMED = {
    "gzip": DEFAULT,
    "isal": DEFAULT,
    "zlib": Compressor("gzip", "zlib", 6),
    "zstd": Compressor("zstd", "zstandard", 3),
    "none": Compressor("none", "", 0),
}


def get(spec: "str | Compressor | None" = None) -> Compressor:
    """A compressor by name: gzip (= isal level 2), zlib (gzip level 6), zstd, none; or `lib:level`."""
    if spec is None:
        return DEFAULT
    if isinstance(spec, Compressor):
        return spec
    name, _, level = spec.partition(":")
    base = _NAMED.get(name.strip().lower())
    if base is None:
        raise BuildError(f"unknown compression {spec!r}; use one of {', '.join(_NAMED)} "
                         "(optionally with a level, e.g. zlib:9).")
    if level:
        try:
            return Compressor(base.algorithm, base.library, int(level))
        except ValueError:
            raise BuildError(f"compression level {level!r} is not a number.") from None
    return base


class _Stream:
    """Blocks the input into FEED-sized calls so the output does not depend on the caller's cuts."""

    def __init__(self, write: Callable[[bytes], Any]):
        self._out = write
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if not self._buf and len(data) >= FEED:
            view = memoryview(data)
            n = len(view) - len(view) % FEED
            for i in range(0, n, FEED):
                self._feed(view[i:i + FEED])
            self._buf += view[n:]
            return
        self._buf += data
        if len(self._buf) >= FEED:
            view = memoryview(self._buf)
            n = len(view) - len(view) % FEED
            for i in range(0, n, FEED):
                self._feed(view[i:i + FEED])
            view.release()
            del self._buf[:n]

    def close(self) -> None:
        if self._buf:
            self._feed(memoryview(self._buf))
        self._buf = bytearray()
        self._finish()

    def _feed(self, block) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError


class _GzipStream(_Stream):
    def __init__(self, comp: Compressor, write):
        super().__init__(write)
        if comp.library == "isal":
            from isal import isal_zlib as lib
        else:
            lib = zlib
        self._c = lib.compressobj(comp.level, lib.DEFLATED, -15)
        self._crc = 0
        self._isize = 0
        self._crc32 = lib.crc32
        self._out(GZIP_HEADER)

    def _feed(self, block) -> None:
        self._crc = self._crc32(block, self._crc)
        self._isize += len(block)
        out = self._c.compress(block)
        if out:
            self._out(out)

    def _finish(self) -> None:
        self._out(self._c.flush())
        self._out(struct.pack("<II", self._crc & 0xFFFFFFFF, self._isize & 0xFFFFFFFF))


class _ZstdStream(_Stream):
    def __init__(self, comp: Compressor, write):
        super().__init__(write)
        import zstandard
        # threads=0: single-threaded; zstd output differs between 0 and >=1 threads.
        self._c = zstandard.ZstdCompressor(level=comp.level, threads=0).compressobj()

    def _feed(self, block) -> None:
        out = self._c.compress(bytes(block))
        if out:
            self._out(out)

    def _finish(self) -> None:
        self._out(self._c.flush())


class _PlainStream(_Stream):
    def write(self, data: bytes) -> None:
        self._out(data)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class LayerDigests:
    diff_id: str
    digest: str
    size: int
    tar_size: int
    media_type: str


class LayerPipeline:
    """Write a layer tar in one pass: hash it (diff_id), compress it, hash and hand on the blob."""

    def __init__(self, compressor: Compressor, write: Callable[[bytes], Any]):
        self._compressor = compressor
        self._sink = write
        self._diff = hashlib.sha256()
        self._blob = hashlib.sha256()
        self.tar_size = 0
        self.size = 0
        self._stream = compressor.stream(self._emit)

    def _emit(self, data) -> None:
        self._blob.update(data)
        self.size += len(data)
        self._sink(data)

    def write(self, data: bytes) -> int:
        self._diff.update(data)
        self.tar_size += len(data)
        self._stream.write(data)
        return len(data)

    def close(self) -> LayerDigests:
        self._stream.close()
        return LayerDigests("sha256:" + self._diff.hexdigest(), "sha256:" + self._blob.hexdigest(),
                            self.size, self.tar_size, self._compressor.media_type)

"""OCI image layout directories (image-layout.md): read images out, write blobs and refs in.

Blobs are written to a temporary file in the same directory, hashed while written, checked
against the expected digest and only then renamed into place, so a reader never sees a
half-written or wrong blob.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterable

from ..atomic import write_atomic
from ..errors import ImageNotFound, InvalidImage, os_errors
from ..image import Image, Layer
from . import digest as dg, imageconfig, mediatypes as mt
from .descriptor import Descriptor, Platform, check_platform
from .manifest import Index, Manifest, media_type_of

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
INDEX_LIMIT = 64 << 20  # about 200,000 tagged images


def is_layout(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / LAYOUT_FILE).is_file() and (p / "index.json").is_file()


class BlobWriter:
    """A file-like sink that hashes what is written and commits it only if the digest matches."""

    def __init__(self, layout: "OCILayout", expected: str | None = None):
        self._layout = layout
        self.expected = expected
        alg = dg.parse(expected)[0] if expected else "sha256"
        self._hash = dg.hasher(expected)
        self._alg = alg
        self.size = 0
        tmpdir = layout.path / "blobs" / alg
        tmpdir.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", dir=tmpdir)
        self._f = os.fdopen(fd, "wb")
        self.digest: str | None = None

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def commit(self) -> Descriptor:
        """Verify and rename into place; returns a descriptor (media type left empty)."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        actual = f"{self._alg}:{self._hash.hexdigest()}"
        try:
            if self.expected:
                dg.check(self.expected, actual, "blob")
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self._layout.blob_path(actual))
        except BaseException:
            self.abort()
            raise
        self.digest = actual
        return Descriptor("", actual, self.size)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class OCILayout:
    """An OCI image layout on disk."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False):
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.path / LAYOUT_FILE).exists():
                self._write_atomic(self.path / LAYOUT_FILE, LAYOUT_VERSION)
            if not (self.path / "index.json").exists():
                self._write_atomic(self.path / "index.json", Index.build([]).raw)
        elif not is_layout(self.path):
            if not self.path.exists():
                raise ImageNotFound(f"{self.path} does not exist. Give the path of an OCI image "
                                    "layout directory (one holding oci-layout and index.json).")
            raise InvalidImage(f"{self.path} is not an OCI image layout: it has no oci-layout and "
                               "index.json. Point to the directory `skopeo copy ... oci:DIR` or "
                               "`image.save(DIR, format='oci-dir')` wrote.")

    # ---- blobs
    def blob_path(self, digest: str) -> Path:
        alg, hexd = dg.parse(digest)
        return self.path / "blobs" / alg / hexd

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: str) -> BinaryIO:
        return self._open_file(digest)

    def _open_file(self, digest: str) -> BinaryIO:
        """The blob's file as it is on disk, unverified; InvalidImage when it is missing."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise InvalidImage(f"blob {digest} is missing from the OCI layout {self.path}; the "
                               "layout is incomplete. Copy the image again.") from None

    def read_blob(self, digest: str, limit: int = 64 << 20) -> bytes:
        """A small blob (manifest, config) read whole and verified (hashed once, here)."""
        with self._open_file(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidImage(f"blob {digest} is too large to be a manifest or config.")
        dg.check(digest, dg.of_bytes(data, dg.parse(digest)[0]), "blob")
        return data

    def blob_writer(self, expected: str | None = None) -> BlobWriter:
        return BlobWriter(self, expected)

    def write_blob(self, data: bytes | BinaryIO | Iterable[bytes], expected: str | None = None,
                   media_type: str = "") -> Descriptor:
        """Store content (bytes, a stream or chunks) verified against `expected` if given.

        An existing blob with the expected digest is kept and the input is not read.
        """
        if expected and self.has_blob(expected):
            return Descriptor(media_type, expected, self.blob_path(expected).stat().st_size)
        with os_errors(f"writing {expected or 'a blob'} into {self.path}"):
            return self._write_blob(data, expected, media_type)

    def _write_blob(self, data, expected: str | None, media_type: str) -> Descriptor:
        w = self.blob_writer(expected)
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                w.write(bytes(data))
            elif hasattr(data, "read"):
                while chunk := data.read(dg.CHUNK):  # type: ignore[union-attr]
                    w.write(chunk)
            else:
                for chunk in data:  # type: ignore[union-attr]
                    w.write(chunk)
        except BaseException:
            w.abort()
            raise
        d = w.commit()
        return Descriptor(media_type, d.digest, d.size)

    # ---- index
    def index(self) -> Index:
        try:
            with open(self.path / "index.json", "rb") as f:
                raw = f.read(INDEX_LIMIT + 1)
        except FileNotFoundError:
            raise InvalidImage(f"{self.path}/index.json is missing.") from None
        if len(raw) > INDEX_LIMIT:
            raise InvalidImage(f"{self.path}/index.json is over {INDEX_LIMIT >> 20} MiB, far more "
                               "than any layout's index; it is damaged or crafted.")
        return Index.parse(raw)

    def write_index(self, index: Index) -> None:
        self._write_atomic(self.path / "index.json", index.raw)

    def refs(self) -> dict[str, Descriptor]:
        return {d.annotations[REF_NAME]: d for d in self.index().manifests if REF_NAME in d.annotations}

    def set_ref(self, name: str | None, desc: Descriptor) -> None:
        """Point `name` at `desc` in index.json (replacing any entry of that name).

        With name None the descriptor is added untagged unless already present.
        Callers that share the layout across processes hold a lock around this.
        """
        current = self.index().manifests
        if name is None:
            if any(d.digest == desc.digest and REF_NAME not in d.annotations for d in current):
                return
            keep = current
            new = desc
        else:
            keep = [d for d in current if d.annotations.get(REF_NAME) != name]
            new = desc.with_annotations(**{REF_NAME: name})
        self.write_index(Index.build(keep + [new], annotations=self.index().annotations or None))

    def remove_ref(self, name: str) -> bool:
        current = self.index().manifests
        keep = [d for d in current if d.annotations.get(REF_NAME) != name]
        if len(keep) == len(current):
            return False
        self.write_index(Index.build(keep))
        return True

    # ---- images
    def resolve(self, tag: str | None = None) -> Descriptor:
        """The index entry for `tag` (ref name, or a digest), or the only entry when tag is None."""
        entries = self.index().manifests
        if tag and dg.is_digest(tag) and not any(d.digest == tag for d in entries) \
                and self.has_blob(tag):
            return Descriptor(mt.OCI_MANIFEST, tag, self.blob_path(tag).stat().st_size)
        return select_entry(entries, tag, f"the OCI layout {self.path}", f"oci:{self.path}")

    def image(self, tag: str | Descriptor | None = None, platform: str | Platform | None = None,
              source: str | None = None):
        """Open an image (selecting a platform through an index) as an `Image`."""
        desc = tag if isinstance(tag, Descriptor) else self.resolve(tag)
        name = desc.annotations.get(REF_NAME)
        return image_from_blobs(self.read_blob, self.open_blob, desc, platform,
                                source=source or f"oci:{self.path}", names=[name] if name else [])

    def _write_atomic(self, target: Path, data: bytes) -> None:
        write_atomic(target, data)


def select_entry(entries: list[Descriptor], tag: str | None, where: str, source: str) -> Descriptor:
    """The index entry named `tag` (ref name or manifest digest), or the only one when tag is None.

    `where` names the container in messages ("the OCI layout DIR"); `source` is how the user
    names it (`oci:DIR`), to show the `SOURCE:TAG` form when a tag is needed.
    """
    if tag:
        for d in entries:
            if d.annotations.get(REF_NAME) == tag or d.digest == tag:
                return d
        names = sorted(d.annotations[REF_NAME] for d in entries if REF_NAME in d.annotations)
        raise ImageNotFound(f"no image tagged {tag!r} in {where} (tags there: "
                            f"{', '.join(names) or 'none'}). Use one of those tags.")
    if not entries:
        raise ImageNotFound(f"{where} holds no image.")
    if len(entries) > 1:
        names = sorted(d.annotations.get(REF_NAME, d.digest) for d in entries)
        raise ImageNotFound(f"{where} holds {len(entries)} images; name one as {source}:TAG "
                            f"(tags: {', '.join(names)}).")
    return entries[0]


def image_from_blobs(read_blob, open_blob, desc: Descriptor, platform=None, *, source: str,
                     names: list[str] | None = None):
    """Build an Image from a content-addressed blob reader, following an index to one platform."""

    raw = read_blob(desc.digest)
    mtype = desc.media_type
    mtype = media_type_of(raw, mtype or None)
    depth = 0
    while mt.is_index(mtype):
        depth += 1
        if depth > 4:
            raise InvalidImage("index nesting is too deep.")
        desc = Index.parse(raw, mtype).select(platform)
        raw = read_blob(desc.digest)
        mtype = media_type_of(raw, desc.media_type)
    manifest = Manifest.parse(raw, mtype)
    config_bytes = read_blob(manifest.config.digest)
    config = imageconfig.parse(config_bytes)
    diff_ids = imageconfig.diff_ids(config)
    if len(diff_ids) != len(manifest.layers):
        raise InvalidImage(f"the config lists {len(diff_ids)} diff_ids but the manifest "
                           f"{len(manifest.layers)} layers; the image is damaged.")
    layers = [Layer(ld, diff_id, (lambda d=ld.digest: open_blob(d)))
              for ld, diff_id in zip(manifest.layers, diff_ids)]
    image = Image(manifest, config_bytes, layers, source=source, names=list(names or []),
                  _config=config)
    check_platform(image.platform, platform, source)
    return image

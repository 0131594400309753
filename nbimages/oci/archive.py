"""Image tars read in place and written as a stream: oci-archive, and the tar plumbing
that docker-archive shares.

Reading never extracts: the outer tar is scanned once (`TarIndex`), member offsets are
recorded, and each member opens as a seekable `FileSlice`, so a layer stored uncompressed in
the archive can be walked by seeking over file data. Writing is a generator of byte chunks
(`tar_stream`) fed blob by blob from `Layer.open_blob()`, so neither direction ever holds a
layer in memory, and the same bytes can go to a file or straight into `docker load`.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from ..errors import ImageNotFound, InvalidImage
from . import digest as dg, mediatypes as mt
from .compression import sniff
from .descriptor import Descriptor, Platform
from .fileslice import FileSlice, open_slice
from .tarscan import PATH_MAX
from .layout import LAYOUT_FILE, LAYOUT_VERSION, REF_NAME, image_from_blobs, select_entry
from .manifest import Index, Manifest

BLOCK = 512


# --------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Member:
    name: str
    offset: int          # of the member's data in the outer file
    size: int
    kind: str            # "file", "dir", "symlink", "hardlink", "other"
    linkname: str = ""


class TarIndex:
    """The members of an uncompressed tar file, found by one scan of its headers."""

    def __init__(self, path: str | os.PathLike, shown: str | os.PathLike | None = None):
        # `file` is read; `path` is what messages name (the user's file for an inflated copy)
        self.file = Path(path)
        self.path = Path(shown) if shown is not None else self.file
        self.members: dict[str, Member] = {}
        try:
            file_size = self.file.stat().st_size
        except FileNotFoundError:
            raise ImageNotFound(f"{self.path} does not exist. Give the path of an image tar "
                                "(`docker save -o FILE`, `skopeo copy ... oci-archive:FILE`).") from None
        if self.file.is_dir():
            raise InvalidImage(f"{self.path} is a directory, not a tar file. For an OCI layout "
                               f"directory use oci:{self.path}.")
        with open(self.file, "rb") as f:
            head = f.read(BLOCK)
        if len(head) < BLOCK or head[257:262] != b"ustar" and not _is_v7_header(head):
            raise InvalidImage(f"{self.path} is not an image tar: it is not a tar file at all "
                               f"({_what_is(head)}). Give a tar written by `docker save` or "
                               "`skopeo copy ... oci-archive:`.")
        try:
            with tarfile.open(self.file, "r:", ignore_zeros=False) as tf:
                for ti in tf:
                    if tf.pax_headers:
                        raise InvalidImage(self._refused(
                            "a PAX global header, which Python's tar reader applies to the "
                            "members after it and Docker's ignores"))
                    if len(ti.name) > PATH_MAX or len(ti.linkname) > PATH_MAX:
                        raise InvalidImage(self._refused(f"a member name of {len(ti.name):,} "
                                                         "characters"))
                    name = member_name(ti.name)
                    if ti.isreg():
                        kind = "file"
                    elif ti.isdir():
                        kind = "dir"
                    elif ti.issym():
                        kind = "symlink"
                    elif ti.islnk():
                        kind = "hardlink"
                    else:
                        kind = "other"
                    size = ti.size if kind == "file" else 0
                    if ti.offset_data + size > file_size:
                        raise InvalidImage(self._truncated(name))
                    new = Member(name, ti.offset_data, size, kind, ti.linkname)
                    if name in self.members and not self._same(self.members[name], new):
                        raise InvalidImage(self._refused(
                            f"the member {name!r} twice, with different contents; `docker "
                            "load` takes the last copy, other readers the first"))
                    self.members.setdefault(name, new)
        except tarfile.TarError as e:
            raise InvalidImage(self._truncated(None, e)) from None
        except EOFError:
            raise InvalidImage(self._truncated(None)) from None

    def _same(self, a: Member, b: Member) -> bool:
        """Two members of one name that every reader would take alike (a repeated directory,
        the same layer written twice)."""
        if (a.kind, a.size, a.linkname) != (b.kind, b.size, b.linkname):
            return False
        if a.kind != "file":
            return True
        with open_slice(self.file, a.offset, a.size) as fa, \
                open_slice(self.file, b.offset, b.size) as fb:
            return dg.of_stream(fa) == dg.of_stream(fb)

    def _refused(self, what: str) -> str:
        return (f"{self.path} holds {what}. Tools would disagree on what this archive "
                "contains, so nbimages refuses it instead of picking one reading. No tool "
                "writes such an archive by accident: it was crafted or damaged; save or "
                "export the image again.")

    def _truncated(self, name: str | None, err: Exception | None = None) -> str:
        where = f" in member {name!r}" if name else ""
        why = f" ({err})" if err else ""
        return (f"{self.path} is truncated or damaged{where}{why}: the tar ends before its data "
                "does. Copy or save the image again.")

    def resolve(self, name: str, _depth: int = 0) -> Member | None:
        """The regular-file member `name` refers to, following symlinks and hard links."""
        m = self.members.get(member_name(name))
        if m is None or _depth > 16:
            return None
        if m.kind == "symlink":
            target = m.linkname if m.linkname.startswith("/") else \
                posixpath.join(posixpath.dirname(m.name), m.linkname)
            return self.resolve(target, _depth + 1)
        if m.kind == "hardlink":
            return self.resolve(m.linkname, _depth + 1)
        return m if m.kind == "file" else None

    def has(self, name: str) -> bool:
        return self.resolve(name) is not None

    def size(self, name: str) -> int:
        return self._need(name).size

    def open(self, name: str) -> BinaryIO:
        """A seekable, buffered reader over the member's bytes (no extraction)."""
        m = self._need(name)
        return open_slice(self.file, m.offset, m.size)

    def head(self, name: str, n: int) -> bytes:
        """The member's first `n` bytes (fewer if it is shorter), read without a buffer: a
        buffered reader would read a whole buffer (1 MiB) for a look at the magic bytes."""
        m = self._need(name)
        with FileSlice(self.file, m.offset, m.size) as f:
            return f.read(n) or b""

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        m = self._need(name)
        if m.size > limit:
            raise InvalidImage(f"{name} in {self.path} is {m.size:,} bytes, too large to be a "
                               "manifest or config.")
        with self.open(name) as f:
            return f.read()

    def _need(self, name: str) -> Member:
        m = self.resolve(name)
        if m is None:
            raise InvalidImage(f"{self.path} has no member {name!r} though its manifest refers "
                               "to it; the archive is incomplete. Save the image again.")
        return m


def member_name(name: str) -> str:
    """A tar member's name as the index keys it: no leading `/` or `./`, normalised."""
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath(name) if name else name


def _is_v7_header(head: bytes) -> bool:
    """An old-style tar header: its checksum field matches the header bytes."""
    try:
        stored = int(head[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:])
    return stored == computed


def _what_is(head: bytes) -> str:
    kind = sniff(head)
    if kind:
        return f"it starts like {kind} data"
    if not head:
        return "it is empty"
    return "unknown content"


class BlobArchive:
    """The `blobs/<alg>/<hex>` of an OCI layout held in a tar, as an image_from_blobs source."""

    def __init__(self, tar: TarIndex):
        self.tar = tar

    @staticmethod
    def blob_name(digest: str) -> str:
        alg, hexd = dg.parse(digest)
        return f"blobs/{alg}/{hexd}"

    def has_blob(self, digest: str) -> bool:
        return self.tar.has(self.blob_name(digest))

    def read_blob(self, digest: str) -> bytes:
        name = self.blob_name(digest)
        if not self.tar.has(name):
            raise InvalidImage(f"blob {digest} is missing from {self.tar.path}; the archive is "
                               "incomplete. Save the image again.")
        data = self.tar.read(name)
        dg.check(digest, f"{dg.parse(digest)[0]}:{_hex(data, digest)}",
                 f"blob {digest} in {self.tar.path}")
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        name = self.blob_name(digest)
        if not self.tar.has(name):
            raise InvalidImage(f"blob {digest} is missing from {self.tar.path}; the archive is "
                               "incomplete. Save the image again.")
        return self.tar.open(name)

    def index(self) -> Index:
        if not self.tar.has("index.json"):
            raise InvalidImage(f"{self.tar.path} has no index.json, so it is not an OCI archive.")
        return Index.parse(self.tar.read("index.json"))


def _hex(data: bytes, digest: str) -> str:
    h = dg.hasher(digest)
    h.update(data)
    return h.hexdigest()


def is_oci_archive(tar: TarIndex) -> bool:
    return tar.has(LAYOUT_FILE) and tar.has("index.json")


class OCIArchive:
    """An OCI image layout stored as a tar (`oci-archive:`), read in place."""

    def __init__(self, path: str | os.PathLike, tar: TarIndex | None = None):
        self.tar = tar or TarIndex(path)
        self.path = self.tar.path
        if not is_oci_archive(self.tar):
            raise InvalidImage(f"{self.path} is a tar but not an OCI archive: it has no oci-layout "
                               "and index.json. A `docker save` tar opens as docker-archive:PATH.")
        self.blobs = BlobArchive(self.tar)

    def refs(self) -> dict[str, Descriptor]:
        return {d.annotations[REF_NAME]: d for d in self.blobs.index().manifests
                if REF_NAME in d.annotations}

    def resolve(self, tag: str | None = None) -> Descriptor:
        """The index entry named `tag` (ref name or manifest digest), or the only one."""
        return select_entry(self.blobs.index().manifests, tag, f"the OCI archive {self.path}",
                            f"oci-archive:{self.path}")

    def image(self, tag: str | Descriptor | None = None, platform: str | Platform | None = None,
              *, source: str | None = None, names: list[str] | None = None):
        desc = tag if isinstance(tag, Descriptor) else self.resolve(tag)
        if names is None:
            name = desc.annotations.get(REF_NAME)
            names = [name] if name else []
        return image_from_blobs(self.blobs.read_blob, self.blobs.open_blob, desc, platform,
                                source=source or f"oci-archive:{self.path}", names=names)


# --------------------------------------------------------------------------- writing

@dataclass
class Entry:
    """One member to write: regular file from bytes or from an opener, or a directory."""

    name: str
    size: int = 0
    data: bytes | None = None
    opener: Callable[[], BinaryIO] | None = None
    digest: str | None = None   # verified while streaming when given
    is_dir: bool = False

    @classmethod
    def file(cls, name: str, data: bytes) -> "Entry":
        return cls(name, len(data), data=data)

    @classmethod
    def blob(cls, name: str, size: int, opener: Callable[[], BinaryIO], digest: str) -> "Entry":
        return cls(name, size, opener=opener, digest=digest)


def _header(entry: Entry) -> bytes:
    ti = tarfile.TarInfo(entry.name + ("/" if entry.is_dir else ""))
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if entry.is_dir:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.size = 0
    else:
        ti.type = tarfile.REGTYPE
        ti.mode = 0o644
        ti.size = entry.size
    # PAX only when needed (sizes past 8 GiB, long names): plain ustar headers otherwise.
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def tar_stream(entries: Iterable[Entry], chunk: int = dg.CHUNK) -> Iterator[bytes]:
    """The bytes of a deterministic tar of `entries`, in the order given, as chunks.

    Fixed mtime 0, uid/gid 0, no user/group names, modes 0644/0755. Blob entries are
    streamed from their opener, checked for length and (when given) digest: a blob that does
    not match raises DigestMismatch / InvalidImage before the tar is finished.
    """
    for e in entries:
        yield _header(e)
        if e.is_dir:
            continue
        if e.data is not None:
            yield e.data
        else:
            assert e.opener is not None
            h = dg.hasher(e.digest) if e.digest else None
            left = e.size
            with e.opener() as f:
                while left > 0:
                    data = f.read(min(chunk, left))
                    if not data:
                        raise InvalidImage(f"blob {e.digest or e.name} ended after "
                                           f"{e.size - left:,} of its {e.size:,} bytes; the "
                                           "source is damaged or changed while being read.")
                    if h:
                        h.update(data)
                    left -= len(data)
                    yield data
                if f.read(1):
                    raise InvalidImage(f"blob {e.digest or e.name} is longer than the {e.size:,} "
                                       "bytes its descriptor says; the source is damaged.")
            if h:
                dg.check(e.digest, f"{dg.parse(e.digest)[0]}:{h.hexdigest()}", f"blob {e.digest}")
        pad = -e.size % BLOCK
        if pad:
            yield b"\0" * pad
    yield b"\0" * (2 * BLOCK)


def with_dirs(files: list[Entry]) -> list[Entry]:
    """Entries sorted by name with their parent directories first (as Docker writes them)."""
    dirs: set[str] = set()
    for e in files:
        parent = posixpath.dirname(e.name)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    out = [Entry(d, is_dir=True) for d in dirs] + list(files)
    return sorted(out, key=lambda e: e.name.split("/"))


# --------------------------------------------------------------------------- OCI conversion

_TO_OCI_LAYER = {
    mt.DOCKER_LAYER: mt.OCI_LAYER,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_ZSTD: mt.OCI_LAYER_ZSTD,
    mt.DOCKER_LAYER_FOREIGN_GZIP: mt.OCI_LAYER_ND_GZIP,
}


def oci_manifest(image) -> Manifest:
    """The image's manifest as OCI: kept byte for byte when it is OCI already, otherwise a
    Docker schema 2 manifest translated field for field (same blobs, new manifest digest), as
    `skopeo copy` does; umoci and OCI layouts expect OCI manifests.
    """
    m = image.manifest
    if m.media_type == mt.OCI_MANIFEST:
        return m
    config = Descriptor(mt.OCI_CONFIG, m.config.digest, m.config.size)
    layers = [Descriptor(_TO_OCI_LAYER.get(d.media_type, d.media_type), d.digest, d.size,
                         dict(d.annotations), None, d.urls) for d in m.layers]
    return Manifest.build(config, layers, annotations=m.annotations or None)


def blob_entries(image, manifest: Manifest) -> list[Entry]:
    """blobs/… entries for the manifest, its config and each distinct layer."""
    entries = {
        manifest.digest: Entry.file(BlobArchive.blob_name(manifest.digest), manifest.raw),
        manifest.config.digest: Entry.file(BlobArchive.blob_name(manifest.config.digest),
                                           image.config_bytes),
    }
    for desc, layer in zip(manifest.layers, image.layers):
        if desc.digest not in entries:
            entries[desc.digest] = Entry.blob(BlobArchive.blob_name(desc.digest), desc.size,
                                              layer.open_blob, desc.digest)
    return list(entries.values())


def oci_archive_entries(image, ref_name: str | None = None,
                        annotations: dict[str, str] | None = None) -> list[Entry]:
    """The members of an OCI layout tar holding `image` (optionally tagged `ref_name`)."""
    manifest = oci_manifest(image)
    ann = dict(annotations or {})
    if ref_name:
        ann[REF_NAME] = ref_name
    index = Index.build([manifest.descriptor(**ann)])
    files = blob_entries(image, manifest) + [
        Entry.file("index.json", index.raw),
        Entry.file(LAYOUT_FILE, LAYOUT_VERSION),
    ]
    return with_dirs(files)


def oci_index_entries(index, ref_name: str | None = None) -> list[Entry]:
    """The members of an OCI layout tar holding a multi-platform image (an ImageIndex): every
    platform's blobs and manifest, the index blob, and index.json naming it `ref_name`."""
    files: dict[str, Entry] = {}
    for image in index.images:
        check_blob_sizes(image)
        for entry in blob_entries(image, image.manifest):
            files.setdefault(entry.name, entry)
    files.setdefault(BlobArchive.blob_name(index.digest),
                     Entry.file(BlobArchive.blob_name(index.digest), index.raw))
    ann = {REF_NAME: ref_name} if ref_name else {}
    top = Index.build([Descriptor(index.media_type, index.digest, len(index.raw), ann)])
    return with_dirs(list(files.values()) + [Entry.file("index.json", top.raw),
                                             Entry.file(LAYOUT_FILE, LAYOUT_VERSION)])


def check_blob_sizes(image) -> None:
    """Descriptor sizes are what tar headers get: refuse an image whose config disagrees."""
    if len(image.config_bytes) != image.manifest.config.size:
        raise InvalidImage(f"the config is {len(image.config_bytes)} bytes but the manifest says "
                           f"{image.manifest.config.size}; the image is damaged.")


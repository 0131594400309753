"""The two nouns: an Image is a config plus an ordered list of Layers; layers are streams.

Every source (engine, registry, docker-archive, OCI layout, the store, the builder) produces
these, and every sink and every analysis consumes them, so analysis is written once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import re
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, TypeVar

from .errors import DigestMismatch, NbimagesError, StoreDamaged
from .oci import compression, digest as dg, imageconfig, mediatypes as mt
from .oci import rangehash
from .oci.descriptor import Descriptor, Platform
from .oci.fileslice import FileSlice
from .oci.manifest import Index, Manifest
from .reference import Reference
from .verbs import provided


T = TypeVar("T")
BUFFER = 64 << 10  # the buffer of a layer tar checked beside its reader

# (blob digest, diff_id) pairs whose blob was seen to inflate to that diff_id in this process.
# Content addressing makes the pair a fact: any blob that verifies against the digest later
# inflates to the same tar, so a consumer that checks the blob need not inflate it again.
_verified: set[tuple[str, str]] = set()


def trust(digest: str, diff_id: str) -> None:
    """Record that the blob `digest` inflates to `diff_id`, for a producer that computed both
    from the bytes it wrote (the builder), so consumers do not inflate the blob to check."""
    _verified.add((digest, diff_id))


class _VerifyingTar(dg.VerifyingReader):
    """The uncompressed tar, hashed against the diff_id; at its end the rest of the blob is
    read too, so the blob's own digest and size check runs as well. `size` is the tar's
    length when known (a blob that is its own tar: the descriptor's size)."""

    def __init__(self, tar: BinaryIO, blob: "dg.VerifyingReader | None", layer: "Layer",
                 size: int | None = None):
        super().__init__(tar, layer.diff_id, size, what=f"the uncompressed layer "
                         f"{dg.short(layer.digest)} (its config diff_id)")
        self._blob = blob
        self._pair = (layer.digest, layer.diff_id)

    def settle(self, actual: str, count: int) -> None:
        super().settle(actual, count)
        if self._blob is not None:
            self._blob.drain()
        _verified.add(self._pair)


class _OpenedOnRead(io.RawIOBase):
    """A stream that `opener` opens at its first read. The second handle of a layer checked
    beside its reader is read only when no hash helper can do it: the layers read ahead and
    those still being checked would otherwise each hold one open, with its 1 MiB buffer."""

    def __init__(self, opener: Callable[[], BinaryIO]):
        super().__init__()
        self._opener = opener
        self._f: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._f is None:
            self._f = self._opener()
        return self._f.readinto(b)  # type: ignore[attr-defined]

    def close(self) -> None:
        try:
            if self._f is not None:
                self._f.close()
        finally:
            super().close()


class _HashedAside(io.BufferedReader):
    """A seekable uncompressed layer tar whose verification runs beside the reader: readers
    keep skipping file data while the hash uses the other core. `drain()` waits for it and
    raises what it found.

    The hash runs in the helper process (`rangehash`) when the tar is a range of a regular
    file, so it never waits for this process's GIL; otherwise, or when no helper can run,
    in a thread of its own over a second handle (hashlib releases the GIL while it hashes).
    """

    def __init__(self, raw: BinaryIO, check: "_VerifyingTar"):
        # readers of tars skip file data with positioned reads of the raw slice, and large
        # reads pass by the buffer: a small one, as many of these may be open at once
        super().__init__(raw, BUFFER)  # type: ignore[arg-type]
        self._check = check
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._elsewhere = None
        where = raw.span() if isinstance(raw, FileSlice) else None  # a layer in an outer tar
        if where is not None and where[2] >= rangehash.MIN_BYTES:
            fd, offset, length = where
            if check.expected_size is not None:  # one byte more shows a longer blob
                length = min(length, check.expected_size + 1)
            try:
                self._elsewhere = rangehash.submit(fd, offset, length, check.algorithm)
            except rangehash.Unavailable:
                pass
        if self._elsewhere is None:
            self._in_thread()

    def _in_thread(self) -> None:
        self._thread = threading.Thread(target=self._hash, name="nbimages-verify", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        try:
            self._check.drain()
        except BaseException as e:  # noqa: BLE001 - handed to the reader in drain()
            self._error = e
        finally:
            self._check.close()

    def checked(self) -> bool:
        """True when the hash beside the reader has finished: `drain()` will not wait."""
        if self._elsewhere is not None:
            return self._elsewhere.done()
        return self._thread is None or not self._thread.is_alive()

    def drain(self) -> None:
        if self._elsewhere is not None:
            try:
                hexdigest, count = self._elsewhere.result()
            except (rangehash.Unavailable, OSError):
                self._in_thread()  # the helper failed: hash here after all
            else:
                self._check.close()
                self._check.settle(f"{self._check.algorithm}:{hexdigest}", count)
                return
            finally:
                self._elsewhere = None
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._thread is None:  # a thread closes its handle when it ends
                self._check.close()


class Layer:
    """One filesystem layer: its blob as the source stores it, and its uncompressed tar.

    `digest`/`size`/`media_type` describe the stored blob (compressed or not); `diff_id` is
    the digest of the uncompressed tar (config `rootfs.diff_ids`). Both streams verify what
    they hand out: the blob against digest and size, the tar against the diff_id, and a
    difference raises DigestMismatch when the stream is read to its end.
    """

    def __init__(self, descriptor: Descriptor, diff_id: str | None,
                 open_blob: Callable[[], BinaryIO], *, open_tar: Callable[[], BinaryIO] | None = None,
                 is_local: Callable[[], bool] | None = None, tar_is_file: bool = False):
        self.descriptor = descriptor
        self.diff_id = diff_id
        self._open_blob = open_blob
        self._open_tar = open_tar
        self._tar_is_file = tar_is_file
        self._is_local = is_local

    @property
    def local(self) -> bool:
        """False while opening the layer would first download it (a registry layer)."""
        return True if self._is_local is None else self._is_local()

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def compression(self) -> str | None:
        try:
            return mt.layer_compression(self.media_type)
        except ValueError:
            return None

    def open_blob(self) -> BinaryIO:
        """The blob as stored (what `digest` hashes), checked against digest and size when
        read to its end (DigestMismatch). Close it when done."""
        f = self._open_blob()
        if isinstance(f, dg.VerifyingReader):
            return f
        return dg.VerifyingReader(f, self.digest, self.size, what=f"the layer blob {self.digest}")

    @property
    def verified(self) -> bool:
        """True once this blob was seen to inflate to the diff_id (in this process)."""
        return self.diff_id is None or (self.digest, self.diff_id) in _verified

    @property
    def checked_aside(self) -> bool:
        """True when reading `open_tar()` needs no thread of the reader's own: the layer is
        verified already, or its blob is its own uncompressed tar in a file (`tar_is_file`:
        `open_tar` hands out a buffered file or a slice of one), hashed beside the reader."""
        return self.verified or (self._tar_is_file and self._open_tar is not None
                                 and self.digest == self.diff_id)

    def open_tar(self, verify: bool = True) -> BinaryIO:
        """The uncompressed layer tar (what `diff_id` hashes), streamed. Close it when done.

        Read to its end, it raises DigestMismatch unless the tar matches the config's diff_id
        and the blob its descriptor. With verify=False, or once this process has verified the
        layer, a tar the source holds uncompressed opens seekable, so readers skip file data.
        """
        if self._open_tar is not None and (not verify or self.verified):
            return self._open_tar()
        if self._open_tar is not None and self.digest == self.diff_id:
            # blob and tar are one file: one hash checks digest, size and diff_id, beside
            # the reader, which keeps skipping file data
            raw = self._open_tar()
            if isinstance(raw, io.BufferedReader):
                check = _VerifyingTar(_OpenedOnRead(self._open_blob), None, self, self.size)
                return _HashedAside(raw.detach(), check)
            raw.close()
        if not verify or self.diff_id is None:
            return compression.open_uncompressed(self._open_blob(), self.media_type)
        blob = self.open_blob()
        return _VerifyingTar(compression.open_uncompressed(blob, self.media_type), blob, self)

    def __repr__(self) -> str:
        return f"<Layer {dg.short(self.digest)} {self.size:,} bytes {self.media_type.rsplit('.', 1)[-1]}>"


class LayerTar:
    """`layer.open_tar()` for a block that reads it (`with LayerTar(...) as f:`): when the
    block ends the rest is read so the diff_id and blob checks run, and a mismatch is
    re-raised naming the image and layer. The tar opens when this object is made, so a
    reader can open the next layers ahead, to have their checks run while it reads this
    one; `close()` gives up one that is not read.

    `read(reader)` is the other way to read it, for checks that run beside the reader: the
    tar stays open with its checks running after the reader returns; `done()` tells when
    they have finished, and `check()` ends them (waiting if need be) as leaving the block
    does. What was read must not be used before `check()` returns."""

    def __init__(self, layer: Layer, index: int, image_name: str):
        self._where = (layer, index, image_name)
        with self._mapped():
            self._f = layer.open_tar()

    @contextlib.contextmanager
    def _mapped(self):
        try:
            yield
        except StoreDamaged:
            raise  # the store's own error names the image, the layer and the repair already
        except DigestMismatch as e:
            raise layer_mismatch(e, *self._where) from None

    def __enter__(self) -> BinaryIO:
        return self._f

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None:
                drain = getattr(self._f, "drain", None)
                if drain is not None:
                    with self._mapped():
                        drain()
            elif isinstance(value, DigestMismatch) and not isinstance(value, StoreDamaged):
                raise layer_mismatch(value, *self._where) from None  # found while reading
        finally:
            self.close()

    def read(self, reader: Callable[[BinaryIO], T]) -> T:
        """`reader(stream)`, leaving the checks to `check()`; an error closes the tar."""
        try:
            with self._mapped():
                return reader(self._f)
        except BaseException:
            self.close()
            raise

    def done(self) -> bool:
        """True when `check()` will not wait: the checks beside the reader have finished,
        or the tar has none (then `check()` reads what is left itself)."""
        checked = getattr(self._f, "checked", None)
        return checked is None or checked()

    def check(self) -> None:
        """After `read`: the checks, as leaving a `with` block without an error; closes."""
        self.__exit__(None, None, None)

    def close(self) -> None:
        self._f.close()



def layer_mismatch(e: DigestMismatch, layer: Layer, index: int, image_name: str) -> DigestMismatch:
    """The one error for a layer that is not what its manifest and config say."""
    if e.expected_size is not None and e.actual_size != e.expected_size and e.actual is None:
        found = (f"its blob is {e.actual_size:,}{'+' if e.actual_size > e.expected_size else ''} "
                 f"bytes where the manifest says {e.expected_size:,}")
    elif "diff_id" in e.what:
        found = (f"its uncompressed tar hashes to {e.actual}, but the config's diff_id for it "
                 f"is {e.expected}")
    else:
        found = f"its blob hashes to {e.actual}, but the manifest says {e.expected}"
    return DigestMismatch(
        f"{image_name}: layer {index} ({dg.short(layer.digest)}) is not the layer its image "
        f"describes: {found}. An engine would refuse it or run other files than the ones "
        "listed, so nbimages does not use it. The image is damaged or was crafted; get it "
        "again from a source you trust.", expected=e.expected, actual=e.actual,
        what=f"layer {index} of {image_name}", expected_size=e.expected_size,
        actual_size=e.actual_size)


@dataclass
class HistoryEntry:
    created: str | None
    created_by: str
    comment: str
    empty_layer: bool
    author: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "HistoryEntry":
        return cls(d.get("created"), d.get("created_by", ""), d.get("comment", ""),
                   bool(d.get("empty_layer", False)), d.get("author"))


def parse_created(text: str | None) -> _dt.datetime | None:
    """A config's `created` time; engines write nanoseconds, Python keeps microseconds."""
    if not text:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not m:
        return None
    frac = (m.group(2) or "")[:7]
    tz = m.group(3) or "Z"
    return _dt.datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz))


@dataclass
class Image:
    """An image from any source: the manifest bytes, the config bytes and the layers.

    `digest` is the manifest digest (depends on compression); `id` is the config digest, which
    Docker calls the image ID and which does not depend on the compressor.
    """

    manifest: Manifest
    config_bytes: bytes
    layers: list[Layer]
    source: str = ""
    names: list[str] = field(default_factory=list)
    _config: dict | None = field(default=None, repr=False)
    # How it was made, when nbimages just built it (None for an image opened from a source):
    # the builder's BuildReport (one row per step), the Recipe built and, for a notebook
    # (nbimages.build_notebook), what replaying it did (a NotebookBuild).
    build_report: Any = field(default=None, repr=False, compare=False)
    recipe: Any = field(default=None, repr=False, compare=False)
    notebook_build: Any = field(default=None, repr=False, compare=False)
    # The multi-platform image this one is a platform of, when every platform is at hand (a
    # multi-platform build, or the store holding an index under the tag): push, save and
    # verify then cover every platform.
    index: "ImageIndex | None" = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = imageconfig.parse(self.config_bytes)
        return self._config

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def id(self) -> str:
        return dg.of_bytes(self.config_bytes)

    @property
    def diff_ids(self) -> list[str]:
        return imageconfig.diff_ids(self.config)

    @property
    def platform(self) -> Platform:
        c = self.config
        return Platform(c.get("os", "linux"), c.get("architecture", ""), c.get("variant"),
                        c.get("os.version"))

    @property
    def history(self) -> list[HistoryEntry]:
        return [HistoryEntry.from_dict(h) for h in self.config.get("history") or []]

    @property
    def created(self) -> _dt.datetime | None:
        return parse_created(self.config.get("created"))

    @property
    def container_config(self) -> dict[str, Any]:
        return dict(self.config.get("config") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.container_config.get("Labels") or {})

    def layer_history(self) -> list[HistoryEntry | None]:
        """For each layer, the history entry that made it (entries with empty_layer skipped)."""
        entries = [h for h in self.history if not h.empty_layer]
        return [entries[i] if i < len(entries) else None for i in range(len(self.layers))]

    @property
    def tag(self) -> str | None:
        """The first of `names` that is a full reference with a tag (`team/app:1`,
        `127.0.0.1:5000/x:2`), in Docker's short form: what save() writes into the tar and
        push() pushes to by default. Bare OCI ref names such as `latest` are not."""
        for name in self.names or []:
            if ":" not in name.rsplit("/", 1)[-1]:
                continue
            try:
                r = Reference.parse(name)
            except NbimagesError:
                continue
            if r.tag and not r.digest:
                return r.familiar()
        return None

    @property
    def display_name(self) -> str:
        return self.source or (self.names[0] if self.names else dg.short(self.id))

    def layer_tar(self, index: int):
        """Context manager: layer `index`'s uncompressed tar, verified when the block ends
        (DigestMismatch naming this image and the layer)."""
        return LayerTar(self.layers[index], index, self.display_name)

    def verify(self) -> None:
        """Check every layer not yet verified in this process: its blob against the manifest's
        digest and size, its uncompressed tar against the config's diff_id."""
        for i, layer in enumerate(self.layers):
            if not layer.verified:
                with self.layer_tar(i):
                    pass

    # Verbs: thin wrappers over the public functions, so `image.save(...)` reads like a sentence;
    # the facade provides them (nbimages/verbs.py), the model never imports what is above it.
    def inspect(self):
        """Layer, file, size and waste tables of this image (see nbimages.inspect)."""
        return provided("inspect")(self)

    def save(self, path, format: str = "docker", *, tag: str | None = None,
             platform: str | None = None):
        """Write a `docker load`-able tar (format='docker'), an OCI tar ('oci') or layout
        ('oci-dir'); a multi-platform image's docker tar holds `platform` (default: host's)."""
        return provided("save")(self, path, format=format, tag=tag, platform=platform)

    def push(self, ref: str | None = None, **kw):
        """Push to a registry without going through an engine (digests are kept); `ref`
        defaults to the image's own tagged name (see `tag`)."""
        return provided("push")(self, ref, **kw)

    def run(self, command=None, **kw):
        """Run a container of this image with the Docker engine (see nbimages.run)."""
        return provided("run")(self, command, **kw)

    def __repr__(self) -> str:
        name = self.names[0] if self.names else self.source
        among = (f" of {', '.join(str(p) for p in self.index.platforms)}"
                 if self.index is not None else "")
        return (f"<Image {name} {dg.short(self.id)} {len(self.layers)} layers "
                f"{self.platform}{among}>")


@dataclass(eq=False)
class ImageIndex:
    """A multi-platform image: an OCI image index (its exact bytes) over one Image per platform,
    in the index's order. `digest` is what a registry and `docker pull` name it by."""

    raw: bytes
    images: list[Image]
    names: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> Index:
        return Index.parse(self.raw)

    @property
    def media_type(self) -> str:
        return self.parsed.media_type

    @property
    def digest(self) -> str:
        return dg.of_bytes(self.raw)

    @property
    def platforms(self) -> list[Platform]:
        return [image.platform for image in self.images]

    def image(self, platform: "str | Platform | None" = None) -> Image:
        """The image of `platform` (default: the host's), chosen as a registry client would."""
        want = self.parsed.select(platform).digest
        return next(i for i in self.images if i.digest == want)

    def verify(self) -> None:
        """Every platform's layers against their digests and diff_ids (see Image.verify)."""
        for image in self.images:
            image.verify()

    def __repr__(self) -> str:
        name = self.names[0] if self.names else dg.short(self.digest)
        return (f"<ImageIndex {name} {dg.short(self.digest)} "
                f"{', '.join(str(p) for p in self.platforms)}>")

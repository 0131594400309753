"""The local content-addressed store: one OCI image layout under NBIMAGES_HOME.

Built images and pulled images live here. Blob writes are atomic and verified (see
oci.layout); changes to index.json are serialised across processes with a file lock, so two
kernels can build into one store at once. Every read of a stored blob is verified as it
streams: a blob damaged on disk is named (image, layer, digest) with the command that
repairs it. Processes that add to the store hold a shared lock (`writing()`) that
`nbimages store prune` takes exclusively, so a prune never removes what a build or pull is
about to reference.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import platformdirs

from .atomic import write_atomic
from .errors import (DigestMismatch, ImageNotFound, InvalidImage, NbimagesError, StoreDamaged,
                     os_errors)
from .image import ImageIndex, Layer
from .oci import compression, digest as dg, mediatypes as mt
from .oci.descriptor import Descriptor, Platform
from .oci.layout import OCILayout
from .oci.manifest import Index
from .reference import Reference

try:  # POSIX advisory locks give the shared/exclusive pair prune needs
    import fcntl
except ImportError:  # pragma: no cover - Windows: writers and prune are not serialised
    fcntl = None  # type: ignore[assignment]

REPAIR = ("nbimages store check --repair (in a notebook: %image store check --repair; in "
          "Python: nbimages.store_check(repair=True))")
ORIGINS_FILE = "origins.json"
# What a tail left unread at close may be (a tar's end-of-archive blocks, a gzip trailer):
# read and verified then, so a damaged header byte is caught even by readers that stop early.
_DRAIN_LIMIT = 8 << 20


def default_home() -> Path:
    """NBIMAGES_HOME, else the user cache directory (e.g. ~/.cache/nbimages)."""
    env = os.environ.get("NBIMAGES_HOME")
    return Path(env) if env else Path(platformdirs.user_cache_dir("nbimages"))


class Store(OCILayout):
    """The local store (an OCI layout with a lock and a `tmp/` area)."""

    def __init__(self, home: str | os.PathLike | None = None):
        home = Path(home) if home else default_home()
        with os_errors(f"opening the store at {home}",
                       "Point NBIMAGES_HOME at a directory of your own with room for images"):
            super().__init__(home / "oci", create=True)
        self.home = home
        import filelock  # ~10 ms: a store is opened to write or list, never to inspect a tar
        self._lock = filelock.FileLock(str(home / "store.lock"), timeout=600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's inter-process lock (re-entrant in one process)."""
        with self._lock:
            yield

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store's shared 'adding' lock: a prune (exclusive) waits until it is released.

        Builds, pulls, copies and loads hold it from their first blob to their tag, so blobs
        they wrote (or found already present) cannot be pruned before something references them.
        Re-entrant across the threads of one process (a pull's workers, a build's base pull).
        """
        key = str(self.home)
        with _held_lock:
            if key not in _held_fds:
                _held_fds[key] = self._gc_acquire(exclusive=False)
            _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
                if not _held[key]:
                    del _held[key]
                    _release(_held_fds.pop(key))

    @contextlib.contextmanager
    def exclusive(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the gc lock alone (prune): waits for every process adding to the store, and
        new ones wait for it (writer preference, so a busy builder cannot starve a prune)."""
        if _held.get(str(self.home)):  # this very process is adding to the store
            raise NbimagesError(f"the store {self.home} cannot be pruned while this process is "
                                "building or pulling into it; prune when that is done.")
        fd = self._gc_acquire(exclusive=True, timeout=timeout)
        try:
            yield
        finally:
            _release(fd)

    def _gc_acquire(self, exclusive: bool, timeout: float | None = None) -> list[int]:
        """Lock gc.lock shared or exclusive. `gc-intent.lock` is what gives a waiting prune priority:
        the prune holds it exclusive while it waits, writers pass through it shared."""
        if fcntl is None:  # pragma: no cover
            return []
        self.home.mkdir(parents=True, exist_ok=True)
        intent = os.open(self.home / "gc-intent.lock", os.O_RDWR | os.O_CREAT, 0o644)
        gc = os.open(self.home / "gc.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(intent, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout, self.home)
            _flock(gc, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout, self.home)
        except BaseException:
            _release([gc, intent])
            raise
        if not exclusive:
            _release([intent])
            return [gc]
        return [gc, intent]

    def tmpdir(self) -> Path:
        p = self.home / "tmp"
        with os_errors(f"creating {p}"):
            p.mkdir(parents=True, exist_ok=True)
        return p

    def tmpfile(self, prefix: str, suffix: str = "") -> tuple[int, str]:
        """A new temporary file in tmp/ (fd, path) named for this process (`p<pid>-…`), so a
        prune keeps it while the process lives however old it is, and removes it after."""
        return tempfile.mkstemp(prefix=f"p{os.getpid()}-{prefix}", suffix=suffix,
                                dir=self.tmpdir())

    # ---- verified reads
    def open_blob(self, digest: str, size: int | None = None, *,
                  image: Callable[[], str] | None = None, layer: int | None = None) -> BinaryIO:
        """The stored blob, verified as it streams: StoreDamaged if it no longer hashes to
        `digest` (or is not `size` bytes). `image()` and `layer` (its index) say which image
        and layer it is, for the message."""
        f = self._open_file(digest, _where(image() if image else None, layer))
        return _StoreBlob(f, self, digest, size, image, layer)

    def _open_file(self, digest: str, what: str | None = None) -> BinaryIO:
        """The stored file, unverified; StoreDamaged naming `what` and the repair when missing."""
        try:
            return super()._open_file(digest)
        except InvalidImage:
            what = what or f"blob {digest}"
            raise StoreDamaged(
                f"{what} is missing from the local store ({self.path}): blob {digest} was "
                f"removed by hand or by another tool. Repair the store with {REPAIR}.",
                expected=digest, what=what) from None

    def read_blob(self, digest: str, limit: int = 64 << 20) -> bytes:
        try:
            return super().read_blob(digest, limit)
        except DigestMismatch as e:
            raise self.damaged(digest, e.actual, None, "a manifest or config") from None

    def damaged(self, digest: str, actual: str | None, count: int | None, where: str,
                expected_size: int | None = None, *, image: str | None = None,
                layer: int | None = None) -> StoreDamaged:
        """The error for a stored blob that no longer matches its digest."""
        got = f"its {count:,} bytes hash to {actual}" if count is not None and actual else \
            f"it is {count:,} bytes, not {expected_size:,}" if count is not None and \
            expected_size is not None and count != expected_size else "it no longer hashes to it"
        return StoreDamaged(
            f"{where} in the local store ({self.path}) is damaged: blob {digest} — {got}. The "
            f"stored copy changed after it was verified on the way in (a disk error, or an "
            f"edit). Repair the store with {REPAIR}: it fetches the blob again from where the "
            "image came from, or removes the damaged image and says so.",
            expected=digest, actual=actual, what=where, expected_size=expected_size,
            actual_size=count, image=image, layer=layer)

    def rehash(self, digest: str) -> str:
        """The digest the stored blob `digest` hashes to now (its own algorithm); OSError if
        it cannot be read."""
        with open(self.blob_path(digest), "rb") as f:
            return dg.of_stream(f, dg.parse(digest)[0])[0]

    def blob_is_damaged(self, digest: str) -> bool:
        """Hash the whole stored blob again: True when it no longer matches its digest."""
        return self.rehash(digest) != digest

    def image(self, tag=None, platform=None, source=None):
        """A stored image whose layers are verified as they are read (see open_blob).

        A tag naming an image index gives the image of `platform` (default: the host's), with
        `.index` holding every platform when the store has all their blobs.
        """
        desc = tag if isinstance(tag, Descriptor) else self.resolve(tag)
        img = self._one(desc, platform, source)
        if mt.is_index(desc.media_type):
            index = self._index_of(desc, img.source, img.names)
            if index is not None:
                img = next((i for i in index.images if i.digest == img.digest), img)
                img.index = index
        return img

    def _one(self, desc: Descriptor, platform, source):
        img = super().image(desc, platform, source)
        label = lambda: img.names[0] if img.names else (img.source or img.digest)  # noqa: E731
        img.layers = [self._stored_layer(layer, i, label) for i, layer in enumerate(img.layers)]
        return img

    def _index_of(self, desc: Descriptor, source: str, names: list[str]) -> ImageIndex | None:
        """The stored index `desc` with an Image per platform, or None when a platform's
        blobs are not all here (an index copied in for one platform only)."""
        raw = self.read_blob(desc.digest)
        entries = [d for d in Index.parse(raw, desc.media_type or None).manifests
                   if mt.is_manifest(d.media_type) and d.platform is not None]
        if not entries or not all(self.has_blob(d.digest) for d in entries):
            return None
        images = []
        for d in entries:
            one = self._one(d, None, source)
            if not all(self.has_blob(x.digest) for x in [one.manifest.config] + one.manifest.layers):
                return None
            one.names = list(names)
            images.append(one)
        index = ImageIndex(raw, images, names=list(names))
        for one in images:
            one.index = index
        return index

    def _stored_layer(self, layer: Layer, index: int, label: Callable[[], str]) -> Layer:
        d = layer.descriptor

        def open_blob() -> BinaryIO:
            return self.open_blob(d.digest, d.size, image=label, layer=index)

        def open_tar() -> BinaryIO:
            raw = open_blob()
            return _StoreTar(compression.open_uncompressed(raw, d.media_type), raw)

        stored = Layer(d, layer.diff_id, open_blob, open_tar=open_tar)
        stored.index = index  # type: ignore[attr-defined]
        return stored

    # ---- where images came from (for check --repair)
    def origins(self) -> dict[str, list[str]]:
        """manifest digest -> the sources it was copied in from (docker://REF, a tar path…)."""
        try:
            doc = json.loads((self.home / ORIGINS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: list(v) for k, v in doc.items() if isinstance(v, list)} \
            if isinstance(doc, dict) else {}

    def note_origin(self, manifest_digest: str, source: str | None) -> None:
        """Remember that `manifest_digest` came from `source` (kept when the source is re-openable)."""
        if not source or source.startswith("store:") or source == "test":
            return
        with self.locked():
            doc = self.origins()
            have = doc.setdefault(manifest_digest, [])
            if source in have:
                return
            have.insert(0, source)
            del have[4:]
            write_atomic(self.home / ORIGINS_FILE, json.dumps(doc, sort_keys=True).encode())

    def forget_origins(self, keep: set[str]) -> None:
        """Drop the origins of manifests no longer in the store."""
        with self.locked():
            doc = self.origins()
            if set(doc) <= keep:
                return
            write_atomic(self.home / ORIGINS_FILE, json.dumps(
                {k: v for k, v in doc.items() if k in keep}, sort_keys=True).encode())

    def tag(self, name: str, desc: Descriptor) -> None:
        with self.locked():
            self.set_ref(name, desc)

    def untag(self, name: str) -> bool:
        with self.locked():
            return self.remove_ref(name)

    def put_image(self, image, name: str | None = None, *, progress=None) -> Descriptor:
        """Copy an Image's blobs (skipping those present) and its manifest in; tag it if named."""
        with self.writing():
            for layer in image.layers:
                if not self.has_blob(layer.digest):
                    with layer.open_blob() as f:
                        self.write_blob(f, layer.digest, layer.media_type)
                if progress:
                    progress(layer)
            self.write_blob(image.config_bytes, image.manifest.config.digest)
            self.write_blob(image.manifest.raw, image.manifest.digest)
            desc = Descriptor(image.manifest.media_type, image.manifest.digest,
                              len(image.manifest.raw), platform=image.platform)
            self.note_origin(image.manifest.digest, image.source)
            with self.locked():
                self.set_ref(name, desc)
        return desc

    def get(self, name: str, platform: str | Platform | None = None):
        """The stored image tagged `name` (or with manifest digest `name`)."""
        for candidate in _name_forms(name):
            try:
                return self.image(self.resolve(candidate), platform, source=f"store:{name}")
            except ImageNotFound:
                continue
            except StoreDamaged as e:  # its manifest or config: name the image
                raise self.damaged(e.expected or "", e.actual, e.actual_size,
                                   f"the manifest or config of {name}", image=name) from None
        raise ImageNotFound(f"no image {name!r} in the local store ({self.path}). Build it, pull it "
                            "(nbimages.pull), or list what is there with nbimages.images().")

    def platforms_of(self, name: str) -> list[Platform]:
        """The platforms of the stored image `name` (every one of an index)."""
        for candidate in _name_forms(name):
            try:
                return self.platforms(candidate)
            except ImageNotFound:
                continue
        raise ImageNotFound(f"no image {name!r} in the local store ({self.path}).")

    def names(self) -> dict[str, Descriptor]:
        return self.refs()


# store home -> holders of writing() in this process, and the lock's file descriptors
_held: dict[str, int] = {}
_held_fds: dict[str, list[int]] = {}
_held_lock = threading.Lock()


def _flock(fd: int, mode: int, timeout: float | None, home: Path) -> None:
    if timeout is None:
        fcntl.flock(fd, mode)
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise NbimagesError(
                    f"another process is adding to the store {home} (a build or pull) and did "
                    f"not finish within {timeout:.0f} s; try again when it is done.") from None
            time.sleep(0.05)


def _release(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _StoreBlob(dg.VerifyingReader):
    """A stored blob as it streams, verified; a mismatch is StoreDamaged naming where it was met."""

    def __init__(self, f: BinaryIO, store: Store, digest: str, size: int | None,
                 image: Callable[[], str] | None, layer: int | None):
        super().__init__(f, digest, size, what=f"blob {digest}")
        self._store = store
        self._image = image
        self._layer = layer

    def _fail(self, why: str, actual: str | None = None) -> None:
        self._raise(self.count, actual)

    def _raise(self, count: int, actual: str | None = None) -> None:
        self.verified = True  # report once
        image = self._image() if self._image else None
        where = _where(image, self._layer) or "a blob"
        raise self._store.damaged(self.expected, actual, count, where, self.expected_size,
                                  image=image, layer=self._layer)

    def drain(self) -> None:
        """Read (and so verify) an unread tail up to _DRAIN_LIMIT bytes; skip larger ones."""
        if self.verified or self.closed:
            return
        left = (self.expected_size - self.count) if self.expected_size is not None else None
        if left is None:
            with contextlib.suppress(OSError):
                left = os.fstat(self._stream.fileno()).st_size - self.count
        if left is not None and left <= _DRAIN_LIMIT:
            while self.read(dg.CHUNK):
                pass

    def damage(self) -> StoreDamaged | None:
        """After a failed read of what it holds: StoreDamaged if the blob itself is damaged."""
        try:
            if not self._store.blob_is_damaged(self.expected):
                return None
        except OSError:
            return None
        try:
            self._raise(os.path.getsize(self._store.blob_path(self.expected)))
        except StoreDamaged as e:
            return e
        return None  # pragma: no cover


def _where(image: str | None, layer: int | None) -> str | None:
    """'layer 1 of team/app:1' for a message, or None when the blob's layer is not known."""
    return f"layer {layer} of {image}" if image is not None and layer is not None else None


class _StoreTar(io.RawIOBase):
    """The uncompressed tar of a stored layer, its blob's unread tail verified at close (the
    inflater turns its own error over a damaged blob into that blob's StoreDamaged, asking
    `_StoreBlob.damage()`)."""

    def __init__(self, tar: BinaryIO, raw: _StoreBlob):
        super().__init__()
        self._tar, self._raw = tar, raw

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._tar.read(n)

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:  # already failing: do not mask it with the tail check
            self._raw.verified = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._raw.drain()
        finally:
            with contextlib.suppress(Exception):
                self._tar.close()
            self._raw.close()
            super().close()


def _name_forms(name: str) -> list[str]:
    """The stored tag as written, then with `:latest` and the normalised reference."""
    forms = [name]
    if dg.is_digest(name):
        return forms
    try:
        ref = Reference.parse(name)
        forms += [str(ref), ref.familiar()]
    except Exception:  # reference module may reject store-only names; keep the plain form
        pass
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        forms.append(name + ":latest")
    seen: list[str] = []
    for f in forms:
        if f not in seen:
            seen.append(f)
    return seen


_default: Store | None = None


def default_store() -> Store:
    """The process-wide store at default_home() (re-created if NBIMAGES_HOME changes)."""
    global _default
    home = default_home()
    if _default is None or _default.home != home:
        _default = Store(home)
    return _default


def existing_store() -> Store | None:
    """The default store if one is there already (its index.json), else None: for readers
    (completion, verify's expected image) that must not create a store where there is none."""
    home = default_home()
    return default_store() if (home / "oci" / "index.json").exists() else None

"""The local content-addressed store: one OCI image layout under NBIMAGES_HOME.

Built images and pulled images live here. Blob writes are atomic and verified (see
oci.layout); changes to index.json are serialised across processes with a file lock, so two
kernels can build into one store at once.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import filelock
import platformdirs

from .errors import ImageNotFound, os_errors
from .oci import digest as dg
from .oci.descriptor import Descriptor, Platform
from .oci.layout import OCILayout


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
        self._lock = filelock.FileLock(str(home / "store.lock"), timeout=600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's inter-process lock (re-entrant in one process)."""
        with self._lock:
            yield

    def tmpdir(self) -> Path:
        p = self.home / "tmp"
        with os_errors(f"creating {p}"):
            p.mkdir(parents=True, exist_ok=True)
        return p

    def tag(self, name: str, desc: Descriptor) -> None:
        with self.locked():
            self.set_ref(name, desc)

    def untag(self, name: str) -> bool:
        with self.locked():
            return self.remove_ref(name)

    def put_image(self, image, name: str | None = None, *, progress=None) -> Descriptor:
        """Copy an Image's blobs (skipping those present) and its manifest in; tag it if named."""
        for layer in image.layers:
            if not self.has_blob(layer.digest):
                with layer.open_blob() as f:
                    self.write_blob(f, layer.digest, layer.media_type)
            if progress:
                progress(layer)
        self.write_blob(image.config_bytes, image.manifest.config.digest)
        self.write_blob(image.manifest.raw, image.manifest.digest)
        desc = Descriptor(image.manifest.media_type, image.manifest.digest, len(image.manifest.raw),
                          platform=image.platform)
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
        raise ImageNotFound(f"no image {name!r} in the local store ({self.path}). Build it, pull it "
                            "(nbimages.pull), or list what is there with nbimages.images().")

    def names(self) -> dict[str, Descriptor]:
        return self.refs()


def _name_forms(name: str) -> list[str]:
    """The stored tag as written, then with `:latest` and the normalised reference."""
    forms = [name]
    if dg.is_digest(name):
        return forms
    try:
        from .reference import Reference
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

"""The transports, both ways: one table of how each opens and writes an image.

`open_image(source)` parses a source string (transports.py) and calls its transport's opener,
or detects what a bare string means; `write_image(image, dest)` parses a destination with the
same parser and calls its transport's writer. Each transport is one module holding both
directions: docker_archive.py, oci_archive.py, oci_layout.py, daemon.py (docker-daemon),
local_store.py (store), remote.py (docker://). copy.py sits on top of this table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import (AuthenticationError, ImageNotFound, InvalidImage, NbimagesError,
                      RegistryError)
from ..image import Image
from ..oci.archive import OCIArchive, oci_manifest
from ..oci.dockerarchive import DockerArchive
from ..oci.layout import OCILayout, is_layout
from ..reference import Reference, is_reference
from ..store import default_store
from .remote import open_remote as remote, push as push_to_registry
from .daemon import engine_answers, open_daemon, write_daemon
from .docker_archive import open_docker_archive, write_docker_archive
from .files import tar_index, tar_kind
from .local_store import open_stored, write_stored
from .oci_archive import open_oci_archive, write_oci_archive
from .oci_layout import open_oci_dir, write_oci_dir
from .transports import Source, looks_like_path, parse_destination, parse_source, split_path_ref


def open_image(source, platform=None, *, store=None, **registry_kw):
    """Open `source` (an Image, a transport:target string, a bare path or reference) as an Image.

    An index / manifest list resolves to the host's platform unless `platform` (e.g.
    "linux/arm64/v8") says otherwise; a single-platform source refuses a mismatching one.
    `store` is where `store:NAME` and bare names are looked up and where registry layers are
    cached (default: the user's store); `registry_kw` (insecure, ca_bundle, credentials) go
    to the registry for `docker://` sources and bare references found there.
    """
    if isinstance(source, Image):
        return source
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    src = source if isinstance(source, Source) else parse_source(source)
    opener = TRANSPORTS_IO[src.transport].open if src.transport in TRANSPORTS_IO else _open_auto
    # Files, layouts and the engine need no store: reading them works with a store that is
    # missing, full or someone else's. Registry and store sources open it when they need it.
    return opener(src, platform, store, **registry_kw)


def _open_daemon(src: Source, platform, store, **registry_kw):
    return open_daemon(src.target, platform, source=str(src))


def _open_docker_archive(src: Source, platform, store, **registry_kw):
    path, ref = split_path_ref(src.target)
    return open_docker_archive(path, ref, platform, source=str(src))


def _open_oci(src: Source, platform, store, **registry_kw):
    path, tag = split_path_ref(src.target)
    return open_oci_dir(path, tag, platform, source=str(src))


def _open_oci_archive(src: Source, platform, store, **registry_kw):
    path, tag = split_path_ref(src.target)
    return open_oci_archive(path, tag, platform, source=str(src))


def _open_registry(src: Source, platform, store, **registry_kw):
    return remote(src.target, platform=platform, store=store or default_store(), **registry_kw)


def _open_store(src: Source, platform, store, **registry_kw):
    return open_stored(store or default_store(), src.target, platform)


def open_path(path: str, platform=None) -> Image:
    """A bare existing path: an OCI layout directory or an image tar of either kind."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        if not is_layout(p):
            raise InvalidImage(f"{p} is a directory but not an OCI image layout (no oci-layout "
                               "and index.json). Give an image tar or a layout directory.")
        return OCILayout(p).image(None, platform, source=f"oci:{path}")
    index = tar_index(p)
    if tar_kind(index) == "docker-archive":
        return DockerArchive(index.path, index).image(None, platform, source=f"docker-archive:{path}")
    return OCIArchive(index.path, index).image(None, platform, source=f"oci-archive:{path}")


def _open_auto(src: Source, platform, store, **registry_kw):
    text = src.target
    path = os.path.expanduser(text)
    path_error = None
    if os.path.exists(path):
        try:
            return open_path(text, platform)
        except InvalidImage as e:
            # `busybox` may be a file in the working directory and an image name too.
            if looks_like_path(text) or not is_reference(text):
                raise
            path_error = e
    elif looks_like_path(text):
        raise ImageNotFound(f"{path} does not exist. Give the path of an image tar or OCI layout "
                            "directory, or an image reference such as busybox:latest.")
    Reference.parse(text)  # InvalidReference explains a malformed name
    store = store or default_store()
    try:
        return store.get(text, platform)
    except ImageNotFound:
        pass

    engine = engine_answers()
    if engine:
        try:
            return open_daemon(text, platform, source=f"docker-daemon:{text}")
        except ImageNotFound:
            pass
    try:
        return remote(text, platform=platform, store=store, **registry_kw)
    except NbimagesError as e:
        if path_error is not None:  # the file was meant: its problem is the one to tell
            raise path_error from None
        # A mistyped local name must not read as a network problem only: say where we looked.
        where = ("the local store nor the Docker engine" if engine else
                 "the local store (and no Docker engine answers)")
        if isinstance(e, ImageNotFound):
            raise ImageNotFound(f"{text!r} is not in {where}, and the registry lookup failed: "
                                f"{e}") from None
        if isinstance(e, RegistryError) and not isinstance(e, AuthenticationError):
            raise RegistryError(f"{text!r} is not in {where}, and its registry could not be "
                                f"asked: {e}") from None
        raise


# --------------------------------------------------------------------------- writing

def write_image(image: Image, dest: str | Source, *, platform=None, store=None,
                progress: bool = True, **registry_kw: Any) -> str:
    """Write `image` to the destination string `dest` (read by the same parser as sources);
    returns the manifest digest there (the image ID for docker-archive and docker-daemon,
    which keep no manifest)."""
    dst = dest if isinstance(dest, Source) else parse_destination(dest)
    writer = TRANSPORTS_IO[dst.transport].write
    return writer(image, dst, platform=platform, store=store or default_store(),
                  progress=progress, **registry_kw)


def _write_registry(image, dst: Source, *, progress, platform, store, **registry_kw) -> str:
    return push_to_registry(image, dst.target, progress=progress, **registry_kw)


def _write_store(image, dst: Source, *, store, **_) -> str:
    return write_stored(store, image, dst.target)


def _write_daemon(image, dst: Source, **_) -> str:
    return write_daemon(image, dst.target or None)


def _write_docker_archive(image, dst: Source, **_) -> str:
    path, tag = split_path_ref(dst.target)
    write_docker_archive(image, path, tag)
    return image.id  # a docker-archive keeps no manifest: the image ID identifies it


def _write_oci_archive(image, dst: Source, **_) -> str:
    path, tag = split_path_ref(dst.target)
    write_oci_archive(image, path, tag)
    return oci_manifest(image).digest  # what the writer wrote: a Docker manifest as OCI


def _write_oci(image, dst: Source, **_) -> str:
    path, tag = split_path_ref(dst.target)
    write_oci_dir(image, path, tag)
    return oci_manifest(image).digest  # what the writer wrote: a Docker manifest as OCI


@dataclass(frozen=True)
class TransportIO:
    """How one transport opens a parsed Source and writes an Image to one."""

    open: Callable[..., Image]
    write: Callable[..., str]


TRANSPORTS_IO: dict[str, TransportIO] = {
    "docker-daemon": TransportIO(_open_daemon, _write_daemon),
    "docker-archive": TransportIO(_open_docker_archive, _write_docker_archive),
    "oci": TransportIO(_open_oci, _write_oci),
    "oci-archive": TransportIO(_open_oci_archive, _write_oci_archive),
    "docker": TransportIO(_open_registry, _write_registry),
    "store": TransportIO(_open_store, _write_store),
}

"""Open any source as an Image: the transport names, the bare-string detection, the openers."""

from __future__ import annotations

import os

from ..errors import (AuthenticationError, ImageNotFound, InvalidImage, InvalidReference,
                      NbimagesError, RegistryError)
from ..image import Image
from ..reference import Reference
from ..store import default_store
from .daemon import engine_answers, open_daemon
from .files import open_docker_archive, open_oci_archive, open_oci_dir, open_path
from .remote import open_remote as remote
from .transports import Source, looks_like_path, parse_source, split_path_ref


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
    src = parse_source(source)
    opener = _OPENERS.get(src.transport, _open_auto)
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
    return (store or default_store()).get(src.target, platform)


def open_remote(ref: str, platform=None):
    """`docker://REF`: the registry-backed image (nbimages/sources/remote.py)."""
    return remote(ref, platform=platform)


def _open_auto(src: Source, platform, store, **registry_kw):
    text = src.target
    path = os.path.expanduser(text)
    path_error = None
    if os.path.exists(path):
        try:
            return open_path(text, platform)
        except InvalidImage as e:
            # `busybox` may be a file in the working directory and an image name too.
            if looks_like_path(text) or not _is_reference(text):
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


def _is_reference(text: str) -> bool:
    try:
        Reference.parse(text)
    except InvalidReference:
        return False
    return True


_OPENERS = {
    "docker-daemon": _open_daemon,
    "docker-archive": _open_docker_archive,
    "oci": _open_oci,
    "oci-archive": _open_oci_archive,
    "docker": _open_registry,
    "store": _open_store,
}

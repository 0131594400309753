"""Open any image as an `Image`, and write Images back out: one model, many sources and sinks.

Sources use skopeo's transport names: `docker-daemon:REF`, `docker-archive:PATH[:REF]`,
`oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, `docker://REF`, plus `store:NAME` for the local
store. A bare string is detected: an existing path (layout directory, docker or OCI tar), else
a reference looked up in the local store, then the Docker engine, then its registry.

Sinks: `save(image, path, format="docker"|"oci"|"oci-dir")` and `load_into_engine(image)`.
"""

from __future__ import annotations

import os

from ..errors import ImageNotFound, InvalidImage, NbimagesError
from .sinks import FORMATS, default_tag, docker_tar_stream, load_into_engine, save
from .transports import TRANSPORTS, Source, looks_like_path, parse_source, split_path_ref

__all__ = ["open_image", "save", "load_into_engine", "docker_tar_stream", "parse_source",
           "Source", "TRANSPORTS", "FORMATS", "default_tag"]


def open_image(source, platform=None):
    """Open `source` (an Image, a transport:target string, a bare path or reference) as an Image.

    An index / manifest list resolves to the host's platform unless `platform` (e.g.
    "linux/arm64/v8") says otherwise; a single-platform source refuses a mismatching one.
    """
    from ..image import Image
    if isinstance(source, Image):
        return source
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    src = parse_source(source)
    opener = _OPENERS.get(src.transport, _open_auto)
    return opener(src, platform)


def _open_daemon(src: Source, platform):
    from .daemon import open_daemon
    return open_daemon(src.target, platform, source=str(src))


def _open_docker_archive(src: Source, platform):
    from .files import open_docker_archive
    path, ref = split_path_ref(src.target)
    return open_docker_archive(path, ref, platform, source=str(src))


def _open_oci(src: Source, platform):
    from .files import open_oci_dir
    path, tag = split_path_ref(src.target)
    return open_oci_dir(path, tag, platform, source=str(src))


def _open_oci_archive(src: Source, platform):
    from .files import open_oci_archive
    path, tag = split_path_ref(src.target)
    return open_oci_archive(path, tag, platform, source=str(src))


def _open_registry(src: Source, platform):
    return open_remote(src.target, platform)


def _open_store(src: Source, platform):
    from ..store import default_store
    return default_store().get(src.target, platform)


def open_remote(ref: str, platform=None):
    """`docker://REF`: the daemonless registry client when present, else a pull through the
    engine (kept small on purpose: the registry package is the real path)."""
    try:
        from ..registry import open_remote as remote
    except ImportError:
        from .daemon import pull_through_engine
        return pull_through_engine(ref, platform)
    return remote(ref, platform=platform)


def _open_auto(src: Source, platform):
    from ..reference import Reference
    text = src.target
    path = os.path.expanduser(text)
    path_error = None
    if os.path.exists(path):
        from .files import open_path
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
    from ..store import default_store
    try:
        return default_store().get(text, platform)
    except ImageNotFound:
        pass
    from ..errors import AuthenticationError, RegistryError
    from .daemon import engine_answers, open_daemon
    engine = engine_answers()
    if engine:
        try:
            return open_daemon(text, platform, source=f"docker-daemon:{text}")
        except ImageNotFound:
            pass
    try:
        return open_remote(text, platform)
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
    from ..errors import InvalidReference
    from ..reference import Reference
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

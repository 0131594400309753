"""Copy an image between any two transports, like `skopeo copy`: open a source, write a sink."""

from __future__ import annotations

from typing import Any

import os
from ..errors import InvalidReference, UnknownTransport
from ..image import Image
from ..store import default_store
from . import remote
from .opener import open_image
from .remote import open_remote
from .sinks import load_into_engine, save

def _open_source(src: Any, platform=None) -> Image:
    if isinstance(src, Image):
        return src
    if isinstance(src, os.PathLike):
        src = os.fspath(src)
    if not isinstance(src, str):
        raise InvalidReference(f"cannot push {type(src).__name__}: give an Image or a source string "
                               "such as 'store:NAME', 'docker://REF', 'oci:DIR' or 'docker-archive:FILE'.")
    if src.startswith("docker://"):
        return open_remote(src[len("docker://"):], platform)
    return open_image(src, platform)


def push(src: Image | str, ref: str, *, progress: bool = True, **registry_kw: Any) -> str:
    """Push an image (an Image or any source string) to `ref`; returns the manifest digest.

    The manifest is sent as the exact bytes it was read or built with, so the digest in the
    registry is the digest of the image here. Blobs the registry has are skipped; blobs known
    in another repository of the same registry are mounted instead of uploaded.
    """
    return remote.push(_open_source(src), ref, progress=progress, **registry_kw)


_SAVE_FORMATS = {"docker-archive": "docker", "oci-archive": "oci", "oci": "oci-dir"}


def _split_dest(dest: str) -> tuple[str, str, str | None]:
    """`oci-archive:/x/app.tar:app:1` -> ("oci-archive", "/x/app.tar", "app:1")."""
    transport, sep, rest = dest.partition(":")
    if not sep:
        raise UnknownTransport(f"{dest!r} names no transport; write docker://REF, store:NAME, "
                               "docker-archive:FILE[:TAG], oci-archive:FILE[:TAG], oci:DIR[:TAG] or "
                               "docker-daemon:NAME.")
    tag = None
    if transport in _SAVE_FORMATS:
        path, colon, maybe_tag = rest.partition(":")
        if colon:
            tag = maybe_tag or None
        rest = path
    return transport, rest, tag


def copy(src: Image | str, dest: str, *, platform: str | None = None, progress: bool = True,
         **registry_kw: Any) -> str:
    """Copy an image between transports; returns the manifest digest at the destination
    (the image ID for docker-archive and docker-daemon, which keep no manifest).

    `src` is an Image or any source string (docker://, store:, docker-archive:, oci:,
    oci-archive:, docker-daemon:); `dest` is one of docker://REF, store:NAME,
    docker-archive:FILE[:TAG], oci-archive:FILE[:TAG], oci:DIR[:TAG], docker-daemon:NAME.
    Registry keyword arguments (insecure, ca_bundle, credentials) apply to either end.
    """
    if isinstance(src, str) and src.startswith("docker://"):
        image = open_remote(src[len("docker://"):], platform, **registry_kw)
    else:
        image = _open_source(src, platform)
    if dest.startswith("docker://"):
        return push(image, dest[len("docker://"):], progress=progress, **registry_kw)
    transport, target, tag = _split_dest(dest)
    if transport == "store":
        desc = default_store().put_image(image, target or None)
        return desc.digest
    if transport in _SAVE_FORMATS:
        save(image, target, format=_SAVE_FORMATS[transport], tag=tag)
        if transport == "docker-archive":
            return image.id  # a docker-archive keeps no manifest: the image ID identifies it
        # The OCI sinks may convert a Docker manifest to OCI media types: read back the digest.
        return open_image(f"{transport}:{target}" + (f":{tag}" if tag else ""), platform).digest
    if transport == "docker-daemon":
        return _to_daemon(image, target)
    raise UnknownTransport(f"{transport!r} is not a destination nbimages knows; use docker://, store:, "
                           "docker-archive:, oci-archive:, oci: or docker-daemon:.")


def _to_daemon(image: Image, name: str) -> str:
    """`docker load` the image (streamed); the engine's image ID is the config digest."""
    return load_into_engine(image, name or None)

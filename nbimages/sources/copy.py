"""Copy an image between any two transports, like `skopeo copy`: open a source, write a sink."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownTransport
from ..image import Image
from ..store import default_store
from . import remote
from .opener import open_image
from .sinks import load_into_engine, save
from .transports import parse_source, split_path_ref

_OPEN_KW = ("insecure", "ca_bundle", "credentials")  # what opening a docker:// source takes


def _open(src: Image | str, platform=None, registry_kw: dict | None = None) -> Image:
    return open_image(src, platform, **{k: v for k, v in (registry_kw or {}).items()
                                        if k in _OPEN_KW})


def push(src: Image | str, ref: str | None = None, *, progress: bool = True, **registry_kw: Any) -> str:
    """Push an image (an Image or any source string) to `ref`; returns the manifest digest.

    The manifest is sent as the exact bytes it was read or built with, so the digest in the
    registry is the digest of the image here. Blobs the registry has are skipped; blobs known
    in another repository of the same registry are mounted instead of uploaded. `ref`
    defaults to the image's own tagged name (`Image.tag`).
    """
    return remote.push(_open(src, None, registry_kw), ref, progress=progress, **registry_kw)


_SAVE_FORMATS = {"docker-archive": "docker", "oci-archive": "oci", "oci": "oci-dir"}


def copy(src: Image | str, dest: str, *, platform: str | None = None, progress: bool = True,
         **registry_kw: Any) -> str:
    """Copy an image between transports; returns the manifest digest at the destination
    (the image ID for docker-archive and docker-daemon, which keep no manifest).

    `src` is an Image or any source string (docker://, store:, docker-archive:, oci:,
    oci-archive:, docker-daemon:); `dest` is one of docker://REF, store:NAME,
    docker-archive:FILE[:TAG], oci-archive:FILE[:TAG], oci:DIR[:TAG], docker-daemon:NAME.
    Registry keyword arguments (insecure, ca_bundle, credentials) apply to either end.
    """
    image = _open(src, platform, registry_kw)
    image.verify()  # what lands anywhere is what the config describes
    dst = parse_source(dest)  # the same transport names, read the same way as sources
    transport, target, tag = dst.transport, dst.target, None
    if transport == "auto":
        raise UnknownTransport(f"{dest!r} names no transport; write docker://REF, store:NAME, "
                               "docker-archive:FILE[:TAG], oci-archive:FILE[:TAG], oci:DIR[:TAG] or "
                               "docker-daemon:NAME.")
    if transport == "docker":
        return remote.push(image, target, progress=progress, **registry_kw)
    if transport == "store":
        desc = default_store().put_image(image, target or None)
        return desc.digest
    if transport in _SAVE_FORMATS:
        target, tag = split_path_ref(target)
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

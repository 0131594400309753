"""Registries without a daemon: pull, push, copy, look before pulling, search and list tags.

    img = nbimages.pull("python:3.12-slim")                  # into the local store
    nbimages.push(img, "127.0.0.1:5000/team/python:3.12")    # digest kept, blobs mounted
    nbimages.copy("docker://127.0.0.1:5000/app:1", "oci-archive:app.tar")
    nbimages.tags("127.0.0.1:5000/team/python", details=True)

Our own thin client on `requests` (see client.py) rather than python-dxf or oras: we need
Docker's credential sources and Hub naming, auth over plain http for loopback registries,
resumable chunked uploads and Range-resumed downloads, which neither library provides.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnknownTransport
from ..image import Image
from .auth import Credentials
from .client import RegistryClient
from .listing import catalog, search, tags
from .remote import client_for, open_remote, pull, push, push_index

__all__ = ["pull", "push", "copy", "open_remote", "search", "tags", "catalog", "push_index",
           "RegistryClient", "Credentials", "client_for"]

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
    from .remote import _open_source

    if isinstance(src, str) and src.startswith("docker://"):
        image = open_remote(src[len("docker://"):], platform, **registry_kw)
    else:
        image = _open_source(src, platform)
    image.verify()  # what lands anywhere is what the config describes
    if dest.startswith("docker://"):
        return push(image, dest[len("docker://"):], progress=progress, **registry_kw)
    transport, target, tag = _split_dest(dest)
    if transport == "store":
        from ..store import default_store
        desc = default_store().put_image(image, target or None)
        return desc.digest
    if transport in _SAVE_FORMATS:
        from ..sources import open_image, save
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
    from ..sources import load_into_engine
    return load_into_engine(image, name or None)

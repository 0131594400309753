"""Copy an image between any two transports, like `skopeo copy`: open a source, write a
destination, both through the one transport table of opener.py."""

from __future__ import annotations

from typing import Any

from ..image import Image
from . import remote
from .opener import open_image, write_image

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
    return write_image(image, dest, platform=platform, progress=progress, **registry_kw)

"""Save and load: write an Image (or any source) as a file, or into the Docker engine.

The public front of the writers: each format is written by its transport's module
(docker_archive.py, oci_archive.py, oci_layout.py, daemon.py), which streams blob by blob from
`Layer.open_blob()`, checks every digest on the way and leaves nothing half-written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnknownTransport
from ..image import Image
from .daemon import write_daemon
from .docker_archive import docker_tar_stream, write_docker_archive
from .oci_archive import write_oci_archive
from .oci_layout import write_oci_dir
from .opener import open_image
from .transports import TRANSPORTS

__all__ = ["FORMATS", "save", "load_into_engine", "docker_tar_stream"]

FORMATS = {
    "docker": "a tar for `docker load` that is also an OCI archive (Docker 25 layout)",
    "oci": "an OCI image layout as a tar (oci-archive)",
    "oci-dir": "an OCI image layout directory",
}

_WRITERS = {"docker": write_docker_archive, "oci": write_oci_archive, "oci-dir": write_oci_dir}


def save(image, path: str | os.PathLike, format: str = "docker", tag: str | None = None) -> Path:
    """Write `image` (an Image or any source string) to `path` and return the path.

    format: "docker" (docker load / docker-archive / oci-archive), "oci" (oci-archive tar) or
    "oci-dir" (OCI layout directory; an existing layout gets the image added). `tag` names
    the image inside (RepoTags / ref name); default: the image's own tagged name, if any.
    """
    if format not in FORMATS:
        raise UnknownTransport(f"unknown save format {format!r}; use one of: "
                               + "; ".join(f"{k!r} ({v})" for k, v in FORMATS.items()) + ".")
    _refuse_transport_path(path)
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    return _WRITERS[format](image, path, tag)


def _refuse_transport_path(path: str | os.PathLike) -> None:
    """`save(img, "oci-archive:/x.tar")` would write a file under a folder named
    `oci-archive:` in the working directory: say what to write instead."""
    text = os.fspath(path)
    if not isinstance(text, str) or ":" not in text or os.path.exists(text):
        return
    prefix, rest = text.split(":", 1)
    if prefix in TRANSPORTS:
        raise UnknownTransport(
            f"save writes to a path, and {text!r} names a transport ({prefix}:). Give the path "
            f"alone ({rest!r}) with the format (format='oci' / --format oci for an OCI tar, "
            "'oci-dir' for a layout, 'docker' for docker load), or copy the image to "
            f"{text!r} with nbimages.copy / `nbimages copy SOURCE {text}`.")


def load_into_engine(image, tag: str | None = None) -> str:
    """Stream `image` (an Image or any source string) into the Docker engine (`docker load`)
    and return its image ID. The tar is generated on the fly and sent as a chunked request,
    never written to disk (except zstd layers, which are inflated to temporary files first).
    """
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    return write_daemon(image, tag)

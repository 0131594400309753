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

__all__ = ["FORMATS", "save", "load_into_engine", "default_tag", "docker_tar_stream"]

FORMATS = {
    "docker": "a tar for `docker load` that is also an OCI archive (Docker 25 layout)",
    "oci": "an OCI image layout as a tar (oci-archive)",
    "oci-dir": "an OCI image layout directory",
}

_WRITERS = {"docker": write_docker_archive, "oci": write_oci_archive, "oci-dir": write_oci_dir}


def default_tag(image) -> str | None:
    """The first of the image's names that is a full reference with a tag (Image.tag)."""
    return image.tag


def save(image, path: str | os.PathLike, format: str = "docker", tag: str | None = None) -> Path:
    """Write `image` (an Image or any source string) to `path` and return the path.

    format: "docker" (docker load / docker-archive / oci-archive), "oci" (oci-archive tar) or
    "oci-dir" (OCI layout directory; an existing layout gets the image added). `tag` names
    the image inside (RepoTags / ref name); default: the image's own tagged name, if any.
    """
    if format not in FORMATS:
        raise UnknownTransport(f"unknown save format {format!r}; use one of: "
                               + "; ".join(f"{k!r} ({v})" for k, v in FORMATS.items()) + ".")
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    return _WRITERS[format](image, path, tag)


def load_into_engine(image, tag: str | None = None) -> str:
    """Stream `image` (an Image or any source string) into the Docker engine (`docker load`)
    and return its image ID. The tar is generated on the fly and sent as a chunked request,
    never written to disk (except zstd layers, which are inflated to temporary files first).
    """
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    return write_daemon(image, tag)

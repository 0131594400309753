"""The oci-archive transport (`oci-archive:PATH[:TAG]`): an OCI image layout as a tar, both ways."""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import write_atomic
from ..image import Image
from ..oci.archive import OCIArchive, check_blob_sizes, oci_archive_entries, tar_stream
from .files import tar_file_destination, tar_index, writing


def open_oci_archive(path: str, tag: str | None = None, platform=None, *, source: str | None = None):
    """`oci-archive:PATH[:TAG]` as an Image (TAG: the ref name inside, if it holds several)."""
    index = tar_index(path)
    archive = OCIArchive(index.path, index)
    return archive.image(tag, platform, source=source or f"oci-archive:{path}")


def write_oci_archive(image: Image, path: str | os.PathLike, tag: str | None = None) -> Path:
    """Write `image` as an OCI archive tar at `path` (atomically) and return the path.

    A Docker schema 2 manifest is translated to OCI media types, as `skopeo copy` does.
    """
    check_blob_sizes(image)
    image.verify()
    tag = tag or image.tag
    with writing(path) as dest:
        tar_file_destination(dest)
        write_atomic(dest, tar_stream(oci_archive_entries(image, tag)))
    return dest

"""The oci transport (`oci:DIR[:TAG]`): an OCI image layout directory, both ways.

A new layout appears whole (built next to the destination under a temporary name, then
renamed); an existing layout gets the image added, blob by blob, each checked as it is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InvalidImage
from ..image import Image
from ..oci.archive import check_blob_sizes, oci_manifest
from ..oci.layout import OCILayout, is_layout
from .files import missing, writing


def open_oci_dir(path: str, tag: str | None = None, platform=None, *, source: str | None = None):
    """`oci:DIR[:TAG]` as an Image."""
    p = Path(os.path.expanduser(path))
    if not p.exists():
        raise missing(p, "an OCI image layout directory (`skopeo copy ... oci:DIR`)")
    if p.is_file():
        raise InvalidImage(f"{p} is a file, not an OCI layout directory; a tar opens as "
                           f"oci-archive:{p} or docker-archive:{p}.")
    return OCILayout(p).image(tag, platform, source=source or f"oci:{path}")


def write_oci_dir(image: Image, path: str | os.PathLike, tag: str | None = None) -> Path:
    """Write `image` into the OCI layout directory `path` (new, empty or an existing layout)."""
    check_blob_sizes(image)
    image.verify()
    tag = tag or image.tag
    with writing(path) as dest:
        return _save_layout(image, dest, tag)


def _save_layout(image, dest: Path, tag: str | None) -> Path:
    """Write into an OCI layout directory: a new one appears whole (built aside, renamed)."""
    if dest.exists() and not dest.is_dir():
        raise InvalidImage(f"{dest} exists and is not a directory; give a new or layout "
                           "directory for format='oci-dir' / oci:DIR.")
    if dest.is_dir() and is_layout(dest):
        _fill_layout(OCILayout(dest), image, tag)
        return dest
    if dest.is_dir() and any(dest.iterdir()):
        raise InvalidImage(f"{dest} is a non-empty directory that is not an OCI layout; give a "
                           "new directory (or an existing layout to add the image to).")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _fill_layout(OCILayout(tmp, create=True), image, tag)
        os.chmod(tmp, 0o755)
        if dest.is_dir():
            dest.rmdir()
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _fill_layout(layout: OCILayout, image, tag: str | None) -> None:
    manifest = oci_manifest(image)
    for desc, layer in zip(manifest.layers, image.layers):
        if not layout.has_blob(desc.digest):
            with layer.open_blob() as f:
                written = layout.write_blob(f, desc.digest, desc.media_type)
            if written.size != desc.size:
                raise InvalidImage(f"layer {desc.digest} is {written.size:,} bytes, its "
                                   f"descriptor says {desc.size:,}; the source is damaged.")
    layout.write_blob(image.config_bytes, manifest.config.digest)
    layout.write_blob(manifest.raw, manifest.digest)
    layout.set_ref(tag, manifest.descriptor())


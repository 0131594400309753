"""Images in files: docker-archive and oci-archive tars, OCI layout directories.

Tars are read in place through member offsets. A compressed outer tar (`docker save | gzip`)
cannot be seeked into, so it is inflated once into the store's tmp directory; that copy is
deleted when the last Image/Layer using it is garbage collected.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from pathlib import Path

from ..errors import ImageNotFound, InvalidImage
from ..oci import compression
from ..oci.archive import OCIArchive, TarIndex, is_oci_archive
from ..oci.dockerarchive import DockerArchive
from ..oci.layout import OCILayout, is_layout
from ..store import default_store


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _missing(path: Path, what: str) -> ImageNotFound:
    return ImageNotFound(f"{path} does not exist. Give the path of {what}.")


def tar_index(path: str | os.PathLike) -> TarIndex:
    """Index an image tar; a gzip/zstd-compressed tar is inflated to a temporary copy first."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise _missing(p, "an image tar (`docker save -o FILE`, `skopeo copy ... oci-archive:FILE`)")
    if p.is_dir():
        raise InvalidImage(f"{p} is a directory, not a tar file; an OCI layout directory opens "
                           f"as oci:{p}.")
    with open(p, "rb") as f:
        kind = compression.sniff(f.read(4))
    if kind is None:
        return TarIndex(p)
    fd, tmp = default_store().tmpfile("inflated-", ".tar")
    try:
        with os.fdopen(fd, "wb") as out, open(p, "rb") as raw:
            src = compression.decompressing(raw, kind)
            while chunk := src.read(1 << 20):
                out.write(chunk)
    except (OSError, EOFError, ValueError) as e:
        _unlink(tmp)
        raise InvalidImage(f"{p} is {kind}-compressed but cannot be inflated ({e}); it is "
                           "truncated or damaged. Save the image again.") from None
    except BaseException:
        _unlink(tmp)
        raise
    try:
        index = TarIndex(tmp)
    except BaseException:
        _unlink(tmp)
        raise
    weakref.finalize(index, _unlink, tmp)
    return index


def tar_kind(index: TarIndex) -> str:
    """'docker-archive' or 'oci-archive' from the members; InvalidImage for other tars."""
    if index.has("manifest.json"):
        return "docker-archive"
    if is_oci_archive(index):
        return "oci-archive"
    names = sorted(index.members)[:5]
    raise InvalidImage(f"{index.path} is not an image tar: it has neither manifest.json (docker "
                       f"save) nor oci-layout and index.json (OCI archive); it starts with "
                       f"{', '.join(names) or 'nothing'}. Give a tar written by `docker save`, "
                       "`skopeo copy` or nbimages.save().")


def open_docker_archive(path: str, ref: str | None = None, platform=None, *, source: str | None = None):
    index = tar_index(path)
    archive = DockerArchive(index.path, index)
    return archive.image(ref, platform, source=source or f"docker-archive:{path}")


def open_oci_archive(path: str, tag: str | None = None, platform=None, *, source: str | None = None):
    index = tar_index(path)
    archive = OCIArchive(index.path, index)
    return archive.image(tag, platform, source=source or f"oci-archive:{path}")


def open_oci_dir(path: str, tag: str | None = None, platform=None, *, source: str | None = None):
    p = Path(os.path.expanduser(path))
    if not p.exists():
        raise _missing(p, "an OCI image layout directory (`skopeo copy ... oci:DIR`)")
    if p.is_file():
        raise InvalidImage(f"{p} is a file, not an OCI layout directory; a tar opens as "
                           f"oci-archive:{p} or docker-archive:{p}.")
    return OCILayout(p).image(tag, platform, source=source or f"oci:{path}")


def open_path(path: str, platform=None):
    """A bare existing path: an OCI layout directory or an image tar of either kind."""
    p = Path(os.path.expanduser(path))
    if p.is_dir():
        if not is_layout(p):
            raise InvalidImage(f"{p} is a directory but not an OCI image layout (no oci-layout "
                               "and index.json). Give an image tar or a layout directory.")
        return OCILayout(p).image(None, platform, source=f"oci:{path}")
    index = tar_index(p)
    kind = tar_kind(index)
    if kind == "docker-archive":
        return DockerArchive(index.path, index).image(None, platform, source=f"docker-archive:{path}")
    return OCIArchive(index.path, index).image(None, platform, source=f"oci-archive:{path}")

"""The docker-archive transport (`docker-archive:PATH[:REF]`): open a `docker save` tar, write one.

Reading goes through the tar's member offsets (files.py indexes it, inflating a compressed
tar once). Writing is the Docker 25 shape: an OCI layout that also carries manifest.json and
repositories, so `docker load`, skopeo's docker-archive and oci-archive all read it. Layers are
kept as the image has them (gzip or plain tar: every `docker load` decompresses, and the
manifest digest survives the round trip); zstd layers are written uncompressed, because
engines before 23.0 cannot read zstd.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..atomic import write_atomic
from ..image import Image, Layer
from ..oci import digest as dg, mediatypes as mt
from ..oci.archive import check_blob_sizes, oci_manifest, tar_stream
from ..oci.descriptor import Descriptor
from ..oci.dockerarchive import DockerArchive, docker_archive_entries
from ..oci.manifest import Manifest
from ..store import default_store
from .files import tar_file_destination, tar_index, writing


def open_docker_archive(path: str, ref: str | None = None, platform=None, *, source: str | None = None):
    """`docker-archive:PATH[:REF]` as an Image (REF picks one of several images in the tar)."""
    index = tar_index(path)
    archive = DockerArchive(index.path, index)
    return archive.image(ref, platform, source=source or f"docker-archive:{path}")


def write_docker_archive(image: Image, path: str | os.PathLike, tag: str | None = None) -> Path:
    """Write `image` as a docker-archive tar at `path` (atomically) and return the path."""
    check_blob_sizes(image)
    image.verify()
    tag = tag or image.tag
    with writing(path) as dest:
        tar_file_destination(dest)
        with _docker_ready(image, dest.parent) as ready:
            write_atomic(dest, tar_stream(docker_archive_entries(ready, tag)))
    return dest


def docker_tar_stream(image, tag: str | None = None, workdir: str | os.PathLike | None = None
                      ) -> Iterator[bytes]:
    """The bytes of the docker-format tar of `image`, as chunks (what save() writes)."""
    check_blob_sizes(image)
    image.verify()
    tag = tag or image.tag
    with _docker_ready(image, Path(workdir or default_store().tmpdir())) as ready:
        yield from tar_stream(docker_archive_entries(ready, tag))



@contextlib.contextmanager
def _docker_ready(image, workdir: Path):
    """The image itself, or a copy whose zstd layers are inflated into temporary plain tars
    in `workdir`, verified against their diff_ids."""
    zstd = [i for i, layer in enumerate(image.layers) if layer.compression == "zstd"]
    if not zstd:
        yield image
        return
    temps: list[str] = []
    try:
        layers = list(image.layers)
        for i in zstd:
            layer = layers[i]
            fd, tmp = tempfile.mkstemp(prefix=".layer-", suffix=".tar", dir=workdir)
            temps.append(tmp)
            h = dg.hasher(layer.diff_id)
            size = 0
            with os.fdopen(fd, "wb") as out, layer.open_tar() as src:
                while chunk := src.read(dg.CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    size += len(chunk)
            diff_id = f"{dg.parse(layer.diff_id)[0]}:{h.hexdigest()}"
            dg.check(layer.diff_id, diff_id, f"layer {layer.digest} uncompressed")
            layers[i] = Layer(Descriptor(mt.OCI_LAYER, diff_id, size), diff_id,
                              (lambda p=tmp: open(p, "rb")))
        m = oci_manifest(image)
        manifest = Manifest.build(m.config, [layer.descriptor for layer in layers],
                                  annotations=m.annotations or None)
        yield Image(manifest, image.config_bytes, layers, source=image.source,
                    names=list(image.names))
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


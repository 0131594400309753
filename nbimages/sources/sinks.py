"""Sinks: write an Image as a docker-archive tar, an OCI archive tar or an OCI layout
directory, or stream it straight into the Docker engine.

Everything is streamed blob by blob from `Layer.open_blob()` and checked against its digest
on the way; files are written next to the destination under a temporary name and renamed at
the end, so a failure leaves nothing half-written.

Format "docker" is the Docker 25 shape: an OCI layout that also carries manifest.json and
repositories. Layers are kept as the image has them (gzip or plain tar: every `docker load`
decompresses, and the manifest digest survives the round trip); zstd layers are written
uncompressed, because engines before 23.0 cannot read zstd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..atomic import write_atomic
from ..errors import DigestMismatch, InvalidImage, NbimagesError, UnknownTransport
from ..image import Image, Layer
from ..oci import digest as dg, mediatypes as mt
from ..oci.archive import check_blob_sizes, oci_archive_entries, oci_manifest, tar_stream
from ..oci.descriptor import Descriptor
from ..oci.dockerarchive import docker_archive_entries
from ..oci.layout import OCILayout, is_layout
from ..oci.manifest import Manifest
from ..store import default_store
from .daemon import client
from .opener import open_image
from .transports import TRANSPORTS

FORMATS = {
    "docker": "a tar for `docker load` that is also an OCI archive (Docker 25 layout)",
    "oci": "an OCI image layout as a tar (oci-archive)",
    "oci-dir": "an OCI image layout directory",
}


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
    _refuse_transport_path(path)
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    check_blob_sizes(image)
    image.verify()
    tag = tag or default_tag(image)
    dest = Path(os.path.expanduser(str(path)))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if format == "oci-dir":
            return _save_layout(image, dest, tag)
        if dest.is_dir():
            raise InvalidImage(f"{dest} is a directory; give a file name for the tar (or use "
                               "format='oci-dir' to write a layout directory).")
        with _docker_ready(image, dest.parent, format == "docker") as ready:
            entries = docker_archive_entries(ready, tag) if format == "docker" \
                else oci_archive_entries(ready, tag)
            write_atomic(dest, tar_stream(entries))
    except OSError as e:
        # Where the user asked us to write (a missing, read-only or full place): their call.
        where = [str(f) for f in (e.filename, e.filename2) if f]
        if not any(os.path.abspath(f).startswith(os.path.abspath(dest.parent)) for f in where):
            raise
        raise NbimagesError(f"cannot write {dest}: {e.strerror or e}. Choose a folder you can "
                            "write to (with room for the image).") from None
    return dest


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


def docker_tar_stream(image, tag: str | None = None, workdir: str | os.PathLike | None = None
                      ) -> Iterator[bytes]:
    """The bytes of the docker-format tar of `image`, as chunks (what save() writes)."""
    check_blob_sizes(image)
    image.verify()
    tag = tag or default_tag(image)
    with _docker_ready(image, Path(workdir or default_store().tmpdir()), True) as ready:
        yield from tar_stream(docker_archive_entries(ready, tag))


def load_into_engine(image, tag: str | None = None) -> str:
    """Stream `image` into the Docker engine (`docker load`) and return its image ID.

    The tar is generated on the fly and sent as a chunked request, never written to disk
    (except zstd layers, which are inflated to temporary files first).
    """
    import docker
    if not isinstance(image, Image):  # a source string
        image = open_image(image)
    c = client(timeout=600)
    stream = docker_tar_stream(image, tag)
    try:
        loaded = c.api.load_image(stream)
        ids = []
        for chunk in loaded:
            if "error" in chunk:
                raise InvalidImage(f"the Docker engine refused the image: {chunk['error']}")
            text = chunk.get("stream", "")
            for prefix in ("Loaded image ID: ", "Loaded image: "):
                if text.startswith(prefix):
                    ids.append(text[len(prefix):].strip())
    except docker.errors.APIError as e:
        raise InvalidImage(f"the Docker engine refused the image: {e.explanation or e}") from None
    finally:
        stream.close()
    engine_image = c.images.get(image.id if not ids else ids[-1])
    if engine_image.id != image.id:  # the engine recomputes the config digest: must agree
        raise DigestMismatch(f"the engine loaded image {engine_image.id}, expected {image.id}.")
    return engine_image.id


# --------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _docker_ready(image, workdir: Path, convert_zstd: bool):
    """The image itself, or (docker format only) a copy whose zstd layers are inflated into
    temporary plain tars in `workdir`, verified against their diff_ids."""
    zstd = [i for i, layer in enumerate(image.layers) if layer.compression == "zstd"]
    if not convert_zstd or not zstd:
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


def _save_layout(image, dest: Path, tag: str | None) -> Path:
    """Write into an OCI layout directory: a new one appears whole (built aside, renamed)."""
    if dest.exists() and not dest.is_dir():
        raise InvalidImage(f"{dest} exists and is not a directory; give a new or layout "
                           "directory for format='oci-dir'.")
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


"""Does an Image keep the contract every source promises? (go-containerregistry's `validate`.)

The image model (image.py) is what every source produces and every sink and analysis reads:
an image from the engine, a registry, a tar or an OCI layout must answer the same questions
with values that agree with each other. `validate_image` checks that they do, reading every
layer once (streamed, never held in memory), and names each disagreement.
"""

from __future__ import annotations

import zlib

from .errors import DigestMismatch, InvalidImage, NbimagesError
from .image import Image
from .oci import canonical, compression, digest as dg, imageconfig, mediatypes as mt
from .oci.manifest import Manifest


def validate_image(image: Image, *, layers: bool = True) -> Image:
    """Check `image` against the Image contract; returns it, or raises InvalidImage naming
    every problem found.

    Checked: the manifest digest covers the manifest bytes, and they parse to the same
    manifest; the config bytes hash to the manifest's config descriptor (digest and size) and
    to `image.id`; the config's diff_ids, the manifest's layers and `image.layers` agree in
    number and order; each Layer's descriptor is the manifest's. With `layers=True` each
    layer's blob is read: it must hash to its digest and size, and its uncompressed tar to its
    diff_id.
    """
    problems: list[str] = []
    m = image.manifest
    if not isinstance(m, Manifest):
        raise InvalidImage(f"{image.source or image!r}: the manifest is a {type(m).__name__}, "
                           "not an nbimages Manifest.")
    if m.digest != dg.of_bytes(m.raw):
        problems.append(f"the manifest digest {m.digest} is not the digest of its bytes")
    try:
        again = Manifest.parse(m.raw, m.media_type)
        if [d.digest for d in again.layers] != [d.digest for d in m.layers] or \
                again.config.digest != m.config.digest:
            problems.append("the manifest bytes describe other blobs than the Manifest object")
    except NbimagesError as e:
        problems.append(f"the manifest bytes do not parse ({e})")
    config_digest = dg.of_bytes(image.config_bytes)
    if config_digest != m.config.digest or len(image.config_bytes) != m.config.size:
        problems.append(f"the config bytes ({config_digest}, {len(image.config_bytes)} bytes) are "
                        f"not the manifest's config ({m.config.digest}, {m.config.size} bytes)")
    if image.id != config_digest:
        problems.append(f"image.id {image.id} is not the config digest {config_digest}")
    try:
        diff_ids = imageconfig.diff_ids(canonical.loads(image.config_bytes, "image config"))
    except NbimagesError as e:
        problems.append(str(e))
        diff_ids = []
    if image.diff_ids != diff_ids:
        problems.append("image.diff_ids are not the config's rootfs.diff_ids")
    if not (len(diff_ids) == len(m.layers) == len(image.layers)):
        problems.append(f"{len(diff_ids)} diff_ids, {len(m.layers)} manifest layers and "
                        f"{len(image.layers)} Layer objects: they must be as many")
    for i, (layer, desc) in enumerate(zip(image.layers, m.layers)):
        where = f"layer {i} ({dg.short(desc.digest)})"
        if (layer.digest, layer.size, layer.media_type) != (desc.digest, desc.size, desc.media_type):
            problems.append(f"{where}: its Layer says {layer.digest} {layer.size} bytes "
                            f"{layer.media_type}, the manifest {desc.digest} {desc.size} bytes "
                            f"{desc.media_type}")
        if i < len(diff_ids) and layer.diff_id != diff_ids[i]:
            problems.append(f"{where}: its diff_id {layer.diff_id} is not the config's {diff_ids[i]}")
        if desc.media_type not in mt.LAYERS:
            problems.append(f"{where}: {desc.media_type!r} is not a layer media type")
        if layers:
            problems += _read_layer(layer, where)
    if problems:
        raise InvalidImage(f"{image.source or 'the image'} breaks the Image contract: "
                           + "; ".join(problems) + ".")
    return image


def _read_layer(layer, where: str) -> list[str]:
    """Read the layer once: its blob is hashed (digest and size) as it streams through the
    decompressor, and the tar that comes out is hashed for the diff_id."""
    broken = diff_id = tar = None
    with layer.open_blob() as blob:  # verifies as it streams: its mismatch is this check's finding
        try:
            try:
                tar = compression.open_uncompressed(blob, layer.media_type)
                diff_id, _ = dg.of_stream(tar)
            except DigestMismatch:
                raise
            except (OSError, EOFError, ValueError, zlib.error, NbimagesError) as e:
                broken = e
            while blob.read(dg.CHUNK):  # what the decompressor left unread
                pass
        except DigestMismatch as e:
            got, size = e.actual or "other content", e.actual_size
        else:
            got, size = blob.digest, blob.count
        finally:
            if tar is not None:
                tar.close()  # closes the blob too
    out = []
    if (got, size) != (layer.digest, layer.size):
        out.append(f"{where}: the blob reads as {got}, {size} bytes")
    if broken is not None:
        out.append(f"{where}: the blob does not decompress ({broken})")
    elif diff_id is not None and diff_id != layer.diff_id:
        out.append(f"{where}: the uncompressed tar reads as {diff_id}, not its diff_id")
    return out

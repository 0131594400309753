"""Images in registries: open lazily, pull into the store, push from any source, copy anywhere.

Blobs move in parallel (a pool of 4 threads), each streamed to or from disk while hashed.
Pulls skip blobs the store already has and resume partial ones; pushes skip blobs the
registry already has (HEAD) and mount blobs known to live in another repository of the same
registry instead of uploading them again.
"""

from __future__ import annotations

import contextvars
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidReference, NbimagesError, OSFailure, RegistryError
from ..image import Image, Layer
from ..oci import digest as dg, imageconfig, mediatypes as mt
from ..oci.descriptor import Descriptor, Platform, check_platform
from ..oci.manifest import Index, Manifest
from ..progress import format_bytes, progress as make
from ..reference import Reference
from ..registry.auth import Credentials
from ..registry.client import RegistryClient, client_for, discard_partial
from ..store import default_store

WORKERS = 4

# (registry, blob digest) -> a repository known to hold it, for cross-repository mounts.
_origins: dict[tuple[str, str], str] = {}
_origins_lock = threading.Lock()


def _remember(registry: str, repository: str, digests) -> None:
    with _origins_lock:
        for d in digests:
            _origins[(registry, d)] = repository


@dataclass(eq=False)
class RemoteImage(Image):
    """An image in a registry: an Image whose layers download into the store when opened,
    and the wire client and reference it was read with (pull reuses them)."""

    client: RegistryClient | None = field(default=None, repr=False, compare=False)
    ref: Reference | None = field(default=None, repr=False, compare=False)


def _store(store=None):
    if store is not None:
        return store
    return default_store()


def resolve(client: RegistryClient, ref: Reference, platform: str | Platform | None = None
            ) -> tuple[bytes, str, str, Index | None]:
    """(manifest bytes, media type, digest, index or None) of `ref` for `platform`."""
    raw, mtype, digest = client.get_manifest(ref.repository, ref.identifier)
    index = None
    depth = 0
    while mt.is_index(mtype):
        depth += 1
        if depth > 4:
            raise RegistryError(f"{ref} nests indexes too deeply.")
        index = Index.parse(raw, mtype)
        desc = index.select(platform)
        raw, mtype, digest = client.get_manifest(ref.repository, desc.digest)
    return raw, mtype, digest, index


def open_remote(ref: str | Reference, platform: str | Platform | None = None, *,
                insecure: bool | None = None, ca_bundle: str | None = None,
                credentials: Credentials | tuple[str, str] | None = None, store=None,
                timeout: float | None = None) -> Image:
    """The image `ref` in its registry, with layers fetched only when opened.

    Manifest and config are read at once (so `image.layers` shows compressed sizes); a layer's
    `open_blob()` first downloads it into the store (verified), then reads the stored file.
    """
    ref = Reference.parse(ref)
    client = client_for(ref, insecure=insecure, ca_bundle=ca_bundle, credentials=credentials,
                        timeout=timeout)
    store = _store(store)
    raw, mtype, digest, _index = resolve(client, ref, platform)
    manifest = Manifest.parse(raw, mtype)
    if store.has_blob(manifest.config.digest):
        config_bytes = store.read_blob(manifest.config.digest)
    else:
        config_bytes = client.read_blob(ref.repository, manifest.config.digest)
        store.write_blob(config_bytes, manifest.config.digest)
    config = imageconfig.parse(config_bytes)
    diff_ids = imageconfig.diff_ids(config)
    if len(diff_ids) != len(manifest.layers):
        raise RegistryError(f"{ref}: the config lists {len(diff_ids)} diff_ids but the manifest "
                            f"{len(manifest.layers)} layers; the image in the registry is damaged.")

    def opener(desc: Descriptor):
        def open_blob():
            with store.writing():  # not pruned between its download and this open
                client.download_blob(ref.repository, desc.digest, desc.size, store)
                return store.open_blob(desc.digest, desc.size)
        return open_blob

    layers = [Layer(d, diff_id, opener(d), is_local=lambda d=d: store.has_blob(d.digest))
              for d, diff_id in zip(manifest.layers, diff_ids)]
    _remember(client.registry, ref.repository,
              [manifest.config.digest] + [d.digest for d in manifest.layers])
    image = RemoteImage(manifest, config_bytes, layers, source=f"docker://{ref}",
                        names=[str(ref)], _config=config, client=client, ref=ref)
    check_platform(image.platform, platform, f"docker://{ref}")
    return image


def _progress(desc: str, enabled: bool | None):
    return make(desc, enabled=None if enabled else False)


class _Cancelled(Exception):
    """Raised in a worker when another blob failed or the user interrupted (Ctrl-C)."""


def _run_parallel(jobs: list, fn) -> None:
    """Run fn(job, check) for each job on the pool; `check()` raises once the run is cancelled.

    The first error (or a KeyboardInterrupt in the calling thread) cancels what has not
    started and makes running transfers stop at their next chunk; partial downloads stay in
    the store's tmp area for the next pull to resume.
    """
    if not jobs:
        return
    cancel = threading.Event()

    def check() -> None:
        if cancel.is_set():
            raise _Cancelled()

    pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(jobs)), thread_name_prefix="nbimages-blob")
    # Each job runs in a copy of the caller's context: the open progress shows its waits.
    futures = [pool.submit(contextvars.copy_context().run, fn, j, check) for j in jobs]
    try:
        for f in futures:
            f.result()
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        # Report the first real failure, not a worker's reaction to the cancellation.
        for f in futures:
            if f.done() and not f.cancelled() and isinstance(f.exception(), NbimagesError):
                raise f.exception() from None
        raise
    pool.shutdown(wait=True)


def pull(ref: str | Reference, platform: str | Platform | None = None, *, progress: bool = True,
         insecure: bool | None = None, ca_bundle: str | None = None,
         credentials: Credentials | tuple[str, str] | None = None, store=None,
         timeout: float | None = None) -> Image:
    """Pull `ref` into the local store (tagged with its canonical name) and return it.

    Blobs already in the store are not fetched; a pull that was interrupted resumes its
    partial blobs. Every blob is verified against its digest before it enters the store.
    """
    ref = Reference.parse(ref)
    store = _store(store)
    with store.writing():  # a concurrent prune waits for the tag
        return _pull(ref, platform, progress, store, insecure=insecure, ca_bundle=ca_bundle,
                     credentials=credentials, timeout=timeout)


def _pull(ref: Reference, platform, progress: bool, store, **registry_kw: Any) -> Image:
    seen: set[str] = set()
    # Opened inside the progress: a registry slow to send the manifest is shown waiting.
    with _progress(f"pull {ref.familiar()}", progress) as p:
        remote = open_remote(ref, platform, store=store, **registry_kw)
        client = remote.client
        jobs = []
        for layer in remote.layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            name = dg.short(layer.digest)
            if store.has_blob(layer.digest):
                p.bar(name).close("already in store")
                continue
            jobs.append((layer, p.bar(name, total=layer.size)))

        def fetch(job, check):
            layer, bar = job
            resumed = [0]

            def advance(n: int) -> None:
                check()
                bar.update(n)

            def resume(offset: int) -> None:
                resumed[0] = offset
            client.download_blob(ref.repository, layer.digest, layer.size, store, advance, resume)
            bar.close(resumed_note(resumed[0], layer.size))

        try:
            _run_parallel(jobs, fetch)
        except OSFailure:
            # No room (or no right) in the store: drop every partial download of this pull, so
            # the store is left as usable as before it.
            for layer, _bar in jobs:
                discard_partial(store, layer.digest)
            raise
    manifest = remote.manifest
    store.write_blob(manifest.raw, manifest.digest)
    desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw), platform=remote.platform)
    store.tag(str(ref), desc)
    store.note_origin(manifest.digest, f"docker://{ref}")
    image = store.image(desc, source=f"docker://{ref}")
    image.names = [str(ref)]
    return image


def resumed_note(offset: int, size: int) -> str:
    """A blob bar's closing note: "done", or what a resumed download kept and fetched."""
    if not offset:
        return "done"
    return (f"resumed at {format_bytes(offset)}: fetched {format_bytes(size - offset)} "
            f"of {format_bytes(size)}")


def push(image: Image, ref: str | Reference | None = None, *, progress: bool = True,
         insecure: bool | None = None, ca_bundle: str | None = None,
         credentials: Credentials | tuple[str, str] | None = None,
         chunk_size: int | None = None, timeout: float | None = None) -> str:
    """Push an Image to `ref` (the docker:// writer); returns the manifest digest.

    nbimages.push (sources/copy.py) opens any source string first.

    The manifest is sent as the exact bytes it was read or built with, so the digest in the
    registry is the digest of the image here. Blobs the registry has are skipped; blobs known
    in another repository of the same registry are mounted instead of uploaded. `ref`
    defaults to the image's own tagged name (`image.tag`). A blob read from the local store is
    verified as it is sent: a damaged one stops the push before the registry gets it whole.
    """
    if not isinstance(image, Image):
        raise InvalidReference(f"cannot push {type(image).__name__}: give an Image, or use "
                               "nbimages.push, which opens any source string.")
    if ref is None:
        ref = image.tag
        if ref is None:
            raise InvalidReference(f"{image!r} has no tagged name to push to; name the "
                                   "destination, e.g. push(image, '127.0.0.1:5000/team/app:1').")
    image.verify()  # the config's diff_ids, before a byte is sent
    ref = Reference.parse(ref)
    client = client_for(ref, insecure=insecure, ca_bundle=ca_bundle, credentials=credentials,
                        timeout=timeout)
    repo = ref.repository
    config_desc = image.manifest.config
    blobs: list[tuple[Descriptor, Any]] = [
        (config_desc, lambda: io.BytesIO(image.config_bytes))]
    seen = {config_desc.digest}
    for layer in image.layers:
        if layer.digest not in seen:
            seen.add(layer.digest)
            blobs.append((layer.descriptor, layer.open_blob))
    with _progress(f"push {ref.familiar()}", progress) as p:
        jobs = [(desc, opener, p.bar(dg.short(desc.digest), total=desc.size)) for desc, opener in blobs]

        def send(job, check):
            desc, opener, bar = job

            def advance(n: int) -> None:
                check()
                bar.update(n)
            if client.has_blob(repo, desc.digest, push=True):
                bar.close("already in registry")
                return
            location = None
            with _origins_lock:
                origin = _origins.get((client.registry, desc.digest))
            if origin and origin != repo:
                try:
                    location = client.mount_blob(repo, desc.digest, origin)
                except NbimagesError:
                    location = None
                if location is None and client.has_blob(repo, desc.digest, push=True):
                    bar.close(f"mounted from {origin}")
                    return
            check()
            client.upload_blob(repo, desc.digest, desc.size, opener, advance,
                               location=location, chunk_size=chunk_size)
            bar.close("pushed")

        _run_parallel(jobs, send)
        target = ref.tag or ref.digest
        digest = client.put_manifest(repo, target, image.manifest.raw, image.manifest.media_type)
    if ref.digest and ref.digest != digest:
        raise RegistryError(f"the image's digest is {digest}, not the {ref.digest} named in the "
                            "reference; push it to a tag instead.")
    _remember(client.registry, repo, list(seen))
    return digest


def push_index(manifests: list[tuple[str | Reference, str | Platform | None]], ref: str | Reference, *,
               insecure: bool | None = None, ca_bundle: str | None = None,
               credentials: Credentials | tuple[str, str] | None = None,
               timeout: float | None = None) -> str:
    """Make `ref` a multi-platform index of images already in its repository.

    `manifests` lists (image reference in the same repository, platform or None for the
    platform its config says); returns the index digest.
    """
    ref = Reference.parse(ref)
    client = client_for(ref, insecure=insecure, ca_bundle=ca_bundle, credentials=credentials,
                        timeout=timeout)
    descs = []
    for member, plat in manifests:
        mref = Reference.parse(member)
        if mref.registry != ref.registry or mref.repository != ref.repository:
            raise InvalidReference(f"{mref} is not in {ref.name}; push it there first.")
        raw, mtype, digest = client.get_manifest(mref.repository, mref.identifier)
        if not mt.is_manifest(mtype):
            raise RegistryError(f"{mref} is an index itself; list single-platform images.")
        if plat is None:
            m = Manifest.parse(raw, mtype)
            cfg = imageconfig.parse(client.read_blob(mref.repository, m.config.digest))
            plat = Platform(cfg.get("os", "linux"), cfg.get("architecture", ""), cfg.get("variant"))
        descs.append(Descriptor(mtype, digest, len(raw), platform=Platform.parse(plat)))
    index = Index.build(descs)
    return client.put_manifest(ref.repository, ref.tag or ref.identifier, index.raw, index.media_type)

"""The docker-daemon transport (`docker-daemon:REF`): images in the Docker engine, both ways,
through the docker SDK. `load_into_engine` writes (a streamed `docker load`).

The engine only hands images out as a `docker save` stream, so it is written to a temporary
tar in the store's tmp directory and read in place as a docker-archive. The tar lives as long
as some Image or Layer from it does (weakref finalizer) and is shared, keyed by image ID,
by every open of the same image in this process; nothing is cached across processes.
"""

from __future__ import annotations

import collections
import os
import threading
import weakref

from .. import docker_endpoint
from ..errors import (DigestMismatch, EngineUnavailable, ImageNotFound, InvalidImage,
                      InvalidReference, NbimagesError, RegistryError)
from ..oci.archive import TarIndex
from ..oci.dockerarchive import DockerArchive, familiar
from ..image import Image
from ..reference import Reference
from ..store import default_store
from .docker_archive import docker_tar_stream
from .files import _unlink

_cache: "weakref.WeakValueDictionary[str, DockerArchive]" = weakref.WeakValueDictionary()
# The last exports stay on disk while the process lives, so a run of magics on the same
# engine image (`%image layers`, then `files`, then `waste`) exports it once, not each time.
_recent: "collections.deque[DockerArchive]" = collections.deque(maxlen=2)
_cache_lock = threading.Lock()


def engine_unavailable(reason: object) -> EngineUnavailable:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (DOCKER_HOST is not set)"
    return EngineUnavailable(
        f"the Docker engine does not answer at {host} ({reason}). Start it (for example "
        "`bash scripts/services.sh start` or `sudo systemctl start docker`) or point DOCKER_HOST "
        "at a running one. Without an engine, open images from a registry (docker://REF), a tar "
        "or an OCI layout instead, and build with the embedded builder (nbimages.Recipe).")


def client(timeout: int = 120):
    """A docker SDK client that has answered a ping; EngineUnavailable otherwise.

    The engine is found as the docker CLI finds it: DOCKER_HOST, else the current context.
    """
    try:
        c = docker_endpoint.resolve().client(timeout)
        c.ping()
    except Exception as e:  # noqa: BLE001 - every failure to connect means "no engine"
        raise engine_unavailable(_short(e)) from None
    return c


def _short(e: Exception) -> str:
    text = docker_endpoint.short_cause(e)  # "connection refused", not urllib3's whole story
    text = text.splitlines()[0] if str(e) else e.__class__.__name__
    return text if len(text) < 200 else text[:197] + "..."


def engine_answers() -> bool:
    """True if an engine answers quickly (used by auto-detection, never raises)."""
    try:
        client(timeout=5)
    except EngineUnavailable:
        return False
    return True


def get_engine_image(c, ref: str):
    """The engine's image object for `ref`, or ImageNotFound saying what to do."""
    import docker
    try:
        return c.images.get(ref)
    except docker.errors.ImageNotFound:
        raise ImageNotFound(f"the Docker engine has no image {ref!r}. `docker images` lists what "
                            f"it has; pull it (docker://{ref}) or build it first.") from None
    except docker.errors.APIError as e:
        if e.status_code in (400, 404):
            raise InvalidReference(f"the Docker engine rejected {ref!r}: "
                                   f"{e.explanation or e}.") from None
        raise


def open_daemon(ref: str, platform=None, *, source: str | None = None):
    """`docker-daemon:REF` as an Image (via a temporary `docker save` tar)."""
    if not ref:
        raise InvalidReference("docker-daemon: needs an image, e.g. docker-daemon:busybox:latest "
                               "or docker-daemon:sha256:<image id>.")
    c = client()
    engine_image = get_engine_image(c, ref)
    image_id = engine_image.id
    with _cache_lock:
        archive = _cache.get(image_id)
    if archive is not None and not os.path.exists(archive.tar.path):
        archive = None  # exported into a store that is gone (verify's clean store, in this process)
    if archive is None:
        archive = _save_to_tmp(c, image_id)
        with _cache_lock:
            _cache[image_id] = archive
    with _cache_lock:
        if archive not in _recent:
            _recent.append(archive)
    img = archive.image(None, platform, source=source or f"docker-daemon:{ref}")
    img.names = _names_first(ref, list(engine_image.tags))
    return img


def _names_first(ref: str, tags: list[str]) -> list[str]:
    """The engine's tags for the image, the one the user asked for first."""
    try:
        asked = familiar(ref)
    except InvalidReference:
        return tags
    return [asked] + [t for t in tags if t != asked] if asked in tags else tags


def _save_to_tmp(c, image_id: str) -> DockerArchive:
    fd, tmp = default_store().tmpfile(f"daemon-{image_id.split(':')[-1][:12]}-", ".tar")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in c.api.get_image(image_id, chunk_size=1 << 20):
                f.write(chunk)
        index = TarIndex(tmp)
        archive = DockerArchive(tmp, index)
    except Exception as e:
        _unlink(tmp)
        if isinstance(e, NbimagesError):
            raise
        import docker
        if isinstance(e, docker.errors.APIError):
            raise ImageNotFound(f"the Docker engine could not export image {image_id}: "
                                f"{e.explanation or e}.") from None
        raise
    except BaseException:
        _unlink(tmp)
        raise
    weakref.finalize(archive, _unlink, tmp)
    return archive


def pull_through_engine(ref: str, platform=None):
    """`docker://REF` when the daemonless registry client is not available: `docker pull`,
    then read the image back from the engine."""
    import docker
    r = Reference.parse(ref)
    c = client(timeout=600)
    repo = r.familiar().split("@", 1)[0].rsplit(":", 1)[0] if r.tag else r.name
    try:
        pulled = c.images.pull(repo, tag=r.digest or r.tag, platform=str(platform) if platform else None)
    except docker.errors.NotFound as e:
        raise ImageNotFound(f"the registry has no image {ref!r} ({e.explanation or e}). Check "
                            "the name and tag.") from None
    except docker.errors.APIError as e:
        raise RegistryError(f"pulling {ref!r} through the Docker engine failed: "
                            f"{e.explanation or e}.") from None
    return open_daemon(pulled.id, platform, source=f"docker://{ref}")


def write_daemon(image: Image, tag: str | None = None) -> str:
    """Stream `image` into the Docker engine (`docker load`) and return its image ID.

    The tar is generated on the fly and sent as a chunked request, never written to disk
    (except zstd layers, which are inflated to temporary files first).
    """
    return load_streamed(client(timeout=600).api, image, tag)


def load_streamed(api, image: Image, tag: str | None = None) -> str:
    """`docker load` `image` (named `tag`, if given) through the low-level docker API client
    `api`, the tar made on the fly; returns the image ID after checking the engine agrees."""
    import docker
    stream = docker_tar_stream(image, tag)
    try:
        ids = []
        for chunk in api.load_image(stream):
            if "error" in chunk:
                raise InvalidImage(f"the Docker engine refused the image: {chunk['error']}")
            text = chunk.get("stream", "")
            for prefix in ("Loaded image ID: ", "Loaded image: "):
                if text.startswith(prefix):
                    ids.append(text[len(prefix):].strip())
    except docker.errors.APIError as e:
        message = (getattr(e, "explanation", None) or str(e)).strip()
        raise InvalidImage(f"the Docker engine refused the image: {message}") from None
    finally:
        stream.close()
    try:
        loaded = api.inspect_image(image.id if not ids else ids[-1])["Id"]
    except docker.errors.NotFound:
        raise DigestMismatch(f"the engine did not end up with image {image.id} after loading "
                             "it.") from None
    if loaded != image.id:  # the engine recomputes the config digest: must agree
        raise DigestMismatch(f"the engine loaded image {loaded}, expected {image.id}.")
    return loaded

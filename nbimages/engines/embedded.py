"""The embedded engine: no daemon, the local store plus the daemonless builder and registry client.

It builds recipes without RUN steps, pulls and pushes, lists, tags, saves and loads the
store's images. Running a container (or a RUN step) needs the Docker engine; those verbs say
so in one paragraph.
"""

from __future__ import annotations

from pathlib import Path

from ..builder.dockerfile import build_dockerfile
from ..builder.embedded import build_recipe
from ..errors import ImageNotFound, InvalidImage
from ..oci.layout import REF_NAME
from ..sources import open_image, save
from ..sources.copy import push
from ..sources.remote import pull
from ..store import _name_forms, default_store
from .base import Engine, ImageRow


def split_name(name: str) -> tuple[str, str]:
    """`repo[:tag]` as the store wrote it -> (repository, tag)."""
    if "@" in name:
        return name.split("@", 1)[0], "<none>"
    head, _, last = name.rpartition("/")
    if ":" in last:
        base, tag = last.rsplit(":", 1)
        return (f"{head}/{base}" if head else base), tag
    return name, "<none>"


class EmbeddedEngine(Engine):
    """Daemonless: the local store (NBIMAGES_HOME) is where images live."""

    name = "embedded"

    def __init__(self, reason: str):
        self.reason = reason

    def _resolve(self, name: str):
        store = default_store()
        for form in _name_forms(name):
            try:
                return store.resolve(form)
            except ImageNotFound:
                continue
        raise ImageNotFound(f"no image {name!r} in the local store ({store.path}); "
                            "nbimages.images() lists what is there.")

    # -- images ---------------------------------------------------------------------------
    def build_recipe(self, recipe, tag: str | None = None, *, store=None, progress=None,
                     compression: str | None = None, **_ignored):
        """Build with the daemonless builder (RUN steps raise BuildError: they need Docker)."""
        return build_recipe(recipe, tag, store=store, compression=compression, progress=progress)

    build = build_recipe

    def build_dockerfile(self, dockerfile: str, context=None, tag: str | None = None, *,
                         build_args: dict | None = None, **_ignored):
        """A Dockerfile without RUN lines, built daemonless (RUN lines raise BuildError)."""
        return build_dockerfile(dockerfile, tag, context if context is not None else ".",
                                build_args=build_args)

    def pull(self, ref: str, **kw):
        return pull(ref, **kw)

    def push(self, ref: str, *, source: str | None = None, **kw) -> str:
        """Push the stored image `source` (default: the one named `ref`) to `ref`."""
        image = default_store().get(source or ref)
        return push(image, ref, **kw)

    def images(self) -> list[ImageRow]:
        store = default_store()
        rows = []
        for desc in store.index().manifests:
            name = desc.annotations.get(REF_NAME)
            try:
                image = store.image(desc)
            except Exception:  # noqa: BLE001 - a damaged or foreign-platform entry still lists
                image = None
            repo, tag = split_name(name) if name else ("<none>", "<none>")
            size = None
            created = None
            image_id = ""
            if image is not None:
                size = sum(layer.size for layer in image.layers) + len(image.config_bytes)
                created = image.created
                image_id = image.id
            rows.append(ImageRow(repo, tag, desc.digest, image_id, size, created, "store"))
        return rows

    def remove(self, ref: str, *, force: bool = False) -> None:
        """Remove the name from the store (blobs stay until the store is pruned)."""
        store = default_store()
        for form in _name_forms(ref):
            if store.untag(form):
                return
        raise ImageNotFound(f"no image {ref!r} in the local store ({store.path}); "
                            "nbimages.images() lists what is there.")

    def tag(self, source: str, target: str) -> None:
        default_store().tag(target, self._resolve(source))

    def save(self, ref: str, path, format: str = "docker") -> Path:
        return save(default_store().get(ref), path, format=format)

    def load(self, path) -> list[str]:
        """Read a docker-archive tar (from `docker save` or nbimages) into the store."""
        path = Path(path)
        if not path.is_file():
            raise InvalidImage(f"{path} is not a file; give the path of a tar made by "
                               "`docker save` or nbimages.save().")
        image = open_image(f"docker-archive:{path}")
        names = list(image.names) or [None]
        store = default_store()
        for name in names:
            store.put_image(image, name)
        return [n for n in names if n] or [image.id]

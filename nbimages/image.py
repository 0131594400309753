"""The two nouns: an Image is a config plus an ordered list of Layers; layers are streams.

Every source (engine, registry, docker-archive, OCI layout, the store, the builder) produces
these, and every sink and every analysis consumes them, so analysis is written once.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

from .errors import NbimagesError
from .oci import canonical, compression, digest as dg, mediatypes as mt
from .oci.descriptor import Descriptor, Platform
from .oci.manifest import Manifest
from .reference import Reference
from .verbs import provided


class Layer:
    """One filesystem layer: its blob as the source stores it, and its uncompressed tar.

    `digest`/`size`/`media_type` describe the stored blob (compressed or not); `diff_id` is
    the digest of the uncompressed tar (config `rootfs.diff_ids`).
    """

    def __init__(self, descriptor: Descriptor, diff_id: str | None,
                 open_blob: Callable[[], BinaryIO], *, open_tar: Callable[[], BinaryIO] | None = None,
                 is_local: Callable[[], bool] | None = None):
        self.descriptor = descriptor
        self.diff_id = diff_id
        self._open_blob = open_blob
        self._open_tar = open_tar
        self._is_local = is_local

    @property
    def local(self) -> bool:
        """False while opening the layer would first download it (a registry layer)."""
        return True if self._is_local is None else self._is_local()

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def compression(self) -> str | None:
        try:
            return mt.layer_compression(self.media_type)
        except ValueError:
            return None

    def open_blob(self) -> BinaryIO:
        """The blob as stored (what `digest` hashes). Close it when done."""
        return self._open_blob()

    def open_tar(self) -> BinaryIO:
        """The uncompressed layer tar (what `diff_id` hashes), streamed. Close it when done.

        Seekable when the source holds the tar uncompressed, which lets readers skip file data.
        """
        if self._open_tar is not None:
            return self._open_tar()
        return compression.open_uncompressed(self._open_blob(), self.media_type)

    def __repr__(self) -> str:
        return f"<Layer {dg.short(self.digest)} {self.size:,} bytes {self.media_type.rsplit('.', 1)[-1]}>"


@dataclass
class HistoryEntry:
    created: str | None
    created_by: str
    comment: str
    empty_layer: bool
    author: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "HistoryEntry":
        return cls(d.get("created"), d.get("created_by", ""), d.get("comment", ""),
                   bool(d.get("empty_layer", False)), d.get("author"))


def parse_created(text: str | None) -> _dt.datetime | None:
    """A config's `created` time; engines write nanoseconds, Python keeps microseconds."""
    if not text:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not m:
        return None
    frac = (m.group(2) or "")[:7]
    tz = m.group(3) or "Z"
    return _dt.datetime.fromisoformat(m.group(1) + frac + ("+00:00" if tz == "Z" else tz))


@dataclass
class Image:
    """An image from any source: the manifest bytes, the config bytes and the layers.

    `digest` is the manifest digest (depends on compression); `id` is the config digest, which
    Docker calls the image ID and which does not depend on the compressor.
    """

    manifest: Manifest
    config_bytes: bytes
    layers: list[Layer]
    source: str = ""
    names: list[str] = field(default_factory=list)
    _config: dict | None = field(default=None, repr=False)
    # How it was made, when nbimages just built it (None for an image opened from a source):
    # the builder's BuildReport (one row per step), the Recipe built and, for a notebook
    # (nbimages.build_notebook), what replaying it did (a NotebookBuild).
    build_report: Any = field(default=None, repr=False, compare=False)
    recipe: Any = field(default=None, repr=False, compare=False)
    notebook_build: Any = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = canonical.loads(self.config_bytes, "image config")
        return self._config

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def id(self) -> str:
        return dg.of_bytes(self.config_bytes)

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def platform(self) -> Platform:
        c = self.config
        return Platform(c.get("os", "linux"), c.get("architecture", ""), c.get("variant"),
                        c.get("os.version"))

    @property
    def history(self) -> list[HistoryEntry]:
        return [HistoryEntry.from_dict(h) for h in self.config.get("history") or []]

    @property
    def created(self) -> _dt.datetime | None:
        return parse_created(self.config.get("created"))

    @property
    def container_config(self) -> dict[str, Any]:
        return dict(self.config.get("config") or {})

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.container_config.get("Labels") or {})

    def layer_history(self) -> list[HistoryEntry | None]:
        """For each layer, the history entry that made it (entries with empty_layer skipped)."""
        entries = [h for h in self.history if not h.empty_layer]
        return [entries[i] if i < len(entries) else None for i in range(len(self.layers))]

    @property
    def tag(self) -> str | None:
        """The first of `names` that is a full reference with a tag (`team/app:1`,
        `127.0.0.1:5000/x:2`), in Docker's short form: what save() writes into the tar and
        push() pushes to by default. Bare OCI ref names such as `latest` are not."""
        for name in self.names or []:
            if ":" not in name.rsplit("/", 1)[-1]:
                continue
            try:
                r = Reference.parse(name)
            except NbimagesError:
                continue
            if r.tag and not r.digest:
                return r.familiar()
        return None

    # Verbs: thin wrappers over the public functions, so `image.save(...)` reads like a sentence;
    # the facade provides them (nbimages/verbs.py), the model never imports what is above it.
    def inspect(self):
        """Layer, file, size and waste tables of this image (see nbimages.inspect)."""
        return provided("inspect")(self)

    def save(self, path, format: str = "docker", *, tag: str | None = None):
        """Write a `docker load`-able tar (format='docker'), an OCI tar ('oci') or layout ('oci-dir')."""
        return provided("save")(self, path, format=format, tag=tag)

    def push(self, ref: str | None = None, **kw):
        """Push to a registry without going through an engine (digests are kept); `ref`
        defaults to the image's own tagged name (see `tag`)."""
        return provided("push")(self, ref, **kw)

    def run(self, command=None, **kw):
        """Run a container of this image with the Docker engine (see nbimages.run)."""
        return provided("run")(self, command, **kw)

    def __repr__(self) -> str:
        name = self.names[0] if self.names else self.source
        return (f"<Image {name} {dg.short(self.id)} {len(self.layers)} layers "
                f"{self.platform}>")

"""docker-archive: the tars `docker save` writes and `docker load` reads, both ways.

Two layouts exist (shared/research/oci-building.md §2.6):
- legacy (Docker <= 24): `manifest.json` + `<id>.json` config + `<v1id>/layer.tar`
  (uncompressed, sometimes gzip, sometimes a symlink to another layer's file); there is no
  distribution manifest, so one is synthesised (OCI, layer digest = diff_id for plain tars);
- Docker 25+: the same tar is also an OCI layout (`oci-layout`, `index.json`, `blobs/`),
  with `manifest.json` pointing into `blobs/`; the real manifest is used when present.

The writer produces the Docker 25 shape, so one tar is both `docker load`-able and an
OCI archive (skopeo, umoci after extraction, dive).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import ImageNotFound, InvalidImage, InvalidReference
from ..image import Image, Layer
from ..reference import Reference, is_reference
from . import canonical, compression, digest as dg, imageconfig, mediatypes as mt
from .archive import (BlobArchive, Entry, TarIndex, blob_entries, is_oci_archive, member_name,
                      oci_manifest, with_dirs)
from .descriptor import Descriptor, Platform, check_platform
from .layout import LAYOUT_FILE, LAYOUT_VERSION, REF_NAME, image_from_blobs
from .manifest import Index, Manifest, media_type_of

CONTAINERD_NAME = "io.containerd.image.name"


@dataclass
class ArchiveEntry:
    """One image listed in manifest.json."""

    config: str
    repo_tags: list[str]
    layers: list[str]
    raw: dict = field(default_factory=dict, repr=False)


class DockerArchive:
    """A `docker save` tar (either layout), read in place through member offsets."""

    def __init__(self, path: str | os.PathLike, tar: TarIndex | None = None):
        self.tar = tar or TarIndex(path)
        self.path = self.tar.path
        if not self.tar.has("manifest.json"):
            raise InvalidImage(f"{self.path} is a tar but not a docker-archive: it has no "
                               "manifest.json. An OCI archive opens as oci-archive:PATH.")
        doc = canonical.loads(self.tar.read("manifest.json"),
                              f"docker-archive manifest.json of {self.path}", expect=list)
        self.entries: list[ArchiveEntry] = []
        for item in doc:
            try:
                entry = ArchiveEntry(item["Config"], list(item.get("RepoTags") or []),
                                     list(item["Layers"] or []), item)
                if not all(isinstance(x, str) for x in [entry.config, *entry.repo_tags,
                                                        *entry.layers]):
                    raise TypeError
                self.entries.append(entry)
            except (KeyError, TypeError):
                raise InvalidImage(f"manifest.json in {self.path} has an entry without Config or "
                                   "Layers; the archive is damaged.") from None
        if not self.entries:
            raise ImageNotFound(f"the docker-archive {self.path} holds no image.")
        self.oci = BlobArchive(self.tar) if is_oci_archive(self.tar) else None

    def tags(self) -> list[str]:
        return [t for e in self.entries for t in e.repo_tags]

    def select(self, ref: str | None = None) -> ArchiveEntry:
        """The entry for `ref`: a RepoTag (normalised), `@N` (skopeo's index form) or an image
        ID (prefix); the only entry when ref is None."""
        if ref is None:
            if len(self.entries) == 1:
                return self.entries[0]
            raise ImageNotFound(f"{self.path} holds {len(self.entries)} images; name one as "
                                f"docker-archive:{self.path}:REF (tags: "
                                f"{', '.join(self.tags()) or 'none'}; or @0..@{len(self.entries) - 1}).")
        if ref.startswith("@") and ref[1:].isdigit():
            i = int(ref[1:])
            if i < len(self.entries):
                return self.entries[i]
            raise ImageNotFound(f"{self.path} holds {len(self.entries)} images; @{i} is past the "
                                "end (they are numbered from @0).")
        want = familiar(ref) if is_reference(ref) else None
        for e in self.entries:
            if want and any(familiar(t) == want for t in e.repo_tags):
                return e
        hexpart = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
        if re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
            for e in self.entries:
                if _config_hex(e.config).startswith(hexpart):
                    return e
        raise ImageNotFound(f"no image {ref!r} in {self.path} (tags there: "
                            f"{', '.join(self.tags()) or 'none'}). Use one of those, or @N.")

    def image(self, ref: str | None = None, platform: str | Platform | None = None, *,
              source: str | None = None):
        """Open one image of the archive as an `Image` (layers read in place)."""
        entry = self.select(ref)
        source = source or f"docker-archive:{self.path}"
        config_bytes = self.tar.read(entry.config)
        image_id = dg.of_bytes(config_bytes)
        expected = _config_hex(entry.config)
        if re.fullmatch(r"[0-9a-f]{64}", expected) and image_id != "sha256:" + expected:
            dg.check("sha256:" + expected, image_id, f"config {entry.config} in {self.path}")
        names = [familiar(t) for t in entry.repo_tags]
        if self.oci is not None:
            desc = self._oci_manifest_for(image_id)
            if desc is not None:
                img = image_from_blobs(self.oci.read_blob, self.oci.open_blob, desc, None,
                                       source=source, names=names)
                self._check_agree(entry, img)
                check_platform(img.platform, platform, source)
                return img
        return self._synthesised(entry, config_bytes, source, names, platform)

    def _check_agree(self, entry: ArchiveEntry, img) -> None:
        """manifest.json (what Docker before 25 loads) and index.json (what nbimages, skopeo
        and Docker 25 read) must name the same layer files, or the archive has two readings."""
        ours = [BlobArchive.blob_name(layer.digest) for layer in img.layers]
        theirs = [member_name(name) for name in entry.layers]
        if ours != theirs:
            diff = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b),
                        min(len(ours), len(theirs)))
            raise InvalidImage(
                f"{self.path} describes the image twice, differently: its manifest.json (what "
                f"`docker load` reads) and its index.json (the OCI manifest) disagree from "
                f"layer {diff} on ({theirs[diff] if diff < len(theirs) else 'nothing'} against "
                f"{ours[diff] if diff < len(ours) else 'nothing'}). nbimages refuses to pick one "
                "reading; the archive was crafted or damaged. Save the image again.")

    def _oci_manifest_for(self, image_id: str) -> Descriptor | None:
        """The manifest in the archive's OCI index whose config is `image_id`, if any."""
        assert self.oci is not None
        todo = list(self.oci.index().manifests)
        seen = 0
        while todo and seen < 256:
            desc = todo.pop(0)
            seen += 1
            if not self.oci.has_blob(desc.digest):
                continue
            raw = self.oci.read_blob(desc.digest)
            mtype = media_type_of(raw, desc.media_type or None)
            if mt.is_index(mtype):
                todo.extend(Index.parse(raw, mtype).manifests)
            elif mt.is_manifest(mtype):
                if Manifest.parse(raw, mtype).config.digest == image_id:
                    return Descriptor(mtype, desc.digest, desc.size, dict(desc.annotations))
        return None

    def _synthesised(self, entry: ArchiveEntry, config_bytes: bytes, source: str,
                     names: list[str], platform):
        """An Image for a legacy entry: an OCI manifest made up from the layer files."""

        config = imageconfig.parse(config_bytes)
        diff_ids = imageconfig.diff_ids(config)
        if len(diff_ids) != len(entry.layers):
            raise InvalidImage(f"the config in {self.path} lists {len(diff_ids)} diff_ids but "
                               f"manifest.json {len(entry.layers)} layers; the archive is damaged.")
        layers: list[Layer] = []
        for name, diff_id in zip(entry.layers, diff_ids):
            size = self.tar.size(name)
            kind = compression.sniff(self.tar.head(name, 4))
            opener = (lambda n=name: self.tar.open(n))
            if kind is None:
                # docker save writes the layer tar itself: its digest is the diff_id.
                named = _config_hex(name) if name.startswith("blobs/") else ""
                digest = f"sha256:{named}" if re.fullmatch(r"[0-9a-f]{64}", named) else diff_id
                desc = Descriptor(mt.OCI_LAYER, digest, size)
                layers.append(Layer(desc, diff_id, opener, open_tar=opener, tar_is_file=True))
            else:
                with self.tar.open(name) as f:
                    digest, _ = dg.of_stream(f)
                mtype = mt.OCI_LAYER_GZIP if kind == "gzip" else mt.OCI_LAYER_ZSTD
                layers.append(Layer(Descriptor(mtype, digest, size), diff_id, opener))
        config_desc = Descriptor(mt.OCI_CONFIG, dg.of_bytes(config_bytes), len(config_bytes))
        manifest = Manifest.build(config_desc, [layer.descriptor for layer in layers])
        img = Image(manifest, config_bytes, layers, source=source, names=names, _config=config)
        check_platform(img.platform, platform, source)
        return img


def _config_hex(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base[:-5] if base.endswith(".json") else base


# --------------------------------------------------------------------------- names


def familiar(ref: str) -> str:
    """Docker's short form used in RepoTags: `busybox:latest`, `127.0.0.1:5000/x/y:1`."""
    return Reference.parse(ref).familiar()


def _full_name(ref: str) -> str:
    """The fully qualified form containerd stores: `docker.io/library/busybox:latest`."""
    return str(Reference.parse(ref))


def repo_tag(ref: str) -> tuple[str, str]:
    """(familiar repository, tag) for a tag to write into an archive; digests are refused."""
    r = Reference.parse(ref)
    if r.digest:
        raise InvalidReference(f"{ref!r} names a digest, but an archive needs a plain tag like "
                               "'name:1' for `docker load` to name the image.")
    repo, _, tag = r.familiar().rpartition(":")
    return repo, tag


# --------------------------------------------------------------------------- writing

def docker_archive_entries(image, tag: str | None = None) -> list[Entry]:
    """Members of a Docker 25 style archive of `image`: an OCI layout plus manifest.json and
    repositories, so `docker load` (any version that reads manifest.json), skopeo's
    docker-archive and oci-archive transports, and dive all read it.

    Layers are kept as the image stores them (gzip or plain tar; docker load decompresses);
    the caller converts zstd first for engines older than 23.
    """
    manifest = oci_manifest(image)
    index_ann: dict[str, str] = {}
    repo_tags: list[str] = []
    repositories: dict[str, dict[str, str]] = {}
    if tag:
        repo, t = repo_tag(tag)
        repo_tags = [f"{repo}:{t}"]
        index_ann = {CONTAINERD_NAME: _full_name(tag), REF_NAME: t}
        top = manifest.layers[-1].digest if manifest.layers else manifest.config.digest
        repositories = {repo: {t: dg.parse(top)[1]}}
    index = Index.build([manifest.descriptor(**index_ann)])
    legacy = [{
        "Config": BlobArchive.blob_name(manifest.config.digest),
        "RepoTags": repo_tags,
        "Layers": [BlobArchive.blob_name(d.digest) for d in manifest.layers],
    }]
    files = blob_entries(image, manifest) + [
        Entry.file("index.json", index.raw),
        Entry.file("manifest.json", canonical.dumps(legacy)),
        Entry.file(LAYOUT_FILE, LAYOUT_VERSION),
    ]
    if repositories:
        files.append(Entry.file("repositories", canonical.dumps(repositories)))
    return with_dirs(files)

"""Manifests and indexes, OCI and Docker schema 2: parse, select a platform, build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidImage, PlatformNotFound
from . import canonical, mediatypes as mt
from .descriptor import Descriptor, Platform
from .digest import of_bytes


def media_type_of(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest-ish document, from its own field or its shape."""
    doc = canonical.loads(data, "manifest")
    mtype = canonical.field(doc, "mediaType", str, "manifest") or declared
    if mtype:
        return mtype
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "layers" in doc and "config" in doc:
        return mt.OCI_MANIFEST
    raise InvalidImage("the document is neither an image manifest nor an index.")


@dataclass
class Manifest:
    """An image manifest with the exact bytes it was read from (its digest covers those bytes)."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, declared: str | None = None) -> "Manifest":
        doc = canonical.loads(raw, "manifest")
        mtype = canonical.field(doc, "mediaType", str, "manifest") or declared or mt.OCI_MANIFEST
        if mt.is_index(mtype) or "manifests" in doc:
            raise InvalidImage("expected an image manifest but found an index.")
        if doc.get("schemaVersion") != 2:
            raise InvalidImage(f"manifest schemaVersion {doc.get('schemaVersion')!r} is not "
                               "supported; only schema 2 (OCI and Docker v2.2) is read.")
        if not mt.is_manifest(mtype):
            raise InvalidImage(f"unknown manifest media type {mtype!r}: nbimages reads "
                               f"{mt.OCI_MANIFEST} and {mt.DOCKER_MANIFEST}.")
        try:
            return cls(raw, mtype, Descriptor.from_dict(doc["config"]),
                       [Descriptor.from_dict(d) for d in canonical.field(doc, "layers", list,
                                                                         "manifest", [])],
                       _annotations(doc, "manifest"))
        except KeyError as e:
            raise InvalidImage(f"the manifest has no {e.args[0]!r} field.") from None

    @staticmethod
    def build(config: Descriptor, layers: list[Descriptor], *, docker: bool = False,
              annotations: dict[str, str] | None = None) -> "Manifest":
        mtype = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mtype, "config": config.to_dict(),
                               "layers": [d.to_dict() for d in layers]}
        if annotations and not docker:
            doc["annotations"] = dict(annotations)
        return Manifest(canonical.dumps(doc), mtype, config, list(layers), dict(annotations or {}))

    @property
    def digest(self) -> str:
        return of_bytes(self.raw)

    def descriptor(self, **annotations: str) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw), annotations)


@dataclass
class Index:
    raw: bytes
    media_type: str
    manifests: list[Descriptor]
    annotations: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes, declared: str | None = None) -> "Index":
        doc = canonical.loads(raw, "index")
        mtype = canonical.field(doc, "mediaType", str, "index") or declared or mt.OCI_INDEX
        if "manifests" not in doc:
            raise InvalidImage("expected an index / manifest list but found no 'manifests'.")
        return cls(raw, mtype, [Descriptor.from_dict(d)
                                for d in canonical.field(doc, "manifests", list, "index", [])],
                   _annotations(doc, "index"))

    @staticmethod
    def build(manifests: list[Descriptor], *, annotations: dict[str, str] | None = None) -> "Index":
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                               "manifests": [d.to_dict() for d in manifests]}
        if annotations:
            doc["annotations"] = dict(annotations)
        return Index(canonical.dumps(doc), mt.OCI_INDEX, list(manifests), dict(annotations or {}))

    def select(self, platform: "str | Platform | None" = None) -> Descriptor:
        """The first image manifest whose platform matches (image-index.md: first match wins).

        Entries without a platform count as a match only when they are the sole image entry.
        Attestation manifests (`vnd.docker.reference.type`) are never selected.
        """
        want = Platform.parse(platform)
        images = [d for d in self.manifests
                  if "vnd.docker.reference.type" not in d.annotations
                  and (mt.is_manifest(d.media_type) or mt.is_index(d.media_type))]
        for d in images:
            if d.platform and want.matches(d.platform):
                return d
        if len(images) == 1 and images[0].platform is None:
            return images[0]
        have = ", ".join(str(d.platform) for d in images if d.platform) or "none listed"
        raise PlatformNotFound(f"this image has no variant for platform {want} (it has: {have}). "
                               "Pass platform= one of those, e.g. platform='linux/amd64'.")


def _annotations(doc: dict, what: str) -> dict[str, str]:
    ann = canonical.field(doc, "annotations", dict, what, {})
    if not all(isinstance(v, str) for v in ann.values()):
        raise InvalidImage(f"the {what}'s annotations are not all strings; the image is damaged.")
    return dict(ann)

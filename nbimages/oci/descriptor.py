"""Descriptors and platforms (image-spec descriptor.md and image-index.md)."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidImage, InvalidPlatform, PlatformNotFound
from .digest import parse as dg_parse


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: "str | Platform | None") -> "Platform":
        """`linux/arm64/v8`, `linux/amd64`, `arm64` (os linux); None is the host's platform."""
        if isinstance(text, Platform):
            return text
        if not text:
            return cls.host()
        parts = text.strip().split("/")
        if len(parts) == 1:
            parts = ["linux", parts[0]]
        if len(parts) > 3 or not all(parts):
            raise InvalidPlatform(f"{text!r} is not a platform: write it as os/arch[/variant], "
                             "for example linux/amd64 or linux/arm64/v8.")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> "Platform":
        machine = _platform.machine().lower()
        arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
                "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
        variant = {"armv7l": "v7", "armv6l": "v6"}.get(machine)
        return cls("linux", arch, variant)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Platform | None":
        if not d:
            return None
        if not isinstance(d, dict):
            raise InvalidImage(f"malformed platform {d!r}: it should be an object with os and "
                               "architecture.")
        values = [d.get(k) for k in ("os", "architecture", "variant", "os.version")]
        if not all(v is None or isinstance(v, str) for v in values):
            raise InvalidImage(f"malformed platform {d!r}: its fields should be strings.")
        return cls(values[0] or "", values[1] or "", values[2], values[3])

    def to_dict(self) -> dict:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        return d

    def matches(self, other: "Platform") -> bool:
        """True if `other` (from an index) satisfies this wanted platform.

        A wanted variant must match; a missing variant accepts any (arm64 entries often omit v8).
        """
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant and other.variant and self.variant != other.variant:
            return False
        return True

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def check_platform(have: Platform, want: "str | Platform | None", source: str) -> None:
    """An image for `have` (its config) must satisfy an explicit `want`: a single-platform
    source honours platform= by refusing a mismatch (a malformed one is InvalidPlatform)."""
    if want is None:
        return
    want = Platform.parse(want)
    if not want.matches(have):
        raise PlatformNotFound(f"{source} holds an image for {have}, not {want}. Drop "
                               f"platform= (--platform) or ask for '{have}'.")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = field(default=None, compare=False, hash=False)
    urls: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @classmethod
    def from_dict(cls, d: Any) -> "Descriptor":
        bad = InvalidImage(f"malformed descriptor {d!r}: it needs mediaType and digest strings, "
                           "a size of 0 or more, and string annotations.")
        if not isinstance(d, dict):
            raise bad
        media_type, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
        annotations = d.get("annotations") or {}
        urls = d.get("urls") or ()
        if not (isinstance(media_type, str) and isinstance(digest, str)
                and isinstance(size, int) and not isinstance(size, bool) and size >= 0
                and isinstance(annotations, dict)
                and all(isinstance(v, str) for v in annotations.values())
                and isinstance(urls, (list, tuple)) and all(isinstance(u, str) for u in urls)):
            raise bad
        dg_parse(digest)
        return cls(media_type, digest, size, dict(annotations),
                   Platform.from_dict(d.get("platform")), tuple(urls))

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_dict()
        if self.urls:
            d["urls"] = list(self.urls)
        return d

    def with_annotations(self, **extra: str) -> "Descriptor":
        return Descriptor(self.media_type, self.digest, self.size, {**self.annotations, **extra},
                          self.platform, self.urls)

"""Source and destination strings: skopeo's transport names, and auto-detection for bare paths and references.

`docker-daemon:REF`, `docker-archive:PATH[:REF]`, `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`,
`docker://REF`, `store:NAME`. A bare string is a path if one exists (or it plainly names a
tar file), else an image reference. `name:tag` and `localhost:5000/x` are references, not
transports: only the known names, a few well-known lookalikes (`containers-storage:`, `dir:`
...) and near-misses of known names (`docker-deamon:`) are read as transports.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass

from ..errors import InvalidReference, UnknownTransport
from ..reference import is_reference

TRANSPORTS: dict[str, str] = {
    "docker-daemon": "docker-daemon:REF (an image in the Docker engine)",
    "docker-archive": "docker-archive:PATH[:REF] (a `docker save` tar)",
    "oci": "oci:DIR[:TAG] (an OCI image layout directory)",
    "oci-archive": "oci-archive:PATH[:TAG] (an OCI image layout as a tar)",
    "docker": "docker://REF (a registry)",
    "store": "store:NAME (the local nbimages store)",
}

# Transports of other tools that someone may well type here; never valid image names in practice.
LOOKALIKES = frozenset({
    "containers-storage", "dir", "ostree", "sif", "tarball", "oci-dir", "oci-layout",
    "docker-image", "docker-save", "daemon", "dockerd", "podman", "file", "http", "https",
    "archive", "layout",
})

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".oci")


@dataclass(frozen=True)
class Source:
    """A parsed source: `transport` is one of TRANSPORTS or 'auto'; `target` is the rest."""

    transport: str
    target: str

    def __str__(self) -> str:
        if self.transport == "auto":
            return self.target
        sep = "://" if self.transport == "docker" else ":"
        return f"{self.transport}{sep}{self.target}"


def _known_list() -> str:
    return "; ".join(TRANSPORTS.values())


def _unknown(prefix: str, text: str) -> UnknownTransport:
    close = difflib.get_close_matches(prefix, list(TRANSPORTS), n=1, cutoff=0.7)
    hint = f" Did you mean {close[0]}:?" if close else ""
    return UnknownTransport(f"{text!r} starts with the transport {prefix + ':'!r}, which nbimages "
                            f"does not know.{hint} Known: {_known_list()}. A bare path or image "
                            "reference works too and is detected.")


def _is_reference(text: str) -> bool:
    return is_reference(text) and "://" not in text


def parse_source(text: str) -> Source:
    """Split `text` into a transport and its target; UnknownTransport for unknown prefixes."""
    if not isinstance(text, str):
        raise InvalidReference(f"a source must be a string or an Image, not {type(text).__name__}.")
    text = text.strip()
    if not text:
        raise InvalidReference("the source is empty: give an image reference, a path or "
                               f"transport:target ({_known_list()}).")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", text)
    if m:
        scheme = m.group(1).lower()
        if scheme == "docker":
            return Source("docker", m.group(2))
        raise _unknown(scheme, text)
    m = re.match(r"^([a-z][a-z0-9-]*):(.*)$", text)
    if m:
        prefix, rest = m.group(1), m.group(2)
        if prefix in TRANSPORTS and prefix != "docker":
            return Source(prefix, rest)
        if prefix == "docker" and not _is_reference(text):
            raise UnknownTransport(f"{text!r}: the registry transport is written docker://REF "
                                   f"(two slashes), e.g. docker://{rest}.")
        if not os.path.exists(text):
            near = difflib.get_close_matches(prefix, [t for t in TRANSPORTS if t != "docker"],
                                             n=1, cutoff=0.8)
            if prefix in LOOKALIKES or near:
                raise _unknown(prefix, text)
            if not _is_reference(text):
                # `word:rest` that is neither a file nor a reference: a transport we lack.
                raise _unknown(prefix, text)
    return Source("auto", text)


def parse_destination(text: str) -> Source:
    """A destination string, read by the same parser as sources; it must name its transport
    (writing has no auto-detection: a bare name could mean a file or a registry)."""
    dst = parse_source(text)
    if dst.transport == "auto":
        raise UnknownTransport(f"{text!r} names no transport; write docker://REF, store:NAME, "
                               "docker-archive:FILE[:TAG], oci-archive:FILE[:TAG], oci:DIR[:TAG] or "
                               "docker-daemon:NAME.")
    return dst


def _looks_like_path(text: str) -> bool:
    return (text.startswith(("/", "./", "../", "~")) or os.sep in text and not _is_reference(text)
            or text.lower().endswith(TAR_SUFFIXES))


def looks_like_path(text: str) -> bool:
    """True when a bare string is plainly meant as a file or directory, not a reference."""
    return _looks_like_path(text)


def split_path_ref(target: str) -> tuple[str, str | None]:
    """`PATH[:REF]` -> (PATH, REF): the longest prefix that exists is the path (paths may hold
    colons, references do too: `docker-archive:a.tar:busybox:1`)."""
    def exists(p: str) -> bool:
        return os.path.exists(os.path.expanduser(p))

    if exists(target):
        return target, None
    positions = [i for i, c in enumerate(target) if c == ":"]
    for i in reversed(positions):
        if exists(target[:i]):
            return target[:i], target[i + 1:] or None
    if positions:
        # Nothing exists: report the part before the first colon as the missing path.
        return target[:positions[0]], target[positions[0] + 1:] or None
    return target, None

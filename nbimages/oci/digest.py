"""Digests (`sha256:<hex>`): parse, compute while streaming, verify before content becomes visible."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from ..errors import DigestMismatch, InvalidImage

_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")
_LENGTHS = {"sha256": 64, "sha512": 128}
CHUNK = 1 << 20


def parse(digest: str) -> tuple[str, str]:
    """Split `alg:hex`, checking the algorithm and length; InvalidImage if malformed."""
    m = _DIGEST.match(digest or "")
    if not m or len(m.group(2)) != _LENGTHS[m.group(1)]:
        raise InvalidImage(f"{digest!r} is not a valid digest: expected 'sha256:' followed by 64 "
                           "lowercase hex digits.")
    return m.group(1), m.group(2)


def is_digest(text: str) -> bool:
    try:
        parse(text)
    except InvalidImage:
        return False
    return True


def hasher(digest: str | None = None):
    """A hashlib object for the algorithm of `digest` (sha256 when None)."""
    alg = parse(digest)[0] if digest else "sha256"
    return hashlib.new(alg)


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def of_stream(stream: BinaryIO, alg: str = "sha256") -> tuple[str, int]:
    """Digest and length of everything left in `stream`, read in 1 MiB chunks."""
    h = hashlib.new(alg)
    n = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return f"{alg}:{h.hexdigest()}", n




def short(digest: str, n: int = 12) -> str:
    """`sha256:abcdef…` → `abcdef012345` for display."""
    return digest.split(":", 1)[-1][:n]


def check(expected: str, actual: str, what: str = "content") -> None:
    if expected != actual:
        raise DigestMismatch(
            f"{what} hashed to {actual} but was announced as {expected}: it is corrupt or was "
            "changed in transit, so it was not stored. Fetch it again; if it keeps failing the "
            "source itself holds a damaged copy.")


class HashingReader:
    """Wraps a readable stream; hashes and counts what passes through `read()`."""

    def __init__(self, stream: BinaryIO, alg: str = "sha256"):
        self._stream = stream
        self._hash = hashlib.new(alg)
        self._alg = alg
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._hash.update(data)
        self.count += len(data)
        return data

    @property
    def digest(self) -> str:
        return f"{self._alg}:{self._hash.hexdigest()}"

    def close(self) -> None:
        self._stream.close()

"""Digests (`sha256:<hex>`): parse, compute while streaming, verify before content becomes visible."""

from __future__ import annotations

import hashlib
import io
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
            "source itself holds a damaged copy.", expected=expected, actual=actual, what=what)


class VerifyingReader(io.RawIOBase):
    """A read-only stream over `stream` that hashes and counts as it is read; at end of stream
    it checks the byte count against `size` (when given) and the digest against `digest`, and
    raises DigestMismatch on a difference (also when more bytes than `size` arrive).

    Reaching `size` bytes counts as the end (readers that take exactly `size` bytes never ask
    for the empty read after them). Not seekable: skipping bytes would skip the check.
    """

    def __init__(self, stream: BinaryIO, digest: str, size: int | None = None, *, what: str = "blob"):
        super().__init__()
        self._stream = stream
        self.expected = digest
        self.expected_size = size
        self.what = what
        self._alg = parse(digest)[0]
        self._hash = hashlib.new(self._alg)
        self.count = 0
        self.verified = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n if n is not None and n >= 0 else -1)
        self._take(data, n)
        return data

    def readinto(self, b) -> int:
        data = self._stream.read(len(b))
        b[:len(data)] = data
        self._take(data, len(b))
        return len(data)

    def _take(self, data: bytes, asked: int | None) -> None:
        if self.verified and data:
            self._fail(self.count + len(data))
        self._hash.update(data)
        self.count += len(data)
        ended = not data and asked != 0
        if self.expected_size is not None and self.count > self.expected_size:
            self._fail(self.count)
        if not self.verified and (ended or self.count == self.expected_size):
            self.verify()

    def verify(self) -> None:
        """Check what was read so far as the whole content (raises DigestMismatch)."""
        actual = f"{self._alg}:{self._hash.hexdigest()}"
        if actual != self.expected or (self.expected_size is not None
                                       and self.count != self.expected_size):
            self._fail(self.count, actual)
        self.verified = True

    def _fail(self, count: int, actual: str | None = None) -> None:
        self.verified = True  # report once
        size = "" if self.expected_size is None else f" of the {self.expected_size:,} announced"
        raise DigestMismatch(
            f"{self.what} does not match its digest {self.expected}: {count:,} bytes{size} "
            f"hashed to {actual or 'something else'}. It is damaged; fetch it again.",
            expected=self.expected, actual=actual, what=self.what,
            expected_size=self.expected_size, actual_size=count)

    def close(self) -> None:
        if not self.closed:
            try:
                self._stream.close()
            finally:
                super().close()


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

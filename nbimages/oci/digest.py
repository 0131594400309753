"""Digests (`sha256:<hex>`): parse, compute while streaming, verify before content becomes visible."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from ..errors import DigestMismatch, InvalidImage

_DIGEST = re.compile(r"^(sha256|sha512):([a-f0-9]+)$")
_LENGTHS = {"sha256": 64, "sha512": 128}
CHUNK = 1 << 20
DRAIN_CHUNK = 4 << 20


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


def of_bytes(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


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


class VerifyingReader:
    """A read-only stream over `stream` that hashes and counts as it is read; at end of stream
    it checks the byte count against `size` (when given) and the digest against `digest`, and
    raises DigestMismatch on a difference (also when more bytes than `size` arrive)."""

    def __init__(self, stream: BinaryIO, digest: str, size: int | None = None, *,
                 what: str = "blob"):
        self._stream = stream
        self.expected = digest
        self.expected_size = size
        self.what = what
        self._alg = parse(digest)[0]
        self._hash = hashlib.new(self._alg)
        self.count = 0
        self.verified = False

    # io.BufferedReader and friends probe these
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return getattr(self._stream, "closed", False)

    def _got(self, data) -> None:
        if data:
            self._hash.update(data)
            self.count += len(data)
            self._fail_if_longer(self.count)
            if self.count == self.expected_size and not self.verified:
                # Reaching the announced size is the end: readers that take exactly `size`
                # bytes (a gzip member, a tar) never ask for the empty read after it.
                self._finish()
        elif not self.verified:
            self._finish()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data = self._stream.read(n) if n else b""
        if n:
            self._got(data or b"")
        return data or b""

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        if not len(view):
            return 0
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            got = readinto(view) or 0
            self._got(view[:got])
            return got
        data = self._stream.read(len(view)) or b""
        view[:len(data)] = data
        self._got(data)
        return len(data)

    def readall(self) -> bytes:
        return self.read()

    def drain(self) -> None:
        """Read (and hash) whatever is left, so the end-of-stream check runs: into one buffer
        of DRAIN_CHUNK, so a hash running in a thread of its own needs the GIL rarely (each
        read and each update give it up and take it back)."""
        buffer = bytearray(DRAIN_CHUNK)
        while self.readinto(buffer):
            pass

    @property
    def algorithm(self) -> str:
        return self._alg

    @property
    def digest(self) -> str:
        return f"{self._alg}:{self._hash.hexdigest()}"

    def _finish(self) -> None:
        self.settle(self.digest, self.count)

    def settle(self, actual: str, count: int) -> None:
        """The end-of-stream check for content hashed elsewhere (`actual` over `count`
        bytes, of which at most one past the announced size were read): the same errors."""
        self.count = count
        self._fail_if_longer(count)
        if self.expected_size is not None and count != self.expected_size:
            self._fail(f"{self.what} is {count:,} bytes but was announced with "
                       f"{self.expected_size:,}")
        if actual != self.expected:
            self._fail(f"{self.what} hashed to {actual} but was announced as {self.expected}",
                       actual)
        self.verified = True

    def _fail_if_longer(self, count: int) -> None:
        if self.expected_size is not None and count > self.expected_size:
            self._fail(f"{self.what} is longer than the {self.expected_size:,} bytes "
                       f"announced for it (at least {count:,} arrived)")

    def _fail(self, why: str, actual: str | None = None) -> None:
        raise DigestMismatch(
            f"{why}: it is corrupt, was changed, or its source describes other content than it "
            "holds, so it was not used. Fetch or save it again from a source you trust.",
            expected=self.expected, actual=actual, what=self.what,
            expected_size=self.expected_size, actual_size=self.count)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "VerifyingReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

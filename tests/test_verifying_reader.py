"""VerifyingReader, the stream both the store (issue 10) and every source (issue 17) verify with."""

from __future__ import annotations

import io

import pytest

from nbimages.errors import DigestMismatch
from nbimages.oci import digest as dg

DATA = b"layer bytes " * 1000
DIGEST = dg.of_bytes(DATA)


def read_all(r, use_readinto: bool) -> bytes:
    out = bytearray()
    buf = bytearray(333)
    while True:
        if use_readinto:
            n = r.readinto(buf)
            chunk = bytes(buf[:n])
        else:
            chunk = r.read(333)
        if not chunk:
            return bytes(out)
        out += chunk


@pytest.mark.parametrize("use_readinto", [False, True])
def test_matching_content_reads_through_and_is_marked_verified(use_readinto):
    r = dg.VerifyingReader(io.BytesIO(DATA), DIGEST, len(DATA))
    assert read_all(r, use_readinto) == DATA
    assert r.verified and r.digest == DIGEST and r.count == len(DATA)


@pytest.mark.parametrize("use_readinto", [False, True])
def test_other_content_raises_at_the_end_with_both_digests(use_readinto):
    other = DATA[:-1] + b"!"
    r = dg.VerifyingReader(io.BytesIO(other), DIGEST, len(DATA), what="blob x")
    with pytest.raises(DigestMismatch) as e:
        read_all(r, use_readinto)
    assert (e.value.expected, e.value.actual, e.value.what) == (DIGEST, dg.of_bytes(other), "blob x")
    assert e.value.expected_size == e.value.actual_size == len(DATA)


def test_a_short_stream_is_a_size_mismatch():
    r = dg.VerifyingReader(io.BytesIO(DATA[:100]), DIGEST, len(DATA))
    with pytest.raises(DigestMismatch, match="is 100 bytes but was announced with 12,000"):
        r.read()


def test_more_bytes_than_announced_fail_as_soon_as_they_arrive():
    r = dg.VerifyingReader(io.BytesIO(DATA + b"x" * 5000), DIGEST, len(DATA))
    r.read(len(DATA))  # exactly the announced bytes: no verdict yet
    with pytest.raises(DigestMismatch, match="longer than the 12,000 bytes") as e:
        r.read(10)
    assert e.value.actual_size > e.value.expected_size


def test_without_a_size_only_the_digest_counts():
    r = dg.VerifyingReader(io.BytesIO(DATA), DIGEST)
    r.drain()
    assert r.verified and r.count == len(DATA)

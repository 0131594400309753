"""The deterministic layer tar writer and the pinned compressor (issue 3)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

import pytest

from nbimages.errors import BuildError, UnsafePath
from nbimages.oci import compressor as cz
from nbimages.oci.tarwriter import (BLOCK, DIR, END_OF_ARCHIVE, Entry, LayerTree,
                                    encode_header, iter_tar, normalize_path, write_tar)


def tar_bytes(tree: LayerTree, mtime: int = 0) -> bytes:
    out = io.BytesIO()
    write_tar(tree.entries(), out, mtime)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmembers()


def test_entries_sorted_by_component_with_parents_first_and_whiteouts_before_siblings():
    t = LayerTree()
    t.add_bytes("/b/z.txt", b"z")
    t.add_bytes("/a-b/x", b"x")      # '-' (0x2d) sorts before '/' would in a plain string sort
    t.add_bytes("/a/c/d.txt", b"d")
    t.add_whiteout("/a/zz")
    t.add_opaque("/a")
    t.add_bytes("/a/b.txt", b"b")
    names = [m.name for m in members(tar_bytes(t))]
    assert names == ["a", "a/.wh..wh..opq", "a/.wh.zz", "a/b.txt", "a/c", "a/c/d.txt",
                     "a-b", "a-b/x", "b", "b/z.txt"]


def test_every_parent_directory_is_emitted_as_root_0755():
    t = LayerTree()
    t.add_bytes("/usr/local/lib/x.py", b"print(1)\n")
    ms = {m.name: m for m in members(tar_bytes(t))}
    for d in ("usr", "usr/local", "usr/local/lib"):
        assert ms[d].isdir() and ms[d].mode == 0o755 and ms[d].uid == 0 and ms[d].uname == ""


def test_parent_metadata_can_come_from_the_lower_layers():
    t = LayerTree()
    t.add_bytes("/tmp/x", b"x")
    entries = t.entries(parent_meta=lambda p: (0o1777, 0, 0) if p == "tmp" else None)
    assert entries[0] == Entry("tmp", DIR, 0o1777)


def test_header_fields_are_normalised_mtime_ids_names():
    t = LayerTree()
    t.add_bytes("/f", b"data", 0o600)
    [m] = [m for m in members(tar_bytes(t, mtime=1700000000))]
    assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (1700000000, 0, 0, "", "", 0o600)
    assert m.pax_headers == {}


def test_source_date_epoch_sets_mtime(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    t = LayerTree()
    t.add_bytes("/f", b"x")
    data = b"".join(iter_tar(t.entries()))
    assert {m.mtime for m in members(data)} == {86400}


def test_bad_source_date_epoch_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        b"".join(iter_tar([]))


def test_ustar_header_matches_pythons_own_encoding_for_a_plain_entry():
    ti = tarfile.TarInfo("app/main.py")
    ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = 12, 0o644, 0, "", ""
    assert encode_header(Entry("app/main.py", size=12), 0) == ti.tobuf(tarfile.USTAR_FORMAT)


def test_pax_header_only_for_long_or_non_ascii_names():
    t = LayerTree()
    long = "/d/" + "x" * 150
    t.add_bytes(long, b"1")
    t.add_bytes("/d/caf\u00e9.txt", b"2")
    t.add_bytes("/d/short.txt", b"3")
    t.add_symlink("/d/link", "/" + "y" * 120)
    ms = {m.name: m for m in members(tar_bytes(t))}
    assert ms[long[1:]].pax_headers == {"path": long[1:]}
    assert ms["d/caf\u00e9.txt"].pax_headers == {"path": "d/caf\u00e9.txt"}
    assert ms["d/short.txt"].pax_headers == {}
    assert ms["d/link"].linkname == "/" + "y" * 120
    assert ms["d"].pax_headers == {}


def test_archive_ends_with_exactly_two_zero_blocks():
    t = LayerTree()
    t.add_bytes("/a", b"abc")
    data = tar_bytes(t)
    assert data.endswith(END_OF_ARCHIVE)
    assert len(data) == BLOCK * 2 + len(END_OF_ARCHIVE)  # header + one data block + end


def test_host_files_get_normalised_modes_and_lose_special_bits(tmp_path):
    (tmp_path / "private.txt").write_text("p")
    os.chmod(tmp_path / "private.txt", 0o600)
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "tool", 0o4700)   # setuid, owner-only: becomes plain 0755
    (tmp_path / "sub").mkdir()
    os.chmod(tmp_path / "sub", 0o700)
    os.symlink("private.txt", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    t = LayerTree()
    t.add_host_tree("/in", tmp_path)
    ms = {m.name: m for m in members(tar_bytes(t))}
    assert ms["in/private.txt"].mode == 0o644
    assert ms["in/tool"].mode == 0o755
    assert ms["in/sub"].mode == 0o755
    assert ms["in/link"].issym() and ms["in/link"].mode == 0o777
    assert "in/fifo" not in ms
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in ms.values())


def test_same_tree_from_different_umask_and_mtimes_gives_identical_bytes(tmp_path):
    trees = []
    for n, umask in ((1, 0o022), (2, 0o077)):
        old = os.umask(umask)
        try:
            root = tmp_path / f"r{n}"
            (root / "pkg").mkdir(parents=True)
            (root / "pkg" / "m.py").write_text("x = 1\n")
            (root / "run.sh").write_text("echo\n")
            os.chmod(root / "run.sh", 0o755 & ~umask)
            os.utime(root / "pkg" / "m.py", (n * 1000, n * 1000))
        finally:
            os.umask(old)
        t = LayerTree()
        t.add_host_tree("/app", root)
        trees.append(tar_bytes(t))
    assert trees[0] == trees[1]


def test_path_with_dotdot_is_refused():
    with pytest.raises(UnsafePath):
        normalize_path("/app/../../etc/passwd")


def test_file_and_directory_at_the_same_path_is_an_error():
    t = LayerTree()
    t.add_bytes("/a", b"x")
    with pytest.raises(BuildError, match="directory"):
        t.add_bytes("/a/b", b"y")


def test_file_that_changes_size_while_read_is_an_error(tmp_path):
    f = tmp_path / "grows"
    f.write_bytes(b"12")
    t = LayerTree()
    t.add_host_file("/g", f)
    f.write_bytes(b"123456")
    with pytest.raises(BuildError, match="changed size"):
        b"".join(iter_tar(t.entries()))


# ---- compression

def _compress(comp, data: bytes, cuts: list[int]) -> tuple[bytes, cz.LayerDigests]:
    out = bytearray()
    pipe = cz.LayerPipeline(comp, out.extend)
    i = 0
    for n in cuts:
        pipe.write(data[i:i + n])
        i += n
    pipe.write(data[i:])
    result = pipe.close()
    return bytes(out), result


@pytest.fixture(scope="module")
def sample() -> bytes:
    t = LayerTree()
    for i in range(300):
        t.add_bytes(f"/d{i % 7}/f{i}.txt", (f"line {i}\n" * (i * 37 % 900)).encode())
    t.add_bytes("/rand", os.urandom(3 << 20))
    return tar_bytes(t)


@pytest.mark.parametrize("name", ["gzip", "zlib", "zstd", "none"])
def test_pipeline_digests_and_roundtrip(sample, name):
    comp = cz.get(name)
    blob, res = _compress(comp, sample, [1 << 20])
    assert res.diff_id == "sha256:" + hashlib.sha256(sample).hexdigest()
    assert res.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (res.size, res.tar_size) == (len(blob), len(sample))
    from nbimages.oci.compression import decompressing
    assert decompressing(io.BytesIO(blob), None if name == "none" else comp.algorithm).read() \
        == sample


def test_gzip_header_is_fixed_mtime0_xfl0_os255_no_name(sample):
    blob, _ = _compress(cz.DEFAULT, sample, [])
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert gzip.decompress(blob) == sample


@pytest.mark.parametrize("name", ["gzip", "zlib", "zstd"])
def test_compressed_bytes_do_not_depend_on_how_the_tar_is_cut(sample, name):
    comp = cz.get(name)
    a, _ = _compress(comp, sample, [512] * 50 + [70000, 3, 1 << 20])
    b, _ = _compress(comp, sample, [1 << 22])
    assert a == b


def test_compressor_ident_names_library_version_and_level():
    assert cz.DEFAULT.ident.startswith("gzip isal-") and cz.DEFAULT.ident.endswith("level 2")
    assert cz.get("zlib:9").ident.endswith("level 9")
    with pytest.raises(BuildError, match="unknown compression"):
        cz.get("brotli")

"""The streaming tar header reader, against tars written by Python's tarfile and GNU tar."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from nbimages.errors import InvalidImage
from nbimages.oci.fileslice import open_slice
from nbimages.oci.tarscan import TarEntry, escapes_root, records, scan


def _tar(entries, fmt=tarfile.GNU_FORMAT, **kw) -> bytes:
    """A tar in memory from (TarInfo, data) pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name, kind=tarfile.REGTYPE, size=0, **kw) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def _file(name, data: bytes, **kw):
    return _info(name, size=len(data), **kw), data


class OneWay(io.RawIOBase):
    """A stream that cannot seek, like a pipe."""

    def __init__(self, data: bytes):
        self._b = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        chunk = self._b.read(min(len(b), 1000))  # short reads, as pipes give
        b[:len(chunk)] = chunk
        return len(chunk)


def test_reads_every_kind_with_its_metadata():
    data = _tar([
        (_info("dir/", tarfile.DIRTYPE, mode=0o755, uid=1000, gid=100, mtime=1_700_000_000), None),
        _file("dir/file", b"hello", mode=0o4755, uid=1, gid=2, mtime=5),
        (_info("dir/sym", tarfile.SYMTYPE, linkname="file"), None),
        (_info("dir/hard", tarfile.LNKTYPE, linkname="dir/file"), None),
        (_info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (_info("dev/sda", tarfile.BLKTYPE), None),
        (_info("run/fifo", tarfile.FIFOTYPE), None),
    ])
    got = list(scan(io.BytesIO(data)))
    assert [(e.path, e.kind) for e in got] == [
        ("dir", "dir"), ("dir/file", "file"), ("dir/sym", "symlink"), ("dir/hard", "hardlink"),
        ("dev/null", "char"), ("dev/sda", "block"), ("run/fifo", "fifo")]
    d, f = got[0], got[1]
    assert (d.mode, d.uid, d.gid, d.mtime) == (0o755, 1000, 100, 1_700_000_000)
    assert (f.size, f.mode, f.uid, f.gid, f.mtime) == (5, 0o4755, 1, 2, 5)
    assert got[2].linkname == "file" and got[3].linkname == "dir/file"
    assert all(e.data is None and e.unsafe == "" for e in got)


def test_paths_lose_leading_dot_slash_and_trailing_slash():
    data = _tar([(_info("./", tarfile.DIRTYPE), None), (_info("./a/b/", tarfile.DIRTYPE), None),
                 _file("./a/b/c", b"x"), _file("a//d/./e", b"y")])
    assert [e.path for e in scan(io.BytesIO(data))] == ["", "a/b", "a/b/c", "a/d/e"]


def test_gnu_long_names_and_long_link_targets():
    long_dir = "d" * 120
    name = f"{long_dir}/{'f' * 150}"
    target = f"{long_dir}/{'t' * 140}"
    data = _tar([_file(name, b"abc"), (_info(f"{long_dir}/link", tarfile.SYMTYPE,
                                             linkname=target), None)], fmt=tarfile.GNU_FORMAT)
    got = list(scan(io.BytesIO(data)))
    assert [(e.path, e.size, e.linkname) for e in got] == [(name, 3, ""),
                                                          (f"{long_dir}/link", 0, target)]


def test_pax_records_set_path_linkpath_and_ids():
    name = "ünïcödé/" + "n" * 200
    data = _tar([_file(name, b"12345", uid=3_000_000, gid=4_000_000, mtime=1.5),
                 (_info("l", tarfile.SYMTYPE, linkname="x" * 300), None)],
                fmt=tarfile.PAX_FORMAT)
    f, link = scan(io.BytesIO(data))
    assert (f.path, f.size, f.uid, f.gid, f.mtime) == (name, 5, 3_000_000, 4_000_000, 1)
    assert link.linkname == "x" * 300


def test_pax_size_overrides_the_header_size():
    ti = _info("big", size=5, pax_headers={"size": "5"})
    raw = bytearray(_tar([(ti, b"abcde"), _file("after", b"z")], fmt=tarfile.PAX_FORMAT))
    # the member header follows the PAX header and its 512-byte record block
    hdr = 1024
    assert raw[hdr:hdr + 3] == b"big"
    raw[hdr + 124:hdr + 136] = b"00000000000\0"  # the ustar field now says 0
    raw[hdr + 148:hdr + 156] = b"        "
    raw[hdr + 148:hdr + 156] = b"%06o\0 " % sum(raw[hdr:hdr + 512])
    got = list(scan(io.BytesIO(bytes(raw)), want=lambda p: True))
    assert [(e.path, e.size, e.data) for e in got] == [("big", 5, b"abcde"), ("after", 1, b"z")]


def test_pax_global_headers_are_skipped():
    data = _tar([_file("a", b"1")], fmt=tarfile.PAX_FORMAT, pax_headers={"comment": "hi"})
    assert data[156:157] == b"g"
    assert [e.path for e in scan(io.BytesIO(data))] == ["a"]


def test_base256_numbers_from_gnu_format():
    data = _tar([_file("a", b"1", uid=0o7777777 + 5, gid=2**33)], fmt=tarfile.GNU_FORMAT)
    (e,) = scan(io.BytesIO(data))
    assert (e.uid, e.gid) == (0o7777777 + 5, 2**33)


def test_data_only_for_wanted_files_and_within_the_limit():
    data = _tar([_file("var/lib/dpkg/status", b"Package: x\n"), _file("big", b"b" * 5000),
                 _file("other", b"o")])
    got = {e.path: e.data for e in scan(io.BytesIO(data),
                                        want=lambda p: p != "other", max_data=4096)}
    assert got == {"var/lib/dpkg/status": b"Package: x\n", "big": None, "other": None}


def test_every_kind_of_stream_gives_the_same_entries(tmp_path):
    entries = [_file(f"d{i % 7}/f{i}", os.urandom(i * 37 % 3000)) for i in range(400)]
    data = _tar(entries)
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    want = lambda p: p.endswith("5")
    expected = list(scan(io.BytesIO(data), want))
    assert len(expected) == 400
    with open(path, "rb") as f:
        assert list(scan(f, want)) == expected                       # os.pread
    with open(path, "rb", buffering=0) as f:
        assert list(scan(f, want)) == expected
    with open_slice(path, 0, len(data)) as f:
        assert list(scan(f, want)) == expected                       # FileSlice
    assert list(scan(io.BufferedReader(OneWay(data)), want)) == expected  # pipe
    gz = gzip.compress(data)
    assert list(scan(gzip.GzipFile(fileobj=io.BytesIO(gz)), want)) == expected
    from isal import igzip
    assert list(scan(igzip.IGzipFile(fileobj=io.BytesIO(gz)), want)) == expected


def test_a_member_inside_an_outer_tar_is_read_through_its_slice(tmp_path):
    inner = _tar([_file("x", b"inner data")])
    outer = tmp_path / "outer.tar"
    with tarfile.open(outer, "w") as tf:
        ti = tarfile.TarInfo("layer.tar")
        ti.size = len(inner)
        tf.addfile(ti, io.BytesIO(inner))
        ti, after = _file("after", b"not part of the layer")
        tf.addfile(ti, io.BytesIO(after))
    with open_slice(outer, 512, len(inner)) as f:
        assert [(e.path, e.data) for e in scan(f, want=lambda p: True)] == [("x", b"inner data")]


def test_agrees_with_tarfile_on_a_gnu_tar_of_real_files(tmp_path):
    root = tmp_path / "root"
    (root / "sub" / ("deep" * 30)).mkdir(parents=True)
    (root / "sub" / "file.txt").write_text("text")
    (root / "sub" / ("deep" * 30) / ("name" * 40)).write_bytes(os.urandom(1234))
    (root / "link").symlink_to("sub/file.txt")
    os.link(root / "sub" / "file.txt", root / "hard")
    path = tmp_path / "gnu.tar"
    subprocess.run(["tar", "-cf", str(path), "-C", str(root), "."], check=True)
    with open(path, "rb") as f:
        ours = list(scan(f))
    with tarfile.open(path) as tf:
        theirs = tf.getmembers()
    assert len(ours) == len(theirs)
    for e, ti in zip(ours, theirs):
        assert e.path == ti.name.removeprefix("./").rstrip("/").removeprefix(".")
        assert (e.size, e.mode, e.uid, e.gid, e.mtime) == \
            (ti.size, ti.mode, ti.uid, ti.gid, int(ti.mtime))
        assert e.linkname == ti.linkname.removeprefix("./")


def test_truncated_file_data_is_an_error(tmp_path):
    data = _tar([_file("a", b"x" * 3000), _file("b", b"y")])
    cut = data[:512 + 1000]
    for stream in (io.BytesIO(cut), io.BufferedReader(OneWay(cut))):
        with pytest.raises(InvalidImage, match="truncated"):
            list(scan(stream))
    path = tmp_path / "cut.tar"
    path.write_bytes(cut)
    with open(path, "rb") as f, pytest.raises(InvalidImage, match="truncated"):
        list(scan(f))


def test_truncated_header_is_an_error():
    data = _tar([_file("a", b"x" * 100), _file("b", b"y")])
    with pytest.raises(InvalidImage, match="truncated"):
        list(scan(io.BytesIO(data[:1024 + 300])))


def test_garbage_is_not_a_tar():
    with pytest.raises(InvalidImage, match="does not look like a tar"):
        list(scan(io.BytesIO(os.urandom(4096))))
    with pytest.raises(InvalidImage, match="not a valid tar"):
        list(scan(io.BytesIO(b"{\"json\": true}" + b" " * 600)))


def test_corrupt_header_after_a_good_one_is_an_error():
    data = bytearray(_tar([_file("a", b"x"), _file("b", b"y")]))
    data[1024 + 257:1024 + 263] = b"xxxxxx"  # no magic: the checksum decides, and fails
    with pytest.raises(InvalidImage, match="corrupt or truncated"):
        list(scan(io.BytesIO(bytes(data))))


def test_empty_streams_and_zero_blocks_are_empty_layers():
    assert list(scan(io.BytesIO(b""))) == []
    assert list(scan(io.BytesIO(bytes(1024)))) == []
    assert list(scan(io.BytesIO(_tar([])))) == []


def test_unsafe_entries_are_flagged_not_hidden():
    data = _tar([
        _file("../../etc/passwd", b"x"),
        _file("/abs/file", b"y"),
        _file("a/../b", b"z"),
        (_info("lib/evil", tarfile.SYMTYPE, linkname="../../../../etc/shadow"), None),
        (_info("lib/fine", tarfile.SYMTYPE, linkname="../usr/lib/x"), None),
        (_info("bin/abs", tarfile.SYMTYPE, linkname="/etc/alternatives/x"), None),
        (_info("h", tarfile.LNKTYPE, linkname="../outside"), None),
    ])
    got = {e.path: e.unsafe for e in scan(io.BytesIO(data))}
    assert got == {
        "etc/passwd": "path escapes the image root",
        "abs/file": "absolute path",
        "b": "'..' in path",
        "lib/evil": "symlink target escapes the image root",
        "lib/fine": "",
        "bin/abs": "",  # absolute targets resolve inside the image at run time
        "h": "hard link target escapes the image root",
    }


def test_escapes_root():
    assert escapes_root("../x") and escapes_root("a/../../x")
    assert not escapes_root("a/../x") and not escapes_root("a/b/../../c")


def test_records_are_tarentry_fields_in_order():
    data = _tar([_file("a", b"1")])
    (rec,) = records(io.BytesIO(data), want=lambda p: True)
    assert TarEntry(*rec) == next(scan(io.BytesIO(data), want=lambda p: True))
    assert TarEntry(*rec).data == b"1"


def test_large_file_is_skipped_without_reading_it(tmp_path):
    path = tmp_path / "sparse.tar"
    big = 3 << 30  # 3 GB of file data that is never read
    with open(path, "wb") as f:
        f.write(_info("big", size=big).tobuf(tarfile.GNU_FORMAT))
        f.seek(512 + big)
        f.write(_info("after", size=0).tobuf(tarfile.GNU_FORMAT) + bytes(1024))
    with open(path, "rb") as f:
        assert [(e.path, e.size) for e in scan(f)] == [("big", big), ("after", 0)]
    assert Path(path).stat().st_blocks * 512 < 1 << 20  # sparse: nothing was written either


def test_a_path_that_climbs_out_and_back_in_still_escapes():
    data = _tar([_file("../x/../y", b"1"), _file("a/../../b", b"2")])
    got = [(e.path, e.unsafe) for e in scan(io.BytesIO(data))]
    # naive extraction writes ../y and ../b: a later '..' must not soften the reason
    assert got == [("y", "path escapes the image root"), ("b", "path escapes the image root")]


def test_unsafe_entries_keep_their_name_and_escaping_link_as_written():
    data = _tar([_file("../../etc/passwd", b"x"), _file("./fine", b"y"),
                 (_info("h", tarfile.LNKTYPE, linkname="../outside"), None),
                 (_info("g", tarfile.LNKTYPE, linkname="./fine"), None)])
    got = {e.path: (e.member, e.linkname) for e in scan(io.BytesIO(data))}
    assert got == {"etc/passwd": ("../../etc/passwd", ""), "fine": ("", ""),
                   "h": ("h", "../outside"), "g": ("", "fine")}

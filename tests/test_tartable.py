"""The bulk table reader gives exactly what the per-entry reader (`tarscan.records`) gives."""

from __future__ import annotations

import io
import tarfile

import pytest

from nbimages.errors import InvalidImage
from nbimages.oci.fileslice import open_slice
from nbimages.oci.tarscan import KINDS, records
from nbimages.oci.tartable import parts
from test_tarscan import OneWay, _file, _info, _tar


def _plain(prefix: str, count: int) -> list:
    """Enough plain entries for a run that is converted in bulk."""
    out = [(_info(f"{prefix}/", tarfile.DIRTYPE, mode=0o755, mtime=7), None)]
    out += [_file(f"{prefix}/f{i}.py", b"x" * (i * 97 % 1500), mode=0o644 + i % 3, uid=i,
                  gid=i * 7, mtime=1_700_000_000 + i) for i in range(count)]
    return out


def _by_records(stream) -> list[tuple]:
    return [r[:8] + r[9:] for r in records(stream)]


def _by_parts(stream, every: int) -> list[tuple]:
    out = []
    for part in parts(stream, every):
        first = len(out)
        assert part.paths and not (first + len(part) - 1) % every or len(part) < every
        for i in range(len(part)):
            j = first + i
            unsafe = dict(part.unsafe).get(j, "")
            out.append((part.paths[i], KINDS[part.kinds[i]], part.sizes[i], part.modes[i],
                        part.uids[i], part.gids[i], part.mtimes[i], part.links.get(j, ""),
                        unsafe, part.members.get(j, "")))
        assert [i for i, _ in part.unsafe] == sorted(i for i, _ in part.unsafe)
    return out


def _streams(data: bytes, tmp_path):
    path = tmp_path / "outer.tar"
    path.write_bytes(b"\0" * 1024 + data)
    yield lambda: io.BytesIO(data)
    yield lambda: io.BufferedReader(OneWay(data))
    yield lambda: open_slice(path, 1024, len(data))
    yield lambda: _at(path, 1024)


def _at(path, offset):
    f = open(path, "rb")  # noqa: SIM115 - closed by the caller's reader
    f.seek(offset)
    return f


def _offsets(data: bytes) -> list[int]:
    """Where each member's header starts."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return [m.offset for m in tf.getmembers()]


def _same(data: bytes, tmp_path, every: int = 4096) -> list[tuple]:
    expected = _by_records(io.BytesIO(data))
    for make in _streams(data, tmp_path):
        for n in (every, 5):
            with make() as stream:
                assert _by_parts(stream, n) == expected
    return expected


def _same_error(data: bytes, tmp_path) -> None:
    for make in _streams(data, tmp_path):
        with make() as stream, pytest.raises(InvalidImage) as want:
            _by_records(stream)
        with make() as stream, pytest.raises(InvalidImage) as got:
            _by_parts(stream, 4096)
        assert str(got.value) == str(want.value)


def test_plain_entries_of_gnu_and_ustar_tars(tmp_path):
    for fmt in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        got = _same(_tar(_plain("usr/lib", 300), fmt=fmt), tmp_path)
        assert got[0][:2] == ("usr/lib", "dir") and len(got) == 301


def test_runs_broken_by_every_kind_of_other_header(tmp_path):
    long_dir = "d" * 120
    entries = _plain("a", 20) + [
        _file(f"{long_dir}/{'f' * 150}", b"abc"),  # GNU long name
        (_info("l", tarfile.SYMTYPE, linkname="t" * 200), None),  # GNU long link
    ] + _plain("b", 20) + [
        (_info("h", tarfile.LNKTYPE, linkname="./a/f1.py"), None),
        (_info("s", tarfile.SYMTYPE, linkname="../../x"), None),
        (_info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
        (_info("fifo", tarfile.FIFOTYPE), None),
        _file("big-ids", b"1", uid=0o7777777 + 5, gid=2**33),  # base-256
    ] + _plain("c", 20)
    _same(_tar(entries, fmt=tarfile.GNU_FORMAT), tmp_path)


def test_pax_and_ustar_prefix_names(tmp_path):
    name = "ünïcödé/" + "n" * 200
    entries = _plain("a", 12) + [
        _file(name, b"12345", uid=3_000_000, mtime=1.5),
        _file("p" * 90 + "/" + "q" * 90, b"prefix"),  # ustar splits it into prefix and name
        (_info("l", tarfile.SYMTYPE, linkname="x" * 300), None),
    ] + _plain("b", 12)
    _same(_tar(entries, fmt=tarfile.PAX_FORMAT), tmp_path)
    _same(_tar(_plain("a", 12) + [_file("p" * 90 + "/" + "q" * 90, b"x")] + _plain("b", 12),
               fmt=tarfile.USTAR_FORMAT), tmp_path)


def test_names_that_need_cleaning_and_unsafe_names(tmp_path):
    odd = ["./", "./x/y/", "a//b", "a/./b", "/abs/file", "../../etc/passwd", "a/../b",
           "home/.bashrc", ".hidden", "a/b/../../../c", "x/.wh.gone", "x/.wh..wh..opq",
           "x/.wh..wh.plnk", "dir/sub/"]
    entries = []
    for i, name in enumerate(odd):
        entries += _plain(f"p{i}", 9)
        entries.append(_file(name, b"data"))
    entries += [(_info("h1", tarfile.LNKTYPE, linkname="../outside"), None),
                (_info("lib/evil", tarfile.SYMTYPE, linkname="../../../../etc/shadow"), None)]
    got = _same(_tar(entries), tmp_path)
    assert ("etc/passwd", "path escapes the image root") in [(r[0], r[8]) for r in got]


def test_non_utf8_names_and_links(tmp_path):
    entries = _plain("a", 10)
    for i in range(10):
        ti = _info(f"n{i}", tarfile.SYMTYPE if i % 2 else tarfile.REGTYPE, linkname="")
        entries.append((ti, None))
    data = bytearray(_tar(entries))
    for i, at in enumerate(_offsets(data)[11:]):
        assert data[at:at + 2] == b"n%d" % i
        data[at:at + 4] = b"\xff\xfe" + bytes([0xc3, 0x28 + i])  # invalid UTF-8
        if i % 2:
            data[at + 157:at + 160] = b"\xe2\x82x"
        data[at + 148:at + 156] = b"        "
        data[at + 148:at + 156] = b"%06o\0 " % sum(data[at:at + 512])
    _same(bytes(data), tmp_path)


def test_odd_but_valid_header_fields(tmp_path):
    """Numbers with spaces, junk after a name's NUL, names of exactly 100 bytes, an empty name,
    a v7 header without magic: each read as the per-entry reader reads it."""
    data = bytearray(_tar(_plain("a", 40)))
    offsets = _offsets(data)[1:]

    def edit(at: int, off: int, value: bytes) -> None:
        data[at + off:at + off + len(value)] = value
        data[at + 148:at + 156] = b"        "
        data[at + 148:at + 156] = b"%06o\0 " % sum(data[at:at + 512])

    edit(offsets[3], 100, b"  644 \0")  # mode with spaces (libarchive style)
    edit(offsets[5], 108, b"\0\0\0\0\0\0\0")  # an empty uid
    edit(offsets[7], 136, b"   1234567 ")  # mtime with spaces
    edit(offsets[9], 116, b"-000001")  # a negative gid
    edit(offsets[15], 257, b"\0" * 8)  # a v7 header: no magic, the checksum decides
    edit(offsets[19], 0, b"a/f8.py\0junk")  # junk after the name's end
    edit(offsets[23], 0, b"n" * 100)  # a name of 100 bytes, no NUL
    edit(offsets[27], 0, b"\0" * 100)  # an empty name
    _same(bytes(data), tmp_path)


def test_whiteouts_many_runs_and_parts(tmp_path):
    entries = []
    for d in range(30):
        entries += _plain(f"d{d}", 37)
        entries.append(_file(f"d{d}/.wh.f3.py", b""))
        if d % 3 == 0:
            entries.append(_file(f"d{d}/.wh..wh..opq", b""))
    _same(_tar(entries), tmp_path, every=64)


def test_errors_are_those_of_the_per_entry_reader(tmp_path):
    data = _tar(_plain("a", 30))
    at = _offsets(data)[20]
    _same_error(data[:at + 100], tmp_path)  # cut in a header
    _same_error(data[:at + 600], tmp_path)  # cut in file data
    broken = bytearray(data)
    broken[at + 257:at + 263] = b"xxxxxx"  # no magic and a bad checksum
    _same_error(bytes(broken), tmp_path)
    negative = bytearray(data)
    negative[at + 124:at + 136] = b"-0000000001\0"
    _same_error(bytes(negative), tmp_path)
    _same_error(data[:at] + b"garbage" * 100, tmp_path)


def test_empty_tars(tmp_path):
    for data in (b"", bytes(1024), _tar([])):
        assert _same(data, tmp_path) == []

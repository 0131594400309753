"""A layer tar's entries as columns, converted a run of headers at a time: file tables fast.

Most headers of a layer are plain: ustar or GNU magic, a typeflag '0'-'7', octal numbers, a
name under 100 bytes that needs no cleaning, no link target. The loop here only follows the
chain of headers and keeps the first 257 bytes of each plain one; a run of them is then
converted with C-level operations (extended slices, one big integer for all the numbers).
The first header, every other header (extended headers, no magic, odd sizes) and each
plain one that a bulk check rejects go through `tarscan.next_member` / `tarscan.member`,
so the columns hold exactly what `tarscan.records` yields.
"""

from __future__ import annotations

import functools
import re
import struct
import sys
from array import array
from collections.abc import Iterator
from typing import BinaryIO

from .tarscan import (_GNU_MAGIC, _HEADER, _KIND_OF, _USTAR, BLOCK, KINDS, Window, member,
                      next_member)

# typeflag byte -> index in KINDS, for the flags a plain header may have
_KIND_INDEX = bytes(KINDS.index(_KIND_OF[b]) if 48 <= b <= 55 else 255 for b in range(256))
_PLAIN_TF = b"01234567"
_R = 257  # the bytes kept of each plain header: up to the end of the link target
_NUMBERS = 48  # header bytes 100-148: mode, uid, gid, size, mtime
_NAME = re.compile("([^\0]*)\0+")  # a name field: the name, then NUL to its end
_NOT_OCTAL = re.compile(rb"[^0-7]")
_OCTAL_DIGITS = b"01234567"
_ZERO_NOT_OCTAL = bytes(b if 48 <= b <= 55 else 48 for b in range(256))
# (offset, digits) of the octal fields converted in bulk: the last four digits of the mode
# (modes are kept & 0o7777), uid, gid, mtime, size. Their terminators are not read, as in
# tarscan.member.
_FIELDS = ((103, 4), (108, 7), (116, 7), (136, 11), (124, 11))
_SLOT = 16  # octal digits per value: 48 bits, 6 bytes
_SMALL_RUN = 8  # shorter runs are cheaper one header at a time


class Part:
    """Columns of consecutive entries: paths, kind indices into KINDS, numbers; `links`,
    `unsafe` and `members` are keyed by the entry's index in the whole layer."""

    __slots__ = ("gids", "kinds", "links", "members", "modes", "mtimes", "paths", "sizes",
                 "uids", "unsafe")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.kinds = bytearray()
        self.sizes = array("q")
        self.modes = array("l")
        self.uids = array("q")
        self.gids = array("q")
        self.mtimes = array("q")
        self.links: dict[int, str] = {}
        self.unsafe: list[tuple[int, str]] = []  # in entry order
        self.members: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, rec: tuple, idx: int) -> None:
        """One entry from a `tarscan.records` tuple; `idx` is its index in the layer."""
        path, kind, size, mode, uid, gid, mtime, link, _data, unsafe, written = rec
        self.paths.append(path)
        self.kinds.append(KINDS.index(kind))
        self.sizes.append(size)
        self.modes.append(mode)
        self.uids.append(uid)
        self.gids.append(gid)
        self.mtimes.append(mtime)
        if link:
            self.links[idx] = link
        if unsafe:
            self.unsafe.append((idx, unsafe))
            self.members[idx] = written


def parts(stream: BinaryIO, every: int = 4096) -> Iterator[Part]:
    """The entries of the tar `stream` in order, as Parts. A part ends after each entry whose
    index is a multiple of `every`, so a caller can check its limits at those entries while
    the rest is unread. Errors are those of `tarscan.records`."""
    win = Window(stream)
    got = next_member(win, 0, True)
    idx = 0  # entries so far
    part = Part()
    hdrs: list[bytes] = []
    while got is not None:
        rec, _data_start, pos = got
        part.add(rec, idx)
        idx += 1
        while True:
            if not (idx - 1) % every:
                yield part
                part = Part()
            room = (idx + every - 1) // every * every + 1 - idx  # to the next part's end
            n, pos = _plain_run(win, pos, room, hdrs.append)
            if n:
                _convert(part, hdrs, idx)
                idx += n
                hdrs.clear()
            if n < room:
                break
        got = next_member(win, pos, False)
    if part.paths:
        yield part


def _plain_run(win: Window, pos: int, limit: int, keep) -> tuple[int, int]:
    """Follow up to `limit` plain headers from `pos`, keeping the first _R bytes of each;
    stop before the first other one. Returns (count, position after them)."""
    buf = win.buf
    starts = buf.startswith
    start = win.start
    lim = win.end - BLOCK
    plain_tf = _PLAIN_TF
    n = 0
    for n in range(limit):  # noqa: B007 - the count is the result
        off = pos - start
        if off > lim:
            if not win.fill(pos):
                break  # the end, or a truncation: next_member says which
            start = pos
            lim = win.end - BLOCK
            off = 0
        if buf[off + 156] not in plain_tf:
            break
        if not starts(_GNU_MAGIC, off + 257) and (not starts(_USTAR, off + 257)
                                                  or buf[off + 345]):  # a ustar name prefix
            break
        try:
            size = int(buf[off + 124:off + 135], 8)
        except ValueError:
            break
        if size < 0 or buf[off + 135] & 0xDF:  # the size's terminator must be NUL or space
            break
        keep(buf[off:off + _R])
        pos += 512 + ((size + 511) & ~511)
    else:
        n = limit
    return n, pos


def _convert(part: Part, hdrs: list, idx: int) -> None:
    """Append the entries of plain headers `hdrs` (entry `idx` on) to `part`."""
    n = len(hdrs)
    if n < _SMALL_RUN:
        for i, h in enumerate(hdrs):
            part.add(_member(h, 0), idx + i)
        return
    data = b"".join(hdrs)
    # entries the bulk rules do not cover; tarscan.member reads those one by one
    odd: set[int] = set()
    links = data[157::_R]
    if links.count(0) != n:
        odd.update(m.start() for m in re.finditer(b"[^\0]", links))
    fields = _fields(n).unpack(data)
    # names: every name field ends with NUL, nothing follows the name, no name is empty
    names = _NAME.findall(b"".join(fields[0::2]).decode("utf-8", "surrogateescape"))
    if len(names) != n or data[99::_R].count(0) != n:
        names = [""] * n
        odd.update(range(n))
    joined = "\0".join(names)
    if ("/." in joined or "//" in joined or "\0." in joined or "\0/" in joined
            or joined[:1] in "./" or not names[0]):
        # './', '/x', '.x' or '..', hidden files, empty names: tarscan.member cleans them
        odd.update(i for i, x in enumerate(names) if x[:1] in "./" or "/." in x or "//" in x)
    slashes = joined.count("/\0") + (joined[-1:] == "/")
    if slashes:  # directories as GNU tar writes them: drop the trailing slash
        typeflags = data[156::_R]
        for i in (m.start() for m in re.finditer(b"5", typeflags)):
            if names[i][-1:] == "/":
                names[i] = names[i][:-1]
                slashes -= 1
        if slashes:
            names = [x[:-1] if x[-1:] == "/" else x for x in names]
    numbers = _octal_columns(b"".join(fields[1::2]), n, odd)

    paths = part.paths
    first = len(paths)
    paths += names
    kinds = part.kinds
    kinds += data[156::_R].translate(_KIND_INDEX)
    part.sizes.extend(numbers[4])
    _extend_modes(part.modes, numbers[0])
    part.uids.extend(numbers[1])
    part.gids.extend(numbers[2])
    part.mtimes.extend(numbers[3])
    for i in sorted(odd):
        path, kind, size, mode, uid, gid, mtime, link, _d, unsafe, written = _member(
            data, i * _R)
        j = first + i
        paths[j] = path
        kinds[j] = KINDS.index(kind)
        part.sizes[j] = size
        part.modes[j] = mode
        part.uids[j] = uid
        part.gids[j] = gid
        part.mtimes[j] = mtime
        if link:
            part.links[idx + i] = link
        if unsafe:
            part.unsafe.append((idx + i, unsafe))
            part.members[idx + i] = written


def _member(data: bytes, off: int) -> tuple:
    """`tarscan.member` of a kept header: what follows _R (magic, a ustar prefix that a
    plain header does not have) reads as zeros. Its size field is octal (_plain_run)."""
    header = data[off:off + _R] + bytes(_HEADER.size - _R)
    return member(_HEADER.unpack_from(header), header, 0, int(header[124:135], 8))


@functools.lru_cache(maxsize=4)
def _fields(n: int) -> struct.Struct:
    """Unpacks the name field and the numeric fields of `n` kept headers in one call."""
    return struct.Struct(f"100s{_NUMBERS}s{_R - 100 - _NUMBERS}x" * n)


def _octal_columns(numbers: bytes, n: int, odd: set[int]) -> list[array]:
    """Mode & 0o7777, uid, gid, mtime and size of `n` headers (their bytes 100 to 148, one after
    another in `numbers`) as arrays; entries with a field that is not plain octal digits are
    added to `odd` (their values are garbage).

    The digits are laid out right-aligned in slots of 16, read as one octal number, and its
    bytes spread to 8 per value: a few passes over the data instead of an int() per field.
    """
    width = _SLOT * n
    text = bytearray(b"0" * (width * len(_FIELDS)))
    for f, (at, digits) in enumerate(_FIELDS):
        base = f * width + _SLOT - digits
        for j in range(digits):
            text[base + j:(f + 1) * width:_SLOT] = numbers[at - 100 + j::_NUMBERS]
    # the mode's first three digits only need to be digits (int(mode) must succeed)
    high = numbers[0::_NUMBERS] + numbers[1::_NUMBERS] + numbers[2::_NUMBERS]
    if high.translate(None, _OCTAL_DIGITS):
        odd.update(m.start() % n for m in _NOT_OCTAL.finditer(high))
    if text.translate(None, _OCTAL_DIGITS):
        odd.update(m.start() % width // _SLOT for m in _NOT_OCTAL.finditer(text))
        text = text.translate(_ZERO_NOT_OCTAL)
    value_bytes = _SLOT * 3 // 8
    packed = int(text, 8).to_bytes(value_bytes * n * len(_FIELDS), "big")
    wide = bytearray(8 * n * len(_FIELDS))
    for k in range(value_bytes):  # big-endian 6 bytes -> native 8
        at = value_bytes - 1 - k if sys.byteorder == "little" else 8 - value_bytes + k
        wide[at::8] = packed[k::value_bytes]
    values = array("q")
    values.frombytes(wide)
    return [values[f * n:(f + 1) * n] for f in range(len(_FIELDS))]


def _extend_modes(modes: array, values: array) -> None:
    if modes.itemsize == values.itemsize:
        modes.frombytes(values.tobytes())
    else:
        modes.fromlist(values.tolist())

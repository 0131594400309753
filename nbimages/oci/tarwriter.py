"""Deterministic layer tars: the same entries always give the same bytes, on any machine.

We write the 512-byte headers ourselves instead of using `tarfile`, whose output changed
between Python versions (research/oci-building.md §6.4). The rules (research §6):

- entries sorted by path component (UTF-8 bytes), parents before children, and inside a
  directory the whiteouts (`.wh.*`, including `.wh..wh..opq`) before their siblings
  (image-spec layer.md "Whiteouts");
- every parent directory is emitted (0755 root unless the caller says otherwise);
- mtime = SOURCE_DATE_EPOCH or 0; uid/gid 0 and empty user/group names unless declared;
- modes 0644 / 0755 (files with an x bit, directories) / 0777 (symlinks); setuid, setgid and
  sticky bits only when declared;
- USTAR headers; a PAX header only for names or link targets over 100 bytes or not ASCII
  (or sizes/ids that do not fit), with its records sorted by key; no atime, ctime, xattrs;
- end of archive: exactly two zero blocks (1024 bytes), no padding to a record size.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import BuildError, UnsafePath

BLOCK = 512
CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
PAX_NAME = b"././@PaxHeader"
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)

FILE, DIR, SYMLINK, HARDLINK = "file", "dir", "symlink", "hardlink"
_TYPEFLAG = {FILE: b"0", HARDLINK: b"1", SYMLINK: b"2", DIR: b"5"}


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH from the environment (reproducible-builds.org), else 0."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise BuildError(f"SOURCE_DATE_EPOCH={text!r} is not a whole number of seconds since "
                         "1970; set it to an integer such as 0 or unset it.") from None
    if not 0 <= value < 8 ** 11:
        raise BuildError(f"SOURCE_DATE_EPOCH={value} is out of range; use a time between 1970 "
                         "and 2242 in seconds.")
    return value


def normalize_path(path: str) -> str:
    """An in-image path as the relative POSIX name stored in the tar (`/a/./b/` -> `a/b`).

    `..` is refused rather than resolved: a layer entry must never point outside the root.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise UnsafePath(f"{path!r} is not a usable path inside the image; give an absolute "
                         "path such as /app/main.py.")
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"the image path {path!r} contains '..'; write the absolute path it "
                         "means, e.g. /app/data.csv.")
    return "/".join(parts)


def sort_key(path: str) -> tuple:
    """Depth-first order by component bytes, whiteouts first inside each directory."""
    return tuple((0 if c.startswith(WHITEOUT_PREFIX) else 1, c.encode("utf-8"))
                 for c in path.split("/"))


def normal_mode(host_mode: int, kind: str) -> int:
    """Normalised permission bits: 0755 dirs, 0777 symlinks, 0755 files with any x bit else 0644."""
    if kind == DIR:
        return 0o755
    if kind == SYMLINK:
        return 0o777
    return 0o755 if host_mode & 0o111 else 0o644


@dataclass(frozen=True)
class Entry:
    """One layer member. `source` is bytes (small, e.g. cell text) or a host file streamed later."""

    path: str
    kind: str = FILE
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = ""
    gname: str = ""
    size: int = 0
    linkname: str = ""
    source: bytes | Path | None = None

    @property
    def is_whiteout(self) -> bool:
        return posixpath.basename(self.path).startswith(WHITEOUT_PREFIX)


class LayerTree:
    """The set of entries of one layer: paths normalised, last writer wins, parents synthesised."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._dirs_with_children: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: str) -> bool:
        return normalize_path(path) in self._entries

    def get(self, path: str) -> Entry | None:
        return self._entries.get(normalize_path(path))

    def add(self, entry: Entry) -> Entry:
        path = normalize_path(entry.path)
        if entry.kind not in _TYPEFLAG:
            raise ValueError(f"unknown entry kind {entry.kind!r}")
        entry = replace(entry, path=path)
        parents = _parents(path)
        for parent in parents:
            have = self._entries.get(parent)
            if have is not None and have.kind != DIR:
                raise BuildError(f"/{parent} is a file in this layer but /{path} needs it to be a "
                                 "directory; put them in separate steps or rename one.")
        if entry.kind != DIR and path in self._dirs_with_children:
            raise BuildError(f"/{path} is a directory in this layer and cannot also be a "
                             f"{entry.kind}.")
        self._dirs_with_children.update(parents)
        self._entries[path] = entry
        return entry

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644, *, uid: int = 0,
                  gid: int = 0) -> Entry:
        """A regular file whose content is in memory (cell text); `mode` is taken as declared."""
        return self.add(Entry(path, FILE, mode, uid, gid, size=len(data), source=bytes(data)))

    def add_dir(self, path: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0) -> Entry:
        return self.add(Entry(path, DIR, mode, uid, gid))

    def add_symlink(self, path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
        return self.add(Entry(path, SYMLINK, 0o777, uid, gid, linkname=target))

    def add_whiteout(self, path: str) -> Entry:
        """`.wh.NAME`: removes NAME (and everything under it) from the lower layers."""
        path = normalize_path(path)
        if not path:
            raise UnsafePath("the root directory cannot be removed.")
        parent, name = posixpath.split(path)
        return self.add(Entry(posixpath.join(parent, WHITEOUT_PREFIX + name), FILE, 0o644))

    def add_opaque(self, directory: str) -> Entry:
        """`DIR/.wh..wh..opq`: hides every lower-layer child of DIR (the directory stays)."""
        d = normalize_path(directory)
        return self.add(Entry(posixpath.join(d, OPAQUE) if d else OPAQUE, FILE, 0o644))

    def add_host_file(self, path: str, host: str | os.PathLike, *, mode: int | None = None,
                      uid: int = 0, gid: int = 0, follow: bool = False) -> Entry | None:
        """A host file, directory or symlink (not followed unless `follow`) at `path`.

        Modes are normalised unless `mode` is given; sockets, fifos and devices are skipped
        (returns None); hard links become independent copies.
        """
        host = Path(host)
        st = host.stat() if follow else host.lstat()
        if stat.S_ISLNK(st.st_mode):
            return self.add(Entry(path, SYMLINK, 0o777, uid, gid, linkname=os.readlink(host)))
        if stat.S_ISDIR(st.st_mode):
            return self.add(Entry(path, DIR, mode if mode is not None else 0o755, uid, gid))
        if stat.S_ISREG(st.st_mode):
            m = mode if mode is not None else normal_mode(st.st_mode, FILE)
            return self.add(Entry(path, FILE, m, uid, gid, size=st.st_size, source=host))
        return None

    def add_host_tree(self, dest: str, root: str | os.PathLike, *,
                      include: Callable[[str], bool] | None = None, uid: int = 0,
                      gid: int = 0, mode: int | None = None) -> int:
        """Everything under host directory `root` placed under `dest`; returns entries added.

        `include(relpath)` filters (e.g. .dockerignore); directories it rejects are still
        walked so that re-included children (`!pattern`) are found. `mode` overrides the
        normalised mode of files and directories (COPY --chmod).
        """
        root = Path(root)
        dest = normalize_path(dest) if dest.strip("/") else ""
        n = 0
        for rel in walk_sorted(root):
            if include is not None and not include(rel):
                continue
            target = f"{dest}/{rel}" if dest else rel
            if self.add_host_file(target, root / rel, uid=uid, gid=gid, mode=mode) is not None:
                n += 1
        return n

    def entries(self, parent_meta: Callable[[str], tuple[int, int, int] | None] | None = None
                ) -> list[Entry]:
        """All entries in layer order, every missing parent directory added.

        `parent_meta(path)` may give (mode, uid, gid) of a synthesised parent (the lower
        layers' directory, so that /tmp keeps 1777); the default is 0755 root.
        """
        out = dict(self._entries)
        for path in list(self._entries):
            for parent in _parents(path):
                if parent in out:
                    continue
                meta = parent_meta(parent) if parent_meta else None
                mode, uid, gid = meta if meta else (0o755, 0, 0)
                out[parent] = Entry(parent, DIR, mode, uid, gid)
        return [out[p] for p in sorted(out, key=sort_key)]


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def walk_sorted(root: Path, rel: str = "") -> Iterator[str]:
    """Relative POSIX paths under `root` in sorted order, not following symlinks."""
    base = root / rel if rel else root
    for name in sorted(os.listdir(base)):
        child = f"{rel}/{name}" if rel else name
        yield child
        full = root / child
        if full.is_dir() and not full.is_symlink():
            yield from walk_sorted(root, child)


# ---- encoding

def _octal(value: int, width: int) -> bytes | None:
    """`width-1` octal digits and a NUL, or None if the value does not fit."""
    if value < 0 or value >= 8 ** (width - 1):
        return None
    return b"%0*o\0" % (width - 1, value)


def _field(data: bytes, width: int) -> bytes:
    return data[:width].ljust(width, b"\0")


def _pax_records(records: dict[str, str]) -> bytes:
    out = bytearray()
    for key in sorted(records):
        body = f" {key}={records[key]}\n".encode("utf-8")
        n = len(body) + 1
        while len(str(n).encode()) + len(body) != n:
            n = len(str(n).encode()) + len(body)
        out += str(n).encode() + body
    return bytes(out)


def _ascii_fallback(text: str, width: int) -> bytes:
    return text.encode("ascii", "replace")[:width]


def _header_block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                  typeflag: bytes, linkname: bytes, uname: bytes, gname: bytes) -> bytes:
    parts = [
        _field(name, 100),
        _octal(mode, 8), _octal(uid, 8), _octal(gid, 8), _octal(size, 12), _octal(mtime, 12),
        b" " * 8,  # checksum placeholder
        typeflag,
        _field(linkname, 100),
        b"ustar\0", b"00",
        _field(uname, 32), _field(gname, 32),
        b"\0" * 8, b"\0" * 8,  # devmajor, devminor: unused for these types
        b"\0" * 155,  # prefix: long names go into PAX instead
        b"\0" * 12,
    ]
    block = bytearray(b"".join(parts))  # type: ignore[arg-type]
    assert len(block) == BLOCK
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def encode_header(entry: Entry, mtime: int) -> bytes:
    """The header block(s) of one entry: a PAX header first when the USTAR fields cannot hold it."""
    path = entry.path
    pax: dict[str, str] = {}
    name_b = path.encode("utf-8")
    if len(name_b) > 100 or not path.isascii():
        pax["path"] = path
        name_b = _ascii_fallback(path, 100)
    link_b = entry.linkname.encode("utf-8")
    if len(link_b) > 100 or not entry.linkname.isascii():
        pax["linkpath"] = entry.linkname
        link_b = _ascii_fallback(entry.linkname, 100)
    size = entry.size if entry.kind == FILE else 0
    fields = {"size": (size, 12), "uid": (entry.uid, 8), "gid": (entry.gid, 8)}
    values = {}
    for key, (value, width) in fields.items():
        if _octal(value, width) is None:
            if value < 0:
                raise BuildError(f"/{entry.path}: {key} {value} is negative.")
            pax[key] = str(value)
            values[key] = 0
        else:
            values[key] = value
    uname, gname = entry.uname.encode("utf-8"), entry.gname.encode("utf-8")
    if len(uname) > 32 or not entry.uname.isascii():
        pax["uname"], uname = entry.uname, b""
    if len(gname) > 32 or not entry.gname.isascii():
        pax["gname"], gname = entry.gname, b""
    if not 0 <= entry.mode <= 0o7777:
        raise BuildError(f"/{entry.path}: mode {entry.mode:o} is not a permission mode (0 to 7777).")
    main = _header_block(name_b, entry.mode, values["uid"], values["gid"], values["size"], mtime,
                         _TYPEFLAG[entry.kind], link_b, uname, gname)
    if not pax:
        return main
    body = _pax_records(pax)
    head = _header_block(PAX_NAME, 0o644, 0, 0, len(body), mtime, b"x", b"", b"", b"")
    return head + body + _padding(len(body)) + main


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def iter_tar(entries: Iterable[Entry], mtime: int | None = None) -> Iterator[bytes]:
    """The layer tar as a stream of chunks; host files are read in 1 MiB pieces."""
    mtime = source_date_epoch() if mtime is None else mtime
    for entry in entries:
        yield encode_header(entry, mtime)
        if entry.kind != FILE or not entry.size:
            continue
        if isinstance(entry.source, (bytes, bytearray)):
            yield bytes(entry.source)
        elif isinstance(entry.source, Path):
            yield from _read_exact(entry)
        else:
            raise ValueError(f"entry {entry.path} has size {entry.size} but no source")
        yield _padding(entry.size)
    yield END_OF_ARCHIVE


def _read_exact(entry: Entry) -> Iterator[bytes]:
    left = entry.size
    try:
        f = open(entry.source, "rb")  # type: ignore[arg-type]
    except OSError as e:
        raise BuildError(f"cannot read {entry.source} for /{entry.path}: {e.strerror}. Check the "
                         "file exists and is readable, then build again.") from None
    with f:
        while left:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
        if left or f.read(1):
            raise BuildError(f"{entry.source} changed size while it was being added to the "
                             "layer; build again once it is no longer being written.")


def write_tar(entries: Iterable[Entry], out, mtime: int | None = None) -> int:
    """Write the tar of `entries` to `out` (anything with write()); returns the byte count."""
    n = 0
    for chunk in iter_tar(entries, mtime):
        out.write(chunk)
        n += len(chunk)
    return n

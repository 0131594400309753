"""What apk does when it installs .apk files, done on a layer's entries instead of a disk.

An .apk (v2) is two or three gzip streams one after the other: an optional signature tar,
the control tar (`.PKGINFO`, install scripts) and the data tar. The APKINDEX's `C:` is "Q1" +
base64 of the SHA-1 of the control stream's compressed bytes, and `.PKGINFO`'s `datahash` the
SHA-256 of the data stream's: `read_apk` checks both before anything is unpacked.
`installed_text` writes apk's database records (/lib/apk/db/installed) for what was unpacked.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError
from ..oci.fileslice import FileSlice
from ..oci.tarwriter import DIR, FILE, HARDLINK, SYMLINK, Entry
from .dpkg import member_entry

_CHUNK = 1 << 20
SCRIPTS = (".pre-install", ".post-install", ".pre-upgrade", ".post-upgrade", ".trigger")


def q1(digest: bytes) -> str:
    """apk's checksum notation: "Q1" + base64 of a SHA-1 digest."""
    return "Q1" + base64.b64encode(digest).decode("ascii")


def gzip_members(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of each gzip stream of a file of concatenated streams."""
    out, start, fed = [], 0, 0
    d = zlib.decompressobj(31)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            fed += len(chunk)
            while chunk:
                try:
                    d.decompress(chunk)
                except zlib.error:
                    raise BuildError(f"{path.name} is not an .apk (its gzip streams do not "
                                     "decode).") from None
                if not d.eof:
                    break
                end = fed - len(d.unused_data)
                out.append((start, end - start))
                start, chunk = end, d.unused_data
                d = zlib.decompressobj(31)
    if start != fed:
        raise BuildError(f"{path.name} ends inside a gzip stream: the download is truncated.")
    return out


def _hash(path: Path, offset: int, size: int, algo: str) -> bytes:
    h = hashlib.new(algo)
    with FileSlice(path, offset, size) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def _tar(path: Path, offset: int, size: int) -> tarfile.TarFile:
    return tarfile.open(fileobj=FileSlice(path, offset, size), mode="r|gz")


def signed_parts(data_path: Path) -> tuple[list[str], list[tuple[int, int]]]:
    """The names in the signature stream (if any) and the streams after it."""
    members = gzip_members(data_path)
    names = []
    if members:
        with _tar(data_path, *members[0]) as tf:
            names = [m.name for m in tf]
    if names and all(n.startswith(".SIGN.") for n in names):
        return names, members[1:]
    return [], members


def parse_pkginfo(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not key.startswith("#"):
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@dataclass
class ApkFile:
    """A verified .apk: its control files and the layout of its data stream."""

    path: Path
    control: dict[str, bytes]
    data: tuple[int, int]

    @property
    def pkginfo(self) -> dict[str, list[str]]:
        return parse_pkginfo(self.control.get(".PKGINFO", b"").decode("utf-8", "replace"))


def read_apk(path: Path, checksum: str, label: str) -> ApkFile:
    """Check `path` against the index's `C:` and its own datahash; its control files."""
    _, streams = signed_parts(path)
    if len(streams) != 2:
        raise BuildError(f"{label}: the .apk has {len(streams)} content streams instead of a "
                         "control and a data stream; it is not an apk v2 package.")
    control, data = streams
    got = q1(_hash(path, *control, "sha1"))
    if got != checksum:
        raise BuildError(f"{label} does not match the repository's signed index (C: "
                         f"{checksum}, the package's control is {got}): the download was "
                         "altered or the mirror is inconsistent; nothing was installed. Try "
                         "again or use another mirror.")
    files: dict[str, bytes] = {}
    with _tar(path, *control) as tf:
        for m in tf:
            if m.isfile():
                files[posixpath.basename(m.name)] = tf.extractfile(m).read()  # type: ignore[union-attr]
    apk = ApkFile(path, files, data)
    want = (apk.pkginfo.get("datahash") or [""])[0]
    have = _hash(path, *data, "sha256").hex()
    if want != have:
        raise BuildError(f"{label}: its data does not match the datahash its signed control "
                         f"declares ({want[:16] or 'none'}... vs {have[:16]}...): the package "
                         "was altered; nothing was installed.")
    return apk


@dataclass
class Unpacked:
    """One package's files as apk's database lists them (path -> (kind, uid, gid, mode, Z:))."""

    files: dict[str, tuple[str, int, int, int, str]] = field(default_factory=dict)


def unpack_apk(apk: ApkFile, staging: Path, entries: dict[str, Entry], label: str) -> Unpacked:
    """The data tar as Entries (contents written under `staging`), and the database's view."""
    out = Unpacked()
    with _tar(apk.path, *apk.data) as tf:
        for i, m in enumerate(tf):
            path = posixpath.normpath(m.name.lstrip("./") or ".")
            if path == ".":
                continue
            if path.startswith(("..", "/")):
                raise BuildError(f"{label} has an unsafe path {m.name!r}.")
            e = member_entry(m, path, tf, staging, label, i)
            entries[path] = e
            out.files[path] = (e.kind, e.uid, e.gid, e.mode, _z(e, entries))
    return out


def _z(e: Entry, entries: dict[str, Entry]) -> str:
    if e.kind == SYMLINK:
        return q1(hashlib.sha1(e.linkname.encode()).digest())  # noqa: S324 - apk's Z:
    if e.kind == HARDLINK:
        e = entries.get(e.linkname, e)
    if e.kind != FILE or not isinstance(e.source, Path):
        return ""
    h = hashlib.sha1()  # noqa: S324 - apk's file checksum
    with open(e.source, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return q1(h.digest())


# The APKINDEX letters apk copies into its database, in the order it writes them.
DB_FIELDS = "CPVASITULomtcDpirk"


def installed_record(fields: dict[str, str], u: Unpacked) -> str:
    """One package's record of /lib/apk/db/installed: the index fields, then F:/M: per
    directory and R:/a:/Z: per file in it (apk's own layout, which syft reads)."""
    lines = [f"{k}:{fields[k]}" for k in DB_FIELDS if fields.get(k)]
    dirs = {p for p, (kind, *_) in u.files.items() if kind == DIR}
    dirs |= {posixpath.dirname(p) for p, (kind, *_) in u.files.items() if kind != DIR}
    for d in sorted(dirs):
        lines.append(f"F:{d}")
        meta = u.files.get(d)
        if meta is not None and (meta[1], meta[2], meta[3]) != (0, 0, 0o755):
            lines.append(f"M:{meta[1]}:{meta[2]}:{meta[3]:o}")
        for p in sorted(p for p, m in u.files.items() if m[0] != DIR and posixpath.dirname(p) == d):
            _, uid, gid, mode, z = u.files[p]
            lines.append(f"R:{posixpath.basename(p)}")
            if (uid, gid, mode) != (0, 0, 0o644) and u.files[p][0] != SYMLINK:
                lines.append(f"a:{uid}:{gid}:{mode:o}")
            if z:
                lines.append(f"Z:{z}")
    return "\n".join(lines) + "\n"


def script_notes(installed: list[tuple[str, ApkFile]]) -> list[str]:
    """What apk would have run and this step did not, for the build report."""
    scripts = [f"{name} ({', '.join(s for s in SCRIPTS if s in apk.control)})"
               for name, apk in installed if any(s in apk.control for s in SCRIPTS)]
    return ["apk: install scripts not run: " + ", ".join(scripts)] if scripts else []

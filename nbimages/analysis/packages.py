"""Size by installed package, from the image's own package databases, with the installing layer.

Three databases are read, as the package managers themselves wrote them:

- Python: `*.dist-info` (`METADATA`, `RECORD`) and `*.egg-info` (`PKG-INFO`,
  `installed-files.txt` or `top_level.txt`) directly inside a `site-packages` or
  `dist-packages` directory;
- Debian: `var/lib/dpkg/status` with `var/lib/dpkg/info/PKG[:ARCH].list` (and distroless
  `var/lib/dpkg/status.d/PKG` with `PKG.md5sums`);
- Alpine: `lib/apk/db/installed` (`P:`, `V:`, `A:`, `I:`, `F:`/`R:` file lists).

Everything here is a pure function of two inputs, so it is tested without any image:
(a) the successive versions of the database files, layer by layer (`DbVersion`), and
(b) the final filesystem (`FinalFS`: path -> kind, size, layer of the copy that is kept).

A package's `size` is the bytes its listed files occupy in the final filesystem (an overwritten
file counts with its final size, a removed one with 0); `declared_size` is what the database
says (RECORD's size column, dpkg's Installed-Size * 1024, apk's I:). Its `layer` is the layer
where its database record first appeared in the form it has in the final image: a package
upgraded in layer 5 is layer 5's, a status file merely rewritten by a later apt run is not.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["type", "name", "version", "arch", "size", "files", "layer", "location",
           "declared_size", "missing_files", "layers"]

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
DPKG_INFO = "var/lib/dpkg/info/"
APK_INSTALLED = "lib/apk/db/installed"

# `.../site-packages/NAME.dist-info/FILE` or `.../dist-packages/NAME.egg-info[/FILE]`.
_PY_META = re.compile(
    r"^(?P<site>(?:.*/)?(?:site|dist)-packages)/(?P<dir>[^/]+\.(?:dist|egg)-info)(?:/(?P<file>[^/]+))?$")
_PY_FILES = {"RECORD", "METADATA", "PKG-INFO", "installed-files.txt", "top_level.txt"}
# dpkg states in which the package's files are on disk (dpkg(1) "package states").
_DPKG_ON_DISK = {"installed", "half-configured", "unpacked", "half-installed",
                 "triggers-awaited", "triggers-pending"}
# usrmerge: the classic top-level directories are links into /usr on modern distributions.
_USRMERGE = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def norm(path: str) -> str:
    """A path as used inside this module: relative to the root, no `./`, no trailing slash."""
    path = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/")
    return "" if path == "." else path


def is_database_path(path: str) -> bool:
    """True for the files this module reads: the predicate to hand to a layer walk."""
    p = norm(path)
    if p == DPKG_STATUS or p == APK_INSTALLED:
        return True
    if p.startswith(DPKG_INFO):
        return p.endswith(".list")
    if p.startswith(DPKG_STATUS_D):
        return "/" not in p[len(DPKG_STATUS_D):]
    m = _PY_META.match(p)
    if not m:
        return False
    # A lone `NAME.egg-info` file is the PKG-INFO of a distutils install.
    return m["file"] in _PY_FILES if m["file"] else m["dir"].endswith(".egg-info")


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class DbVersion:
    """One layer's version of a database file: its bytes, or None when the layer deleted it.

    A deletion of a directory (whiteout of `foo.dist-info`, an opaque directory) removes every
    database file below it.
    """

    layer: int
    path: str
    data: bytes | None


@dataclass(frozen=True)
class FileRow:
    """A path of the final filesystem: its kind, size and the layer its kept copy comes from."""

    kind: str
    size: int
    layer: int | None = None
    linkname: str = ""


def _is_dir(kind: str) -> bool:
    return kind in ("dir", "directory")


def _is_symlink(kind: str) -> bool:
    return kind in ("symlink", "link", "sym")


class FinalFS:
    """The final filesystem as a path table, with lookups that follow symlinked directories.

    Package databases name files by the path they were installed under; on a usrmerged system
    dpkg still lists `/bin/ls` while the file lives at `usr/bin/ls` behind the `bin` link.
    """

    def __init__(self, rows: Mapping[str, FileRow]):
        self.rows: dict[str, FileRow] = {norm(p): r for p, r in rows.items()}
        self._sorted: list[str] | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FinalFS:
        """From a files table with at least `path, kind, size` (`layer`, `linkname` if present)."""
        import pandas as pd
        cols = frame.columns
        layers = frame["layer"] if "layer" in cols else [None] * len(frame)
        links = frame["linkname"] if "linkname" in cols else [""] * len(frame)
        rows = {}
        for path, kind, size, layer, link in zip(frame["path"], frame["kind"], frame["size"],
                                                 layers, links):
            rows[path] = FileRow(str(kind), int(size or 0),
                                 None if layer is None or pd.isna(layer) else int(layer),
                                 link if isinstance(link, str) else "")
        return cls(rows)

    def __contains__(self, path: str) -> bool:
        return self.resolve(path) is not None

    def resolve(self, path: str) -> str | None:
        """The path under which `path` is in the table (parent symlinks followed), or None."""
        p = norm(path)
        if p in self.rows:
            return p
        parts = p.split("/")
        for _ in range(40):  # ELOOP bound, as the kernel's
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                row = self.rows.get(prefix)
                if row is None:
                    return None
                if _is_symlink(row.kind):
                    target = row.linkname
                    if not target and parts[0] in _USRMERGE and i == 1:
                        target = "usr/" + prefix  # no link targets in the table: assume usrmerge
                    if not target:
                        return None
                    base = "" if target.startswith("/") else posixpath.dirname(prefix)
                    parts = norm(posixpath.join(base, target)).split("/") + parts[i:]
                    break
            else:
                return None
            joined = "/".join(parts)
            if joined in self.rows:
                return joined
        return None

    def get(self, path: str) -> FileRow | None:
        p = self.resolve(path)
        return None if p is None else self.rows[p]

    def under(self, prefix: str) -> Iterator[str]:
        """Every path strictly below the directory `prefix`."""
        return self.starting(norm(prefix) + "/")

    def starting(self, base: str) -> Iterator[str]:
        """Every path that starts with the string `base`."""
        if self._sorted is None:
            self._sorted = sorted(self.rows)
        i = bisect.bisect_left(self._sorted, base)
        while i < len(self._sorted) and self._sorted[i].startswith(base):
            yield self._sorted[i]
            i += 1


# ---------------------------------------------------------------------------------------------
# Parsers (text in, records out)


def parse_headers(text: str) -> dict[str, str]:
    """RFC 822 style `Key: value` fields up to the first blank line (METADATA, PKG-INFO)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        k, sep, v = line.partition(":")
        if sep:
            key = k.strip()
            fields.setdefault(key, v.strip())
    return fields


def parse_record(text: str) -> list[tuple[str, int | None]]:
    """A dist-info RECORD (CSV of path, hash, size): the paths and declared sizes.

    Read line by line so that one damaged line (a NUL, a stray quote) costs only that line.
    """
    out = []
    for line in text.splitlines():
        try:
            row = next(csv.reader([line]), None)
        except csv.Error:
            continue
        if not row or not row[0]:
            continue
        size = row[2].strip() if len(row) > 2 else ""
        out.append((row[0], int(size) if size.isdigit() else None))
    return out


@dataclass
class DebRecord:
    name: str
    version: str
    arch: str
    installed_size: int | None
    state: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.arch)

    @property
    def signature(self) -> str:
        # The paragraph as installed; only the want/flag words of Status may change without
        # touching the files (`apt-mark hold`), so they are left out.
        lines = [f"Status: {self.state}" if ln.startswith("Status:") else ln
                 for ln in self.text.splitlines()]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def parse_dpkg_status(text: str) -> list[DebRecord]:
    """Paragraphs of a dpkg status file whose package has its files on disk."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        if not para.strip():
            continue
        f = _deb_fields(para)
        name = f.get("Package")
        if not name:
            continue
        state = (f.get("Status", "install ok installed").split() or ["installed"])[-1]
        if state not in _DPKG_ON_DISK:
            continue
        size = f.get("Installed-Size", "")
        out.append(DebRecord(name, f.get("Version", ""), f.get("Architecture", ""),
                             int(size) if size.isdigit() else None, state, para.strip()))
    return out


def _deb_fields(para: str) -> dict[str, str]:
    fields = {}
    for line in para.splitlines():
        if line and line[0] not in " \t#":
            k, sep, v = line.partition(":")
            if sep:
                fields[k.strip()] = v.strip()
    return fields


def parse_dpkg_list(text: str) -> list[str]:
    """A dpkg `info/PKG.list`: the absolute paths the package installed (dirs included)."""
    return [ln for ln in text.splitlines() if ln.strip() and ln != "/."]


def parse_md5sums(text: str) -> list[str]:
    """A dpkg `md5sums` file (`HASH  path`): the paths, relative to the root."""
    out = []
    for ln in text.splitlines():
        parts = ln.split(None, 1)
        if len(parts) == 2:
            out.append(parts[1])
    return out


@dataclass
class ApkRecord:
    name: str
    version: str
    arch: str
    installed_size: int | None
    files: list[str]
    text: str

    @property
    def key(self) -> str:
        return self.name

    @property
    def signature(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def parse_apk_installed(text: str) -> list[ApkRecord]:
    """Records of Alpine's `lib/apk/db/installed` (apk-tools' one-letter fields)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        name = version = arch = ""
        size = None
        files: list[str] = []
        directory = ""
        for line in block.splitlines():
            tag, sep, value = line.partition(":")
            if not sep or len(tag) != 1:
                continue
            if tag == "P":
                name = value
            elif tag == "V":
                version = value
            elif tag == "A":
                arch = value
            elif tag == "I":
                size = int(value) if value.isdigit() else None
            elif tag == "F":
                directory = value
            elif tag == "R":
                files.append(posixpath.join(directory, value) if directory else value)
        if name:
            out.append(ApkRecord(name, version, arch, size, files, block.strip()))
    return out


# ---------------------------------------------------------------------------------------------
# Following database files through the layers


@dataclass
class _Tracked:
    data: bytes
    since: int | None          # first layer of the current content
    records: dict = field(default_factory=dict)  # key -> (signature, since) for multi-record files


class _History:
    """The final content of every database file and, per record, the layer it took that form."""

    def __init__(self) -> None:
        self.files: dict[str, _Tracked] = {}

    def feed(self, version: DbVersion) -> None:
        path = norm(version.path)
        if version.data is None:
            for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
                del self.files[p]
            return
        old = self.files.get(path)
        if old is not None and old.data == version.data:
            return
        tracked = _Tracked(version.data, version.layer)
        parse = _MULTI_RECORD.get(path)
        if parse is not None:
            before = old.records if old else {}
            for rec in parse(_text(version.data)):
                sig = rec.signature
                prev = before.get(rec.key)
                since = prev[1] if prev and prev[0] == sig else version.layer
                tracked.records[rec.key] = (sig, since)
        self.files[path] = tracked


_MULTI_RECORD = {DPKG_STATUS: parse_dpkg_status, APK_INSTALLED: parse_apk_installed}


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Packages


@dataclass
class Package:
    type: str
    name: str
    version: str
    arch: str
    location: str
    layer: int | None
    declared_size: int | None
    paths: list[str]          # what the database lists (files; dpkg lists directories too)
    size: int = 0
    files: int = 0
    missing_files: int = 0
    layers: tuple[int, ...] = ()

    def measure(self, fs: FinalFS | None) -> None:
        """Size and count the listed files as they are in the final filesystem.

        Without a filesystem the database's own figure stands in for the size.
        """
        if fs is None:
            self.size = self.declared_size or 0
            self.files = len(self.paths)
            return
        seen: set[str] = set()
        layers: set[int] = set()
        for p in self.paths:
            real = fs.resolve(p)
            if real is None:
                self.missing_files += 1
                continue
            if real in seen:
                continue
            seen.add(real)
            row = fs.rows[real]
            if _is_dir(row.kind):
                continue
            self.files += 1
            self.size += row.size
            if row.layer is not None:
                layers.add(row.layer)
        self.layers = tuple(sorted(layers))

    def row(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "version": self.version,
                "arch": self.arch, "size": self.size, "files": self.files, "layer": self.layer,
                "location": "/" + self.location, "declared_size": self.declared_size,
                "missing_files": self.missing_files, "layers": list(self.layers)}


def find_packages(versions: Iterable[DbVersion], fs: FinalFS | None = None) -> list[Package]:
    """Every package the final image's databases record, measured against the final fs.

    `versions` must come in layer order (oldest first). Without `fs`, sizes are the
    databases' own figures and nothing is checked against the filesystem.
    """
    hist = _History()
    for v in versions:
        if v.data is None or is_database_path(v.path):  # deleting a parent deletes them too
            hist.feed(v)
    files = hist.files
    if fs is not None:  # a database file the final fs does not have was deleted
        files = {p: t for p, t in files.items() if p in fs.rows}
    out: list[Package] = []
    out += _python_packages(files, fs)
    out += _deb_packages(files, fs)
    out += _apk_packages(files, fs)
    return out


def _python_packages(files: Mapping[str, _Tracked], fs: FinalFS | None) -> list[Package]:
    by_dir: dict[tuple[str, str], dict[str, _Tracked]] = {}
    for path, tracked in files.items():
        m = _PY_META.match(path)
        if m:
            by_dir.setdefault((m["site"], m["dir"]), {})[m["file"] or "PKG-INFO"] = tracked
    out = []
    for (site, dirname), meta in sorted(by_dir.items()):
        info_dir = f"{site}/{dirname}"
        single_file = dirname.endswith(".egg-info") and info_dir in files
        head = meta.get("METADATA") or meta.get("PKG-INFO")
        fields = parse_headers(_text(head.data)) if head else {}
        stem = dirname.rsplit(".", 1)[0]
        name = fields.get("Name") or stem.split("-")[0]
        version = fields.get("Version") or (stem.split("-")[1] if "-" in stem else "")
        evidence = meta.get("RECORD") or meta.get("installed-files.txt") or head
        if evidence is None:
            continue
        declared: int | None = None
        if "RECORD" in meta:
            paths = []
            declared = 0
            for rel, size in parse_record(_text(meta["RECORD"].data)):
                p = norm(rel if rel.startswith("/") else posixpath.join(site, rel))
                paths.append(p)
                declared += size or 0
        elif "installed-files.txt" in meta:
            paths = [norm(posixpath.join(info_dir, ln.strip()))
                     for ln in _text(meta["installed-files.txt"].data).splitlines() if ln.strip()]
        else:
            paths = [info_dir] if single_file else _egg_files(site, info_dir, meta, fs)
        out.append(Package("python", name, version, "", info_dir, evidence.since, declared,
                           paths))
        out[-1].measure(fs)
    return out


def _egg_files(site: str, info_dir: str, meta: Mapping[str, _Tracked],
               fs: FinalFS | None) -> list[str]:
    """An egg-info without a file list: its own files plus its top-level modules' files."""
    if fs is None:
        return []
    paths = list(fs.under(info_dir))
    tops = _text(meta["top_level.txt"].data).split() if "top_level.txt" in meta else []
    for top in tops:
        mod = norm(posixpath.join(site, top))
        paths += fs.under(mod)
        # foo.py, and extension modules foo.cpython-311-x86_64-linux-gnu.so / foo.so
        paths += [p for p in fs.starting(mod + ".") if "/" not in p[len(mod):]
                  and p.endswith((".py", ".so"))]
    return paths


def _deb_packages(files: Mapping[str, _Tracked], fs: FinalFS | None) -> list[Package]:
    out = []
    status = files.get(DPKG_STATUS)
    if status is not None:
        for rec in parse_dpkg_status(_text(status.data)):
            since = status.records.get(rec.key, (None, status.since))[1]
            lst = (files.get(f"{DPKG_INFO}{rec.name}:{rec.arch}.list")
                   or files.get(f"{DPKG_INFO}{rec.name}.list"))
            paths = [norm(p) for p in parse_dpkg_list(_text(lst.data))] if lst else []
            out.append(_deb(rec, DPKG_STATUS, since, paths, fs))
    for path, tracked in files.items():  # distroless: one paragraph per file
        if path.startswith(DPKG_STATUS_D) and not path.endswith(".md5sums"):
            sums = files.get(path + ".md5sums")
            paths = [norm(p) for p in parse_md5sums(_text(sums.data))] if sums else []
            for rec in parse_dpkg_status(_text(tracked.data)):
                out.append(_deb(rec, path, tracked.since, paths, fs))
    return out


def _deb(rec: DebRecord, location: str, since: int | None, paths: list[str],
         fs: FinalFS | None) -> Package:
    declared = rec.installed_size * 1024 if rec.installed_size is not None else None
    pkg = Package("deb", rec.name, rec.version, rec.arch, location, since, declared, paths)
    pkg.measure(fs)
    return pkg


def _apk_packages(files: Mapping[str, _Tracked], fs: FinalFS | None) -> list[Package]:
    db = files.get(APK_INSTALLED)
    if db is None:
        return []
    out = []
    for rec in parse_apk_installed(_text(db.data)):
        since = db.records.get(rec.key, (None, db.since))[1]
        pkg = Package("apk", rec.name, rec.version, rec.arch, APK_INSTALLED, since,
                      rec.installed_size, [norm(p) for p in rec.files])
        pkg.measure(fs)
        out.append(pkg)
    return out


def to_frame(pkgs: Iterable[Package]) -> pd.DataFrame:
    """The packages as a DataFrame, largest first."""
    import pandas as pd
    frame = pd.DataFrame([p.row() for p in pkgs], columns=COLUMNS)
    frame = frame.astype({"size": "int64", "files": "int64", "missing_files": "int64",
                          "layer": "Int64", "declared_size": "Int64"})
    return frame.sort_values(["size", "type", "name", "version"],
                             ascending=[False, True, True, True], kind="stable",
                             ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Entry point over an Inspection


def wanted(path: str) -> bool:
    """The paths a layer walk must hand over: database files, and whiteouts (deletions)."""
    return is_database_path(path) or posixpath.basename(path).startswith(WHITEOUT)


WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def database_versions(entries: Iterable[tuple[int, Any]]) -> Iterator[DbVersion]:
    """`(layer, TarEntry)` pairs in layer order -> DbVersion, whiteouts turned into deletions.

    A layer's whiteouts apply to the layers below it (OCI image-spec, "Whiteouts"), so each
    layer's deletions are yielded before its files, whatever the order inside its tar.
    """
    current = None
    deleted: list[DbVersion] = []
    written: list[DbVersion] = []
    for layer, entry in entries:
        if layer != current:
            yield from deleted
            yield from written
            current, deleted, written = layer, [], []
        path = norm(entry.path)
        parent, base = posixpath.split(path)
        if base == OPAQUE:
            deleted.append(DbVersion(layer, parent, None))  # the parent stays, its contents go
        elif base.startswith(WHITEOUT):
            deleted.append(DbVersion(layer, posixpath.join(parent, base[len(WHITEOUT):]), None))
        elif entry.data is not None and is_database_path(path):
            written.append(DbVersion(layer, path, entry.data))
    yield from deleted
    yield from written


def packages(inspection: Any) -> pd.DataFrame:
    """`Inspection.packages()`: one row per installed package, largest first.

    Reads the database files (and whiteouts) of every layer through
    `inspection.read_files(predicate)`, which yields `(layer_index, TarEntry)` in layer order,
    and measures each package against the final file table `inspection.files(final=True)`.
    """
    fs = FinalFS.from_frame(_final_table(inspection))
    versions = database_versions(inspection.read_files(wanted))
    return to_frame(find_packages(versions, fs))


def _final_table(inspection: Any) -> pd.DataFrame:
    """The final filesystem: `files(final=True)`, one row per path from the kept copy."""
    return inspection.files(final=True)

"""What dpkg does when it installs .debs, done on a layer's entries instead of a disk.

`unpack_deb` streams a .deb (an ar archive of control.tar.* and data.tar.*) into layer
entries; `database_entries` writes dpkg's database for them (status, info/PKG.list, md5sums,
conffiles, the maintainer scripts kept for a later `dpkg --remove`) and sets the alternatives
that postinst scripts declare with `update-alternatives --install`. Maintainer scripts are
never run: `check_scripts` refuses packages whose scripts create users or groups and
`script_notes` says what else was skipped (ldconfig, triggers, other postinst work).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import posixpath
import re
import shlex
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from ..errors import BuildError
from ..oci.tarwriter import DIR, FILE, HARDLINK, SYMLINK, Entry

# Maintainer-script commands that change the system in ways a layer cannot express safely.
REFUSED_SCRIPT = re.compile(r"\b(adduser|addgroup|useradd|groupadd|systemd-sysusers|"
                      r"dpkg-statoverride)\b")
ALTERNATIVES_DB = "var/lib/dpkg/alternatives"
INFO_DIR = "var/lib/dpkg/info"
STATUS = "var/lib/dpkg/status"
# control.tar members dpkg keeps in its info directory (besides md5sums and conffiles).
_CONTROL_KEPT = ("preinst", "postinst", "prerm", "postrm", "triggers", "shlibs", "symbols",
                 "templates", "config")
_SCRIPT_FILES = ("preinst", "postinst", "prerm", "postrm", "config")
_CHUNK = 1 << 20


def control_fields(stanza: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1] in (" ", "\t") and key:
            out[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            out[key] = value.strip()
    return out

def decompressed(raw, ext: str):
    if ext in (".xz", ".lzma"):
        return lzma.open(raw)
    if ext == ".gz":
        return gzip.open(raw)
    if ext == ".bz2":
        return bz2.open(raw)
    if ext == ".zst":
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw

# ---------------------------------------------------------------- unpacking

class _Slice(io.RawIOBase):
    """`size` bytes of `f` from its current position, as a stream."""

    def __init__(self, f, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        if n <= 0:
            return 0
        data = self.f.read(n)
        b[:len(data)] = data
        self.left -= len(data)
        return len(data)


def ar_members(f):
    """(name, stream) for each member of an ar archive (a .deb), read in order."""
    if f.read(8) != b"!<arch>\n":
        raise BuildError("a downloaded .deb is not an ar archive.")
    while True:
        head = f.read(60)
        if len(head) < 60:
            return
        name = head[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(head[48:58].decode("ascii").strip())
        start = f.tell()
        yield name, io.BufferedReader(_Slice(f, size), _CHUNK)
        f.seek(start + size + (size & 1))


def _tar_of(name: str, stream) -> tarfile.TarFile:
    ext = name[name.index(".tar") + 4:] if ".tar" in name else ""
    return tarfile.open(fileobj=decompressed(stream, ext), mode="r|")


@dataclass
class Unpacked:
    name: str
    control: dict[str, bytes]
    paths: list[str]               # as in data.tar, for info/PKG.list


def unpack_deb(deb: Path, staging: Path, entries: dict[str, Entry], label: str) -> Unpacked:
    """data.tar of `deb` as Entries (contents written under `staging`), plus its control files."""
    control: dict[str, bytes] = {}
    paths: list[str] = []
    with open(deb, "rb") as f:
        for name, stream in ar_members(f):
            if name.startswith("control.tar"):
                with _tar_of(name, stream) as tf:
                    for m in tf:
                        base = posixpath.basename(m.name)
                        if m.isfile() and base:
                            control[base] = tf.extractfile(m).read()  # type: ignore[union-attr]
            elif name.startswith("data.tar"):
                with _tar_of(name, stream) as tf:
                    for i, m in enumerate(tf):
                        path = posixpath.normpath(m.name.lstrip("./") or ".")
                        if path.startswith("..") or path.startswith("/"):
                            raise BuildError(f"{label} has an unsafe path {m.name!r}.")
                        paths.append("/." if path == "." else "/" + path)
                        if path == ".":
                            continue
                        entries[path] = member_entry(m, path, tf, staging, label, i)
    return Unpacked(label, control, paths)


def member_entry(m: tarfile.TarInfo, path: str, tf, staging: Path, label: str, i: int) -> Entry:
    mode = m.mode & 0o7777
    if m.isdir():
        return Entry(path, DIR, mode, m.uid, m.gid)
    if m.issym():
        return Entry(path, SYMLINK, 0o777, m.uid, m.gid, linkname=m.linkname)
    if m.islnk():
        return Entry(path, HARDLINK, mode, m.uid, m.gid,
                     linkname=posixpath.normpath(m.linkname.lstrip("./")))
    if not m.isfile():
        raise BuildError(f"{label} has a device or fifo {m.name!r}; install it with the engine.")
    host = staging / f"{label}-{i}"
    with open(host, "wb") as out:
        src = tf.extractfile(m)
        shutil.copyfileobj(src, out, _CHUNK)
    return Entry(path, FILE, mode, m.uid, m.gid, size=m.size, source=host)

def database_entries(status: str, alternatives: dict[str, str], arch: str, unpacked,
                     entries: dict[str, Entry]) -> list[str]:
    """Add to `entries` what dpkg writes when it installs the `unpacked` (package, Unpacked)
    pairs over an image whose status file is `status`: the new status, info/PKG.list,
    md5sums, conffiles and the kept control files, and the alternatives their postinst
    sets. Returns the notes on what was not run, for the build report."""
    new_status = merge_status(status, unpacked, entries)
    entries[STATUS] = bytes_entry(STATUS, new_status)
    for c, u in unpacked:
        stem = f"{c.name}:{arch}" if c.multi_arch == "same" else c.name
        files = {"list": ("\n".join(u.paths) + "\n").encode()}
        for k in ("md5sums", "conffiles", *_CONTROL_KEPT):
            if k in u.control:
                files[k] = u.control[k]
        for ext, data in sorted(files.items()):
            p = f"{INFO_DIR}/{stem}.{ext}"
            entries[p] = bytes_entry(p, data, 0o755 if ext in _SCRIPT_FILES else 0o644)
    return Alternatives(alternatives).apply(unpacked, entries) + script_notes(unpacked)


# ---------------------------------------------------------------- alternatives

@dataclass
class _Group:
    """dpkg's record of one alternative (/var/lib/dpkg/alternatives/NAME, update-alternatives(8))."""

    mode: str
    link: str
    slaves: list[tuple[str, str]]                    # (slave name, slave link)
    choices: list[tuple[str, int, list[str]]]        # (path, priority, slave paths)

    @classmethod
    def parse(cls, text: str) -> "_Group | None":
        lines = text.split("\n")
        try:
            mode, link, i = lines[0], lines[1], 2
            slaves = []
            while lines[i]:
                slaves.append((lines[i], lines[i + 1]))
                i += 2
            i += 1
            choices = []
            while i < len(lines) and lines[i]:
                n = len(slaves)
                choices.append((lines[i], int(lines[i + 1]), lines[i + 2:i + 2 + n]))
                i += 2 + n
        except (IndexError, ValueError):
            return None
        return cls(mode, link, slaves, choices)

    def text(self) -> str:
        out = [self.mode, self.link]
        for name, link in self.slaves:
            out += [name, link]
        out.append("")
        for path, prio, slave_paths in self.choices:
            out += [path, str(prio)] + slave_paths
        return "\n".join(out + [""]) + "\n"


class Alternatives:
    """`update-alternatives --install` of the new packages' postinst, done as dpkg would.

    The symlinks LINK -> /etc/alternatives/NAME -> PATH (and the slaves') point at the choice
    of highest priority (auto mode; a group the base set to manual keeps its links), and
    /var/lib/dpkg/alternatives/NAME records every choice, so `update-alternatives` in the
    image sees them. A command built from shell variables cannot be read and is reported.
    """

    def __init__(self, base: dict[str, str]):
        self.base = base

    def apply(self, unpacked, entries: dict[str, Entry]) -> list[str]:
        groups: dict[str, _Group] = {}
        unread: list[str] = []
        for c, u in unpacked:
            script = u.control.get("postinst", b"").decode("utf-8", "replace")
            for args in _install_commands(script):
                parsed = _parse_install(args)
                if parsed is None:
                    unread.append(c.name)
                    continue
                link, name, path, prio, slaves = parsed
                g = groups.get(name) or (_Group.parse(self.base[name]) if name in self.base
                                         else None) or _Group("auto", link, [], [])
                for sname, slink, _ in slaves:
                    if sname not in [n for n, _ in g.slaves]:
                        g.slaves.append((sname, slink))
                        g.choices = [(p, pr, sp + [""]) for p, pr, sp in g.choices]
                given = {n: sp for n, _, sp in slaves}
                g.choices = [ch for ch in g.choices if ch[0] != path]
                g.choices.append((path, prio, [given.get(n, "") for n, _ in g.slaves]))
                groups[name] = g
        notes = []
        for name, g in sorted(groups.items()):
            db = f"{ALTERNATIVES_DB}/{name}"
            entries[db] = bytes_entry(db, g.text().encode())
            if g.mode != "auto" or not g.choices:
                continue
            best = max(g.choices, key=lambda ch: ch[1])
            self._link(entries, g.link, name, best[0])
            for (sname, slink), spath in zip(g.slaves, best[2]):
                if spath:
                    self._link(entries, slink, sname, spath)
            notes.append(f"{name} -> {best[0]}")
        out = [f"apt: alternatives set as update-alternatives would: {', '.join(notes)}"] \
            if notes else []
        if unread:
            out.append("apt: update-alternatives with shell variables not done for: "
                       + ", ".join(sorted(set(unread))))
        return out

    @staticmethod
    def _link(entries: dict[str, Entry], link: str, name: str, target: str) -> None:
        via = f"etc/alternatives/{name}"
        entries[via] = Entry(via, SYMLINK, 0o777, linkname=target)
        rel = link.lstrip("/")
        entries[rel] = Entry(rel, SYMLINK, 0o777, linkname="/" + via)


def _install_commands(script: str) -> list[list[str]]:
    """The argument lists of `update-alternatives ... --install ...` commands in a shell script."""
    joined = re.sub(r"\\\n\s*", " ", script)
    out = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0]
        at = line.find("update-alternatives")
        if at < 0 or "--install" not in line:
            continue
        rest = re.split(r"\s*(?:&&|\|\||;|\|)", line[at + len("update-alternatives"):])[0]
        try:
            out.append(shlex.split(rest))
        except ValueError:
            out.append(["$"])
    return out


def _parse_install(args: list[str]):
    """(link, name, path, priority, [(slave name, slave link, slave path)]) or None."""
    if any("$" in a or "`" in a for a in args):
        return None
    try:
        i = args.index("--install")
        link, name, path, prio = args[i + 1:i + 5]
        slaves, j = [], i + 5
        while j < len(args):
            if args[j] == "--slave":
                slink, sname, spath = args[j + 1:j + 4]
                slaves.append((sname, slink, spath))
                j += 4
            else:
                j += 1
        return link, name, path, int(prio), slaves
    except (ValueError, IndexError):
        return None

def script_notes(unpacked) -> list[str]:
    """What dpkg would have run and this step did not, one line per kind, for the build report."""
    ldconfig, triggers, scripts, conf = [], [], [], []
    for c, u in unpacked:
        acts = u.control.get("triggers", b"").decode("utf-8", "replace").split("\n")
        acts = [a.split() for a in acts if a.strip() and not a.startswith("#")]
        if acts and all(a[-1] == "ldconfig" for a in acts):
            ldconfig.append(c.name)
        elif acts:
            triggers.append(f"{c.name} ({', '.join(a[-1] for a in acts)})")
        run = [s for s in ("preinst", "postinst") if s in u.control]
        if run:
            scripts.append(f"{c.name} ({', '.join(run)})")
        conf += [p for p in u.paths if p.startswith("/etc/ld.so.conf.d/") and p.endswith(".conf")]
    notes = []
    if conf:
        notes.append(f"apt: {', '.join(conf)} adds library directories that the loader searches "
                     "only through /etc/ld.so.cache, which ldconfig did not rebuild: set "
                     "LD_LIBRARY_PATH to them (%image env) or install with the engine")
    if ldconfig:
        notes.append(f"apt: ldconfig not run for {len(ldconfig)} library packages: the loader "
                     "finds libraries in the standard directories (/usr/lib/<triplet>) without "
                     "/etc/ld.so.cache")
    if scripts:
        notes.append("apt: maintainer scripts not run: " + ", ".join(scripts))
    if triggers:
        notes.append("apt: triggers not run: " + ", ".join(triggers))
    return notes


def check_scripts(c, u: Unpacked) -> None:
    for script in ("preinst", "postinst"):
        body = u.control.get(script, b"").decode("utf-8", "replace")
        m = REFUSED_SCRIPT.search(body)
        if m:
            raise BuildError(f"{c.name} {c.version} runs {m.group(1)} in its {script} (it "
                             "creates users or groups), which cannot be done without running "
                             "it. Install it with the engine instead: %image run apt-get "
                             f"update && apt-get install -y {c.name}.")

def merge_status(status: str, unpacked, entries: dict[str, Entry]) -> bytes:
    """The base's status with the new packages' stanzas, sorted by name as dpkg writes it."""
    stanzas = {}
    for block in status.split("\n\n"):
        block = block.strip("\n")
        f = control_fields(block)
        if f.get("package"):
            stanzas[(f["package"], f.get("architecture", ""))] = block
    for c, u in unpacked:
        control = u.control.get("control", b"").decode("utf-8", "replace").strip("\n")
        lines = control.splitlines()
        conffiles = u.control.get("conffiles", b"").decode().split()
        out = [lines[0], "Status: install ok installed"] + lines[1:]
        if conffiles:
            conf = ["Conffiles:"]
            for path in conffiles:
                e = entries.get(path.lstrip("/"))
                md5 = _md5(e) if e is not None and e.kind == FILE else "newconffile"
                conf.append(f" {path} {md5}")
            at = next((i for i, l in enumerate(out) if l.startswith("Description:")), len(out))
            out[at:at] = conf
        for key in [k for k in stanzas if k[0] == c.name]:
            del stanzas[key]
        stanzas[(c.name, c.arch)] = "\n".join(out)
    return ("\n\n".join(stanzas[k] for k in sorted(stanzas)) + "\n\n").encode("utf-8")


def _md5(e: Entry) -> str:
    h = hashlib.md5()  # noqa: S324 - dpkg's conffile checksum
    with open(e.source, "rb") as f:  # type: ignore[arg-type]
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def bytes_entry(path: str, data: bytes, mode: int = 0o644) -> Entry:
    return Entry(path, FILE, mode, 0, 0, size=len(data), source=bytes(data))

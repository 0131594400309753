"""System packages from the base image's own distribution, laid into one layer without a container.

1. The base tells what it is: `/etc/os-release` (Debian or Ubuntu), `/var/lib/dpkg/status`
   (what is installed), its apt sources (mirror, suite, components) and its archive keyrings
   (`/etc/apt/trusted.gpg.d`, `/usr/share/keyrings`).
2. `InRelease` is fetched and its signature checked with `gpgv` (the verifier apt itself uses)
   against those keyrings; `Packages` is checked against the SHA256 and size that `InRelease`
   lists, and every `.deb` against the SHA256 and size that `Packages` lists. Everything is
   streamed to a cache named by its hash and renamed into place only once verified.
3. Depends and Pre-Depends are resolved (versioned relations, alternatives, virtual packages);
   what the base's dpkg database already satisfies is not added. Recommends are not installed
   (as `apt-get install --no-install-recommends`).
4. Each `.deb`'s data.tar is unpacked into a staging tree; the dpkg database is updated as dpkg
   would (see dpkg.py: `status` with the new stanzas, `info/PKG.list`, `md5sums`, `conffiles`, the
   maintainer scripts kept for a later `dpkg --remove`). Maintainer scripts are not run: what
   they would have done is reported, and packages whose scripts create users or groups are
   refused with a pointer to the engine (`%image run apt-get install ...`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path

from debian.deb822 import PkgRelation
from debian.debian_support import Version, version_compare

from ..errors import BuildError
from ..oci.tarwriter import Entry
from .dpkg import (ALTERNATIVES_DB, check_scripts, control_fields, database_entries, decompressed,
                   unpack_deb)
from .target import scan_layers

APT_LABEL = "org.nbimages.apt"
SNAPSHOT_ARCHIVES = {"debian": "https://snapshot.debian.org/archive/debian/",
                     "ubuntu": "https://snapshot.ubuntu.com/ubuntu/"}
DEFAULT_MIRRORS = {"debian": "http://deb.debian.org/debian",
                   "ubuntu": "http://archive.ubuntu.com/ubuntu"}
HOST_KEYRINGS = {"debian": ("/usr/share/keyrings/debian-archive-keyring.gpg",),
                 "ubuntu": ("/usr/share/keyrings/ubuntu-archive-keyring.gpg",)}
# dpkg's architecture names are the OCI ones except for these.
_DPKG_ARCH = {"386": "i386", "ppc64le": "ppc64el", "arm": "armhf", "loong64": "loong64"}
_TIMEOUT = 60
_CHUNK = 1 << 20
_index_lock = threading.Lock()
_indexes: dict[str, dict] = {}


# ---------------------------------------------------------------- the base image's facts

@dataclass
class Source:
    """One `deb URI SUITE COMPONENT...` line (or deb822 stanza) of the base's apt sources."""

    uri: str
    suite: str
    components: list[str]
    signed_by: str | None = None


@dataclass
class BaseFacts:
    distro: str                       # os-release ID: debian, ubuntu
    codename: str
    arch: str                         # dpkg architecture: amd64, arm64
    status: str                       # /var/lib/dpkg/status as text
    sources: list[Source]
    keyrings: dict[str, bytes] = field(default_factory=dict)  # image path -> binary keyring
    alternatives: dict[str, str] = field(default_factory=dict)  # name -> dpkg's record of it


def _wanted(path: str) -> str | None:
    if path in ("etc/os-release", "usr/lib/os-release", "var/lib/dpkg/status",
                "etc/apt/sources.list", "etc/apt/trusted.gpg"):
        return path
    if path.startswith(("etc/apt/sources.list.d/", "etc/apt/trusted.gpg.d/",
                        "usr/share/keyrings/", "etc/apt/keyrings/", ALTERNATIVES_DB + "/")):
        return path
    return None


class BaseFiles:
    """The base's files that `wanted` names, read in one streaming pass over its layers."""

    def __init__(self, image, wanted):
        self.tree = scan_layers(image, interesting=wanted, fact=lambda kind, data: data)
        self.paths = sorted(self.tree.entries)

    def data(self, path: str) -> bytes | None:
        e = self.tree.get(path)
        return e.fact if e is not None else None

    def text(self, path: str) -> str | None:
        data = self.data(path)
        return data.decode("utf-8", "replace") if data is not None else None

    def os_release(self) -> dict[str, str]:
        return _os_release(self.text("etc/os-release") or self.text("usr/lib/os-release") or "")


def read_base(image) -> BaseFacts:
    """What the apt step needs from the image below it (one streaming pass over its layers)."""
    files = BaseFiles(image, _wanted)
    text = files.text
    osr = files.os_release()
    distro = osr.get("ID", "")
    family = {distro, *osr.get("ID_LIKE", "").split()}
    status = text("var/lib/dpkg/status")
    if not ({"debian", "ubuntu"} & family) or status is None:
        what = osr.get("PRETTY_NAME") or distro or "an image without /etc/os-release"
        raise BuildError(f"the apt step needs a Debian or Ubuntu base with a dpkg database "
                         f"(/var/lib/dpkg/status); the base is {what}. Start from a Debian or "
                         "Ubuntu image (e.g. python:3.12-slim), or use a pip step for Python "
                         "packages.")
    if distro not in ("debian", "ubuntu"):
        distro = "ubuntu" if "ubuntu" in family else "debian"
    sources = parse_sources_list(text("etc/apt/sources.list") or "")
    keyrings: dict[str, bytes] = {}
    alternatives: dict[str, str] = {}
    for path in files.paths:
        if path.startswith("etc/apt/sources.list.d/"):
            body = text(path) or ""
            if path.endswith(".list"):
                sources += parse_sources_list(body)
            elif path.endswith(".sources"):
                sources += parse_deb822_sources(body)
        elif path.startswith(ALTERNATIVES_DB + "/"):
            alternatives[path.rsplit("/", 1)[1]] = text(path) or ""
        elif _wanted(path) and (path.endswith((".gpg", ".asc")) or path == "etc/apt/trusted.gpg"):
            data = files.data(path)
            if data:
                keyrings["/" + path] = dearmor(data)
    arch = image.config.get("architecture") or "amd64"
    return BaseFacts(distro, osr.get("VERSION_CODENAME", ""), _DPKG_ARCH.get(arch, arch),
                     status, sources, keyrings, alternatives)


def _os_release(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def parse_sources_list(text: str) -> list[Source]:
    """`deb [signed-by=...] URI SUITE COMPONENT...` lines (deb-src and comments skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb ") and not line.startswith("deb\t"):
            continue
        options = {}
        m = re.match(r"deb\s+\[([^\]]*)\]\s+(.*)", line)
        rest = m.group(2) if m else line[3:].strip()
        if m:
            for opt in m.group(1).split():
                k, _, v = opt.partition("=")
                options[k.lower()] = v
        parts = rest.split()
        if len(parts) >= 2:
            out.append(Source(parts[0], parts[1], parts[2:], options.get("signed-by")))
    return out


def parse_deb822_sources(text: str) -> list[Source]:
    """The deb822 `.sources` form: Types/URIs/Suites/Components/Signed-By stanzas."""
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = control_fields(stanza)
        if "deb" not in fields.get("types", "").split() or \
                fields.get("enabled", "yes").lower() == "no":
            continue
        signed = fields.get("signed-by", "").strip() or None
        if signed and "\n" in signed:  # an embedded key block, not a path
            signed = None
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(Source(uri, suite, fields.get("components", "").split(), signed))
    return out

def dearmor(data: bytes) -> bytes:
    """An ASCII-armored OpenPGP key block as binary (RFC 4880 section 6.2); binary unchanged."""
    text = data.decode("ascii", "replace")
    if "-----BEGIN PGP" not in text:
        return data
    out = b""
    for block in re.findall(r"-----BEGIN PGP [A-Z ]+-----\r?\n(.*?)-----END PGP", text, re.S):
        body = block.split("\n\n", 1)[-1] if re.match(r"^[\w-]+:", block) else block
        lines = [l.strip() for l in body.strip().splitlines()
                 if l.strip() and not l.startswith("=")]
        out += base64.b64decode("".join(lines))
    return out

# ---------------------------------------------------------------- the archive

@dataclass
class Candidate:
    """One package stanza of a Packages index (only the fields the resolver needs)."""

    name: str
    version: str
    arch: str
    filename: str
    sha256: str
    size: int
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    multi_arch: str = ""
    conflicts: str = ""
    breaks: str = ""
    base_uri: str = ""

    @property
    def ver(self) -> Version:
        return Version(self.version)


class Archive:
    """Fetches and verifies InRelease, Packages and .debs of one mirror; cached by hash."""

    def __init__(self, cache: Path, keyrings: list[Path]):
        self.cache = cache
        self.keyrings = keyrings
        (cache / "sha256").mkdir(parents=True, exist_ok=True)

    def _get(self, url: str, *, missing_ok: bool = False):
        """The open response for `url`; None for a 404 when `missing_ok`."""
        try:
            return urllib.request.urlopen(url, timeout=_TIMEOUT)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as e:
            if missing_ok and e.code == 404:
                return None
            raise BuildError(f"the package mirror answered {e.code} for {url}; check the "
                             "mirror address (mirror=...) and the suite of the base.") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise BuildError(f"cannot reach the package mirror for {url} ({reason}); pass "
                             "mirror=URL for one this machine reaches.") from None

    def release(self, source: Source, arch: str) -> dict[str, tuple[str, int]]:
        """The verified SHA256 table of the suite's InRelease: path -> (sha256, size)."""
        url = f"{source.uri.rstrip('/')}/dists/{source.suite}/InRelease"
        with self._get(url) as r:
            signed = r.read(64 << 20)
        text = self._verify(signed, url)
        fields = control_fields(text)
        until = fields.get("valid-until")
        if until and not self._snapshot(source.uri):
            with contextlib.suppress(ValueError, TypeError):
                if parsedate_to_datetime(until).timestamp() < time.time():
                    raise BuildError(f"{url} expired on {until} (Valid-Until): the mirror is "
                                     "stale; use a current mirror, or a snapshot= for old "
                                     "states of the archive.")
        # Acquire-By-Hash: indexes are also kept under by-hash/SHA256/<hash>, so a mirror
        # updated between our InRelease and Packages requests still serves the signed one.
        self.by_hash = fields.get("acquire-by-hash", "").lower() == "yes"
        table = {}
        for line in fields.get("sha256", "").splitlines():
            parts = line.split()
            if len(parts) == 3:
                table[parts[2]] = (parts[0], int(parts[1]))
        return table

    @staticmethod
    def _snapshot(uri: str) -> bool:
        return any(uri.startswith(s) for s in SNAPSHOT_ARCHIVES.values())

    def _verify(self, signed: bytes, url: str) -> str:
        gpgv = shutil.which("gpgv")
        if gpgv is None:
            raise BuildError("the apt step checks the archive's signature with gpgv, which is "
                             "not installed; install it (Debian/Ubuntu: apt-get install gpgv).")
        if not self.keyrings:
            raise BuildError(f"no archive keyring to check {url}: the base has none in "
                             "/etc/apt/trusted.gpg.d or /usr/share/keyrings and this machine "
                             "has no debian-archive-keyring; pass keyring=FILE.")
        with tempfile.TemporaryDirectory(prefix="gpgv-") as d:
            src, out = Path(d) / "InRelease", Path(d) / "Release"
            src.write_bytes(signed)
            cmd = [gpgv, "--homedir", d, "--output", str(out)]
            for k in self.keyrings:
                cmd += ["--keyring", str(k)]
            proc = subprocess.run(cmd + [str(src)], capture_output=True, text=True,
                                  timeout=120, check=False)
            if proc.returncode != 0 or not out.exists():
                why = " ".join(l for l in proc.stderr.splitlines() if "gpgv:" in l)[-400:]
                raise BuildError(f"the signature of {url} does not verify against the "
                                 f"archive keyring ({why or 'no valid signature'}); the mirror "
                                 "or the connection is not trustworthy, or the base's keyring "
                                 "is too old: pass keyring=FILE with the archive's key.")
            return out.read_text("utf-8", "replace")

    by_hash = False

    def fetch(self, url: str, sha256: str, size: int | None, *, first: str | None = None
              ) -> Path:
        """`url`'s content, checked against `sha256` (and `size`) while it streams to the cache.

        `first` is a URL tried before `url` (by-hash); a 404 there falls back to `url`.
        """
        target = self.cache / "sha256" / sha256
        if target.exists():
            return target
        response = self._get(first, missing_ok=True) if first else None
        fd, tmp = tempfile.mkstemp(prefix="dl-", dir=self.cache)
        try:
            h, n = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as f, (response or self._get(url)) as r:
                while chunk := r.read(_CHUNK):
                    h.update(chunk)
                    n += len(chunk)
                    if size is not None and n > size:
                        break
                    f.write(chunk)
            if h.hexdigest() != sha256 or (size is not None and n != size):
                raise BuildError(f"{url} does not match the archive's signed index (expected "
                                 f"sha256 {sha256[:16]}... and {size} bytes, got "
                                 f"{h.hexdigest()[:16]}... and {n} bytes): the download was "
                                 "altered or the mirror is inconsistent; nothing was installed. "
                                 "Try again or use another mirror.")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target

    def packages(self, source: Source, component: str, arch: str,
                 table: dict[str, tuple[str, int]]) -> list[Candidate]:
        """The component's Packages index for `arch`, verified and parsed (memoised by hash)."""
        stem = f"{component}/binary-{arch}/Packages"
        for ext in (".xz", ".gz", ""):
            if stem + ext in table:
                sha, size = table[stem + ext]
                break
        else:
            raise BuildError(f"{source.uri} {source.suite} has no {stem} in its InRelease: "
                             f"the suite has no {component} packages for {arch}.")
        with _index_lock:
            hit = _indexes.get(sha)
        if hit is None:
            where = f"{source.uri.rstrip('/')}/dists/{source.suite}/"
            path = self.fetch(where + stem + ext, sha, size,
                              first=(f"{where}{component}/binary-{arch}/by-hash/SHA256/{sha}"
                                     if self.by_hash else None))
            with decompressed(open(path, "rb"), ext) as stream:
                hit = parse_packages(io.TextIOWrapper(stream, "utf-8", "replace"))
            with _index_lock:
                _indexes[sha] = hit
        return hit

_INDEX_FIELDS = {"package": "name", "version": "version", "architecture": "arch",
                 "filename": "filename", "sha256": "sha256", "size": "size",
                 "depends": "depends", "pre-depends": "pre_depends", "provides": "provides",
                 "multi-arch": "multi_arch", "conflicts": "conflicts", "breaks": "breaks"}


def parse_packages(lines) -> list[Candidate]:
    """The stanzas of a Packages file, read line by line (45 MB for Debian main)."""
    out: list[Candidate] = []
    cur: dict[str, str] = {}
    key = None
    for line in lines:
        if line == "\n" or not line.strip():
            if cur.get("name"):
                out.append(_candidate(cur))
            cur, key = {}, None
            continue
        if line[0] in " \t":
            if key:
                cur[key] += " " + line.strip()
            continue
        k, _, v = line.partition(":")
        key = _INDEX_FIELDS.get(k.lower())
        if key:
            cur[key] = v.strip()
    if cur.get("name"):
        out.append(_candidate(cur))
    return out


def _candidate(d: dict[str, str]) -> Candidate:
    return Candidate(d["name"], d.get("version", ""), d.get("arch", ""), d.get("filename", ""),
                     d.get("sha256", ""), int(d.get("size") or 0), d.get("depends", ""),
                     d.get("pre_depends", ""), d.get("provides", ""), d.get("multi_arch", ""),
                     d.get("conflicts", ""), d.get("breaks", ""))


# ---------------------------------------------------------------- resolving

@dataclass
class Installed:
    name: str
    version: str
    provides: str = ""
    multi_arch: str = ""
    conflicts: str = ""
    breaks: str = ""


def installed_packages(status: str) -> dict[str, Installed]:
    """Packages whose Status is `install ok installed` in a dpkg status file."""
    out = {}
    for stanza in status.split("\n\n"):
        f = control_fields(stanza)
        if f.get("package") and f.get("status", "").split()[-1:] == ["installed"]:
            out[f["package"]] = Installed(f["package"], f.get("version", ""),
                                          f.get("provides", ""), f.get("multi-arch", ""),
                                          f.get("conflicts", ""), f.get("breaks", ""))
    return out


_OPS = {"<<": lambda c: c < 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
        ">=": lambda c: c >= 0, ">>": lambda c: c > 0, "<": lambda c: c <= 0,
        ">": lambda c: c >= 0}


def satisfies(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    op, wanted = constraint
    return _OPS[op](version_compare(version, wanted))


def _relations(text: str) -> list[list[dict]]:
    return PkgRelation.parse_relations(text) if text.strip() else []


def _provided(text: str) -> list[tuple[str, str | None]]:
    out = []
    for group in _relations(text):
        for rel in group:
            v = rel.get("version")
            out.append((rel["name"], v[1] if v and v[0] == "=" else None))
    return out


class Resolver:
    """Depends + Pre-Depends closure of the requested packages against an index and a base.

    Deterministic: the highest version of a package (or the pinned one), the first
    alternative of an OR group that can be had, and for a virtual package the provider with
    the smallest name. The base's installed packages (and what they provide) count as given.
    """

    def __init__(self, candidates: list[Candidate], installed: dict[str, Installed], arch: str,
                 where: str):
        self.arch = arch
        self.where = where
        self.by_name: dict[str, list[Candidate]] = {}
        self.providers: dict[str, list[tuple[Candidate, str | None]]] = {}
        for c in candidates:
            if c.arch not in (arch, "all"):
                continue
            self.by_name.setdefault(c.name, []).append(c)
            for name, ver in _provided(c.provides):
                self.providers.setdefault(name, []).append((c, ver))
        for lst in self.by_name.values():
            lst.sort(key=lambda c: c.ver, reverse=True)
        self.installed = installed
        self.base_provides: dict[str, list[str | None]] = {}
        for p in installed.values():
            for name, ver in _provided(p.provides):
                self.base_provides.setdefault(name, []).append(ver)
        self.chosen: dict[str, Candidate] = {}

    def _have(self, rel: dict) -> bool:
        """A relation already met by the base or by what was chosen so far."""
        name, cons = rel["name"], rel.get("version")
        for pool in (self.chosen,):
            c = pool.get(name)
            if c is not None and satisfies(c.version, cons):
                return True
        p = self.installed.get(name)
        if p is not None and name not in self.chosen and satisfies(p.version, cons):
            return True
        for ver in self.base_provides.get(name, []):
            if cons is None or (ver is not None and satisfies(ver, cons)):
                return True
        for c in self.chosen.values():
            for pname, ver in _provided(c.provides):
                if pname == name and (cons is None or (ver is not None and satisfies(ver, cons))):
                    return True
        return False

    def _find(self, rel: dict) -> Candidate | None:
        name, cons = rel["name"], rel.get("version")
        for c in self.by_name.get(name, []):
            if satisfies(c.version, cons):
                return c
        provs = [c for c, ver in self.providers.get(name, [])
                 if cons is None or (ver is not None and satisfies(ver, cons))]
        return min(provs, key=lambda c: c.name) if provs else None

    def request(self, spec: str) -> None:
        name, _, version = spec.partition("=")
        cands = self.by_name.get(name, [])
        if not cands:
            if name in self.providers:
                names = sorted({c.name for c, _ in self.providers[name]})
                raise BuildError(f"{name} is a virtual package in {self.where}, provided by "
                                 f"{', '.join(names[:8])}; name one of those.")
            raise BuildError(f"no package named {name!r} in {self.where}; check the spelling "
                             "(package names are lower case, e.g. libgomp1) and that the base's "
                             "suite has it.")
        if version:
            pick = next((c for c in cands if c.version == version), None)
            if pick is None:
                have = ", ".join(c.version for c in cands)
                raise BuildError(f"{name}={version} is not in {self.where} (it has {have}); "
                                 "pin a version the mirror has, or use snapshot= for an older "
                                 "state of the archive.")
        else:
            pick = cands[0]
        prev = self.chosen.get(name)
        if prev is not None and prev.version != pick.version:
            raise BuildError(f"{name} is asked for twice, as {prev.version} and {pick.version}.")
        self._add(pick, [name])

    def _add(self, pkg: Candidate, chain: list[str]) -> None:
        if self.chosen.get(pkg.name) is pkg:
            return
        self.chosen[pkg.name] = pkg
        for text in (pkg.pre_depends, pkg.depends):
            for group in _relations(text):
                group = [r for r in group if _arch_ok(r, self.arch)]
                if not group or any(self._have(r) for r in group):
                    continue
                for rel in group:
                    found = self._find(rel)
                    if found is not None and (found.name not in self.chosen
                                              or self.chosen[found.name] is found):
                        self._add(found, chain + [found.name])
                        break
                else:
                    raise BuildError(
                        f"cannot install {chain[0]}: {' -> '.join(chain)} depends on "
                        f"{_show_group(group)}, which {self.where} does not have"
                        f"{self._base_note(group)}. The package cannot be installed from this "
                        "suite: pick another version, add the component or suite that has the "
                        "dependency (mirror=/sources), or install it with the engine.")

    def check_conflicts(self) -> None:
        """Conflicts and Breaks between the chosen packages and what the image will have."""
        final = {n: p.version for n, p in self.installed.items()}
        final.update({n: c.version for n, c in self.chosen.items()})
        for who, text, kind in self._declared():
            for group in _relations(text):
                for rel in group:
                    other = rel["name"]
                    if other == who or other not in final or \
                            not satisfies(final[other], rel.get("version")) or \
                            (who not in self.chosen and other not in self.chosen):
                        continue
                    fix = (f"add {other} to the packages to upgrade it too, or "
                           if other in self.installed and other not in self.chosen else "")
                    raise BuildError(
                        f"{who} {final[who]} {kind} {_show_group([rel])}, and the image would "
                        f"have {other} {final[other]}: {fix}install them with the engine "
                        "(%image run apt-get install ...), which can remove packages.")

    def _declared(self):
        for c in self.chosen.values():
            yield c.name, c.conflicts, "conflicts with"
            yield c.name, c.breaks, "breaks"
        for p in self.installed.values():
            if p.name not in self.chosen:
                yield p.name, p.conflicts, "conflicts with"
                yield p.name, p.breaks, "breaks"

    def _base_note(self, group: list[dict]) -> str:
        have = [f"{r['name']} {self.installed[r['name']].version}" for r in group
                if r["name"] in self.installed]
        return f" (the base has {', '.join(have)})" if have else ""


def _arch_ok(rel: dict, arch: str) -> bool:
    archs = rel.get("arch")
    if not archs:
        return True
    enabled = [a.arch for a in archs if a.enabled]
    disabled = [a.arch for a in archs if not a.enabled]
    return (arch in enabled) if enabled else (arch not in disabled)


def _show_group(group: list[dict]) -> str:
    def one(r):
        v = r.get("version")
        return r["name"] + (f" ({v[0]} {v[1]})" if v else "")
    return " | ".join(one(r) for r in group)

# ---------------------------------------------------------------- the layer

@dataclass
class AptResult:
    entries: list[Entry]
    pins: list[dict]
    notes: list[str]


def apt_cache(store, kind: str = "apt") -> Path:
    """Where verified indexes and .debs (an apk step: .apk files) are kept:
    NBIMAGES_APT_CACHE (NBIMAGES_APK_CACHE) or the store's apt/ (apk/)."""
    env = os.environ.get(f"NBIMAGES_{kind.upper()}_CACHE")
    return Path(env) if env else Path(store.home) / kind


def _mirror_sources(facts: BaseFacts, mirror: str | None, snapshot: str | None,
                    suite: str | None) -> list[Source]:
    if snapshot:
        if not re.fullmatch(r"\d{8}T\d{6}Z", snapshot):
            raise BuildError(f"snapshot={snapshot!r} is not a timestamp such as "
                             "20250520T000000Z.")
        mirror = SNAPSHOT_ARCHIVES[facts.distro] + snapshot
    sources = [s for s in facts.sources if not s.uri.startswith(("cdrom:", "file:"))]
    if mirror:
        if not mirror.startswith(("http://", "https://")):
            raise BuildError(f"mirror={mirror!r} must be an http:// or https:// URL of a "
                             f"{facts.distro} archive.")
        main = [s for s in sources if "security" not in s.uri and "security" not in s.suite]
        suites = [s.suite for s in main] or [suite or facts.codename]
        comps = (main[0].components if main else None) or ["main"]
        sources = [Source(mirror.rstrip("/"), s, comps) for s in dict.fromkeys(suites)]
    if suite:
        sources = [Source(s.uri, suite, s.components, s.signed_by) for s in sources[:1]]
    if not sources:
        if not facts.codename:
            raise BuildError("the base has no apt sources and no VERSION_CODENAME in "
                             "/etc/os-release; pass mirror=URL and suite=NAME.")
        sources = [Source(DEFAULT_MIRRORS[facts.distro], facts.codename, ["main"])]
    return sources


def _keyrings(facts: BaseFacts, source: Source, given: list[str] | None, workdir: Path
              ) -> list[Path]:
    if given:
        missing = [k for k in given if not Path(k).is_file()]
        if missing:
            raise BuildError(f"keyring file {missing[0]} does not exist.")
        out = []
        for i, k in enumerate(given):
            p = workdir / f"given-{i}.gpg"
            p.write_bytes(dearmor(Path(k).read_bytes()))
            out.append(p)
        return out
    chosen = {p: b for p, b in facts.keyrings.items()
              if p.startswith(("/etc/apt/trusted.gpg.d/", "/etc/apt/trusted.gpg"))}
    if source.signed_by and source.signed_by in facts.keyrings:
        chosen = {source.signed_by: facts.keyrings[source.signed_by]}
    elif not chosen:
        name = f"/usr/share/keyrings/{facts.distro}-archive-keyring.gpg"
        chosen = {name: facts.keyrings[name]} if name in facts.keyrings else {}
    out = []
    for i, (_, data) in enumerate(sorted(chosen.items())):
        p = workdir / f"base-{i}.gpg"
        p.write_bytes(data)
        out.append(p)
    if not out:
        out = [Path(h) for h in HOST_KEYRINGS.get(facts.distro, ()) if Path(h).is_file()]
    return out


def apt_layer(parent, packages: list[str], staging: Path, *, store, mirror: str | None = None,
              snapshot: str | None = None, suite: str | None = None,
              keyring: list[str] | None = None) -> AptResult:
    """Resolve, download, verify and unpack `packages` for the image `parent` (see module doc).

    Returns the layer's entries (file contents under `staging`), the pins (name, version,
    architecture, sha256) and notes on the maintainer scripts that were not run.
    """
    specs = check_packages(packages)
    facts = read_base(parent)
    cache = apt_cache(store)
    candidates: list[Candidate] = []
    wheres = []
    for src in _mirror_sources(facts, mirror, snapshot, suite):
        archive = Archive(cache, _keyrings(facts, src, keyring, staging))
        table = archive.release(src, facts.arch)
        for comp in src.components or ["main"]:
            candidates += [replace(c, base_uri=src.uri)
                           for c in archive.packages(src, comp, facts.arch, table)]
        wheres.append(f"{src.uri} {src.suite} ({' '.join(src.components)})")
    installed = installed_packages(facts.status)
    resolver = Resolver(candidates, installed, facts.arch, f"{facts.distro} " + "; ".join(wheres))
    for spec in specs:
        resolver.request(spec)
    resolver.check_conflicts()
    todo = sorted(resolver.chosen.values(), key=lambda c: c.name)
    debs = []
    for c in todo:
        archive = Archive(cache, [])
        debs.append(archive.fetch(f"{c.base_uri.rstrip('/')}/{c.filename}", c.sha256, c.size))
    entries: dict[str, Entry] = {}
    unpacked = []
    for c, deb in zip(todo, debs):
        u = unpack_deb(deb, staging, entries, f"{c.name}_{c.version}")
        check_scripts(c, u)
        unpacked.append((c, u))
    notes = database_entries(facts.status, facts.alternatives, facts.arch, unpacked, entries)
    pins = [{"name": c.name, "version": c.version, "architecture": c.arch, "sha256": c.sha256}
            for c in todo]
    return AptResult([entries[p] for p in sorted(entries)], pins, notes)

def listed(packages) -> list[str]:
    """A step's package arguments as stripped strings (a single string is one package)."""
    return [str(p).strip() for p in ([packages] if isinstance(packages, str) else packages)]


def check_packages(packages) -> list[str]:
    specs = []
    for p in listed(packages):
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?", p):
            raise BuildError(f"{p!r} is not a package name (or NAME=VERSION) for apt: names are "
                             "lower case letters, digits and + - ., e.g. libgomp1 or "
                             "graphviz=2.42.2-7+b3.")
        specs.append(p)
    if not specs:
        raise BuildError("apt needs at least one package name, e.g. libgomp1.")
    return specs

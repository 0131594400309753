"""Alpine packages from the base image's own repositories, laid into one layer without a container.

1. The base tells what it is: `/etc/os-release` (ID=alpine), `/lib/apk/db/installed` (what is
   installed), `/etc/apk/repositories`, `/etc/apk/world` and the trusted keys `/etc/apk/keys/*`.
2. Each repository's `APKINDEX.tar.gz` is fetched and its signature checked as apk-tools does:
   the first gzip stream holds `.SIGN.RSA.<key>` (SHA-1) or `.SIGN.RSA256.<key>` (SHA-256), an
   RSA PKCS#1 v1.5 signature over the rest of the file, by a key of the base's /etc/apk/keys.
3. `D:` dependencies are resolved (names, `so:`/`cmd:`/`pc:` provides, version constraints
   with apk's version order, `!name` conflicts); what the base has installed is not added.
4. Every .apk is checked against the index (see apkpkg.py), unpacked, and recorded in
   /lib/apk/db/installed and /etc/apk/world. Install scripts are not run; they are reported,
   and packages whose scripts create users or groups are refused with a pointer to the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError
from ..oci import digest as dg
from ..oci.tarwriter import Entry
from .apkpkg import ApkFile, installed_record, read_apk, script_notes, unpack_apk
from .apt import AptResult, BaseFiles, apt_cache, listed
from .dpkg import REFUSED_SCRIPT, bytes_entry

APK_LABEL = "org.nbimages.apk"
INSTALLED = "lib/apk/db/installed"
WORLD = "etc/apk/world"
# apk's architecture names for the OCI ones.
_APK_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "386": "x86", "arm": "armv7",
             "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
             "loong64": "loongarch64"}
_TIMEOUT = 60
_CHUNK = 1 << 20
_MAX_INDEX = 64 << 20


# ---------------------------------------------------------------- apk's version order

# Token kinds in the order apk-tools ranks them when two versions part ways.
_DOT, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _REVISION, _END, _BAD = range(8)
_PRE = ("alpha", "beta", "pre", "rc")
_POST = ("cvs", "svn", "git", "hg", "p")


def _read_token(v: str, i: int, kind: int) -> tuple[int, int, int | None]:
    """(value, next index, forced next kind) of the token of `kind` at `v[i]`."""
    if kind == _DOT and v[i] == "0":  # .05 sorts before .5: leading zeros count negative
        j = i
        while j < len(v) and v[j] == "0":
            j += 1
        return i - j, j, _DIGIT
    if kind in (_DOT, _DIGIT, _SUFFIX_NO, _REVISION):
        j = i
        while j < len(v) and v[j] in "0123456789":
            j += 1
        return int(v[i:j] or 0), j, None
    if kind == _LETTER:
        return ord(v[i]), i + 1, None
    if kind == _SUFFIX:
        for n, s in enumerate(_PRE):
            if v.startswith(s, i):
                return n - len(_PRE), i + len(s), None
        for n, s in enumerate(_POST):
            if v.startswith(s, i):
                return n, i + len(s), None
    return 0, i, _BAD


def _next_kind(v: str, i: int, kind: int) -> tuple[int, int]:
    c = v[i]
    if kind in (_DIGIT, _DOT) and c.islower():
        new = _LETTER
    elif kind == _LETTER and c.isdigit():
        new = _DIGIT
    elif kind == _SUFFIX and c.isdigit():
        new = _SUFFIX_NO
    else:
        if c == "-" and v[i + 1:i + 2] == "r":
            new, i = _REVISION, i + 1
        else:
            new = {".": _DOT, "_": _SUFFIX}.get(c, _BAD)
        i += 1
    allowed = new >= kind or (new, kind) in ((_DOT, _DIGIT), (_SUFFIX, _SUFFIX_NO),
                                             (_DIGIT, _LETTER))
    return (new if allowed else _BAD), i


def version_tokens(v: str) -> list[tuple[int, int]]:
    """(kind, value) of each token of an apk version, ending with (_END or _BAD, 0)."""
    out, i, kind = [], 0, _DIGIT
    while i < len(v) and kind not in (_END, _BAD):
        value, i, forced = _read_token(v, i, kind)
        if forced == _BAD:
            break
        out.append((kind, value))
        if i >= len(v):
            kind = _END
        elif forced is not None:
            kind = forced
        else:
            kind, i = _next_kind(v, i, kind)
    out.append((_END if i >= len(v) and kind != _BAD else _BAD, 0))
    return out


def compare_versions(a: str, b: str, fuzzy: bool = False) -> int:
    """-1, 0 or 1 as apk orders versions (1.2_rc1 < 1.2 < 1.2-r1 < 1.2_p1 < 1.2a < 1.2.1);
    `fuzzy`: equal when one is a prefix of the other by tokens (the `~` constraint)."""
    ta, tb = version_tokens(a), version_tokens(b)
    k = 0
    while ta[k][0] == tb[k][0] and ta[k][0] not in (_END, _BAD):
        if ta[k][1] != tb[k][1]:
            return -1 if ta[k][1] < tb[k][1] else 1
        k += 1
    ka, kb = ta[k][0], tb[k][0]
    if ka == kb or fuzzy:
        return 0
    if ka == _SUFFIX and ta[k][1] < 0:  # a pre-release suffix sorts before the end
        return -1
    if kb == _SUFFIX and tb[k][1] < 0:
        return 1
    return -1 if ka > kb else 1


def version_ok(version: str) -> bool:
    return version_tokens(version)[-1][0] == _END


def matches(version: str | None, op: str | None, wanted: str | None) -> bool:
    """Does `version` meet the constraint `op wanted` (no op: any version)?"""
    if not op:
        return True
    if version is None or wanted is None:
        return False
    if "~" in op:
        return compare_versions(version, wanted, fuzzy=True) == 0
    c = compare_versions(version, wanted)
    return (c < 0 and "<" in op) or (c > 0 and ">" in op) or (c == 0 and "=" in op)


@dataclass(frozen=True)
class Dep:
    """One atom of a `D:` field or a request: `[!]name[op version]`."""

    name: str
    op: str | None = None
    version: str | None = None
    conflict: bool = False

    @classmethod
    def parse(cls, text: str) -> "Dep":
        m = re.fullmatch(r"(!?)([^!<>=~\s]+)(?:([<>=~]{1,2})(\S+))?", text)
        if m is None or (m.group(3) and m.group(3) not in ("<", "<=", "=", ">=", ">", "~",
                                                           "=~", "~=")):
            raise BuildError(f"{text!r} is not an apk dependency such as name, so:libz.so.1 "
                             "or name>=1.2.")
        return cls(m.group(2), m.group(3), m.group(4), bool(m.group(1)))

    def __str__(self) -> str:
        return ("!" if self.conflict else "") + self.name + (f"{self.op}{self.version}"
                                                             if self.op else "")


def deps(text: str) -> list[Dep]:
    return [Dep.parse(t) for t in text.split()]


def provided(text: str) -> list[tuple[str, str | None]]:
    """`p:` entries as (name, version or None)."""
    out = []
    for t in text.split():
        name, sep, ver = t.partition("=")
        out.append((name, ver if sep else None))
    return out


# ---------------------------------------------------------------- records and the base

@dataclass
class Package:
    """One record of an APKINDEX or of /lib/apk/db/installed (single-letter fields)."""

    fields: dict[str, str]
    repo: str = ""
    text: str = ""  # the record as the base's database has it

    name = property(lambda self: self.fields.get("P", ""))
    version = property(lambda self: self.fields.get("V", ""))
    arch = property(lambda self: self.fields.get("A", ""))
    checksum = property(lambda self: self.fields.get("C", ""))

    def provides(self) -> list[tuple[str, str | None]]:
        return provided(self.fields.get("p", ""))

    def depends(self) -> list[Dep]:
        return deps(self.fields.get("D", ""))


def parse_records(text: str, repo: str = "") -> list[Package]:
    """The records of an APKINDEX or installed database (blank-line separated `K:value`)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 1 and line[1] == ":" and line[0] not in fields:
                fields[line[0]] = line[2:]
        if fields.get("P"):
            out.append(Package(fields, repo, block.strip("\n")))
    return out


@dataclass
class AlpineBase:
    arch: str
    installed: str                       # /lib/apk/db/installed as text
    world: str
    repositories: list[str]
    keys: dict[str, bytes] = field(default_factory=dict)   # key file name -> PEM


def _wanted(path: str) -> str | None:
    if path in ("etc/os-release", "usr/lib/os-release", INSTALLED, WORLD,
                "etc/apk/repositories", "etc/apk/arch") or path.startswith("etc/apk/keys/"):
        return path
    return None


def read_base(image) -> AlpineBase:
    """What the apk step needs from the image below it (one streaming pass over its layers)."""
    files = BaseFiles(image, _wanted)
    text = files.text
    osr = files.os_release()
    installed = text(INSTALLED)
    if "alpine" not in {osr.get("ID", ""), *osr.get("ID_LIKE", "").split()} or installed is None:
        what = osr.get("PRETTY_NAME") or osr.get("ID") or "an image without /etc/os-release"
        raise BuildError(f"the apk step needs an Alpine base with an apk database "
                         f"(/lib/apk/db/installed); the base is {what}. Start from an Alpine "
                         "image, or use an apt step on a Debian or Ubuntu base.")
    keys = {path.rsplit("/", 1)[1]: files.data(path) or b"" for path in files.paths
            if path.startswith("etc/apk/keys/") and files.data(path)}
    arch = (text("etc/apk/arch") or "").strip() or \
        _APK_ARCH.get(image.config.get("architecture") or "amd64", "x86_64")
    return AlpineBase(arch, installed, text(WORLD) or "",
                      parse_repositories(text("etc/apk/repositories") or ""), keys)


def parse_repositories(text: str) -> list[str]:
    """The http(s) repositories of /etc/apk/repositories (comments and @tagged ones skipped)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("http://", "https://")):
            out.append(line.rstrip("/"))
    return out


def repositories(base: AlpineBase, mirror: str | None, repository: list[str] | None
                 ) -> list[str]:
    """`repository` as given, else the base's, with their host part replaced by `mirror`."""
    for url in [mirror or "", *(repository or [])]:
        if url and not url.startswith(("http://", "https://")):
            raise BuildError(f"{url!r} must be an http:// or https:// URL of an Alpine "
                             "repository.")
    repos = [r.rstrip("/") for r in repository] if repository else list(base.repositories)
    if mirror:  # .../alpine/v3.20/main -> MIRROR/v3.20/main
        repos = [mirror.rstrip("/") + "/" + "/".join(r.split("/")[-2:]) for r in repos]
    if not repos:
        raise BuildError("the base has no http(s) repositories in /etc/apk/repositories; pass "
                         "repository=URL (e.g. https://dl-cdn.alpinelinux.org/alpine/v3.20/main).")
    return list(dict.fromkeys(repos))


# ---------------------------------------------------------------- the signed index

def _get(url: str):
    try:
        return urllib.request.urlopen(url, timeout=_TIMEOUT)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as e:
        raise BuildError(f"the Alpine repository answered {e.code} for {url}; check the "
                         "repository address (mirror=/repository=) and the base's "
                         "architecture.") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise BuildError(f"cannot reach the Alpine repository for {url} ({reason}); pass "
                         "mirror=URL for one this machine reaches.") from None


def verify_index(data: bytes, keys: dict[str, bytes], url: str) -> bytes:
    """The signed part of an APKINDEX.tar.gz, once a trusted key's signature verifies."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    d = zlib.decompressobj(31)
    try:
        sig_tar = d.decompress(data)
    except zlib.error:
        raise BuildError(f"{url} is not a gzip file: not an APKINDEX.") from None
    signed = d.unused_data
    sigs = {}
    with contextlib.suppress(tarfile.TarError):
        with tarfile.open(fileobj=io.BytesIO(sig_tar), mode="r|") as tf:
            for m in tf:
                if m.isfile() and m.name.startswith(".SIGN.RSA"):
                    sigs[m.name] = tf.extractfile(m).read()  # type: ignore[union-attr]
    if not sigs or not signed:
        raise BuildError(f"{url} is not signed (no .SIGN.RSA entry): apk would refuse it; use "
                         "a repository that signs its index.")
    names = []
    for name, sig in sorted(sigs.items()):
        algo, _, key_name = name[len(".SIGN."):].partition(".")
        names.append(key_name)
        if key_name not in keys:
            continue
        digest = hashes.SHA256() if algo == "RSA256" else hashes.SHA1()
        try:
            key = serialization.load_pem_public_key(keys[key_name])
            key.verify(sig, signed, padding.PKCS1v15(), digest)  # type: ignore[union-attr]
            return signed
        except (InvalidSignature, ValueError, TypeError):
            raise BuildError(f"the signature of {url} by {key_name} does not verify: the index "
                             "was altered or the connection is not trustworthy; nothing was "
                             "installed.") from None
    raise BuildError(f"{url} is signed by {', '.join(names)}, which is not among the trusted "
                     f"keys ({', '.join(sorted(keys)) or 'none in /etc/apk/keys'}); add the "
                     "repository's public key to the base's /etc/apk/keys, or pass key=FILE.")


def read_index(repo: str, arch: str, keys: dict[str, bytes]) -> list[Package]:
    url = f"{repo}/{arch}/APKINDEX.tar.gz"
    with _get(url) as r:
        data = r.read(_MAX_INDEX)
    signed = verify_index(data, keys, url)
    with tarfile.open(fileobj=io.BytesIO(signed), mode="r:gz") as tf:
        member = next((m for m in tf if m.name == "APKINDEX"), None)
        if member is None:
            raise BuildError(f"{url} has no APKINDEX file.")
        text = tf.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
    return [p for p in parse_records(text, repo) if p.arch in (arch, "noarch")]


# ---------------------------------------------------------------- resolving

class Resolver:
    """The `D:` closure of the requested packages against the indexes and the base.

    Deterministic: the highest version of a package that meets the constraint; for a name
    only provided (so:, cmd:, pc:, virtual), the provider with the highest `k:` priority,
    then the smallest name. What the base has installed (and provides) counts as given.
    """

    def __init__(self, candidates: list[Package], installed: list[Package], where: str):
        self.where = where
        self.by_name: dict[str, list[Package]] = {}
        self.providers: dict[str, list[tuple[Package, str | None]]] = {}
        for c in candidates:
            self.by_name.setdefault(c.name, []).append(c)
            for name, ver in c.provides():
                self.providers.setdefault(name, []).append((c, ver))
        for name, lst in self.by_name.items():
            lst.sort(key=_VersionKey.of, reverse=True)
        self.installed = {p.name: p for p in installed}
        self.chosen: dict[str, Package] = {}
        self.kept: list[str] = []  # requested, already in the base

    def _final(self) -> list[Package]:
        return [*(p for n, p in self.installed.items() if n not in self.chosen),
                *self.chosen.values()]

    def _meets(self, p: Package, dep: Dep) -> bool:
        if p.name == dep.name and matches(p.version, dep.op, dep.version):
            return True
        return any(n == dep.name and matches(v, dep.op, dep.version) for n, v in p.provides())

    def _find(self, dep: Dep) -> Package | None:
        for c in self.by_name.get(dep.name, []):
            if matches(c.version, dep.op, dep.version):
                return c
        provs = [c for c, v in self.providers.get(dep.name, [])
                 if matches(v, dep.op, dep.version)]
        return min(provs, key=lambda c: (-int(c.fields.get("k") or 0), c.name,
                                         _VersionKey.of(c).negated())) if provs else None

    def request(self, spec: str) -> None:
        dep = Dep.parse(spec)
        if any(self._meets(p, dep) for p in self._final()):
            self.kept.append(spec)
            return
        found = self._find(dep)
        if found is None:
            have = self.by_name.get(dep.name)
            if have:
                raise BuildError(f"{spec} is not in {self.where} (it has "
                                 f"{', '.join(c.version for c in have)}); pin a version the "
                                 "repository has.")
            raise BuildError(f"no package named {dep.name!r} in {self.where}; check the spelling "
                             "(Alpine names are lower case, e.g. py3-numpy) and that the base's "
                             "repositories (main, community) have it.")
        self._add(found, [found.name])

    def _add(self, pkg: Package, chain: list[str]) -> None:
        prev = self.chosen.get(pkg.name)
        if prev is pkg:
            return
        if prev is not None:
            raise BuildError(f"{pkg.name} is needed as {prev.version} and as {pkg.version} "
                             f"({' -> '.join(chain)}); pin one version.")
        self.chosen[pkg.name] = pkg
        for dep in pkg.depends():
            if dep.conflict or any(self._meets(p, dep) for p in self._final()):
                continue
            found = self._find(dep)
            if found is None:
                raise BuildError(
                    f"cannot install {chain[0]}: {' -> '.join(chain)} depends on {dep}, which "
                    f"neither the base{self._base_note(dep)} nor {self.where} provide. Pick "
                    "another version, "
                    "add the repository that has it (repository=URL), or install with the "
                    "engine.")
            self._add(found, chain + [found.name])

    def _base_note(self, dep: Dep) -> str:
        p = self.installed.get(dep.name)
        return f" (it has {p.name} {p.version})" if p is not None else ""

    def check_conflicts(self) -> None:
        """`!name` dependencies of the new packages and of the base's, against the result."""
        final = self._final()
        for who in final:
            for dep in who.depends():
                if not dep.conflict:
                    continue
                other = next((p for p in final if p is not who and p.name != who.name and
                              self._meets(p, Dep(dep.name, dep.op, dep.version))), None)
                if other is not None and (who.name in self.chosen or other.name in self.chosen):
                    raise BuildError(f"{who.name} {who.version} conflicts with {dep.name} "
                                     f"({dep}), and the image would have {other.name} "
                                     f"{other.version}: install them with the engine "
                                     "(%image run apk add ...), which can remove packages.")


class _VersionKey:
    """Sort key ordering Packages (or negating the order) by apk's version comparison."""

    def __init__(self, version: str, sign: int = 1):
        self.version, self.sign = version, sign

    @classmethod
    def of(cls, p: Package) -> "_VersionKey":
        return cls(p.version)

    def negated(self) -> "_VersionKey":
        return _VersionKey(self.version, -self.sign)

    def __lt__(self, other: "_VersionKey") -> bool:
        return self.sign * compare_versions(self.version, other.version) < 0


# ---------------------------------------------------------------- the layer

def _keys(base: AlpineBase, given: list[str] | None) -> dict[str, bytes]:
    if not given:
        return base.keys
    missing = [k for k in given if not Path(k).is_file()]
    if missing:
        raise BuildError(f"key file {missing[0]} does not exist.")
    return {**base.keys, **{Path(k).name: Path(k).read_bytes() for k in given}}


def fetch_apk(c: Package, arch: str, cache: Path) -> tuple[ApkFile, str]:
    """The .apk of `c`, checked against the index (downloaded once), and its file's sha256."""
    label = f"{c.name}-{c.version}.apk"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / (hashlib.sha256(c.checksum.encode()).hexdigest()[:32] + "-" + label)
    if target.exists():
        apk = read_apk(target, c.checksum, label)  # the cache is checked again, not trusted
    else:
        url = f"{c.repo}/{arch}/{label}"
        size = int(c.fields.get("S") or 0) or None
        fd, tmp = tempfile.mkstemp(prefix="dl-", dir=cache)
        try:
            n = 0
            with os.fdopen(fd, "wb") as f, _get(url) as r:
                while chunk := r.read(_CHUNK):
                    n += len(chunk)
                    if size is not None and n > size:
                        break
                    f.write(chunk)
            if size is not None and n != size:
                raise BuildError(f"{url} is {n} bytes, the repository's signed index says "
                                 f"{size}: the download was altered or the mirror is "
                                 "inconsistent; nothing was installed.")
            apk = dataclasses.replace(read_apk(Path(tmp), c.checksum, label), path=target)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    with open(target, "rb") as f:
        return apk, dg.of_stream(f)[0].split(":", 1)[1]


def check_scripts(c: Package, apk: ApkFile) -> None:
    for script in (".pre-install", ".post-install"):
        m = REFUSED_SCRIPT.search(apk.control.get(script, b"").decode("utf-8", "replace"))
        if m:
            raise BuildError(f"{c.name} {c.version} runs {m.group(1)} in its {script} script (it "
                             "creates users or groups), which cannot be done without running "
                             f"it. Install it with the engine instead: %image run apk add "
                             f"--no-cache {c.name}.")


def apk_layer(parent, packages: list[str], staging: Path, *, store, mirror: str | None = None,
              repository: list[str] | None = None, key: list[str] | None = None) -> AptResult:
    """Resolve, download, verify and unpack `packages` for the Alpine image `parent`.

    Returns the layer's entries (file contents under `staging`), the pins (name, version,
    architecture, the index checksum and the .apk's sha256) and notes on skipped scripts.
    """
    specs = check_packages(packages)
    base = read_base(parent)
    keys = _keys(base, key)
    repos = repositories(base, mirror, repository)
    candidates = [p for r in repos for p in read_index(r, base.arch, keys)]
    installed = parse_records(base.installed)
    resolver = Resolver(candidates, installed, "the repositories " + ", ".join(repos))
    for spec in specs:
        resolver.request(spec)
    resolver.check_conflicts()
    todo = sorted(resolver.chosen.values(), key=lambda c: c.name)
    cache = apt_cache(store, "apk")
    fetched = [fetch_apk(c, base.arch, cache) for c in todo]
    entries: dict[str, Entry] = {}
    records = {p.name: p.text + "\n" for p in installed}
    for c, (apk, _) in zip(todo, fetched):
        check_scripts(c, apk)
        u = unpack_apk(apk, staging, entries, f"{c.name}-{c.version}")
        records.pop(c.name, None)
        records[c.name] = installed_record(c.fields, u)
    db = "\n".join(records.values()) + "\n"
    entries[INSTALLED] = bytes_entry(INSTALLED, db.encode("utf-8"))
    entries[WORLD] = bytes_entry(WORLD, world(base.world, specs).encode("utf-8"))
    notes = script_notes([(c.name, apk) for c, (apk, _) in zip(todo, fetched)])
    if resolver.kept:
        notes.append("apk: already in the base, added to /etc/apk/world only: "
                     + ", ".join(resolver.kept))
    pins = [{"name": c.name, "version": c.version, "architecture": c.arch,
             "checksum": c.checksum, "sha256": sha} for c, (_, sha) in zip(todo, fetched)]
    return AptResult([entries[p] for p in sorted(entries)], pins, notes)


def world(text: str, specs: list[str]) -> str:
    """/etc/apk/world with the requested specs (one per name, sorted, as apk writes it)."""
    by_name = {Dep.parse(w).name: w for w in text.split()}
    by_name.update({Dep.parse(s).name: s for s in specs})
    return "\n".join(by_name[n] for n in sorted(by_name)) + "\n"


def check_packages(packages) -> list[str]:
    specs = []
    for p in listed(packages):
        m = re.fullmatch(r"((?:so:|cmd:|pc:)?[A-Za-z0-9][A-Za-z0-9+._-]*)"
                         r"(?:(<|<=|=|>=|>|~)([0-9][0-9A-Za-z._-]*))?", p)
        if not m or (m.group(3) and not version_ok(m.group(3))):
            raise BuildError(f"{p!r} is not a package for apk: a name (e.g. curl, so:libz.so.1, "
                             "cmd:git), optionally with a version such as curl=8.9.1-r0 or "
                             "curl>=8.")
        specs.append(p)
    if not specs:
        raise BuildError("apk needs at least one package name, e.g. curl.")
    return specs


"""Find the Python a base image runs, and the platform its wheels must fit, without a container.

A pip step installs packages for the *image's* interpreter, not the kernel's. Everything needed
is in the layers: the interpreter (`python3` on the image's PATH), its stdlib (its version and
whether it is Debian's, which imports from `dist-packages`), the C library (glibc's version from
`libc.so.6`, musl from `ld-musl-*.so.1`) and the architecture in the config. One streaming pass
over the layers collects those facts; whiteouts are applied so a deleted file does not count.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from ..errors import BuildError, InvalidImage
from ..oci import tarscan

# OCI architecture (+ variant) -> the machine name in wheel platform tags and markers.
_MACHINES = {"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "ppc64le": "ppc64le",
             "s390x": "s390x", "riscv64": "riscv64", "ppc64": "ppc64", "loong64": "loongarch64"}
_ARM_VARIANTS = {"v7": "armv7l", "v6": "armv6l", "v5": "armv5tel", None: "armv7l"}
# Oldest glibc each architecture has manylinux wheels for (PEP 600, as packaging counts it).
_OLDEST_GLIBC = {"x86_64": 5, "i686": 5}
# Legacy manylinux names (PEP 513/571/599) and the glibc minor they stand for.
_LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_LEGACY_ARCHES = {"manylinux2014": {"x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le",
                                    "s390x"},
                  "manylinux2010": {"x86_64", "i686"}, "manylinux1": {"x86_64", "i686"}}

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_FACT_READ = 32 << 20  # the largest file read for a fact (libc.so.6 is about 2 MB)

_STDLIB_RE = re.compile(r"^(.*)/(lib|lib64)/python(3\.\d+t?)/(site|os)\.py$")
_LIBC_FILE_RE = re.compile(r"^(?:libc\.so\.6|libc-(\d+)\.(\d+)\.so)$")
_MUSL_RE = re.compile(r"^ld-musl-[^/]+\.so\.1$")
_GLIBC_BANNER = re.compile(rb"GNU C Library[^\n\x00]*? version (\d+)\.(\d+)")
_GLIBC_SYMVER = re.compile(rb"GLIBC_2\.(\d+)")
_MUSL_VERSION = re.compile(rb"\x00(1\.(\d+)\.\d+)\x00")


@dataclass(frozen=True)
class Target:
    """Where and for what a wheel must be installed so the image's interpreter imports it."""

    python_version: str            # "3.11"
    interpreter_path: str          # the shebang for console scripts: "/usr/bin/python3"
    purelib: str                   # absolute paths inside the image
    platlib: str
    scripts_dir: str
    data_dir: str
    headers_dir: str
    platform_tags: tuple[str, ...]  # most specific first: manylinux_2_36_x86_64, ..., linux_x86_64
    implementation: str = "cp"
    abi: str = ""                  # "cp311" ("cp313t" for a free-threaded build)
    machine: str = "x86_64"
    libc: str = ""                 # "glibc 2.36" or "musl 1.2"
    python_full_version: str = ""  # "3.11.2" when the image says so (env, dpkg or apk database)
    site_dirs: tuple[str, ...] = field(default=())

    def scheme(self) -> dict[str, str]:
        """The install scheme (pip's keys) with absolute image paths."""
        return {"purelib": self.purelib, "platlib": self.platlib, "scripts": self.scripts_dir,
                "data": self.data_dir, "headers": self.headers_dir}

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values as the image's interpreter would report them."""
        full = self.python_full_version or self.python_version + ".0"
        return {"implementation_name": "cpython", "implementation_version": full,
                "os_name": "posix", "platform_machine": self.machine, "platform_release": "",
                "platform_system": "Linux", "platform_version": "",
                "python_full_version": full, "platform_python_implementation": "CPython",
                "python_version": self.python_version, "sys_platform": "linux"}

    def describe(self) -> str:
        return (f"CPython {self.python_full_version or self.python_version} at "
                f"{self.interpreter_path}, {self.libc}, {self.machine}")


# ---------------------------------------------------------------- platform tags

def manylinux_tags(glibc_minor: int, machine: str) -> list[str]:
    """manylinux tags a glibc 2.<minor> system accepts, newest first, with the legacy aliases."""
    tags: list[str] = []
    oldest = _OLDEST_GLIBC.get(machine, 17)
    for minor in range(glibc_minor, oldest - 1, -1):
        tags.append(f"manylinux_2_{minor}_{machine}")
        legacy = _LEGACY.get(minor)
        if legacy and machine in _LEGACY_ARCHES[legacy]:
            tags.append(f"{legacy}_{machine}")
    tags.append(f"linux_{machine}")
    return tags


def musllinux_tags(musl_minor: int, machine: str) -> list[str]:
    """musllinux tags (PEP 656) a musl 1.<minor> system accepts, newest first."""
    return [f"musllinux_1_{m}_{machine}" for m in range(musl_minor, -1, -1)] + [f"linux_{machine}"]


def machine_of(architecture: str, variant: str | None = None) -> str:
    """The wheel/marker machine name for an OCI architecture (amd64 -> x86_64)."""
    if architecture == "arm":
        machine = _ARM_VARIANTS.get(variant)
    else:
        machine = _MACHINES.get(architecture)
    if not machine:
        raise BuildError(f"the base image's architecture {architecture!r} has no Python wheel "
                         "platform nbimages knows; build the pip step with the engine "
                         "(a RUN pip install step) instead.")
    return machine


# ---------------------------------------------------------------- the merged file tree

@dataclass
class _Entry:
    kind: str                 # "file", "dir", "symlink", "hardlink", "other"
    link: str = ""            # symlink target as written, or hardlink target path
    fact: object = None       # what was learned from the file's content, if it was read


class _Tree:
    """The merged view of the image's files (names, links, small facts), whiteouts applied."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    def add_layer(self, members: list[tuple[str, _Entry]], whiteouts: list[str],
                  opaque: list[str]) -> None:
        # A layer's whiteouts hide lower layers only, so apply them before its own entries.
        for d in opaque:
            self._remove_below(d, keep_self=True)
        for p in whiteouts:
            self._remove_below(p, keep_self=False)
        for path, entry in members:
            old = self.entries.get(path)
            if old is not None and old.kind == "dir" and entry.kind != "dir":
                self._remove_below(path, keep_self=True)
            self.entries[path] = entry
            # Layers may omit parent directories; they exist implicitly.
            parent = path.rpartition("/")[0]
            while parent and parent not in self.entries:
                self.entries[parent] = _Entry("dir")
                parent = parent.rpartition("/")[0]

    def _remove_below(self, path: str, keep_self: bool) -> None:
        if not keep_self:
            old = self.entries.pop(path, None)
            if old is None or old.kind != "dir":
                return  # only directories have entries below them
        prefix = path + "/" if path else ""
        for p in [p for p in self.entries if p.startswith(prefix)]:
            del self.entries[p]

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """Follow symlinks (absolute ones from the image root) to an existing path, or None."""
        parts = [p for p in path.strip("/").split("/") if p and p != "."]
        done: list[str] = []
        for i, part in enumerate(parts):
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = "/".join(done + [part])
            entry = self.entries.get(cur)
            if entry is None:
                return None
            if entry.kind == "symlink":
                if depth > 40:
                    return None
                base = "" if entry.link.startswith("/") else "/".join(done)
                rest = "/".join(parts[i + 1:])
                joined = posixpath.join("/" + base, entry.link, rest)
                return self.resolve(joined, depth + 1)
            done.append(part)
        return "/".join(done)

    def get(self, path: str) -> _Entry | None:
        real = self.resolve(path)
        if real is None:
            return None
        entry = self.entries.get(real) if real else _Entry("dir")
        if entry is not None and entry.kind == "hardlink":
            return self.entries.get(entry.link.strip("/"))
        return entry

    def is_file(self, path: str) -> bool:
        e = self.get(path)
        return e is not None and e.kind in ("file", "hardlink")

    def is_dir(self, path: str) -> bool:
        e = self.get(path)
        return e is not None and e.kind == "dir"


def _interesting(path: str) -> str | None:
    """Which fact a file's content gives, or None when its content is not needed."""
    base = path.rsplit("/", 1)[-1]
    if _LIBC_FILE_RE.match(base):
        return "glibc"
    if _MUSL_RE.match(base):
        return "musl"
    if path.endswith("/site.py") and _STDLIB_RE.match("/" + path):
        return "site"
    if path == "var/lib/dpkg/status":
        return "dpkg"
    if path == "lib/apk/db/installed":
        return "apk"
    return None


def _fact(kind: str, data: bytes):
    if kind == "glibc":
        m = _GLIBC_BANNER.search(data)
        if m:
            return (int(m.group(1)), int(m.group(2)))
        minors = [int(x) for x in _GLIBC_SYMVER.findall(data)]
        return (2, max(minors)) if minors else None
    if kind == "musl":
        found = [int(m.group(2)) for m in _MUSL_VERSION.finditer(data)]
        return (1, max(found)) if found else None
    if kind == "site":
        return b"dist-packages" in data
    if kind in ("dpkg", "apk"):
        return _package_versions(kind, data.decode("utf-8", "replace"))
    return None


def _package_versions(kind: str, text: str) -> dict[str, str]:
    """{package: version} for the few packages that tell the Python and musl versions."""
    out: dict[str, str] = {}
    name_key, ver_key = ("Package: ", "Version: ") if kind == "dpkg" else ("P:", "V:")
    for stanza in text.split("\n\n"):
        name = ver = None
        for line in stanza.splitlines():
            if line.startswith(name_key):
                name = line[len(name_key):].strip()
            elif line.startswith(ver_key):
                ver = line[len(ver_key):].strip()
        wanted = name == "musl" or re.match(r"^(lib)?python3(\.\d+)?(-minimal)?$", name or "")
        if name and ver and wanted:
            out[name] = ver
    return out


def _norm(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return posixpath.normpath("/" + name).lstrip("/") if name not in ("", ".") else ""


def scan_layers(image, interesting=None, fact=None) -> _Tree:
    """One streaming pass over every layer, bottom to top, into a merged tree.

    `interesting(path)` names the files whose content is read (default: the Python facts) and
    `fact(kind, data)` what is kept of it as the entry's `fact` (`tree.get(path).fact`).
    """
    interesting = interesting or _interesting
    fact = fact or _fact
    tree = _Tree()
    for i, layer in enumerate(image.layers):
        members: list[tuple[str, _Entry]] = []
        whiteouts: list[str] = []
        opaque: list[str] = []
        with image.layer_tar(i) as stream:
            try:
                for path, kind, link, data in _entries(stream, interesting):
                    base = path.rsplit("/", 1)[-1]
                    parent = path.rsplit("/", 1)[0] if "/" in path else ""
                    if base == ".wh..wh..opq":
                        opaque.append(parent)
                    elif base.startswith(".wh."):
                        whiteouts.append(posixpath.join(parent, base[4:]))
                    elif path:
                        entry = _Entry(kind, _norm(link) if kind == "hardlink" else link)
                        if data is not None:
                            entry.fact = fact(interesting(path), data)
                        members.append((path, entry))
            except InvalidImage as e:
                raise BuildError(f"layer {layer.digest} of the base image is not a readable tar "
                                 f"({e}); the image is damaged, pull or build it again.") from None
        tree.add_layer(members, whiteouts, opaque)
    return tree


def _entries(stream, interesting):
    """(path, kind, link, data-if-interesting) per member of one layer tar."""
    want = (lambda p: interesting(p) is not None)
    for e in tarscan.scan(stream, want, max_data=_MAX_FACT_READ):
        kind = e.kind if e.kind in ("file", "dir", "symlink", "hardlink") else "other"
        yield e.path, kind, e.linkname, e.data


# ---------------------------------------------------------------- the target

def find_target(image) -> Target:
    """The Python interpreter, install scheme and wheel platform of a base image's layers."""
    cfg = image.config
    env = _env(cfg)
    machine = machine_of(cfg.get("architecture") or "amd64", cfg.get("variant"))
    tree = scan_layers(image)

    shebang, real = _find_interpreter(tree, env.get("PATH") or _DEFAULT_PATH)
    prefix = posixpath.dirname(posixpath.dirname(real))
    base = posixpath.basename(real)
    m = re.match(r"^python(3\.\d+t?)$", base)
    versions = [m.group(1)] if m else _stdlib_versions(tree, prefix)
    if not versions:
        raise BuildError(f"found the interpreter {shebang} in the base image but no Python 3 "
                         f"standard library under {prefix}/lib; use a Python base image "
                         "(e.g. python:3.12-slim) or build the pip step with the engine.")
    pyver = versions[0]
    libdir = "lib64" if tree.is_file(f"{prefix}/lib64/python{pyver}/os.py") else "lib"
    stdlib = f"{prefix}/{libdir}/python{pyver}"
    if not (tree.is_file(f"{stdlib}/os.py") or tree.is_file(f"{stdlib}/site.py")):
        raise BuildError(f"the base image's {shebang} has no standard library at {stdlib}; "
                         "nbimages cannot tell where it imports packages from. Build the pip "
                         "step with the engine (a RUN pip install step) instead.")
    plain = pyver.rstrip("t")
    site = tree.get(f"{stdlib}/site.py")
    debian = bool(site and site.fact)
    if debian and prefix == "/usr":
        # Debian's site.py: `pip install` as root goes to /usr/local/lib/python3.X/dist-packages.
        purelib = platlib = f"/usr/local/lib/python{plain}/dist-packages"
        scripts, data, headers = "/usr/local/bin", "/usr/local", f"/usr/local/include/python{plain}"
    else:
        sp = "dist-packages" if debian else "site-packages"
        purelib = f"{prefix}/lib/python{pyver}/{sp}"
        platlib = f"{prefix}/{libdir}/python{pyver}/{sp}"
        scripts, data, headers = f"{prefix}/bin", prefix, f"{prefix}/include/python{pyver}"

    libc, tags = _libc_tags(tree, machine)
    abi = "cp" + plain.replace(".", "") + ("t" if pyver.endswith("t") else "")
    return Target(python_version=plain, interpreter_path=shebang, purelib=purelib,
                  platlib=platlib, scripts_dir=scripts, data_dir=data, headers_dir=headers,
                  platform_tags=tuple(tags), implementation="cp", abi=abi, machine=machine,
                  libc=libc, python_full_version=_full_version(env, tree, plain),
                  site_dirs=tuple(dict.fromkeys([purelib, platlib])))


def _env(cfg: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (cfg.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _find_interpreter(tree: _Tree, path_var: str) -> tuple[str, str]:
    """(the path to name in shebangs, the real file) of `python3` (else `python`) on PATH."""
    dirs = [d for d in path_var.split(":") if d.startswith("/")]
    for name in ("python3", "python"):
        for d in dirs:
            candidate = posixpath.join(d, name)
            real = tree.resolve(candidate)
            if real is not None and tree.is_file(candidate):
                if name == "python" and not _is_python3(tree, real):
                    continue
                return candidate, "/" + real
    raise BuildError(f"the base image has no python3 on its PATH ({path_var}), so a pip step "
                     "has no interpreter to install for. Start from a Python base image such as "
                     "python:3.12-slim, or install Python with the engine first.")


def _is_python3(tree: _Tree, real: str) -> bool:
    base = real.rsplit("/", 1)[-1]
    if base.startswith("python3"):
        return True
    prefix = posixpath.dirname(posixpath.dirname("/" + real.lstrip("/")))
    return bool(_stdlib_versions(tree, prefix))


def _stdlib_versions(tree: _Tree, prefix: str) -> list[str]:
    """python3.X directories with an os.py under PREFIX/lib and PREFIX/lib64, newest first."""
    want = tree.resolve(prefix)
    found = set()
    for p in tree.entries:
        m = _STDLIB_RE.match("/" + p)
        if m and m.group(4) == "os" and tree.resolve(m.group(1)) == want:
            found.add(m.group(3))
    return sorted(found, key=lambda v: tuple(int(x) for x in v.rstrip("t").split(".")),
                  reverse=True)


def _libc_tags(tree: _Tree, machine: str) -> tuple[str, list[str]]:
    """("glibc 2.36", manylinux tags) or ("musl 1.2", musllinux tags) from the image's libc."""
    lib_dirs = ["lib", "usr/lib", "lib64", "usr/lib64"]
    triplets = {p.rsplit("/", 1)[0] for p in tree.entries
                if p.endswith("/libc.so.6") or _MUSL_RE.match(p.rsplit("/", 1)[-1])}
    musl = [p for p in sorted(tree.entries) if _MUSL_RE.match(p.rsplit("/", 1)[-1])
            and p.rsplit("/", 1)[0] in lib_dirs + ["usr/local/lib"]]
    if musl:
        minor = None
        apk = tree.get("lib/apk/db/installed")
        version = (apk.fact or {}).get("musl") if apk and isinstance(apk.fact, dict) else None
        if version and re.match(r"^1\.\d+", version):
            minor = int(version.split(".")[1])
        if minor is None:
            entry = tree.get(musl[0])
            if entry and entry.fact:
                minor = entry.fact[1]
        if minor is None:
            minor = 2  # musl 1.2 (2020) is what every maintained musl distribution ships
        return f"musl 1.{minor}", musllinux_tags(minor, machine)

    best: tuple[int, int] | None = None
    for d in sorted(triplets):
        if d.split("/", 1)[0] not in ("lib", "usr", "lib64"):
            continue
        path = f"{d}/libc.so.6"
        real = tree.resolve(path)
        if real is None:
            continue
        m = _LIBC_FILE_RE.match(real.rsplit("/", 1)[-1])
        version = (int(m.group(1)), int(m.group(2))) if m and m.group(1) else None
        if version is None:
            entry = tree.get(path)
            version = entry.fact if entry is not None else None
        if version and (best is None or version > best):
            best = version
    if best is None:
        raise BuildError("could not find the C library (libc.so.6 or ld-musl-*.so.1) in the "
                         "base image, so nbimages cannot tell which binary wheels would run there. "
                         "Build the pip step with the engine (a RUN pip install step) instead.")
    return f"glibc {best[0]}.{best[1]}", manylinux_tags(best[1], machine)


def _full_version(env: dict[str, str], tree: _Tree, plain: str) -> str:
    """The interpreter's X.Y.Z as the image records it (python:* env, dpkg or apk), or ''."""
    m = re.match(r"^(\d+\.\d+\.\d+)", env.get("PYTHON_VERSION", ""))
    if m and m.group(1).startswith(plain + "."):
        return m.group(1)
    for db in ("var/lib/dpkg/status", "lib/apk/db/installed"):
        entry = tree.get(db)
        facts = entry.fact if entry is not None and isinstance(entry.fact, dict) else {}
        for name in (f"python{plain}-minimal", f"libpython{plain}-minimal", f"python{plain}",
                     "python3"):
            m = re.match(r"^(?:\d+:)?(\d+\.\d+\.\d+)", facts.get(name, ""))
            if m and m.group(1).startswith(plain + "."):
                return m.group(1)
    return ""

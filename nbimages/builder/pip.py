"""The Python-packages layer: wheels for the *image's* Python, installed without a container.

1. The target (interpreter, install scheme, wheel platform tags) is read from the base image's
   layers (see target.py).
2. pip resolves the requirements for that target (`pip install --dry-run --report` with the
   target's --platform/--python-version/--abi, wheels only); it only fetches metadata.
   pip evaluates environment markers for the *host*, so the resolution is then re-checked with
   the target's marker values: a dependency needed only on the target (e.g.
   `exceptiongroup; python_version < "3.11"` for a 3.9 image from a 3.11 kernel) is added and
   pip resolves again; one needed only on the host is dropped.
3. The chosen wheels are fetched once into a cache keyed by sha256 (`<store home>/wheels`).
4. Each wheel is installed with pypa's `installer` into a staging root that mirrors the image
   (dest/usr/local/lib/python3.11/dist-packages/...): shebangs name the image's interpreter,
   RECORD paths are the image's, no bytecode, INSTALLER is `nbimages`. The result is
   byte-identical every time, so the layer digest is too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BuildError
from ..oci import digest as dg
from ..store import default_store
from .target import Target, find_target

INSTALLER_NAME = b"nbimages\n"
_MAX_ROUNDS = 6
# pip settings of the caller's environment that would fight the options given here.
_UNSET_ENV = ("PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER", "PIP_REQUIRE_VIRTUALENV",
              "PIP_NO_DEPS", "PIP_REPORT", "PIP_DRY_RUN", "PIP_ONLY_BINARY", "PIP_NO_BINARY",
              "PIP_PLATFORM", "PIP_PYTHON_VERSION", "PIP_ABI", "PIP_IMPLEMENTATION")

_targets: dict[str, Target] = {}
_targets_lock = threading.Lock()


@dataclass
class _Pin:
    name: str            # as the project spells it
    version: str
    sha256: str | None   # from the index; checked against the file
    url: str
    direct: bool         # a `name @ URL` requirement
    requested: bool      # named by the user (REQUESTED marker file)
    wheel: Path | None = None

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)


def install_layer_tree(base, requirements: list[str], dest: Path, *, index_url: str | None = None,
                       find_links: list[str] | None = None, store=None) -> list[dict]:
    """Install `requirements` for `base`'s Python into the staging root `dest`.

    `dest` mirrors the image's filesystem (dest/usr/local/lib/python3.11/dist-packages/...).
    Returns the pins, sorted by name: [{"name", "version", "sha256", "wheel"}].
    Raises BuildError for a requirement that cannot be resolved or has no wheel for the image;
    `dest` may then hold part of the tree and is the caller's to discard. Wheels are cached
    in `store` (default: the user's store), next to the layers built from them.
    """
    store = store or default_store()
    reqs = _parse_requirements(requirements)
    target = target_of(base)
    pins = resolve(target, reqs, index_url=index_url, find_links=find_links, store=store)
    fetch(target, pins, index_url=index_url, find_links=find_links, store=store)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for pin in sorted(pins, key=lambda p: p.key):
        install_wheel(pin.wheel, target, dest, requested=pin.requested)
    return [{"name": p.name, "version": p.version, "sha256": p.sha256, "wheel": p.wheel.name}
            for p in sorted(pins, key=lambda p: p.key)]


def check_requirements(base, requirements: list[str], *, index_url: str | None = None,
                       find_links: list[str] | None = None, store=None) -> None:
    """Resolve `requirements` for `base`'s Python now, so a name or version that does not
    exist fails where it was written (the cell) rather than at build time. A base without
    Python is not judged here: the build says what it needs."""
    reqs = _parse_requirements(requirements)
    try:
        target = target_of(base)
    except BuildError:
        return
    resolve(target, reqs, index_url=index_url, find_links=find_links, store=store)


def target_of(base) -> Target:
    """find_target(base), remembered per image ID (the scan reads every layer once)."""
    key = base.id
    with _targets_lock:
        hit = _targets.get(key)
    if hit is None:
        hit = find_target(base)
        with _targets_lock:
            _targets[key] = hit
    return hit


def wheel_cache(store=None) -> Path:
    return (store or default_store()).home / "wheels"


# ---------------------------------------------------------------- requirements

def _parse_requirements(requirements: list[str]) -> list[Requirement]:
    if isinstance(requirements, str):
        requirements = [requirements]
    out = []
    for text in requirements:
        text = str(text).strip()
        if not text:
            continue
        if text.startswith("-"):
            raise BuildError(f"{text!r} is a pip option; a pip step takes requirement "
                             "specifiers only (e.g. 'pandas==2.2.3'). Pass index_url or "
                             "find_links for another index.")
        try:
            out.append(Requirement(text))
        except InvalidRequirement as e:
            raise BuildError(f"{text!r} is not a valid requirement ({e}); write it as "
                             "'name', 'name==1.2.3', 'name[extra]>=1' or 'name @ URL'.") from None
    if not out:
        raise BuildError("the pip step names no requirements; give at least one package.")
    return out


def _plain(req: Requirement) -> str:
    """The requirement without its marker (already evaluated for the target)."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    if req.url:
        return f"{req.name}{extras} @ {req.url}"
    return f"{req.name}{extras}{req.specifier}"


# ---------------------------------------------------------------- pip

def _target_options(target: Target) -> list[str]:
    opts = ["--only-binary=:all:", "--python-version", target.python_version,
            "--implementation", target.implementation, "--abi", target.abi]
    for tag in target.platform_tags:
        opts += ["--platform", tag]
    return opts


def _index_options(index_url: str | None, find_links: list[str] | None) -> list[str]:
    opts = ["--index-url", index_url] if index_url else []
    for link in find_links or []:
        opts += ["--find-links", str(link)]
    return opts


def _pip(args: list[str], timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _UNSET_ENV}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pip", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildError(f"pip did not finish within {timeout} s ({' '.join(args[:2])}); check "
                         "the network or the index, then run the step again.") from None


def _pip_reason(stderr: str) -> str:
    """pip's ERROR lines (and the cause of a conflict) as one paragraph."""
    lines = [ln.strip() for ln in stderr.splitlines()]
    errors = [ln[len("ERROR:"):].strip() for ln in lines if ln.startswith("ERROR:")]
    if "The conflict is caused by:" in lines:
        start = lines.index("The conflict is caused by:")
        cause = []
        for ln in lines[start + 1:]:
            if not ln or ln.startswith(("To fix", "ERROR:")):
                break
            cause.append(ln)
        errors.insert(1, "The conflict is caused by: " + "; ".join(cause) + ".")
    parts = errors if errors else [ln for ln in lines[-6:] if ln]
    text = " ".join(p if p.endswith((".", ":", "!", "?")) else p + "." for p in parts)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:1200] + ("…" if len(text) > 1200 else "")


# pip before 24.2 checks a package's Requires-Python against the kernel's Python even with
# --python-version, so a 3.10 kernel cannot resolve pandas 3 for a 3.11 image.
MIN_PIP = (24, 2)


@functools.lru_cache(maxsize=None)
def _pip_version(executable: str) -> tuple[int, ...] | None:
    proc = subprocess.run([executable, "-m", "pip", "--version"], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    m = re.match(r"pip (\d+)\.(\d+)", proc.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _check_pip() -> None:
    version = _pip_version(sys.executable)
    if version is None or version < MIN_PIP:
        have = "no pip" if version is None else "pip " + ".".join(map(str, version))
        raise BuildError(f"pip steps resolve wheels with the kernel's pip, which must be "
                         f"{'.'.join(map(str, MIN_PIP))} or newer to honour the image's Python "
                         f"version (this kernel has {have}). Run `{sys.executable} -m pip "
                         "install -U pip` and run the step again.")


def _dry_run(target: Target, wanted: list[str], index_url, find_links, workdir: Path) -> dict:
    _check_pip()
    report = workdir / "report.json"
    with contextlib.suppress(FileNotFoundError):
        report.unlink()
    proc = _pip(["install", "--dry-run", "--ignore-installed", "--report", str(report),
                 "--target", str(workdir / "unused-target"), *_target_options(target),
                 *_index_options(index_url, find_links), *wanted])
    if proc.returncode != 0 or not report.exists():
        # pip logs a conflict's cause at INFO level (stdout), the ERROR lines to stderr.
        raise _resolution_error(target, wanted, proc.stdout + "\n" + proc.stderr, index_url,
                                find_links)
    return json.loads(report.read_text())


def _resolution_error(target: Target, wanted: list[str], stderr: str, index_url,
                      find_links) -> BuildError:
    reason = _pip_reason(stderr)
    if "no such option" in stderr or "No module named pip" in stderr:
        return BuildError(f"the kernel's pip is missing or too old for pip steps ({reason}); "
                          "they need pip 24.2 or newer: run `python -m pip install -U pip` "
                          "in the kernel's environment.")
    m = re.search(r"No matching distribution found for (\S+)", stderr)
    if m:
        missing = m.group(1)
        with contextlib.suppress(InvalidRequirement):
            name = Requirement(missing).name
            versions = re.search(rf"requirement {re.escape(missing)} \(from versions: ([^)]*)\)",
                                 stderr)
            no_target_wheel = (versions is None or versions.group(1).strip() == "none") and \
                _exists_for_host(name, index_url, find_links)
            if no_target_wheel:
                return BuildError(
                    f"{name} has no wheel for the image's Python ({target.describe()}; "
                    f"platform {target.platform_tags[0]}): it is published only as a source "
                    "distribution or for other platforms, and building it needs a compiler "
                    "inside the image. Build this step with the engine instead, as a "
                    f"RUN pip install {missing} step on a base that has the build tools, or "
                    f"pick a version of {name} that ships such a wheel. pip said: {reason}")
    return BuildError(f"pip could not resolve {', '.join(wanted)} for the image's Python "
                      f"({target.describe()}): {reason} Check the names and versions (and "
                      "index_url/find_links), then run the step again.")


def _exists_for_host(name: str, index_url, find_links) -> bool:
    """True if the index has `name` at all (sdists or other wheels), as seen from the host."""
    proc = _pip(["index", "versions", "--pre", *_index_options(index_url, find_links), name],
                timeout=300)
    return proc.returncode == 0 and "Available versions" in proc.stdout


# ---------------------------------------------------------------- resolution

def resolve(target: Target, reqs: list[Requirement], *, index_url: str | None = None,
            find_links: list[str] | None = None, store=None) -> list[_Pin]:
    """The wheels (name, version, sha256, URL) the target needs for `reqs`."""
    env = target.marker_environment()
    base = [str(r) for r in reqs]
    wanted = list(base)
    tmp_root = (store or default_store()).tmpdir()
    with tempfile.TemporaryDirectory(prefix="pip-resolve-", dir=tmp_root) as tmp:
        for _ in range(_MAX_ROUNDS):
            report = _dry_run(target, wanted, index_url, find_links, Path(tmp))
            items = {canonicalize_name(i["metadata"]["name"]): i for i in report.get("install", [])}
            needed, extra = _target_closure(reqs, items, env)
            new = [e for e in extra if e not in wanted]
            if not new:
                break
            wanted += new
        else:
            raise BuildError(f"the requirements {' '.join(base)} did not settle for the image's "
                             f"Python ({target.describe()}) after {_MAX_ROUNDS} resolutions; pin "
                             "the versions of the packages involved and run the step again.")
    requested = {canonicalize_name(r.name) for r in reqs}
    pins = []
    for key in sorted(needed):
        item = items[key]
        info = item.get("download_info") or {}
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        pins.append(_Pin(item["metadata"]["name"], item["metadata"]["version"],
                         hashes.get("sha256"), info.get("url", ""), bool(item.get("is_direct")),
                         key in requested))
    return pins


def _target_closure(reqs: list[Requirement], items: dict[str, dict],
                    env: dict[str, str]) -> tuple[set[str], list[str]]:
    """(names the target needs, requirements to add) with markers evaluated for the target."""
    needed: set[str] = set()
    extra: list[str] = []
    seen: set[tuple[str, frozenset]] = set()
    queue: list[Requirement] = [r for r in reqs if _applies(r, env, "")]
    while queue:
        req = queue.pop(0)
        key = canonicalize_name(req.name)
        item = items.get(key)
        if item is None or not _satisfies(item, req):
            extra.append(_plain(req))
            continue
        needed.add(key)
        state = (key, frozenset(req.extras))
        if state in seen:
            continue
        seen.add(state)
        for text in item["metadata"].get("requires_dist") or []:
            try:
                dep = Requirement(text)
            except InvalidRequirement:
                continue
            if any(_applies(dep, env, e) for e in [""] + sorted(req.extras)):
                queue.append(dep)
    return needed, extra


def _applies(req: Requirement, env: dict[str, str], extra: str) -> bool:
    if req.marker is None:
        return True
    return req.marker.evaluate({**env, "extra": extra})


def _satisfies(item: dict, req: Requirement) -> bool:
    if req.url or not req.specifier:
        return True
    try:
        return req.specifier.contains(Version(item["metadata"]["version"]), prereleases=True)
    except InvalidVersion:
        return True


# ---------------------------------------------------------------- the wheel cache

def _cached(cache: Path, sha256: str | None) -> Path | None:
    if not sha256:
        return None
    d = cache / sha256
    if d.is_dir():
        for p in d.glob("*.whl"):
            return p
    return None


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return dg.of_stream(f)[0].split(":", 1)[1]


def _put(cache: Path, path: Path) -> tuple[str, Path]:
    """Move a downloaded wheel into the cache under its sha256 (atomic rename)."""
    sha = _sha256(path)
    d = cache / sha
    d.mkdir(parents=True, exist_ok=True)
    final = d / path.name
    if not final.exists():
        os.replace(path, final)
    return sha, final


def fetch(target: Target, pins: list[_Pin], *, index_url: str | None = None,
          find_links: list[str] | None = None, store=None) -> None:
    """Set pin.wheel for each pin, downloading only the wheels the cache lacks."""
    store = store or default_store()
    cache = wheel_cache(store)
    cache.mkdir(parents=True, exist_ok=True)
    missing = []
    for pin in pins:
        pin.wheel = _cached(cache, pin.sha256)
        if pin.wheel is None:
            missing.append(pin)
    if not missing:
        return
    args = [p.name + " @ " + p.url if p.direct else f"{p.name}=={p.version}" for p in missing]
    with tempfile.TemporaryDirectory(prefix="pip-download-", dir=store.tmpdir()) as tmp:
        proc = _pip(["download", "--no-deps", "--quiet", "-d", tmp, *_target_options(target),
                     *_index_options(index_url, find_links), *args])
        if proc.returncode != 0:
            raise BuildError(f"pip could not download {' '.join(args)} for the image's Python "
                             f"({target.describe()}): {_pip_reason(proc.stderr)} Check the "
                             "network or the index, then run the step again.")
        got: dict[str, tuple[str, Path]] = {}
        for path in sorted(Path(tmp).glob("*.whl")):
            sha, final = _put(cache, path)
            got[canonicalize_name(path.name.split("-", 1)[0])] = (sha, final)
    for pin in missing:
        sha, final = got.get(pin.key, (None, None))
        if final is None:
            raise BuildError(f"pip reported success but no wheel for {pin.name} {pin.version} "
                             "arrived; run the step again.")
        if pin.sha256 and pin.sha256 != sha:
            raise BuildError(f"the wheel {final.name} hashes to sha256:{sha} but the index "
                             f"announced sha256:{pin.sha256}; the index or a proxy changed it. "
                             "Nothing was installed; run the step again or use another index.")
        pin.sha256, pin.wheel = sha, final


# ---------------------------------------------------------------- installing

def install_wheel(wheel: Path, target: Target, dest: Path, *, requested: bool = False) -> None:
    """Install one wheel into the staging root `dest` for the image's interpreter."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    destination = SchemeDictionaryDestination(
        target.scheme(), interpreter=target.interpreter_path, script_kind="posix",
        bytecode_optimization_levels=(), destdir=str(dest))
    metadata = {"INSTALLER": INSTALLER_NAME}
    if requested:
        metadata["REQUESTED"] = b""
    try:
        with WheelFile.open(wheel) as source:
            source.validate_record()
            install(source, destination, additional_metadata=metadata)
    except FileExistsError as e:
        raise BuildError(f"installing {wheel.name} would overwrite {e.filename or e}, which "
                         "another package of this step already installed; two packages ship "
                         "the same file. Drop one of them from the step.") from None
    except Exception as e:  # installer's errors: a damaged or non-standard wheel
        if isinstance(e, BuildError):
            raise
        raise BuildError(f"could not install {wheel.name} ({e.__class__.__name__}: {e}); the "
                         "wheel may be damaged. Delete it from "
                         f"{wheel.parent} and run the step again.") from None


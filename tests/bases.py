"""Base images and wheels for the tests, made here without Docker Hub.

- A Debian bookworm root filesystem with python3 (debootstrap --variant=minbase) is built once
  per machine and cached as a tar under NBIMAGES_TEST_CACHE (default /var/tmp/nbimages-cache,
  outside the repo); later runs import that tar into the engine in seconds.
- Wheels for tests are downloaded on the host (pip reaches its index there; containers don't)
  into the same cache, and can be served on 127.0.0.1 as a PEP 503 simple index.

The fixtures are re-exported by tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from pathlib import Path

import filelock
import pytest

CACHE = Path(os.environ.get("NBIMAGES_TEST_CACHE", "/var/tmp/nbimages-cache"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SUITE = "bookworm"
PACKAGES = ("python3",)
PYTHON_TAG = "nbtest/python:3.11"
PYTHON_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Trimmed from the root filesystem: package caches and lists, docs and translations.
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
         "usr/share/locale", "usr/share/info")


def unavailable(message: str) -> None:
    """A test cannot run here: it fails under CI=true (where everything must be present) and
    is skipped elsewhere, with `message` saying what is missing."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: nothing may be skipped)", pytrace=False)
    pytest.skip(message)


def _missing(what: str) -> None:
    unavailable(f"{what} is not available")


def debian_mirror() -> str:
    """The Debian archive apt on this machine uses (deb822 or one-line sources)."""
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for f in files:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                m = re.search(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+/debian)/?\s*", line)
                if m and "security" not in m.group(1):
                    return m.group(1)
    return "http://deb.debian.org/debian"


def rootfs_key(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=False).stdout.strip() or "amd64"
    return f"debian-{suite}-minbase-{'+'.join(sorted(packages))}-{arch}"


def debian_rootfs_tar(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> Path:
    """A cached tar of a debootstrap minbase root with `packages`; built on first use.

    Cold: about 35 s of debootstrap plus a few seconds of tar. Concurrent test processes wait
    on a file lock, and only a complete tar is ever renamed into place.
    """
    key = rootfs_key(suite, packages)
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"{key}.tar"
    if out.exists():
        return out
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        _missing("debootstrap as root (needed once to build the Python base image)")
    with filelock.FileLock(str(CACHE / f"{key}.lock"), timeout=1200):
        if out.exists():
            return out
        root = CACHE / f"{key}.root"
        shutil.rmtree(root, ignore_errors=True)
        started = time.monotonic()
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
               str(root), debian_mirror()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                                 f"\n{proc.stderr[-3000:]}")
        for rel in _TRIM:
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        tmp = CACHE / f"{key}.tar.tmp"
        subprocess.run(["tar", "--numeric-owner", "--sort=name", "--xattrs", "-C", str(root),
                        "-cf", str(tmp), "."], check=True)
        os.replace(tmp, out)
        shutil.rmtree(root, ignore_errors=True)
        (CACHE / f"{key}.seconds").write_text(f"{time.monotonic() - started:.1f}\n")
    return out


def import_rootfs(client, tar: Path, tag: str, changes: list[str]) -> str:
    """`docker import` the tar as `tag` unless the engine already has it from this same tar."""
    stamp = f"{tar.name}:{tar.stat().st_size}:{int(tar.stat().st_mtime)}"
    with contextlib.suppress(Exception):
        img = client.images.get(tag)
        if (img.labels or {}).get("nbtest.rootfs") == stamp:
            return img.id
    changes = list(changes) + [f'LABEL nbtest.rootfs="{stamp}"']
    client.api.import_image_from_file(str(tar), repository=tag.rsplit(":", 1)[0],
                                      tag=tag.rsplit(":", 1)[1], changes=changes)
    return client.images.get(tag).id


def python_changes() -> list[str]:
    return [f"ENV PATH={PYTHON_ENV_PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]']


@pytest.fixture(scope="session")
def python_base_image(docker_client) -> str:
    """`nbtest/python:3.11` in the engine: Debian bookworm minbase with Debian's python3 3.11.

    Python is /usr/bin/python3 -> python3.11; packages installed for it go to
    /usr/local/lib/python3.11/dist-packages (Debian's site.py), scripts to /usr/local/bin.
    """
    import_rootfs(docker_client, debian_rootfs_tar(), PYTHON_TAG, python_changes())
    return PYTHON_TAG


@pytest.fixture(scope="session")
def python_base_in_registry(python_base_image, docker_client, registry) -> str:
    """The Python base pushed to the loopback registry; returns its reference."""
    repo = f"{registry}/{PYTHON_TAG.rsplit(':', 1)[0]}"
    tag = PYTHON_TAG.rsplit(":", 1)[1]
    docker_client.images.get(python_base_image).tag(repo, tag)
    for line in docker_client.images.push(repo, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise AssertionError(f"push of {repo}:{tag} failed: {line['error']}")
    return f"{repo}:{tag}"


@functools.lru_cache(maxsize=None)
def python_base_oci(tar_path: str | None = None):
    """The Python base as an nbimages Image straight from the cached rootfs tar (no engine).

    One uncompressed layer, config with the same PATH/CMD as the engine image. Useful for
    tests of what nbimages reads from a base, without Docker.
    """
    tar = Path(tar_path) if tar_path else debian_rootfs_tar()
    return image_from_tars([tar], env=[f"PATH={PYTHON_ENV_PATH}", "LANG=C.UTF-8"],
                           cmd=["python3"])


def image_from_tars(tars: list[Path], *, env: list[str] | None = None,
                    cmd: list[str] | None = None, architecture: str = "amd64",
                    variant: str | None = None):
    """An nbimages Image whose layers are the given uncompressed tar files (read lazily)."""
    from nbimages.image import Image, Layer
    from nbimages.oci import canonical, mediatypes as mt
    from nbimages.oci.descriptor import Descriptor
    from nbimages.oci.manifest import Manifest

    layers, diff_ids = [], []
    for tar in tars:
        h = hashlib.sha256()
        with open(tar, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        desc = Descriptor(mt.OCI_LAYER, digest, tar.stat().st_size)
        layers.append(Layer(desc, digest, (lambda p=tar: open(p, "rb"))))
        diff_ids.append(digest)
    config = {"architecture": architecture, "os": "linux",
              "config": {"Env": env or [], "Cmd": cmd or []},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    if variant:
        config["variant"] = variant
    config_bytes = canonical.dumps(config)
    config_desc = Descriptor(mt.OCI_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                             len(config_bytes))
    manifest = Manifest.build(config_desc, [l.descriptor for l in layers])
    return Image(manifest, config_bytes, layers, source="test:" + ",".join(t.name for t in tars))


def tar_tree(root: Path, out: Path) -> Path:
    """A plain layer tar of a staging directory (sorted, root-owned), for tests only."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(root.rglob("*")):
            info = tf.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    return out


# ---------------------------------------------------------------- wheels for tests

WHEELHOUSE = CACHE / "wheelhouse"


def download_wheels(requirements: list[str], *, python_version: str = "3.11",
                    platforms: tuple[str, ...] = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64",
                                                  "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
                    dest: Path | None = None) -> Path:
    """Download wheels (with dependencies) for a target on the host into the test wheelhouse.

    A marker file per request makes a repeated call free; the directory is shared by all
    requests, so it can be served as one index.
    """
    dest = dest or WHEELHOUSE
    dest.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps([sorted(requirements), python_version, list(platforms)])
                         .encode()).hexdigest()[:16]
    done = dest / f".done-{key}"
    if done.exists():
        return dest
    with filelock.FileLock(str(dest / ".lock"), timeout=600):
        if done.exists():
            return dest
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp",
               "--abi", "cp" + python_version.replace(".", ""), "-d", str(dest)]
        for p in platforms:
            cmd += ["--platform", p]
        proc = subprocess.run(cmd + list(requirements), capture_output=True, text=True,
                              check=False, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"pip download {requirements} failed:\n{proc.stderr[-3000:]}")
        done.write_text("\n".join(requirements) + "\n")
    return dest


def _project(filename: str) -> str:
    name = filename.split("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


class WheelIndex:
    """A PEP 503 simple index of a wheel directory on 127.0.0.1 (pages built per request)."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_IndexHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/simple/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _IndexHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["simple"]:
            return super().do_GET()  # the wheel files themselves
        root = Path(self.directory)
        wheels = sorted(p.name for p in root.glob("*.whl"))
        if len(parts) == 1:
            names = sorted({_project(w) for w in wheels})
            body = "".join(f'<a href="/simple/{n}/">{n}</a>\n' for n in names)
        else:
            want = re.sub(r"[-_.]+", "-", parts[1]).lower()
            links = []
            for w in wheels:
                if _project(w) == want:
                    sha = _sha256_file(root / w)
                    links.append(f'<a href="/{html.escape(w)}#sha256={sha}">{html.escape(w)}</a>')
            if not links:
                self.send_error(404)
                return
            body = "\n".join(links) + "\n"
        data = f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@functools.lru_cache(maxsize=None)
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="session")
def wheel_index():
    """A loopback simple index over the test wheelhouse; fill it with download_wheels()."""
    index = WheelIndex(WHEELHOUSE)
    yield index
    index.close()


@pytest.fixture
def offline_pip(monkeypatch):
    """pip sees no configuration files or PIP_* variables (only the index a test names)."""
    for k in list(os.environ):
        if k.startswith("PIP_") and k not in ("PIP_CERT",):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")



"""A two-platform (linux/amd64 + linux/arm64) Python base for the multi-platform tests, made
without Docker Hub: Debian bookworm's python3 packages for each architecture, fetched with
`apt-get download PKG:ARCH` and unpacked with `dpkg-deb -x` (seconds, where a foreign
debootstrap would run its second stage under QEMU for minutes). The arm64 half runs in the
engine through the binfmt handler scripts/binfmt.sh registers.

Each root filesystem is cached as a tar under NBIMAGES_TEST_CACHE like tests/bases.py's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import filelock
import pytest

from bases import CACHE, PYTHON_ENV_PATH, download_wheels, image_from_tars, unavailable
from nbimages.sources import copy as nbcopy, remote

# Debian's python3.11 and what it (and numpy's manylinux wheels) load; busybox gives sh/uname.
PACKAGES = ("python3-minimal", "python3.11-minimal", "libpython3.11-minimal",
            "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1",
            "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "libcrypt1", "libuuid1",
            "libncursesw6", "libtinfo6", "libsqlite3-0", "libreadline8", "libdb5.3", "libnsl2",
            "libtirpc3", "busybox-static")
BUSYBOX_LINKS = ("sh", "uname", "ls", "cat")
ARCHES = ("amd64", "arm64")
REPO = "nbtest12/python-multi"
NUMPY = "numpy==2.4.6"
WHEEL_PLATFORMS = {
    "amd64": ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
              "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_36_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64",
              "manylinux2014_aarch64"),
}


def binfmt_aarch64() -> None:
    """The engine can run arm64 containers here (scripts/binfmt.sh start), or the test cannot."""
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        unavailable("no binfmt_misc handler for aarch64: run scripts/binfmt.sh start as root")


def python_root_tar(arch: str) -> Path:
    """A cached tar of Debian's python3 packages for `arch`, unpacked into one root."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"debian-bookworm-debs-python3-{arch}.tar"
    if out.exists():
        return out
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        unavailable("apt-get and dpkg-deb (Debian) are needed to make the multi-platform base")
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                             text=True, check=False).stdout.split()
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                            check=False).stdout.strip()
    if arch != native and arch not in foreign:
        unavailable(f"dpkg has no {arch} architecture: run scripts/binfmt.sh start as root")
    with filelock.FileLock(str(CACHE / f"{out.name}.lock"), timeout=900):
        if out.exists():
            return out
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f"debs-{arch}-", dir=CACHE))
        try:
            debs, root = work / "debs", work / "root"
            debs.mkdir()
            root.mkdir()
            proc = subprocess.run(["apt-get", "download", *[f"{p}:{arch}" for p in PACKAGES]],
                                  cwd=debs, capture_output=True, text=True, timeout=600,
                                  check=False)
            if proc.returncode != 0:
                raise AssertionError(f"apt-get download for {arch} failed:\n{proc.stderr[-3000:]}")
            for deb in sorted(debs.glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            for name in BUSYBOX_LINKS:
                link = root / "bin" / name
                if not link.exists():
                    link.symlink_to("busybox")
            (root / "tmp").mkdir(exist_ok=True)
            os.chmod(root / "tmp", 0o1777)
            tmp = out.with_suffix(".tar.tmp")
            subprocess.run(["tar", "--numeric-owner", "--owner=0", "--group=0", "--sort=name",
                            "--mtime=@0", "-C", str(root), "-cf", str(tmp), "."], check=True)
            os.replace(tmp, out)
            (CACHE / f"{out.name}.seconds").write_text(f"{time.monotonic() - started:.1f}\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def python_platform_image(arch: str):
    """One platform of the base as an nbimages Image (one uncompressed layer)."""
    return image_from_tars([python_root_tar(arch)], env=[f"PATH={PYTHON_ENV_PATH}", "LANG=C.UTF-8"],
                           cmd=["python3"], architecture=arch)


@pytest.fixture(scope="session")
def multiplatform_python_base(registry) -> str:
    """`REGISTRY/nbtest12/python-multi:3.11`: an OCI index over the amd64 and arm64 halves."""
    binfmt_aarch64()
    members = []
    for arch in ARCHES:
        ref = f"{registry}/{REPO}:3.11-{arch}"
        nbcopy.push(python_platform_image(arch), ref, progress=False)
        members.append((ref, None))
    ref = f"{registry}/{REPO}:3.11"
    remote.push_index(members, ref)
    return ref


@pytest.fixture(scope="session")
def numpy_wheels() -> None:
    """numpy wheels for both platforms' Python 3.11 in the test wheelhouse (see wheel_index)."""
    for arch in ARCHES:
        download_wheels([NUMPY], platforms=WHEEL_PLATFORMS[arch])

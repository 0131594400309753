"""`Recipe.apt("libgomp1", "graphviz")` (no engine) vs `RUN apt-get install` on the Docker engine.

    .venv/bin/python benchmarks/bench_apt.py [--repeat 3]

Both sides install the same packages on the same base (`nbtest/python:3.11`, the debootstrap
bookworm minbase of the tests) from the same Debian mirror: the tests' loopback caching proxy
(tests/apt_mirror.py), so neither side pays for the Internet and both see one InRelease.
docker = `docker build --no-cache --network host` (legacy builder) of
`RUN apt-get update && apt-get install -y --no-install-recommends ... && rm -rf
/var/lib/apt/lists/*`. Scenarios, each the median of --repeat runs:
- cold: nbimages with an empty store and an empty download cache / docker build --no-cache;
- downloads cached: empty store, verified indexes and .debs already cached (a new notebook
  on a machine that built these before); docker has no such cache, so its cold time again;
- no change: build again (nbimages' layer cache / docker's build cache).
Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import docker  # noqa: E402

import nbimages  # noqa: E402
from apt_mirror import DebianMirror  # noqa: E402
from bases import PYTHON_TAG, debian_rootfs_tar, import_rootfs, python_base_oci, python_changes  # noqa: E402
from benchmarks.timing import median_seconds  # noqa: E402
from nbimages.store import Store  # noqa: E402

PACKAGES = ("libgomp1", "graphviz")
TAG = "nbbench15/apt-docker:1"


def docker_build(ctx: Path, cache: bool) -> None:
    cmd = ["docker", "build", "-q", "--network", "host", "-t", TAG, str(ctx)]
    if not cache:
        cmd.insert(2, "--no-cache")
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    runs = ap.parse_args().repeat
    import_rootfs(docker.from_env(), debian_rootfs_tar(), PYTHON_TAG, python_changes())
    mirror = DebianMirror()
    tmp = Path(tempfile.mkdtemp(prefix="bench-apt-"))
    try:
        ctx = tmp / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM {PYTHON_TAG}\n"
            f"RUN echo 'deb {mirror.url} bookworm main' > /etc/apt/sources.list && "
            "apt-get update -q && apt-get install -q -y --no-install-recommends "
            f"{' '.join(PACKAGES)} && rm -rf /var/lib/apt/lists/*\n")
        base = python_base_oci()
        counter = iter(range(10_000))

        def embedded(download_cache: bool, layer_cache: Store | None = None):
            n = next(counter)
            os.environ["NBIMAGES_APT_CACHE"] = str(tmp / ("apt-warm" if download_cache
                                                          else f"apt-cold-{n}"))
            store = layer_cache or Store(tmp / f"store-{n}")
            nbimages.Recipe(base).apt(*PACKAGES, mirror=mirror.url).build(
                store=store, engine="embedded")

        embedded(True)  # fill the proxy's cache and the warm download cache
        docker_build(ctx, cache=False)
        warm_store = Store(tmp / "store-warm")
        embedded(True, warm_store)
        rows = [
            ("cold (empty store, empty download cache / `--no-cache`)",
             median_seconds(lambda: embedded(False), runs),
             median_seconds(lambda: docker_build(ctx, False), runs)),
            ("downloads cached, empty store / `--no-cache`",
             median_seconds(lambda: embedded(True), runs), None),
            ("no change (layer cache / build cache)",
             median_seconds(lambda: embedded(True, warm_store), runs),
             median_seconds(lambda: docker_build(ctx, True), runs)),
        ]
        rows[1] = (rows[1][0], rows[1][1], rows[0][2])
        size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", TAG], check=True,
                              capture_output=True, text=True).stdout.strip()
        print(f"packages: {' '.join(PACKAGES)}; docker image size {int(size):,} bytes; "
              f"median of {runs}; {time.strftime('%Y-%m-%d')}\n")
        print("| scenario | nbimages s | docker build s | nbimages / docker |")
        print("|---|---|---|---|")
        for name, ours, theirs in rows:
            print(f"| {name} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")
    finally:
        mirror.close()
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True)


if __name__ == "__main__":
    main()

"""A two-platform build (linux/amd64 + linux/arm64) against the alternatives, in one run.

    .venv/bin/python benchmarks/bench_platforms.py [--repeat 3]

Needs the loopback registry, the Docker engine (legacy builder) and scripts/binfmt.sh start
(aarch64 through QEMU). Base: the two-platform Python 3.11 base of the tests (Debian's
packages for each architecture, tests/platform_bases.py), pushed to 127.0.0.1:5000. Recipe:
a 20 MB data file, a small script, `pip numpy` from a loopback wheel index. Timed, each the
median of --repeat runs from an empty store:
- nbimages, one build with platforms=[amd64, arm64] (shared layers built once);
- nbimages, two single-platform builds one after the other, each in its own empty store
  (what a user without multi-platform builds runs);
- `docker build --platform linux/arm64` (legacy builder) of the equivalent Dockerfile, whose
  `RUN pip install` runs under QEMU: the arm64 half alone, as buildx would make it.
Prints a Markdown table for BENCHMARKS.md ("Multi-platform builds (issue 12)").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import nbimages  # noqa: E402
import platform_bases as pb  # noqa: E402
from bases import WHEELHOUSE, WheelIndex  # noqa: E402
from nbimages.sources import copy as nbcopy, remote  # noqa: E402
from nbimages.store import Store  # noqa: E402

REGISTRY = "127.0.0.1:5000"
DATA = 20_000_000


def base_ref() -> str:
    members = []
    for arch in pb.ARCHES:
        ref = f"{REGISTRY}/{pb.REPO}:3.11-{arch}"
        nbcopy.push(pb.python_platform_image(arch), ref, progress=False)
        members.append((ref, None))
    remote.push_index(members, f"{REGISTRY}/{pb.REPO}:3.11")
    return f"{REGISTRY}/{pb.REPO}:3.11"


def recipe(base: str, ctx: Path, index_url: str, platforms) -> nbimages.Recipe:
    r = nbimages.Recipe(base, context=ctx, **platforms)
    r.copy("data.bin", "/data/")
    r.file("/app/hello.py", "import numpy, platform\nprint(platform.machine(), numpy.__version__)\n")
    r.pip(pb.NUMPY, index_url=index_url)
    r.cmd(["python3", "/app/hello.py"])
    return r


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        sys.exit("run scripts/binfmt.sh start first (aarch64 through QEMU)")
    for arch in pb.ARCHES:
        pb.download_wheels([pb.NUMPY], platforms=pb.WHEEL_PLATFORMS[arch])
    os.environ.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    base = base_ref()
    index = WheelIndex(WHEELHOUSE)
    tmp = Path(tempfile.mkdtemp(prefix="bench-platforms-"))
    try:
        ctx = tmp / "ctx"
        ctx.mkdir()
        with open("/dev/urandom", "rb") as f:  # incompressible, like real data
            (ctx / "data.bin").write_bytes(f.read(DATA))
        both, apart, docker = [], [], []
        for i in range(args.repeat):
            both.append(timed(lambda: recipe(base, ctx, index.url,
                                             {"platforms": ["linux/amd64", "linux/arm64"]})
                              .build("bench12:both", store=Store(tmp / f"both{i}"))))

            def two_builds():
                for p in ("linux/amd64", "linux/arm64"):
                    recipe(base, ctx, index.url, {"platform": p}).build(
                        "bench12:one", store=Store(tmp / f"one{i}{p[-5:]}"))
            apart.append(timed(two_builds))
        # docker build of the arm64 image through QEMU: the base has no pip, so pip runs
        # from its wheel (copied in with the numpy aarch64 wheel), all of it emulated.
        (ctx / "hello.py").write_text("import numpy, platform\nprint(platform.machine())\n")
        wheels = ctx / "wheels"
        wheels.mkdir()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(wheels), "pip"], check=True)
        for w in WHEELHOUSE.glob("numpy-*aarch64*.whl"):
            shutil.copy(w, wheels)
        pip_wheel = next(wheels.glob("pip-*.whl")).name
        (ctx / "Dockerfile").write_text(
            f"FROM {REGISTRY}/{pb.REPO}:3.11-arm64\nCOPY data.bin /data/\n"
            "COPY hello.py /app/\nCOPY wheels /tmp/wheels\n"
            f"RUN python3 /tmp/wheels/{pip_wheel}/pip install --break-system-packages --no-index --find-links "
            f"/tmp/wheels {pb.NUMPY} && rm -rf /tmp/wheels\n")
        for i in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(
                ["docker", "build", "-q", "--no-cache", "--network", "none", "--platform",
                 "linux/arm64", "-t", "bench12:docker-arm64", str(ctx)],
                capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
            if proc.returncode:
                sys.exit(f"docker build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
            docker.append(time.perf_counter() - t0)
    finally:
        index.close()
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median
    print("| build (from an empty store) | seconds | vs one two-platform build |")
    print("|---|---:|---:|")
    print(f"| nbimages, platforms=[amd64, arm64] (one build) | {med(both):.2f} | 1.00x |")
    print(f"| nbimages, two single-platform builds one after the other | {med(apart):.2f} | "
          f"{med(apart) / med(both):.2f}x |")
    print(f"| docker build --platform linux/arm64 (legacy builder, RUN pip under QEMU), the "
          f"arm64 half only | {med(docker):.2f} | {med(docker) / med(both):.2f}x |")


if __name__ == "__main__":
    main()

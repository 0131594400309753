"""Benchmark: `nbimages store df` on a store of 50 images, against `docker system df -v` on
the same 50 images in the Docker engine and the floor of `du -sb` over the store.

The 50 images are built daemonless into a fresh store under --workdir: five bases of three
layers each (about 1 MB of random bytes per layer), ten images on each base with two layers
of their own, tagged nbbench/store-df-N:1, so `df` has shared and unique bytes to tell apart.
The same images are loaded into the engine (`docker load` of their saved tars) for
`docker system df -v`, and removed from it at the end. Timed in one run, warm cache, median
of --runs:

- nbimages.store_df() in the process (what `%image store df` costs in a kernel)
- nbimages store df --json (a fresh interpreter: import and all)
- docker system df -v (the engine also counts whatever else it holds; the count is printed)
- floor: du -sb over the store (a total only, nothing per image)

    .venv/bin/python benchmarks/bench_store.py [--workdir DIR] [--runs 5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from timing import median_seconds

VENV_BIN = Path(sys.executable).parent
NBIMAGES = str(VENV_BIN / "nbimages")
IMAGES = 50
BASES = 5


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build_store(home: Path, tars: Path) -> list[str]:
    """The 50 images in a fresh store at `home`, each also saved as a docker tar in `tars`."""
    os.environ["NBIMAGES_HOME"] = str(home)
    import nbimages
    names = []
    for b in range(BASES):
        base = nbimages.Recipe("scratch")
        for layer in range(3):
            base.file(f"/base/{layer}.bin", os.urandom(1_000_000))
        for i in range(IMAGES // BASES):
            r = nbimages.Recipe("scratch")
            r.steps = list(base.steps)
            r.file("/app/id", f"{b}-{i}\n").file("/app/data.bin", os.urandom(200_000))
            name = f"nbbench/store-df-{b * (IMAGES // BASES) + i}:1"
            r.build(name).save(tars / f"{len(names)}.tar")
            names.append(name)
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/nbimages-bench/store", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the images in the engine")
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    home, tars = a.workdir / "home", a.workdir / "tars"
    tars.mkdir(parents=True)
    names = build_store(home, tars)
    for tar in sorted(tars.iterdir()):
        sh(["docker", "load", "-i", str(tar)])
    try:
        import nbimages
        usage = nbimages.store_df()
        assert len(usage.images) == IMAGES, usage
        shared = int(usage.images["shared"].sum())
        engine_images = len(sh(["docker", "images", "-q"]).stdout.split())
        env = {**os.environ, "NBIMAGES_HOME": str(home)}
        rows = [
            ("nbimages.store_df() (in the process)", median_seconds(nbimages.store_df, a.runs)),
            ("nbimages store df --json (new process)",
             median_seconds(lambda: sh([NBIMAGES, "store", "df", "--json"], env=env), a.runs)),
            (f"docker system df -v ({engine_images} images in the engine)",
             median_seconds(lambda: sh(["docker", "system", "df", "-v"]), a.runs)),
            ("floor: du -sb over the store", median_seconds(lambda: sh(["du", "-sb", str(home)]), a.runs)),
        ]
    finally:
        if not a.keep:
            for name in names:
                subprocess.run(["docker", "rmi", "-f", name], capture_output=True)
    ref = rows[2][1]
    print(f"{IMAGES} images, {usage.total / 1e6:.1f} MB in the store "
          f"({shared / 1e6:.1f} MB counted as shared), median of {a.runs}\n")
    print("| command | wall s | × docker system df -v |")
    print("|---|---:|---:|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.3f} | {seconds / ref:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

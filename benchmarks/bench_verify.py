"""Benchmark: what verifying every layer against the config's diff_id costs `nbimages inspect`.

Writes a synthetic image (no engine needed): LAYERS layers of random-content files, about
SIZE_MB in all, as a docker-archive with plain layer tars (the `docker save` shape) and as an
OCI layout with gzip layers. Then times, side by side in one run (warm cache, median of
--runs, each in a fresh process with its peak RSS):

- nbimages inspect --json, verifying (the default since issue 17)
- the same with verification switched off in the process (what inspect did before)
- dive --ci on the docker-archive (the tool users would pick instead)
- the floor: GNU tar -tvf over the layer tars

    .venv/bin/python benchmarks/bench_verify.py [--workdir DIR] [--size-mb 800] [--runs 3]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
DIVE = shutil.which("dive") or str(VENV_BIN / "dive")

RUN = """
import re, sys, time
import nbimages
from nbimages.image import Layer
if sys.argv[2] == "off":
    plain = Layer.open_tar
    Layer.open_tar = lambda self, verify=True: plain(self, verify=False)
t = time.perf_counter()
insp = nbimages.inspect(sys.argv[1])
insp.to_json()
wall = time.perf_counter() - t
hwm = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(wall, hwm // 1024, len(insp.files()))
"""


def write_image(work: Path, size_mb: int, layers: int) -> tuple[Path, Path]:
    rnd = random.Random(17)
    tars = []
    per_layer = (size_mb << 20) // layers
    for i in range(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            left = per_layer
            n = 0
            while left > 0:
                size = min(left, int(rnd.expovariate(1 / 40_000)))
                ti = tarfile.TarInfo(f"layer{i}/d{n % 97}/f{n}")
                ti.size = size
                tf.addfile(ti, io.BytesIO(rnd.randbytes(size)))
                left -= size
                n += 1
        tars.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = hashlib.sha256(config).hexdigest() + ".json"
    archive = work / "plain.tar"
    with tarfile.open(archive, "w") as out:
        names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
        manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["bench/verify:1"],
                                "Layers": names}]).encode()
        for name, data in [(cfg_name, config), *zip(names, tars), ("manifest.json", manifest)]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
    layout = work / "gzip-layout"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import hostile
    hostile.oci_layout(layout, [(gzip.compress(t, 1, mtime=0), hostile.LAYER_GZIP) for t in tars],
                       diff_ids=diff_ids)
    (work / "layers").mkdir(exist_ok=True)
    for i, t in enumerate(tars):
        (work / "layers" / f"{i}.tar").write_bytes(t)
    return archive, layout


def timed(cmd: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    rss = int(proc.stderr.strip().splitlines()[-1]) // 1024
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="/var/tmp/nbimages-bench-verify")
    ap.add_argument("--size-mb", type=int, default=800)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    archive, layout = write_image(work, a.size_mb, a.layers)
    rows = []

    def nb(source: str, mode: str) -> tuple[float, int]:
        runs = []
        for _ in range(a.runs):
            out = subprocess.run([sys.executable, "-c", RUN, source, mode], capture_output=True,
                                 text=True, check=True).stdout.split()
            runs.append((float(out[0]), int(out[1])))
        return statistics.median(r[0] for r in runs), max(r[1] for r in runs)

    def ext(cmd: list[str]) -> tuple[float, int]:
        runs = [timed(cmd) for _ in range(a.runs)]
        return statistics.median(r[0] for r in runs), max(r[1] for r in runs)

    import nbimages
    gz_archive = nbimages.save(f"oci:{layout}", work / "gzip-docker.tar")  # Docker 25 shape

    def dive_on(tar: Path) -> tuple[float, int]:
        out = work / "dive.json"
        return ext(["sh", "-c", f"rm -f {out}; {DIVE} --ci --source docker-archive --json "
                                f"{out} docker-archive://{tar} >/dev/null"])
    dive = dive_on(archive)
    dive_gz = dive_on(gz_archive)
    floor = ext(["sh", "-c", f"for f in {work}/layers/*.tar; do tar -tvf $f; done >/dev/null"])
    for label, source, against in (
            ("docker-archive, plain layers", f"docker-archive:{archive}", dive),
            ("OCI layout, gzip layers", f"oci:{layout}", dive_gz),
            ("docker-archive, gzip layers", f"docker-archive:{gz_archive}", dive_gz)):
        on, off = nb(source, "on"), nb(source, "off")
        rows.append((f"nbimages inspect, verifying diff_ids ({label})", *on, against))
        rows.append((f"nbimages inspect, not verifying ({label})", *off, against))
    rows.append(("dive --ci --json (docker-archive, plain layers)", *dive, dive))
    rows.append(("dive --ci --json (docker-archive, gzip layers)", *dive_gz, dive_gz))
    rows.append(("floor: tar -tvf over the layer tars", *floor, dive))
    print(f"\n{a.size_mb} MB in {a.layers} layers of random files\n")
    print("× dive: against dive on the same layers (plain or gzip)\n")
    print("| command | wall s | peak RSS MB | × dive |\n|---|---:|---:|---:|")
    for name, wall, rss, ref in rows:
        print(f"| {name} | {wall:.2f} | {rss} | {wall / ref[0]:.2f} |")


if __name__ == "__main__":
    main()

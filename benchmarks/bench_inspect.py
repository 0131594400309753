"""Benchmark: `nbimages inspect --json` against `dive --ci` and the floor of listing the tars.

Builds, with the Docker engine, a large image (>= 1 GB of files, >= 50,000 entries, >= 10
layers, from this machine's /usr) and a variant with about a thousand deletions on top,
saves both with `docker save`, copies them to OCI layouts with skopeo (gzip layers), and
times in one run, warm cache, with peak RSS:

- nbimages inspect --json docker-archive:TAR  (uncompressed layers: headers read, data skipped)
- nbimages inspect --json oci:DIR             (gzip layers: everything inflated)
- dive --ci --source docker-archive TAR
- the floors: GNU `tar -tvf` over the layer tars, `tar -tvzf` over the gzip blobs.

It checks that the efficiency score and dive's wasted bytes agree with dive's own --json,
then prints a Markdown table. Everything big goes under --workdir (default
/var/tmp/nbimages-bench), never into the repository.

    .venv/bin/python benchmarks/bench_inspect.py [--workdir DIR] [--runs 3] [--rebuild]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
NBIMAGES = str(VENV_BIN / "nbimages")
DIVE = shutil.which("dive") or str(VENV_BIN / "dive")
TAG = "nbbench/inspect-big:1"
TAG_WH = "nbbench/inspect-whiteouts:1"
BASE = "nbbench/busybox:1"
SOURCES = ["/usr/share", "/usr/include", "/usr/lib/python3", "/usr/lib/python3.11", "/usr/bin"]


def sh(cmd: list[str] | str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, shell=isinstance(cmd, str), **kw)


def du(path: Path) -> tuple[int, int]:
    size = files = 0
    for root, dirs, names in os.walk(path):
        files += len(names) + len(dirs)
        for n in names:
            try:
                size += os.lstat(os.path.join(root, n)).st_size
            except OSError:
                pass
    return size, files


def make_context(ctx: Path) -> list[tuple[str, str]]:
    """Hard-link copies of system directories split into parts: (context dir, image dir)."""
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    copies: list[tuple[str, str]] = []
    share = Path("/usr/share")
    subdirs = sorted((p for p in share.iterdir() if p.is_dir() and not p.is_symlink()),
                     key=lambda p: -du(p)[0])
    groups: list[list[Path]] = [[] for _ in range(8)]
    weights = [0] * 8
    for p in subdirs:  # greedy: biggest directory into the lightest group
        k = weights.index(min(weights))
        groups[k].append(p)
        weights[k] += du(p)[0]
    for n, group in enumerate(groups):
        part = ctx / f"share{n}"
        part.mkdir()
        for p in group:
            sh(["cp", "-al", str(p), str(part / p.name)])
        copies.append((part.name, "/usr/share/"))
    for src, dest in (("/usr/include", "/usr/include/"), ("/usr/lib/python3", "/usr/lib/python3/"),
                      ("/usr/lib/python3.11", "/usr/lib/python3.11/"), ("/usr/bin", "/opt/bin/")):
        if Path(src).is_dir():
            name = src.strip("/").replace("/", "_")
            sh(["cp", "-al", src, str(ctx / name)])
            copies.append((name, dest))
    return copies


def build(work: Path, rebuild: bool) -> None:
    have = sh(["docker", "image", "inspect", TAG_WH], capture_output=True, check=False)
    if have.returncode == 0 and not rebuild:
        return
    base = work / "base"
    base.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", base / "busybox")
    (base / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\n"
                                     'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
    sh(["docker", "build", "-q", "--network", "none", "-t", BASE, str(base)])
    ctx = work / "ctx"
    copies = make_context(ctx)
    lines = [f"FROM {BASE}"]
    lines += [f"COPY {name} {dest}" for name, dest in copies]
    lines += [
        # waste the way real Dockerfiles do: a recursive chmod copies every file up again,
        # a later cleanup deletes a directory that an earlier layer paid for
        "RUN chmod -R g+w /usr/include",
        "RUN rm -rf /usr/share/doc /usr/share/locale",
        "RUN echo done > /opt/marker",
    ]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    sh(["docker", "build", "-q", "--network", "none", "-t", TAG, str(ctx)])
    wh = work / "ctx-wh"
    wh.mkdir(exist_ok=True)
    (wh / "Dockerfile").write_text(
        f"FROM {TAG}\n"
        "RUN find /usr/share /usr/lib/python3 -type f | awk 'NR % 40 == 0' | head -n 1000 "
        "| xargs rm -f\n")
    sh(["docker", "build", "-q", "--network", "none", "-t", TAG_WH, str(wh)])
    shutil.rmtree(ctx)


def export(work: Path, tag: str, name: str, rebuild: bool) -> dict[str, Path]:
    tar = work / f"{name}.tar"
    oci = work / f"{name}-oci"
    layers = work / f"{name}-layers"
    if rebuild or not tar.exists():
        for p in (tar, oci, layers):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        sh(["docker", "save", "-o", str(tar), tag])
    if not oci.exists():
        sh(["skopeo", "copy", "-q", f"docker-archive:{tar}", f"oci:{oci}:latest"])
    if not layers.exists():
        layers.mkdir()
        sh(["tar", "-xf", str(tar), "-C", str(layers)])
    return {"tar": tar, "oci": oci, "layers": layers}


def gzip_archive(paths: dict[str, Path], tag: str) -> Path:
    """The OCI layout (gzip layers) as a docker-archive in Docker 25's layout, so that dive
    and nbimages can be timed on the same compressed tar."""
    out = paths["tar"].with_name(paths["tar"].stem + "-gz.tar")
    if out.exists():
        return out
    oci = paths["oci"]
    index = json.loads((oci / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    man = json.loads((oci / "blobs" / "sha256" / mdigest).read_text())
    entry = [{"Config": "blobs/sha256/" + man["config"]["digest"].split(":")[1],
              "RepoTags": [tag],
              "Layers": ["blobs/sha256/" + d["digest"].split(":")[1] for d in man["layers"]]}]
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w") as tf:
        for p in sorted(oci.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(oci)), recursive=False)
        data = json.dumps(entry).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    tmp.rename(out)
    return out


def layer_tars(paths: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(plain layer tars from the docker-archive, gzip layer blobs of the OCI layout)."""
    manifest = json.loads((paths["layers"] / "manifest.json").read_text())[0]
    plain = [str(paths["layers"] / p) for p in manifest["Layers"]]
    index = json.loads((paths["oci"] / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"].split(":")[1]
    oman = json.loads((paths["oci"] / "blobs" / "sha256" / mdigest).read_text())
    gz = [str(paths["oci"] / "blobs" / "sha256" / d["digest"].split(":")[1])
          for d in oman["layers"]]
    return plain, gz


def timed(cmd: str, runs: int) -> tuple[float, float, str]:
    """Median wall time (s) and max peak RSS (MB) of the shell script `cmd` under
    /usr/bin/time (RSS: the largest process of the script)."""
    wall, _cpu, rss, out = timed_cpu(cmd, runs)
    return wall, rss, out


def timed_cpu(cmd: str, runs: int) -> tuple[float, float, float, str]:
    """`timed`, plus the median CPU seconds (user + system, the script's processes): on a
    machine shared with other jobs the wall time follows the load, the CPU time much less."""
    times, cpus, rss = [], [], []
    out = ""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as script:
        script.write(cmd + "\n")
    for _ in range(runs):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            proc = sh(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name, "sh", script.name],
                      capture_output=True, text=True, check=False)
            wall, user, system, kb = tf.read().split()[-4:]
        times.append(float(wall))
        cpus.append(float(user) + float(system))
        rss.append(int(kb) / 1024)
        out = proc.stdout
    os.unlink(script.name)
    return statistics.median(times), statistics.median(cpus), max(rss), out


def warm(paths: list[str]) -> None:
    for p in paths:
        sh(f"cat {p} > /dev/null" if os.path.isfile(p) else f"tar -cf - {p} > /dev/null")


def bench_image(label: str, paths: dict[str, Path], runs: int,
                dive_runs: int) -> tuple[list[dict], dict]:
    plain, gz = layer_tars(paths)
    warm([str(paths["tar"]), str(paths["oci"])] + plain)
    rows = []
    for_each = "for f in {}; do tar {} \"$f\"; done > /dev/null"
    t, m, out = timed(f"{NBIMAGES} inspect --json docker-archive:{paths['tar']}", runs)
    ours = json.loads(out)
    rows.append({"what": "nbimages inspect --json (docker-archive)", "s": t, "mb": m})
    t, m, out = timed(f"{NBIMAGES} inspect --json oci:{paths['oci']}:latest", runs)
    ours_oci = json.loads(out)
    rows.append({"what": "nbimages inspect --json (OCI layout, gzip)", "s": t, "mb": m})
    dive_json = paths["tar"].with_suffix(".dive.json")
    if dive_json.exists():
        dive_json.unlink()  # dive 0.13.1 writes over an existing file without truncating it
    t, m, _ = timed(f"{DIVE} --ci --source docker-archive docker-archive://{paths['tar']} "
                    f"--json {dive_json} > /dev/null; true", dive_runs)
    theirs = json.loads(dive_json.read_text())["image"]
    rows.append({"what": "dive --ci --json (docker-archive)", "s": t, "mb": m})
    gz_tar = paths["gz_tar"]
    warm([str(gz_tar)])
    t, m, _ = timed(f"{NBIMAGES} inspect --json docker-archive:{gz_tar} > /dev/null", runs)
    rows.append({"what": "nbimages inspect --json (docker-archive, gzip layers)", "s": t,
                 "mb": m})
    t, m, _ = timed(f"{DIVE} --ci --source docker-archive docker-archive://{gz_tar} "
                    "> /dev/null; true", dive_runs)
    rows.append({"what": "dive --ci (docker-archive, gzip layers)", "s": t, "mb": m})
    t, m, _ = timed(for_each.format(" ".join(plain), "-tvf"), runs)
    rows.append({"what": "floor: tar -tvf over the layer tars", "s": t, "mb": m})
    t, m, _ = timed(for_each.format(" ".join(gz), "-tvzf"), runs)
    rows.append({"what": "floor: tar -tvzf over the gzip layers", "s": t, "mb": m})
    # which inflater nbimages should use: a pigz pipe or ISA-L in process
    if shutil.which("unpigz"):
        t, m, _ = timed("for f in " + " ".join(gz) + "; do unpigz -c \"$f\"; done > /dev/null",
                        runs)
        rows.append({"what": "inflate only: unpigz -c over the gzip layers", "s": t, "mb": m})
    inflate = ("import sys\nfrom isal import igzip\nb = bytearray(1 << 20)\n"
               "for f in sys.argv[1:]:\n    with igzip.open(f, 'rb') as g:\n"
               "        while g.readinto(b): pass\n")
    script = paths["tar"].with_suffix(".inflate.py")
    script.write_text(inflate)
    t, m, _ = timed(f"{sys.executable} {script} " + " ".join(gz), runs)
    rows.append({"what": "inflate only: isal igzip (one thread) over the gzip layers",
                 "s": t, "mb": m})
    dive_plain = rows[2]["s"]
    dive_gz = rows[4]["s"]
    for r in rows:
        r["image"] = label
        base = dive_gz if "gzip" in r["what"] else dive_plain
        r["x_dive"] = r["s"] / base if base else float("nan")
    facts = {
        "image": label,
        "layers": len(ours["layers"]),
        "entries": sum(layer["entries"] for layer in ours["layers"]),
        "size": ours["size"],
        "whiteouts": None,
        "efficiency_nbimages": ours["efficiency"],
        "efficiency_oci": ours_oci["efficiency"],
        "efficiency_dive": theirs["efficiencyScore"],
        "wasted_dive": theirs["inefficientBytes"],
        "wasted_nbimages_dive_view": ours["dive"]["inefficient_bytes"],
        "wasted_bytes": ours["wasted_bytes"],
    }
    return rows, facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/nbimages-bench")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--skip-whiteouts", action="store_true",
                    help="leave out the image with a thousand deletions (dive takes minutes)")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    build(work, a.rebuild)
    results, facts = [], []
    images = [("big", TAG, a.runs)]
    if not a.skip_whiteouts:
        images.append(("big+1000 deletions", TAG_WH, 1))
    for label, tag, dive_runs in images:
        paths = export(work, tag, tag.split("/")[1].split(":")[0], a.rebuild)
        paths["gz_tar"] = gzip_archive(paths, tag)
        rows, f = bench_image(label, paths, a.runs, dive_runs)
        results += rows
        facts.append(f)
    print("× dive: against dive on the same tar (gzip rows: dive on the gzip docker-archive)")
    print()
    print("| image | command | wall s | peak RSS MB | × dive |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['image']} | {r['what']} | {r['s']:.2f} | {r['mb']:.0f} | {r['x_dive']:.2f} |")
    print()
    print("| image | layers | entries | bytes | efficiency nbimages | efficiency dive | "
          "dive wasted (dive / nbimages) | squash saves |")
    print("|---|---:|---:|---:|---|---|---|---:|")
    for f in facts:
        same = "equal" if f["efficiency_nbimages"] == f["efficiency_dive"] == \
            f["efficiency_oci"] else "DIFFERENT"
        print(f"| {f['image']} | {f['layers']} | {f['entries']:,} | {f['size']:,} | "
              f"{f['efficiency_nbimages']!r} | {f['efficiency_dive']!r} ({same}) | "
              f"{f['wasted_dive']:,} / {f['wasted_nbimages_dive_view']:,} | "
              f"{f['wasted_bytes']:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

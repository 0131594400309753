"""Layer compressors on a realistic ~200 MB layer tar: speed, ratio, and the one-pass pipeline.

    .venv/bin/python benchmarks/bench_compression.py [--size-mb 200]

The tar is written by our own layer writer from /usr/bin, /usr/lib/x86_64-linux-gnu and
/usr/share (sorted, first N MB of files), held in memory, and compressed once per codec.
Prints a Markdown table for BENCHMARKS.md ("Compression (issue 3)").
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nbimages.oci import compressor as cz  # noqa: E402
from nbimages.oci.tarwriter import LayerTree, walk_sorted, write_tar  # noqa: E402

ROOTS = ["/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share"]


def make_tar(limit: int) -> bytes:
    tree = LayerTree()
    total = 0
    for root in ROOTS:
        r = Path(root)
        if not r.is_dir():
            continue
        for rel in walk_sorted(r):
            p = r / rel
            try:
                if p.is_symlink() or not p.is_file() or not os.access(p, os.R_OK):
                    continue
                size = p.stat().st_size
            except OSError:
                continue
            if total + size > limit:
                break
            if tree.add_host_file(root + "/" + rel, p) is not None:
                total += size
        if total >= limit * 0.98:
            break
    out = io.BytesIO()
    write_tar(tree.entries(), out, 0)
    return out.getvalue()


def codec_run(name: str, data: bytes) -> dict:
    """Compress with the raw codec in 1 MiB feeds; decompress; MB/s of tar input."""
    comp = cz.get(name)
    out = bytearray()
    stream = comp.stream(out.extend)
    t0 = time.perf_counter()
    view = memoryview(data)
    for i in range(0, len(data), 1 << 20):
        stream.write(view[i:i + (1 << 20)])
    stream.close()
    t1 = time.perf_counter()
    blob = bytes(out)
    from nbimages.oci.compression import decompressing
    t2 = time.perf_counter()
    back = decompressing(io.BytesIO(blob), None if comp.algorithm == "none" else comp.algorithm)
    n = 0
    while chunk := back.read(1 << 20):
        n += len(chunk)
    t3 = time.perf_counter()
    assert n == len(data)
    return {"codec": comp.ident, "ratio": len(data) / len(blob), "size": len(blob),
            "comp": len(data) / (t1 - t0) / 1e6, "decomp": len(data) / (t3 - t2) / 1e6,
            "sha": hashlib.sha256(blob).hexdigest()[:12]}


def pipeline_run(name: str, data: bytes) -> float:
    """The builder's one pass: diff_id hash + compress + blob hash + write to a file."""
    import tempfile
    comp = cz.get(name)
    with tempfile.TemporaryFile() as f:
        t0 = time.perf_counter()
        pipe = cz.LayerPipeline(comp, f.write)
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            pipe.write(view[i:i + (1 << 20)])
        pipe.close()
        f.flush()
        os.fsync(f.fileno())
        return len(data) / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = make_tar(args.size_mb * 1_000_000)
    print(f"tar: {len(data) / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}", flush=True)
    rows = []
    for name in ("zlib:1", "zlib:6", "isal:0", "isal:1", "isal:2", "isal:3", "zstd:3", "none"):
        r = codec_run(name, data)
        r["pipe"] = pipeline_run(name, data)
        rows.append(r)
        print(f"  {name}: done", file=sys.stderr, flush=True)
    z6 = next(r for r in rows if r["codec"].startswith("gzip zlib-") and r["codec"].endswith("6"))
    print()
    print("| compressor | ratio | size vs zlib-6 | compress MB/s | x zlib-6 | decompress MB/s "
          "| build pipeline MB/s | blob sha256 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['codec']} | {r['ratio']:.2f} | {r['size'] / z6['size']:.2f} | "
              f"{r['comp']:.0f} | {r['comp'] / z6['comp']:.1f} | {r['decomp']:.0f} | "
              f"{r['pipe']:.0f} | {r['sha']} |")


if __name__ == "__main__":
    main()

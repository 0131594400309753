"""Embedded rebuild after a one-cell change vs `docker build` of the equivalent Dockerfile.

    .venv/bin/python benchmarks/bench_build.py [--repeat 3]

Needs the Docker engine (legacy builder). Base: busybox (`nbtest/busybox:1`, built here from
Debian's busybox-static if missing). Recipe: ten small COPY steps s0..s8, one 50 MB COPY
(real library files), then s9. Scenarios, each timed as the median of --repeat runs:
- cold: empty store / `docker build --no-cache`;
- no change: build again;
- change last small: s9 changed (one layer to rebuild for both);
- change before 50 MB: s8 changed. Docker rebuilds s8, the 50 MB step and s9; nbimages keys
  layers by their content, so it rebuilds s8 only.
The embedded builds run in this process with one Recipe object, as in a notebook kernel.
Prints a Markdown table for BENCHMARKS.md ("Build cache (issue 3)").
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASE = "nbtest/busybox:1"
BIG = 50_000_000


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def ensure_base(tmp: Path) -> str:
    """The busybox base in the engine and as an OCI layout (skopeo) for nbimages."""
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode:
        ctx = tmp / "bb"
        ctx.mkdir()
        shutil.copy("/bin/busybox", ctx / "busybox")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\n'
                                        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
                                        'CMD ["sh"]\n')
        sh("docker", "build", "-q", "--network", "none", "-t", BASE, str(ctx),
           env={**os.environ, "DOCKER_BUILDKIT": "0"})
    layout = tmp / "base-oci"
    sh("skopeo", "copy", "-q", f"docker-daemon:{BASE}", f"oci:{layout}:bb")
    return f"oci:{layout}:bb"


def make_context(ctx: Path) -> None:
    ctx.mkdir()
    for i in range(10):
        (ctx / f"s{i}.txt").write_text(f"small file {i}\n" * 20)
    # 50 MB of real shared-library bytes (compressible like a real data or package layer)
    with open(ctx / "big.bin", "wb") as out:
        left = BIG
        for p in sorted(Path("/usr/lib/x86_64-linux-gnu").rglob("*.so*")):
            if left <= 0:
                break
            if p.is_symlink() or not p.is_file():
                continue
            data = p.read_bytes()[:left]
            out.write(data)
            left -= len(data)


def recipe(base: str, ctx: Path):
    import nbimages
    r = nbimages.Recipe(base, context=ctx)
    for i in range(9):
        r.copy(f"s{i}.txt", f"/data/s{i}.txt")
    r.copy("big.bin", "/data/big.bin")
    r.copy("s9.txt", "/data/s9.txt")
    r.cmd(["cat", "/data/s9.txt"])
    return r


def dockerfile(ctx: Path) -> None:
    lines = [f"FROM {BASE}"] + [f"COPY s{i}.txt /data/s{i}.txt" for i in range(9)]
    lines += ["COPY big.bin /data/big.bin", "COPY s9.txt /data/s9.txt", 'CMD ["cat", "/data/s9.txt"]']
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    (ctx / ".dockerignore").write_text("Dockerfile\n")


def docker_build(ctx: Path, *, nocache: bool = False) -> float:
    cmd = ["docker", "build", "-q", "--network", "none", "-t", "nbbench/build:1", str(ctx)]
    if nocache:
        cmd.insert(2, "--no-cache")
    t0 = time.perf_counter()
    sh(*cmd, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nbbench-build-"))
    try:
        base = ensure_base(tmp)
        ctx = tmp / "ctx"
        make_context(ctx)
        dockerfile(ctx)
        results: dict[str, tuple[list[float], list[float], list[str]]] = {}

        def ours_cold() -> tuple[float, list[str]]:
            home = Path(tempfile.mkdtemp(prefix="home-", dir=tmp))
            os.environ["NBIMAGES_HOME"] = str(home)
            from nbimages.builder import context as bctx
            bctx._digests.clear()  # noqa: SLF001 - a cold build hashes its inputs
            r = recipe(base, ctx)
            t0 = time.perf_counter()
            img = r.build("nbbench/build:1")
            return time.perf_counter() - t0, [row["cache"] for row in img.build_report]

        # cold
        mine, theirs, caches = [], [], []
        for _ in range(args.repeat):
            s, c = ours_cold()
            mine.append(s)
            caches = c
            theirs.append(docker_build(ctx, nocache=True))
        results["cold"] = (mine, theirs, caches)

        # warm: one store and one Recipe, like a kernel
        home = Path(tempfile.mkdtemp(prefix="home-", dir=tmp))
        os.environ["NBIMAGES_HOME"] = str(home)
        r = recipe(base, ctx)
        r.build("nbbench/build:1")
        docker_build(ctx)

        def scenario(name: str, change) -> None:
            mine, theirs, caches = [], [], []
            for k in range(args.repeat):
                change(k)
                t0 = time.perf_counter()
                img = r.build("nbbench/build:1")
                mine.append(time.perf_counter() - t0)
                caches = [row["cache"] for row in img.build_report if row["layer"]]
                theirs.append(docker_build(ctx))
            results[name] = (mine, theirs, caches)

        scenario("no change", lambda k: None)
        scenario("change last small (s9)",
                 lambda k: (ctx / "s9.txt").write_text(f"changed {time.time()} {k}\n"))
        scenario("change before 50 MB (s8)",
                 lambda k: (ctx / "s8.txt").write_text(f"changed {time.time()} {k}\n"))

        def touch_big(k: int) -> None:
            with open(ctx / "big.bin", "r+b") as f:
                f.write(f"changed {time.time()} {k}".encode())
        scenario("change the 50 MB file", touch_big)

        # the CLI case: a new process each time (import + base from the store + hashing inputs)
        script = ("import sys; sys.path.insert(0, %r); from bench_build import recipe; "
                  "from pathlib import Path; recipe(%r, Path(%r)).build('nbbench/build:1')"
                  % (str(Path(__file__).parent), base, str(ctx)))
        mine, theirs = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sh(sys.executable, "-c", script, env={**os.environ})
            mine.append(time.perf_counter() - t0)
            theirs.append(docker_build(ctx))
        results["no change, new process"] = (mine, theirs, ["hit"] * 11)

        print(f"\n{os.cpu_count()} CPUs; median of {args.repeat} runs each; docker = "
              "`docker build` (legacy builder, --network none); nbimages = Recipe.build in one "
              "process (embedded)\n")
        print("| scenario | nbimages s | docker build s | nbimages / docker | nbimages layers "
              "rebuilt |")
        print("|---|---|---|---|---|")
        for name, (mine, theirs, caches) in results.items():
            m, t = statistics.median(mine), statistics.median(theirs)
            rebuilt = sum(c == "rebuilt" for c in caches)
            print(f"| {name} | {m:.3f} | {t:.3f} | {m / t:.2f} | {rebuilt} of 11 |")
    finally:
        subprocess.run(["docker", "rmi", "-f", "nbbench/build:1"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

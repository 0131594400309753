"""Benchmark: squash a 1 GB, 30-layer image with nbimages (daemonless) against the engine's
way of flattening, `docker export` of a container piped into `docker import`.

The image is generated daemonless into a fresh store under --workdir: 30 layers of about
34 MB of random bytes each (incompressible, the worst case for the compressor), where every
third layer rewrites a file of the layer below and every fifth deletes one, so squashing
has waste to drop. It is loaded into the engine with `docker load` for Docker's side. Timed
in one run, warm page cache, median of --runs, peak memory as the maximum resident set:

- nbimages squash SOURCE TAG --from-layer -1 (a fresh process: gzip at isal level 2, as
  `nbimages squash` writes by default) and with --compression none;
- docker create + docker export | docker import - (the CLI processes' peak RSS, and the
  engine's: dockerd's growth plus its docker-tar/docker-untar helpers, which do the work,
  sampled every 20 ms). The engine's side starts from files already unpacked by the
  `docker load` (not timed); nbimages starts from the compressed blobs in its store.

    .venv/bin/python benchmarks/bench_squash.py [--workdir DIR] [--size-mb 1024]
        [--layers 30] [--runs 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
NBIMAGES = str(VENV_BIN / "nbimages")
TAG = "nbbench14/squash-src:1"
FLAT = "nbbench14/squash-flat:1"


def generate(home: Path, size_mb: int, layers: int) -> None:
    """The image, built daemonless into the store at `home` as TAG."""
    os.environ["NBIMAGES_HOME"] = str(home)
    import nbimages
    context = home / "context"
    context.mkdir()
    r = nbimages.Recipe("scratch", context=context)
    per = size_mb * (1 << 20) // layers
    for i in range(layers):
        if i % 5 == 4:
            r.remove(f"/data/{i - 1}.bin")
        name = f"/data/{i - 1}.bin" if i % 3 == 2 else f"/data/{i}.bin"
        with open(context / f"{i}.bin", "wb") as f:
            for _ in range(per >> 20):
                f.write(os.urandom(1 << 20))
        r.copy(f"{i}.bin", name)
    r.cmd(["/data/none"])
    r.build(TAG).save(home / "src.tar")


ENGINE = ("dockerd", "docker-tar", "docker-untar")  # the last two are dockerd's re-execs


def engine_rss() -> tuple[int, int]:
    """(dockerd's RSS, the RSS of its tar/untar helper processes), from /proc."""
    daemon = helpers = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # the helpers are re-execs of /proc/self/exe: their name is in argv[0] only
            comm = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
            comm = os.path.basename(comm)
            if comm not in ENGINE:
                continue
            rss = next(int(line.split()[1]) * 1024 for line in
                       (proc / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        if comm == "dockerd":
            daemon += rss
        else:
            helpers += rss
    return daemon, helpers


class Sampler:
    """The peak of the engine's resident memory while a block runs: dockerd's growth above
    where it started plus its tar/untar helpers, sampled every 20 ms."""

    def __enter__(self) -> "Sampler":
        self.start = engine_rss()[0]
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.done.wait(0.02):
            daemon, helpers = engine_rss()
            self.peak = max(self.peak, max(daemon - self.start, 0) + helpers)

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()

    @property
    def growth(self) -> int:
        return self.peak


def timed(cmd, **kw) -> tuple[float, int]:
    """(seconds, peak RSS of the process tree) of one command, run to completion."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return time.perf_counter() - t0, usage.ru_maxrss * 1024


def nbimages_squash(home: Path, compression: str | None) -> tuple[float, int]:
    env = dict(os.environ, NBIMAGES_HOME=str(home))
    cmd = [NBIMAGES, "squash", TAG, "nbbench14/squashed:1", "--from-layer", "-1"]
    if compression:
        cmd += ["--compression", compression]
    return timed(cmd, env=env, stdout=subprocess.DEVNULL)


def docker_flatten() -> tuple[float, int, int]:
    cid = subprocess.run(["docker", "create", TAG], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        with Sampler() as s:
            t0 = time.perf_counter()
            export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
            imp = subprocess.Popen(["docker", "import", "-", FLAT], stdin=export.stdout,
                                   stdout=subprocess.DEVNULL)
            export.stdout.close()
            peaks = []
            for p in (export, imp):
                _, status, usage = os.wait4(p.pid, 0)
                if os.waitstatus_to_exitcode(status):
                    raise SystemExit("docker export | docker import failed")
                peaks.append(usage.ru_maxrss * 1024)
            seconds = time.perf_counter() - t0
        return seconds, max(peaks), s.growth
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", FLAT], capture_output=True)


def mb(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the workdir and the engine image")
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-squash-"))
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    try:
        generate(home, a.size_mb, a.layers)
        subprocess.run(["docker", "load", "-i", str(home / "src.tar")], check=True,
                       capture_output=True)
        import nbimages
        info = nbimages.inspect(f"store:{TAG}")
        print(f"input: {len(info.layers)} layers, {mb(info.size)} in layers, "
              f"{mb(info.final_size)} in the final filesystem, {mb(info.wasted_bytes)} wasted\n")
        rows = []
        for label, run in (("nbimages squash (gzip, isal level 2)", lambda: nbimages_squash(home, None)),
                           ("nbimages squash --compression none", lambda: nbimages_squash(home, "none")),
                           ("docker export \\| docker import", docker_flatten)):
            results = [run() for _ in range(a.runs)]
            results.sort(key=lambda r: r[0])
            rows.append((label, results[len(results) // 2]))
        base = rows[0][1][0]
        print("| flatten | seconds | x nbimages | peak RSS of the client | engine's peak RSS |")
        print("|---|---:|---:|---:|---:|")
        for label, r in rows:
            engine = mb(r[2]) if len(r) > 2 else "-"
            print(f"| {label} | {r[0]:.1f} | {r[0] / base:.2f} | {mb(r[1])} | {engine} |")
        sq = nbimages.inspect("store:nbbench14/squashed:1")
        print(f"\nsquashed: {len(sq.layers)} layer, {mb(sq.size)} "
              f"(saved {mb(info.size - sq.size)} = the input's wasted_bytes: "
              f"{info.size - sq.size == info.wasted_bytes})")
    finally:
        if not a.keep:
            subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

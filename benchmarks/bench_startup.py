"""Start-up: `import nbimages` and `nbimages --help`, this tree against an older revision and
against the command-line tools users would reach for instead (docker, skopeo).

    .venv/bin/python benchmarks/bench_startup.py --before 8c04581 --runs 40

Each command runs `--runs` times, interleaved (before, after, docker, skopeo, ...) so that
load from other jobs hits all alike; the table shows the median wall time of a fresh process.
The older revision is taken with `git archive` into a temporary folder and imported from
there (the editable install's finder is bypassed for both trees, so they load alike).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the measured process: drop the editable install's finder, import from TREE.
PRELUDE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
           "if 'editable' not in type(f).__module__ and 'editable' not in repr(f)]; "
           "sys.path.insert(0, {tree!r}); ")


def tree_at(rev: str, into: Path) -> Path:
    """The `nbimages` package of revision `rev`, extracted under `into`."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "nbimages"], check=True,
                          capture_output=True).stdout
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        with tarfile.open(fileobj=f) as t:
            t.extractall(into, filter="data")
    return into


def commands(before: Path) -> dict[str, list[str]]:
    py = sys.executable
    out: dict[str, list[str]] = {}
    for label, tree in (("before", before), ("after", ROOT)):
        pre = PRELUDE.format(tree=str(tree))
        out[f"import nbimages ({label})"] = [py, "-c", pre + "import nbimages"]
        out[f"nbimages --help ({label})"] = [
            py, "-c", pre + "from nbimages.cli import main; raise SystemExit(main(['--help']))"]
    for tool in ("docker", "skopeo"):
        if shutil.which(tool):
            out[f"{tool} --help"] = [tool, "--help"]
    out["python -c pass (floor)"] = [py, "-c", "pass"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="the git revision to compare with")
    ap.add_argument("--runs", type=int, default=40)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbimages-bench-") as tmp:
        cmds = commands(tree_at(a.before, Path(tmp)))
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(a.runs):
            for label, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = {"import nbimages": med["import nbimages (before)"],
           "nbimages --help": med["nbimages --help (before)"]}
    print(f"| command | median ms ({a.runs} runs) | × before | × docker --help |")
    print("|---|---:|---:|---:|")
    docker = med.get("docker --help")
    for label, m in med.items():
        base = next((v for k, v in ref.items() if label.startswith(k)), None)
        vs_before = f"{m / base:.2f}" if base else ""
        vs_docker = f"{m / docker:.2f}" if docker else ""
        print(f"| {label} | {m * 1000:.1f} | {vs_before} | {vs_docker} |")


if __name__ == "__main__":
    main()

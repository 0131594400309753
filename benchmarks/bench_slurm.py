"""A sweep of 8 tasks on Slurm: nbimages.slurm.run against the scripts users would write by hand.

    SLURM_CONF=/var/tmp/nbimages-slurm/slurm.conf .venv/bin/python benchmarks/bench_slurm.py --runs 3

Needs the cluster of scripts/slurm.sh, the Docker engine, skopeo and umoci. The image is
busybox plus a task script (built here with `docker build`, so both sides start from the same
engine image). Each way runs `--runs` times, interleaved; the table shows the median wall time
from "the image is in the engine" to "8 exit codes and outputs in hand", polling every 0.25 s
on both sides:

- nbimages, runtime container / docker: `slurm.run(...).wait(poll=0.25).results()`
- by hand, --container: `skopeo copy` to an OCI layout, `umoci unpack`, an sbatch array whose
  script runs `srun --container`, `squeue` until the job is gone, the logs read back
- by hand, docker: `docker save`, an sbatch array whose script does `docker load` and
  `docker run`, the same polling
- floor: `sbatch --array=0-7 --wrap true` and the same polling (the scheduler alone)
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

import docker

import nbimages.slurm as slurm

TAG = "nbbench/slurm18:1"
TASK = '#!/bin/sh\necho "{\\"x\\": $x, \\"square\\": $((x * x))}"\n'


def build(work: Path) -> None:
    ctx = work / "ctx"
    ctx.mkdir()
    shutil.copy("/bin/busybox", ctx / "busybox")
    (ctx / "task.sh").write_text(TASK)
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
        "COPY task.sh /app/task.sh\nRUN chmod 755 /app/task.sh\nCMD [\"/app/task.sh\"]\n")
    docker.from_env().images.build(path=str(ctx), tag=TAG, network_mode="none", rm=True)


def poll_gone(job_id: str) -> None:
    while subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        time.sleep(0.25)


def sbatch_array(script: Path, logs: Path) -> str:
    return subprocess.run(["sbatch", "--parsable", "--array=0-7", f"--output={logs}/%a.log", str(script)],
                          check=True, capture_output=True, text=True).stdout.strip()


def read_back(logs: Path) -> list[str]:
    out = [(logs / f"{i}.log").read_text() for i in range(8)]
    assert all('"square"' in o for o in out), out
    return out


def by_hand_container(work: Path) -> None:
    d = Path(tempfile.mkdtemp(dir=work))
    subprocess.run(["skopeo", "copy", "-q", f"docker-daemon:{TAG}", f"oci:{d}/oci:latest"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{d}/oci:latest", f"{d}/bundle"], check=True,
                   capture_output=True)
    (d / "logs").mkdir()
    script = d / "job.sh"
    script.write_text(f"#!/bin/sh\nexport x=$SLURM_ARRAY_TASK_ID\nexec srun --container={d}/bundle /app/task.sh\n")
    poll_gone(sbatch_array(script, d / "logs"))
    read_back(d / "logs")


def by_hand_docker(work: Path) -> None:
    d = Path(tempfile.mkdtemp(dir=work))
    subprocess.run(["docker", "save", "-o", f"{d}/image.tar", TAG], check=True)
    (d / "logs").mkdir()
    script = d / "job.sh"
    script.write_text(f"#!/bin/sh\ndocker load -q -i {d}/image.tar >/dev/null\n"
                      f"exec docker run --rm --network host -e x=$SLURM_ARRAY_TASK_ID {TAG}\n")
    poll_gone(sbatch_array(script, d / "logs"))
    read_back(d / "logs")


def floor(work: Path) -> None:
    job = subprocess.run(["sbatch", "--parsable", "--array=0-7", "--output=/dev/null", "--wrap", "true"],
                         check=True, capture_output=True, text=True).stdout.strip()
    poll_gone(job)


def with_nbimages(runtime: str):
    def go(work: Path) -> None:
        job = slurm.run(f"docker-daemon:{TAG}", None, params=[{"x": x} for x in range(8)],
                        runtime=runtime, shared=work, name="bench18")
        df = job.wait(poll=0.25).results()
        assert list(df["exit_code"]) == [0] * 8, df
    return go


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not os.environ.get("SLURM_CONF"):
        print("set SLURM_CONF (bash scripts/slurm.sh env)", file=sys.stderr)
        return 2
    ways = {"nbimages, runtime container": with_nbimages("container"),
            "by hand: skopeo + umoci + sbatch/srun --container": by_hand_container,
            "nbimages, runtime docker": with_nbimages("docker"),
            "by hand: docker save + sbatch/docker load + run": by_hand_docker,
            "floor: sbatch --array=0-7 --wrap true": floor}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with tempfile.TemporaryDirectory(prefix="bench-slurm18-") as tmp:
        work = Path(tmp)
        build(work)
        try:
            for _ in range(a.runs):
                for name, fn in ways.items():
                    t0 = time.perf_counter()
                    fn(work)
                    times[name].append(time.perf_counter() - t0)
        finally:
            subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True)
            ids = subprocess.run(["docker", "images", "-q", "nbimages-slurm"], capture_output=True,
                                 text=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rmi", "-f", *set(ids)], capture_output=True)
    base = {"container": statistics.median(times["by hand: skopeo + umoci + sbatch/srun --container"]),
            "docker": statistics.median(times["by hand: docker save + sbatch/docker load + run"])}
    print(f"| way (8 tasks, median of {a.runs}) | wall s | × by hand |\n|---|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        ref = base["container"] if "container" in name else base["docker"] if "docker" in name else None
        print(f"| {name} | {med:.2f} | {med / ref:.2f} |" if ref else f"| {name} | {med:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

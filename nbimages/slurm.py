"""Run an image's work on a Slurm cluster: one job (or job array) per call, results as a DataFrame.

Slurm is the scheduler; nbimages only hands it the work. Submission and queries go through
Slurm's own command-line tools (`sbatch`, `squeue`, `scontrol`, `sacct`, `scancel`, `srun`):
they are on every login node, always match the cluster's Slurm version, use the site's
authentication (munge) and configuration as they are, and work over SSH unchanged (`login=`).
The Python clients (pyslurm, the REST API's clients) are tied to one Slurm release or need
`slurmrestd` and tokens that many sites do not run.

The image reaches the nodes through a shared directory (`shared=`, seen at the same path by
this machine and the nodes) or a registry the nodes pull from (`registry=`, pushed first and
run by digest). On the node one runtime runs it:

- `container`: Slurm's own `srun --container` with an OCI bundle unpacked here (umoci);
  the site configures the OCI runtime in oci.conf.
- `apptainer` / `singularity`: from the docker-archive (or `docker://` by digest).
- `podman` / `docker`: loaded from the docker-archive once per node, or pulled by digest;
  host network, removed when the task ends or is cancelled.

Each task gets its parameters as environment variables (plus `NBIMAGES_PARAMS`, the JSON of
them, `NBIMAGES_TASK` and `NBIMAGES_OUTPUT`, a directory of its own under /nbimages/out).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import NbimagesError
from .image import Image
from .sources import open_image, save
from .sources.copy import push

RUNTIMES = ("container", "apptainer", "singularity", "podman", "docker")
# What runtime="auto" picks, first found on the node first: the cluster's own integration, then
# the daemonless HPC runtimes, then the engines.
AUTO_ORDER = RUNTIMES
OUT_MOUNT = "/nbimages/out"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = ("NBIMAGES_PARAMS", "NBIMAGES_TASK", "NBIMAGES_OUTPUT")
STATES = {  # Slurm's job states, as users read them
    "PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending",
    "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "running",
    "COMPLETED": "done", "CANCELLED": "cancelled", "FAILED": "failed", "TIMEOUT": "failed",
    "OUT_OF_MEMORY": "failed", "NODE_FAIL": "failed", "BOOT_FAIL": "failed",
    "DEADLINE": "failed", "PREEMPTED": "failed",
}
FINISHED = ("done", "failed", "cancelled")


class SlurmError(NbimagesError):
    """Slurm is missing, refused the job, or the node lacks what the job needs."""


def _tool(name: str, login: str | None) -> str:
    if login:
        return name
    path = shutil.which(name)
    if not path:
        raise SlurmError(
            f"the Slurm command {name!r} is not on PATH: run this on a login node of the cluster "
            "(with Slurm's client tools and SLURM_CONF or /etc/slurm/slurm.conf), or give "
            "login='user@login-node' to run them there over SSH.")
    return path


def _slurm(args: list[str], login: str | None = None, *, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one Slurm client command (here, or on `login` over SSH) and return its result."""
    cmd = [_tool(args[0], login)] + args[1:]
    conf = os.environ.get("SLURM_CONF")
    if not login and conf and not os.path.exists(conf):  # Slurm would retry for a minute
        raise SlurmError(f"SLURM_CONF names {conf!r}, which does not exist: point it at the "
                         "cluster's slurm.conf, or unset it on a login node that has "
                         "/etc/slurm/slurm.conf.")
    if login:
        cmd = ["ssh", "-o", "BatchMode=yes", login, "--", shlex.join(args)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"`{shlex.join(args)}` did not answer in {timeout:.0f} s: is slurmctld "
                         "running and reachable (scontrol ping)?") from None
    if check and done.returncode != 0:
        text = (done.stderr or done.stdout).strip()
        hint = ""
        if "configuration source" in text or "slurm.conf" in text:
            hint = (" Slurm found no configuration: set SLURM_CONF to the cluster's slurm.conf "
                    "or run this on a login node.")
        raise SlurmError(f"`{shlex.join(args)}` failed (exit {done.returncode}): {text}{hint}")
    return done


# ---------------------------------------------------------------------------------------------
# the tasks

def _tasks(array, params) -> list[dict[str, Any]]:
    """One parameter dict per task from `array` (a count or input files) or `params`."""
    if array is not None and params is not None:
        raise SlurmError("give either array= (a task count or a list of input files) or "
                         "params= (a list of parameter dicts, one task each), not both.")
    if params is not None:
        if isinstance(params, dict):
            params = [params]
        tasks = [dict(p) for p in params]
    elif array is None:
        tasks = [{}]
    elif isinstance(array, int) and not isinstance(array, bool):
        if array < 1:
            raise SlurmError(f"array={array}: a job array needs at least one task.")
        tasks = [{} for _ in range(array)]
    else:
        tasks = [{"input": os.path.abspath(os.fspath(p))} for p in array]
    if not tasks:
        raise SlurmError("no tasks: params= / array= is empty.")
    for p in tasks:
        for key in p:
            if not isinstance(key, str) or not _NAME.match(key) or key in _RESERVED:
                raise SlurmError(
                    f"parameter name {key!r} cannot be an environment variable of the task: use "
                    "letters, digits and '_', not starting with a digit, and not "
                    + "/".join(_RESERVED) + ".")
    return tasks


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _write_params(jobdir: Path, tasks: list[dict[str, Any]]) -> None:
    (jobdir / "params").mkdir()
    for i, p in enumerate(tasks):
        lines = [f"{k}={shlex.quote(_value(v))}" for k, v in p.items()]
        lines += [f"NBIMAGES_PARAMS={shlex.quote(json.dumps(p, sort_keys=True))}",
                  f"NBIMAGES_TASK={i}", f"NBIMAGES_OUTPUT={OUT_MOUNT}/{i}"]
        (jobdir / "params" / f"{i}.sh").write_text("\n".join(lines) + "\n")
    (jobdir / "params.json").write_text(json.dumps(tasks, indent=1))


# ---------------------------------------------------------------------------------------------
# the runtime on the node

_PROBE = r"""
conf="${SLURM_CONF:-/etc/slurm/slurm.conf}"
[ -f "$(dirname "$conf")/oci.conf" ] && echo container
command -v apptainer >/dev/null && echo apptainer
command -v singularity >/dev/null && echo singularity
command -v podman >/dev/null && echo podman
docker info >/dev/null 2>&1 && echo docker
echo probe-done
"""


# (SLURM_CONF, partition, login) → (when asked, runtimes): a node is asked once in a while,
# not at every submission; the job's script checks again on the node that runs each task.
_PROBED: dict[tuple, tuple[float, list[str]]] = {}
PROBE_TTL = 300.0


def node_runtimes(partition: str | None = None, login: str | None = None, *,
                  fresh: bool = False) -> list[str]:
    """The container runtimes a node of `partition` offers, asked on the node with a short
    `srun` step (oci.conf for `srun --container`, apptainer, singularity, podman, docker);
    the answer is kept for PROBE_TTL seconds unless `fresh`."""
    key = (os.environ.get("SLURM_CONF"), partition, login)
    known = _PROBED.get(key)
    if known and not fresh and _time.monotonic() - known[0] < PROBE_TTL:
        return list(known[1])
    args = ["srun", "-N1", "-n1", "--quiet", "--immediate=60", "-J", "nbimages-probe"]
    if partition:
        args.append(f"--partition={partition}")
    out = _slurm(args + ["sh", "-c", _PROBE], login).stdout.split()
    found = [r for r in out if r in RUNTIMES]
    _PROBED[key] = (_time.monotonic(), found)
    return list(found)


def pick_runtime(runtime: str, have: list[str], partition: str | None = None) -> str:
    """The runtime to use: `runtime` if the node has it, the first of AUTO_ORDER for "auto"."""
    where = f"the nodes of partition {partition!r}" if partition else "the cluster's nodes"
    offered = ", ".join(have) or "none of them"
    if runtime == "auto":
        for r in AUTO_ORDER:
            if r in have:
                return r
        raise SlurmError(
            f"{where} offer no container runtime nbimages can use ({', '.join(RUNTIMES)}): "
            "ask the site for apptainer, or for `srun --container` (an oci.conf next to "
            "slurm.conf), or pick another partition=.")
    if runtime not in RUNTIMES:
        raise SlurmError(f"unknown runtime {runtime!r}; use one of: auto, {', '.join(RUNTIMES)}.")
    if runtime not in have:
        what = ("an oci.conf next to slurm.conf (Slurm's `srun --container`)"
                if runtime == "container" else f"the {runtime} command"
                + (" with a running daemon" if runtime == "docker" else ""))
        raise SlurmError(
            f"runtime {runtime!r} is not available on {where}: they lack {what}. They offer: "
            f"{offered}. Use runtime='auto' (or one of those), or another partition=.")
    return runtime


@dataclass
class _Delivery:
    runtime: str
    image: str        # what the runtime is given: a bundle dir, an archive, a ref@digest
    pulled: bool      # from a registry (True) or a file on the shared path


def _deliver(image: Image, runtime: str, jobdir: Path, registry: str | None,
             binds: list[str]) -> _Delivery:
    """Put the image where the nodes can reach it, in the form `runtime` takes."""
    if runtime == "container":
        return _Delivery(runtime, str(_bundle(image, jobdir, binds)), False)
    if registry:
        repo = registry.rstrip("/")
        digest = push(image, f"{repo}:{jobdir.name}", progress=False)
        return _Delivery(runtime, f"{repo}@{digest}", True)
    archive = jobdir / "image.tar"
    save(image, archive, format="docker", tag=local_ref(image))
    return _Delivery(runtime, str(archive), False)


def local_ref(image: Image) -> str:
    """The name a docker-archive is loaded under on the nodes: the image's ID, so that a node
    keeps one copy of an image however many jobs use it."""
    return f"nbimages-slurm:{image.id.split(':')[-1][:16]}"


def _bundle(image: Image, jobdir: Path, binds: list[str]) -> Path:
    """Unpack `image` into an OCI runtime bundle under `jobdir` (umoci), set up for Slurm:
    no terminal, the host's network, the job's output directory bound in, /tmp writable."""
    umoci = shutil.which("umoci")
    if not umoci:
        raise SlurmError("runtime 'container' unpacks the image into an OCI bundle with umoci, "
                         "which is not on PATH here: install it (apt-get install umoci) or use "
                         "another runtime=.")
    layout = jobdir / "oci"
    save(image, layout, format="oci-dir", tag="latest")
    bundle = jobdir / "bundle"
    args = [umoci, "unpack"] + ([] if os.geteuid() == 0 else ["--rootless"])
    done = subprocess.run(args + ["--image", f"{layout}:latest", str(bundle)],
                          capture_output=True, text=True)
    shutil.rmtree(layout, ignore_errors=True)
    if done.returncode != 0:
        raise SlurmError(f"umoci could not unpack the image into a bundle: {done.stderr.strip()}")
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    linux = config.setdefault("linux", {})
    linux["namespaces"] = [n for n in linux.get("namespaces", []) if n.get("type") != "network"]
    mounts = [m for m in config.get("mounts", []) if m.get("destination") != "/tmp"]
    mounts.append({"destination": OUT_MOUNT, "type": "bind", "source": str(jobdir / "out"),
                   "options": ["rbind", "rw"]})
    mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]})
    mounts += [{"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"]}
               for d in binds]
    config["mounts"] = mounts
    config_path.write_text(json.dumps(config, indent=1))
    return bundle


def _image_env(image: Image) -> list[str]:
    return list((image.config.get("config") or {}).get("Env") or [])


def _default_command(image: Image) -> list[str]:
    cfg = image.config.get("config") or {}
    cmd = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not cmd:
        raise SlurmError("the image has no CMD or ENTRYPOINT: give the command to run.")
    return cmd


# The batch script: one per job, run once per array task on the node. It reads the task's
# parameters, runs the image with the runtime, and records exit code and times in status/.
_SCRIPT = r"""#!/bin/bash
# nbimages.slurm: one task of job {name}
set -u
JOBDIR={jobdir}
T="${{SLURM_ARRAY_TASK_ID:-0}}"
mkdir -p "$JOBDIR/out/$T" "$JOBDIR/status"
START=$(date +%s.%N)
finish() {{
  printf '{{"task": %s, "exit_code": %s, "start": %s, "end": %s, "host": "%s", "runtime": "%s"}}\n' \
    "$T" "$1" "$START" "$(date +%s.%N)" "$(hostname)" {runtime} >"$JOBDIR/status/$T.json.tmp"
  mv "$JOBDIR/status/$T.json.tmp" "$JOBDIR/status/$T.json"
  exit "$1"
}}
missing() {{
  echo "nbimages: this node ($(hostname)) cannot run the task: $1" >&2
  finish 127
}}
PARAM_NAMES=$(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$JOBDIR/params/$T.sh")
set -a; . "$JOBDIR/params/$T.sh"; set +a
IMAGE={image}
COMMAND=({command})
{body}
"""

_BODIES = {
    "container": r"""
OCI_CONF="$(dirname "${{SLURM_CONF:-/etc/slurm/slurm.conf}}")/oci.conf"
[ -f "$OCI_CONF" ] || missing "Slurm has no oci.conf here, so srun --container cannot run images"
SRUN=$(command -v srun) || missing "srun is not on PATH"
# Slurm hands the step's environment to the container: give it the image's, the task's
# parameters and Slurm's own, nothing of the host.
TASK_ENV=({image_env})
for v in $PARAM_NAMES NBIMAGES_PARAMS NBIMAGES_TASK NBIMAGES_OUTPUT; do TASK_ENV+=("$v=${{!v}}"); done
for v in $(compgen -e); do case "$v" in SLURM_*) TASK_ENV+=("$v=${{!v}}");; esac; done
env -i "${{TASK_ENV[@]}}" "$SRUN" --export=ALL -n1 --container="$IMAGE" "${{COMMAND[@]}}" &
wait $!
finish $?
""",
    "docker": r"""
{engine} version >/dev/null 2>&1 || missing "{engine} is not installed or its daemon does not answer"
NAME="nbimages-slurm-${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}-$T"
if [ {pulled} = 0 ]; then
  # Named by content: a node loads an image once, whichever job or task needs it first.
  REF={local_ref}
  if ! {engine} image inspect "$REF" >/dev/null 2>&1; then
    (flock 9 && {{ {engine} image inspect "$REF" >/dev/null 2>&1 || {engine} load -q -i "$IMAGE" >/dev/null; }}) \
      9>"$JOBDIR/image.lock" || missing "{engine} could not load $IMAGE"
  fi
else
  REF="$IMAGE"
fi
stop() {{ {engine} rm -f "$NAME" >/dev/null 2>&1; finish 143; }}
trap stop TERM INT
ENVS=()
for v in $PARAM_NAMES NBIMAGES_PARAMS NBIMAGES_TASK NBIMAGES_OUTPUT; do ENVS+=(-e "$v"); done
{engine} run --rm --init --network host --name "$NAME" \
  --label nbimages.slurm.job="${{SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}}" \
  -v "$JOBDIR/out:{out}" "${{ENVS[@]}}" {binds} {extra} "$REF" {run_command} &
wait $!
RC=$?
trap - TERM INT
finish $RC
""",
    "apptainer": r"""
command -v {engine} >/dev/null || missing "{engine} is not installed"
for v in $PARAM_NAMES NBIMAGES_PARAMS NBIMAGES_TASK NBIMAGES_OUTPUT; do export "{prefix}ENV_$v=${{!v}}"; done
if [ {pulled} = 0 ]; then SRC="docker-archive://$IMAGE"; else SRC="docker://$IMAGE"; fi
{engine} {verb} --cleanenv --bind "$JOBDIR/out:{out}" {binds} {extra} "$SRC" {run_command} &
wait $!
finish $?
""",
}


def _script(name: str, jobdir: Path, delivery: _Delivery, image: Image,
            command: str | list[str] | None, gpus: Any, binds: list[str]) -> str:
    runtime = delivery.runtime
    if command is None:
        cmd = _default_command(image)
    elif isinstance(command, str):
        cmd = ["/bin/sh", "-c", command]
    else:
        cmd = [str(c) for c in command]
    q = shlex.quote
    fields = dict(name=name, jobdir=q(str(jobdir)), runtime=q(runtime), image=q(delivery.image),
                  command=" ".join(q(c) for c in cmd), out=OUT_MOUNT,
                  pulled=int(delivery.pulled), local_ref=q(local_ref(image)))
    if runtime == "container":
        rootfs_sh = Path(delivery.image) / "rootfs" / "bin" / "sh"
        if rootfs_sh.exists() or rootfs_sh.is_symlink():
            # The command is PID 1 of the container, which ignores the SIGTERM of a cancel
            # unless it handles it; runc then lingers until Slurm gives up on the step. A
            # shell as PID 1 that exits on SIGTERM takes the whole container down at once.
            cmd = ["/bin/sh", "-c", 'trap "exit 143" TERM INT; "$@" & wait $!', "nbimages-init", *cmd]
            fields["command"] = " ".join(q(c) for c in cmd)
        body = _BODIES["container"].format(image_env=" ".join(q(e) for e in _image_env(image)))
    elif runtime in ("docker", "podman"):
        extra = ("--gpus all" if runtime == "docker" else "--device nvidia.com/gpu=all") if gpus else ""
        # None: the image's own ENTRYPOINT/CMD, as `docker run IMAGE` does.
        run_command = "" if command is None else '"${COMMAND[@]}"'
        body = _BODIES["docker"].format(engine=runtime, extra=extra, run_command=run_command,
                                        binds=" ".join(f"-v {q(d + ':' + d + ':ro')}" for d in binds),
                                        **fields)
    else:
        prefix = "APPTAINER" if runtime == "apptainer" else "SINGULARITY"
        body = _BODIES["apptainer"].format(
            engine=runtime, prefix=prefix, extra="--nv" if gpus else "",
            verb="run" if command is None else "exec",
            binds=" ".join(f"--bind {q(d + ':' + d + ':ro')}" for d in binds),
            run_command="" if command is None else '"${COMMAND[@]}"', **fields)
    return _SCRIPT.format(body=body, **fields)


# ---------------------------------------------------------------------------------------------
# submitting

def _shared_root(shared: str | os.PathLike | None) -> Path:
    root = Path(shared or os.environ.get("NBIMAGES_SLURM_SHARED")
                or Path.home() / "nbimages-slurm")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SlurmError(f"cannot create the shared directory {str(root)!r} ({e.strerror}): give "
                         "shared= a directory the nodes see at the same path.") from None
    return root.resolve()


def _binds(mounts: Iterable[str | os.PathLike], inputs: list[dict]) -> list[str]:
    """Absolute host directories to bind read-only into every task: `mounts` and the folders
    of the input files (whose paths the tasks get as they are)."""
    dirs = [os.path.abspath(os.fspath(m)) for m in mounts]
    dirs += [os.path.dirname(os.path.abspath(t["input"])) for t in inputs]
    for d in dirs:
        if not os.path.isdir(d):
            raise SlurmError(f"{d!r} is not a directory here: mounts= and the folders of array= "
                             "input files must exist on the shared file system.")
    return sorted(set(dirs))


def run(image: Any, command: str | list[str] | None = None, *, array: int | Iterable | None = None,
        params: list[dict] | dict | None = None, partition: str | None = None,
        time: str | None = None, cpus: int | None = None, mem: str | None = None,
        gpus: int | str | None = None, runtime: str = "auto", shared: str | os.PathLike | None = None,
        registry: str | None = None, name: str | None = None, max_parallel: int | None = None,
        sbatch_args: Iterable[str] = (), mounts: Iterable[str | os.PathLike] = (),
        login: str | None = None) -> "Job":
    """Submit `image`'s `command` to Slurm as a job array, one task per parameter set; return a Job.

    image: an Image (built from cells) or any source string. command: a string (run with
    /bin/sh -c), a list (exec form), or None for the image's ENTRYPOINT/CMD.
    array: a task count, or input files (one task each, parameter `input`); params: a list of
    dicts, one task each. Each task sees its parameters as environment variables, plus
    NBIMAGES_PARAMS (JSON), NBIMAGES_TASK and NBIMAGES_OUTPUT (its own output directory).
    partition/time/cpus (per task)/mem/gpus: the sbatch options of the same name;
    sbatch_args: any others. max_parallel: at most that many tasks at once (`--array=...%N`).
    runtime: 'auto' (asked on a node: container, apptainer, singularity, podman, docker, first
    found) or one of those. shared: a directory this machine and the nodes see at the same
    path (default $NBIMAGES_SLURM_SHARED or ~/nbimages-slurm); the job's files go in a new
    folder under it. registry: 'host/repo' to push the image to and have the nodes pull it
    by digest instead of loading an archive (docker, podman, apptainer). mounts: host
    directories the tasks read, bound read-only at the same path (the folders of array=
    input files are added). login: 'user@host' runs the Slurm commands there over SSH (the
    shared directory must be the same path there).
    """
    tasks = _tasks(array, params)
    if runtime != "auto" and runtime not in RUNTIMES:
        raise SlurmError(f"unknown runtime {runtime!r}; use one of: auto, {', '.join(RUNTIMES)}.")
    binds = _binds(mounts, tasks if array is not None and not isinstance(array, int) else [])
    img = open_image(image)
    chosen = pick_runtime(runtime, node_runtimes(partition, login), partition)
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or "nbimages")[:40]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    jobdir = _shared_root(shared) / f"{label}-{stamp}-{secrets.token_hex(3)}"
    try:
        return _submit(img, command, tasks, jobdir, label, chosen, binds, registry=registry,
                       partition=partition, time=time, cpus=cpus, mem=mem, gpus=gpus,
                       max_parallel=max_parallel, sbatch_args=sbatch_args, login=login)
    except BaseException:
        shutil.rmtree(jobdir, ignore_errors=True)  # no half-written job folder stays behind
        raise


def _submit(img: Image, command, tasks: list[dict], jobdir: Path, label: str, chosen: str,
            binds: list[str], *, registry, partition, time, cpus, mem, gpus, max_parallel,
            sbatch_args, login) -> "Job":
    """Write the job's folder (parameters, the image, the script) and sbatch it."""
    (jobdir / "logs").mkdir(parents=True)
    (jobdir / "out").mkdir()
    (jobdir / "status").mkdir()
    _write_params(jobdir, tasks)
    delivery = _deliver(img, chosen, jobdir, registry, binds)
    script = jobdir / "job.sh"
    script.write_text(_script(label, jobdir, delivery, img, command, gpus, binds))
    script.chmod(0o755)
    last = len(tasks) - 1
    args = ["sbatch", "--parsable", f"--job-name={label}", f"--chdir={jobdir}",
            f"--array=0-{last}" + (f"%{max_parallel}" if max_parallel else ""),
            f"--output={jobdir}/logs/%a.log", "--export=ALL"]
    for opt, value in (("partition", partition), ("time", time), ("cpus-per-task", cpus),
                       ("mem", mem), ("gpus", gpus)):
        if value is not None:
            args.append(f"--{opt}={value}")
    args += list(sbatch_args) + [str(script)]
    job_id = _slurm(args, login).stdout.strip().split(";")[0]
    job = Job(job_id, jobdir, tasks, chosen, delivery.image, login=login)
    (jobdir / "job.json").write_text(json.dumps(
        {"job_id": job_id, "runtime": chosen, "image": delivery.image, "login": login}))
    return job


# ---------------------------------------------------------------------------------------------
# the job

def _fields(line: str) -> dict[str, str]:
    out = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def _task_ids(text: str) -> list[int]:
    """'3' / '0-7' / '0-7%2' / '1,3,5-6' → the task numbers."""
    ids: list[int] = []
    for part in text.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            ids.extend(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
    return ids


class Job:
    """A submitted job array: state per task, logs, wait(), cancel(), results()."""

    def __init__(self, job_id: str, jobdir: str | os.PathLike, tasks: list[dict],
                 runtime: str, image: str, *, login: str | None = None):
        self.id = str(job_id)
        self.jobdir = Path(jobdir)
        self.tasks = tasks
        self.runtime = runtime
        self.image = image
        self.login = login

    @classmethod
    def attach(cls, jobdir: str | os.PathLike) -> "Job":
        """The Job of an earlier run() from its folder on the shared path."""
        jobdir = Path(jobdir)
        try:
            meta = json.loads((jobdir / "job.json").read_text())
            tasks = json.loads((jobdir / "params.json").read_text())
        except (OSError, ValueError):
            raise SlurmError(f"{str(jobdir)!r} is not the folder of an nbimages Slurm job "
                             "(no job.json / params.json in it).") from None
        return cls(meta["job_id"], jobdir, tasks, meta["runtime"], meta["image"],
                   login=meta.get("login"))

    def _status_file(self, task: int) -> dict | None:
        try:
            return json.loads((self.jobdir / "status" / f"{task}.json").read_text())
        except (OSError, ValueError):
            return None

    def _slurm_states(self) -> dict[int, dict[str, str]]:
        """Slurm's view per task: scontrol while the controller remembers the job (it does
        with accounting off), sacct after; {} when neither knows it any more."""
        done = _slurm(["scontrol", "show", "job", "-o", self.id], self.login, check=False)
        states: dict[int, dict[str, str]] = {}
        if done.returncode == 0:
            for line in done.stdout.splitlines():
                f = _fields(line)
                for t in _task_ids(f.get("ArrayTaskId", "0")):
                    states[t] = {"state": f.get("JobState", ""), "node": f.get("NodeList", ""),
                                 "reason": f.get("Reason", ""), "exit": f.get("ExitCode", "")}
            return states
        acct = _slurm(["sacct", "-n", "-P", "-X", "-j", self.id, "-o", "JobID,State,ExitCode,NodeList"],
                      self.login, check=False)
        if acct.returncode == 0:
            for line in acct.stdout.splitlines():
                jid, state, code, node = (line.split("|") + ["", "", "", ""])[:4]
                for t in _task_ids(jid.partition("_")[2].strip("[]") or "0"):
                    states[t] = {"state": state.split()[0] if state else "", "node": node,
                                 "reason": "", "exit": code}
        return states

    def status(self):
        """A DataFrame, one row per task: state (pending, running, done, failed, cancelled),
        exit code, node, seconds run, and why a task waits."""
        import pandas as pd
        slurm = self._slurm_states()
        rows = []
        for t, params in enumerate(self.tasks):
            s = slurm.get(t, {})
            rec = self._status_file(t)
            state = STATES.get(s.get("state", ""), s.get("state", "").lower() or None)
            if state not in ("pending", "running", "cancelled") and rec is not None:
                state = "done" if rec["exit_code"] == 0 else "failed"
            elif state is None:
                state = "unknown"
            exit_code = rec["exit_code"] if rec else _exit_code(s.get("exit", ""), state)
            rows.append({"task": t, **params, "state": state, "exit_code": exit_code,
                         "node": (rec or {}).get("host") or s.get("node") or None,
                         "seconds": round(rec["end"] - rec["start"], 3) if rec else None,
                         "reason": s.get("reason") if state == "pending" else None})
        return pd.DataFrame(rows).set_index("task")

    def states(self) -> dict[int, str]:
        """task → state, without pandas' overhead in a polling loop."""
        return self.status()["state"].to_dict()

    @property
    def done(self) -> bool:
        return all(s in FINISHED for s in self.states().values())

    def wait(self, timeout: float | None = None, *, poll: float = 1.0, follow: bool = False) -> "Job":
        """Block until every task has finished (or `timeout` seconds); `follow` streams the
        tasks' logs meanwhile. Returns the Job; raises SlurmError on timeout."""
        deadline = None if timeout is None else _time.monotonic() + timeout
        offsets: dict[int, int] = {}
        while True:
            finished = self.done
            if follow:
                self._print_new(offsets)
            if finished:
                return self
            if deadline is not None and _time.monotonic() > deadline:
                raise SlurmError(f"job {self.id} has not finished after {timeout} s "
                                 f"({self._summary()}); wait longer or cancel() it.")
            _time.sleep(poll)

    def follow(self, timeout: float | None = None) -> "Job":
        """Stream every task's log into the cell (each line prefixed with its task) until the
        job ends."""
        return self.wait(timeout, follow=True)

    def _print_new(self, offsets: dict[int, int]) -> None:
        for t in range(len(self.tasks)):
            path = self.log_path(t)
            try:
                with open(path, "rb") as f:
                    f.seek(offsets.get(t, 0))
                    data = f.read()
            except OSError:
                continue
            cut = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
            if not cut:
                continue
            offsets[t] = offsets.get(t, 0) + cut
            for line in data[:cut].decode("utf-8", "replace").splitlines():
                sys.stdout.write(f"[{t}] {line}\n")
        sys.stdout.flush()

    def log_path(self, task: int) -> Path:
        return self.jobdir / "logs" / f"{task}.log"

    def logs(self, task: int = 0, *, tail: int | None = None) -> str:
        """What task `task` printed (stdout and stderr); the last `tail` lines if given."""
        try:
            text = self.log_path(task).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def cancel(self, *, timeout: float = 60) -> "Job":
        """Cancel every task (scancel) and wait until none runs: their containers are stopped
        and removed on the node (the job's script for docker/podman, oci.conf for --container)."""
        _slurm(["scancel", self.id], self.login)
        deadline = _time.monotonic() + timeout
        while _time.monotonic() < deadline:
            if all(s not in ("running",) for s in self.states().values()):
                return self
            _time.sleep(0.5)
        raise SlurmError(f"job {self.id} still has running tasks {timeout} s after scancel: "
                         "ask the site (scontrol show job) why its nodes do not stop them.")

    def results(self):
        """A DataFrame, one row per task: its parameters, state, exit code, seconds, the JSON
        it printed last (`result`), the files it wrote to $NBIMAGES_OUTPUT (`files`), its log."""
        df = self.status()
        result, files = [], []
        for t in df.index:
            result.append(_last_json(self.logs(t)))
            out = self.jobdir / "out" / str(t)
            files.append(sorted(str(p) for p in out.rglob("*") if p.is_file()) if out.is_dir() else [])
        df["result"] = result
        df["files"] = files
        df["log"] = [str(self.log_path(t)) for t in df.index]
        return df.drop(columns=["reason"])

    def failed(self) -> dict[int, str]:
        """task → the end of its log, for every task that failed."""
        states = self.status()
        return {t: self.logs(t, tail=20) for t, row in states.iterrows() if row["state"] == "failed"}

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for s in self.states().values():
            counts[s] = counts.get(s, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(repr(self))}</p>" + self.status()._repr_html_()

    def __repr__(self) -> str:
        return (f"<slurm Job {self.id}: {len(self.tasks)} task(s), runtime {self.runtime}, "
                f"{self.jobdir}>")


def _exit_code(text: str, state: str) -> int | None:
    if state not in FINISHED or not text:
        return None
    code, _, sig = text.partition(":")
    return int(code) if code.isdigit() and int(code) else (128 + int(sig) if sig.isdigit() and int(sig) else int(code or 0))


def _last_json(text: str) -> Any:
    """The last line of a log that is a JSON object or list. Other lines may follow it: the
    log holds stderr too, and runtimes do not keep the order of the two streams."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line[:1] in ("{", "["):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def squeue(user: str | None = None, *, login: str | None = None):
    """The queue as a DataFrame (job, task, name, state, time, node or reason), from `squeue`."""
    import pandas as pd
    args = ["squeue", "-h", "-r", "-o", "%i|%F|%K|%j|%T|%M|%R"]
    if user:
        args.append(f"--user={user}")
    rows = []
    for line in _slurm(args, login).stdout.splitlines():
        jid, array_id, task, name, state, used, where = (line.split("|") + [""] * 7)[:7]
        rows.append({"job": jid, "array_job": array_id, "task": task if task != "N/A" else None,
                     "name": name, "state": STATES.get(state, state.lower()), "time": used,
                     "node_or_reason": where})
    return pd.DataFrame(rows, columns=["job", "array_job", "task", "name", "state", "time",
                                       "node_or_reason"])

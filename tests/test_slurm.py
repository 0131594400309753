"""Running an image's work on a real single-node Slurm cluster (scripts/slurm.sh): job arrays
through `srun --container` (runc) and through docker, results as a DataFrame, a failing task's
exit code and log, cancel leaving no container, a runtime the node lacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import nbimages.slurm as slurm
from nbimages.errors import NbimagesError
from bases import unavailable

pytestmark = pytest.mark.engine

SLURM_DIR = os.environ.get("NBIMAGES_SLURM_DIR", "/var/tmp/nbimages-slurm")
SLURM_CONF = os.path.join(SLURM_DIR, "slurm.conf")
RUNC_ROOT = os.path.join(SLURM_DIR, "runc")
# Each task squares its parameter x, prints the answer as JSON and writes a file of its own.
TASK = """#!/bin/sh
echo "task $NBIMAGES_TASK starts with x=$x" >&2
[ "$x" = fail ] && { echo "boom: x cannot be fail" >&2; exit 3; }
[ "$x" = sleep ] && exec sleep 300
echo "square $((x * x))" > "$NBIMAGES_OUTPUT/answer.txt"
echo "{\\"x\\": $x, \\"square\\": $((x * x)), \\"params\\": $NBIMAGES_PARAMS}"
"""


@pytest.fixture(scope="module")
def cluster():
    """SLURM_CONF of the cluster scripts/slurm.sh started (fails under CI=true when it is down)."""
    env = dict(os.environ, SLURM_CONF=SLURM_CONF)
    ok = shutil.which("sinfo") and os.path.exists(SLURM_CONF) and subprocess.run(
        ["sinfo", "-h", "-o", "%a"], env=env, capture_output=True, timeout=30).returncode == 0
    if not ok:
        unavailable("the Slurm cluster of scripts/slurm.sh is not running (bash scripts/slurm.sh start)")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = SLURM_CONF
    yield SLURM_CONF
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def task_image(ip, busybox_image):
    """An image built from notebook cells: busybox plus the task script."""
    from nbimages.workflow import session
    session.reset()
    try:
        for cid, source in (("s1", f"%image from docker-daemon:{busybox_image}"),
                            ("s2", "%%image file /app/task.sh --mode 0755\n" + TASK),
                            ("s3", '%image cmd ["/app/task.sh"]'),
                            ("s4", "%image build nbtest/slurm18:1")):
            result = ip.run_cell(source, store_history=True, cell_id=cid)
            if result.error_in_exec is not None:
                raise result.error_in_exec
        ip.user_ns["slurm_image"] = result.result
        return result.result
    finally:
        session.reset()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm-shared")


@pytest.fixture(scope="module")
def docker_leftovers(docker_client, task_image):
    """Remove the image the docker runtime loaded on the node (named by the image's ID)."""
    yield
    try:
        docker_client.images.remove(slurm.local_ref(task_image), force=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _our_containers(docker_client, job: slurm.Job) -> list[str]:
    return [c.name for c in docker_client.containers.list(
        all=True, ignore_removed=True, filters={"label": f"nbimages.slurm.job={job.id}"})]


def _runc_containers(job: slurm.Job) -> list[str]:
    """runc containers of the job's tasks (oci.conf names them nbimages-slurm.NODE.UID.JOB.STEP.TASK,
    JOB being each array task's own job id)."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job.id], capture_output=True, text=True)
    ids = {f.split("=", 1)[1] for f in shown.stdout.split() if f.startswith("JobId=")}
    out = subprocess.run(["runc", "--root", RUNC_ROOT, "list", "-q"], capture_output=True, text=True)
    return [n for n in out.stdout.split() if n.startswith("nbimages-slurm.") and n.split(".")[3] in ids]


def _check_eight(df, runtime: str) -> None:
    assert list(df.index) == list(range(8))
    assert (df["state"] == "done").all(), df.to_string()
    assert (df["exit_code"] == 0).all()
    assert list(df["x"]) == list(range(8))
    assert [r["square"] for r in df["result"]] == [x * x for x in range(8)]
    assert [r["params"] for r in df["result"]] == [{"x": x} for x in range(8)]
    for x, files in zip(range(8), df["files"]):
        assert len(files) == 1 and open(files[0]).read() == f"square {x * x}\n"
    assert (df["seconds"] >= 0).all() and (df["node"] == df["node"].iloc[0]).all()


def test_array_of_eight_through_srun_container_from_the_magic(cluster, ip, task_image, shared):
    ip.user_ns["sweep"] = [{"x": x} for x in range(8)]
    df = ip.run_line_magic("image", f"sbatch --runtime container --params sweep --shared {shared} "
                                    "--name slurm18 --wait slurm_image")
    _check_eight(df, "container")
    job = slurm.Job.attach(os.path.dirname(df["log"].iloc[0]).rsplit("/logs", 1)[0])
    assert job.runtime == "container" and (job.jobdir / "bundle" / "rootfs" / "app" / "task.sh").exists()
    assert _runc_containers(job) == []  # oci.conf's delete ran for every task
    table = ip.run_line_magic("image", f"squeue {job.jobdir}")
    assert list(table["state"]) == ["done"] * 8


def test_array_of_eight_through_docker(cluster, task_image, shared, docker_client, docker_leftovers):
    job = slurm.run(task_image, None, params=[{"x": x} for x in range(8)], runtime="docker",
                    shared=shared, name="slurm18-docker")
    assert (job.jobdir / "image.tar").exists()  # the docker-archive on the shared path
    job.wait(120)
    _check_eight(job.results(), "docker")
    assert _our_containers(docker_client, job) == []  # --rm


def test_failing_task_reported_with_exit_code_and_log_tail(cluster, task_image, shared, capsys):
    job = slurm.run(task_image, "/app/task.sh", params=[{"x": 2}, {"x": "fail"}],
                    runtime="container", shared=shared, name="slurm18-fail")
    job.follow(120)
    streamed = capsys.readouterr().out
    assert "[1] boom: x cannot be fail" in streamed and "[0] task 0 starts with x=2" in streamed
    df = job.results()
    assert list(df["state"]) == ["done", "failed"]
    assert list(df["exit_code"]) == [0, 3]
    assert df["result"].iloc[0]["square"] == 4 and df["result"].iloc[1] is None
    assert "boom: x cannot be fail" in job.failed()[1]


@pytest.mark.parametrize("runtime", ["docker", "container"])
def test_cancel_stops_running_tasks_and_leaves_no_container(cluster, task_image, shared, runtime,
                                                           docker_client, docker_leftovers):
    job = slurm.run(task_image, None, params=[{"x": "sleep"}, {"x": "sleep"}], runtime=runtime,
                    shared=shared, name=f"slurm18-cancel-{runtime}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both tasks started their container
        if all("starts" in job.logs(t) for t in (0, 1)):
            break
        time.sleep(0.3)
    running = _our_containers(docker_client, job) if runtime == "docker" else _runc_containers(job)
    assert len(running) == 2, running
    job.cancel()
    assert set(job.states().values()) == {"cancelled"}
    gone = time.monotonic() + 20
    while time.monotonic() < gone:
        left = _our_containers(docker_client, job) if runtime == "docker" else _runc_containers(job)
        if not left:
            break
        time.sleep(0.3)
    assert left == []
    assert subprocess.run(["pgrep", "-f", f"nbimages-slurm.*{job.id}"], capture_output=True).returncode == 1


def test_cli_sbatch_one_task_per_input_file_then_squeue(cluster, busybox_image, shared, tmp_path):
    """`nbimages sbatch --input ...`: each task reads its file, bound read-only into the container."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, n in (("a.txt", 3), ("b.txt", 4)):
        (inputs / name).write_text(f"{n}\n")
    env = dict(os.environ, SLURM_CONF=cluster, NBIMAGES_PROGRESS="lines")
    cli = [sys.executable, "-m", "nbimages"]
    done = subprocess.run(cli + ["sbatch", "--input", str(inputs / "a.txt"), "--input", str(inputs / "b.txt"),
                                 "--runtime", "container", "--shared", str(shared), "--name", "slurm18-cli",
                                 "--wait", "--json", f"docker-daemon:{busybox_image}",
                                 'echo "{\\"n\\": $(cat $input)}"; echo more >> $input'],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["input"] for r in rows] == [str(inputs / "a.txt"), str(inputs / "b.txt")]
    assert [r["result"] for r in rows] == [{"n": 3}, {"n": 4}]
    # writing to the input fails: the tasks fail with the shell's exit code
    assert [(r["state"], r["exit_code"]) for r in rows] == [("failed", 1), ("failed", 1)]
    assert "Read-only file system" in open(rows[0]["log"]).read()  # the inputs are read-only
    assert (inputs / "a.txt").read_text() == "3\n"
    jobdir = os.path.dirname(os.path.dirname(rows[0]["log"]))
    shown = subprocess.run(cli + ["squeue", jobdir], capture_output=True, text=True, env=env, timeout=120)
    assert shown.returncode == 0 and "failed" in shown.stdout, shown.stderr


def test_registry_delivery_pulls_by_digest(cluster, task_image, registry, shared, tmp_path,
                                           docker_client):
    data = tmp_path / "data"
    data.mkdir()
    (data / "note.txt").write_text("a note from the shared file system\n")
    job = slurm.run(task_image, f"/app/task.sh && cat {data}/note.txt", params=[{"x": 5}, {"x": 6}],
                    runtime="docker", registry=f"{registry}/nbtest/slurm18", mounts=[data],
                    shared=shared, name="slurm18-registry")
    try:
        assert job.image.startswith(f"{registry}/nbtest/slurm18@sha256:")
        assert not (job.jobdir / "image.tar").exists()
        df = job.wait(120).results()
        assert [r["square"] for r in df["result"]] == [25, 36], df.to_string()
        assert "a note from the shared file system" in job.logs(1)
    finally:
        try:
            docker_client.images.remove(job.image, force=True)
        except Exception:  # noqa: BLE001 - not pulled
            pass


def test_runtime_missing_on_the_node_is_one_clear_message(cluster, task_image, shared):
    before = set(os.listdir(shared))
    with pytest.raises(slurm.SlurmError) as err:
        slurm.run(task_image, "true", runtime="apptainer", shared=shared)
    text = str(err.value)
    assert "'apptainer' is not available" in text and "They offer: container, docker" in text
    assert set(os.listdir(shared)) == before  # nothing written for a job that cannot run


def test_a_job_slurm_refuses_leaves_no_folder(cluster, task_image, shared):
    before = set(os.listdir(shared))
    with pytest.raises(slurm.SlurmError, match="sbatch.*failed.*--no-such-option"):
        slurm.run(task_image, "true", runtime="container", shared=shared,
                  sbatch_args=["--no-such-option"])
    assert set(os.listdir(shared)) == before


def test_bad_parameters_are_refused_before_submitting(tmp_path):
    with pytest.raises(slurm.SlurmError, match="environment variable"):
        slurm._tasks(None, [{"not a name": 1}])
    with pytest.raises(slurm.SlurmError, match="not both"):
        slurm._tasks(3, [{}])
    assert slurm._tasks(["a.csv", "/d/b.csv"], None) == [{"input": os.path.abspath("a.csv")},
                                                        {"input": "/d/b.csv"}]
    assert slurm._task_ids("0-3%2") == [0, 1, 2, 3] and slurm._task_ids("1,4-5") == [1, 4, 5]
    assert slurm._last_json('noise\n{"a": [1, 2]}\n\n') == {"a": [1, 2]}


def test_no_slurm_configuration_is_a_clear_message(monkeypatch, tmp_path):
    if not shutil.which("sbatch"):
        unavailable("Slurm's client tools are not installed (bash scripts/slurm.sh start)")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    with pytest.raises(NbimagesError, match="SLURM_CONF"):
        slurm.squeue()


def test_squeue_lists_a_pending_job(cluster, task_image, shared):
    job = slurm.run(task_image, None, params=[{"x": "sleep"}], runtime="container", shared=shared,
                    name="slurm18-queue", time="00:05:00", mem="100M", cpus=2,
                    sbatch_args=["--begin=now+1hour"])
    try:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job.id], capture_output=True, text=True).stdout
        assert "TimeLimit=00:05:00" in shown and "MinMemoryNode=100M" in shown and "NumCPUs=2" in shown
        q = slurm.squeue()
        row = q[q["array_job"] == job.id]
        assert list(row["state"]) == ["pending"] and list(row["name"]) == ["slurm18-queue"]
        assert job.states() == {0: "pending"}
    finally:
        job.cancel()
    assert job.states() == {0: "cancelled"}
    json.loads((job.jobdir / "job.json").read_text())

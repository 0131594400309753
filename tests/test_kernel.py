"""Kernels inside images: a kernelspec whose kernel runs in a container of the image, on the
real Docker engine, driven by jupyter_client and nbclient as JupyterLab and nbconvert do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from IPython.core.error import UsageError
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import nbimages
from kernel_image import KERNEL_TAG, MARKER, ONLY_IN_IMAGE, kernel_containers
from nbimages.errors import EngineUnavailable, ImageNotFound
from nbimages.kernel import KernelError

NAME = "nbtest-kernel"


def wait_until_gone(docker_client, name: str, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while (left := kernel_containers(docker_client, name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture
def installed(kernel_image, jupyter_dirs, docker_client):
    info = nbimages.kernel.install(KERNEL_TAG, NAME)
    yield info
    assert wait_until_gone(docker_client, NAME) == []


@pytest.fixture
def running(installed):
    km, kc = start_new_kernel(kernel_name=NAME, startup_timeout=90)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def run_code(kc, code: str, timeout: float = 60) -> tuple[dict, str]:
    """Execute code; returns the reply content and everything it printed or returned."""
    out = []

    def hook(msg):
        c = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(c["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(c["data"].get("text/plain", ""))
        elif msg["msg_type"] == "error":
            out.append(f"{c['ename']}: {c['evalue']}")

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    return reply["content"], "".join(out)


def test_installed_kernel_is_a_kernelspec_pinned_to_the_image_id(installed, kernel_image,
                                                                  docker_client, jupyter_dirs):
    spec = KernelSpecManager().get_kernel_spec(NAME)
    assert spec.resource_dir == str(jupyter_dirs["data"] / "kernels" / NAME)
    assert spec.display_name == "Python 3.11 (image nbtest/kernel-py:1)"
    assert spec.interrupt_mode == "signal"
    assert spec.argv[:4] == [sys.executable, "-m", "nbimages.kernel", "launch"]
    image_id = docker_client.images.get(KERNEL_TAG).id
    assert image_id == kernel_image.id           # the engine holds the very image built
    assert installed.image_id == image_id and installed.python == "/usr/bin/python3"
    listed = nbimages.kernel.list()
    row = listed[listed.name == NAME].iloc[0]
    assert (row.image, row.image_id, row.python_version) == (KERNEL_TAG, image_id, "3.11.2")
    assert row.ipykernel.split(".")[0] >= "6"


def test_nbclient_runs_a_notebook_inside_the_image(installed, tmp_path):
    nb = new_notebook(cells=[new_code_cell(f"print(open({ONLY_IN_IMAGE!r}).read())"),
                             new_code_cell("import sys; sys.executable"),
                             new_code_cell("import os; os.path.exists('/srv/nbtest')")])
    NotebookClient(nb, kernel_name=NAME, timeout=60, startup_timeout=90).execute()
    assert nb.cells[0].outputs[0]["text"] == MARKER + "\n"
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "'/usr/bin/python3'"
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "True"
    assert not os.path.exists("/srv/nbtest")    # the file is in the image, not on this host


def test_interrupt_stops_the_running_cell_and_the_kernel_goes_on(running):
    km, kc = running
    msg_id = kc.execute("import time; time.sleep(120)")
    time.sleep(2)
    started = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    while reply["parent_header"].get("msg_id") != msg_id:   # e.g. a late kernel_info_reply
        reply = kc.get_shell_msg(timeout=20)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - started < 10
    # ipykernel answers requests that arrive while it still discards the interrupted
    # cell's queue with "aborted"; a user would run the cell again
    for _ in range(10):
        content, out = run_code(kc, "print(6 * 7)")
        if content["status"] != "aborted":
            break
        time.sleep(0.5)
    assert content["status"] == "ok" and out == "42\n"


def test_restart_gives_a_fresh_kernel_in_a_new_container(running, docker_client):
    km, kc = running
    run_code(kc, "remembered = 1")
    before = {c.id for c in kernel_containers(docker_client, NAME)}
    assert len(before) == 1
    km.restart_kernel()
    kc.wait_for_ready(timeout=90)
    content, out = run_code(kc, "print('remembered' in globals())")
    assert out == "False\n"
    after = {c.id for c in kernel_containers(docker_client, NAME) if c.status == "running"}
    assert len(after) == 1 and not after & before


@pytest.mark.parametrize("now", [False, True], ids=["shutdown", "forced-kill"])
def test_shutdown_leaves_no_container(installed, docker_client, now):
    """A polite shutdown, and Jupyter's SIGKILL of the launcher (the kernel then sees its
    stdin end and exits; the container was started with auto-remove)."""
    km, kc = start_new_kernel(kernel_name=NAME, startup_timeout=90)
    assert run_code(kc, "1 + 1")[1] == "2"
    assert len(kernel_containers(docker_client, NAME)) == 1
    kc.stop_channels()
    km.shutdown_kernel(now=now)
    assert wait_until_gone(docker_client, NAME) == []


def test_image_without_ipykernel_is_refused_with_the_fix(python_base_image, jupyter_dirs):
    with pytest.raises(KernelError) as e:
        nbimages.kernel.install(python_base_image, "nbtest-no-ipykernel")
    msg = str(e.value)
    assert "has Python 3.11.2 (/usr/bin/python3) but no ipykernel" in msg
    assert "%image pip ipykernel" in msg
    assert nbimages.kernel.list().empty
    assert not (jupyter_dirs["data"] / "kernels").exists()


def test_image_without_python_is_refused(busybox_image, jupyter_dirs):
    with pytest.raises(KernelError, match="has no Python .*python3 nor python"):
        nbimages.kernel.install(busybox_image, "nbtest-no-python")
    assert nbimages.kernel.list().empty


def test_missing_image_is_a_clear_error(registry, docker_client, jupyter_dirs):
    with pytest.raises(ImageNotFound, match="no-such-kernel-image"):
        nbimages.kernel.install(f"{registry}/nbtest/no-such-kernel-image:1")
    assert nbimages.kernel.list().empty


def test_without_an_engine_nothing_is_written_unless_asked(jupyter_dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(EngineUnavailable) as e:
        nbimages.kernel.install("some/image:1")
    assert "needs the Docker engine" in str(e.value) and "--no-check" in str(e.value)
    assert nbimages.kernel.list().empty
    info = nbimages.kernel.install("some/image:1", check=False)
    assert info.name == "nbimages-image-1" and info.image_id is None
    spec = json.loads((jupyter_dirs["data"] / "kernels" / info.name / "kernel.json").read_text())
    assert spec["env"]["DOCKER_HOST"] == f"unix://{tmp_path}/no-engine.sock"
    assert list(nbimages.kernel.list().name) == ["nbimages-image-1"]


def test_a_remote_engine_is_refused_before_anything_is_sent(jupyter_dirs, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.10:2375")   # TEST-NET: never contacted
    with pytest.raises(KernelError, match="is on another machine.*host network"):
        nbimages.kernel.install("some/image:1")
    assert nbimages.kernel.list().empty


def test_a_kernel_that_cannot_start_says_why_in_its_log(jupyter_dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    nbimages.kernel.install("some/image:1", "nbtest-broken", check=False)
    conn = tmp_path / "conn.json"
    conn.write_text("{}")
    spec = KernelSpecManager().get_kernel_spec("nbtest-broken")
    argv = [a.replace("{connection_file}", str(conn)) for a in spec.argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **spec.env})
    assert proc.returncode == 1
    assert "nbimages kernel nbtest-broken:" in proc.stderr and "no Docker engine answered" in proc.stderr


def test_sys_prefix_installs_into_the_environment(jupyter_dirs, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "env"))
    info = nbimages.kernel.install("some/image:1", "nbtest-env", sys_prefix=True, check=False)
    assert info.resource_dir == str(tmp_path / "env" / "share" / "jupyter" / "kernels" / "nbtest-env")


def test_remove_refuses_unknown_and_foreign_kernels(jupyter_dirs):
    with pytest.raises(KernelError, match="no kernel named 'nope'"):
        nbimages.kernel.remove("nope")
    foreign = jupyter_dirs["data"] / "kernels" / "theirs"
    foreign.mkdir(parents=True)
    (foreign / "kernel.json").write_text(json.dumps({"argv": ["x", "{connection_file}"],
                                                     "display_name": "X", "language": "x"}))
    with pytest.raises(KernelError, match="not an nbimages kernel"):
        nbimages.kernel.remove("theirs")
    with pytest.raises(KernelError, match="not an nbimages kernel; choose another name"):
        nbimages.kernel.install("some/image:1", "theirs", check=False)
    assert foreign.exists()


def test_bad_kernel_name_is_refused(jupyter_dirs):
    with pytest.raises(KernelError, match="cannot be a kernel name"):
        nbimages.kernel.install("some/image:1", "Has Spaces", check=False)


def test_cli_installs_lists_and_removes(kernel_image, jupyter_dirs):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "nbimages", *args], capture_output=True,
                              text=True, timeout=120)

    p = cli("kernel", "install", KERNEL_TAG, "--name", "nbtest-cli", "--display-name", "Handout")
    assert p.returncode == 0, p.stderr
    assert "kernel nbtest-cli ('Handout') runs /usr/bin/python3 in image nbtest/kernel-py:1" in p.stdout
    p = cli("kernel", "list", "--json")
    rows = json.loads(p.stdout)
    assert [(r["name"], r["display_name"]) for r in rows] == [("nbtest-cli", "Handout")]
    p = cli("kernel", "remove", "nbtest-cli")
    assert p.returncode == 0 and "removed" in p.stdout
    p = cli("kernel", "remove", "nbtest-cli")
    assert p.returncode == 1 and "no kernel named 'nbtest-cli'" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli("kernel")
    assert p.returncode == 2 and "say install, list or remove" in p.stderr


def test_magic_installs_the_kernel_of_an_image_variable(fresh_ip, kernel_image, jupyter_dirs):
    fresh_ip.user_ns["img"] = kernel_image
    info = fresh_ip.run_line_magic("image", "kernel install img --name nbtest-magic")
    assert info.name == "nbtest-magic" and info.image_id == kernel_image.id
    assert info.image == "store:nbtest/kernel-py:1"   # found again by name if the ID is gone
    assert info.display_name == "Python 3.11 (image store:nbtest/kernel-py:1)"
    assert list(nbimages.kernel.list().name) == ["nbtest-magic"]
    # the short form, `%image kernel TAG`, installs too
    short = fresh_ip.run_line_magic("image", "kernel img --name nbtest-magic-short")
    assert short.name == "nbtest-magic-short" and short.image_id == kernel_image.id
    with pytest.raises(UsageError, match="'img' is not one of install, list, remove"):
        fresh_ip.run_line_magic("image", "kernel img other")


def test_a_pinned_image_the_engine_lost_is_found_again_by_name(installed, jupyter_dirs, tmp_path):
    spec_file = jupyter_dirs["data"] / "kernels" / NAME / "kernel.json"
    spec = json.loads(spec_file.read_text())
    at = spec["argv"].index("--image-id")
    spec["argv"][at + 1] = "sha256:" + "0" * 64          # as if pruned from the engine
    spec_file.write_text(json.dumps(spec))
    log = (tmp_path / "kernel.log").open("wb")
    km, kc = start_new_kernel(kernel_name=NAME, startup_timeout=90, stderr=log)
    try:
        assert run_code(kc, "import os; os.path.exists('/srv/nbtest')")[1] == "True"
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
        log.close()
    text = (tmp_path / "kernel.log").read_text()
    assert "the engine no longer has image sha256:000000000000 the kernel was installed for; " \
           "running nbtest/kernel-py:1" in text

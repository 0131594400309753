"""Running containers with the real Docker engine: output streamed live, exit codes, services,
interrupts, and the bad inputs users hit (missing image, taken port, unknown command)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time

import pytest
import requests

import nbimages
from nbimages.engines import CommandNotFound, ContainerError, PortInUse, RunResult
from nbimages.engines.base import LABEL_SESSION, SESSION
from nbimages.errors import ImageNotFound

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def eng(docker_client):
    return nbimages.engine("docker")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _our_containers(docker_client) -> list[str]:
    return [c.id for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_SESSION}={SESSION}"})]


def test_foreground_run_returns_nonzero_exit_code_with_output(eng, busybox_image, capsys, docker_client):
    before = _our_containers(docker_client)
    result = nbimages.run(busybox_image, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
                          engine=eng)
    out, err = capsys.readouterr()
    assert isinstance(result, RunResult) and result == 3 and result.exit_code == 3
    assert "to-stdout" in out and "to-stderr" not in out
    assert "to-stderr" in err
    assert "to-stdout" in result.output and "to-stderr" in result.stderr
    assert result.tail(1) in ("to-stdout", "to-stderr")
    assert _our_containers(docker_client) == before  # removed after it exited


def test_foreground_output_arrives_while_the_container_runs(eng, busybox_image, monkeypatch):
    writes: list[tuple[float, str]] = []

    class Recorder:
        def write(self, text):
            writes.append((time.monotonic(), text))
            return len(text)

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Recorder())
    result = nbimages.run(busybox_image, "echo first; sleep 2; echo second", engine=eng)
    end = time.monotonic()
    assert result == 0
    first = next(t for t, text in writes if "first" in text)
    assert end - first > 1.5, "the first line should be shown before the container ends"


def test_string_command_runs_in_a_shell_with_env_workdir_and_volume(eng, busybox_image, tmp_path):
    (tmp_path / "in.txt").write_text("from the host\n")
    result = nbimages.run(busybox_image, 'cat in.txt; echo "$GREETING" > out.txt; pwd',
                          env={"GREETING": "hello volume"}, workdir="/data",
                          volumes={str(tmp_path): "/data"}, engine=eng)
    assert result == 0, result.output
    assert "from the host" in result.output and "/data" in result.output
    assert (tmp_path / "out.txt").read_text() == "hello volume\n"


def test_default_network_is_none(eng, busybox_image):
    result = nbimages.run(busybox_image, ["sh", "-c", "ls /sys/class/net"], engine=eng, stream=False)
    assert result.output.split() == ["lo"]


def test_detached_http_server_is_reachable_logs_and_stops(eng, busybox_image, docker_client):
    port = _free_port()
    script = ("mkdir -p /www && echo hello-from-httpd > /www/index.html && echo serving; "
              f"exec httpd -f -vv -p 127.0.0.1:{port} -h /www")
    c = nbimages.run(busybox_image, ["sh", "-c", script], ports=port, detach=True, engine=eng)
    try:
        assert c.status == "running"
        assert c.ports == [f"{port}/tcp"]
        assert f"{port}/tcp" in repr(c)
        deadline = time.monotonic() + 10
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "httpd did not come up"
                time.sleep(0.1)
        assert r.text == "hello-from-httpd\n"
        table = nbimages.engines.ps(engine=eng)
        row = table[table["id"] == c.short_id].iloc[0]
        assert row["ports"] == f"{port}/tcp" and row["this_kernel"] and row["status"] == "running"
        assert "serving" in nbimages.engines.logs(c.name, engine=eng)
        assert "serving" in repr(c.logs(tail=5))
    finally:
        nbimages.engines.stop(c.name, engine=eng, timeout=1)
    assert c.status == "removed"
    assert c.short_id not in set(nbimages.engines.ps(all=True, engine=eng)["id"])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_detached_container_keeps_logs_after_exit_until_removed(eng, busybox_image):
    c = nbimages.run(busybox_image, ["sh", "-c", "echo done-here; exit 4"], detach=True, engine=eng)
    try:
        assert c.wait(timeout=20) == 4
        assert "done-here" in c.logs()
        table = nbimages.engines.ps(all=True, engine=eng)
        assert table[table["id"] == c.short_id].iloc[0]["exit_code"] == 4
    finally:
        c.remove(force=True)
    assert c.status == "removed"


def test_kernel_interrupt_stops_and_removes_a_foreground_container(eng, busybox_image, docker_client,
                                                                   capsys):
    before = _our_containers(docker_client)
    main = threading.main_thread().ident
    timer = threading.Timer(1.5, signal.pthread_kill, (main, signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            nbimages.run(busybox_image, ["sh", "-c", "while :; do echo tick; sleep 0.2; done"],
                         engine=eng)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    out, err = capsys.readouterr()
    assert "tick" in out and "interrupted" in err
    assert _our_containers(docker_client) == before


def test_image_not_found_in_engine_store_or_registry(eng, registry):
    with pytest.raises(ImageNotFound, match="no-such-image"):
        nbimages.run(f"{registry}/nbtest/no-such-image:1", ["true"], engine=eng)
    with pytest.raises(ImageNotFound, match="neither in the Docker engine nor in the local store"):
        nbimages.run("nbtest/no-such-image:1", ["true"], engine=eng, pull="never")


def test_command_missing_from_the_image_is_one_clear_error(eng, busybox_image, docker_client):
    before = _our_containers(docker_client)
    with pytest.raises(CommandNotFound) as info:
        nbimages.run(busybox_image, ["no-such-command", "--flag"], engine=eng)
    msg = str(info.value)
    assert "no-such-command" in msg and busybox_image in msg and "\n" not in msg
    assert _our_containers(docker_client) == before


def test_port_already_taken_is_refused_before_starting(eng, busybox_image, docker_client):
    before = _our_containers(docker_client)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port}/tcp is already in use"):
            nbimages.run(busybox_image, ["httpd", "-f", "-p", str(port)], ports=[port],
                         detach=True, engine=eng)
    assert _our_containers(docker_client) == before


@pytest.mark.parametrize("kw, needle", [
    ({"ports": {80: 8080}}, "port mapping 8080->80"),
    ({"ports": 8080, "network": "none"}, "network='none'"),
    ({"ports": "http"}, "is not a port"),
    ({"pull": "sometimes"}, "pull='sometimes'"),
])
def test_bad_run_options_are_explained(eng, busybox_image, kw, needle):
    with pytest.raises(ContainerError, match=needle.replace("(", r"\(")):
        nbimages.run(busybox_image, ["true"], engine=eng, **kw)


def test_an_image_object_missing_from_the_engine_is_loaded_and_runs(eng, busybox_image,
                                                                    docker_client, tmp_path):
    tag = f"nbtest/run-object:{os.getpid()}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "msg").write_text(f"object {os.getpid()} {time.time()}\n")
    eng.build_dockerfile("FROM nbtest/busybox:1\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n",
                         ctx, tag, stream=False)
    tar = eng.save(tag, tmp_path / "img.tar")
    docker_client.images.remove(tag)
    image = nbimages.open_image(f"docker-archive:{tar}")
    assert eng.has_image(image.id) is None
    result = image.run(stream=False, engine=eng)
    assert result == 0 and "object" in result.output
    assert eng.has_image(image.id) is not None
    docker_client.images.remove(image.id, force=True)
    by_source = nbimages.run(f"docker-archive:{tar}", ["cat", "/msg"], stream=False, engine=eng)
    assert by_source.output == result.output and eng.has_image(image.id) is not None
    with contextlib.suppress(Exception):
        docker_client.images.remove(image.id, force=True)


def test_in_a_jupyter_kernel_output_is_live_and_interrupt_stops_the_container(busybox_image,
                                                                             docker_client):
    from jupyter_client.manager import start_new_kernel
    name = f"nbtest-interrupt-{os.getpid()}-{int(time.time())}"
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute(f"import nbimages\nnbimages.run({busybox_image!r}, "
                   f"['sh', '-c', 'echo started; sleep 60'], name={name!r})")
        seen = ""
        while "started" not in seen:  # shown while the container still runs
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "stream":
                seen += msg["content"]["text"]
        assert [c.name for c in docker_client.containers.list(ignore_removed=True, filters={"name": name})] == [name]
        km.interrupt_kernel()
        errors = []
        while True:
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "error":
                errors.append(msg["content"]["ename"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert errors == ["KeyboardInterrupt"]
        assert docker_client.containers.list(all=True, ignore_removed=True, filters={"name": name}) == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

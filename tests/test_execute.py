"""nbimages execute: a notebook run in a kernel inside its image, outputs compared cell by cell
(real engine, the ipykernel image of tests/kernel_image.py); and verify --execute."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import nbimages
from kernel_image import KERNEL_TAG, MARKER, ONLY_IN_IMAGE
from nbimages.execution import ExecuteError, _as_node, comparable, normalise
from nbimages.kernel import KernelError
from nbimages.workflow.notebook_recipe import read_notebook


def write(path: Path, *cells) -> Path:
    nb = new_notebook(cells=[c if not isinstance(c, str) else new_code_cell(c) for c in cells])
    nbformat.write(nb, str(path))
    return path


def stream(text: str, name: str = "stdout"):
    return new_output("stream", name=name, text=text)


def cell(source: str, *outputs, tags=None, count=None):
    c = new_code_cell(source, outputs=list(outputs), execution_count=count)
    if tags:
        c.metadata["tags"] = tags
    return c


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbimages", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "NBIMAGES_PROGRESS": "0"})


def analysis_notebook(path: Path) -> Path:
    """%image cells (skipped in the image) and cells whose outputs prove where they ran."""
    return write(path, new_markdown_cell("# An analysis"),
                 "%load_ext nbimages",
                 "%image from 127.0.0.1:5000/nbtest/python:3.11\n%image pip ipykernel",
                 f"print(open({ONLY_IN_IMAGE!r}).read())",
                 "import sys\nsys.executable",
                 "object()",                                    # an address: normalised
                 "print('fitted in 1.%d s' % __import__('random').randrange(10, 99))",
                 cell("import random\nrandom.random()", tags=["nbimages-volatile"]))


# ---- normalisation and comparison (no engine)

def test_normalise_addresses_timings_temporary_paths_and_colours():
    assert normalise("<__main__.A object at 0x7f3a2b1c9d30>") == "<__main__.A object at 0x…>"
    assert normalise("took 1.52 s, then 830 ms and 12 µs") == "took <time>, then <time> and <time>"
    assert normalise("CPU times: user 3 ms, sys: 1 ms\nWall time: 4.1 s") == "<timing>\n<timing>"
    assert normalise("8.3 µs ± 96 ns per loop (mean ± std. dev. of 7 runs, 100,000 loops each)") \
        == "<time> ± <time> per loop (mean ± std. dev. of 7 runs, N loops each)"
    assert normalise("wrote /tmp/tmpk2j3h4/out.csv") == "wrote <tmp>"
    assert normalise("\x1b[31mred\x1b[0m   \r\nnext") == "red\nnext"
    assert normalise("3 s and 42 items") == "3 s and 42 items"   # integers in seconds stay


def test_comparable_merges_streams_and_hashes_images():
    png = base64.b64encode(b"\x89PNG fake").decode()
    outs = [stream("a"), stream("b\n"), stream("warn\n", "stderr"),
            new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
            new_output("execute_result", data={"text/plain": "1", "text/html": "<b>1</b>"},
                       execution_count=1),
            new_output("error", ename="ValueError", evalue="bad", traceback=["..."])]
    items = comparable(outs)
    assert items[:2] == [("stderr", "warn"), ("stdout", "ab")]
    assert items[2][0] == "image/png" and items[2][1].startswith("sha256:")
    assert items[3:] == [("result", "1"), ("error", "ValueError: bad")]
    # the same picture split over lines in the JSON is the same picture
    split = [new_output("display_data", data={"image/png": png[:4] + "\n" + png[4:]})]
    assert comparable(split)[0] == items[2]


def test_the_notebook_read_once_is_the_one_nbformat_reads(tmp_path):
    # execute reads the file once (read_notebook) and makes of it what nbformat.reads gives:
    # the sources saved as lists of lines become one str each, as nbclient wants them.
    nb = write(tmp_path / "a.ipynb", "x = 1\nprint(x)", cell("print(2)", stream("2\n"), count=1))
    assert json.loads(nb.read_text())["cells"][0]["source"] == ["x = 1\n", "print(x)"]
    node = _as_node(read_notebook(nb))
    assert node == nbformat.reads(nb.read_text(), as_version=4)
    assert node.cells[0].source == "x = 1\nprint(x)"


def test_a_notebook_with_no_code_cells_is_refused(tmp_path):
    nb = write(tmp_path / "text.ipynb", new_markdown_cell("just words"))
    with pytest.raises(ExecuteError, match="has no code cells"):
        nbimages.execute(nb, "any:1")
    only_build = write(tmp_path / "build.ipynb", "%load_ext nbimages", "%image from scratch")
    with pytest.raises(ExecuteError, match="every code cell .* is an %image cell"):
        nbimages.execute(only_build, "any:1")


def test_no_image_and_no_recorded_build_says_which_option(tmp_path):
    nb = write(tmp_path / "a.ipynb", "1 + 1")
    p = cli("execute", str(nb))
    assert p.returncode == 1 and "in which image? Give it (--image REF" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_ignore_cell_is_refused_before_anything_runs(tmp_path):
    nb = write(tmp_path / "a.ipynb", new_markdown_cell("m"), "1 + 1")
    with pytest.raises(ExecuteError, match="has 2 cells"):
        nbimages.execute(nb, "any:1", ignore_cells=[7])
    with pytest.raises(ExecuteError, match="cell 1 of a.ipynb is a markdown cell"):
        nbimages.execute(nb, "any:1", ignore_cells=["1"])


# ---- in the image (real engine)

def test_outputs_from_the_image_pass_and_an_edited_one_fails_naming_its_cell(kernel_image,
                                                                             tmp_path):
    nb = analysis_notebook(tmp_path / "analysis.ipynb")
    first = nbimages.execute(nb, KERNEL_TAG, output=tmp_path / "ran.ipynb")
    assert not first.ok                       # no saved outputs yet: every output is new
    assert [c.status for c in first.cells] == ["skipped", "skipped", "new", "new", "new", "new",
                                               "ignored"]
    ran = nbformat.read(str(tmp_path / "ran.ipynb"), as_version=4)
    assert ran.cells[3].outputs[0]["text"] == MARKER + "\n"      # read inside the image
    assert ran.cells[4].outputs[0]["data"]["text/plain"] == "'/usr/bin/python3'"

    p = cli("execute", str(tmp_path / "ran.ipynb"), "--image", KERNEL_TAG)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("outputs reproduced: ran.ipynb in image nbtest/kernel-py:1")
    assert "2 skipped, 4 same, 1 ignored" in p.stdout

    ran.cells[4].outputs[0]["data"]["text/plain"] = "'/usr/local/bin/python3'"
    nbformat.write(ran, str(tmp_path / "edited.ipynb"))
    p = cli("execute", str(tmp_path / "edited.ipynb"), "--image", KERNEL_TAG, "--json")
    assert p.returncode == 1
    rows = {r["cell"]: r for r in json.loads(p.stdout)}
    assert rows[5]["status"] == "differs"
    assert rows[5]["diff"] == ("result line 1: saved \"'/usr/local/bin/python3'\", "
                               "now \"'/usr/bin/python3'\"")
    assert [r["cell"] for r in rows.values() if r["status"] not in ("same", "skipped", "ignored")] == [5]


def test_an_error_in_a_cell_is_that_cells_error_and_the_rest_still_runs(kernel_image, tmp_path):
    nb = write(tmp_path / "err.ipynb",
               cell("print('a')", stream("a\n"), count=1),
               cell("{}['missing']", stream("worked once\n"), count=2),
               cell("print('c')", stream("c\n"), count=3))
    p = cli("execute", str(nb), "--image", KERNEL_TAG)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stdout.startswith("OUTPUTS DIFFER: err.ipynb in image nbtest/kernel-py:1")
    assert "cell 2 error" in p.stdout.splitlines()[0]
    lines = p.stdout.splitlines()
    assert any(l.split()[:3] == ["2", "[2]", "error"] and "KeyError: 'missing'" in l for l in lines)
    assert any(l.split()[:3] == ["3", "[3]", "same"] for l in lines)


def test_volatile_cells_are_left_out_by_number_or_tag(kernel_image, tmp_path):
    nb = write(tmp_path / "rand.ipynb",
               cell("import random\nprint(random.random())", stream("0.5\n")),
               cell("print(2)", stream("2\n")))
    r = nbimages.execute(nb, KERNEL_TAG)
    assert [c.status for c in r.cells] == ["differs", "same"] and not r.ok
    assert nbimages.execute(nb, KERNEL_TAG, ignore_cells=[1]).ok
    doc = nbformat.read(str(nb), as_version=4)
    doc.cells[0].metadata["tags"] = ["nbimages-volatile"]
    nbformat.write(doc, str(nb))
    r = nbimages.execute(nb, KERNEL_TAG)
    assert r.ok and [c.status for c in r.cells] == ["ignored", "same"]


def test_a_cell_over_the_timeout_is_interrupted_and_reported(kernel_image, tmp_path):
    nb = write(tmp_path / "slow.ipynb", "import time\ntime.sleep(60)", cell("print(1)", stream("1\n")))
    r = nbimages.execute(nb, KERNEL_TAG, timeout=3)
    assert r.cells[0].status == "error" and "timed out" in r.cells[0].diff
    assert r.cells[1].status == "same"
    assert r.seconds < 40


def test_an_image_without_ipykernel_is_refused(python_base_image, tmp_path):
    nb = write(tmp_path / "a.ipynb", "1 + 1")
    with pytest.raises(KernelError, match="no ipykernel"):
        nbimages.execute(nb, python_base_image)


def test_magic_returns_the_execution(fresh_ip, kernel_image, tmp_path):
    nb = write(tmp_path / "m.ipynb", cell("print(40 + 2)", stream("42\n")))
    r = fresh_ip.run_line_magic("image", f"execute {nb} --image {KERNEL_TAG}")
    assert r.ok and "outputs reproduced" in r._repr_html_()


def test_magic_verify_execute_needs_a_notebook_file(fresh_ip):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError, match="name the notebook file"):
        fresh_ip.run_line_magic("image", "verify --execute")


# ---- verify --execute and the handout README

def verify_notebook(path: Path, base: str, index_url: str) -> Path:
    return write(path, "%load_ext nbimages",
                 f"%image from {base}\n%image pip ipykernel --index-url {index_url}",
                 f"%%image file {ONLY_IN_IMAGE}\nverified in the image",
                 "%image build nbtest/verify-exec:1",
                 f"print(open({ONLY_IN_IMAGE!r}).read().upper())",
                 "sum(range(10))")


def test_verify_execute_checks_the_digest_then_the_outputs(
        tmp_path, python_base_in_registry, wheel_index, offline_pip, kernel_image, monkeypatch):
    from bases import download_wheels
    download_wheels(["ipykernel"])
    monkeypatch.setenv("NBIMAGES_HOME", str(tmp_path / "home"))
    nb = verify_notebook(tmp_path / "paper.ipynb", python_base_in_registry, wheel_index.url)
    built = cli("build", str(nb), "-t", "nbtest/verify-exec:1", "-q", cwd=tmp_path)
    digest = built.stdout.strip()
    assert built.returncode == 0 and digest.startswith("sha256:"), built.stderr
    # the saved outputs come from the image itself
    p = cli("execute", str(nb), "-o", str(nb), cwd=tmp_path)   # image: the recorded build
    assert "VERIFIED IN THE IMAGE" in nb.read_text()
    p = cli("verify", str(nb), "--digest", digest, "--execute", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith(f"verified: paper.ipynb rebuilt in a clean store has manifest "
                               f"digest {digest}")
    assert "outputs reproduced: paper.ipynb" in p.stdout
    doc = nbformat.read(str(nb), as_version=4)
    doc.cells[5].outputs[0]["data"]["text/plain"] = "46"
    nbformat.write(doc, str(nb))
    p = cli("verify", str(nb), "--digest", digest, "--execute", cwd=tmp_path)
    assert p.returncode == 1 and "cell 6 differs" in p.stdout
    assert "result line 1: saved '46', now '45'" in p.stdout
    # the handout's README names both checks
    p = cli("handout", str(nb), "-o", str(tmp_path / "handout"), cwd=tmp_path)
    readme = (tmp_path / "handout" / "README.md").read_text()
    assert f"nbimages verify paper.ipynb --digest {digest} --execute" in readme
    assert "nbimages execute paper.ipynb --image nbtest/verify-exec:1" in readme
    assert "nbimages kernel install nbtest/verify-exec:1" in readme   # no JupyterLab inside


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_handout_image_opens_the_notebook_in_jupyterlab_with_the_readme_docker_run(
        tmp_path, python_base_in_registry, wheel_index, offline_pip, docker_client, monkeypatch):
    """A notebook whose image has JupyterLab: the README's one `docker run` serves it."""
    import contextlib
    import queue
    import re
    import threading
    import time

    import requests

    from bases import download_wheels
    from nbimages.workflow.handout import JUPYTERLAB_PORT
    download_wheels(["jupyterlab", "ipykernel"])
    monkeypatch.setenv("NBIMAGES_HOME", str(tmp_path / "home"))
    tag = "nbtest/handout-lab:1"
    nb = write(tmp_path / "paper.ipynb", "%load_ext nbimages",
               f"%image from {python_base_in_registry}\n"
               f"%image pip jupyterlab ipykernel --index-url {wheel_index.url}",
               f"%image build {tag}", "print('hello')")
    p = cli("handout", str(nb), "-o", str(tmp_path / "handout"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    readme = (tmp_path / "handout" / "README.md").read_text()
    command = next(l for l in readme.splitlines() if l.startswith("docker run") and "jupyterlab" in l)
    assert "nbimages kernel install" not in readme
    subprocess.run(["docker", "load", "-i", str(tmp_path / "handout" / "image.docker.tar")],
                   check=True, capture_output=True)
    port = _free_port()
    server = subprocess.Popen(["bash", "-c", command.replace(f"--port={JUPYTERLAB_PORT}",
                                                             f"--port={port}")],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in server.stdout], daemon=True).start()
    log: list[str] = []
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(queue.Empty):
                log.append(lines.get(timeout=1))
                m = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", log[-1])
                token = m.group(1) if m else None
        assert token, "JupyterLab did not start:\n" + "".join(log[-40:])
        while time.monotonic() < deadline:   # it may print the address a moment before it listens
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{port}/api", timeout=5).ok:
                    break
            time.sleep(0.3)
        r = requests.get(f"http://127.0.0.1:{port}/api/contents/paper.ipynb",
                         params={"token": token}, timeout=10)
        assert r.ok and r.json()["type"] == "notebook"
        assert r.json()["content"]["cells"][3]["source"] == "print('hello')"
        lab = requests.get(f"http://127.0.0.1:{port}/lab", params={"token": token}, timeout=10)
        assert lab.ok and "JupyterLab" in lab.text
        specs = requests.get(f"http://127.0.0.1:{port}/api/kernelspecs", params={"token": token},
                             timeout=10).json()
        assert "python3" in specs["kernelspecs"]
    finally:
        server.send_signal(__import__("signal").SIGINT)   # Ctrl-C in the terminal stops it
        try:
            server.wait(timeout=30)
        finally:
            for c in docker_client.containers.list(all=True, ignore_removed=True, filters={"ancestor": tag}):
                c.remove(force=True)
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    assert docker_client.containers.list(all=True, ignore_removed=True, filters={"ancestor": tag}) == []

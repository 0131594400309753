"""`nbimages build NOTEBOOK.ipynb`: the image a notebook's %image cells describe, no kernel.

Built by the real CLI in subprocesses, on clean stores; the base is the tests' busybox image
brought in as a `docker save` tar (docker-archive:).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import run
from nbimages.workflow.notebook_recipe import NotebookError, build_notebook, notebook_record
from nbimages.store import Store


@pytest.fixture(scope="session")
def busybox_tar(busybox_image, tmp_path_factory) -> Path:
    """The busybox base as `docker save` writes it."""
    path = tmp_path_factory.mktemp("busybox-tar") / "busybox.tar"
    run(["docker", "save", "-o", str(path), busybox_image])
    return path


def write_notebook(path: Path, *sources: str, markdown: str = "# A handout") -> Path:
    cells = [new_markdown_cell(markdown)] + [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def handout_notebook(directory: Path, busybox_tar: Path, message: str = "hello from the handout",
                     data: str = "numbers 1 2 3") -> Path:
    """Cells describing a busybox image that prints `message`; other cells must never run."""
    marker = directory / "ran-a-python-cell"
    return write_notebook(
        directory / "analysis.ipynb",
        "%load_ext nbimages",
        f"%image from docker-archive:{busybox_tar}",
        f"%%image file /app/run.sh\necho {message}\ncat /app/data.txt",
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit('never run by a build')",
        f"%%image file /app/data.txt\n{data}",
        '%image cmd ["sh", "/app/run.sh"]\n%image env GREETING=hi',
        "img = %image build nbtest/notebook:1\n%image layers img",
    )


def cli(*args: str, home: Path, cwd: Path | None = None, check: bool = True
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-m", "nbimages", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"nbimages {args} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def test_cli_builds_a_notebook_twice_on_clean_stores_with_the_same_digest(tmp_path, busybox_tar):
    nb = handout_notebook(tmp_path, busybox_tar)
    first = cli("build", str(nb), "-t", "nbtest/notebook:ci", home=tmp_path / "home1")
    second = cli("build", str(nb), "-t", "nbtest/notebook:ci", "-q", home=tmp_path / "home2")
    tag, digest = first.stdout.split()
    assert tag == "nbtest/notebook:ci" and digest.startswith("sha256:")
    assert second.stdout.strip() == digest
    assert "COPY --chmod=644 <cell> /app/run.sh" in first.stderr  # the build report
    assert not (tmp_path / "ran-a-python-cell").exists()           # other cells did not run
    image = Store(tmp_path / "home2").get("nbtest/notebook:ci")
    assert image.digest == digest and len(image.layers) == 2 + 2  # busybox's two, two cells
    assert image.container_config["Cmd"] == ["sh", "/app/run.sh"]
    assert Store(tmp_path / "home1").get("nbtest/notebook:1").digest == digest  # its own tag


def test_the_build_is_recorded_in_the_notebook_metadata(tmp_path, busybox_tar):
    nb = handout_notebook(tmp_path, busybox_tar)
    before = nbformat.read(str(nb), as_version=4)
    image = build_notebook(nb)
    rec = notebook_record(nb)
    assert rec["digest"] == image.digest and rec["image_id"] == image.id
    assert rec["diff_ids"] == image.diff_ids and rec["base_layers"] == 2
    assert rec["tag"] == "nbtest/notebook:1"
    layer_steps = [s for s in rec["steps"] if s.get("diff_id")]
    assert [s["diff_id"] for s in layer_steps] == image.diff_ids[2:]
    # cells that never ran are named by position, counted from 1, markdown included
    assert [s["cell"] for s in layer_steps] == ["cell 4", "cell 6"]
    assert layer_steps[0]["instruction"].startswith("COPY --chmod=644 <cell> /app/run.sh")
    after = nbformat.read(str(nb), as_version=4)
    assert after.cells == before.cells  # only the metadata changed
    # Recording does not change what the next build makes.
    assert build_notebook(nb).digest == image.digest


def test_skipped_subcommands_are_listed_and_a_tag_is_added(tmp_path, busybox_tar):
    nb = handout_notebook(tmp_path, busybox_tar)
    image = build_notebook(nb, "nbtest/notebook:extra", record=False)
    assert image.names[:2] == ["nbtest/notebook:extra", "nbtest/notebook:1"]
    assert image.notebook_build.skipped == [
        "cell 8 ('img = %image build nbtest/notebook:1'): %image layers does not describe the "
        "image"]
    assert notebook_record(nb) is None  # record=False


def test_steps_after_the_last_build_cell_are_built_at_the_end(tmp_path, busybox_tar):
    nb = write_notebook(tmp_path / "n.ipynb", f"%image from docker-archive:{busybox_tar}",
                        "%image build nbtest/early:1",
                        "%%image file /late.txt\nadded after the build cell")
    image = build_notebook(nb, "nbtest/late:1", record=False)
    assert len(image.layers) == 3 and image.names[0] == "nbtest/late:1"
    assert Store(os.environ["NBIMAGES_HOME"]).get("nbtest/early:1").digest != image.digest


# ---- bad input: a clear error naming the cell, and the store unchanged

def _error(tmp_path: Path, *sources: str, raw: str | None = None) -> str:
    path = tmp_path / "bad.ipynb"
    if raw is not None:
        path.write_text(raw)
    else:
        write_notebook(path, *sources)
    proc = cli("build", str(path), "-t", "nbtest/bad:1", home=tmp_path / "home", check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Store(tmp_path / "home").names()  # nothing tagged, nothing half-built
    return proc.stderr


def test_a_notebook_without_image_cells_is_a_clear_error(tmp_path):
    err = _error(tmp_path, "print('just python')", "%load_ext nbimages")
    assert "bad.ipynb has no %image or %%image cells" in err


def test_a_malformed_notebook_file_is_a_clear_error(tmp_path):
    err = _error(tmp_path, raw='{"cells": [ {"cell_type": "code", ')
    assert "bad.ipynb is not a Jupyter notebook" in err
    err = _error(tmp_path, raw='{"nbformat": 4, "metadata": {}}')
    assert "is not a Jupyter notebook" in err


def test_an_unknown_subcommand_names_the_cell(tmp_path):
    err = _error(tmp_path, "%image from scratch", "x = 1\n%image frm busybox")
    assert "cell 3 ('x = 1')" in err
    assert "unknown subcommand 'frm'" in err and "Did you mean 'from'" in err


def test_a_bad_option_and_a_step_before_from_name_the_cell(tmp_path):
    err = _error(tmp_path, "%image from scratch", "%%image file /a.txt --mode 9z9\ntext")
    assert "cell 3 ('%%image file /a.txt --mode 9z9')" in err and "9z9" in err
    err = _error(tmp_path, "%image env A=1", "%image from scratch")
    assert "cell 2 ('%image env A=1')" in err and "%image from" in err


def test_a_cell_that_is_not_python_around_its_magics_names_the_cell(tmp_path):
    err = _error(tmp_path, "%image from scratch", "%image env A=1\nif True print('x')")
    assert "cell 3 ('%image env A=1')" in err and "not valid Python" in err


def test_a_step_failing_at_a_build_cell_names_the_steps_cell(tmp_path):
    err = _error(tmp_path, "%image from scratch", "%%image file /ok.txt\nfine",
                 "%image copy missing.csv /data/", "%image build nbtest/bad:2")
    assert ("cell 4 ('%image copy missing.csv /data/') (building for cell 5 ('%image build "
            "nbtest/bad:2')): COPY source 'missing.csv' does not exist") in err


def test_a_missing_notebook_is_a_clear_error(tmp_path):
    with pytest.raises(NotebookError, match="does not exist"):
        build_notebook(tmp_path / "nowhere.ipynb")


def test_copy_steps_read_the_notebooks_folder_whatever_the_working_directory(
        tmp_path, busybox_tar, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "table.csv").write_text("a,b\n1,2\n")
    nb = write_notebook(folder / "n.ipynb", f"%image from docker-archive:{busybox_tar}",
                        "%image copy data/ /data/")
    monkeypatch.chdir(tmp_path)
    image = build_notebook(nb, record=False)
    assert image.build_report[0]["instruction"] == "COPY data/ /data/"
    assert Path.cwd() == tmp_path


def test_cli_build_refuses_dockerfile_options_with_a_notebook(tmp_path, busybox_tar):
    nb = handout_notebook(tmp_path, busybox_tar)
    proc = cli("build", str(nb), "--build-arg", "A=1", home=tmp_path / "h", check=False)
    assert proc.returncode == 2 and "--build-arg cannot be used with a notebook" in proc.stderr
    assert json.loads(nb.read_text())["metadata"].get("nbimages") is None


def test_an_old_nbformat_3_notebook_is_converted_and_built(tmp_path):
    import nbformat.v3 as v3
    old = v3.new_notebook(worksheets=[v3.new_worksheet(cells=[
        v3.new_code_cell(input="%image from scratch"),
        v3.new_code_cell(input="%%image file /old.txt\nfrom 2014")])])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(old, version=3))
    image = build_notebook(path)
    assert len(image.layers) == 1
    assert notebook_record(path)["digest"] == image.digest
    assert json.loads(path.read_text())["nbformat"] == 3  # recorded, not converted


def test_the_cli_build_gives_the_digest_a_real_kernel_gets_running_the_notebook(tmp_path):
    from nbclient import NotebookClient
    nb_path = write_notebook(
        tmp_path / "kernel.ipynb", "%load_ext nbimages",
        "%image from scratch\n%image label title='same in a kernel'",
        "%%image file /srv/data.csv\na,b\n1,2", "x = 40 + 2\nprint('python runs here')",
        "%image env ANSWER=42\n%image workdir /srv",
        "img = %image build nbtest/kernel:1\nprint(img.digest)")
    nb = nbformat.read(str(nb_path), as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = [o["text"] for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
    in_kernel = printed[-1].split()[-1]
    assert in_kernel.startswith("sha256:")
    assert cli("build", str(nb_path), "-q", home=tmp_path / "clean").stdout.strip() == in_kernel


def test_cells_that_ran_are_named_by_their_in_n_everywhere(tmp_path, busybox_tar):
    """The kernel's vocabulary in the CLI's report, the record, the handout and verify: a cell
    saved with execution count 7 is `In [7]`, whatever its position."""
    nb_path = handout_notebook(tmp_path, busybox_tar)
    nb = nbformat.read(str(nb_path), as_version=4)
    for cell, count in zip(nb.cells[1:], (1, 2, 5, 6, 7, 9, 12)):
        cell.execution_count = count
    nbformat.write(nb, str(nb_path))
    built = cli("build", str(nb_path), "-t", "nbtest/notebook:counts", home=tmp_path / "home")
    rows = [l.split() for l in built.stderr.splitlines() if "COPY --chmod=644" in l]
    assert [r[1:3] for r in rows] == [["In", "[5]"], ["In", "[7]"]], built.stderr
    steps = [s for s in notebook_record(nb_path)["steps"] if s.get("diff_id")]
    assert [s["cell"] for s in steps] == [5, 7]
    out = tmp_path / "handout"
    cli("handout", str(nb_path), "-o", str(out), "-q", home=tmp_path / "home")
    readme = (out / "README.md").read_text()
    assert "| 1 | In [5] | `COPY --chmod=644 <cell> /app/run.sh`" in readme
    assert "| 2 | In [7] | `COPY --chmod=644 <cell> /app/data.txt`" in readme
    nb.cells[5].source = "%%image file /app/data.txt\nchanged"
    nbformat.write(nb, str(nb_path))
    proc = cli("verify", str(nb_path), home=tmp_path / "home", check=False)
    assert proc.returncode == 1
    assert "from In [7] ('%%image file /app/data.txt') differs" in proc.stdout, proc.stdout

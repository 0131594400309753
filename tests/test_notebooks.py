"""The notebooks in notebooks/ run top to bottom in a real kernel, and say the right things.

Each notebook runs in its own temporary folder with its own HOME, NBIMAGES_HOME, Jupyter and
IPython dirs, and DOCKER_HOST pointing at a socket that does not exist: they must need neither
a Docker engine nor Docker Hub. Their outputs are then checked (tables, digests, the explorer's
rows), and the handout tars are loaded into the real engine and run. nbconvert's HTML of an
executed notebook without widget state shows the explorer's static HTML.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
NAMES = ["quickstart.ipynb", "layer-analysis.ipynb", "handout.ipynb"]
WIDGET = "application/vnd.jupyter.widget-view+json"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def kernel_env(base: Path, **extra: str) -> dict[str, str]:
    """A kernel environment with its own home, caches and no reachable Docker engine."""
    dirs = {name: base / name for name in ("home", "nbimages", "jupyter-config", "jupyter-data",
                                           "jupyter-runtime", "ipython", "tmp")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "JUPYTER",
                                                                     "IPYTHON", "NBIMAGES_"))}
    env.update(HOME=str(dirs["home"]), NBIMAGES_HOME=str(dirs["nbimages"]),
               JUPYTER_CONFIG_DIR=str(dirs["jupyter-config"]),
               JUPYTER_DATA_DIR=str(dirs["jupyter-data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["jupyter-runtime"]), IPYTHONDIR=str(dirs["ipython"]),
               TMPDIR=str(dirs["tmp"]), DOCKER_HOST=f"unix://{base}/no-docker-engine.sock",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(extra)
    return env


def execute(name: str, workdir: Path, **env: str) -> nbformat.NotebookNode:
    """Run notebooks/NAME in `workdir` with a fresh python3 kernel (this interpreter)."""
    workdir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=kernel_env(workdir / ".isolated", **env), cwd=str(workdir))
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> dict[str, tuple[nbformat.NotebookNode, Path]]:
    out = {}
    for name in NAMES:
        work = tmp_path_factory.mktemp(name.split(".")[0])
        out[name] = (execute(name, work), work)
    return out


# -- helpers over outputs ------------------------------------------------------------------------

def cell_outputs(nb: nbformat.NotebookNode, startswith: str) -> list[dict]:
    """The outputs of the one code cell whose source starts with `startswith`."""
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith)]
    assert len(cells) == 1, f"{len(cells)} cells start with {startswith!r}"
    return cells[0].outputs


def text_of(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/plain", ""))
    return "\n".join(parts)


def html_of(outputs: list[dict]) -> str:
    return "\n".join(o.data.get("text/html", "") for o in outputs if "data" in o)


def layer_rows(page: str) -> int:
    return len(re.findall(r"<tr class=[\"']nbimages-layer-row", page))


def all_output_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


# -- the committed files -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "widgets" not in nb.metadata


def test_binder_installs_nbimages_from_the_repository_with_a_static_busybox():
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    assert re.search(r"pip install .*\s\.\s*$", post.read_text(), re.M)
    assert "busybox-static" in (ROOT / "binder" / "apt.txt").read_text().split()
    reqs = (ROOT / "binder" / "requirements.txt").read_text()
    assert "jupyterlab" in reqs and "ipywidgets" in reqs


# -- what the executed notebooks show ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_without_errors_or_machine_paths(executed, name):
    nb, work = executed[name]
    text = all_output_text(nb)
    assert '"output_type": "error"' not in text
    for secret in (str(work), str(Path.home()), os.environ.get("NBIMAGES_HOME", "/nonexistent")):
        assert secret not in text


def test_quickstart_builds_three_layers_and_shows_them_in_the_explorer(executed):
    nb, _ = executed["quickstart.ipynb"]
    report = text_of(cell_outputs(nb, "img = %image build"))
    assert report.count("rebuilt") == 3
    layers = html_of(cell_outputs(nb, "%image layers"))
    assert layers.split("<tbody>")[1].count("<tr>") == 3   # one row per layer
    # two outputs: the static HTML (what shows once the kernel is gone), then the widget
    explorer = cell_outputs(nb, "%image explore")
    assert len(explorer) == 2 and WIDGET in explorer[1].data and WIDGET not in explorer[0].data
    static = explorer[0].data["text/html"]
    assert "nbimages-static-fallback" in static
    assert layer_rows(static) == 3
    assert "/data/measurements.csv" in static and "/app/report.sh" in static
    assert "nbimages-file-row" in static and "<svg" in static
    assert "<script" not in static


def test_quickstart_handout_loads_and_runs_in_docker(executed, docker_client):
    import nbimages
    nb, work = executed["quickstart.ipynb"]
    printed = text_of(cell_outputs(nb, "import os"))
    digest = DIGEST.search(printed).group(0)
    tar = work / "quickstart.tar"
    assert tar.is_file() and f"quickstart.tar {tar.stat().st_size} bytes" in printed
    handout = nbimages.inspect(f"docker-archive:{tar}")
    assert handout.digest == digest
    try:
        with tar.open("rb") as f:
            loaded = docker_client.images.load(f.read())
        assert loaded[0].id == handout.id
        out = docker_client.containers.run("quickstart:1", network_mode="none", remove=True)
        text = out.decode()
        assert "rows: 90" in text
        assert re.search(r"^south mean 1\d\.\d\d C$", text, re.M)
    finally:
        docker_client.images.remove("quickstart:1", force=True)


def test_layer_analysis_finds_the_waste_and_the_diff(executed):
    nb, _ = executed["layer-analysis.ipynb"]
    waste = text_of(cell_outputs(nb, "insp.waste"))
    for part in range(3):
        assert f"/data/raw/part-{part}.csv" in waste
    assert "/app/settings.json" in waste
    numbers = text_of(cell_outputs(nb, "print(f\"dive's"))
    saved = int(re.search(r"squashing would save ([\d,]+) bytes", numbers).group(1).replace(",", ""))
    assert saved > 3_000_000
    assert "/data/raw" in text_of(cell_outputs(nb, "print(insp.explain())"))
    diff = text_of(cell_outputs(nb, "insp.diff(slim_insp)"))
    assert re.search(r"/tmp\s+removed", diff)
    slim = text_of(cell_outputs(nb, "slim = nbimages.Recipe"))
    assert re.search(r"^slim:  67 bytes in 2 layers, 0 wasted$", slim, re.M)
    static, live = (o.data for o in cell_outputs(nb, "nbimages.explore(insp, diff=slim_insp)"))
    assert WIDGET in live
    explorer = static
    assert "nbimages-diff-row" in explorer["text/html"]
    assert explorer["text/html"].count("nbimages-layer-row nbimages-wasteful") >= 3


def test_handout_digest_is_the_same_on_rebuild(executed):
    nb, _ = executed["handout.ipynb"]
    first = DIGEST.search(text_of(cell_outputs(nb, "img = %image build"))).group(0)
    verify = text_of(cell_outputs(nb, "v = %image verify"))
    assert f"rebuilt: {first}" in verify and "same digest: True" in verify
    assert text_of(cell_outputs(nb, "import nbimages\n\nhandout")).strip() == \
        "handout.tar holds the same image: True"


def test_handout_digest_is_the_same_on_another_machine(executed, tmp_path):
    """Another folder, store, time zone and umask: the same cells give the same digest."""
    nb, _ = executed["handout.ipynb"]
    first = DIGEST.search(text_of(cell_outputs(nb, "img = %image build"))).group(0)
    old = os.umask(0o077)
    try:
        again = execute("handout.ipynb", tmp_path / "elsewhere", TZ="Asia/Tokyo")
    finally:
        os.umask(old)
    assert DIGEST.search(text_of(cell_outputs(again, "img = %image build"))).group(0) == first


def test_handout_tar_loads_in_docker_with_its_labels(executed, docker_client):
    _, work = executed["handout.ipynb"]
    try:
        with (work / "handout.tar").open("rb") as f:
            image = docker_client.images.load(f.read())[0]
        labels = image.attrs["Config"]["Labels"]
        assert labels["org.opencontainers.image.title"] == "Lake temperatures handout"
        assert image.attrs["Config"]["WorkingDir"] == "/handout"
    finally:
        docker_client.images.remove("handout:1", force=True)


# -- static exports --------------------------------------------------------------------------------

def export_html(nb: nbformat.NotebookNode, keep_widget_state: bool) -> str:
    from nbconvert import HTMLExporter
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    if not keep_widget_state:
        nb.metadata.pop("widgets", None)   # as JupyterLab saves by default
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def test_nbconvert_html_without_widget_state_shows_the_static_explorer(executed):
    nb, _ = executed["quickstart.ipynb"]
    page = export_html(nb, keep_widget_state=False)
    assert layer_rows(page) == 3
    assert "/data/measurements.csv" in page
    assert 'type="application/vnd.jupyter.widget-view+json"' not in page


def test_nbconvert_html_with_widget_state_embeds_the_widget_view(executed):
    nb, _ = executed["quickstart.ipynb"]
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    page = export_html(nb, keep_widget_state=True)
    assert 'type="application/vnd.jupyter.widget-view+json"' in page
    assert "nbimages-layer-row" in page    # the class names travel in the saved widget state

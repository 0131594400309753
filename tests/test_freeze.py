"""nbimages.freeze / %image freeze: the kernel's environment as a recipe with exact pins."""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_code_cell, new_notebook, new_output

import nbimages
from conftest import run
from nbimages.workflow.freeze import FREEZE_MIME, FrozenRecipe, freeze
from nbimages.workflow.notebook_recipe import NotebookError, build_notebook
from nbimages.errors import BuildError
from test_notebook_build import busybox_tar, cli  # noqa: F401 - fixture


def make_dist(site: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
              direct_url: dict | None = None, module: str | None = None) -> None:
    """An installed distribution as pip leaves it: NAME-VERSION.dist-info (+ its module)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                   + "".join(f"Requires-Dist: {r}\n" for r in requires))
    record = [f"{info.name}/METADATA,,"]
    if module:
        (site / module).mkdir()
        (site / module / "__init__.py").write_text(f"NAME = {name!r}\n")
        record.append(f"{module}/__init__.py,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_freeze_pins_exactly_the_installed_distributions_and_reports_the_rest(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "python-dateutil", "4.0.0", requires=("tzdata",))
    make_dist(site, "six", "1.17.0")
    make_dist(site, "tzdata", "2026.6")
    make_dist(site, "pip", "24.0")
    make_dist(site, "mylib", "0.1", direct_url={"url": "file:///home/me/mylib",
                                               "dir_info": {"editable": True}})
    make_dist(site, "localdir", "1.0", direct_url={"url": "file:///src/localdir",
                                                  "dir_info": {}})
    make_dist(site, "fromgit", "2.0", direct_url={
        "url": "https://example.org/fromgit.git",
        "vcs_info": {"vcs": "git", "commit_id": "abc123"}})
    make_dist(site, "wheelfile", "3.0", direct_url={"url": "file:///tmp/wheelfile-3.0.whl",
                                                   "archive_info": {}})
    (site / "broken-1.0.dist-info").mkdir()  # no METADATA: nothing to pin, no crash
    r = freeze("frozen:1", path=[site], notebook=False, base="python:3.11-slim",
               command=["python3", "-c", "import dateutil"])
    assert isinstance(r, FrozenRecipe) and r.tag == "frozen:1"
    assert r.pins == ["python-dateutil==4.0.0", "six==1.17.0", "tzdata==2026.6"]
    reasons = {s["name"]: s["reason"] for s in r.skipped}
    assert sorted(reasons) == ["fromgit", "localdir", "mylib", "pip", "wheelfile"]
    assert reasons["mylib"].startswith("editable install of /home/me/mylib")
    assert reasons["localdir"].startswith("installed from the local directory /src/localdir")
    assert "git" in reasons["fromgit"] and "abc123" in reasons["fromgit"]
    assert reasons["wheelfile"].startswith("installed from the local file /tmp/wheelfile-3.0.whl")
    assert [s.describe() for s in r.steps] == [
        "PIP python-dateutil==4.0.0 six==1.17.0 tzdata==2026.6", "WORKDIR /handout",
        'CMD ["python3", "-c", "import dateutil"]']
    text = repr(r)  # shown before anything is built: steps, what was left out, Dockerfile
    assert "mylib 0.1: editable install" in text
    assert "RUN pip install --no-cache-dir python-dateutil==4.0.0 six==1.17.0 tzdata==2026.6" \
        in text
    assert "not pinned" in r._repr_html_().lower() and "mylib" in r._repr_html_()


def test_imported_pins_the_distributions_of_imported_modules_and_what_they_require(
        tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "alpha", "1.0", module="alpha",
              requires=("beta[fast]>=2", 'gamma; extra == "docs"', 'delta; python_version < "3"'))
    make_dist(site, "beta", "2.0", module="beta", requires=('epsilon; extra == "fast"',))
    make_dist(site, "gamma", "3.0", module="gamma")
    make_dist(site, "delta", "4.0", module="delta")
    make_dist(site, "epsilon", "5.0")
    make_dist(site, "unused", "6.0", module="unused")
    monkeypatch.syspath_prepend(str(site))
    for name in ("alpha", "beta", "gamma", "delta", "unused"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import alpha  # noqa: F401 - the notebook imported it
    r = freeze(path=[site], imported=True, notebook=False, command=["true"])
    assert r.pins == ["alpha==1.0", "beta==2.0", "epsilon==5.0"]
    assert freeze(path=[site], notebook=False, command=["true"]).pins == [
        "alpha==1.0", "beta==2.0", "delta==4.0", "epsilon==5.0", "gamma==3.0", "unused==6.0"]


def test_the_notebook_data_and_command_become_steps(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "six", "1.17.0")
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.csv").write_text("x\n1\n")
    (folder / "table.csv").write_text("y\n2\n")
    nb = folder / "analysis.ipynb"
    doc = new_notebook(cells=[new_code_cell("print(1)")])
    doc.metadata["nbimages"] = {"digest": "sha256:" + "1" * 64}
    nbformat.write(doc, str(nb))
    monkeypatch.chdir(folder)
    r = freeze(path=[site], notebook=nb, data=["data", "table.csv"], base="python:3.11-slim")
    assert [s.describe().split(" # ")[0] for s in r.steps] == [
        "PIP six==1.17.0", "COPY data/ /handout/data/", "COPY table.csv /handout/table.csv",
        "COPY --chmod=644 <cell> /handout/analysis.ipynb", "WORKDIR /handout",
        "EXPOSE 8888/tcp", 'CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", '
        '"--no-browser", "--allow-root", "analysis.ipynb"]']
    # No Jupyter frontend among the distributions: said so, and the notebook is still in.
    assert any("no Jupyter frontend" in n for n in r.notes)
    assert "nbimages" not in json.loads(r.steps[3].content)["metadata"]  # no build record
    make_dist(site, "jupyterlab", "4.2.0", requires=("six",))
    r = freeze(path=[site], notebook=nb, imported=True, base="python:3.11-slim")
    assert r.pins == ["jupyterlab==4.2.0", "six==1.17.0"]  # the frontend, though not imported
    assert r.steps[-1].describe() == ('CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", '
                                      '"--no-browser", "--allow-root", "analysis.ipynb"]')
    assert "EXPOSE 8888" in r.to_dockerfile() and not r.notes
    (folder / "main.py").write_text("print('script')\n")
    r = freeze(path=[site], notebook=nb, command="main.py")
    assert r.base == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert r.steps[-1].describe() == 'CMD ["python3", "/handout/main.py"]'
    assert r.steps[-3].content == b"print('script')\n"


def test_bad_freeze_inputs_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inside").mkdir()
    nb = tmp_path / "inside" / "n.ipynb"
    nbformat.write(new_notebook(), str(nb))
    (tmp_path / "outside.csv").write_text("z")
    with pytest.raises(BuildError, match="outside.csv is outside .*move it into that folder"):
        freeze(path=[], notebook=nb, data=["outside.csv"])
    with pytest.raises(BuildError, match="missing.csv does not exist"):
        freeze(path=[], notebook=nb, data=["missing.csv"])
    with pytest.raises(BuildError, match="notebook .*nope.ipynb does not exist"):
        freeze(path=[], notebook="nope.ipynb")


def test_freeze_of_this_environment_pins_what_importlib_metadata_reports():
    r = freeze(notebook=False, command=["true"])
    assert f"pandas=={md.version('pandas')}" in r.pins
    assert f"requests=={md.version('requests')}" in r.pins
    reasons = {s["name"].lower(): s["reason"] for s in r.skipped}
    assert reasons["nbimages"].startswith("editable install of")  # pip install -e .
    assert "pip" in reasons and not any(p.lower().startswith("nbimages==") for p in r.pins)
    assert len(r.pins) + len(r.skipped) == len({d.metadata["Name"].lower()
                                                 for d in md.distributions()})


@pytest.mark.engine
@pytest.mark.registry
def test_the_frozen_image_imports_its_pins_in_docker_run(
        tmp_path, offline_pip, wheel_index, python_base_in_registry, docker_client):
    from bases import download_wheels
    download_wheels(["python-dateutil==4.0.0", "six==1.17.0", "tzdata==2026.6"])
    site = tmp_path / "site"
    make_dist(site, "python-dateutil", "4.0.0", requires=("tzdata",))
    make_dist(site, "six", "1.17.0")
    make_dist(site, "tzdata", "2026.6")
    code = ("import importlib.metadata as m, dateutil, six, tzdata; "
            "print(*(m.version(n) for n in ('python-dateutil', 'six', 'tzdata')))")
    r = freeze("nbtest/frozen:1", base=python_base_in_registry, path=[site], notebook=False,
               command=["python3", "-c", code], index_url=wheel_index.url)
    image = r.build()
    labels = json.loads(image.labels["org.nbimages.pip"])
    assert [f"{p['name']}=={p['version']}" for p in labels] == r.pins
    tar = tmp_path / "frozen.tar"
    nbimages.save(image, tar, format="docker", tag="nbtest/frozen:1")
    try:
        run(["docker", "load", "-i", str(tar)])
        out = run(["docker", "run", "--rm", "--network", "none", "nbtest/frozen:1"]).stdout
        assert out.split() == ["4.0.0", "1.17.0", "2026.6"]
    finally:
        run(["docker", "rmi", "-f", "nbtest/frozen:1"], check=False)


# ---- %image freeze, and a notebook build replaying it from its saved output



def _freeze_notebook(folder: Path, outputs: list, line: str = "") -> Path:
    cells = [new_code_cell("%load_ext nbimages"),
             new_code_cell(f"%image freeze{line}", outputs=outputs),
             new_code_cell("%image env STAGE=frozen"),
             new_code_cell("%image build nbtest/frozen-nb:1")]
    nb = folder / "frozen.ipynb"
    nbformat.write(new_notebook(cells=cells), str(nb))
    return nb


def test_image_freeze_becomes_the_notebooks_recipe_and_its_output_carries_the_record(
        fresh_ip, tmp_path, busybox_tar, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    nb = tmp_path / "frozen.ipynb"
    nbformat.write(new_notebook(), str(nb))
    (tmp_path / "run.py").write_text("print('hi')\n")
    base = f"docker-archive:{busybox_tar}"
    result = fresh_ip.run_cell(f"%image freeze t:1 --base {base} --notebook frozen.ipynb "
                         "--script run.py --imported", cell_id="f1")
    assert result.error_in_exec is None, result.error_in_exec
    frozen = result.result
    assert isinstance(frozen, FrozenRecipe) and frozen.tag == "t:1"
    assert fresh_ip.run_line_magic("image", "recipe") is frozen
    assert {s.key for s in frozen.steps} == {"f1"}
    data, _ = fresh_ip.display_formatter.format(frozen)
    record = data[FREEZE_MIME]
    assert record["line"] == (f"t:1 --base {base} --notebook frozen.ipynb --script run.py "
                              "--imported")
    assert record["pins"] == frozen.pins and "text/html" in data and "text/plain" in data


def test_a_notebook_build_replays_freeze_from_its_saved_output(tmp_path, busybox_tar):  # noqa: F811
    (tmp_path / "run.py").write_text("print('hi')\n")
    nb = _freeze_notebook(tmp_path, [])
    frozen = freeze(base=f"docker-archive:{busybox_tar}", path=[tmp_path / "none"],
                    notebook=nb, command=str(tmp_path / "run.py"))
    shell_data, _ = InteractiveShell.instance().display_formatter.format(frozen)
    doc = nbformat.read(str(nb), as_version=4)
    doc.cells[1].outputs = [new_output("execute_result", data=json.loads(json.dumps(shell_data)),
                                       execution_count=2)]
    nbformat.write(doc, str(nb))
    # What the kernel builds from the notebook as saved (the notebook file is in the image).
    expected = freeze(base=f"docker-archive:{busybox_tar}", path=[tmp_path / "none"],
                      notebook=nb, command=str(tmp_path / "run.py")).env(STAGE="frozen").build()
    out = cli("build", str(nb), "-q", home=tmp_path / "clean").stdout.strip()
    assert out == expected.digest


def test_a_freeze_cell_without_saved_output_or_edited_since_is_a_clear_error(tmp_path):
    nb = _freeze_notebook(tmp_path, [])
    with pytest.raises(NotebookError, match=r"cell 2 \('%image freeze'\).*no saved output"):
        build_notebook(nb)
    record = {"base": "scratch", "pins": [], "line": "--imported"}
    output = new_output("execute_result", data={FREEZE_MIME: record}, execution_count=2)
    nb = _freeze_notebook(tmp_path, [output], line=" --base scratch")
    with pytest.raises(NotebookError, match="edited after it ran"):
        build_notebook(nb)

"""The notebook's recipe follows the notebook: a step belongs to its cell; a re-purposed or
deleted cell drops its step; `%image recipe` names each step's cell and removes one; a pip
requirement that does not resolve fails in the cell that names it."""

from __future__ import annotations

import json

import pytest

from nbimages.errors import BuildError
from test_magics_build import fresh_session  # noqa: F401 - autouse: an empty recipe each test
from test_pip_install import make_wheel, python_image


def cell(ip, source: str, cell_id: str):
    """Run a cell as JupyterLab does (with its cell id); return the result object."""
    return ip.run_cell(source, store_history=True, cell_id=cell_id)


def described(ip) -> list[str]:
    return [s.describe().split(" #")[0] for s in ip.run_line_magic("image", "recipe").steps]


def test_a_cell_run_again_without_a_step_loses_its_step(ip, capsys):
    cell(ip, "%image from scratch", "from")
    cell(ip, "%%image file /a.txt\nA\n", "a")
    cell(ip, "%image env X=1", "x")
    assert described(ip) == ["COPY --chmod=644 <cell> /a.txt", "ENV X=1"]
    cell(ip, "print('this cell now does something else')", "x")
    assert described(ip) == ["COPY --chmod=644 <cell> /a.txt"]
    assert "no longer describes `ENV X=1`" in capsys.readouterr().out
    cell(ip, "1 + 1", "a")  # any other cell's run keeps what the recipe has
    assert described(ip) == []


def test_a_cell_that_still_describes_its_step_keeps_it(ip):
    cell(ip, "%image from scratch", "from")
    cell(ip, "%image env X=1", "x")
    cell(ip, "y = 2\n%image env X=2", "x")
    assert described(ip) == ["ENV X=2"]


def test_recipe_names_each_steps_cell_as_the_notebook_numbers_it(ip):
    first = cell(ip, "%image from scratch", "from").execution_count
    res = cell(ip, "%image env X=1", "x")
    recipe = ip.run_line_magic("image", "recipe")
    assert recipe.steps[0].origin == res.execution_count == first + 1
    assert recipe.steps[0].cell == f"In [{res.execution_count}]"
    assert f"In [{res.execution_count}]" in repr(recipe)
    assert f"In [{res.execution_count}]" in recipe._repr_html_()
    assert "--remove" in recipe._repr_html_()


def test_recipe_remove_drops_a_step_by_number_or_by_cell(ip, capsys):
    cell(ip, "%image from scratch", "from")
    cell(ip, "%image env A=1", "a")
    b = cell(ip, "%image env B=1", "b").execution_count
    cell(ip, "%image env C=1", "c")
    ip.run_line_magic("image", "recipe --remove 1")
    assert "removed ENV A=1" in capsys.readouterr().out
    ip.run_line_magic("image", f"recipe --remove 'In [{b}]'")
    assert described(ip) == ["ENV C=1"]
    with pytest.raises(BuildError, match="has no step '7'"):
        ip.run_line_magic("image", "recipe --remove 7")


def test_a_deleted_cell_is_dropped_from_the_next_build(ip, tmp_path, capsys):
    notebook = tmp_path / "demo.ipynb"
    ip.user_ns["__session__"] = str(notebook)  # what ipykernel sets from jupyter_server
    try:
        cell(ip, "%image from scratch", "from")
        cell(ip, "%%image file /a.txt\nA\n", "a")
        cell(ip, "%%image file /b.txt\nB\n", "b")
        # the user deletes cell "b" and saves; then runs the build cell
        notebook.write_text(json.dumps({"cells": [{"id": i, "cell_type": "code", "source": ""}
                                                  for i in ("from", "a", "build")],
                                        "nbformat": 4, "nbformat_minor": 5, "metadata": {}}))
        res = cell(ip, "%image build nbtest/deleted-cell:1", "build")
        assert res.error_in_exec is None
        img = res.result
        assert [r["instruction"].split(" #")[0] for r in img.build_report] == ["COPY --chmod=644 <cell> /a.txt"]
        out = capsys.readouterr().out
        assert "dropped step 2 (COPY --chmod=644 <cell> /b.txt" in out and "no longer in demo.ipynb" in out
    finally:
        ip.user_ns.pop("__session__", None)


def test_a_cell_run_after_the_last_save_is_not_judged_by_the_saved_file(ip, tmp_path):
    notebook = tmp_path / "demo.ipynb"
    notebook.write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5,
                                    "metadata": {}}))
    ip.user_ns["__session__"] = str(notebook)
    try:
        cell(ip, "%image from scratch", "from")
        cell(ip, "%image env NEW=1", "new")  # not saved yet
        img = cell(ip, "%image build nbtest/unsaved-cell:1", "build").result
        assert img.config["config"]["Env"][-1] == "NEW=1"
    finally:
        ip.user_ns.pop("__session__", None)


def test_a_pip_requirement_that_does_not_resolve_fails_in_its_own_cell(ip, tmp_path,
                                                                       offline_pip):
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "pandas", "2.2.3")
    base = tmp_path / "base"
    python_image(tmp_path).save(base, format="oci-dir", tag="py")
    cell(ip, f"%image from oci:{base}:py", "from")
    good = cell(ip, f"%image pip pandas --index-url file:///nonexistent --find-links {links}", "p")
    assert good.error_in_exec is None
    assert [d.split()[-1] for d in described(ip)] == ["pandas"]
    bad = cell(ip, f"%image pip pandsa --index-url file:///nonexistent --find-links {links}", "p")
    assert isinstance(bad.error_in_exec, BuildError)
    assert "pandsa" in str(bad.error_in_exec) and "could not resolve" in str(bad.error_in_exec)
    assert described(ip) == []  # the cell no longer describes its old step either

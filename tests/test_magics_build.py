"""Building from cells with the %image magics: steps keyed by cell, the build report, errors."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import nbimages
from nbimages.errors import BuildError


@pytest.fixture(autouse=True)
def fresh_session(monkeypatch):
    from nbimages.workflow import session
    session.reset()
    monkeypatch.setenv("NBIMAGES_PROGRESS", "lines")
    yield
    session.reset()


def cell(ip, source: str, cell_id: str):
    """Run a cell as JupyterLab does (with its cell id); fail the test on any error."""
    result = ip.run_cell(source, store_history=True, cell_id=cell_id)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def steps(ip):
    recipe = ip.run_line_magic("image", "recipe")
    return [s.describe() for s in recipe.steps]


def test_cells_become_steps_and_build_an_image(ip, capsys):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%%image file /app/hello.txt\nhello from a cell\n", "c2")
    cell(ip, '%image cmd ["/bin/cat", "/app/hello.txt"]', "c3")
    cell(ip, "%image env GREETING=hi 'OTHER=two words'", "c4")
    img = cell(ip, "%image build magic/hello:1", "c5")
    assert isinstance(img, nbimages.Image)
    assert img.container_config["Cmd"] == ["/bin/cat", "/app/hello.txt"]
    assert set(img.container_config["Env"]) >= {"GREETING=hi", "OTHER=two words"}
    assert len(img.layers) == 1
    out = capsys.readouterr()
    assert "COPY --chmod=644 <cell> /app/hello.txt" in out.out  # the build report is shown
    assert "build magic/hello:1: done, 3 steps" in out.err      # the progress line


def test_rerunning_a_cell_replaces_its_step_in_place(ip):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%%image file /a.txt\nfirst\n", "c2")
    cell(ip, "%image workdir /app", "c3")
    cell(ip, "%%image file /a.txt --mode 0600\nsecond\n", "c2")
    described = steps(ip)
    assert len(described) == 2
    assert described[0].startswith("COPY --chmod=600 <cell> /a.txt")
    assert described[1] == "WORKDIR /app"


def test_only_the_changed_layer_is_rebuilt(ip, capsys):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%%image file /one.txt\none\n", "c2")
    cell(ip, "%%image file /two.txt\ntwo\n", "c3")
    first = cell(ip, "%image build magic/cache:1", "c4")
    cell(ip, "%%image file /two.txt\nTWO\n", "c3")
    second = cell(ip, "%image build magic/cache:1", "c4")
    rows = second.build_report.to_frame()
    assert rows.cache.tolist()[0] != "rebuilt" and rows.cache.tolist()[1] == "rebuilt"
    assert first.layers[0].digest == second.layers[0].digest
    assert first.layers[1].digest != second.layers[1].digest


def test_pip_cell_body_is_a_requirements_list(ip):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%%image pip --index-url http://127.0.0.1:9/simple\n"
             "# pinned for the handout\npandas==2.2.3\npyarrow  # for parquet\n", "c2")
    assert steps(ip) == ["PIP --index-url http://127.0.0.1:9/simple pandas==2.2.3 pyarrow"]


def test_cmd_text_is_the_shell_form_and_json_the_exec_form(ip):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%image cmd echo $HOME && ls", "c2")
    cell(ip, '%image entrypoint ["/bin/tini", "--"]', "c3")
    assert steps(ip) == ['CMD ["/bin/sh", "-c", "echo $HOME && ls"]', 'ENTRYPOINT ["/bin/tini", "--"]']


def test_label_expose_user_remove_copy(ip, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a,b\n")
    cell(ip, f"%image from scratch --context {tmp_path}", "c1")
    cell(ip, "%%image label\norg.example.team=data\nversion=1\n", "c2")
    cell(ip, "%image expose 8888 9000/udp", "c3")
    cell(ip, "%image user 1000:1000", "c4")
    cell(ip, "%image copy data/ /data/", "c5")
    cell(ip, "%image remove /data/x.csv", "c6")
    assert steps(ip) == ["LABEL org.example.team=data version=1", "EXPOSE 8888/tcp 9000/udp",
                         "USER 1000:1000", "COPY data/ /data/", "REMOVE /data/x.csv"]
    img = cell(ip, "%image build magic/steps:1", "c7")
    assert img.labels["version"] == "1"
    assert len(img.layers) == 2


def test_dockerfile_cell_builds_and_becomes_the_recipe(ip, tmp_path):
    img = cell(ip, "%%image dockerfile magic/df:1\nFROM scratch\nENV A=1\nCMD [\"/x\"]\n", "c1")
    assert img.container_config["Cmd"] == ["/x"]
    cell(ip, "%image workdir /w", "c2")
    assert steps(ip) == ["ENV A=1", 'CMD ["/x"]', "WORKDIR /w"]


def test_recipe_dockerfile_prints_the_equivalent_dockerfile(ip, capsys):
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%image workdir /app", "c2")
    capsys.readouterr()
    assert ip.run_line_magic("image", "recipe --dockerfile") is None
    out = capsys.readouterr().out
    assert "FROM scratch" in out and "WORKDIR /app" in out


def test_a_step_before_from_is_one_red_paragraph(ip, capsys):
    result = ip.run_cell("%image workdir /app", cell_id="c1")
    assert isinstance(result.error_in_exec, BuildError)
    text = capsys.readouterr()
    assert "Traceback" not in text.out + text.err
    assert "BuildError: no recipe yet" in text.out + text.err


def test_run_line_in_an_embedded_dockerfile_is_one_red_paragraph(ip, capsys):
    result = ip.run_cell("%%image dockerfile x:1\nFROM scratch\nRUN echo hi\n", cell_id="c1")
    assert isinstance(result.error_in_exec, BuildError)
    text = (lambda c: c.out + c.err)(capsys.readouterr())
    assert "RUN" in text and "Traceback" not in text


@pytest.mark.parametrize("line,cell_body,expected", [
    ("file /app/x.py", None, "needs a cell body"),
    ("env NOVALUE", None, "'NOVALUE' is not KEY=VALUE"),
    ("pip", None, "required: REQUIREMENT"),
    ("copy onlyone", None, "required: DEST"),
    ("file /x --mode", "text", "expected one argument"),
    ("workdir /a", "body", "takes no cell body"),
    ("cmd [\"unclosed\"", None, "not a JSON array"),
])
def test_build_step_mistakes_are_one_usage_line(ip, line, cell_body, expected):
    cell(ip, "%image from scratch", "c0")
    with pytest.raises(UsageError) as e:
        if cell_body is None:
            ip.run_line_magic("image", line)
        else:
            ip.run_cell_magic("image", line, cell_body)
    assert "\n" not in str(e.value)
    assert expected in str(e.value)


def test_built_image_runs_and_prints_the_cell_text(ip, busybox_image, capfd):
    cell(ip, f"%image from docker-daemon:{busybox_image}", "c1")
    cell(ip, "%%image file /app/msg.txt\nprinted from a notebook cell\n", "c2")
    cell(ip, "%image cmd cat /app/msg.txt", "c3")
    cell(ip, "%image build magic/runme:1", "c4")
    capfd.readouterr()
    code = cell(ip, "%image run magic/runme:1", "c5")
    assert code == 0
    assert "printed from a notebook cell" in capfd.readouterr().out


def test_cells_replay_without_a_shell(tmp_path):
    """What `nbimages build NOTEBOOK.ipynb` needs: the %image lines of a notebook, no kernel."""
    from nbimages.notebook.magics import ImageMagics
    m = ImageMagics(None)
    m.cell_id = "c1"
    m.dispatch("from scratch")
    m.cell_id = "c2"
    m.dispatch("file /x.txt", "hello\n")
    img = m.dispatch("build replay:1")
    assert isinstance(img, nbimages.Image) and len(img.layers) == 1
    with pytest.raises(UsageError):
        m.dispatch("fil /x.txt", "hello\n")

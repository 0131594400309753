"""Dockerfiles read into recipes and built embedded, and recipes written as Dockerfiles (issue 3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import nbimages
from nbimages.builder.dockerfile import build_dockerfile, parse_dockerfile
from nbimages.errors import BuildError
from nbimages.store import default_store


def snapshot(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def ctx(tmp_path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('main')\n")
    (tmp_path / "notes.txt").write_text("n\n")
    return tmp_path


FULL = r"""# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE}
ARG VERSION=1.2
ARG EMPTY
# a comment
ENV APP_HOME=/opt/app \
    GREETING="hello world" \
    # comments inside continuations are dropped
    LITERAL='$NOT_EXPANDED'
ENV LEGACY value with spaces
LABEL version="${VERSION}" maintainer=me "quoted key"=v
WORKDIR $APP_HOME
COPY --chown=1000:1000 app/ ./
ADD notes.txt /opt/notes-${VERSION:-0}.txt
USER 1000:1000
EXPOSE 8888 9000/udp
ENTRYPOINT ["python"]
CMD main.py --flag
"""


def test_a_full_dockerfile_becomes_the_equivalent_recipe(ctx):
    r = parse_dockerfile(FULL, context=ctx)
    assert r.base == "scratch"
    kinds = [s.kind for s in r.steps]
    assert kinds == ["arg", "arg", "env", "env", "label", "workdir", "copy", "copy", "user",
                     "expose", "entrypoint", "cmd"]
    env = r.steps[2].args["vars"]
    assert env == {"APP_HOME": "/opt/app", "GREETING": "hello world", "LITERAL": "$NOT_EXPANDED"}
    assert r.steps[3].args["vars"] == {"LEGACY": "value with spaces"}
    assert r.steps[4].args["labels"] == {"version": "1.2", "maintainer": "me", "quoted key": "v"}
    assert r.steps[5].args["path"] == "/opt/app"
    assert r.steps[6].args == {"src": ["app/"], "dest": "./", "uid": 1000, "gid": 1000}
    assert r.steps[7].args["dest"] == "/opt/notes-1.2.txt"
    assert r.steps[9].args["ports"] == ["8888/tcp", "9000/udp"]
    assert r.steps[11].args["command"] == ["/bin/sh", "-c", "main.py --flag"]
    assert r.steps[6].origin == "line 14"


def test_building_the_dockerfile_embedded(ctx):
    img = build_dockerfile(FULL, "df:1", ctx)
    c = img.config["config"]
    assert c["WorkingDir"] == "/opt/app" and c["User"] == "1000:1000"
    assert c["Entrypoint"] == ["python"]
    from test_build import layer_members
    app = layer_members(img, 0)
    assert app["opt/app/main.py"].uid == 1000
    assert "opt/notes-1.2.txt" in layer_members(img, 1)


def test_build_args_override_arg_defaults(ctx):
    r = parse_dockerfile("FROM scratch\nARG V=1\nENV X=$V\n", build_args={"V": "2"})
    assert r.steps[1].args["vars"] == {"X": "2"}


def test_dockerfile_from_a_path(ctx):
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY notes.txt /\n")
    img = nbimages.build(str(ctx / "Dockerfile"), "p:1", context=ctx)
    assert len(img.layers) == 1


def test_escape_directive_and_exec_form_json(ctx):
    r = parse_dockerfile("# escape=`\nFROM scratch\nENV A=1 `\n  B=2\nCMD [\"a\", \"b c\"]\n")
    assert r.steps[0].args["vars"] == {"A": "1", "B": "2"}
    assert r.steps[1].args["command"] == ["a", "b c"]


def test_run_line_is_refused_naming_the_engine_and_the_line(ctx):
    text = "FROM scratch\nCOPY notes.txt /\nRUN apt-get update\n"
    home = default_store().home
    before = snapshot(home)
    with pytest.raises(BuildError, match=r"line 3: RUN .*engine.*--engine docker"):
        build_dockerfile(text, "r:1", ctx)
    assert snapshot(home) == before
    # the recipe itself keeps the RUN as an engine step
    assert parse_dockerfile(text).steps[-1].kind == "run"


@pytest.mark.parametrize("text, match", [
    ("FROM scratch\nCOPY notes.txt /\nFROBNICATE x\n", r"line 3: 'FROBNICATE' is not a Dockerfile"),
    ("FROM scratch\n\nCOPY onlyone\n", r"line 3: COPY needs a source and a destination"),
    ("ENV A=1\nFROM scratch\n", r"line 1: ENV before FROM"),
    ("FROM scratch\nADD https://example.com/x.tgz /x\n", r"line 2: ADD .* network"),
    ("FROM scratch\nCOPY --from=builder /a /b\n", r"line 2: COPY --from .*multi-stage"),
    ("FROM scratch\nFROM scratch\n", r"line 2: .*multi-stage"),
    ("FROM scratch\nCMD [\"unclosed\"\n", r"line 2: CMD .*JSON"),
    ("FROM scratch\nENV A=\"unterminated\n", r"line 2: unterminated double quote"),
    ("FROM scratch\nHEALTHCHECK CMD true\n", r"line 2: HEALTHCHECK is not supported"),
    ("FROM scratch\nEXPOSE eighty\n", r"line 2: .*not a port"),
    ("FROM scratch\nENV ALONE\n", r"line 2: ENV ALONE has no value"),
    ("FROM scratch\nCOPY notes.txt /\nCOPY nope.txt /\n", r"line 3: COPY source 'nope.txt' does"),
    ("FROM scratch\nCOPY ../outside /x\n", r"line 2: COPY source '../outside' is outside"),
    ("# just a comment\n", r"no FROM"),
])
def test_invalid_lines_are_errors_with_their_line_number_and_store_unchanged(ctx, text, match):
    home = default_store().home
    before = snapshot(home)
    with pytest.raises(BuildError, match=match):
        build_dockerfile(text, "bad:1", ctx)
    assert snapshot(home) == before


def test_a_failing_step_of_a_dockerfile_cell_names_its_line(ctx, monkeypatch):
    from nbimages.workflow.session import Session
    monkeypatch.chdir(ctx)
    with pytest.raises(BuildError, match=r"^Dockerfile line 4: COPY source 'nope.txt' does"):
        Session().dockerfile("FROM scratch\nARG A=1\nCOPY notes.txt /\nCOPY nope.txt /\n",
                             "m:1", cell_id="c1", execution_count=7)


def test_missing_copy_source_in_a_dockerfile(ctx):
    with pytest.raises(BuildError, match="does not exist"):
        build_dockerfile("FROM scratch\nCOPY nope.txt /\n", "m:1", ctx)


def test_missing_dockerfile_path_is_a_clear_error(tmp_path):
    with pytest.raises(BuildError, match="no Dockerfile"):
        build_dockerfile(str(tmp_path / "Dockerfile"), "x:1")


# ---- writing

def test_recipe_to_dockerfile_round_trips_through_the_parser(ctx):
    r = nbimages.Recipe("scratch", context=ctx)
    r.copy("app/", "/app/", chown="1000")
    r.env(A="x y", B="$literal")
    r.label(**{"org.opencontainers.image.title": "demo"})
    r.workdir("/app")
    r.user("1000")
    r.expose(8888)
    r.entrypoint(["python"])
    r.cmd(["main.py"])
    text = r.to_dockerfile()
    back = parse_dockerfile(text, context=ctx)
    assert [(s.kind, s.args) for s in back.steps] == [(s.kind, s.args) for s in r.steps]
    assert r.build("a:1").id == back.build("b:1").id


def test_file_steps_become_heredocs_or_context_files(ctx, tmp_path):
    r = nbimages.Recipe("scratch")
    r.file("/app/clean.py", "print('x')\n", mode=0o755)
    r.pip("pandas==2.2.3")
    r.remove("/tmp/x")
    text = r.to_dockerfile()
    assert text.startswith("# syntax=docker/dockerfile:1.4\nFROM scratch\n")
    assert "COPY --chmod=755 <<'NBIMAGES_EOF' /app/clean.py\nprint('x')\nNBIMAGES_EOF" in text
    assert "RUN pip install --no-cache-dir pandas==2.2.3" in text
    assert "RUN rm -rf /tmp/x" in text
    out = tmp_path / "dctx"
    df = r.write_context(out)
    assert "COPY .nbimages-files/001-clean.py /app/clean.py" in df.read_text()
    f = out / ".nbimages-files" / "001-clean.py"
    assert f.read_text() == "print('x')\n" and (f.stat().st_mode & 0o777) == 0o755


def test_add_of_a_local_archive_is_refused_instead_of_copied_unpacked(ctx):
    import tarfile
    with tarfile.open(ctx / "bundle.tar.gz", "w:gz") as tf:
        tf.add(ctx / "notes.txt", "notes.txt")
    with pytest.raises(BuildError, match="unpack"):
        build_dockerfile("FROM scratch\nADD bundle.tar.gz /opt/\n", "a:1", ctx)
    img = build_dockerfile("FROM scratch\nADD notes.txt /opt/\n", "a:2", ctx)
    assert len(img.layers) == 1

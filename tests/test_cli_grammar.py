"""One grammar: the %image subcommands from a shell (`nbimages layers SRC` is `%image layers
SRC`: the same table, parser and function), the CLI's own spellings kept alongside."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nbimages
from nbimages.cli import SHELL_EPILOG, SHELL_GROUPS
from nbimages.commands.verbs import TABLE

NBIMAGES = str(Path(sys.executable).parent / "nbimages")


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {"NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0", "PATH": "/usr/bin:/bin"}
    return subprocess.run([NBIMAGES, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def archive(tmp_path) -> str:
    r = nbimages.Recipe("scratch", context=tmp_path)
    r.file("/a.txt", "a\n").file("/b/c.txt", "c" * 100).remove("/a.txt")
    path = tmp_path / "img.tar"
    nbimages.save(r.build("nbtest/grammar:1"), path)
    return f"docker-archive:{path}"


def test_magic_spelling_and_cli_spelling_give_the_same_json(archive, tmp_path):
    magic = cli("files", archive, "--layer", "1", "--json", home=tmp_path / "h")
    flag = cli("inspect", archive, "--files", "--layer", "1", "--json", home=tmp_path / "h")
    assert magic.returncode == flag.returncode == 0, magic.stderr + flag.stderr
    rows = json.loads(magic.stdout)
    assert rows == json.loads(flag.stdout)
    assert {r["path"] for r in rows} == {"/b", "/b/c.txt"}


def test_layers_subcommand_prints_the_layer_table(archive, tmp_path):
    r = cli("layers", archive, home=tmp_path / "h")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:3] == ["index", "digest", "diff_id"] and len(rows) == 3


def test_copy_image_is_the_cli_copy(archive, tmp_path):
    r = cli("copy-image", archive, f"oci:{tmp_path / 'layout'}:g1", home=tmp_path / "h")
    assert r.returncode == 0, r.stderr
    assert nbimages.open_image(f"oci:{tmp_path / 'layout'}:g1").id == \
        nbimages.open_image(archive).id


def test_a_notebook_only_subcommand_is_a_usage_error_that_says_where_it_works(tmp_path):
    r = cli("from", "scratch", home=tmp_path / "h")
    assert r.returncode == 2
    assert "works in a notebook only" in r.stderr and "nbimages build" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_typo_of_a_magic_spelling_gets_a_suggestion(tmp_path):
    r = cli("lyers", "x", home=tmp_path / "h")
    assert r.returncode == 2 and "Did you mean 'layers'?" in r.stderr


def test_a_bad_option_of_a_table_subcommand_is_usage_exit_2(archive, tmp_path):
    r = cli("files", archive, "--layr", "1", home=tmp_path / "h")
    assert r.returncode == 2
    assert r.stderr.startswith("nbimages files: unrecognized arguments: --layr 1")


def test_every_subcommand_the_help_names_exists_and_works_from_a_shell(tmp_path):
    named = {w for line in SHELL_EPILOG.splitlines()[2:-1] for part in line.split()
             if not part.startswith(("[", "-", "SOURCE", "IMAGE", "A", "B", "SRC", "DEST", "..."))
             for w in part.split("|") if w and w != "nbimages" and w.islower()}
    shell = {n for n, c in TABLE.commands.items() if c.group in SHELL_GROUPS}
    assert named and named <= shell, named - shell
    for name in sorted(named):
        r = cli(name, "--help", home=tmp_path / "h")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: nbimages {name.replace('copy-image', 'copy')}"), (name, r.stderr)


def test_the_cli_verbs_taken_from_the_table_exist_there():
    from nbimages.cli import COMMANDS, FROM_TABLE
    assert {TABLE.commands[name].group for name in FROM_TABLE.values()} <= set(SHELL_GROUPS)
    assert set(FROM_TABLE) <= set(COMMANDS)  # listed in `nbimages --help`

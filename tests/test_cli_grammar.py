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
    groups = {name: TABLE.commands[name].group for name in FROM_TABLE.values()}
    # notebook tools that take the notebook as a file work from a shell too
    assert {n for n, g in groups.items() if g not in SHELL_GROUPS} == {"verify", "handout"}
    assert set(FROM_TABLE) <= set(COMMANDS)  # listed in `nbimages --help`
    # ... with the table's own summary, written once (commands/summaries.py)
    assert all(COMMANDS[cli_name][0] == TABLE.commands[name].summary
               for cli_name, name in FROM_TABLE.items())


def _options(parser) -> dict[str, tuple]:
    return {s: (a.dest, a.help, a.choices, a.default, a.metavar)
            for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")}


def test_verify_and_handout_are_one_grammar_in_the_shell_and_the_notebook(tmp_path):
    """`nbimages verify|handout` are `%image verify|handout`: the same parser, the same function."""
    from nbimages.cli import COMMANDS, FROM_TABLE
    for name, option in (("verify", "--digest"), ("handout", "--output")):
        assert FROM_TABLE[name] == name and COMMANDS[name][1:] == (None, None)  # no CLI parser
        r = cli(name, "--help", home=tmp_path / "h")
        help_text = " ".join(_options(TABLE.commands[name].parser())[option][1].split())
        assert r.returncode == 0 and help_text in " ".join(r.stdout.split()), (name, r.stdout)
    r = cli("verify", home=tmp_path / "h")  # no notebook in a shell: say so, exit 2
    assert r.returncode == 2 and "nbimages verify: name the notebook file" in r.stderr


def test_the_cli_verbs_own_options_are_the_tables():
    """`nbimages inspect --files --layer N` and `nbimages build --build-arg ...` use the options
    of %image files/sizes/diff and %image dockerfile/save, defined once (commands/parsing.py)."""
    from nbimages.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    inspect, build = _options(sub["inspect"]), _options(sub["build"])
    for cli_opt, table_cmd in (("--layer", "files"), ("--final", "files"), ("--depth", "sizes"),
                               ("--content", "diff"), ("--platform", "layers")):
        table = _options(TABLE.commands[table_cmd].parser())[cli_opt]
        assert inspect[cli_opt][0] == table[0] and inspect[cli_opt][1].endswith(table[1]), cli_opt
    for cli_opt, table_cmd in (("--build-arg", "dockerfile"), ("--engine", "dockerfile"),
                               ("--compression", "build"), ("--format", "save")):
        table = _options(TABLE.commands[table_cmd].parser())[cli_opt]
        assert build[cli_opt][0] == table[0] and build[cli_opt][1].endswith(table[1]), cli_opt
        assert build[cli_opt][2:4] == table[2:4], cli_opt

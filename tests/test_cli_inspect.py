"""`nbimages inspect` as a real subprocess on real images: table, JSON, views, errors."""

from __future__ import annotations

import json
import tarfile

import pytest

import nbimages
from test_cli import cli, one_paragraph
from test_magics_images import waste_archive, waste_image  # noqa: F401 - shared fixtures


def test_inspect_prints_the_summary_and_the_layer_table(waste_archive):
    r = cli("inspect", waste_archive["image"])
    assert r.returncode == 0, r.stderr
    insp = nbimages.inspect(waste_archive["image"])
    assert r.stdout.strip() == repr(insp).strip()
    assert insp.digest in r.stdout
    assert "rm /data/big.bin" in r.stdout  # the created_by of the last layer


def test_console_script_and_module_agree(waste_archive):
    a = cli("inspect", waste_archive["image"], "--waste")
    b = cli("inspect", waste_archive["image"], "--waste", module=True)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout


def test_json_has_the_layers_and_waste_as_records_and_the_numbers(waste_archive):
    r = cli("inspect", waste_archive["image"], "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    insp = nbimages.inspect(waste_archive["image"])
    assert doc["digest"] == insp.digest
    assert doc["size"] == insp.size
    assert doc["efficiency"] == pytest.approx(insp.efficiency)
    assert doc["wasted_bytes"] == insp.wasted_bytes
    assert [list(rec) for rec in doc["layers"]] == [list(insp.layers.columns)] * len(insp.layers)
    assert [rec["diff_id"] for rec in doc["layers"]] == insp.layers.diff_id.tolist()
    assert {rec["path"] for rec in doc["waste"]} == set(insp.waste.path)


def test_json_of_a_view_is_its_records(waste_archive):
    r = cli("inspect", waste_archive["image"], "--files", "--layer", "4", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {row["layer"] for row in rows} == {4}
    assert {"path": "/data/big.bin", "change": "deleted"}.items() <= \
        next(row for row in rows if row["path"] == "/data/big.bin").items()


@pytest.mark.parametrize("args,expected", [
    (["--files", "--layer", "3"], "/opt/x/a"),
    (["--sizes", "--depth", "1"], "/bin"),
    (["--waste"], "/etc/app.conf"),
    (["--history"], "rm /data/big.bin"),
])
def test_views_print_tables(waste_archive, args, expected):
    r = cli("inspect", waste_archive["image"], *args)
    assert r.returncode == 0, r.stderr
    assert expected in r.stdout


def test_diff_against_the_base(waste_archive):
    r = cli("inspect", waste_archive["base"], "--diff", waste_archive["image"], "--json")
    assert r.returncode == 0, r.stderr
    added = {row["path"] for row in json.loads(r.stdout) if row["change"] == "added"}
    assert {"/etc/app.conf", "/opt/x/a"} <= added


def test_views_are_mutually_exclusive_exit_2(waste_archive):
    r = cli("inspect", waste_archive["image"], "--files", "--waste")
    assert r.returncode == 2
    assert "not allowed with argument" in one_paragraph(r.stderr)


def test_missing_tar_is_exit_1_without_traceback(tmp_path):
    r = cli("inspect", f"docker-archive:{tmp_path}/nope.tar")
    assert r.returncode == 1
    assert one_paragraph(r.stderr).startswith("nbimages: ImageNotFound: ")


def test_non_image_tar_is_exit_1(tmp_path):
    bad = tmp_path / "notimage.tar"
    (tmp_path / "a.txt").write_text("a")
    with tarfile.open(bad, "w") as t:
        t.add(tmp_path / "a.txt", "a.txt")
    r = cli("inspect", f"docker-archive:{bad}")
    assert r.returncode == 1
    assert one_paragraph(r.stderr).startswith("nbimages: InvalidImage: ")


def test_truncated_tar_is_exit_1(waste_archive, tmp_path):
    data = open(waste_archive["tar"], "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    r = cli("inspect", f"docker-archive:{cut}")
    assert r.returncode == 1, r.stdout
    assert one_paragraph(r.stderr).startswith("nbimages: ")


def test_unknown_transport_is_exit_1():
    r = cli("inspect", "ftp-archive:/x.tar")
    assert r.returncode == 1
    assert one_paragraph(r.stderr).startswith("nbimages: UnknownTransport: ")


def test_text_tables_left_align_paths_and_show_shares_as_decimals(waste_archive):
    r = cli("inspect", waste_archive["image"], "--sizes")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("path ")  # header over the left edge of the paths
    assert all(line.startswith("/") for line in lines[1:])
    assert "e-0" not in r.stdout and "e+0" not in r.stdout  # no scientific notation
    full = cli("inspect", waste_archive["image"], "--full")
    assert "…" not in full.stdout  # --full shortens nothing

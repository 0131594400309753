"""`nbimages verify` / `%image verify`: rebuild in a clean store, compare, name what differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nbimages
from nbimages.workflow.notebook_recipe import build_notebook
from nbimages.workflow.verify import verify
from nbimages.errors import BuildError
from nbimages.store import Store
from test_notebook_build import busybox_tar, cli, handout_notebook  # noqa: F401 - fixture


def change_cell(nb: Path, index: int, source: str) -> None:
    """Edit one cell (0-based among all cells) as a user would, keeping the metadata."""
    doc = json.loads(nb.read_text())
    doc["cells"][index]["source"] = source
    nb.write_text(json.dumps(doc, indent=1))


@pytest.fixture
def built(tmp_path, busybox_tar):  # noqa: F811 - the fixture imported above
    """A handout notebook built by the CLI (recorded in its metadata) in store `home`."""
    nb = handout_notebook(tmp_path, busybox_tar)
    home = tmp_path / "home"
    digest = cli("build", str(nb), "-q", home=home).stdout.strip()
    return nb, home, digest


def test_verify_passes_with_the_manifest_digest_or_the_image_id(built):
    nb, home, digest = built
    blobs = home / "oci" / "blobs" / "sha256"
    before = sorted(p.name for p in blobs.iterdir())
    out = cli("verify", str(nb), home=home).stdout  # the digest recorded in the notebook
    assert f"has manifest digest {digest}" in out
    image_id = Store(home).get(digest).id
    out = cli("verify", str(nb), "--digest", image_id, home=home).stdout
    assert f"has image ID {image_id}" in out and digest in out
    assert sorted(p.name for p in blobs.iterdir()) == before  # rebuilt in a clean store


def test_verify_names_the_layer_cell_and_files_after_one_cell_changes(built):
    nb, home, digest = built
    change_cell(nb, 5, "%%image file /app/data.txt\nnumbers 1 2 3 4")
    proc = cli("verify", str(nb), "--digest", digest, home=home, check=False)
    assert proc.returncode == 1
    out = proc.stdout
    assert out.startswith(f"MISMATCH: analysis.ipynb rebuilt in a clean store is not {digest}")
    assert ("layer 4 of 4: step 2 `COPY --chmod=644 <cell> /app/data.txt`, from cell 6 "
            "('%%image file /app/data.txt') differs") in out
    assert "modified  /app/data.txt  (size 14 -> 16, content)" in out
    assert "layer 3 of 4" not in out  # the other cell's layer is the same
    assert "compared with the image" in out and "in the local store" in out


def test_without_the_expected_image_the_notebook_record_names_the_layer(built, tmp_path):
    nb, home, digest = built
    handout = tmp_path / "expected.tar"
    nbimages.save(Store(home).get(digest), handout, format="oci")
    change_cell(nb, 3, "%%image file /app/run.sh\necho changed\ncat /app/data.txt")
    empty = tmp_path / "elsewhere"
    out = cli("verify", str(nb), "--digest", digest, home=empty, check=False).stdout
    assert "layer 3 of 4: step 1 `COPY --chmod=644 <cell> /app/run.sh`, from cell 4" in out
    assert "the expected layer is not in the local store" in out
    assert "recorded in the notebook's metadata" in out
    out = cli("verify", str(nb), "--digest", digest, "--expected", f"oci-archive:{handout}",
              home=empty, check=False).stdout
    assert "modified  /app/run.sh  (size" in out and "compared with the expected image" in out


def test_a_config_only_change_is_named(built, tmp_path):
    nb, home, digest = built
    change_cell(nb, 6, '%image cmd ["sh", "/app/run.sh"]\n%image env GREETING=bye')
    out = cli("verify", str(nb), "--digest", digest, home=home, check=False).stdout
    assert "the config differs in: config.Env" in out and "layer" not in out.split("config")[0]
    out = cli("verify", str(nb), "--digest", digest, home=tmp_path / "empty", check=False).stdout
    assert "step 4: `ENV GREETING=bye` (was `ENV GREETING=hi`)" in out


def test_bad_digests_are_clear_errors(built, tmp_path):
    nb, home, _ = built
    proc = cli("verify", str(nb), "--digest", "sha256:abc", home=home, check=False)
    assert proc.returncode == 1 and "is not a digest" in proc.stderr
    bare = tmp_path / "bare.ipynb"
    doc = json.loads(nb.read_text())
    doc["metadata"].pop("nbimages")
    bare.write_text(json.dumps(doc))
    with pytest.raises(BuildError, match="which digest"):
        verify(bare)


def test_verify_api_accepts_a_bare_hex_digest_and_reports_the_match(built):
    nb, _, digest = built
    v = verify(nb, digest.split(":", 1)[1])
    assert v.ok and v.matched == "manifest digest" and bool(v)
    assert build_notebook(nb, record=False).digest == v.rebuilt_digest


def test_a_different_source_date_epoch_is_named_with_the_value_to_set(tmp_path, busybox_tar,
                                                                      monkeypatch):  # noqa: F811
    nb = handout_notebook(tmp_path, busybox_tar)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digest = build_notebook(nb, record=False).digest
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    v = verify(nb, digest)
    assert not v.ok
    text = repr(v)
    assert "built with SOURCE_DATE_EPOCH=1700000000" in text and "this rebuild with 0" in text
    assert "modified  /app/run.sh  (mtime 1700000000 -> 0)" in text
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert verify(nb, digest).ok


# ---- %image verify in a kernel



def test_image_verify_rebuilds_the_notebooks_recipe_in_a_clean_store(fresh_ip,
                                                                      monkeypatch):
    monkeypatch.setenv("NBIMAGES_PROGRESS", "0")
    for i, source in enumerate(["%image from scratch", "%%image file /hello.txt\nhello",
                                "%image build nbtest/verify-magic:1"]):
        result = fresh_ip.run_cell(source, cell_id=f"c{i}")
        assert result.error_in_exec is None, result.error_in_exec
    image = result.result
    v = fresh_ip.run_line_magic("image", "verify")
    assert v.ok and v.digest == image.digest
    other = "sha256:" + "0" * 64
    v = fresh_ip.run_line_magic("image", f"verify --digest {other}")
    assert not v.ok
    assert "no copy of the expected image" in repr(v)


def test_a_failing_clean_rebuild_says_the_clean_store_starts_empty(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nbimages.Recipe("scratch").file("/x", "x").build("nbtest/only-here:1")
    nb = tmp_path / "n.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("%image from store:nbtest/only-here:1"),
                                       new_code_cell("%%image file /y\ny")]), str(nb))
    digest = build_notebook(nb).digest
    with pytest.raises(BuildError, match=r"cell 1 .*the clean store starts empty"):
        verify(nb, digest)

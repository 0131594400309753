"""A build's record lives in a lock file beside the notebook as well as in its metadata;
verify reads either, says which, and says why there is none."""

from __future__ import annotations

import json

import pytest

from nbimages.errors import BuildError
from nbimages.workflow.notebook_recipe import find_record, lock_path
from nbimages.workflow.verify import verify
from test_notebook_build import busybox_tar, cli  # noqa: F401 - fixture
from test_verify import built  # noqa: F401 - fixture


def drop_metadata(nb) -> None:
    """What an editor with the notebook open does when it saves: its own metadata wins."""
    doc = json.loads(nb.read_text())
    doc["metadata"].pop("nbimages")
    nb.write_text(json.dumps(doc, indent=1))


def test_build_writes_the_lock_file_beside_the_notebook(built):
    nb, _, digest = built
    lock = lock_path(nb)
    assert lock == nb.with_name("analysis.nbimages.lock")
    rec = json.loads(lock.read_text())
    assert rec["digest"] == digest == json.loads(nb.read_text())["metadata"]["nbimages"]["digest"]
    assert "commit it with the notebook" in rec["about"]
    assert [s["step"] for s in rec["steps"]] and all("cell" in s for s in rec["steps"])


def test_verify_reads_the_lock_file_when_the_metadata_was_saved_over(built):
    nb, home, digest = built
    drop_metadata(nb)
    out = cli("verify", str(nb), home=home).stdout
    assert f"has manifest digest {digest}" in out
    assert "(the digest recorded in analysis.nbimages.lock)" in out


def test_verify_falls_back_to_the_metadata_and_says_so(built):
    nb, home, digest = built
    lock_path(nb).unlink()
    assert f"recorded in metadata.nbimages of {nb.name}" in cli("verify", str(nb), home=home).stdout


def test_without_either_record_verify_says_what_it_looked_at(built):
    nb, _, _ = built
    lock_path(nb).unlink()
    drop_metadata(nb)
    with pytest.raises(BuildError) as e:
        verify(nb)
    msg = str(e.value)
    assert "no analysis.nbimages.lock beside it" in msg and "metadata has no nbimages" in msg
    assert "nbimages build analysis.ipynb" in msg


def test_a_damaged_lock_file_is_named_and_the_metadata_used(built):
    nb, _, digest = built
    lock_path(nb).write_text("{not json")
    found = find_record(nb)
    assert found.record["digest"] == digest and found.source.startswith("metadata.nbimages")
    assert any("analysis.nbimages.lock is not a build record" in n for n in found.notes)

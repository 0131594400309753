"""`nbimages handout NOTEBOOK -o DIR`: OCI tar, docker tar, Dockerfile and README that work."""

from __future__ import annotations

import json

import pytest

from conftest import run, tool
from nbimages.workflow.handout import FILES, handout
from nbimages.workflow.notebook_recipe import NotebookError, notebook_record
from test_notebook_build import busybox_tar, cli, handout_notebook, write_notebook  # noqa: F401

TAG = "nbtest/handout:1"


@pytest.mark.engine
def test_handout_tar_loads_into_the_engine_and_runs_the_notebooks_script(
        tmp_path, busybox_tar, docker_client):  # noqa: F811 - fixture imported above
    nb = handout_notebook(tmp_path, busybox_tar, message="printed by the handout")
    out = tmp_path / "handout"
    proc = cli("handout", str(nb), "-o", str(out), "-t", TAG, "-q", home=tmp_path / "home")
    digest = proc.stdout.strip()
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    try:
        loaded = run(["docker", "load", "-i", str(out / FILES["docker"])]).stdout
        assert f"Loaded image: {TAG}" in loaded
        text = run(["docker", "run", "--rm", "--network", "none", TAG]).stdout
        assert text == "printed by the handout\nnumbers 1 2 3\n"
    finally:
        run(["docker", "rmi", "-f", TAG], check=False)
    oci = json.loads(run([tool("skopeo"), "inspect", "--raw",
                          f"oci-archive:{out / FILES['oci']}"]).stdout)
    assert oci["annotations"]["org.nbimages.layer.compressor"]
    readme = (out / FILES["readme"]).read_text()
    assert digest in readme and f"docker load -i {FILES['docker']}" in readme
    assert f"docker run --rm {TAG}" in readme
    assert f"nbimages verify analysis.ipynb --digest {digest}" in readme
    assert notebook_record(nb)["digest"] == digest
    assert cli("verify", str(nb), "--digest", digest, home=tmp_path / "fresh").returncode == 0


def test_handout_dockerfile_and_readme_describe_the_steps(tmp_path, busybox_tar):  # noqa: F811
    nb = handout_notebook(tmp_path, busybox_tar)
    h = handout(nb, tmp_path / "out")
    assert h.tag == "nbtest/notebook:1"  # the notebook's own %image build tag
    dockerfile = h.path("dockerfile").read_text()
    assert ("COPY --chmod=644 <<'NBIMAGES_EOF' /app/run.sh\necho hello from the handout"
            in dockerfile)
    assert 'CMD ["sh", "/app/run.sh"]' in dockerfile and "ENV GREETING=hi" in dockerfile
    readme = h.path("readme").read_text()
    assert f"`{h.image.id}`" in readme
    assert "| 2 | cell 6 | `COPY --chmod=644 <cell> /app/data.txt` | `sha256:" in readme


def test_a_failed_handout_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    nb = write_notebook(tmp_path / "bad.ipynb", "%image from scratch", "%image copy nothere /x")
    with pytest.raises(NotebookError, match=r"cell 3 \(.%image copy nothere /x.\): COPY source"):
        handout(nb, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_readme_verify_command_works_copy_pasted_in_the_notebooks_folder(tmp_path, busybox_tar,
                                                                         monkeypatch):  # noqa: F811
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    nb = handout_notebook(tmp_path, busybox_tar)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    h = handout(nb, tmp_path / "handout")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    readme = h.path("readme").read_text()
    command = re.search(r"^.*nbimages verify .*$", readme, re.M).group(0)
    assert command.startswith("SOURCE_DATE_EPOCH=1700000000 nbimages verify analysis.ipynb")
    assert "--expected oci-archive:handout/image.oci.tar" in readme
    assert "docker build -f handout/Dockerfile -t nbtest/notebook:1 ." in readme
    env = {**os.environ, "NBIMAGES_HOME": str(tmp_path / "stranger"), "NBIMAGES_PROGRESS": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in (command, command + " --expected oci-archive:handout/image.oci.tar"):
        proc = subprocess.run(line, shell=True, cwd=nb.parent, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "verified" in proc.stdout


def test_the_handout_magic_is_the_shells_handout(ip, tmp_path, busybox_tar):  # noqa: F811
    """`%image handout NB -o DIR` writes the folder `nbimages handout` writes; -q gives the digest."""
    nb = handout_notebook(tmp_path, busybox_tar)
    h = ip.run_line_magic("image", f"handout {nb} -o {tmp_path / 'out'}")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES.values())
    assert h.tag == "nbtest/notebook:1" and h.digest.startswith("sha256:")
    assert ip.run_line_magic("image", f"handout {nb} -o {tmp_path / 'again'} -q") == h.digest

"""What the embedded builder writes, read by independent tools: skopeo, umoci, docker (issue 3)."""

from __future__ import annotations

import json

import pytest

import nbimages
from nbimages.store import default_store

from conftest import run, tool

CELL = "hello from a notebook cell \u2713\n"


@pytest.fixture(scope="session")
def busybox_oci(busybox_image, tmp_path_factory) -> str:
    """The tests' busybox image as an OCI layout (skopeo from the engine): `oci:DIR:bb`."""
    d = tmp_path_factory.mktemp("bboci") / "layout"
    run([tool("skopeo"), "copy", "-q", f"docker-daemon:{busybox_image}", f"oci:{d}:bb"])
    return f"oci:{d}:bb"


@pytest.fixture
def built(busybox_oci, tmp_path):
    r = nbimages.Recipe(busybox_oci)
    r.file("/app/cell.txt", CELL)
    r.file("/usr/local/bin/show", "#!/bin/sh\ncat /app/cell.txt\n", mode=0o755)
    r.remove("/bin/head")
    r.env(GREETING="hi")
    r.cmd(["/usr/local/bin/show"])
    return r.build("nbtest/embedded:1")


def test_skopeo_inspects_the_stored_image(built):
    store = default_store()
    out = run([tool("skopeo"), "inspect", f"oci:{store.path}:nbtest/embedded:1"]).stdout
    doc = json.loads(out)
    assert doc["Digest"] == built.digest
    assert doc["Layers"] == [l.digest for l in built.layers]
    assert doc["Created"] == "1970-01-01T00:00:00Z"
    raw = run([tool("skopeo"), "inspect", "--raw", f"oci:{store.path}:nbtest/embedded:1"]).stdout
    assert raw.encode() == built.manifest.raw
    cfg = run([tool("skopeo"), "inspect", "--config", "--raw",
               f"oci:{store.path}:nbtest/embedded:1"]).stdout
    assert cfg.encode() == built.config_bytes


def test_umoci_unpacks_the_image_with_the_whiteout_applied(built, tmp_path):
    store = default_store()
    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{store.path}:nbtest/embedded:1",
         str(bundle)])
    root = bundle / "rootfs"
    assert (root / "app" / "cell.txt").read_text() == CELL
    assert (root / "usr" / "local" / "bin" / "show").stat().st_mode & 0o777 == 0o755
    assert (root / "bin" / "sh").exists() or (root / "bin" / "sh").is_symlink()
    assert not (root / "bin" / "head").exists() and not (root / "bin" / "head").is_symlink()


def test_docker_loads_and_runs_the_image_and_it_prints_the_cell(built, docker_client, tmp_path):
    archive = tmp_path / "handout.tar"
    nbimages.save(built, archive, format="docker", tag="nbtest/embedded:1")
    run(["docker", "load", "-i", str(archive)])
    try:
        out = docker_client.containers.run("nbtest/embedded:1", network_mode="none", remove=True)
        assert out.decode() == CELL
        # Docker's image ID is our config digest: the ID does not depend on the compressor.
        assert docker_client.images.get("nbtest/embedded:1").id == built.id
        env = docker_client.containers.run("nbtest/embedded:1", ["sh", "-c",
                                           "echo $GREETING; ls /bin/head || true"],
                                           network_mode="none", remove=True, stderr=True)
        # stdout and stderr arrive merged in no fixed order
        assert "hi" in env.decode().splitlines()
        assert "No such file" in env.decode()
    finally:
        docker_client.images.remove("nbtest/embedded:1", force=True)


def test_embedded_build_matches_docker_build_of_the_equivalent_dockerfile(busybox_image,
                                                                          docker_client, tmp_path):
    """Same files, same config where it matters: the engine's build of r.write_context()."""
    ctx = tmp_path / "ctx"
    (ctx / "data").mkdir(parents=True)
    (ctx / "data" / "x.csv").write_text("a,b\n")
    r = nbimages.Recipe(f"docker-daemon:{busybox_image}", context=ctx)
    r.file("/app/cell.txt", CELL)
    r.copy("data/", "/data/")
    r.workdir("/app")
    r.cmd(["cat", "/app/cell.txt", "/data/x.csv"])
    img = r.build("nbtest/equiv:1")
    r.write_context(ctx)
    text = (ctx / "Dockerfile").read_text().replace(f"FROM docker-daemon:{busybox_image}",
                                                    f"FROM {busybox_image}")
    (ctx / "Dockerfile").write_text(text)
    docker_client.images.build(path=str(ctx), tag="nbtest/equiv-docker:1", network_mode="none",
                               rm=True)
    try:
        theirs = docker_client.containers.run("nbtest/equiv-docker:1", network_mode="none",
                                              remove=True)
        archive = tmp_path / "ours.tar"
        nbimages.save(img, archive, format="docker", tag="nbtest/equiv:1")
        run(["docker", "load", "-i", str(archive)])
        ours = docker_client.containers.run("nbtest/equiv:1", network_mode="none", remove=True)
        assert ours == theirs == (CELL + "a,b\n").encode()
    finally:
        for t in ("nbtest/equiv-docker:1", "nbtest/equiv:1"):
            docker_client.images.remove(t, force=True)

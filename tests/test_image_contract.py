"""One Image contract: every source, and every save/push/load round trip, gives an Image that
`validate_image` accepts (its bytes, digests, diff_ids and layers agree), against the real
engine and the real registry. The engine's own images are Images too."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

import nbimages
from nbimages.engines.docker import EngineImage
from nbimages.errors import InvalidImage
from nbimages.image import Image, Layer
from nbimages.validate import validate_image

NBIMAGES = str(Path(sys.executable).parent / "nbimages")


@pytest.fixture
def built(tmp_path):
    """A small image built daemonless into the store (two layers, a config step)."""
    r = nbimages.Recipe("scratch", context=tmp_path)
    r.file("/app/hello.txt", "hello\n").file("/etc/motd", "contract\n", mode=0o600)
    r.env(A="1")
    return r.build(f"nbtest/contract:{uuid.uuid4().hex[:8]}")


def test_a_built_image_keeps_the_contract_and_carries_its_report(built):
    assert validate_image(built) is built
    assert [row["step"] for row in built.build_report] == [1, 2, 3]
    assert built.recipe is not None and len(built.recipe.steps) == 3


@pytest.mark.parametrize("fmt,prefix", [("docker", "docker-archive:"), ("oci", "oci-archive:"),
                                        ("oci-dir", "oci:")])
def test_save_round_trips_keep_the_contract(built, tmp_path, fmt, prefix):
    path = tmp_path / f"out-{fmt}"
    nbimages.save(built, path, format=fmt)
    again = validate_image(nbimages.open_image(f"{prefix}{path}"))
    assert again.id == built.id and again.diff_ids == built.diff_ids


def test_store_source_keeps_the_contract(built):
    assert built.source.startswith("store:")
    again = validate_image(nbimages.open_image(built.source))
    assert again.digest == built.digest


@pytest.mark.registry
def test_push_and_pull_round_trips_keep_the_contract(built, registry):
    ref = f"{registry}/nbtest/contract-{uuid.uuid4().hex[:8]}:1"
    digest = nbimages.push(built, ref, progress=False)
    assert digest == built.digest
    remote = validate_image(nbimages.open_remote(ref))
    pulled = validate_image(nbimages.pull(ref, progress=False))
    assert remote.digest == pulled.digest == built.digest


@pytest.mark.engine
def test_engine_load_and_docker_daemon_source_keep_the_contract(built, docker_client):
    name = f"nbtest/contract-load:{uuid.uuid4().hex[:8]}"
    image_id = nbimages.load_into_engine(built, name)
    try:
        assert image_id == built.id
        from_daemon = validate_image(nbimages.open_image(f"docker-daemon:{name}"))
        assert from_daemon.id == built.id and from_daemon.diff_ids == built.diff_ids
    finally:
        docker_client.images.remove(name, force=True)


@pytest.mark.engine
def test_an_engine_built_image_is_an_image_that_keeps_the_contract(busybox_image, docker_client,
                                                                   tmp_path):
    tag = f"nbtest/contract-engine:{uuid.uuid4().hex[:8]}"
    built = nbimages.engines.build(f"FROM {busybox_image}\nRUN echo ran > /ran\n", tag,
                                   engine="docker", stream=False)
    try:
        assert isinstance(built, EngineImage) and isinstance(built, Image)
        assert built.id == docker_client.images.get(tag).id
        assert built.diff_ids == docker_client.images.get(tag).attrs["RootFS"]["Layers"]
        assert all(isinstance(layer, Layer) for layer in built.layers)  # no bare strings
        validate_image(built)
        out = tmp_path / "engine.tar"
        nbimages.save(built, out)
        assert validate_image(nbimages.open_image(f"docker-archive:{out}")).id == built.id
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.engine
def test_cli_build_with_the_docker_engine_writes_the_output_tar(busybox_image, docker_client,
                                                                tmp_path):
    """`nbimages build --engine docker -t x:1 -o out.tar DIR` (an AttributeError before)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox_image}\nRUN echo from-run > /r\n"
                                    'CMD ["cat", "/r"]\n')
    tag = f"nbtest/cli-engine-out:{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out.tar"
    try:
        r = subprocess.run([NBIMAGES, "build", "--engine", "docker", "-t", tag, "-o", str(out),
                            str(ctx)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stdout.splitlines()[-1].split()[0] == tag  # after the engine's build log
        with tarfile.open(out) as t:
            manifest = json.load(t.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == [tag]
        docker_client.images.remove(tag, force=True)
        loaded = subprocess.run(["docker", "load", "-i", str(out)], capture_output=True, text=True)
        assert loaded.returncode == 0, loaded.stderr
        ran = docker_client.containers.run(tag, network_mode="none", remove=True)
        assert ran == b"from-run\n"
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - already removed
            pass


def test_validate_image_names_a_layer_whose_bytes_disagree(built):
    """The check can fail: a layer whose blob is not what its descriptor says."""
    bad = Layer(built.layers[0].descriptor, built.layers[0].diff_id,
                lambda: __import__("io").BytesIO(b"not the layer"))
    broken = Image(built.manifest, built.config_bytes, [bad] + built.layers[1:], source="broken")
    with pytest.raises(InvalidImage, match=r"broken breaks the Image contract: layer 0 .*reads as"):
        validate_image(broken)


def test_validate_image_names_a_config_that_is_not_the_manifests(built):
    broken = Image(built.manifest, b"{}\n", built.layers, source="forged")
    with pytest.raises(InvalidImage, match="the config bytes"):
        validate_image(broken, layers=False)

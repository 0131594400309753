"""What nbimages writes is read by docker load/run, skopeo, umoci and dive; tars are
deterministic, streamed and atomic."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from conftest import run, tool
from nbimages import errors
from nbimages.image import Image, Layer
from nbimages.oci import canonical, mediatypes as mt
from nbimages.oci.descriptor import Descriptor
from nbimages.oci.manifest import Manifest
from nbimages.sources import load_into_engine, open_image, save
from test_sources import TAG, build_test_image, layer_listing


@pytest.fixture(scope="module")
def built(docker_client, busybox_image, tmp_path_factory) -> str:
    return build_test_image(docker_client, tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="module")
def image(built):
    return open_image(f"docker-daemon:{TAG}")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("out")


@pytest.fixture(scope="module")
def docker_tar(image, out) -> Path:
    return save(image, out / "image.tar", tag="nbtest/saved:1")


def with_new_layer(base, files: dict[str, bytes], workdir: Path) -> Image:
    """`base` plus one gzip layer holding `files` (a new image ID the engine has never seen)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 0
            tf.addfile(ti, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, mtime=0)
    blob = workdir / "layer.tar.gz"
    blob.write_bytes(gz)
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    desc = Descriptor(mt.OCI_LAYER_GZIP, "sha256:" + hashlib.sha256(gz).hexdigest(), len(gz))
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": base.diff_ids + [diff_id]}
    config["history"] = list(config.get("history") or []) + [{"created_by": "test layer"}]
    config_bytes = canonical.dumps(config)
    cdesc = Descriptor(mt.OCI_CONFIG, "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
                       len(config_bytes))
    layers = list(base.layers) + [Layer(desc, diff_id, lambda: open(blob, "rb"))]
    manifest = Manifest.build(cdesc, [layer.descriptor for layer in layers])
    return Image(manifest, config_bytes, layers, source="test")


# ---------------------------------------------------------------- the docker tar

def test_docker_tar_is_deterministic(image, docker_tar, out):
    again = save(open_image(f"docker-archive:{docker_tar}"), out / "again.tar", tag="nbtest/saved:1")
    assert again.read_bytes() == docker_tar.read_bytes()
    with tarfile.open(docker_tar) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)


def test_docker_tar_carries_docker_and_oci_names(image, docker_tar):
    with tarfile.open(docker_tar) as tf:
        legacy = json.load(tf.extractfile("manifest.json"))
        index = json.load(tf.extractfile("index.json"))
        repos = json.load(tf.extractfile("repositories"))
    assert legacy[0]["RepoTags"] == ["nbtest/saved:1"]
    assert legacy[0]["Config"] == "blobs/sha256/" + image.id.split(":")[1]
    assert legacy[0]["Layers"] == ["blobs/sha256/" + d.split(":")[1] for d in image.diff_ids]
    ann = index["manifests"][0]["annotations"]
    assert ann == {"io.containerd.image.name": "docker.io/nbtest/saved:1",
                   "org.opencontainers.image.ref.name": "1"}
    assert index["manifests"][0]["digest"] == image.digest
    assert list(repos) == ["nbtest/saved"]


def test_skopeo_reads_the_docker_tar_both_ways(image, docker_tar):
    skopeo = tool("skopeo")
    as_docker = json.loads(run([skopeo, "inspect", f"docker-archive:{docker_tar}"]).stdout)
    as_oci = json.loads(run([skopeo, "inspect", f"oci-archive:{docker_tar}"]).stdout)
    assert as_oci["Digest"] == image.digest
    assert as_oci["Layers"] == [layer.digest for layer in image.layers]
    assert as_docker["Layers"] == image.diff_ids
    config = json.loads(run([skopeo, "inspect", "--config", f"docker-archive:{docker_tar}"]).stdout)
    assert config["rootfs"]["diff_ids"] == image.diff_ids


def test_dive_reads_the_docker_tar_with_plain_and_gzip_layers(image, out, tmp_path):
    mixed = with_new_layer(image, {"srv/dive.txt": b"dive reads gzip blobs\n"}, tmp_path)
    path = save(mixed, out / "mixed.tar", tag="nbtest/mixed:1")
    assert [layer.compression for layer in open_image(str(path)).layers][-2:] == [None, "gzip"]
    report = tmp_path / "dive.json"
    run([tool("dive"), "--source", "docker-archive", str(path), "-j", str(report)],
        env={**os.environ, "CI": "true"}, cwd=tmp_path)
    data = json.loads(report.read_text())
    assert [layer["digestId"] for layer in data["layer"]] == mixed.diff_ids
    assert any(f["path"] == "opt/d/f" for f in data["layer"][-2]["fileList"])
    assert any(f["path"] == "srv/dive.txt" for f in data["layer"][-1]["fileList"])


def test_docker_load_runs_a_new_image_with_gzip_layers(image, out, docker_client):
    marker = f"loaded-{time.time_ns()}\n".encode()
    new = with_new_layer(image, {"data/marker.txt": marker}, out)
    path = save(new, out / "new.tar", tag="nbtest/saved-new:1")
    with tarfile.open(path) as tf:
        assert tf.getmember("blobs/sha256/" + new.layers[-1].digest.split(":")[1]).size == new.layers[-1].size
    try:
        assert "Loaded image: nbtest/saved-new:1" in run(["docker", "load", "-i", str(path)]).stdout
        assert docker_client.images.get("nbtest/saved-new:1").id == new.id
        got = run(["docker", "run", "--rm", "--network", "none", "nbtest/saved-new:1",
                   "cat", "/data/marker.txt", "/data/a.txt"]).stdout
        assert got == marker.decode() + "v2\n"
    finally:
        docker_client.images.remove("nbtest/saved-new:1", force=True)


def test_load_into_engine_streams_the_tar(image, out, docker_client):
    marker = f"streamed-{time.time_ns()}\n".encode()
    new = with_new_layer(image, {"etc/motd": marker}, out)
    try:
        assert load_into_engine(new, tag="nbtest/streamed:1") == new.id
        got = run(["docker", "run", "--rm", "--network", "none", "nbtest/streamed:1", "cat",
                   "/etc/motd"]).stdout
        assert got == marker.decode()
    finally:
        docker_client.images.remove("nbtest/streamed:1", force=True)
    assert not list(out.glob(".*.tmp"))


def test_zstd_layers_are_written_uncompressed_for_docker(image, docker_tar, out, docker_client):
    skopeo = tool("skopeo")
    zdir = out / "zstd-layout"
    run([skopeo, "copy", "-q", "--dest-compress-format", "zstd", f"docker-archive:{docker_tar}",
         f"oci:{zdir}:z"])
    zimg = open_image(f"oci:{zdir}:z")
    assert zimg.layers[0].media_type == mt.OCI_LAYER_ZSTD
    path = save(zimg, out / "from-zstd.tar", tag="nbtest/from-zstd:1")
    back = open_image(f"docker-archive:{path}")
    assert [layer.media_type for layer in back.layers] == [mt.OCI_LAYER] * len(back.layers)
    assert [layer.digest for layer in back.layers] == zimg.diff_ids
    try:
        run(["docker", "load", "-i", str(path)])
        got = run(["docker", "run", "--rm", "--network", "none", "nbtest/from-zstd:1"]).stdout
        assert got == "v2\n"
    finally:
        docker_client.images.remove("nbtest/from-zstd:1", force=True)
    assert not list(out.glob(".layer-*"))


# ---------------------------------------------------------------- OCI forms

def test_oci_archive_is_read_by_skopeo_and_back(image, out):
    path = save(image, out / "image.oci.tar", format="oci", tag="v1")
    with tarfile.open(path) as tf:
        assert "manifest.json" not in tf.getnames()
    info = json.loads(run([tool("skopeo"), "inspect", f"oci-archive:{path}:v1"]).stdout)
    assert info["Digest"] == image.digest
    back = open_image(f"oci-archive:{path}:v1")
    assert (back.digest, back.id) == (image.digest, image.id)


def test_oci_dir_unpacks_with_umoci(image, out, tmp_path):
    layout = save(image, out / "layout", format="oci-dir", tag="v1")
    info = json.loads(run([tool("skopeo"), "inspect", f"oci:{layout}:v1"]).stdout)
    assert info["Digest"] == image.digest
    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)])
    rootfs = bundle / "rootfs"
    assert (rootfs / "data/a.txt").read_text() == "v2\n"
    assert not (rootfs / "data/b.bin").exists()
    assert (rootfs / "opt/d/f").read_text() == "x\n"
    assert (rootfs / "bin/busybox").is_file()


def test_oci_dir_adds_to_an_existing_layout(image, out):
    layout = save(image, out / "two-tags", format="oci-dir", tag="a")
    save(image, layout, format="oci-dir", tag="b")
    assert open_image(f"oci:{layout}:a").digest == open_image(f"oci:{layout}:b").digest
    assert not [p for p in layout.parent.iterdir() if p.name.endswith(".tmp")]


def test_docker_schema2_image_is_written_as_oci(registry, image, docker_client, out, built):
    remote = f"{registry}/nbtest/sources:1"
    docker_client.images.get(TAG).tag(f"{registry}/nbtest/sources", "1")
    run(["docker", "push", remote])
    pulled = open_image(f"docker://{remote}")
    layout = save(pulled, out / "from-registry", format="oci-dir", tag="r")
    back = open_image(f"oci:{layout}:r")
    assert back.manifest.media_type == mt.OCI_MANIFEST
    assert [layer.digest for layer in back.layers] == [layer.digest for layer in pulled.layers]
    assert back.id == pulled.id == image.id
    assert layer_listing(back)[-1] == layer_listing(image)[-1]


def test_save_accepts_a_source_string(built, out):
    path = save(f"docker-daemon:{TAG}", out / "from-string.tar")
    assert open_image(str(path)).names == [TAG]  # the engine's tag is kept by default


# ---------------------------------------------------------------- failures leave nothing

def test_corrupt_blob_leaves_no_file_behind(image, out, tmp_path):
    layout = save(image, tmp_path / "corrupt", format="oci-dir", tag="c")
    victim = layout / "blobs/sha256" / image.layers[-1].digest.split(":")[1]
    data = bytearray(victim.read_bytes())
    data[700] ^= 0xFF
    os.chmod(victim, 0o644)
    victim.write_bytes(bytes(data))
    bad = open_image(f"oci:{layout}:c")
    dest = tmp_path / "dest"
    dest.mkdir()
    for fmt, name in (("docker", "x.tar"), ("oci", "x.oci.tar"), ("oci-dir", "xdir")):
        with pytest.raises(errors.DigestMismatch):
            save(bad, dest / name, format=fmt)
    assert list(dest.iterdir()) == []


def test_unknown_format_is_reported(image, tmp_path):
    with pytest.raises(errors.UnknownTransport, match="'oci-dir'"):
        save(image, tmp_path / "x.tar", format="zip")
    assert not list(tmp_path.iterdir())


def test_tag_with_digest_is_refused(image, tmp_path):
    with pytest.raises(errors.InvalidReference, match="needs a plain tag"):
        save(image, tmp_path / "x.tar", tag="x@sha256:" + "0" * 64)


def test_a_destination_that_cannot_be_written_is_one_clear_error(tmp_path):
    import nbimages
    img = nbimages.Recipe("scratch").file("/a.txt", "a").build("nbtest/unwritable:1")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for fmt in ("docker", "oci", "oci-dir"):
        with pytest.raises(errors.NbimagesError, match=r"cannot write .*a-file/x: .*Choose a folder"):
            save(img, blocker / "x", format=fmt)
    assert blocker.read_text() == "not a folder"

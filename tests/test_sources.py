"""Every source form opens the same image: engine, docker save tars (legacy and Docker 25
style), OCI layouts and archives, the registry and the store; bad input gives clear errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import docker_build, run, tool
from nbimages import errors
from nbimages.image import Image
from nbimages.oci import canonical, mediatypes as mt
from nbimages.oci.descriptor import Descriptor, Platform
from nbimages.oci.layout import OCILayout
from nbimages.oci.manifest import Index, Manifest
from nbimages.sources import open_image, parse_source, save, write_image
from nbimages.sources.copy import copy

TAG = "nbtest/sources:1"
DOCKERFILE = """\
FROM nbtest/busybox:1
COPY a.txt /data/a.txt
COPY b.bin /data/b.bin
RUN echo v2 > /data/a.txt && chmod 600 /data/b.bin
RUN rm /data/b.bin && mkdir -p /opt/d && echo x > /opt/d/f
ENV FOO=bar
CMD ["cat", "/data/a.txt"]
"""


def build_test_image(client, ctx: Path) -> str:
    """Adds, overwrites, chmods and deletes files on top of the busybox base."""
    (ctx / "a.txt").write_text("v1\n")
    (ctx / "b.bin").write_bytes(bytes(range(256)) * 64)
    return docker_build(client, ctx, TAG, DOCKERFILE)


def layer_listing(image) -> list[list[tuple]]:
    """(name, type, size, mode) of every entry of every layer, read as a stream."""
    out = []
    for layer in image.layers:
        with layer.open_tar() as f, tarfile.open(fileobj=f, mode="r|") as tf:
            out.append([(ti.name, ti.type, ti.size, ti.mode) for ti in tf])
    return out


def sha256_of(stream) -> str:
    h = hashlib.sha256()
    with stream as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@pytest.fixture(scope="module")
def built(docker_client, busybox_image, tmp_path_factory) -> str:
    return build_test_image(docker_client, tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="module")
def files(built, tmp_path_factory) -> dict[str, Path]:
    """The image in every file form: legacy `docker save`, our docker tar, skopeo OCI forms."""
    d = tmp_path_factory.mktemp("forms")
    skopeo = tool("skopeo")
    legacy = d / "legacy.tar"
    run(["docker", "save", "-o", str(legacy), TAG])
    run([skopeo, "copy", "-q", f"docker-archive:{legacy}", f"oci:{d / 'layout'}:t1"])
    run([skopeo, "copy", "-q", f"docker-archive:{legacy}", f"oci-archive:{d / 'skopeo-oci.tar'}:t1"])
    return {"legacy": legacy, "layout": d / "layout", "skopeo-oci": d / "skopeo-oci.tar", "dir": d}


@pytest.fixture(scope="module")
def reference(built, docker_client):
    return open_image(f"docker-daemon:{TAG}")


# ---------------------------------------------------------------- every form, same image

def test_engine_image_matches_what_the_engine_reports(reference, docker_client, built):
    info = docker_client.api.inspect_image(TAG)
    assert reference.id == built == info["Id"]
    assert reference.diff_ids == info["RootFS"]["Layers"]
    assert len(reference.layers) == 6  # busybox (2) + COPY, COPY, RUN, RUN
    assert TAG in reference.names
    assert reference.source == f"docker-daemon:{TAG}"


def test_legacy_docker_save_tar_gives_the_engine_image(reference, files):
    img = open_image(f"docker-archive:{files['legacy']}")
    assert (img.id, img.diff_ids, img.digest) == (reference.id, reference.diff_ids, reference.digest)
    assert img.names == [TAG]
    assert layer_listing(img) == layer_listing(reference)


def test_synthesised_legacy_manifest_describes_the_layer_files(files):
    img = open_image(f"docker-archive:{files['legacy']}")
    assert img.manifest.media_type == mt.OCI_MANIFEST
    for layer in img.layers:
        assert layer.media_type == mt.OCI_LAYER
        assert layer.digest == layer.diff_id == sha256_of(layer.open_blob())
        with layer.open_blob() as f:
            assert len(f.read()) == layer.size


def test_layers_of_an_uncompressed_archive_are_seekable_in_place(files):
    img = open_image(f"docker-archive:{files['legacy']}")
    layer = img.layers[0]
    with layer.open_tar(verify=False) as f:
        assert f.seekable()
        f.seek(512)
        tail = f.read(100)
        f.seek(0)
        whole = f.read(612)
    assert whole[512:] == tail


def test_docker25_style_tar_opens_as_docker_archive_and_oci_archive(reference, files):
    path = save(reference, files["dir"] / "ours.tar", tag=TAG)
    for source in (f"docker-archive:{path}", f"oci-archive:{path}", str(path)):
        img = open_image(source)
        assert (img.id, img.diff_ids, img.digest) == (reference.id, reference.diff_ids,
                                                      reference.digest), source
    assert open_image(f"docker-archive:{path}").names == [TAG]
    assert layer_listing(open_image(str(path))) == layer_listing(reference)


def test_skopeo_oci_layout_and_archive_have_the_same_layers(reference, files):
    listing = layer_listing(reference)
    for source in (f"oci:{files['layout']}:t1", f"oci:{files['layout']}",
                   f"oci-archive:{files['skopeo-oci']}:t1", str(files["skopeo-oci"]),
                   str(files["layout"])):
        img = open_image(source)
        assert img.diff_ids == reference.diff_ids, source
        assert img.layers[0].media_type == mt.OCI_LAYER_GZIP
        assert layer_listing(img) == listing, source
    assert open_image(str(files["layout"])).source.startswith("oci:")
    assert open_image(str(files["skopeo-oci"])).source.startswith("oci-archive:")


def test_registry_image_has_the_engine_image_id(reference, registry, docker_client, built):
    remote = f"{registry}/nbtest/sources:1"
    docker_client.images.get(TAG).tag(f"{registry}/nbtest/sources", "1")
    run(["docker", "push", remote])
    img = open_image(f"docker://{remote}")
    assert (img.id, img.diff_ids) == (reference.id, reference.diff_ids)
    assert layer_listing(img) == layer_listing(reference)
    assert img.layers[0].compression == "gzip"  # as the registry holds it


def test_registry_fallback_pulls_through_the_engine(reference, registry, docker_client, built):
    from nbimages.sources.daemon import pull_through_engine
    docker_client.images.get(TAG).tag(f"{registry}/nbtest/sources", "fallback")
    run(["docker", "push", f"{registry}/nbtest/sources:fallback"])
    docker_client.images.remove(f"{registry}/nbtest/sources:fallback")
    img = pull_through_engine(f"{registry}/nbtest/sources:fallback")
    assert (img.id, img.diff_ids) == (reference.id, reference.diff_ids)
    assert img.source == f"docker://{registry}/nbtest/sources:fallback"


def test_store_name_and_store_transport(reference):
    from nbimages.store import default_store
    default_store().put_image(reference, "mine:1")
    for source in ("store:mine:1", "mine:1"):
        img = open_image(source)
        assert (img.id, img.digest) == (reference.id, reference.digest)
        assert img.source == "store:mine:1"


def test_bare_reference_falls_back_to_the_engine(reference):
    img = open_image(TAG)
    assert img.id == reference.id
    assert img.source == f"docker-daemon:{TAG}"


def test_image_passes_through_open_image(reference):
    assert open_image(reference) is reference


def test_gzip_compressed_outer_tar_is_read(reference, files):
    gz = files["dir"] / "legacy.tar.gz"
    with open(files["legacy"], "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    img = open_image(f"docker-archive:{gz}")
    assert img.id == reference.id
    assert layer_listing(img)[-1] == layer_listing(reference)[-1]


def test_gzip_layer_file_in_legacy_archive_gets_gzip_descriptor(reference, files, tmp_path):
    """Hand-made archives may hold gzip layer.tar files: digest is then the gzip blob's."""
    out = tmp_path / "gzlayers.tar"
    with tarfile.open(files["legacy"]) as src, tarfile.open(out, "w") as dst:
        for ti in src:
            data = src.extractfile(ti).read() if ti.isreg() else None
            if ti.name.endswith("layer.tar"):
                data = gzip.compress(data, mtime=0)
                ti.size = len(data)
            dst.addfile(ti, io.BytesIO(data) if data is not None else None)
    img = open_image(f"docker-archive:{out}")
    assert img.diff_ids == reference.diff_ids
    for layer in img.layers:
        assert layer.media_type == mt.OCI_LAYER_GZIP
        assert layer.digest == sha256_of(layer.open_blob()) != layer.diff_id
        assert sha256_of(layer.open_tar()) == layer.diff_id


def test_archive_with_several_images_needs_a_reference(built, busybox_image, files):
    multi = files["dir"] / "multi.tar"
    run(["docker", "save", "-o", str(multi), TAG, busybox_image])
    with pytest.raises(errors.ImageNotFound, match="holds 2 images"):
        open_image(f"docker-archive:{multi}")
    assert open_image(f"docker-archive:{multi}:{busybox_image}").names == [busybox_image]
    assert open_image(f"docker-archive:{multi}:docker.io/{TAG}").id == built
    assert len(open_image(f"docker-archive:{multi}:@1").layers) in (2, 6)
    with pytest.raises(errors.ImageNotFound, match="nbtest/busybox:1"):
        open_image(f"docker-archive:{multi}:nbtest/other:1")


# ---------------------------------------------------------------- platforms

def _multi_platform_layout(reference, path: Path) -> OCILayout:
    """An OCI layout with an index of two platforms (amd64 and arm64/v8, same layers)."""
    layout = OCILayout(path, create=True)
    entries = []
    for arch, variant in (("amd64", None), ("arm64", "v8")):
        config = dict(reference.config, architecture=arch)
        if variant:
            config["variant"] = variant
        config_bytes = canonical.dumps(config)
        cdesc = layout.write_blob(config_bytes, media_type=mt.OCI_CONFIG)
        for layer in reference.layers:
            with layer.open_blob() as f:
                layout.write_blob(f, layer.digest)
        manifest = Manifest.build(Descriptor(mt.OCI_CONFIG, cdesc.digest, cdesc.size),
                                  [layer.descriptor for layer in reference.layers])
        layout.write_blob(manifest.raw, manifest.digest)
        entries.append(Descriptor(mt.OCI_MANIFEST, manifest.digest, len(manifest.raw),
                                  platform=Platform("linux", arch, variant)))
    index = Index.build(entries)
    idesc = layout.write_blob(index.raw)
    layout.set_ref("multi", Descriptor(mt.OCI_INDEX, idesc.digest, idesc.size))
    return layout


def test_index_picks_host_platform_unless_told(reference, tmp_path):
    _multi_platform_layout(reference, tmp_path / "multi")
    tarpath = tmp_path / "multi.tar"
    with tarfile.open(tarpath, "w") as tf:
        for p in sorted((tmp_path / "multi").rglob("*")):
            tf.add(p, p.relative_to(tmp_path / "multi").as_posix(), recursive=False)
    for base in (f"oci:{tmp_path / 'multi'}:multi", f"oci-archive:{tarpath}:multi"):
        assert open_image(base).platform.architecture == "amd64"
        arm = open_image(base, platform="linux/arm64/v8")
        assert (arm.platform.architecture, arm.platform.variant) == ("arm64", "v8")
        assert arm.diff_ids == reference.diff_ids
        with pytest.raises(errors.PlatformNotFound, match="linux/s390x"):
            open_image(base, platform="linux/s390x")


def test_single_platform_source_refuses_another_platform(files):
    with pytest.raises(errors.PlatformNotFound, match="linux/arm64"):
        open_image(f"docker-archive:{files['legacy']}", platform="linux/arm64")


def test_malformed_platform_is_a_user_error_not_a_bare_valueerror(files):
    with pytest.raises(errors.InvalidPlatform, match="os/arch") as e:
        open_image(f"docker-archive:{files['legacy']}", platform="linux//")
    assert isinstance(e.value, errors.NbimagesError) and isinstance(e.value, ValueError)


# ---------------------------------------------------------------- bad input

def test_missing_files_are_reported(tmp_path):
    for source in (f"docker-archive:{tmp_path}/nope.tar", f"oci-archive:{tmp_path}/nope.tar",
                   f"oci:{tmp_path}/nodir", f"{tmp_path}/nope.tar", "nope.tar"):
        with pytest.raises(errors.ImageNotFound, match="does not exist"):
            open_image(source)


def test_truncated_tar_is_reported(files, tmp_path):
    cut = tmp_path / "cut.tar"
    data = files["legacy"].read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 5])
    with pytest.raises(errors.InvalidImage, match="truncated"):
        open_image(f"docker-archive:{cut}")
    with pytest.raises(errors.InvalidImage, match="truncated"):
        open_image(str(cut))


def test_tar_without_an_image_is_reported(tmp_path):
    (tmp_path / "hello.txt").write_text("hello")
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tf:
        tf.add(tmp_path / "hello.txt", "hello.txt")
    with pytest.raises(errors.InvalidImage, match="not an image tar.*hello.txt"):
        open_image(str(other))
    with pytest.raises(errors.InvalidImage, match="not a docker-archive"):
        open_image(f"docker-archive:{other}")
    with pytest.raises(errors.InvalidImage, match="not an OCI archive"):
        open_image(f"oci-archive:{other}")


def test_file_that_is_not_a_tar_is_reported(tmp_path):
    text = tmp_path / "notes.tar"
    text.write_text("just some notes, long enough to fill a tar header block. " * 20)
    with pytest.raises(errors.InvalidImage, match="not a tar file"):
        open_image(str(text))


def test_bare_file_name_that_is_not_an_image_reports_the_file_not_the_registry(tmp_path,
                                                                               monkeypatch):
    import nbimages.sources.opener as sources
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    (tmp_path / "notes.txt").write_text("not an image\n")

    def unreachable(ref, platform=None, **kw):
        raise errors.RegistryError("could not connect to the registry at https://registry-1.docker.io")

    monkeypatch.setattr(sources, "remote", unreachable)
    with pytest.raises(errors.InvalidImage, match="notes.txt is not an image tar"):
        open_image("notes.txt")


def test_directory_that_is_not_a_layout_is_reported(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(errors.InvalidImage, match="not an OCI"):
        open_image(f"oci:{tmp_path / 'x'}")
    with pytest.raises(errors.InvalidImage, match="not an OCI image layout"):
        open_image(str(tmp_path / "x"))


@pytest.mark.parametrize("source", ["containers-storage:busybox:1", "dir:/tmp/x", "ftp://x/y",
                                    "docker-deamon:busybox", "ocidir:./layout",
                                    "oci-layout:/tmp/x:1"])
def test_unknown_transport_lists_the_known_ones(source):
    with pytest.raises(errors.UnknownTransport) as e:
        open_image(source)
    assert "docker-daemon:REF" in str(e.value) and "oci-archive:PATH" in str(e.value)


@pytest.mark.parametrize("source", ["busybox:1", "localhost:5000/x:1", "127.0.0.1:5000/a/b",
                                    "registry:2", "docker:24-dind", "python"])
def test_references_that_look_like_transports_are_references(source):
    assert parse_source(source).transport == "auto"


def test_known_transports_are_parsed():
    assert parse_source("docker://localhost:5000/x:1").transport == "docker"
    assert parse_source("docker-archive:/a/b.tar:x:1").target == "/a/b.tar:x:1"
    with pytest.raises(errors.UnknownTransport, match="docker://"):
        parse_source("docker:/x")


def test_reference_missing_in_engine_is_reported(built):
    with pytest.raises(errors.ImageNotFound, match="no image 'nbtest/does-not-exist:1'"):
        open_image("docker-daemon:nbtest/does-not-exist:1")


def test_engine_not_running_names_docker_host_and_the_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(errors.EngineUnavailable) as e:
        open_image(f"docker-daemon:{TAG}")
    assert "DOCKER_HOST" in str(e.value) and "no-engine.sock" in str(e.value)
    assert "embedded" in str(e.value)


def test_engine_on_a_closed_port_says_connection_refused_without_urllib3_details(monkeypatch):
    from registry_servers import free_port
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(errors.EngineUnavailable, match=r"\(connection refused\)") as e:
        open_image(f"docker-daemon:{TAG}")
    assert "HTTPConnectionPool" not in str(e.value) and "Max retries" not in str(e.value)


def test_daemon_temp_tar_is_removed_when_the_image_is_gone(built):
    import gc
    from nbimages.sources import daemon
    daemon._cache.pop(built, None)  # other tests' images share the tar; start afresh
    img = open_image(f"docker-daemon:{TAG}")
    again = open_image(f"docker-daemon:{TAG}")
    path = daemon._cache[built].path
    assert path.is_file() and path.parent.name == "tmp"
    assert [p for p in path.parent.iterdir() if "-daemon-" in p.name] == [path]  # shared
    layers = img.layers
    del img, again
    gc.collect()
    assert path.is_file()  # the layers still read from it
    del layers
    daemon._recent.clear()  # the last exports are kept for the next magic; drop them
    gc.collect()
    assert not path.exists()


def test_consecutive_opens_of_one_engine_image_export_it_once(built, monkeypatch):
    import gc
    from nbimages.sources import daemon
    daemon._recent.clear()
    daemon._cache.pop(built, None)
    calls = []
    real = daemon._save_to_tmp
    monkeypatch.setattr(daemon, "_save_to_tmp", lambda c, i: calls.append(i) or real(c, i))
    for _ in range(3):  # as `%image layers`, then `files`, then `waste` would
        assert len(open_image(f"docker-daemon:{TAG}").layers) > 1
        gc.collect()
    assert calls == [built]


def test_malformed_manifest_json_is_reported(tmp_path):
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tf:
        data = b"{not json"
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    with pytest.raises(errors.InvalidImage, match="not valid JSON"):
        open_image(str(bad))



def _rewrite_tar(src: Path, dst: Path, edit) -> None:
    """Copy a tar member by member; `edit(tarinfo, data)` returns (tarinfo, data) or None to drop."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for ti in tin:
            data = tin.extractfile(ti).read() if ti.isreg() else None
            kept = edit(ti, data)
            if kept is None:
                continue
            ti, data = kept
            if data is not None:
                ti.size = len(data)
            tout.addfile(ti, io.BytesIO(data) if data is not None else None)


def test_legacy_layer_stored_once_and_linked_is_followed(files, tmp_path):
    """docker save writes a repeated layer once and symlinks the second <v1id>/layer.tar."""
    manifest = json.loads(tarfile.open(files["legacy"]).extractfile("manifest.json").read())
    first, second = manifest[0]["Layers"][0], manifest[0]["Layers"][1]
    config_name = manifest[0]["Config"]
    out = tmp_path / "linked.tar"
    new_config = {}

    def edit(ti, data):
        if ti.name == config_name:
            config = json.loads(data)
            config["rootfs"]["diff_ids"][1] = config["rootfs"]["diff_ids"][0]
            new_config["bytes"] = canonical.dumps(config)
            ti.name = hashlib.sha256(new_config["bytes"]).hexdigest() + ".json"
            return ti, new_config["bytes"]
        if ti.name == "manifest.json":
            manifest[0]["Config"] = hashlib.sha256(new_config["bytes"]).hexdigest() + ".json"
            return ti, json.dumps(manifest).encode()
        if ti.name == second:
            link = tarfile.TarInfo(second)
            link.type = tarfile.SYMTYPE
            link.linkname = "../" + first
            return link, None
        return ti, data

    _rewrite_tar(files["legacy"], out, edit)
    img = open_image(f"docker-archive:{out}")
    assert img.layers[1].digest == img.layers[0].digest == img.diff_ids[0]
    assert layer_listing(img)[1] == layer_listing(img)[0]


def test_docker25_tar_without_its_manifest_blob_is_still_read(reference, files, tmp_path):
    ours = save(reference, tmp_path / "ours.tar", tag=TAG)
    stripped = tmp_path / "stripped.tar"
    _rewrite_tar(ours, stripped,
                 lambda ti, data: None if ti.name.endswith(reference.digest.split(":")[1]) else (ti, data))
    img = open_image(f"docker-archive:{stripped}")
    assert (img.id, img.diff_ids) == (reference.id, reference.diff_ids)
    assert [layer.digest for layer in img.layers] == [layer.digest for layer in reference.layers]


def test_bare_name_found_nowhere_says_store_and_engine_were_looked_at_not_only_the_registry(
        tmp_path, monkeypatch):
    import nbimages.sources.opener as sources
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")

    def unreachable(ref, platform=None, **kw):
        raise errors.RegistryError("could not connect to the registry at https://registry-1.docker.io")

    monkeypatch.setattr(sources, "remote", unreachable)
    with pytest.raises(errors.RegistryError) as e:
        open_image("qa/mistyped:1")
    msg = str(e.value)
    assert "'qa/mistyped:1' is not in the local store (and no Docker engine answers)" in msg
    assert "registry-1.docker.io" in msg


def test_every_transport_writes_what_it_opens(reference, registry, tmp_path):
    """One table, both directions: each transport's writer, then its opener on the same string."""
    from nbimages.sources import TRANSPORTS, write_image
    from nbimages.sources.opener import TRANSPORTS_IO
    from nbimages.store import Store

    assert set(TRANSPORTS_IO) == set(TRANSPORTS)
    store = Store(tmp_path / "store")
    dests = [f"docker-archive:{tmp_path / 'a.tar'}:nbtest/io16b:1",
             f"oci-archive:{tmp_path / 'b.tar'}:v1", f"oci:{tmp_path / 'layout'}:v1",
             "store:nbtest/io16b:1", f"docker://{registry}/nbtest/io16b:1",
             "docker-daemon:nbtest/io16b:1"]
    for dest in dests:
        written = write_image(reference, dest, store=store, progress=False, insecure=True)
        again = open_image(dest, store=store, insecure=True)
        assert again.id == reference.id, dest
        assert written in (again.digest, again.id), dest
    with pytest.raises(errors.UnknownTransport, match="names no transport"):
        write_image(reference, str(tmp_path / "c.tar"))


def as_docker_manifest(image) -> Image:
    """The same config and layers under a Docker schema 2 manifest (what a registry may serve)."""
    m = image.manifest
    docker_types = {mt.OCI_LAYER: mt.DOCKER_LAYER, mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP}
    layers = [Descriptor(docker_types[d.media_type], d.digest, d.size) for d in m.layers]
    manifest = Manifest.build(Descriptor(mt.DOCKER_CONFIG, m.config.digest, m.config.size),
                              layers, docker=True)
    return Image(manifest, image.config_bytes, list(image.layers), names=list(image.names))


def test_oci_writers_return_the_digest_of_the_manifest_converted_to_oci(reference, tmp_path):
    """A Docker manifest is written with OCI media types (a new digest): write_image returns
    that digest, the one the destination reads back."""
    docker = as_docker_manifest(reference)
    assert docker.manifest.media_type == mt.DOCKER_MANIFEST
    for dest in (f"oci:{tmp_path / 'layout'}", f"oci-archive:{tmp_path / 'a.tar'}"):
        written = write_image(docker, dest)
        again = open_image(dest)
        assert again.manifest.media_type == mt.OCI_MANIFEST, dest
        assert written == again.digest != docker.digest, dest


def test_copy_into_a_layout_holding_another_image_returns_the_written_digest(
        reference, busybox_image, tmp_path):
    """oci:DIR without a tag adds the image under its own name beside the others: the copy
    succeeds and returns its digest (it used to re-read DIR untagged and fail on 2 images)."""
    layout = tmp_path / "layout"
    save(open_image(f"docker-daemon:{busybox_image}"), layout, format="oci-dir", tag="other")
    written = copy(reference, f"oci:{layout}", progress=False)
    assert sorted(OCILayout(layout).refs()) == sorted(["other", reference.tag])
    assert written == open_image(f"oci:{layout}:{reference.tag}").digest

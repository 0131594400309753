"""Multi-platform images without emulation (issue 12): one set of steps, an image per platform
on that platform's base, shared layers built once, an OCI index over them."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import docker.errors
import pytest

import nbimages
from conftest import tool
from nbimages.errors import BuildError, PlatformNotFound
from nbimages.store import Store
import platform_bases
from platform_bases import NUMPY

# Session fixtures of the two-platform base, used here by name.
multiplatform_python_base = platform_bases.multiplatform_python_base
numpy_wheels = platform_bases.numpy_wheels

TWO = ["linux/amd64", "linux/arm64"]


def _scratch_recipe(**kw) -> nbimages.Recipe:
    r = nbimages.Recipe("scratch", **kw)
    r.file("/app/hello.py", "print('hello from every platform')\n")
    r.env(APP="1")
    return r


def test_two_platform_build_shares_the_file_layer_and_indexes_both(tmp_path):
    img = _scratch_recipe(platforms=TWO).build("multi12:1", store=Store(tmp_path))
    index = img.index
    assert [str(p) for p in index.platforms] == TWO
    amd, arm = index.images
    assert amd.layers[0].digest == arm.layers[0].digest  # built once, same blob
    assert amd.digest != arm.digest and arm.config["architecture"] == "arm64"
    assert index.parsed.manifests[1].digest == arm.digest
    report = img.build_report
    assert [r[name]["cache"] for name in TWO for r in report[:1]] == ["rebuilt", "shared"]
    frame = report.to_frame()
    assert ("linux/arm64", "cache") in frame.columns and frame[("linux/arm64", "cache")][0] == "shared"
    assert "linux/arm64" in repr(report)


def test_two_empty_stores_give_one_index_digest(tmp_path):
    digests = {_scratch_recipe(platforms=TWO).build("multi12:1", store=Store(tmp_path / n))
               .index.digest for n in ("a", "b")}
    assert len(digests) == 1


def test_the_store_keeps_the_index_under_the_tag(tmp_path):
    store = Store(tmp_path)
    built = _scratch_recipe(platform="linux/amd64,linux/arm64").build("multi12:2", store=store)
    arm = store.get("multi12:2", "linux/arm64")
    assert arm.platform.architecture == "arm64" and arm.index.digest == built.index.digest
    assert store.platforms_of("multi12:2") == built.index.platforms
    with pytest.raises(PlatformNotFound, match="linux/amd64, linux/arm64"):
        store.get("multi12:2", "linux/s390x")


def test_run_step_refused_for_a_multi_platform_build(tmp_path):
    r = _scratch_recipe(platforms=TWO)
    r.run("echo hi")
    with pytest.raises(BuildError, match="without one .no emulation"):
        r.build("multi12:3", store=Store(tmp_path))


def test_platform_listed_twice_is_a_clear_error():
    with pytest.raises(BuildError, match="listed twice"):
        nbimages.Recipe("scratch", platforms=["linux/arm64", "linux/arm64"])


def test_save_oci_writes_the_index_and_docker_one_platform(tmp_path, capsys):
    img = _scratch_recipe(platforms=TWO).build("multi12:4", store=Store(tmp_path / "s"))
    oci = img.save(tmp_path / "multi.tar", format="oci")
    raw = json.loads(subprocess.run([tool("skopeo"), "inspect", "--raw", f"oci-archive:{oci}"],
                                    capture_output=True, text=True, check=True).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"]["architecture"] for m in raw["manifests"]] == ["amd64", "arm64"]
    capsys.readouterr()
    docker_tar = img.save(tmp_path / "arm.tar", platform="linux/arm64")
    assert "holds linux/arm64 only" in capsys.readouterr().err
    with tarfile.open(docker_tar) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        config = json.load(tf.extractfile(manifest[0]["Config"]))
    assert config["architecture"] == "arm64"


def test_cli_build_platform_list_builds_an_index(tmp_path):
    """`nbimages build --platform a,b` (a Dockerfile) goes through the same Recipe."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    out = subprocess.run([sys.executable, "-m", "nbimages", "build", str(tmp_path), "-t",
                          "multi12:5", "--platform", "linux/amd64,linux/arm64"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "linux/arm64" in out.stderr  # the report's column
    img = nbimages.open_image("store:multi12:5", platform="linux/arm64")
    assert img.index is not None and img.platform.architecture == "arm64"


def _drop_from_engine(docker_client, ref: str) -> None:
    """Remove `ref` from the engine if it is there: a build takes the engine's copy of a base
    before the registry's, and the engine holds one platform of it."""
    try:
        docker_client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass


@pytest.mark.usefixtures("offline_pip", "numpy_wheels")
def test_numpy_image_for_amd64_and_arm64_runs_on_the_engine(
        multiplatform_python_base, wheel_index, registry, tmp_path, docker_client):
    _drop_from_engine(docker_client, multiplatform_python_base)  # left by an interrupted run
    r = nbimages.Recipe(multiplatform_python_base, platforms="all")
    r.file("/app/hello.py", "import numpy, platform\n"
                            "print(platform.machine(), numpy.__version__, numpy.arange(4).sum())\n")
    r.pip(NUMPY, index_url=wheel_index.url)
    r.cmd(["python3", "/app/hello.py"])
    img = r.build("multi12:numpy", store=Store(tmp_path / "store"))
    amd, arm = img.index.images
    assert [str(p) for p in img.index.platforms] == TWO
    # pins per platform: the aarch64 wheel on arm64, the x86_64 one on amd64
    pins = {i.platform.architecture: json.loads(i.labels["org.nbimages.pip"]) for i in (amd, arm)}
    assert "aarch64" in pins["arm64"][0]["wheel"] and "x86_64" in pins["amd64"][0]["wheel"]

    ref = f"{registry}/nbtest12/numpy:1"
    digest = nbimages.push(img, ref, progress=False)
    assert digest == img.index.digest
    raw = json.loads(subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false", "--raw",
                                     f"docker://{ref}"], capture_output=True, text=True,
                                    check=True).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in raw["manifests"]}
    assert by_arch == {"amd64": amd.digest, "arm64": arm.digest}
    manifests = {a: json.loads(subprocess.run(
        [tool("skopeo"), "inspect", "--tls-verify=false", "--raw", f"docker://{ref.rsplit(':', 1)[0]}@{d}"],
        capture_output=True, text=True, check=True).stdout) for a, d in by_arch.items()}
    file_layer = {a: m["layers"][1]["digest"] for a, m in manifests.items()}  # base, file, pip
    assert file_layer["amd64"] == file_layer["arm64"] == amd.layers[1].digest
    assert manifests["amd64"]["layers"][2]["digest"] != manifests["arm64"]["layers"][2]["digest"]

    for arch, machine in (("arm64", "aarch64"), ("amd64", "x86_64")):
        pull = subprocess.run(["docker", "pull", "--platform", f"linux/{arch}", ref],
                              capture_output=True, text=True, check=False)
        assert pull.returncode == 0, pull.stderr
        assert docker_client.images.get(ref).attrs["Architecture"] == arch
        out = subprocess.run(["docker", "run", "--rm", "--network", "none", ref],
                             capture_output=True, text=True, check=False, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [machine, NUMPY.split("==")[1], "6"]
    docker_client.images.remove(ref, force=True)


def test_verify_checks_the_index_digest_and_every_platform(tmp_path, monkeypatch):
    built = _scratch_recipe(platforms=TWO).build("multi12:6")  # the user's store
    v = nbimages.verify(_scratch_recipe(platforms=TWO), built.index.digest)
    assert v.ok and v.matched == "index digest"
    assert [n.split(":")[0] for n in v.notes] == TWO
    other = _scratch_recipe(platforms=TWO)
    other.env(APP="2")
    bad = nbimages.verify(other, built.index.digest)
    assert not bad.ok and sum("DIFFERS" in n for n in bad.notes) == 2


def test_inspect_and_diff_two_platforms_of_one_image(tmp_path):
    store = Store(tmp_path)
    r = _scratch_recipe(platforms=TWO)
    r.label(arch="same")
    img = r.build("multi12:7", store=store)
    arm = nbimages.inspect(img, platform="linux/arm64")
    assert arm.image.platform.architecture == "arm64"
    amd = nbimages.inspect(img, platform="linux/amd64")
    assert amd.diff(arm).empty  # the same files: only the config's architecture differs
    ex = nbimages.explore(img, platform="linux/amd64", diff_platform="linux/arm64")
    assert ex.other.image.platform.architecture == "arm64" and ex.diff.empty


def test_run_step_for_a_foreign_platform_needs_the_engine_asked_for(
        multiplatform_python_base, tmp_path, docker_client):
    r = nbimages.Recipe(multiplatform_python_base, platform="linux/arm64")
    r.run("uname -m > /arch")
    with pytest.raises(BuildError, match="not this machine's platform .* engine='docker'"):
        r.build("multi12:run", store=Store(tmp_path))
    # Asked for: the engine runs the arm64 RUN through binfmt/QEMU.
    img = r.build("nbtest12/run-arm64:1", engine="docker", store=Store(tmp_path))
    try:
        assert img.platform.architecture == "arm64"
        out = docker_client.containers.run("nbtest12/run-arm64:1", ["cat", "/arch"],
                                           remove=True, network_mode="none")
        assert out.decode().strip() == "aarch64"
    finally:
        docker_client.images.remove("nbtest12/run-arm64:1", force=True)
        # the engine pulled the base's arm64 half for the build: not a base for later builds
        _drop_from_engine(docker_client, multiplatform_python_base)


def test_magic_from_platform_list_builds_an_index(ip, capsys):
    from nbimages.workflow import session
    session.reset()
    try:
        for source, cell_id in (("%image from scratch --platform linux/amd64,linux/arm64", "p1"),
                                ("%%image file /app/hello.txt\nhello\n", "p2"),
                                ("%image build magic12/multi:1", "p3")):
            result = ip.run_cell(source, store_history=True, cell_id=cell_id)
            assert result.error_in_exec is None, result.error_in_exec
        img = result.result
        assert [str(p) for p in img.index.platforms] == TWO
        out = capsys.readouterr().out
        assert "linux/arm64" in out and "shared" in out  # the report, a column per platform
    finally:
        session.reset()


def test_a_notebook_builds_records_and_verifies_its_index(tmp_path):
    from test_notebook_build import write_notebook
    nb = write_notebook(tmp_path / "multi.ipynb", "%load_ext nbimages",
                        "%image from scratch --platform linux/amd64,linux/arm64",
                        "%%image file /app/hello.txt\nhello",
                        "img = %image build nbtest12/notebook:1")
    img = nbimages.build_notebook(nb)
    record = json.loads(nb.read_text())["metadata"]["nbimages"]
    assert record["digest"] == img.index.digest
    assert set(record["platforms"]) == set(TWO)
    assert nbimages.open_image("store:nbtest12/notebook:1", platform="linux/arm64").index
    v = nbimages.verify(nb)
    assert v.ok and v.matched == "index digest"


def test_every_platform_keeps_the_image_contract_through_save_and_push(tmp_path, registry):
    img = _scratch_recipe(platforms=TWO).build("multi12:8", store=Store(tmp_path / "s"))
    oci = img.save(tmp_path / "multi.tar", format="oci")
    layout = img.save(tmp_path / "layout", format="oci-dir")
    ref = f"{registry}/nbtest12/contract:1"
    assert nbimages.push(img, ref, progress=False) == img.index.digest
    for plat, built in zip(TWO, img.index.images):
        nbimages.validate_image(built)
        for source in (f"oci-archive:{oci}", f"oci:{layout}", f"docker://{ref}"):
            opened = nbimages.open_image(source, platform=plat)
            nbimages.validate_image(opened)
            assert opened.digest == built.digest, (source, plat)


def test_platforms_all_takes_every_platform_of_the_base(tmp_path):
    store = Store(tmp_path / "s")
    base = _scratch_recipe(platforms=TWO).build("multi12:base", store=store)
    layout = base.save(tmp_path / "base", format="oci-dir", tag="base")
    r = nbimages.Recipe(f"oci:{layout}:base", platforms="all")
    r.file("/app/more.txt", "more\n")
    img = r.build("multi12:on-top", store=store)
    assert [str(p) for p in img.index.platforms] == TWO
    for below, above in zip(base.index.images, img.index.images):
        assert above.diff_ids[:1] == below.diff_ids and above.platform == below.platform
    with pytest.raises(BuildError, match="scratch"):
        _scratch_recipe(platforms="all").build("multi12:x", store=store)


def test_a_platform_the_base_lacks_is_one_clear_error(tmp_path):
    store = Store(tmp_path / "s")
    single = _scratch_recipe(platform="linux/amd64").build("multi12:single", store=store)
    layout = single.save(tmp_path / "single", format="oci-dir", tag="one")
    r = nbimages.Recipe(f"oci:{layout}:one", platforms=TWO)
    r.file("/x", "x")
    with pytest.raises(BuildError, match="cannot be built for linux/arm64"):
        r.build("multi12:y", store=store)
    assert "multi12:y" not in store.names()

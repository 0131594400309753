"""The Python-packages layer: resolve wheels for the image's Python, install them reproducibly."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from bases import download_wheels, image_from_tars, python_base_oci, tar_tree
from conftest import docker_build, run
from nbimages.builder import pip as nbpip
from nbimages.builder.pip import install_layer_tree
from nbimages.errors import BuildError


def make_wheel(directory: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
               console: dict[str, str] | None = None, data_scripts: dict[str, str] | None = None,
               tag: str = "py3-none-any") -> Path:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) written with fixed zip timestamps."""
    dist = f"{name}-{version}"
    info = f"{dist}.dist-info"
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n"}
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires))
    files[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: nbimages-tests\n"
                              f"Root-Is-Purelib: true\nTag: {tag}\n")
    if console:
        files[f"{info}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in console.items())
    for script, text in (data_scripts or {}).items():
        files[f"{dist}.data/scripts/{script}"] = text
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    out = directory / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zi = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            zi.external_attr = (0o755 if "/scripts/" in path else 0o644) << 16
            zf.writestr(zi, text)
    return out


def python_image(tmp_path: Path, version: str = "3.12"):
    """A python:X-slim-like base (layers only; nothing runs it)."""
    entries = {
        "lib/x86_64-linux-gnu/libc.so.6": b"GNU C Library (GLIBC) stable release version 2.36.",
        f"usr/local/bin/python{version}": b"\x7fELF",
        f"usr/local/lib/python{version}/os.py": b"#",
        f"usr/local/lib/python{version}/site.py": b"#",
    }
    tar = tmp_path / f"base-{version}.tar"
    with tarfile.open(tar, "w") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("usr/local/bin/python3")
        link.type, link.linkname = tarfile.SYMTYPE, f"python{version}"
        tf.addfile(link)
    return image_from_tars([tar], env=["PATH=/usr/local/bin:/usr/bin:/bin"])


@pytest.fixture
def links(tmp_path, offline_pip):
    """A find-links directory of made-up wheels; pip sees no other configuration."""
    d = tmp_path / "links"
    d.mkdir()
    make_wheel(d, "demo", "1.0", requires=("helper>=2", 'backport; python_version < "3.10"',
                                           'modern; python_version >= "3.10"'),
               console={"demo-cli": "demo:main"},
               data_scripts={"demo-tool": "#!python\nprint('tool')\n"})
    make_wheel(d, "helper", "2.1")
    make_wheel(d, "helper", "1.0")
    make_wheel(d, "backport", "1.0")
    make_wheel(d, "modern", "1.0")
    return d


def tree_bytes(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)):
            (p.stat().st_mode & 0o111, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def test_install_names_the_image_interpreter_and_image_paths(tmp_path, links, wheel_index):
    dest = tmp_path / "stage"
    pins = install_layer_tree(python_image(tmp_path), ["demo"], dest, index_url=wheel_index.url,
                              find_links=[str(links)])
    assert [(p["name"], p["version"]) for p in pins] == [("demo", "1.0"), ("helper", "2.1"),
                                                         ("modern", "1.0")]
    assert pins[0]["wheel"] == "demo-1.0-py3-none-any.whl"
    assert pins[0]["sha256"] == hashlib.sha256((links / pins[0]["wheel"]).read_bytes()).hexdigest()
    site = dest / "usr/local/lib/python3.12/site-packages"
    assert (site / "demo/__init__.py").read_text() == "VERSION = '1.0'\n"
    cli = (dest / "usr/local/bin/demo-cli").read_text()
    assert cli.startswith("#!/usr/local/bin/python3\n")
    assert (dest / "usr/local/bin/demo-tool").read_text().startswith("#!/usr/local/bin/python3\n")
    record = (site / "demo-1.0.dist-info/RECORD").read_text()
    assert "../../../bin/demo-cli,sha256=" in record and "../../../bin/demo-tool,sha256=" in record
    assert (site / "demo-1.0.dist-info/INSTALLER").read_text() == "nbimages\n"
    assert (site / "demo-1.0.dist-info/REQUESTED").exists()
    assert not (site / "helper-2.1.dist-info/REQUESTED").exists()
    assert not [p for p in dest.rglob("*") if p.suffix == ".pyc" or p.name == "__pycache__"]


def test_two_installs_are_byte_identical(tmp_path, links, wheel_index):
    base = python_image(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    opts = {"index_url": wheel_index.url, "find_links": [str(links)]}
    pins_a = install_layer_tree(base, ["demo"], a, **opts)
    pins_b = install_layer_tree(base, ["demo"], b, **opts)
    assert pins_a == pins_b
    assert tree_bytes(a) == tree_bytes(b)
    assert len(tree_bytes(a)) > 10


def test_markers_are_evaluated_for_the_image_python_not_the_kernels(tmp_path, links, wheel_index):
    # The kernel runs 3.10+; the image runs 3.9: backport is needed there, modern is not.
    pins = install_layer_tree(python_image(tmp_path, "3.9"), ["demo"], tmp_path / "s",
                              index_url=wheel_index.url, find_links=[str(links)])
    assert [p["name"] for p in pins] == ["backport", "demo", "helper"]
    assert (tmp_path / "s/usr/local/lib/python3.9/site-packages/backport/__init__.py").exists()


def test_rebuild_takes_wheels_from_the_cache_without_downloading(tmp_path, links, wheel_index,
                                                                 monkeypatch):
    base = python_image(tmp_path)
    install_layer_tree(base, ["demo"], tmp_path / "1", index_url=wheel_index.url,
                       find_links=[str(links)])
    calls = []
    real = nbpip._pip
    monkeypatch.setattr(nbpip, "_pip", lambda args, **kw: calls.append(args[0]) or real(args, **kw))
    install_layer_tree(base, ["demo"], tmp_path / "2", index_url=wheel_index.url,
                       find_links=[str(links)])
    assert "download" not in calls
    cached = sorted(p.name for p in nbpip.wheel_cache().glob("*/*.whl"))
    assert cached == ["demo-1.0-py3-none-any.whl", "helper-2.1-py3-none-any.whl",
                      "modern-1.0-py3-none-any.whl"]


def test_unknown_package_is_a_build_error_with_pips_reason(tmp_path, links, wheel_index):
    with pytest.raises(BuildError) as e:
        install_layer_tree(python_image(tmp_path), ["no-such-package-nbimages==1.0"],
                           tmp_path / "s", index_url=wheel_index.url, find_links=[str(links)])
    msg = str(e.value)
    assert "could not resolve" in msg and "No matching distribution found" in msg
    assert "\n" not in msg


def test_conflicting_versions_are_a_build_error(tmp_path, links, wheel_index):
    with pytest.raises(BuildError) as e:
        install_layer_tree(python_image(tmp_path), ["demo", "helper<2"], tmp_path / "s",
                           index_url=wheel_index.url, find_links=[str(links)])
    assert "could not resolve demo, helper<2" in str(e.value)
    assert "demo 1.0 depends on helper>=2" in str(e.value)


def test_package_without_a_wheel_for_the_image_suggests_the_engine(tmp_path, links, wheel_index):
    sdist = links / "onlysource-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        data = b"Metadata-Version: 2.1\nName: onlysource\nVersion: 1.0\n"
        ti = tarfile.TarInfo("onlysource-1.0/PKG-INFO")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    with pytest.raises(BuildError) as e:
        install_layer_tree(python_image(tmp_path), ["onlysource"], tmp_path / "s",
                           index_url=wheel_index.url, find_links=[str(links)])
    msg = str(e.value)
    assert "onlysource has no wheel for the image's Python" in msg
    assert "RUN pip install onlysource" in msg


@pytest.mark.parametrize("bad", ["-r requirements.txt", "pandas===", "pan das"])
def test_options_and_malformed_requirements_are_refused_before_pip_runs(tmp_path, bad):
    with pytest.raises(BuildError, match="requirement"):
        install_layer_tree(python_image(tmp_path), [bad], tmp_path / "s")
    assert not (tmp_path / "s").exists()


@pytest.mark.engine
@pytest.mark.slow
def test_pandas_layer_imports_in_the_real_engine(tmp_path, offline_pip, wheel_index,
                                                 python_base_image, docker_client):
    download_wheels(["pandas"])  # on the host, once per machine (about 30 MB)
    base = python_base_oci()  # the same root filesystem the engine image was imported from
    stage = tmp_path / "stage"
    pins = install_layer_tree(base, ["pandas"], stage, index_url=wheel_index.url)
    names = {p["name"]: p["version"] for p in pins}
    assert {"pandas", "numpy"} <= set(names)
    assert not [p for p in stage.rglob("*.pyc")]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    tar_tree(stage, ctx / "layer.tar")
    docker_build(docker_client, ctx, "nbtest/pip-pandas:1",
                 f"FROM {python_base_image}\nADD layer.tar /\n")
    code = ("import pandas, numpy; print(pandas.__version__, numpy.__version__, pandas.__file__, "
            "open('/usr/local/bin/f2py').readline().strip())")
    out = docker_client.containers.run("nbtest/pip-pandas:1", ["python3", "-c", code],
                                       network_mode="none", remove=True).decode().split()
    assert out[:2] == [names["pandas"], names["numpy"]]
    assert out[2].startswith("/usr/local/lib/python3.11/dist-packages/pandas/")
    assert out[3] == "#!/usr/bin/python3"


@pytest.mark.engine
@pytest.mark.registry
@pytest.mark.slow
def test_recipe_pip_step_builds_an_image_that_imports_pandas_in_the_engine(
        tmp_path, offline_pip, wheel_index, python_base_in_registry, docker_client):
    from nbimages.builder.recipe import Recipe

    download_wheels(["pandas"])
    img = Recipe(python_base_in_registry).pip("pandas", index_url=wheel_index.url) \
        .build("nbtest/pip-recipe:1")
    pins = json.loads(img.labels["org.nbimages.pip"])
    versions = {p["name"]: p["version"] for p in pins}
    assert {"pandas", "numpy"} <= set(versions) and all(len(p["sha256"]) == 64 for p in pins)
    out = tmp_path / "image.tar"
    img.save(out, format="docker", tag="nbtest/pip-recipe:1")
    run(["docker", "load", "-i", str(out)])
    code = "import pandas, numpy; print(pandas.__version__, numpy.__version__)"
    text = docker_client.containers.run("nbtest/pip-recipe:1", ["python3", "-c", code],
                                        network_mode="none", remove=True).decode().split()
    assert text == [versions["pandas"], versions["numpy"]]


def test_a_kernel_pip_too_old_to_honour_the_image_python_is_a_clear_error(tmp_path, links,
                                                                           wheel_index, monkeypatch):
    monkeypatch.setattr(nbpip, "_pip_version", lambda executable: (24, 0))
    with pytest.raises(BuildError, match=r"24\.2 or newer.*pip 24\.0.*install -U pip"):
        install_layer_tree(python_image(tmp_path), ["nbdemo"], tmp_path / "root",
                           index_url=wheel_index.url, find_links=[str(links)])
    assert not any((tmp_path / "root").rglob("*.py"))

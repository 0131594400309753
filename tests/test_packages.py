"""Package sizes from the image's own databases: parsers on real database files, then images
built by the real engine, checked against the files we put in and against syft."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import posixpath
import random
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from bases import _TRIM as TRIMMED
from bases import CACHE
from conftest import docker_build, run, tool

from nbimages.analysis import packages as pk
from nbimages.analysis.packages import DbVersion, FileRow, FinalFS

VENV_SITE = Path(sys.executable).parent.parent / f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
HOST_STATUS = Path("/var/lib/dpkg/status")
SITE = "usr/lib/python3.11/site-packages"
LOCAL_SITE = "usr/local/lib/python3.11/site-packages"


# ---------------------------------------------------------------------------------------------
# Parsers on real database files


def test_dpkg_status_parser_reads_every_installed_package_of_this_machine():
    text = HOST_STATUS.read_text()
    expected = {(m["p"], m["v"]) for m in re.finditer(
        r"^Package: (?P<p>\S+)\n(?:(?!\n\n).)*?^Status: \S+ \S+ installed\n(?:(?!\n\n).)*?^Version: (?P<v>\S+)",
        text, re.MULTILINE | re.DOTALL)}
    records = pk.parse_dpkg_status(text)
    assert {(r.name, r.version) for r in records} == expected
    assert len(records) > 20
    assert all(r.installed_size is not None and r.arch for r in records)


def test_dpkg_status_parser_skips_removed_packages_that_left_config_files():
    text = ("Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n\n"
            "Package: kept\nStatus: install ok installed\nInstalled-Size: 12\nVersion: 2\n"
            "Architecture: amd64\nDescription: kept\n more text\n")
    [rec] = pk.parse_dpkg_status(text)
    assert (rec.name, rec.version, rec.arch, rec.installed_size) == ("kept", "2", "amd64", 12)


def test_record_sizes_match_the_installed_files_of_this_venv():
    dist = next(VENV_SITE.glob("pandas-*.dist-info"))
    entries = pk.parse_record((dist / "RECORD").read_text())
    sized = [(p, s) for p, s in entries if s is not None]
    assert len(sized) > 100
    for rel, size in sized:
        assert (VENV_SITE / rel).stat().st_size == size, rel
    # pip leaves the size empty for RECORD itself.
    assert (f"{dist.name}/RECORD", None) in entries


def test_metadata_headers_give_name_and_version_and_stop_at_the_body():
    dist = next(VENV_SITE.glob("pandas-*.dist-info"))
    fields = pk.parse_headers((dist / "METADATA").read_text())
    assert fields["Name"] == "pandas"
    assert dist.name == f"pandas-{fields['Version']}.dist-info"
    assert "Description" not in fields or "\n\n" not in fields["Description"]


APK_DB = """\
C:Q1p78yvTLG094tjE1+kGLZGNUEfWM=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407986
I:657408
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1n8bOxNMxKXOr2mYD1Bp2cxMbsYU=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1Qr6Kd2LzC8pnqrYoNXd7Ph6Wm7o=
P:busybox-binsh
V:1.36.1-r15
A:x86_64
S:1543
I:1
F:bin
R:sh
a:0:0:777
"""


def test_apk_parser_joins_file_names_to_their_directory():
    musl, binsh = pk.parse_apk_installed(APK_DB)
    assert (musl.name, musl.version, musl.arch, musl.installed_size) == (
        "musl", "1.2.4_git20230717-r4", "x86_64", 657408)
    assert musl.files == ["lib/ld-musl-x86_64.so.1", "lib/libc.musl-x86_64.so.1"]
    assert binsh.files == ["bin/sh"]


def test_database_predicate_selects_only_database_files():
    yes = ["var/lib/dpkg/status", "/var/lib/dpkg/info/libc6:amd64.list", "lib/apk/db/installed",
           f"{SITE}/idna-3.7.dist-info/RECORD", f"{SITE}/idna-3.7.dist-info/METADATA",
           "usr/lib/python3/dist-packages/crcmod-1.7.egg-info/PKG-INFO",
           "opt/venv/lib/python3.12/site-packages/pip-24.0.dist-info/RECORD",
           "usr/lib/python3/dist-packages/distro-1.0.egg-info",
           "./var/lib/dpkg/status.d/base"]
    no = ["var/lib/dpkg/status-old", "var/lib/dpkg/info/libc6:amd64.md5sums",
          f"{SITE}/idna-3.7.dist-info/WHEEL", f"{SITE}/idna/core.py",
          f"{SITE}/setuptools/_vendor/packaging-24.0.dist-info/RECORD",
          "home/me/idna-3.7.dist-info/RECORD", "var/lib/dpkg/status.d/x/y"]
    assert [p for p in yes if not pk.is_database_path(p)] == []
    assert [p for p in no if pk.is_database_path(p)] == []


# ---------------------------------------------------------------------------------------------
# Following records through layers (pure functions)


def _para(name, version, arch="amd64", size=10):
    return (f"Package: {name}\nStatus: install ok installed\nInstalled-Size: {size}\n"
            f"Architecture: {arch}\nVersion: {version}\n")


def _status(*paras):
    return "\n".join(paras).encode()


def test_a_record_keeps_the_layer_that_wrote_it_when_a_later_layer_rewrites_the_database():
    versions = [
        DbVersion(0, "var/lib/dpkg/status", _status(_para("a", "1"), _para("b", "1"))),
        DbVersion(2, "var/lib/dpkg/status", _status(_para("a", "1"), _para("b", "2"), _para("c", "1"))),
        DbVersion(3, "var/lib/dpkg/status", _status(_para("a", "1"), _para("c", "1"))),
    ]
    frame = pk.to_frame(pk.find_packages(versions))
    got = {(r.name, r.version): r.layer for r in frame.itertuples()}
    assert got == {("a", "1"): 0, ("c", "1"): 2}  # b was upgraded in 2, then removed in 3


def test_a_package_reinstalled_after_removal_belongs_to_the_reinstalling_layer():
    para = _para("a", "1")
    versions = [DbVersion(0, "var/lib/dpkg/status", _status(para)),
                DbVersion(1, "var/lib/dpkg/status", b""),
                DbVersion(4, "var/lib/dpkg/status", _status(para))]
    [p] = pk.find_packages(versions)
    assert p.layer == 4


def test_holding_a_package_does_not_move_it_to_a_later_layer():
    held = _para("a", "1").replace("install ok", "hold ok")
    versions = [DbVersion(0, "var/lib/dpkg/status", _status(_para("a", "1"))),
                DbVersion(5, "var/lib/dpkg/status", _status(held))]
    [p] = pk.find_packages(versions)
    assert p.layer == 0


def test_a_deleted_dist_info_directory_removes_the_distribution():
    d = f"{SITE}/x-1.dist-info"
    versions = [DbVersion(1, f"{d}/METADATA", b"Name: x\nVersion: 1\n"),
                DbVersion(1, f"{d}/RECORD", b"x.py,,3\n"),
                DbVersion(2, d, None)]
    assert pk.find_packages(versions) == []


def test_whiteouts_of_a_layer_apply_before_its_own_files_whatever_the_tar_order():
    d = f"{SITE}/x-1.dist-info"
    entries = [(1, Entry(f"{d}/RECORD", b"x.py,,3\n")),
               (1, Entry(f"{d}/METADATA", b"Name: x\nVersion: 1\n")),
               (2, Entry(f"{d}/RECORD", b"x.py,,4\n")),  # rewritten, then the layer's
               (2, Entry(f"{d}/.wh..wh..opq", b"")),      # opaque marker comes later in its tar
               (3, Entry(f"./{SITE}/.wh.y-1.dist-info", b""))]
    versions = list(pk.database_versions(entries))
    assert [(v.layer, v.path, v.data is None) for v in versions] == [
        (1, f"{d}/RECORD", False), (1, f"{d}/METADATA", False),
        (2, d, True), (2, f"{d}/RECORD", False), (3, f"{SITE}/y-1.dist-info", True)]
    [p] = pk.find_packages(versions)
    assert (p.name, p.version, p.layer) == ("x", "1", 2)  # METADATA went with the opaque dir


def test_usrmerged_paths_of_dpkg_lists_are_found_behind_the_bin_link():
    fs = FinalFS({"bin": FileRow("symlink", 0, 0, "usr/bin"), "usr/bin/ls": FileRow("file", 7, 3),
                  "lib64": FileRow("symlink", 0, 0, "/usr/lib64"),
                  "usr/lib64/ld.so": FileRow("file", 5, 3)})
    assert fs.resolve("/bin/ls") == "usr/bin/ls"
    assert fs.resolve("/lib64/ld.so") == "usr/lib64/ld.so"
    assert fs.resolve("/bin/cat") is None
    # Without link targets in the table, the usrmerge layout is assumed for the classic links.
    bare = FinalFS({"bin": FileRow("symlink", 0, 0), "usr/bin/ls": FileRow("file", 7, 3)})
    assert bare.resolve("bin/ls") == "usr/bin/ls"


# ---------------------------------------------------------------------------------------------
# A layer walk over `docker save` with the stdlib (tests only; the product has its own)


@dataclass
class Saved:
    tag: str
    tar: Path
    diff_ids: list[str]
    versions: list[DbVersion]
    rows: dict[str, FileRow]

    def packages(self) -> pd.DataFrame:
        return pk.to_frame(pk.find_packages(self.versions, FinalFS(self.rows)))


@dataclass
class Entry:  # the two fields of a TarEntry that packages reads
    path: str
    data: bytes | None


def _kind(m: tarfile.TarInfo) -> str:
    return ("dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk()
            else "file" if m.isfile() else "other")


def save_and_walk(client, tag: str, dest: Path) -> Saved:
    """`docker save` the image, then replay its layers: final file table and database versions."""
    with open(dest, "wb") as f:
        f.writelines(client.images.get(tag).save(named=True))
    rows: dict[str, FileRow] = {}
    handed: list[tuple[int, Entry]] = []  # what a layer walk hands to pk.database_versions
    with tarfile.open(dest) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        for index, name in enumerate(manifest["Layers"]):
            with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                members = layer.getmembers()
                for m in members:  # whiteouts apply to the layers below, before additions
                    d, base = posixpath.split(pk.norm(m.name))
                    if base.startswith(".wh."):
                        gone = d if base == ".wh..wh..opq" else posixpath.join(d, base[4:])
                        for p in [p for p in rows if p.startswith(gone + "/") or p == gone != d]:
                            del rows[p]
                for m in members:
                    path = pk.norm(m.name)
                    if m.isfile() and pk.wanted(path):
                        handed.append((index, Entry(m.name, layer.extractfile(m).read())))
                    if path and not posixpath.basename(path).startswith(".wh."):
                        rows[path] = FileRow(_kind(m), m.size, index, m.linkname)
    versions = list(pk.database_versions(handed))
    return Saved(tag, dest, config["rootfs"]["diff_ids"], versions, rows)


def syft(target: str, *args: str) -> list[dict]:
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false")
    out = run([tool("syft"), "scan", target, "-o", "syft-json", "-q", *args], env=env).stdout
    return json.loads(out)["artifacts"]


def _by_type(frame: pd.DataFrame, typ: str) -> set[tuple[str, str]]:
    return {(r.name, r.version) for r in frame[frame.type == typ].itertuples()}


def _syft_by_type(artifacts: list[dict], typ: str) -> set[tuple[str, str]]:
    return {(a["name"], a["version"]) for a in artifacts if a["type"] == typ}


# ---------------------------------------------------------------------------------------------
# Python: wheels installed by the real pip, copied into image layers


def _wheel(dest: Path, name: str, version: str, payload: int) -> Path:
    """A minimal valid pure-Python wheel with `payload` bytes of module text."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{name}/data.py": b"# " + b"x" * payload + b"\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: nbimages-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist}/RECORD", "", ""])
    files[f"{dist}/RECORD"] = record.getvalue().encode()
    whl = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return whl


def _pip_install(target: Path, *wheels: Path) -> None:
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), *map(str, wheels)])


def _copy_installed(dist_name: str, target: Path) -> None:
    """Copy a distribution installed in this venv (its RECORD's files) into `target`."""
    dist = next(VENV_SITE.glob(f"{dist_name}-*.dist-info"))
    for rel, _ in pk.parse_record((dist / "RECORD").read_text()):
        src = VENV_SITE / rel
        if src.is_file() and not rel.startswith(".."):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / rel)


def _tree_size(root: Path, *tops: str) -> int:
    total = 0
    for top in tops:
        for p in (root / top).rglob("*"):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def _egg_infos(site: Path) -> dict[str, int]:
    """Three setuptools/distutils-era installs into `site`; returns their expected sizes."""
    def put(rel: str, data: bytes) -> int:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(data)
        return len(data)
    info = "nbegg-1.1-py3.11.egg-info"
    sizes = {"nbegg": put("nbegg/__init__.py", b"a" * 7_000) + put("nbegg/big.py", b"b" * 9_000)}
    listed = ["../nbegg/__init__.py", "../nbegg/big.py", "PKG-INFO", "top_level.txt"]
    sizes["nbegg"] += put(f"{info}/PKG-INFO", b"Metadata-Version: 1.1\nName: nbegg\nVersion: 1.1\n")
    sizes["nbegg"] += put(f"{info}/top_level.txt", b"nbegg\n")
    sizes["nbegg"] += put(f"{info}/installed-files.txt", ("\n".join(listed) + "\n").encode())
    put(f"{info}/SOURCES.txt", b"setup.py\n")  # not installed-files.txt-listed: not counted
    sizes["nbegg"] -= len(("\n".join(listed) + "\n").encode())  # nor is the list itself
    sizes["nbtop"] = (put("nbtop.egg-info/PKG-INFO", b"Name: nbtop\nVersion: 0.3\n")
                      + put("nbtop.egg-info/top_level.txt", b"nbtop\nnbtop_ext\n")
                      + put("nbtop/__init__.py", b"c" * 3_000)
                      + put("nbtop_ext.cpython-311-x86_64-linux-gnu.so", b"d" * 11_000))
    put("nbtop_helper.py", b"not in top_level.txt\n")
    sizes["nbold"] = put("nbold-0.1-py3.11.egg-info", b"Metadata-Version: 1.0\nName: nbold\nVersion: 0.1\n")
    put("nbold.py", b"e" * 500)
    return sizes


@pytest.fixture(scope="session")
def python_image(docker_client, busybox_image, tmp_path_factory):
    """busybox + Python distributions over six layers:

    2: COPY site-packages: nbdemo 1.0, nbgone 1.0, nbup 1.0 (pip), idna (copied from this venv)
    3: COPY /usr/local/.../site-packages: nbdemo 2.0 (a second version, another site dir)
    4: RUN rm nbgone                5: RUN overwrite idna/core.py with 100 kB
    6: RUN rm nbup 1.0              7: COPY nbup 2.0 (the upgrade)
    8: COPY egg-info installs: with installed-files.txt, with top_level.txt only, a lone file
    """
    ctx = tmp_path_factory.mktemp("pyimg")
    wheels = ctx / "wheels"
    wheels.mkdir()
    site1, site2, site3 = ctx / "site1", ctx / "site2", ctx / "site3"
    _pip_install(site1, _wheel(wheels, "nbdemo", "1.0", 30_000),
                 _wheel(wheels, "nbgone", "1.0", 20_000), _wheel(wheels, "nbup", "1.0", 10_000))
    _copy_installed("idna", site1)
    _pip_install(site2, _wheel(wheels, "nbdemo", "2.0", 50_000))
    _pip_install(site3, _wheel(wheels, "nbup", "2.0", 40_000))
    shutil.rmtree(wheels)
    eggs = _egg_infos(ctx / "eggs")
    tag = "nbtest/packages-python:1"
    docker_build(docker_client, ctx, tag, f"""\
FROM {busybox_image}
COPY site1/ /{SITE}/
COPY site2/ /{LOCAL_SITE}/
RUN rm -rf /{SITE}/nbgone /{SITE}/nbgone-1.0.dist-info
RUN head -c 100000 /bin/busybox > /{SITE}/idna/core.py
RUN rm -rf /{SITE}/nbup /{SITE}/nbup-1.0.dist-info
COPY site3/ /{SITE}/
COPY eggs/ /{SITE}/
""")
    saved = save_and_walk(docker_client, tag, ctx / "image.tar")
    idna = next(site1.glob("idna-*.dist-info"))
    expected = {
        "nbdemo-1.0": _tree_size(site1, "nbdemo", "nbdemo-1.0.dist-info"),
        "nbdemo-2.0": _tree_size(site2, "nbdemo", "nbdemo-2.0.dist-info"),
        "nbup-2.0": _tree_size(site3, "nbup", "nbup-2.0.dist-info"),
        "idna": _tree_size(site1, "idna", idna.name) - (site1 / "idna/core.py").stat().st_size + 100_000,
        "idna-version": idna.name[len("idna-"):-len(".dist-info")],
        **eggs,
    }
    return saved, expected


def test_python_distributions_are_sized_from_their_files_with_the_installing_layer(python_image):
    saved, expected = python_image
    frame = saved.packages()
    py = frame[frame.type == "python"].set_index(["name", "version"])
    assert set(py.index) == {("nbdemo", "1.0"), ("nbdemo", "2.0"), ("nbup", "2.0"),
                             ("idna", expected["idna-version"]), ("nbegg", "1.1"),
                             ("nbtop", "0.3"), ("nbold", "0.1")}
    assert py.loc[("nbdemo", "1.0"), "size"] == expected["nbdemo-1.0"]
    assert py.loc[("nbdemo", "2.0"), "size"] == expected["nbdemo-2.0"]
    assert py.loc[("nbup", "2.0"), "size"] == expected["nbup-2.0"]
    assert py.loc[("nbdemo", "1.0"), "layer"] == 2
    assert py.loc[("nbdemo", "2.0"), "layer"] == 3
    assert py.loc[("nbdemo", "2.0"), "location"] == f"/{LOCAL_SITE}/nbdemo-2.0.dist-info"
    assert py.loc[("nbup", "2.0"), "layer"] == 7  # upgraded: the new version's layer


def test_egg_info_installs_are_sized_from_their_file_list_or_top_level_modules(python_image):
    saved, expected = python_image
    py = saved.packages().query("type == 'python'").set_index("name")
    for name in ("nbegg", "nbtop", "nbold"):
        assert py.loc[name, "size"] == expected[name], name
        assert py.loc[name, "layer"] == 8
    assert py.loc["nbegg", "files"] == 4
    assert py.loc["nbold", "location"] == f"/{SITE}/nbold-0.1-py3.11.egg-info"


def test_a_file_overwritten_later_counts_with_its_final_size_and_layer(python_image):
    saved, expected = python_image
    frame = saved.packages()
    idna = frame[frame.name == "idna"].iloc[0]
    assert idna["size"] == expected["idna"]
    assert idna["layer"] == 2
    assert idna["layers"] == [2, 5]
    assert idna["missing_files"] == 1  # its console script ../../../bin/idna was not copied
    assert frame["size"].is_monotonic_decreasing


def test_python_names_and_versions_agree_with_syft(python_image):
    saved, _ = python_image
    frame = saved.packages()
    artifacts = syft(f"docker-archive:{saved.tar}")
    assert _by_type(frame, "python") == _syft_by_type(artifacts, "python")
    # syft's evidence for each distribution sits in the layer we attribute it to.
    for a in (a for a in artifacts if a["type"] == "python"):
        ours = frame[(frame.name == a["name"]) & (frame.version == a["version"])]
        layers = {saved.diff_ids.index(loc["layerID"]) for loc in a["locations"]}
        assert layers == {int(ours["layer"].iloc[0])}, a["name"]


# ---------------------------------------------------------------------------------------------
# Debian: real dpkg in layers over the debootstrap base (usrmerged: /lib -> usr/lib)

DEB_CACHE = CACHE / "debs"


def _apt_versions(name: str) -> list[str]:
    """Versions of `name` the host's apt knows, newest first (`apt-cache madison`)."""
    out = run(["apt-cache", "madison", name]).stdout
    versions = [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]
    assert versions, f"apt on this machine knows no {name} package: run apt-get update"
    return sorted(set(versions), key=versions.index)


def _apt_download(name: str, version: str) -> Path:
    """The .deb of name=version, downloaded on the host once into the test cache."""
    import filelock
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(DEB_CACHE / ".lock"), timeout=600):
        for deb in DEB_CACHE.glob(f"{name}_*.deb"):
            if _deb_field(deb, "Version") == version:
                return deb
        run(["apt-get", "download", "-q", f"{name}={version}"], cwd=DEB_CACHE)
    return next(d for d in DEB_CACHE.glob(f"{name}_*.deb") if _deb_field(d, "Version") == version)


def _deb_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "-f", str(deb), field]).stdout.strip()


def _deb_payload_size(deb: Path) -> int:
    """Bytes of the regular files in the package's data archive (what dpkg unpacks)."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return sum(m.size for m in tf if m.isreg())


@pytest.fixture(scope="session")
def deb_image(docker_client, python_base_image, tmp_path_factory):
    """The Debian base (layer 0) plus packages installed with dpkg in later layers:

    1: COPY the .debs               2: dpkg -i jq, libjq1, libonig5 (the older version if two)
    3: dpkg -i tree                 4: dpkg -i jq, libjq1 (the newest: an upgrade if two)
    5: dpkg --purge tree, rm the .debs
    """
    ctx = tmp_path_factory.mktemp("debimg")
    (ctx / "debs").mkdir()
    jq_versions = _apt_versions("jq")
    old, new = jq_versions[-1], jq_versions[0]
    debs = {}
    for key, name, version in [("jq-old", "jq", old), ("libjq1-old", "libjq1", old),
                               ("jq-new", "jq", new), ("libjq1-new", "libjq1", new),
                               ("libonig5", "libonig5", _apt_versions("libonig5")[0]),
                               ("tree", "tree", _apt_versions("tree")[0])]:
        debs[key] = _apt_download(name, version)
        shutil.copy(debs[key], ctx / "debs" / f"{key}.deb")
    tag = "nbtest/packages-deb:1"
    docker_build(docker_client, ctx, tag, f"""\
FROM {python_base_image}
COPY debs/ /tmp/debs/
RUN dpkg -i /tmp/debs/libonig5.deb /tmp/debs/libjq1-old.deb /tmp/debs/jq-old.deb
RUN dpkg -i /tmp/debs/tree.deb
RUN dpkg -i /tmp/debs/libjq1-new.deb /tmp/debs/jq-new.deb
RUN dpkg --purge tree && rm -rf /tmp/debs
""")
    saved = save_and_walk(docker_client, tag, ctx / "image.tar")
    return saved, {"old": old, "new": new, "debs": debs}


def test_debian_packages_carry_the_layer_where_dpkg_installed_them(deb_image):
    saved, info = deb_image
    frame = saved.packages()
    deb = frame[frame.type == "deb"].set_index("name")
    assert "tree" not in deb.index  # purged in layer 5
    assert deb.loc["libonig5", "layer"] == 2
    upgraded = info["old"] != info["new"]
    assert deb.loc["jq", "version"] == info["new"]
    assert deb.loc["jq", "layer"] == (4 if upgraded else 2)
    assert deb.loc["libjq1", "arch"] == "amd64"
    # Base packages were not touched by the rewrites of the status file in layers 2 to 5.
    assert deb.loc["libc6", "layer"] == 0
    assert deb.loc["python3.11-minimal", "layer"] == 0
    assert set(deb["layer"]) == ({0, 2, 4} if upgraded else {0, 2})


def test_debian_package_sizes_are_the_bytes_their_archives_unpacked(deb_image):
    saved, info = deb_image
    deb = saved.packages().query("type == 'deb'").set_index("name")
    for key, name in [("jq-new", "jq"), ("libjq1-new", "libjq1"), ("libonig5", "libonig5")]:
        assert deb.loc[name, "size"] == _deb_payload_size(info["debs"][key]), name
        assert deb.loc[name, "missing_files"] == 0, name
        declared = int(_deb_field(info["debs"][key], "Installed-Size")) * 1024
        assert deb.loc[name, "declared_size"] == declared
    # dpkg lists /lib/x86_64-linux-gnu/... while the files live behind the /lib -> usr/lib link;
    # only what the base trimmed after debootstrap (docs, man pages, locales) is missing.
    listed = next(v.data.decode() for v in saved.versions
                  if v.path == "var/lib/dpkg/info/libc6:amd64.list")
    paths = pk.parse_dpkg_list(listed)
    assert sum(p.startswith("/lib/") for p in paths) > 10
    trimmed = [p for p in paths if p.startswith(tuple(f"/{t}/" for t in TRIMMED))]
    assert deb.loc["libc6", "missing_files"] == len(trimmed)
    assert deb.loc["libc6", "size"] > 5_000_000


def test_debian_names_and_versions_agree_with_syft(deb_image):
    saved, _ = deb_image
    frame = saved.packages()
    artifacts = syft(f"docker-archive:{saved.tar}")
    ours = _by_type(frame, "deb")
    assert len(ours) > 80
    assert ours == _syft_by_type(artifacts, "deb")
    assert _by_type(frame, "python") == _syft_by_type(artifacts, "python")


def test_debian_layers_agree_with_where_syft_first_sees_each_version(deb_image):
    saved, _ = deb_image
    frame = saved.packages().query("type == 'deb'")
    first: dict[tuple[str, str], int] = {}
    for a in syft(f"docker-archive:{saved.tar}", "--scope", "all-layers"):
        for loc in a["locations"]:
            if a["type"] == "deb" and loc["path"] == "/var/lib/dpkg/status":
                key, layer = (a["name"], a["version"]), saved.diff_ids.index(loc["layerID"])
                first[key] = min(first.get(key, layer), layer)
    ours = {(r.name, r.version): r.layer for r in frame.itertuples()}
    assert ours == {k: first[k] for k in ours}
    assert "tree" in {name for name, _ in set(first) - set(ours)}  # syft saw it before the purge


# ---------------------------------------------------------------------------------------------
# Alpine: apk's installed database with the files it lists


def _apk_record(name: str, version: str, files: dict[str, bytes]) -> str:
    """An apk-tools v2 record for `files` (path -> content), with checksums as apk writes them."""
    def q1(data: bytes) -> str:
        return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()
    lines = [f"C:{q1(name.encode() + version.encode())}", f"P:{name}", f"V:{version}",
             "A:x86_64", f"S:{sum(map(len, files.values())) // 2}",
             f"I:{sum(map(len, files.values()))}", f"T:{name} for the nbimages tests",
             "U:https://example.invalid/", "L:MIT", f"o:{name}", "m:Tests <t@example.invalid>",
             "t:1700000000", "c:0123456789abcdef0123456789abcdef01234567", "D:so:libc.musl-x86_64.so.1"]
    directory = None
    for path in sorted(files):
        d, base = posixpath.split(path)
        if d != directory:
            lines += [f"F:{d}", "M:0:0:755"]
            directory = d
        lines += [f"R:{base}", "a:0:0:755", f"Z:{q1(files[path])}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def apk_image(docker_client, busybox_image, tmp_path_factory):
    """busybox + an apk database: 2: nbmusl and nbzlib, 3: nbtool added (database rewritten),
    4: database without nbzlib, 5: nbzlib's files removed."""
    ctx = tmp_path_factory.mktemp("apkimg")
    noise = random.Random(7).randbytes  # fixed bytes: the engine's build cache applies
    payload = {
        "nbmusl": {"lib/ld-musl-x86_64.so.1": noise(60_000),
                   "usr/lib/libc.musl-x86_64.so.1": noise(1_000)},
        "nbzlib": {"lib/libz.so.1.3.1": noise(20_000)},
        "nbtool": {"usr/bin/nbtool": noise(30_000), "usr/share/nbtool/data": b"x" * 5_000},
    }
    versions = {"nbmusl": "1.2.4_git20230717-r4", "nbzlib": "1.3.1-r0", "nbtool": "0.9-r1"}
    records = {n: _apk_record(n, versions[n], payload[n]) for n in payload}
    for step, names in [("a", ["nbmusl", "nbzlib"]), ("b", ["nbtool"])]:
        for n in names:
            for path, data in payload[n].items():
                (ctx / step / path).parent.mkdir(parents=True, exist_ok=True)
                (ctx / step / path).write_bytes(data)
    for step, names in [("a", ["nbmusl", "nbzlib"]), ("b", ["nbmusl", "nbzlib", "nbtool"]),
                        ("c", ["nbmusl", "nbtool"])]:
        db = ctx / step / APK_DB_PATH
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_text("\n".join(records[n] for n in names) + "\n")
    tag = "nbtest/packages-apk:1"
    docker_build(docker_client, ctx, tag, f"""\
FROM {busybox_image}
COPY a/ /
COPY b/ /
COPY c/ /
RUN rm /lib/libz.so.1.3.1
""")
    saved = save_and_walk(docker_client, tag, ctx / "image.tar")
    sizes = {n: sum(map(len, files.values())) for n, files in payload.items()}
    return saved, versions, sizes


APK_DB_PATH = "lib/apk/db/installed"


def test_apk_packages_are_sized_from_their_files_with_the_installing_layer(apk_image):
    saved, versions, sizes = apk_image
    apk = saved.packages().query("type == 'apk'").set_index("name")
    assert set(apk.index) == {"nbmusl", "nbtool"}  # nbzlib removed in layers 4 and 5
    assert apk.loc["nbmusl", "layer"] == 2
    assert apk.loc["nbtool", "layer"] == 3
    for name in apk.index:
        assert apk.loc[name, "version"] == versions[name]
        assert apk.loc[name, "size"] == sizes[name] == apk.loc[name, "declared_size"]
        assert apk.loc[name, "files"] == 2
        assert apk.loc[name, "missing_files"] == 0


def test_apk_names_and_versions_agree_with_syft(apk_image):
    saved, _, _ = apk_image
    frame = saved.packages()
    artifacts = syft(f"docker-archive:{saved.tar}")
    assert _by_type(frame, "apk") == _syft_by_type(artifacts, "apk") == {
        ("nbmusl", "1.2.4_git20230717-r4"), ("nbtool", "0.9-r1")}


def test_damaged_database_files_give_what_can_be_read_and_never_raise():
    d = f"{SITE}/x-1.dist-info"
    versions = [
        DbVersion(0, f"{d}/RECORD", b'x.py,,3\n"unclosed,\x00\nbad\xff\xfe,,12\ny.py,,notanumber\n'),
        DbVersion(0, "var/lib/dpkg/status", b"\xff\xfe garbage\n\nPackage: ok\nVersion: 1\n"
                                          b"Installed-Size: lots\nStatus: install ok installed\n"),
        DbVersion(0, "lib/apk/db/installed", b"P:\nV:\n\nnonsense\n\nP:a\nI:x\n"),
    ]
    frame = pk.to_frame(pk.find_packages(versions))
    assert sorted(zip(frame.type, frame.name)) == [("apk", "a"), ("deb", "ok"), ("python", "x")]
    x = frame.set_index("name").loc["x"]
    assert x["declared_size"] == 3 + 12  # the sizes that could be read


# ---------------------------------------------------------------------------------------------
# The product path: nbimages.inspect(...).packages() over the same archives


@pytest.mark.parametrize("image", ["python_image", "deb_image", "apk_image"])
def test_inspection_packages_equal_the_independent_stdlib_walk(image, request):
    import nbimages
    saved = request.getfixturevalue(image)[0]
    got = nbimages.inspect(f"docker-archive:{saved.tar}").packages()
    pd.testing.assert_frame_equal(got, saved.packages())
    assert len(got) > 1 and list(got.columns) == pk.COLUMNS

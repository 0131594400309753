"""The apt step: Debian packages laid into a layer without an engine, checked by real dpkg,
the real engine and syft.

The packages come from a loopback caching proxy of Debian's mirror (tests/apt_mirror.py):
the first run on a machine downloads about 45 MB (the bookworm index and graphviz with its
dependencies), later runs none.
"""

from __future__ import annotations

import json
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import nbimages
from apt_mirror import DebianMirror
from bases import CACHE, python_base_oci
from conftest import run
from nbimages.builder import apt, dpkg
from nbimages.builder.apt import APT_LABEL, Candidate, Installed, Resolver
from nbimages.errors import BuildError
from nbimages.store import Store
from nbimages.workflow.handout import readme
from nbimages.workflow.notebook_recipe import build_notebook
from test_magics_build import cell, steps
from test_packages import syft

TAG = "nbtest15/apt-graphviz:1"
PACKAGES = ("libgomp1", "graphviz", "libblas3")


@pytest.fixture(scope="session")
def mirror():
    m = DebianMirror()
    yield m
    m.close()


@pytest.fixture(autouse=True)
def _shared_apt_cache(monkeypatch):
    """Verified indexes and .debs are shared by the session (content-addressed, so safe)."""
    monkeypatch.setenv("NBIMAGES_APT_CACHE", str(CACHE / "apt-cache"))


@pytest.fixture(scope="session")
def graphviz(mirror, tmp_path_factory):
    """`apt libgomp1 graphviz libblas3` on the debootstrap base, built embedded, saved as a
    docker tar (libblas3 sets an alternative in its postinst)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NBIMAGES_APT_CACHE", str(CACHE / "apt-cache"))
    try:
        store = Store(tmp_path_factory.mktemp("apt-store"))
        recipe = nbimages.Recipe(python_base_oci()).apt(*PACKAGES, mirror=mirror.url)
        image = recipe.build(TAG, store=store, engine="embedded")
        tar = tmp_path_factory.mktemp("apt-out") / "graphviz.tar"
        image.save(tar, format="docker", tag=TAG)
    finally:
        mp.undo()
    return image, tar


def _pins(image) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(image.labels[APT_LABEL])}


def test_handout_readme_lists_the_system_packages(graphviz, tmp_path):
    image, _ = graphviz
    text = readme(image, TAG, tmp_path / "nb.ipynb")
    pin = _pins(image)["graphviz"]
    assert f"| graphviz | {pin['version']} | amd64 | `{pin['sha256']}` |" in text


def test_apt_step_builds_one_layer_with_pins_and_skipped_scripts_listed(graphviz):
    image, _ = graphviz
    report = image.build_report
    assert [r["kind"] for r in report] == ["apt"] and report[0]["cache"] == "rebuilt"
    assert len(image.layers) == len(python_base_oci().layers) + 1
    pins = _pins(image)
    assert {"libgomp1", "graphviz", "libgvc6", "libcairo2"} <= set(pins)
    assert "python3" not in pins and "libc6" not in pins  # the base has them
    assert all(len(p["sha256"]) == 64 for p in pins.values())
    assert any("graphviz (postinst)" in n for n in report.notes)
    assert any("ldconfig not run" in n for n in report.notes)
    assert any("alternatives set" in n and "libblas.so.3-x86_64-linux-gnu" in n
               for n in report.notes)


@pytest.mark.engine
def test_engine_runs_dot_and_dpkg_sees_the_packages(graphviz, docker_client):
    image, tar = graphviz
    run(["docker", "load", "-i", str(tar)])
    out = docker_client.containers.run(
        TAG, ["sh", "-c", "dot -V 2>&1; dpkg -s graphviz libgomp1; dpkg --audit; "
                          "dpkg -L libgomp1; update-alternatives --query "
                          "libblas.so.3-x86_64-linux-gnu; python3 -c \"import ctypes; "
                          "print('blas', ctypes.CDLL('libblas.so.3').ddot_)\""],
        network_mode="none", remove=True).decode()
    pins = _pins(image)
    assert "dot - graphviz version" in out
    assert out.count("Status: install ok installed") == 2
    assert f"Version: {pins['graphviz']['version']}" in out
    assert "/usr/lib/x86_64-linux-gnu/libgomp.so.1" in out
    # the alternative libblas3's postinst would set, read back by update-alternatives itself
    assert "Value: /usr/lib/x86_64-linux-gnu/blas/libblas.so.3" in out
    assert "blas <_FuncPtr object" in out
    # dpkg's own checks: every file of every new package as its md5sums says, nothing half
    # installed, and apt finds no broken dependency in the whole database
    names = " ".join(sorted(pins))
    check = docker_client.containers.run(
        TAG, ["sh", "-c", f"dpkg -V {names} && dpkg -C && apt-get check -q >/dev/null && "
                          "echo CLEAN"], network_mode="none", remove=True).decode()
    assert check == "CLEAN\n"


def test_syft_lists_the_new_packages_with_their_versions(graphviz, tmp_path):
    image, _ = graphviz
    image.save(tmp_path / "oci", format="oci-dir", tag="apt")
    debs = {(a["name"], a["version"]) for a in syft(f"oci-dir:{tmp_path / 'oci'}")
            if a["type"] == "deb"}
    for name, pin in _pins(image).items():
        assert (name, pin["version"]) in debs


def test_same_pins_give_the_same_layer_and_the_same_digest(graphviz, mirror, tmp_path):
    image, _ = graphviz
    pinned = [f"{n}={p['version']}" for n, p in sorted(_pins(image).items())]
    digests, layers = [], []
    for i in range(2):  # two empty stores: nothing comes from a layer cache
        r = nbimages.Recipe(python_base_oci()).apt(*pinned, mirror=mirror.url)
        built = r.build(store=Store(tmp_path / f"s{i}"), engine="embedded")
        digests.append(built.digest)
        layers.append(built.layers[-1].digest)
    assert digests[0] == digests[1]
    assert layers[0] == layers[1] == image.layers[-1].digest


def test_nonexistent_package_is_a_clear_error(mirror, tmp_path):
    r = nbimages.Recipe(python_base_oci()).apt("graphvizz", mirror=mirror.url)
    with pytest.raises(BuildError, match="no package named 'graphvizz' in debian"):
        r.build(store=Store(tmp_path / "s"), engine="embedded")
    assert not list((tmp_path / "s" / "blobs" / "sha256").glob("*"))


def _refused(mirror, tmp_path, tamper: str, match: str) -> None:
    """`apt tree` through the mirror with `tamper` altered fails with `match`, storing nothing."""
    mirror.tamper = {tamper}
    try:
        r = nbimages.Recipe(python_base_oci()).apt("tree", mirror=mirror.url)
        with pytest.raises(BuildError, match=match):
            r.build(store=Store(tmp_path / "s"), engine="embedded")
    finally:
        mirror.tamper = set()
    assert not list((tmp_path / "s" / "blobs" / "sha256").glob("*"))


def test_tampered_deb_is_refused_and_never_cached(mirror, tmp_path):
    _refused(mirror, tmp_path, "/tree_", "does not match the archive's signed index")
    assert any("/tree_" in p for p in mirror.requests)


def test_tampered_index_is_refused_by_its_signature(mirror, tmp_path):
    _refused(mirror, tmp_path, "InRelease", "does not verify against the archive keyring")


def test_a_notebook_with_an_apt_cell_builds(graphviz, mirror, tmp_path):
    base = tmp_path / "base"
    python_base_oci().save(base, format="oci-dir", tag="py")
    nb = new_notebook(cells=[new_code_cell(f"%image from oci:{base}:py"),
                             new_code_cell(f"%image apt --mirror {mirror.url} {' '.join(PACKAGES)}")])
    path = tmp_path / "apt.ipynb"
    nbformat.write(nb, path)
    built = build_notebook(path, record=False, store=Store(tmp_path / "s"))
    assert built.layers[-1].digest == graphviz[0].layers[-1].digest


# ---- the resolver on a small made-up index (no network)

def _c(name, version="1", depends="", provides="", pre="", conflicts="", breaks=""):
    return Candidate(name, version, "amd64", f"pool/{name}.deb", "0" * 64, 1, depends, pre,
                     provides, conflicts=conflicts, breaks=breaks)


def _resolver(*cands, installed=()):
    inst = {p.name: p for p in installed}
    return Resolver(list(cands), inst, "amd64", "debian test (main)")


def test_resolver_takes_versions_alternatives_virtuals_and_what_the_base_has():
    r = _resolver(_c("app", depends="liba (>= 2), mail-transport-agent, old | new, base (>= 9)"),
                  _c("liba", "1"), _c("liba", "2.1", pre="libc"), _c("new"),
                  _c("postfix", provides="mail-transport-agent"),
                  _c("exim", provides="mail-transport-agent"), _c("base", "9"),
                  installed=[Installed("libc", "2.36"), Installed("base", "8")])
    r.request("app")
    assert {n: c.version for n, c in r.chosen.items()} == {
        "app": "1", "liba": "2.1", "exim": "1", "new": "1", "base": "9"}


def test_resolver_skips_relations_the_base_satisfies_by_version_or_provides():
    r = _resolver(_c("app", depends="libc (>= 2.30), awk"), _c("libc", "2.40"),
                  installed=[Installed("libc", "2.36"), Installed("mawk", "1", "awk")])
    r.request("app")
    assert set(r.chosen) == {"app"}


def test_missing_dependency_names_the_chain():
    r = _resolver(_c("app", depends="libmid"), _c("libmid", depends="libgone (>= 3) | libalt"))
    with pytest.raises(BuildError, match=r"app -> libmid depends on libgone \(>= 3\) \| libalt"):
        r.request("app")


def test_breaking_a_base_package_says_to_upgrade_it_or_use_the_engine():
    r = _resolver(_c("app", "2", breaks="plugin (<< 2)"),
                  installed=[Installed("plugin", "1.5"), Installed("tool", "1", conflicts="app")])
    r.request("app")
    with pytest.raises(BuildError, match=r"app 2 breaks plugin \(<< 2\), and the image would "
                                         r"have plugin 1.5: add plugin to the packages"):
        r.check_conflicts()


def test_a_base_package_conflicting_with_a_new_one_is_refused():
    r = _resolver(_c("app"), installed=[Installed("tool", "1", conflicts="app")])
    r.request("app")
    with pytest.raises(BuildError, match="tool 1 conflicts with app, and the image would have "
                                         "app 1: install them with the engine"):
        r.check_conflicts()


def test_a_base_without_dpkg_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(BuildError, match="needs a Debian or Ubuntu base"):
        nbimages.Recipe("scratch").apt("tree").build(store=Store(tmp_path / "s"),
                                                     engine="embedded")


def test_pinned_version_that_the_mirror_lacks_lists_what_it_has():
    r = _resolver(_c("app", "2"), _c("app", "3"))
    with pytest.raises(BuildError, match=r"app=1 is not in .* \(it has 3, 2\)"):
        r.request("app=1")


def test_sources_lists_both_forms_are_read():
    one = apt.parse_sources_list("# c\ndeb [signed-by=/k.gpg arch=amd64] http://m/debian bookworm "
                                 "main contrib\ndeb-src http://m/debian bookworm main\n")
    assert [(s.uri, s.suite, s.components, s.signed_by) for s in one] == [
        ("http://m/debian", "bookworm", ["main", "contrib"], "/k.gpg")]
    two = apt.parse_deb822_sources("Types: deb\nURIs: http://m/debian\nSuites: bookworm "
                                   "bookworm-updates\nComponents: main\n"
                                   "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    assert [s.suite for s in two] == ["bookworm", "bookworm-updates"]


@pytest.mark.parametrize("bad", ["", "Graphviz", "-y", "a b", "pkg=="])
def test_malformed_package_names_are_refused_when_the_step_is_added(bad):
    with pytest.raises(BuildError, match="package name|at least one"):
        nbimages.Recipe("scratch").apt(bad)


def test_apt_cell_body_lists_packages_and_help_names_the_options(ip):
    from nbimages.workflow import session
    session.reset()
    cell(ip, "%image from scratch", "c1")
    cell(ip, "%%image apt --mirror http://127.0.0.1:9/debian\n# for scikit-learn\nlibgomp1\n"
             "graphviz=2.42.2-7  # pinned\n", "c2")
    assert steps(ip) == ["APT --mirror http://127.0.0.1:9/debian libgomp1 graphviz=2.42.2-7"]
    assert "RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 " \
        "graphviz=2.42.2-7" in ip.run_line_magic("image", "recipe").to_dockerfile()
    session.reset()


def test_packages_whose_scripts_create_users_are_refused_naming_the_engine():
    c = _c("postgresql-common")
    u = dpkg.Unpacked("postgresql-common", {"postinst": b"#!/bin/sh\nadduser --system postgres\n"},
                     [])
    with pytest.raises(BuildError, match=r"runs adduser .* %image run apt-get update && "
                                         r"apt-get install -y postgresql-common"):
        dpkg.check_scripts(c, u)


def test_mirror_credentials_stay_out_of_the_step_text_and_snapshot_picks_the_archive():
    r = nbimages.Recipe("scratch").apt("tree", mirror="https://me:s3cret@mirror.test/debian")
    assert r.steps[0].describe() == "APT --mirror https://***@mirror.test/debian tree"
    facts = apt.BaseFacts("debian", "bookworm", "amd64", "", [])
    (src,) = apt._mirror_sources(facts, None, "20250520T000000Z", None)  # noqa: SLF001
    assert (src.uri, src.suite) == (apt.SNAPSHOT_ARCHIVES["debian"] + "20250520T000000Z",
                                    "bookworm")
    with pytest.raises(BuildError, match="not a timestamp"):
        apt._mirror_sources(facts, None, "yesterday", None)  # noqa: SLF001


def test_a_package_adding_a_loader_directory_is_reported():
    u = dpkg.Unpacked("libfakeroot", {}, ["/.", "/etc/ld.so.conf.d/fakeroot-x86_64-linux-gnu.conf"])
    (note,) = dpkg.script_notes([(_c("libfakeroot"), u)])
    assert "/etc/ld.so.conf.d/fakeroot-x86_64-linux-gnu.conf adds library directories" in note


def test_on_the_engine_an_apt_step_runs_the_distributions_apt_get(docker_client):
    """`engine="docker"` turns the step into `apt-get install` in a RUN (the engine reaches
    Debian's mirror with host networking), never into an invalid `APT` instruction."""
    recipe = nbimages.Recipe(python_base_oci()).apt("libgomp1")
    image = recipe.build("nbtest15/apt-engine:1", engine="docker")
    out = docker_client.containers.run(
        # a last line without a newline can reach the engine's log after the container ends
        "nbtest15/apt-engine:1", ["dpkg-query", "-W", "-f=${Status}\\n", "libgomp1"],
        network_mode="none", remove=True).decode()
    assert out == "install ok installed\n"
    assert any("apt-get install -y --no-install-recommends libgomp1" in h.get("created_by", "")
               for h in image.config["history"])

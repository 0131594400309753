"""The apk step: Alpine packages laid into a layer without an engine, checked by the real engine
(busybox runs what was installed) and syft (its apk cataloger reads /lib/apk/db/installed).

The Alpine world is made by tests/apk_repo.py: a busybox base that says it is Alpine and a
repository on 127.0.0.1 with real-format, signed .apk files and APKINDEX.
"""

from __future__ import annotations

import json

import pytest

import nbimages
from apk_repo import AlpineRepo
from conftest import run
from nbimages.builder import apk
from nbimages.builder.apk import APK_LABEL, Package, Resolver
from nbimages.builder.apkpkg import ApkFile
from nbimages.errors import BuildError
from nbimages.store import Store
from nbimages.workflow.handout import readme
from test_magics_build import cell
from test_packages import syft

TAG = "nbtest15/apk-hello:1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = AlpineRepo(tmp_path_factory.mktemp("alpine"))
    yield r
    r.close()


@pytest.fixture(scope="module")
def hello(repo, tmp_path_factory):
    """`apk hello` on the Alpine-like base, built embedded, saved as a docker tar."""
    store = Store(tmp_path_factory.mktemp("apk-store"))
    image = nbimages.Recipe(repo.base()).apk("hello", mirror=repo.url).build(
        TAG, store=store, engine="embedded")
    tar = tmp_path_factory.mktemp("apk-out") / "hello.tar"
    image.save(tar, format="docker", tag=TAG)
    return image, tar


def _pins(image) -> dict[str, dict]:
    return {p["name"]: p for p in json.loads(image.labels[APK_LABEL])}


def test_apk_step_builds_one_layer_with_pins_and_skipped_scripts_listed(hello, repo):
    image, _ = hello
    report = image.build_report
    assert [r["kind"] for r in report] == ["apk"] and report[0]["cache"] == "rebuilt"
    assert len(image.layers) == len(repo.base().layers) + 1
    pins = _pins(image)
    # so: provide, the highest greet-data >= 1.1 (1.1_rc1 < 1.2), nothing the base has
    assert {n: p["version"] for n, p in pins.items()} == {
        "hello": "1.0-r0", "libgreet": "2.1-r0", "greet-data": "1.2-r0"}
    assert pins["hello"]["checksum"] == next(r["C"] for r in repo.records if r["P"] == "hello")
    assert any("greet-data (.post-install)" in n for n in report.notes)


@pytest.mark.engine
def test_engine_runs_the_installed_script_with_busybox(hello, docker_client):
    _, tar = hello
    run(["docker", "load", "-i", str(tar)])
    out = docker_client.containers.run(
        TAG, ["sh", "-c", "hello; ls -l /usr/lib/libgreet.so.2; cat /etc/apk/world"],
        network_mode="none", remove=True).decode()
    assert "hello from libgreet\ndata 1.2\n" in out
    assert "-rwxr-xr-x" in out
    assert "busybox\nhello\n" in out


def test_syft_lists_the_new_packages_with_their_versions(hello, tmp_path):
    image, _ = hello
    image.save(tmp_path / "oci", format="oci-dir", tag="apk")
    found = {(a["name"], a["version"]) for a in syft(f"oci-dir:{tmp_path / 'oci'}")
             if a["type"] == "apk"}
    for name, pin in _pins(image).items():
        assert (name, pin["version"]) in found
    assert ("busybox", "1.36.1-r29") in found  # the base's records are kept


def test_installed_database_lists_files_with_their_checksums(hello):
    image, _ = hello
    insp = nbimages.inspect(image)
    (layer, entry), = [x for x in insp.read_files(lambda p: p == "lib/apk/db/installed")
                       if x[0] == len(image.layers) - 1]
    text = entry.data.decode()
    block = next(b for b in text.split("\n\n") if "P:hello\n" in b)
    assert "F:usr/bin\nR:hello\na:0:0:755\nZ:Q1" in block
    assert "\nV:1.0-r0\n" in block and "\nD:so:libgreet.so.2 " in block


def test_same_pins_give_the_same_layer_and_the_same_digest(hello, repo, tmp_path):
    image, _ = hello
    pinned = [f"{n}={p['version']}" for n, p in sorted(_pins(image).items())]
    digests, layers = [], []
    for i in range(2):  # two empty stores: nothing comes from a layer cache
        built = nbimages.Recipe(repo.base()).apk(*pinned, mirror=repo.url).build(
            store=Store(tmp_path / f"s{i}"), engine="embedded")
        digests.append(built.digest)
        layers.append(built.layers[-1].digest)
    assert digests[0] == digests[1]
    assert layers[0] == layers[1]


def test_handout_readme_lists_the_alpine_packages(hello, tmp_path):
    image, _ = hello
    pin = _pins(image)["hello"]
    assert f"| hello | 1.0-r0 | x86_64 | `{pin['checksum']}` | `{pin['sha256']}` |" in \
        readme(image, TAG, tmp_path / "nb.ipynb")


def _fails(repo, tmp_path, match: str, *packages: str, **options) -> None:
    """The apk step fails with `match` and leaves nothing in the store."""
    r = nbimages.Recipe(repo.base()).apk(*packages, mirror=repo.url, **options)
    with pytest.raises(BuildError, match=match):
        r.build(store=Store(tmp_path / "s"), engine="embedded")
    assert not list((tmp_path / "s" / "blobs" / "sha256").glob("*"))


def test_unknown_package_is_a_clear_error(repo, tmp_path):
    _fails(repo, tmp_path, "no package named 'helo' in the repositories http://127.0.0.1",
           "helo")


def test_missing_dependency_names_the_chain(repo, tmp_path):
    _fails(repo, tmp_path, r"cannot install broken: broken depends on so:libmissing.so.1, "
                           "which neither the base nor the repositories .* provide", "broken")


def test_tampered_apk_is_refused_and_never_cached(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("NBIMAGES_APK_CACHE", str(tmp_path / "cache"))
    repo.tamper = {"hello-1.0-r0.apk": repo.evil_hello}
    try:
        _fails(repo, tmp_path, "repository's signed index", "hello")
    finally:
        repo.tamper = {}
    assert not [p for p in (tmp_path / "cache").iterdir() if "hello" in p.name]


def test_tampered_index_is_refused_by_its_signature(repo, tmp_path):
    repo.tamper = {"APKINDEX.tar.gz": repo.altered_index}
    try:
        _fails(repo, tmp_path, "does not verify", "hello")
    finally:
        repo.tamper = {}


def test_index_signed_by_a_key_the_base_does_not_trust_is_refused(repo, tmp_path):
    repo.tamper = {"APKINDEX.tar.gz": repo.stranger_index}
    try:
        _fails(repo, tmp_path, "signed by stranger-0badc0de.rsa.pub, which is not among the "
                               "trusted keys", "hello")
        # the same index is accepted when its key is given
        key = repo.keys.dir / "stranger-0badc0de.rsa.pub"
        built = nbimages.Recipe(repo.base()).apk("greet-data", mirror=repo.url,
                                                key=str(key)).build(
            store=Store(tmp_path / "k"), engine="embedded")
        assert _pins(built)["greet-data"]["version"] == "1.2-r0"
    finally:
        repo.tamper = {}


def test_a_base_that_is_not_alpine_is_refused(tmp_path):
    with pytest.raises(BuildError, match="needs an Alpine base"):
        nbimages.Recipe("scratch").apk("curl").build(store=Store(tmp_path / "s"),
                                                     engine="embedded")


def test_the_magic_builds_an_apk_step(ip, repo, tmp_path):
    from nbimages.workflow import session
    session.reset()
    base = tmp_path / "base"
    repo.base().save(base, format="oci-dir", tag="alpine")
    cell(ip, f"%image from oci:{base}:alpine", "a1")
    cell(ip, f"%%image apk --mirror {repo.url}\n# a greeting\nhello\n", "a2")
    recipe = ip.run_line_magic("image", "recipe")
    assert [s.describe() for s in recipe.steps] == [f"APK --mirror {repo.url} hello"]
    assert "RUN apk add --no-cache hello" in recipe.to_dockerfile()
    built = cell(ip, "%image build nbtest15/apk-magic:1", "a3")
    assert set(_pins(built)) == {"hello", "libgreet", "greet-data"}
    session.reset()


# ---- apk's version order and the resolver on made-up records (no network)

@pytest.mark.parametrize("lower,higher", [
    ("1.2_rc1", "1.2"), ("1.2", "1.2-r1"), ("1.2-r1", "1.2_p1"), ("1.2_p1", "1.2a"),
    ("1.2a", "1.2.1"), ("1.05", "1.5"), ("1.9", "1.10"), ("1.2_alpha", "1.2_beta2"),
    ("1", "1.0"), ("2.1-r9", "2.1-r10")])
def test_versions_order_as_apk_orders_them(lower, higher):
    assert apk.compare_versions(lower, higher) == -1
    assert apk.compare_versions(higher, lower) == 1


def test_constraints_include_the_fuzzy_one():
    assert apk.matches("1.2.3-r0", "~", "1.2") and not apk.matches("1.3", "~", "1.2")
    assert apk.matches("2.0", ">=", "2.0") and not apk.matches("2.0", "<", "2.0")
    assert apk.matches("1.0-r1", "=", "1.0-r1") and not apk.matches("1.0-r1", "=", "1.0")


def _p(name, version="1-r0", depends="", provides="", k=""):
    return Package({"P": name, "V": version, "A": "x86_64", "D": depends, "p": provides,
                    "k": k})


def test_resolver_takes_provides_priorities_and_what_the_base_has():
    r = Resolver([_p("app", depends="so:libz.so.1 cmd:sh mta lib>=2"), _p("lib", "1-r0"),
                  _p("lib", "2.1-r0"), _p("zlib", provides="so:libz.so.1=1.3"),
                  _p("postfix", provides="mta", k="10"), _p("exim", provides="mta", k="1")],
                 [_p("busybox", provides="cmd:sh=1.36")], "test")
    r.request("app")
    assert {n: c.version for n, c in r.chosen.items()} == {
        "app": "1-r0", "zlib": "1-r0", "postfix": "1-r0", "lib": "2.1-r0"}


def test_a_conflict_with_a_base_package_is_refused():
    r = Resolver([_p("app", depends="!busybox")], [_p("busybox")], "test")
    r.request("app")
    with pytest.raises(BuildError, match=r"app 1-r0 conflicts with busybox .* install them "
                                         r"with the engine"):
        r.check_conflicts()


@pytest.mark.parametrize("bad", ["", "Curl Tool", "-y", "curl==", "curl=abc"])
def test_malformed_package_names_are_refused_when_the_step_is_added(bad):
    with pytest.raises(BuildError, match="package for apk|at least one"):
        nbimages.Recipe("scratch").apk(bad)


def test_repositories_follow_the_mirror_or_replace_the_base_list():
    base = apk.AlpineBase("x86_64", "", "", apk.parse_repositories(
        "# c\nhttps://dl-cdn.alpinelinux.org/alpine/v3.20/main\n@edge https://x/edge/main\n"))
    assert apk.repositories(base, "http://127.0.0.1:1/alpine", None) == [
        "http://127.0.0.1:1/alpine/v3.20/main"]
    assert apk.repositories(base, None, ["http://m/alpine/edge/testing/"]) == [
        "http://m/alpine/edge/testing"]


def test_packages_whose_scripts_add_users_are_refused_naming_the_engine():
    pkg = ApkFile(None, {".pre-install": b"#!/bin/sh\naddgroup -S postgres\n"}, (0, 0))
    with pytest.raises(BuildError, match=r"runs addgroup in its .pre-install .* %image run apk "
                                         r"add --no-cache postgresql"):
        apk.check_scripts(_p("postgresql", "16.4-r0"), pkg)


def test_a_request_the_base_already_meets_only_goes_to_the_world():
    r = Resolver([_p("busybox", "1.37-r0")],
                 [_p("busybox", "1.36.1-r29", provides="cmd:sh=1.36.1-r29")], "test")
    r.request("busybox")
    r.request("cmd:sh")
    assert not r.chosen and r.kept == ["busybox", "cmd:sh"]
    r.request("busybox>=1.37")  # an upgrade replaces the base's record
    assert r.chosen["busybox"].version == "1.37-r0"
    assert apk.world("busybox\n", ["hello", "busybox>=1.37"]) == "busybox>=1.37\nhello\n"

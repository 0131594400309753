"""Advice with savings (issue 14), on a realistic bloated image built with the real engine.

Each finding's `saves` figure is checked against the engine's build of the fixed Dockerfile
(tests/bloated.py): the same five RUN steps written as the advice says, so the bytes each
layer loses in the fixed build are what the findings of that layer promised.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nbimages
from bloated import build_apt_variants
from nbimages.analysis.advice import recommended_only

HUGE = 20_000_000  # the test image's data file is 25 MB


@pytest.fixture(scope="module")
def advised(bloated):
    info = nbimages.inspect(bloated[0])
    return info, info.advice(huge=HUGE)


def _step_sizes(info) -> list[int]:
    """Layer size of each RUN step (0 for a step the engine kept without a layer)."""
    sizes = info.layers["size"]
    hist = info.history
    return [0 if hist["layer"].isna()[n] else int(sizes[int(hist["layer"][n])])
            for n in range(1, 6)]


def test_advice_names_the_cleanup_in_another_layer_with_its_layer_and_bytes(advised):
    info, advice = advised
    row = advice[advice.kind == "deleted-later"].iloc[0]
    assert (row.layer, row.saves, row.files) == (2, 8_000_000, 1)
    assert row.paths == ["/opt/build/objects.tar"]
    assert "objects.tar" in row.step and row.step == info.layers.created_by[2]
    assert "layer 3" in row.change and "rm -rf /opt/build" in row.change


def test_advice_lists_every_kind_of_finding_ranked_by_savings(advised):
    _, advice = advised
    kinds = set(advice.kind)
    assert {"deleted-later", "rewritten", "apt-lists", "apt-cache", "pip-cache", "recommends",
            "docs", "tests", "foreign-pyc", "duplicates", "huge-file"} <= kinds
    assert list(advice.saves) == sorted(advice.saves, reverse=True)
    by = {k: advice[advice.kind == k].iloc[0] for k in kinds}
    assert (by["huge-file"].paths, by["huge-file"].saves) == (["/opt/data/huge.bin"], 25_000_000)
    assert by["foreign-pyc"].saves == 40_000 and "3.9" in by["foreign-pyc"].change
    assert "networkx" in by["tests"].change and by["tests"].layer == 4
    assert "--no-install-recommends" in by["recommends"].change
    assert "ca-certificates" in by["recommends"].change
    dup = advice[(advice.kind == "duplicates") & (advice.layer == 5)].iloc[0]
    assert dup.saves == 3_000_000
    rewritten = advice[(advice.kind == "rewritten") & (advice.layer == 2)].iloc[0]
    assert rewritten.paths == ["/opt/data/model.bin"] and rewritten.saves == 3_000_000


def test_each_finding_saves_what_the_fixed_build_saves(advised, bloated):
    info, advice = advised
    fixed = nbimages.inspect(bloated[1])
    before, after = _step_sizes(info), _step_sizes(fixed)
    for layer in range(1, 6):
        promised = int(advice[advice.layer == layer].saves.sum())
        saved = before[layer - 1] - after[layer - 1]
        if layer == 1:
            # --no-install-recommends also leaves those packages out of dpkg's own database
            # (status, info files): a little more than the files the advice counts
            assert promised <= saved <= promised * 1.02, (layer, promised, saved)
        else:
            assert saved == promised, (layer, promised, saved)


def test_each_apt_finding_alone_saves_what_it_says(advised, docker_client,
                                                            python_base_in_registry):
    info, advice = advised
    files = info.files(final=True)
    for kind, tag in build_apt_variants(docker_client, python_base_in_registry).items():
        fixed = nbimages.inspect(f"docker-daemon:{tag}")
        row = advice[advice.kind == kind].iloc[0]
        saved = int(info.layers["size"][1]) - int(fixed.layers["size"][1])
        if kind != "recommends":
            assert saved == row.saves, kind
            continue
        # Without recommends apt also downloads fewer .deb files (counted by apt-cache), and
        # what the packages' install scripts generate is not made (here the CA bundle in
        # /etc/ssl/certs and debconf's templates: 1.0 MB no package database lists, so the
        # advice cannot see it). The advice counts the files the packages own.
        names = row.change.split("(")[2].split(")")[0].split(", ")
        debs = files[files.path.str.match(r"/var/cache/apt/archives/(%s)_" % "|".join(names))]
        assert len(debs) == len(names)
        promised = int(row.saves) + int(debs["size"].sum())
        assert promised <= saved <= promised * 1.25, (promised, saved)


def test_no_byte_is_promised_twice(advised):
    info, advice = advised
    assert advice.saves.sum() <= info.size
    paths = [p for ps in advice[advice.kind != "rewritten"].paths for p in ps]
    assert len(paths) == len(set(paths))


def test_recommended_only_follows_depends_provides_and_manual_marks():
    status = "\n\n".join([
        "Package: app\nStatus: install ok installed\nDepends: libc6 (>= 2.3), mail-transport-agent",
        "Package: libc6\nStatus: install ok installed",
        "Package: exim\nStatus: install ok installed\nProvides: mail-transport-agent",
        "Package: extras\nStatus: install ok installed\nDepends: libc6",
        "Package: chosen\nStatus: install ok installed",
    ])
    states = ("Package: libc6\nArchitecture: amd64\nAuto-Installed: 1\n\n"
              "Package: exim\nAuto-Installed: 1\n\nPackage: extras\nAuto-Installed: 1\n")
    assert recommended_only(status, states) == ["extras"]


def test_cli_inspect_advice_prints_the_findings_as_json(advised, bloated):
    proc = subprocess.run([sys.executable, "-m", "nbimages", "inspect", bloated[0], "--advice",
                           "--json"], capture_output=True, text=True, check=True)
    rows = json.loads(proc.stdout)
    assert rows[0]["kind"] == "apt-lists" and rows[0]["layer"] == 1
    assert {r["kind"] for r in rows} >= {"deleted-later", "apt-cache", "docs"}


def test_magic_advice_returns_the_same_table(advised, bloated, fresh_ip):
    frame = fresh_ip.run_line_magic("image", f"advice {bloated[0]} --huge {HUGE}")
    assert list(frame.kind) == list(advised[1].kind)
    assert list(frame.saves) == list(advised[1].saves)
    html = nbimages.explore(advised[0]).to_html()
    assert "<h4>Advice</h4>" in html and "nbimages-advice-row" in html


def test_advice_knows_the_caches_of_conda_npm_yarn_and_tests_of_node_packages(tmp_path):
    import io
    import tarfile

    from bases import image_from_tars
    files = {"opt/conda/pkgs/numpy-2.0.tar.bz2": 5000, "root/.npm/_cacache/index-v5/ab": 4000,
             "usr/local/share/.cache/yarn/v6/pkg.tgz": 3000,
             "app/node_modules/left-pad/test/index.js": 2000,
             "usr/lib/python3/dist-packages/pkg/docs/guide.txt": 1000,
             "app/__pycache__/m.cpython-312.pyc": 700}
    layer = tmp_path / "0.tar"
    with tarfile.open(layer, "w") as tf:
        for name, size in files.items():
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(bytes([len(name)]) * size))
    advice = nbimages.inspect(image_from_tars([layer])).advice()
    assert list(advice.kind) == ["conda-cache", "npm-cache", "yarn-cache", "tests", "docs",
                                 "foreign-pyc"]
    assert list(advice.saves) == [5000, 4000, 3000, 2000, 1000, 700]
    assert "conda clean" in advice.change[0] and "no Python" in advice.change[5]

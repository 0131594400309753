"""Daemonless squash and slim (issue 14), on the bloated Debian + Python image of
tests/bloated.py; the results are loaded into the real engine and run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import pytest

import nbimages
from bases import image_from_tars
from conftest import run, tool
from nbimages.errors import NbimagesError
from nbimages.progress import format_bytes
from nbimages.store import Store

CACHES = ["/var/lib/apt/lists/**", "/var/cache/apt/**", "/root/.cache/**"]
DOCS_AND_TESTS = ["/usr/share/doc/**", "/usr/share/man/**", "**/dist-packages/*/**/tests/**"]


@pytest.fixture(scope="module")
def original(bloated):
    return nbimages.inspect(bloated[0])


@pytest.fixture(scope="module")
def squashed(original):
    """Layers 1..5 merged over the base layer (which the engine already holds)."""
    return nbimages.squash(original, "nbtest14-squash:0", from_layer=0)


def _run(docker_client, image, tag: str, tmp_path, script: str) -> str:
    """`docker load` what nbimages saves of `image`, then run `python3 -c script` in it."""
    archive = tmp_path / "out.tar"
    nbimages.save(image, archive, format="docker", tag=tag)
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    try:
        out = docker_client.containers.run(tag, ["python3", "-c", script], network_mode="none",
                                           remove=True)
        return out.decode()
    finally:
        docker_client.images.remove(tag, force=True)


def test_squash_saves_exactly_the_wasted_bytes_of_the_merged_layers(original, squashed):
    for n in (0, 2, -1):
        img = squashed if n == 0 else nbimages.squash(original, f"nbtest14-squash:{n}",
                                                      from_layer=n)
        after = nbimages.inspect(img)
        assert after.size == original.size - int(original.layers.wasted_bytes[n + 1:].sum())
        assert len(img.layers) == n + 2
        assert [l.digest for l in img.layers[:n + 1]] == \
            [l.digest for l in original.image.layers[:n + 1]]
        assert after.wasted_bytes == int(original.layers.wasted_bytes[:max(n + 1, 0)].sum())
        assert original.diff(after).empty  # the same files, modes, owners, times
        hist = after.history
        merged = hist[hist.comment.str.contains("merged into the squashed layer")]
        assert list(merged.created_by) == list(original.layers.created_by[max(n + 1, 0):])
        assert merged.empty_layer.all()
        assert hist.created_by.iloc[-1] == f"nbimages squash --from-layer {n}"


def test_squash_gives_the_same_digest_in_two_empty_stores(original, tmp_path):
    digests = {nbimages.squash(original, "nbtest14-repro:1", from_layer=0,
                               store=Store(tmp_path / name)).digest for name in ("a", "b")}
    assert len(digests) == 1


def test_squashed_image_loads_and_runs_in_the_engine(squashed, docker_client, tmp_path):
    img = squashed
    nbimages.validate_image(img)
    out = _run(docker_client, img, "nbtest14/squashed:1", tmp_path,
               "import os, networkx; print(networkx.__version__, os.path.exists('/opt/build'),"
               " sorted(os.listdir('/opt/data')))")
    assert out.split(None, 2) == ["3.4.2", "False", "['huge.bin', 'model-copy.bin', 'model.bin']\n"]


def test_slim_refuses_what_packages_own_unless_forced(original):
    with pytest.raises(NbimagesError) as e:
        nbimages.slim(original, "nbtest14-slim:0", remove=DOCS_AND_TESTS)
    text = str(e.value)
    assert "deb curl" in text and "python networkx" in text and "force=True" in text


def test_slim_of_caches_needs_no_force_and_keeps_the_layers(original):
    r = nbimages.slim(original, "nbtest14-slim:1", remove=CACHES)
    assert len(r.image.layers) == len(original.image.layers) and not r.incomplete
    removed = {p for p, _ in r.removed}
    assert "var/lib/apt/lists/lock" in removed and "var/lib/apt/lists" not in removed
    assert r.saved == sum(size for _, size in r.removed) > 160_000_000
    assert set(r.diff().query("change == 'removed'").path) == {"/" + p for p in removed}
    assert "nbimages slim: removed" in r.after.history.created_by.iloc[-1]
    page = r._repr_html_()
    assert f"saves {format_bytes(r.saved)}" in page and "/var/lib/apt/lists/lock</td>" in page


def test_slim_of_docs_and_caches_forced_and_squashed_runs(original, docker_client, tmp_path):
    r = nbimages.slim(original, "nbtest14-slim:2", remove=CACHES + DOCS_AND_TESTS,
                      keep=["/usr/share/doc/*/copyright"], squash_from=0, force=True)
    assert {"deb curl", "python networkx"} <= set(r.incomplete)
    assert len(r.image.layers) == 2
    assert r.saved == original.size - r.after.size
    assert r.saved >= sum(size for _, size in r.removed) + 11_000_000  # and the squash's waste
    text = repr(r)
    assert "WARNING: now incomplete" in text and "python networkx" in text and "saves" in text
    final = set(r.after.files(final=True).path)
    assert "/usr/share/doc/curl/copyright" in final
    assert not any(p.startswith("/usr/share/doc/curl/changelog") for p in final)
    out = _run(docker_client, r.image, "nbtest14/slimmed:1", tmp_path,
               "import networkx as nx; print(nx.__version__, nx.path_graph(4).number_of_edges())")
    assert out.split() == ["3.4.2", "3"]


def test_cli_slim_without_force_is_a_one_paragraph_error(bloated):
    proc = subprocess.run([sys.executable, "-m", "nbimages", "slim", bloated[0], "x14:1",
                           "--remove", "/usr/share/doc/**"], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--force" in proc.stderr and "deb curl" in proc.stderr


def test_magic_squash_and_slim(original, bloated, fresh_ip):
    img = fresh_ip.run_line_magic("image", f"squash {bloated[0]} nbtest14-magic:1 --from-layer 3")
    assert len(img.layers) == 5
    r = fresh_ip.run_line_magic("image", f"slim {bloated[0]} nbtest14-magic:2 --remove "
                                         "/root/.cache/** --squash-from 0")
    assert len(r.image.layers) == 2 and r.removed


# ---------------------------------------------------------------- tricky layers, no engine

def _tar(path, members):
    """A layer tar from (name, kind, data_or_link, pax) tuples, in that order."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload, pax in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            info.pax_headers = dict(pax)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif kind in ("link", "sym"):
                info.type = tarfile.LNKTYPE if kind == "link" else tarfile.SYMTYPE
                info.linkname = payload
                tf.addfile(info)
            else:
                info.size, info.mode = len(payload), 0o640
                tf.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def tricky(tmp_path):
    cap = {"SCHILY.xattr.user.origin": "nbimages-test"}
    l0 = _tar(tmp_path / "0.tar", [
        ("a", "dir", None, {}), ("a/x", "file", b"x" * 100, {}), ("a/y", "file", b"y" * 50, {}),
        ("d", "dir", None, {}), ("d/k", "file", b"k" * 70, {}), ("e", "dir", None, {}),
        ("e/z", "file", b"z" * 30, {}), ("g", "file", b"g" * 20, {}),
        ("t", "file", b"t" * 40, {}), ("sym", "sym", "t", {})])
    l1 = _tar(tmp_path / "1.tar", [
        ("a/.wh.x", "file", b"", {}), ("d/.wh..wh..opq", "file", b"", {}),
        ("d/new", "file", b"n" * 10, {}), ("e", "file", b"E" * 5, {}),
        ("ping", "file", b"p" * 60, cap), ("p", "dir", None, {}),
        ("p/own", "file", b"o" * 25, {}), ("p/same", "link", "p/own", {})])
    l2 = _tar(tmp_path / "2.tar", [
        ("a/y", "file", b"Y" * 55, {}), ("g", "dir", None, {}), ("g/m", "file", b"m" * 15, {}),
        ("p/.wh.own", "file", b"", {}), ("p/own", "file", b"O" * 26, {})])
    return nbimages.inspect(image_from_tars([l0, l1, l2]))


def test_squash_resolves_whiteouts_opaque_dirs_replacements_and_links(tricky, tmp_path):
    img = nbimages.squash(tricky, "nbtest14-tricky:1", from_layer=0,
                          store=Store(tmp_path / "store"))
    after = nbimages.inspect(img)
    # p/same was a hard link to a p/own that layer 2 replaced: the engine kept the old bytes
    # under p/same, so the squashed layer holds them as a file of its own (25 bytes)
    changed = tricky.diff(after)
    assert list(changed.path) == ["/p/same"] and list(changed.what) == ["kind,size,link"]
    assert after.size == tricky.size - int(tricky.layers.wasted_bytes[1:].sum()) + 25
    merged = after.files(layer=1)
    deleted = set(merged[merged.change == "deleted"].path)
    assert {"/a/x", "/d/k", "/e/z"} <= deleted and "/a/y" not in deleted
    with img.layer_tar(1) as stream:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            infos = {i.name.rstrip("/"): i for i in tf}
    assert infos["ping"].pax_headers.get("SCHILY.xattr.user.origin")
    assert infos["ping"].mtime == 1_700_000_000 and infos["ping"].mode == 0o640
    assert infos["p/same"].isreg() and infos["p/same"].size == 25


def test_squash_names_the_layers_it_can_merge(tricky):
    with pytest.raises(NbimagesError, match="layers 0..2"):
        nbimages.squash(tricky, "nbtest14-bad:1", from_layer=3)


def _exported(docker_client, image, tag: str, tmp_path) -> dict[str, tuple]:
    """What the engine makes of `image`: its container filesystem, by `docker export`."""
    archive = tmp_path / f"{tag.replace('/', '_').replace(':', '_')}.tar"
    nbimages.save(image, archive, format="docker", tag=tag)
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
    container = docker_client.containers.create(tag, ["none"], network_mode="none")
    try:
        out = {}
        stream = io.BytesIO(b"".join(container.export()))
        with tarfile.open(fileobj=stream) as tf:
            for info in tf:
                name = info.name.rstrip("/")
                if name.split("/")[0] in ("dev", "proc", "sys", "etc", ".dockerenv", ""):
                    continue
                data = tf.extractfile(info).read() if info.isreg() else info.linkname
                out[name] = (info.type, info.mode, data, info.pax_headers.get(
                    "SCHILY.xattr.user.origin"))
        return out
    finally:
        container.remove(force=True)
        docker_client.images.remove(tag, force=True)


def test_tricky_squash_gives_the_engine_the_same_filesystem(tricky, docker_client, tmp_path):
    img = nbimages.squash(tricky, "nbtest14-tricky:2", from_layer=0,
                          store=Store(tmp_path / "store"))
    theirs = _exported(docker_client, tricky.image, "nbtest14/tricky-orig:1", tmp_path)
    ours = _exported(docker_client, img, "nbtest14/tricky-squashed:1", tmp_path)
    assert ours == theirs
    assert theirs["d/new"][2] == b"n" * 10 and "d/k" not in theirs and "a/x" not in theirs


def test_slim_says_when_a_pattern_is_unreadable_or_matches_nothing(tricky):
    with pytest.raises(NbimagesError, match="cannot be read"):
        nbimages.slim(tricky, "nbtest14-bad:2", remove=["!"])
    with pytest.raises(NbimagesError, match="nothing to remove"):
        nbimages.slim(tricky, "nbtest14-bad:3", remove=["/no/such/**"])


def test_skopeo_and_umoci_read_the_tricky_squash_as_the_original(tricky, tmp_path):
    img = nbimages.squash(tricky, "nbtest14-tricky:3", from_layer=0,
                          store=Store(tmp_path / "store"))
    trees = []
    for name, image in (("orig", tricky.image), ("squashed", img)):
        layout = nbimages.save(image, tmp_path / name, format="oci-dir", tag="v1")
        info = json.loads(run([tool("skopeo"), "inspect", f"oci:{layout}:v1"]).stdout)
        assert info["Digest"] == image.digest and len(info["Layers"]) == len(image.layers)
        bundle = tmp_path / f"{name}-bundle"
        run([tool("umoci"), "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle)])
        root = bundle / "rootfs"
        trees.append({str(p.relative_to(root)): (p.is_dir(), p.read_bytes() if p.is_file()
                                                 and not p.is_symlink() else None)
                      for p in sorted(root.rglob("*"))})
    assert trees[0] == trees[1]
    assert "d/k" not in trees[1] and trees[1]["d/new"][1] == b"n" * 10

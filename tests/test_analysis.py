"""inspect() on images built by the real engine: add, overwrite, chmod, delete, replace and
opaque directories, hard links and a link pointing outside; checked against the engine's own
sizes, dive, skopeo's OCI copy and the numbers the Dockerfile makes by construction."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest
from conftest import docker_build, run, tool

import nbimages
from nbimages.errors import InvalidImage

DOCKERFILE = """\
FROM nbtest/busybox:1
RUN mkdir -p /app/keep /app/gone /opq/sub /swap \\
 && head -c 100000 /dev/zero > /app/big && head -c 2000 /dev/zero > /app/small \\
 && head -c 3000 /dev/zero > /app/gone/a && head -c 4000 /dev/zero > /app/gone/b \\
 && head -c 500 /dev/zero > /opq/old && head -c 600 /dev/zero > /opq/sub/older \\
 && echo keep > /app/keep/k && head -c 700 /dev/zero > /swap/inner \\
 && mkdir -p /var/lib/dpkg && echo 'Package: demo' > /var/lib/dpkg/status
RUN head -c 150000 /dev/zero > /app/big && chmod 600 /app/small
RUN rm /app/small && rm -rf /app/gone /opq /swap && mkdir /opq && echo fresh > /opq/new \\
 && echo file > /swap
ENV X=1
RUN head -c 50000 /dev/zero > /app/big && ln -s ../../../../etc/shadow /app/escape \\
 && echo 'Package: demo2' > /var/lib/dpkg/status
CMD ["sh"]
"""
TAG = "nbtest/analysis-edits:1"
# layers: 0 busybox, 1 applet links, 2 first RUN, 3 overwrite+chmod, 4 deletions, 5 last RUN
LAYER2 = 100000 + 2000 + 3000 + 4000 + 500 + 600 + 5 + 700 + 14
LAYER3 = 150000 + 2000
LAYER5 = 50000 + 15
# every file of layer 2 but /app/keep/k (5 bytes) is gone from the final filesystem, and
# both files of layer 3
WASTED = LAYER2 - 5 + LAYER3


@pytest.fixture(scope="module")
def edits(docker_client, busybox_image, tmp_path_factory):
    """The image in the engine, as a docker-archive and as skopeo's (gzip) OCI layout."""
    work = tmp_path_factory.mktemp("edits")
    ctx = work / "ctx"
    ctx.mkdir()
    docker_build(docker_client, ctx, TAG, DOCKERFILE)
    archive = work / "edits.tar"
    run(["docker", "save", "-o", str(archive), TAG])
    oci = work / "oci"
    run([tool("skopeo"), "copy", "-q", f"docker-archive:{archive}", f"oci:{oci}:edits"])
    insp = nbimages.inspect(f"docker-archive:{archive}")
    return {"archive": archive, "oci": oci, "insp": insp}


def test_layer_table_has_the_issue_columns(edits):
    layers = edits["insp"].layers
    assert list(layers.columns[:10]) == [
        "index", "digest", "diff_id", "size", "compressed_size", "created_by", "files_added",
        "files_modified", "files_deleted", "wasted_bytes"]
    assert list(layers["size"][2:]) == [LAYER2, LAYER3, 11, LAYER5]
    assert "chmod 600 /app/small" in layers.created_by[3]


def test_layer_sizes_agree_with_the_engine(edits, docker_client):
    """docker history counts regular files and symlink target lengths (directory.Size)."""
    insp = edits["insp"]
    engine = docker_client.api.history(TAG)[::-1]
    history = insp.history
    assert len(engine) == len(history)
    for row, theirs in zip(history.itertuples(), engine):
        if row.empty_layer:
            assert theirs["Size"] == 0
            continue
        files = insp.files(layer=int(row.layer))
        kept = files[(files.change != "deleted") & (files.kind == "symlink")]
        assert insp.layers["size"][row.layer] + kept.linkname.str.len().sum() == theirs["Size"]
    image_size = docker_client.images.get(TAG).attrs["Size"]
    links = insp.files()
    links = links[(links.change != "deleted") & (links.kind == "symlink")]
    assert insp.size + links.linkname.str.len().sum() == image_size


def test_every_source_gives_the_same_tables(edits, busybox_image):
    a = edits["insp"]
    for source in (f"docker-daemon:{TAG}", f"oci:{edits['oci']}:edits"):
        b = nbimages.inspect(source)
        # (skopeo rewrites the config as an OCI config, so only the daemon keeps the id)
        assert b.id == a.id or source.startswith("oci:")
        same = ["index", "diff_id", "size", "created_by", "files_added", "files_modified",
                "files_deleted", "wasted_bytes", "entries"]
        assert b.layers[same].equals(a.layers[same]), source
        assert b.files().equals(a.files()), source
        assert b.waste.equals(a.waste), source
        assert b.sizes().equals(a.sizes()), source
        assert (b.efficiency, b.wasted_bytes) == (a.efficiency, a.wasted_bytes), source
    oci = nbimages.inspect(f"oci:{edits['oci']}:edits")
    assert all(oci.layers.compressed_size < oci.layers["size"] + 10240)  # gzip blobs


def test_efficiency_and_waste_agree_with_dive(edits, tmp_path):
    out = tmp_path / "dive.json"
    subprocess.run([tool("dive"), "--ci", "--source", "docker-archive", "--json", str(out),
                    f"docker-archive://{edits['archive']}"], capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    dive = json.loads(out.read_text())
    insp = edits["insp"]
    assert insp.efficiency == dive["image"]["efficiencyScore"]
    assert insp.waste.total_bytes.sum() == dive["image"]["inefficientBytes"]
    assert [lay["sizeBytes"] for lay in dive["layer"]] == list(insp.layers["size"])
    assert insp.dive["size"] == dive["image"]["sizeBytes"]


def test_whiteouts_become_deleted_rows(edits):
    files = edits["insp"].files(layer=4)
    rows = {(p, c) for p, c in zip(files.path, files.change)}
    for path in ("/app/small", "/app/gone", "/app/gone/a", "/app/gone/b", "/swap/inner",
                 "/opq/old", "/opq/sub", "/opq/sub/older"):
        assert (path, "deleted") in rows, path
    assert ("/opq/new", "added") in rows
    assert ("/swap", "modified") in rows  # a directory replaced by a file
    deleted = files[files.change == "deleted"].set_index("path")
    assert deleted.loc["/app/gone/b", "size"] == 4000 and deleted.loc["/app/small", "mode"] == 0o600
    layers = edits["insp"].layers
    assert layers.files_deleted[4] == len(deleted) == 8


def test_overwrites_and_chmod_are_modifications(edits):
    files = edits["insp"].files(layer=3).set_index("path")
    assert files.loc["/app/big", "change"] == "modified"
    assert files.loc["/app/big", "size"] == 150000
    assert files.loc["/app/small", "mode"] == 0o600
    assert edits["insp"].files(layer=2).set_index("path").loc["/app/big", "change"] == "added"


def test_final_filesystem_has_only_surviving_copies(edits):
    final = edits["insp"].files(final=True).set_index("path")
    assert final.loc["/app/big", "size"] == 50000 and final.loc["/app/big", "layer"] == 5
    assert final.loc["/swap", "kind"] == "file"
    for gone in ("/app/small", "/app/gone/a", "/opq/old", "/opq/sub", "/swap/inner"):
        assert gone not in final.index
    assert final["size"].sum() == edits["insp"].final_size


def test_wasted_bytes_count_every_copy_squashing_drops(edits):
    insp = edits["insp"]
    assert insp.wasted_bytes == WASTED
    assert list(insp.layers.wasted_bytes[2:]) == [LAYER2 - 5, LAYER3, 0, 0]
    waste = insp.waste.set_index("path")
    assert waste.loc["/app/big", "wasted_bytes"] == 250000          # two lost copies
    assert waste.loc["/app/big", "total_bytes"] == 300000           # dive: all three copies
    assert waste.loc["/opq/sub/older", "reason"] == "hidden by an opaque directory"
    assert waste.loc["/app/gone/a", "reason"] == "deleted with its directory"
    assert waste.loc["/swap/inner", "reason"] == "directory replaced by a file"
    assert not waste.loc["/opq/old", "dive"]                        # dive misses these
    assert insp.waste.wasted_bytes.sum() == insp.wasted_bytes
    notes = insp.explain()
    assert "#684" in notes and "/opq opaque" in notes


def test_sizes_break_down_the_final_filesystem(edits):
    insp = edits["insp"]
    sizes = insp.sizes(depth=1).set_index("path")
    assert sizes["size"].sum() == insp.final_size
    assert sizes.loc["/app", "size"] == 50000 + 5 and sizes.loc["/app", "layers"] == [2, 5]
    assert sizes.loc["/app", "top_layer"] == 5
    assert sizes.loc["/bin", "layers"] == [0, 1]
    assert list(insp.sizes(depth=0).path) == ["/"]


def test_unsafe_link_is_reported_and_not_followed(edits):
    unsafe = edits["insp"].unsafe
    assert list(zip(unsafe.path, unsafe.reason)) == [
        ("app/escape", "symlink target escapes the image root")]


def test_diff_against_the_base(edits, busybox_image):
    insp = edits["insp"]
    diff = insp.diff(busybox_image and f"docker-daemon:{busybox_image}")
    assert set(diff.change) == {"removed"}
    assert {"/app/big", "/opq/new", "/swap", "/var/lib/dpkg/status"} <= set(diff.path)
    back = nbimages.inspect(f"docker-daemon:{busybox_image}").diff(insp).set_index("path")
    assert back.loc["/app/big", "change"] == "added" and back.loc["/app/big", "size_b"] == 50000
    assert "/bin/busybox" not in back.index  # the same copy of the same layer


def test_diff_sees_modified_files(edits, docker_client, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    docker_build(docker_client, ctx, "nbtest/analysis-edits:2",
                 f"FROM {TAG}\nRUN chmod 600 /opq/new && echo more >> /swap "
                 "&& cp /app/big /app/big2\n")
    diff = edits["insp"].diff("docker-daemon:nbtest/analysis-edits:2").set_index("path")
    assert diff.loc["/swap", "change"] == "modified" and "size" in diff.loc["/swap", "what"]
    assert diff.loc["/opq/new", "what"] == "mode" and diff.loc["/opq/new", "mode_b"] == 0o600
    assert diff.loc["/app/big2", "change"] == "added"
    assert "/app/big" not in diff.index


def test_read_files_hands_over_selected_files_by_layer(edits):
    insp = edits["insp"]
    got = [(layer, e.path, e.data) for layer, e in insp.read_files(
        lambda p: p == "var/lib/dpkg/status" or p.endswith(".wh.gone"))]
    assert got == [(2, "var/lib/dpkg/status", b"Package: demo\n"),
                   (4, "app/.wh.gone", b""),  # whiteouts are empty files
                   (5, "var/lib/dpkg/status", b"Package: demo2\n")]


def test_history_lists_entries_without_layers(edits):
    history = edits["insp"].history
    env = history[history.created_by.str.contains("ENV X=1")]
    assert bool(env.empty_layer.iloc[0]) and env.layer.isna().all()
    assert list(history.layer.dropna()) == list(range(6))


def test_json_export_is_the_tables_as_records(edits):
    insp = edits["insp"]
    data = json.loads(insp.to_json(files=True, sizes=True))
    for key in ("digest", "size", "efficiency", "wasted_bytes", "layers", "waste"):
        assert key in data
    assert data["digest"] == insp.digest and data["wasted_bytes"] == WASTED
    assert data["layers"] == json.loads(insp.layers.to_json(orient="records"))
    assert data["waste"] == json.loads(insp.waste.to_json(orient="records"))
    assert len(data["files"]) == len(insp.files())
    assert data["sizes"][0]["path"] == insp.sizes().path[0]


def test_display_shows_summary_and_layer_table(edits):
    insp = edits["insp"]
    text = repr(insp)
    assert insp.digest in text and "efficiency" in text and "chmod 600" in text
    page = insp._repr_html_()
    assert "<table" in page and insp.layers.diff_id[2] in page


def _archive(path, layer: bytes):
    import hashlib
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": [], "Layers": ["l/layer.tar"]}])
    with tarfile.open(path, "w") as tf:
        for name, data in (("c.json", config), ("l/layer.tar", layer),
                           ("manifest.json", manifest.encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def test_truncated_layer_is_a_clear_error(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("f")
        ti.size = 5000
        tf.addfile(ti, io.BytesIO(bytes(5000)))
    archive = _archive(tmp_path / "cut.tar", buf.getvalue()[:3000])
    with pytest.raises(InvalidImage, match=r"Layer 0 .* truncated"):
        nbimages.inspect(f"docker-archive:{archive}")


def test_layer_that_is_not_a_tar_is_a_clear_error(tmp_path):
    archive = _archive(tmp_path / "junk.tar", b"this is not a tar archive " * 40)
    with pytest.raises(InvalidImage, match="not a valid tar"):
        nbimages.inspect(f"docker-archive:{archive}")


def test_diff_with_content_compares_bytes_of_lookalike_files(edits, docker_client, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    same_meta = "touch -r /app/keep/k"
    docker_build(docker_client, ctx, "nbtest/analysis-edits:3",
                 f"FROM {TAG}\nRUN head -c 100 /dev/zero > /x && {same_meta} /x "
                 f"&& head -c 100 /dev/zero > /same && {same_meta} /same\n")
    docker_build(docker_client, ctx, "nbtest/analysis-edits:4",
                 "FROM nbtest/analysis-edits:3\n"
                 f"RUN head -c 100 /dev/urandom > /x && {same_meta} /x "
                 f"&& cat /same > /s2 && cat /s2 > /same && rm /s2 && {same_meta} /same\n")
    a = nbimages.inspect("docker-daemon:nbtest/analysis-edits:3")
    b = nbimages.inspect("docker-daemon:nbtest/analysis-edits:4")
    assert a.diff(b).empty  # same size, mode, owner and mtime: metadata cannot tell
    diff = a.diff(b, content=True)
    assert list(zip(diff.path, diff.change, diff.what)) == [("/x", "modified", "content")]


def test_deleted_rows_come_in_path_order_every_run(tmp_path):
    from test_dive_compat import _layer as synth_layer, write_archive
    names = [f"d/f{n:02}" for n in range(40)]
    base = synth_layer([("d", "dir", 0)] + [(p, "file", 1) for p in names])
    gone = synth_layer([(".wh.d", "file", 0)])
    insp = nbimages.inspect(write_archive(tmp_path / "a.tar", [base, gone]))
    # the deleted copies were collected from sets, whose order depends on the string hash seed
    assert insp.files(layer=1).path.tolist() == ["/d"] + ["/" + p for p in names]


def test_explain_is_silent_about_deleting_an_empty_directory(tmp_path):
    from test_dive_compat import _layer as synth_layer, write_archive
    base = synth_layer([("empty", "dir", 0), ("full", "dir", 0), ("full/x", "file", 10)])
    gone = synth_layer([(".wh.empty", "file", 0), (".wh.full", "file", 0)])
    notes = nbimages.inspect(write_archive(tmp_path / "a.tar", [base, gone])).notes()
    assert not any("/empty" in n for n in notes)  # 0 bytes: dive's numbers are the same
    assert any("deletes the directory /full" in n for n in notes)


def test_unsafe_table_names_entries_as_written_in_the_tar(tmp_path):
    from test_dive_compat import _layer as synth_layer, write_archive
    layer = synth_layer([("ok", "file", 1), ("../../tmp/evil", "file", 1), ("a/../../up", "file", 1)])
    insp = nbimages.inspect(write_archive(tmp_path / "a.tar", [layer]))
    assert insp.unsafe.path.tolist() == ["../../tmp/evil", "a/../../up"]
    assert set(insp.files(final=True).path) == {"/ok"}  # neither is applied

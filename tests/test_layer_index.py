"""The persistent layer index: same tables with and without it, read instead of the layers,
verified (a damaged file is rebuilt from the layer), bounded, dropped by prune."""

from __future__ import annotations

import gc
import io
import os
import tarfile
from pathlib import Path

import pandas as pd
import pytest

import nbimages
from nbimages.errors import InvalidImage
from nbimages import maintenance
from nbimages.analysis import inspection as inspection_module
from nbimages.analysis.inspection import inspect
from nbimages.analysis.layerindex import LayerIndex, chain_id
from nbimages.notebook.explorer import explore
from nbimages.store import default_store

from bases import image_from_tars


def _tar(path: Path, entries: list[tuple]) -> Path:
    """entries: (name, kind, payload-or-link); kinds f d l h."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                tf.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
                tf.addfile(ti)
            else:
                ti.size, ti.mode, ti.uid, ti.gid = len(arg), 0o644, 1000, 100
                tf.addfile(ti, io.BytesIO(arg))
    return path


def _layers(tmp: Path) -> list[Path]:
    """Layers with every rule the walk knows: whiteouts, opaque dirs, links, rewrites,
    unsafe names, non-ASCII and undecodable names, a directory replaced by a file."""
    return [
        _tar(tmp / "l0.tar", [
            ("etc", "d", None), ("etc/passwd", "f", b"root:x:0:0\n"),
            ("usr", "d", None), ("usr/lib", "d", None),
            *[(f"usr/lib/mod{i}.py", "f", bytes(i * 10)) for i in range(40)],
            ("opt/data/keep.bin", "f", bytes(5000)), ("opt/data/sub/x", "f", b"x" * 300),
            ("bin", "d", None), ("bin/sh", "f", b"#!" + bytes(100)), ("bin/ash", "h", "bin/sh"),
            ("lib", "l", "usr/lib"), ("caf\u00e9/na\u00efve.txt", "f", b"ok"),
            ("tmp/big", "f", bytes(20000)), ("replaced/child", "f", b"c" * 50),
        ]),
        _tar(tmp / "l1.tar", [
            ("usr/lib/mod3.py", "f", b"rewritten" * 20), ("usr/lib/.wh.mod4.py", "f", b""),
            ("opt/data/.wh..wh..opq", "f", b""), ("opt/data/new", "f", b"n" * 70),
            ("tmp/.wh.big", "f", b""), (".wh.nothing-here", "f", b""),
            ("replaced", "f", b"now a file"), ("../escape", "f", b"evil"),
            ("lib/through-link", "f", b"via link"),
        ]),
        _tar(tmp / "l2.tar", [
            ("usr/lib/mod3.py", "f", b"third" * 30), ("etc/passwd", "f", b"root:x:0:0:r\n"),
            ("usr/.wh.lib", "f", b""), ("bad\udcff-name", "f", b"raw bytes name"),
        ]),
    ]


def _tables(insp, content: bool = True) -> dict:
    """Every table of an inspection; `content=False` leaves out the one that reads file bytes
    (packages() reads the package databases from the layers themselves)."""
    out = {"layers": insp.layers, "history": insp.history, "files": insp.files(),
            "final": insp.files(final=True), "layer1": insp.files(layer=1),
            "sizes": insp.sizes(), "sizes0": insp.sizes(depth=0), "waste": insp.waste,
            "unsafe": insp.unsafe,
            "numbers": pd.DataFrame([{**insp.dive, "size": insp.size,
                                      "final_size": insp.final_size,
                                      "wasted_bytes": insp.wasted_bytes,
                                      "unsafe_size": insp.unsafe_size,
                                      "corrected": insp.corrected_efficiency,
                                      "notes": "\n".join(insp.notes())}]),
            "json": pd.DataFrame([{"json": insp.to_json(files=True, sizes=True)}])}
    if content:
        out["packages"] = insp.packages()
    return out


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_every_table_is_the_same_with_and_without_the_index(tmp_path):
    image = image_from_tars(_layers(tmp_path))
    plain = _tables(inspect(image, index=False))
    index = LayerIndex()
    assert index.files() == []  # index=False neither reads nor writes it
    cold = _tables(inspect(image))
    assert len(index.files()) == 3 and len(index.results_files()) == 1
    warm_insp = inspect(image_from_tars(_layers(tmp_path)))
    assert warm_insp.walked and warm_insp._walk is None  # the stack's results, no walk yet
    warm = _tables(warm_insp)
    for p in index.files():  # the stack's results alone, the layers read again for files()
        p.unlink()
    results_only = _tables(inspect(image_from_tars(_layers(tmp_path))))
    _same(plain, cold)
    _same(plain, warm)
    _same(plain, results_only)
    assert plain["unsafe"].shape[0] >= 2 and plain["numbers"]["notes"][0]  # rules exercised


def _summary(insp) -> tuple:
    return insp.to_json(), repr(insp), insp._repr_html_(), insp.layers, insp.waste, insp.unsafe


def _same_summary(a: tuple, b: tuple) -> None:
    assert a[:3] == b[:3]
    for x, y in zip(a[3:], b[3:]):
        pd.testing.assert_frame_equal(x, y)


def test_a_stack_seen_before_is_summarised_without_reading_a_layer(tmp_path, monkeypatch):
    source, out = _saved(tmp_path)
    expected = _summary(inspect(source, index=False))
    inspect(source)  # stores the tables and the results
    layers = [l.digest for l in nbimages.open_image(source).layers]
    for d in layers:  # no layer blob ...
        (out / "blobs" / "sha256" / d.split(":")[1]).unlink()

    def no_table(self, *args, **kwargs):
        raise AssertionError("a layer table was read")
    with monkeypatch.context() as patched:  # ... and no layer table is read
        patched.setattr(LayerIndex, "load", no_table)
        warm = inspect(source)
        _same_summary(expected, _summary(warm))
        assert warm._walk is None and "to download" not in repr(warm)
    files = warm.files()  # the file tables read the layer tables, as before
    assert "/etc/passwd" in set(files.path) and warm._walk is not None
    _same_summary(expected, _summary(warm))


def _stored_results(tmp_path):
    """An image inspected once: its source, its summary read without the index, and the file
    holding its stack results."""
    source, _ = _saved(tmp_path)
    expected = _summary(inspect(source, index=False))
    inspect(source)
    [stored] = LayerIndex().results_files()
    return source, expected, stored


def test_results_of_another_version_are_not_used(tmp_path, monkeypatch):
    source, expected, stored = _stored_results(tmp_path)
    before = stored.read_bytes()
    with monkeypatch.context() as patched:
        patched.setattr(inspection_module, "_producer", lambda: "sha256:" + "0" * 64)
        again = inspect(source)
        assert again._walk is not None  # walked again, not taken from the other version's
        _same_summary(expected, _summary(again))
        assert stored.read_bytes() != before and b"0" * 64 in stored.read_bytes()
    assert inspect(source)._walk is not None  # and back: replaced once more, never mixed
    assert stored.read_bytes() == before


def test_damaged_results_are_rebuilt_and_reported_by_store_check(tmp_path):
    source, expected, stored = _stored_results(tmp_path)
    good = stored.read_bytes()
    data = bytearray(good)
    data[-5] ^= 0xFF
    stored.write_bytes(bytes(data))
    report = maintenance.check()
    assert not report.ok and list(report.problems.kind) == ["layer index file"]
    assert list(report.problems.blob) == [f"sha256:{stored.name}"]
    again = inspect(source)  # never trusted: deleted, computed again, stored again
    assert again._walk is not None
    _same_summary(expected, _summary(again))
    assert stored.read_bytes() == good and maintenance.check().ok
    stored.write_bytes(b"NBSTACKRESULTS1\n" + bytes(4))
    assert maintenance.check(repair=True).ok is True and not stored.exists()


def test_stack_results_are_keyed_by_the_chain_id_the_engine_uses(tmp_path, docker_client):
    # Docker's layer store names each stack of layers by its OCI ChainID: an image we wrote,
    # loaded into the engine, must have a layerdb entry under each of our chain ids.
    image = image_from_tars(_layers(tmp_path)[:2] + [_tar(tmp_path / "l3.tar", [
        ("usr/share/doc/readme", "f", os.urandom(2000))])])
    archive = tmp_path / "image.tar"
    image.save(str(archive), format="docker", tag=f"nbimages-test/chain:{os.getpid()}")
    with open(archive, "rb") as f:
        docker_client.images.load(f.read())
    try:
        root = Path(docker_client.info()["DockerRootDir"]) / "image"
        layerdb = next(root.glob("*/layerdb/sha256"))
        ids = image.diff_ids
        for n in range(1, len(ids) + 1):
            chain = chain_id(ids[:n])
            entry = layerdb / chain.split(":")[1]
            assert entry.is_dir(), f"no engine layer for the chain of {n} layers"
            assert (entry / "diff").read_text().strip() == ids[n - 1]
        assert chain_id(ids[:1]) == ids[0] and chain_id([]) is None
        assert chain_id([ids[0], "sha256:short"]) is None
    finally:
        docker_client.images.remove(f"nbimages-test/chain:{os.getpid()}", force=True)


def test_the_cycle_collector_is_left_as_the_caller_had_it(tmp_path):
    # the walk pauses the cycle collector; it must come back on (and stay off if it was off)
    image = image_from_tars(_layers(tmp_path))
    assert gc.isenabled()
    _tables(inspect(image, index=False))
    assert gc.isenabled()
    gc.disable()
    try:
        _tables(inspect(image_from_tars(_layers(tmp_path)), index=False))
        assert not gc.isenabled()
    finally:
        gc.enable()


def _saved(tmp_path: Path) -> tuple[str, Path]:
    out = tmp_path / "image-oci"
    image_from_tars(_layers(tmp_path)).save(str(out), format="oci-dir")
    return f"oci:{out}", out


def test_a_warm_inspection_reads_no_layer(tmp_path):
    source, out = _saved(tmp_path)
    expected = _tables(inspect(source), content=False)
    layers = [l.digest for l in nbimages.open_image(source).layers]
    for d in layers:  # the layer blobs are gone: only the index can answer
        (out / "blobs" / "sha256" / d.split(":")[1]).unlink()
    _same(expected, _tables(inspect(source), content=False))
    with pytest.raises(InvalidImage, match="missing from the OCI layout"):
        inspect(source, index=False)


def test_a_damaged_index_file_is_rebuilt_from_the_layer(tmp_path):
    source, _ = _saved(tmp_path)
    expected = _tables(inspect(source, index=False))
    inspect(source)
    index = LayerIndex()
    files = sorted(index.files())
    assert len(files) == 3
    good = {p: p.read_bytes() for p in files}
    data = bytearray(good[files[0]])
    data[-10] ^= 0xFF  # one flipped bit in the compressed columns
    files[0].write_bytes(bytes(data))
    files[1].write_bytes(good[files[1]][:50])  # cut short
    header_end = good[files[2]].index(b"}") + 1
    files[2].write_bytes(good[files[2]].replace(b'"entries":', b'"entries":1', 1)
                         if b'"entries":' in good[files[2]][:header_end] else b"junk")
    _same(expected, _tables(inspect(source)))
    assert {p: p.read_bytes() for p in sorted(index.files())} == good  # rebuilt, the same


def test_an_index_file_of_another_layer_is_not_used(tmp_path):
    source, _ = _saved(tmp_path)
    expected = _tables(inspect(source, index=False))
    inspect(source)
    files = sorted(LayerIndex().files())
    a, b = files[0].read_bytes(), files[1].read_bytes()
    files[0].write_bytes(b)  # a valid file, under the wrong diff_id
    files[1].write_bytes(a)
    _same(expected, _tables(inspect(source)))


def test_the_index_is_bounded_and_evicts_the_least_recently_used(tmp_path, monkeypatch):
    source, _ = _saved(tmp_path)
    inspect(source)
    index = LayerIndex()
    sizes = sorted(p.stat().st_size for p in index.all_files())
    assert len(sizes) == 4  # three layer tables and the results of the stack
    monkeypatch.setenv("NBIMAGES_LAYER_INDEX_MAX_BYTES", str(sizes[-1] + sizes[-2]))
    for p in index.all_files():
        p.unlink()
    inspect(source)
    count, used = index.usage()
    assert 2 <= count < 4 and used <= sizes[-1] + sizes[-2]
    assert len(index.results_files()) == 1  # the newest file is kept


def test_saving_the_tables_of_an_image_scans_the_index_once(tmp_path, monkeypatch):
    # the bound is checked against what was counted at the first save plus what was written
    # since: a full index is not listed and stat'ed again for every layer
    source, _ = _saved(tmp_path)
    inspect(source)
    for p in LayerIndex().all_files():
        p.unlink()
    scans = []
    listed = LayerIndex.all_files
    monkeypatch.setattr(LayerIndex, "all_files", lambda self: scans.append(1) or listed(self))
    inspect(source)
    assert LayerIndex().usage()[0] == 4 and len(scans) == 2  # the first save, and usage()


def test_store_df_counts_and_prune_drops_the_index(tmp_path):
    source, _ = _saved(tmp_path)
    inspect(source)
    count, used = LayerIndex().usage()
    assert count == 4 and used > 0  # three layer tables and the results of the stack
    summary = maintenance.df().summary.set_index("type")
    assert summary.loc["layer index", "count"] == 4
    assert summary.loc["layer index", "size"] == used
    assert summary.loc["layer index", "reclaimable"] == used
    dry = maintenance.prune(dry_run=True)
    assert (dry.removed.kind == "layer index file").sum() == 4 and LayerIndex().usage()[0] == 4
    report = maintenance.prune()
    assert (report.removed.kind == "layer index file").sum() == 4
    assert LayerIndex().usage() == (0, 0)


def test_registry_source_downloads_only_layers_never_seen(tmp_path, registry):
    base = image_from_tars(_layers(tmp_path)[:2])
    ref = f"{registry}/nbimages-test/layerindex-{os.getpid()}:base"
    base.push(ref)
    top = image_from_tars(_layers(tmp_path)[:3])
    ref2 = f"{registry}/nbimages-test/layerindex-{os.getpid()}:top"
    top.push(ref2)
    store = default_store()
    first = inspect(f"docker://{ref}")
    assert not first.walked  # nothing indexed yet: the manifest's table, nothing downloaded
    expected = _tables(first.walk(), content=False)
    downloaded = [l.digest for l in first.image.layers if store.has_blob(l.digest)]
    assert len(downloaded) == 2
    for d in downloaded:  # forget the blobs: a later inspection must not need them
        store.blob_path(d).unlink()
    warm = inspect(f"docker://{ref}")
    assert warm.walked
    _same(expected, _tables(warm, content=False))
    assert not any(store.has_blob(l.digest) for l in warm.image.layers)
    upper = inspect(f"docker://{ref2}").walk()
    assert [store.has_blob(l.digest) for l in upper.image.layers] == [False, False, True]
    _same(_tables(inspect(f"docker://{ref2}", index=False).walk(), content=False),
          _tables(upper, content=False))
    _same(_tables(inspect(f"docker://{ref}", index=False).walk(), content=False), expected)


def test_the_builder_indexes_the_layers_it_writes(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "data" / "deep").mkdir(parents=True)
    (ctx / "data" / "deep" / "big.bin").write_bytes(os.urandom(3000))
    (ctx / "data" / "caf\u00e9.txt").write_text("x" * 700)
    (ctx / "data" / "link").symlink_to("deep/big.bin")
    r = nbimages.Recipe("scratch", context=ctx)
    r.file("/app/a.py", "print('a')\n" * 50)
    r.copy("data/", "/data/")
    r.file("/app/a.py", "print('b')\n")
    image = r.build(f"layerindex-built:{os.getpid()}")
    index = LayerIndex()
    assert sorted(index.files()) == sorted(index.path(l.diff_id) for l in image.layers)
    built = {p: p.read_bytes() for p in index.files()}
    from_index = _tables(inspect(image), content=False)
    assert {p: p.read_bytes() for p in index.files()} == built  # read, not rewritten
    for p in index.all_files():
        p.unlink()
    _same(_tables(inspect(nbimages.open_image(f"layerindex-built:{os.getpid()}"), index=False),
                  content=False), from_index)
    inspect(nbimages.open_image(f"layerindex-built:{os.getpid()}"))  # from the blobs this time
    assert {p: p.read_bytes() for p in index.files()} == built


def test_a_damaged_blob_behind_a_warm_index_is_found_by_store_check(tmp_path):
    r = nbimages.Recipe("scratch").file("/etc/hello", "hello\n")
    r.file("/data/random.bin", os.urandom(300_000))
    image = r.build("team/indexed:1")
    expected = _tables(inspect("store:team/indexed:1", index=False), content=False)
    store = default_store()
    path = store.blob_path(image.layers[1].digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    # the index answers for the diff_id (a fact, verified when written): same tables
    _same(expected, _tables(inspect("store:team/indexed:1"), content=False))
    report = maintenance.check()
    assert not report.ok and image.layers[1].digest in set(report.problems.blob)


def test_store_check_reports_a_damaged_index_file_and_repair_removes_it(tmp_path):
    source, _ = _saved(tmp_path)
    inspect(source)
    index = LayerIndex()
    files = sorted(index.files())
    assert maintenance.check().ok  # sound index files are not reported
    data = bytearray(files[0].read_bytes())
    data[-10] ^= 0xFF
    files[0].write_bytes(bytes(data))
    report = maintenance.check()
    damaged = f"{files[0].parent.name}:{files[0].name}"
    assert not report.ok and list(report.problems.blob) == [damaged]
    assert list(report.problems.kind) == ["layer index file"] and files[0].exists()
    report = maintenance.check(repair=True)
    assert report.ok and report.problems.action[0].startswith("removed")
    assert sorted(index.files()) == files[1:]
    assert maintenance.check().ok


def test_the_explorers_first_view_of_a_stack_seen_before_reads_no_layer_table(tmp_path,
                                                                              monkeypatch):
    source, _ = _saved(tmp_path)
    inspect(source)

    def no_table(self, *args, **kwargs):
        raise AssertionError("a layer table was read")
    with monkeypatch.context() as patched:
        patched.setattr(LayerIndex, "load", no_table)
        ex = explore(source)
        app = ex.app
        assert len(app.rows) == 3 and ex.inspection._walk is None
        assert app.chart.value == "" and app.waste.value == ""
    app.tabs.selected_index = 1  # the Sizes tab, by directory: now the file tables are read
    assert "nbimages-chart-dirs" in app.chart.value and ex.inspection._walk is not None
    app.tabs.selected_index = 2
    assert "Wasted space" in app.waste.value

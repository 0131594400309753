"""Whiteout rules and the merged tree they produce (OCI image-spec layer.md, "Whiteouts")."""

from __future__ import annotations

import io
import tarfile

from nbimages.analysis.walk import Walk
from nbimages.oci import whiteout as wh


def test_classify_names():
    assert wh.classify("a/b") == ("", "a/b")
    assert wh.classify("a/.wh.b") == ("whiteout", "a/b")
    assert wh.classify(".wh.top") == ("whiteout", "top")
    assert wh.classify("a/.wh..wh..opq") == ("opaque", "a")
    assert wh.classify(".wh..wh..opq") == ("opaque", "")
    assert wh.classify("a/.wh..wh.plnk") == ("meta", "a/.wh..wh.plnk")
    assert wh.classify("a/x.wh.y") == ("", "a/x.wh.y")


def test_names_that_delete():
    assert wh.whiteout_of("a/b/") == "a/.wh.b"
    assert wh.whiteout_of("top") == ".wh.top"
    assert wh.opaque_marker("a/b") == "a/b/.wh..wh..opq"
    assert wh.opaque_marker("") == ".wh..wh..opq"
    assert wh.is_whiteout("x/.wh.y") and not wh.is_whiteout("x/y.wh.")


def test_removing_a_directory_removes_everything_under_it():
    t: wh.MergedTree[int] = wh.MergedTree()
    for n, p in enumerate(["a", "a/b", "a/b/c", "a/d", "ab", "x/y/z"]):
        t.set(p, n)
    assert sorted(t.remove("a")) == [("a", 0), ("a/b", 1), ("a/b/c", 2), ("a/d", 3)]
    assert sorted(t.values) == ["ab", "x/y/z"]
    assert t.exists("x/y") and "x/y" not in t  # an implicit parent
    assert sorted(t.remove("x")) == [("x/y/z", 5)]
    assert t.remove("missing") == []


def test_opaque_directory_keeps_itself_and_drops_its_children():
    t: wh.MergedTree[int] = wh.MergedTree()
    for n, p in enumerate(["o", "o/f", "o/s/g"]):
        t.set(p, n)
    assert sorted(t.remove_children("o")) == [("o/f", 1), ("o/s/g", 2)]
    assert list(t.values) == ["o"] and not t.has_children("o")
    t.set("o/new", 9)
    assert t.children("o") == ["o/new"]


def _layer(entries) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, size in entries:
            ti = tarfile.TarInfo(name)
            ti.size = size
            tf.addfile(ti, io.BytesIO(bytes(size)))
    buf.seek(0)
    return buf


def test_whiteouts_apply_to_lower_layers_only_whatever_the_tar_order():
    walk = Walk()
    walk.add_layer(_layer([("a/f", 10), ("a/g", 3)]))
    # the file comes before its own whiteout in the tar: it must survive
    walk.add_layer(_layer([("a/f", 4), ("a/.wh.f", 0), ("a/.wh.g", 0)]))
    walk.finish()
    assert walk.tree.values.keys() == {"a/f"}
    assert walk.copy_info(walk.tree.values["a/f"])[2] == 4
    top = walk.layers[1]
    assert [walk.copy_info(c)[0] for c in top.deleted] == ["a/g"]
    assert top.changes[0] == 1  # a/f modified (it existed below)


def test_file_replacing_a_directory_deletes_its_subtree():
    walk = Walk()
    walk.add_layer(_layer([("d/x", 1), ("d/y/z", 2)]))
    top = walk.add_layer(_layer([("d", 5)]))
    walk.finish()
    assert sorted(walk.copy_info(c)[0] for c in top.deleted) == ["d/x", "d/y/z"]
    assert sorted(walk.tree.values) == ["d"]


def test_a_whiteout_climbing_out_of_the_root_deletes_nothing():
    walk = Walk()
    walk.add_layer(_layer([("etc/passwd", 10)]))
    walk.add_layer(_layer([("../.wh.etc", 0), ("../../x", 1)]))
    walk.finish()
    assert sorted(walk.tree.values) == ["etc/passwd"]
    assert [why for _, why in walk.layers[1].unsafe] == ["path escapes the image root"] * 2

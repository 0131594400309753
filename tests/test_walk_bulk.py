"""The bulk layer walk gives what the entry-by-entry walk gives: every column, event, deletion,
unsafe entry and dive number, on hand-made tricky layers and on random ones."""

from __future__ import annotations

import random

import pytest

from nbimages.analysis.codes import ESCAPES, KIND_CODE, META, OPAQUE, SKIPPED, UNSAFE, WHITEOUT
from nbimages.analysis.walk import LayerFiles, Walk
from nbimages.oci import whiteout as wh

# an entry: (path, kind, size, link, unsafe reason)
F, D, S, H = "file", "dir", "symlink", "hardlink"


def make_layer(entries) -> LayerFiles:
    """A layer as `read_layer` would give it for these tar entries."""
    lf = LayerFiles()
    for idx, (path, kind, size, link, unsafe) in enumerate(entries):
        code = KIND_CODE[kind]
        if ".wh." in path:
            what = wh.classify(path)[0]
            if what == "whiteout":
                code = WHITEOUT
                lf.whiteouts.append(idx)
            elif what == "opaque":
                code = OPAQUE
                lf.opaques.append(idx)
            elif what == "meta":
                code = META
        lf.paths.append(path)
        lf.kinds.append(code)
        for col in (lf.sizes, lf.modes, lf.uids, lf.gids, lf.mtimes):
            col.append(size if col is lf.sizes else 0)
        if link:
            lf.links[idx] = link
        if unsafe:
            lf.unsafe.append((idx, unsafe))
            lf.members[idx] = "/" + path
        lf.size += size
    return lf


class CountingWalk(Walk):
    """A walk that records which layers took the bulk path."""

    def __init__(self, bulk: bool = True) -> None:
        super().__init__(bulk)
        self.bulk_layers: list[int] = []

    def _apply_bulk(self, i, lf, removed):
        parents = super()._apply_bulk(i, lf, removed)
        if parents is not None:
            self.bulk_layers.append(i)
        return parents


def walk_of(layers, bulk: bool) -> CountingWalk:
    walk = CountingWalk(bulk)
    for entries in layers:
        walk.apply(make_layer(entries))
    return walk


def snapshot(walk: Walk) -> dict:
    """Everything the tables and dive numbers are made of, in the order they are read."""
    tree = walk.tree
    kids = tree.kids
    d = walk.dive
    out = {
        "layers": [(bytes(lf.changes), lf.deleted, lf.deleted_how, list(lf.unsafe),
                    dict(lf.members), lf.unsafe_size) for lf in walk.layers],
        "events": list(walk.events),
        "values": list(tree.values.items()),
        "kids": {k: sorted(v) for k, v in kids.items() if v},
        "implicit": sorted(k for k in kids if k not in tree.values),
        "eff": sorted(d.eff.items()),
        "repeats": sorted((p, tuple(v)) for p, v in d.repeats.items()),
        "stacked": None if d.stacked is None else dict(d.stacked.values),
        "aborts": list(d.aborts),
        "elsewhere": sorted(d._elsewhere),
    }
    walk.finish()
    out["final"] = [(lf.final_size, lf.final_count) for lf in walk.layers]
    visible = [[0, 0] for _ in walk.layers]
    for c in tree.values.values():
        visible[c >> 32][0] += walk.layers[c >> 32].sizes[c & 0xFFFFFFFF]
        visible[c >> 32][1] += 1
    assert out["final"] == [tuple(v) for v in visible]
    # the lost copies are exactly the applied entries that are not in the final tree (what
    # the waste table lists), each once
    final = set(tree.values.values())
    applied_not_final = [i << 32 | j for i, lf in enumerate(walk.layers)
                         for j, change in enumerate(lf.changes)
                         if change not in (SKIPPED, UNSAFE) and i << 32 | j not in final]
    out["lost"] = walk.lost_codes()
    assert out["lost"] == applied_not_final
    assert len(walk._lost) == len(out["lost"])
    out["dive"] = (d.score, d.min_total, d.cum_total, d.inefficient)
    return out


def check_same(layers, bulk_layers=None) -> CountingWalk:
    fast = walk_of(layers, True)
    slow = walk_of(layers, False)
    assert slow.bulk_layers == []
    assert snapshot(fast) == snapshot(slow)
    if bulk_layers is not None:
        assert fast.bulk_layers == bulk_layers
    return fast


def e(path, kind=F, size=10, link="", unsafe=""):
    return (path, kind, size, link, unsafe)


BASE = [e("a", D), e("a/f", size=3), e("a/g", size=5), e("b", D), e("b/h", size=7)]

CASES = {
    "path_twice_in_one_layer": ([BASE, [e("a/f", size=1), e("c"), e("a/f", size=2)]], [0]),
    "file_replaces_directory": ([BASE, [e("a", F, 4)]], [0]),
    "directory_replaces_file": ([BASE, [e("a/f", D, 0), e("a/f/x")]], [0, 1]),
    "file_then_file_under_it_in_one_layer": ([BASE, [e("c"), e("c/x")]], [0]),
    "whiteout_dir_then_file_under_it": (
        [BASE, [e("a/.wh.b", size=0), e("a/b/new"), e(".wh.a", size=0), e("a/z")]], [0, 1]),
    "whiteout_of_missing_path": ([BASE, [e("nope/.wh.x", size=0), e("c")]], [0, 1]),
    "whiteout_removes_a_dir_dive_weighs": ([BASE, [e(".wh.a", size=0)], [e("a/f")]], [0, 1, 2]),
    "opaque_directory": ([BASE, [e("a", D), e("a/.wh..wh..opq", size=0), e("a/n")]], [0]),
    "aufs_metadata": ([BASE, [e(".wh..wh.plnk", D), e(".wh..wh.plnk/1.2", size=4)]], [0]),
    "hardlink_to_path_added_earlier": ([BASE, [e("c"), e("d", H, link="c")]], [0, 1]),
    "hardlink_to_path_added_later": ([BASE, [e("d", H, link="c"), e("c")]], [0, 1]),
    "hardlink_to_missing_path": ([BASE, [e("d", H, link="zz"), e("a/l", H, link="a/f")]], [0, 1]),
    "hardlink_to_a_whiteout_target": ([BASE, [e("a/.wh.f", size=0), e("d", H, link="a/f")]],
                                      [0, 1]),
    "write_through_symlink_below": ([BASE, [e("l", S, link="a")], [e("l/x"), e("m")]], [0, 1]),
    "symlink_and_entry_under_it_one_layer": ([BASE, [e("l/x"), e("l", S, link="a")]], [0]),
    "directory_over_symlink": ([BASE, [e("l", S, link="a")], [e("l", D), e("l/x")]], [0, 1]),
    "root_entry": ([[e("", D)] + BASE, [e("", D), e("c")]], [0, 1]),
    "escaping_entry": ([BASE, [e("c", unsafe=ESCAPES), e("d")]], [0]),
    "absolute_entry": ([BASE, [e("c", unsafe="absolute path"), e("d")]], [0]),
    "implicit_parents": ([[e("x/y/z")], [e("x/y/.wh.z", size=0)], [e(".wh.x", size=0)]],
                         [0, 1, 2]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bulk_walk_matches_entry_by_entry_walk(name):
    layers, bulk_layers = CASES[name]
    check_same(layers, bulk_layers)


def test_bulk_walk_takes_a_path_written_twice_from_its_last_copy():
    walk = check_same(CASES["path_twice_in_one_layer"][0])
    assert walk.copy_info(walk.tree.values["a/f"])[2] == 2


def test_bulk_walk_flags_a_hardlink_to_a_missing_path():
    walk = check_same(CASES["hardlink_to_missing_path"][0])
    assert [j for j, _ in walk.layers[1].unsafe] == [0]


def test_bulk_walk_flags_entries_written_through_a_symlink():
    walk = check_same(CASES["write_through_symlink_below"][0])
    assert [j for j, _ in walk.layers[2].unsafe] == [0]


COMPONENTS = ["a", "b", "c", "a", "b", ".wh.a", ".wh.b", ".wh..wh..opq", ".wh..wh.plnk", "x.wh.y"]


def random_layers(rng: random.Random, plain: bool) -> list[list[tuple]]:
    """Layers over a few names, so paths collide; `plain` leaves out what the bulk path
    never takes (opaque markers, AUFS metadata, unsafe entries)."""
    names = COMPONENTS[:5] + ([] if plain else COMPONENTS[5:]) + COMPONENTS[5:7]
    layers = []
    for _ in range(rng.randint(1, 6)):
        entries = []
        for _ in range(rng.randint(0, 14)):
            depth = rng.randint(0, 3) if not plain else rng.randint(1, 3)
            path = "/".join(rng.choice(names) for _ in range(depth))
            kind = rng.choice([F, F, F, D, D, S, H])
            link = path_like(rng) if kind in (S, H) else ""
            unsafe = "" if plain or rng.random() > 0.05 else rng.choice([ESCAPES, "absolute path"])
            entries.append(e(path, kind, rng.randint(0, 50), link, unsafe))
        layers.append(entries)
    return layers


def path_like(rng: random.Random) -> str:
    return "/".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "any"])
def test_bulk_walk_matches_entry_by_entry_walk_on_random_layers(plain):
    rng = random.Random(13)
    bulk = 0
    for _ in range(1500):
        layers = random_layers(rng, plain)
        bulk += len(check_same(layers).bulk_layers)
    assert bulk > 500  # the bulk path is what was tested


def test_a_twin_applies_like_its_layer_without_changing_it():
    # squash re-applies the lower layers in a walk of their own (builder/rewrite.py)
    layers = [make_layer([("etc", "dir", 0, "", ""), ("etc/a", "file", 5, "", ""),
                          ("opt/.wh..wh..opq", "file", 0, "", "")]),
              make_layer([("etc/.wh.a", "file", 0, "", ""), ("etc/l", "hardlink", 0, "gone", ""),
                          ("../up", "file", 3, "", ESCAPES)])]
    walk = Walk()
    for lf in layers:
        walk.apply(lf)
    unsafe_before = [list(lf.unsafe) for lf in layers]
    again = Walk()
    twins = [lf.twin() for lf in layers]
    for twin in twins:
        again.apply(twin)
    assert again.tree.values == walk.tree.values
    for lf, twin, before in zip(layers, twins, unsafe_before):
        assert twin.paths is lf.paths and twin.opaques == lf.opaques and len(twin) == len(lf)
        assert twin.changes == lf.changes and twin.deleted == lf.deleted
        assert lf.unsafe == before and twin.unsafe is not lf.unsafe

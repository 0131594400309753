"""dive's efficiency score and "inefficient files", reproduced number for number.

dive 0.13.1 (`dive/filetree/efficiency.go`, see shared/research/dive-metrics.md §1.3) builds
one tree per layer from the tar paths (missing parents become blank, non-directory nodes;
names starting `.wh..wh..` — opaque markers — are dropped) and visits each tree's *leaves*
in sorted, children-first order. Every leaf adds its tar size to its path's running total
and keeps the smallest size seen; a whiteout leaf instead weighs what it removes in the
stack of the layers below: the whole subtree if that was a directory, else 0. When that
path does not exist below, dive's visitor errors out: the rest of that layer's leaves are
never counted and the path keeps its initial minimum of -1. The score is Σmin / Σtotal
over all paths; the inefficient files are the paths seen as leaves in two layers or more,
and "potential wasted space" sums their totals (every copy, the kept one too: dive #684).

dive rebuilds the stack below a layer for every whiteout; here it is built once, lazily
(only images with whiteouts need it) and advanced layer by layer, which gives the same
numbers (dive-metrics.md §1.4).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, Sequence

from ..oci.whiteout import MergedTree, ancestors
from .codes import DIR, ESCAPES, META, OPAQUE, WHITEOUT as WH_CODE, positions


class LayerColumns(Protocol):
    """What dive reads of one walked layer (walk.LayerFiles is one)."""

    paths: Sequence[str]
    kinds: bytearray
    sizes: Sequence[int]
    unsafe: list[tuple[int, str]]


class WalkedLayers(Protocol):
    """What dive reads of the layer walk (walk.Walk is one): the merged tree and the layers."""

    tree: MergedTree
    layers: Sequence[LayerColumns]


# A node of dive's trees as one int, size << 1 | is_dir: a tuple per node held the stacked
# tree of an image with whiteouts 8 MB above dive's own peak (150,000 nodes).
BLANK = 0
_WH_BYTE = bytes([WH_CODE])
DOUBLE_WHITEOUT = ".wh..wh.."
WHITEOUT = ".wh."
_LAST = "\U0010ffff"  # sorts after any path component: children-first order


def dive_node(path: str) -> str:
    """The node dive creates for a path: everything before the first `.wh..wh..` component."""
    if DOUBLE_WHITEOUT not in path:
        return path
    kept = []
    for part in path.split("/"):
        if part.startswith(DOUBLE_WHITEOUT):
            break
        kept.append(part)
    return "/".join(kept)


def _parent(p: str) -> str:
    return p[:p.rfind("/")] if "/" in p else ""


def _is_whiteout_node(p: str) -> bool:
    return p[p.rfind("/") + 1:].startswith(WHITEOUT)


def _target(p: str) -> str:
    slash = p.rfind("/")
    return p[:slash + 1] + p[slash + 1 + len(WHITEOUT):]


class DiveModel:
    """Efficiency bookkeeping fed by the layer walk; `finish()` computes the results."""

    def __init__(self, walk: WalkedLayers, bulk: bool = True):
        self.walk = walk
        self.bulk = bulk  # False: every leaf and node one by one (the tests' reference)
        # path -> size of the paths seen once, and [total, min, count] of those seen again
        # (or after an abort): finish() sums the first in one call
        self.eff: dict[str, int] = {}
        self.repeats: dict[str, list[int]] = {}
        # the paths these may hold that are not in the walk's tree: removed from it, or
        # counted for a node that is no entry (a blank marker node, a whiteout target)
        self._elsewhere: set[str] = set()
        # each layer's directories, from the walk, until the stacked tree takes the layer
        self._parents: dict[int, set[str]] = {}
        self.stacked: MergedTree | None = None
        self.stacked_upto = -2
        self._markers: list[str] = []
        # (layer, whiteout path, leaves skipped, bytes skipped) for each aborted layer walk
        self.aborts: list[tuple[int, str, int, int]] = []
        self.score = 1.0
        self.min_total = 0
        self.cum_total = 0
        self.inefficient: list[tuple[str, int, int, int]] = []

    # ------------------------------------------------------------------ building
    def marker(self, path: str, parents: set) -> None:
        """An opaque marker or `.wh..wh.` entry: dive keeps only the nodes above it."""
        node = dive_node(path)
        if node == path:  # AUFS metadata outside the double-prefix rule: parents only
            node = _parent(path)
        if node:
            self._markers.append(node)
            par = _parent(node)
            while par not in parents:
                parents.add(par)
                par = _parent(par)

    def add_layer(self, i: int, lf: LayerColumns, parents: set, duplicates: bool,
                  skip: set, removed: Iterable[str], below: set[str] | None = None) -> None:
        """Count layer i's leaves. `removed`: the paths the layer deleted from the walk's
        tree; `below`, if known: the layer's paths that were in the tree before it (with
        `removed` from all layers, the only ones that can have been counted already)."""
        self._elsewhere.update(removed)
        self._parents[i] = parents
        paths, kinds, sizes = lf.paths, lf.kinds, lf.sizes
        if self.bulk and not (duplicates or skip or self._markers) and _plain(kinds) \
                and self._add_bulk(i, lf, parents, below):
            return
        # leaves: node path -> (entry index or -1 for a blank node)
        if duplicates:
            leaf_map: dict[str, int] = {}
            for idx, p in enumerate(paths):
                if p and kinds[idx] < OPAQUE and p not in parents and idx not in skip:
                    leaf_map[p] = idx
            leaves = list(leaf_map.items())
        else:
            leaves = [(p, idx) for idx, p in enumerate(paths)
                      if p not in parents and kinds[idx] < OPAQUE and p and not (skip and idx in skip)]
        if self._markers:
            values = self.walk.tree.values
            have = {p for p, _ in leaves}
            for node in self._markers:
                code = values.get(node)
                own = code is not None and code >> 32 == i
                if node not in parents and node not in have and not own:
                    leaves.append((node, -1))
                    have.add(node)
                    self._elsewhere.add(node)
            self._markers = []

        whiteouts = [(p, idx) for p, idx in leaves if idx >= 0 and kinds[idx] == WH_CODE] \
            if _WH_BYTE in kinds else []
        count = self._count
        if not whiteouts:
            # the leaves' paths are distinct: only those seen in a layer below need _count,
            # the rest go in at once
            self._count_new({p: sizes[idx] if idx >= 0 else 0 for p, idx in leaves})
            return

        weights = self._weights(i, [p for p, _ in whiteouts])
        self._elsewhere.update(map(_target, weights))
        if None in weights.values():
            # dive stops this layer's walk at the first missing whiteout target, in its
            # children-first sorted order; only the leaves before it count.
            leaves.sort(key=lambda item: item[0].split("/"))
            for n, (p, idx) in enumerate(leaves):
                if p in weights and weights[p] is None:
                    target = _target(p)
                    if target not in self.eff and target not in self.repeats:
                        self.repeats[target] = [0, -1, 0]
                    rest = leaves[n + 1:]
                    self.aborts.append((i, target, len(rest), sum(
                        sizes[j] for q, j in rest if j >= 0 and q not in weights)))
                    return
                size = weights[p] if p in weights else (sizes[idx] if idx >= 0 else 0)
                count(_target(p) if p in weights else p, size)
            return
        for p, idx in leaves:
            if p in weights:
                count(_target(p), weights[p])
            else:
                count(p, sizes[idx] if idx >= 0 else 0)

    def _add_bulk(self, i: int, lf: LayerColumns, parents: set, below: set[str] | None) -> bool:
        """`add_layer` for a layer with no markers and no unsafe entries, with dict
        operations; False (nothing done) if a path comes twice or a whiteout target is
        missing below: the leaves' order then matters."""
        paths, sizes = lf.paths, lf.sizes
        seen = dict(zip(paths, sizes))
        if len(seen) != len(paths):  # a whiteout twice: the walk applied no entry twice
            return False
        seen.pop("", None)
        for p in seen.keys() & parents:
            del seen[p]
        outs = [p for p in map(paths.__getitem__, positions(lf.kinds, WH_CODE)) if p in seen]
        weights = self._weights(i, outs) if outs else {}
        if None in weights.values():
            return False
        for p in outs:
            del seen[p]
        self._count_new(seen, below)
        self._elsewhere.update(map(_target, outs))
        for p in outs:  # the order of the counts of one layer does not change the results
            self._count(_target(p), weights[p])
        return True

    def _count_new(self, seen: dict[str, int], below: set[str] | None = None) -> None:
        """Count leaves of distinct paths: those seen in a layer below one by one, the rest
        at once. With `below` (see add_layer) only few paths need looking up."""
        repeats = self.repeats
        eff = self.eff
        if below is None:
            again = (seen.keys() & repeats.keys()) | (seen.keys() & eff.keys())
        else:
            again = (seen.keys() & below) | (seen.keys() & self._elsewhere)
        for p in again:
            if p in eff or p in repeats:
                self._count(p, seen.pop(p))
        eff.update(seen)

    def _count(self, key: str, size: int) -> None:
        """One leaf of `key` weighing `size`: dive's running total and minimum of the path."""
        v = self.repeats.get(key)
        if v is not None:
            v[0] += size
            if v[1] < 0 or size < v[1]:
                v[1] = size
            v[2] += 1
            return
        first = self.eff.pop(key, None)
        if first is None:
            self.eff[key] = size
        else:
            self.repeats[key] = [first + size, min(size, first), 2]

    def _weights(self, i: int, outs: list[str]) -> dict[str, int | None]:
        """What each whiteout leaf weighs in the stack below layer i: its target's subtree if
        that is a directory, else 0; None if the target is missing."""
        stacked = self._stacked_below(i)
        svalues = stacked.values
        weights: dict[str, int | None] = {}
        for p in outs:
            target = _target(p)
            info = svalues.get(target)
            if info is None:
                weights[p] = None
            elif info & 1:
                weights[p] = sum(v >> 1 for _, v in stacked.walk(target))
            else:
                weights[p] = 0
        return weights

    # ------------------------------------------------------------------ the stack below
    def _stacked_below(self, i: int) -> MergedTree:
        """dive's StackTreeRange(trees, 0, i-1): a copy of tree 0, then trees 0..i-1 stacked."""
        if self.stacked is None:
            self.stacked = MergedTree()
            nodes, parents = self._nodes(0)
            if parents is None:
                for p, info in nodes.items():
                    self.stacked.set(p, info)
            else:
                self.stacked.update(nodes, parents)
            self.stacked_upto = -1
        while self.stacked_upto < i - 1:
            self.stacked_upto += 1
            self._stack(self.stacked_upto)
        return self.stacked

    def _nodes(self, j: int) -> tuple[dict[str, int], set[str] | None]:
        """Layer j's tree as dive builds it: path -> size << 1 | is_dir, blank implicit
        parents; and the layer's directories when built in bulk (else None)."""
        lf = self.walk.layers[j]
        kinds, sizes, paths = lf.kinds, lf.sizes, lf.paths
        parents = self._parents.pop(j, None)
        if self.bulk and not lf.unsafe and _plain(kinds):
            nodes = dict(zip(paths, [s << 1 for s in sizes]))
            if len(nodes) == len(paths):
                for k in positions(kinds, DIR):
                    nodes[paths[k]] |= 1
                nodes.pop("", None)
                if parents is None:
                    parents = ancestors(paths)  # for such a layer, the walk's are these
                for par in parents:
                    if par not in nodes:
                        nodes[par] = BLANK
                del nodes[""]  # the root is no node
                return nodes, parents
        skip = {idx for idx, why in lf.unsafe if why == ESCAPES}
        nodes = {}
        for idx, p in enumerate(paths):
            if not p or skip and idx in skip:
                continue
            k = kinds[idx]
            if k >= OPAQUE:
                node = dive_node(p)
                if node == p:
                    node = _parent(p)
                if not node:
                    continue
                if node not in nodes:
                    nodes[node] = BLANK
                p = node
            else:
                nodes[p] = sizes[idx] << 1 | (k == DIR)
            slash = p.rfind("/")  # _parent(p), inline: this runs once per entry
            par = p[:slash] if slash >= 0 else ""
            while par and par not in nodes:
                nodes[par] = BLANK
                par = _parent(par)
        return nodes, None

    def _stack(self, j: int) -> None:
        """dive's FileTree.Stack: whiteout nodes remove their target, other nodes overwrite."""
        stacked = self.stacked
        assert stacked is not None
        nodes, parents = self._nodes(j)
        if parents is None:
            outs = [p for p in nodes if ".wh." in p and _is_whiteout_node(p)]
        else:  # the whiteout entries, and blank parents named like one
            paths = self.walk.layers[j].paths
            outs = [paths[k] for k in positions(self.walk.layers[j].kinds, WH_CODE)]
            outs += [p for p in parents if ".wh." in p and _is_whiteout_node(p) and p not in outs]
        if any(_target(p) in nodes for p in outs):
            # A removal and an addition touch the same subtree: keep dive's exact order.
            for p in sorted(nodes, key=lambda q: q.split("/") + [_LAST]):
                if _is_whiteout_node(p):
                    stacked.remove(_target(p))
                else:
                    stacked.set(p, nodes[p])
            return
        for p in outs:
            stacked.remove(_target(p))
        values = stacked.values
        if parents is not None:
            for p in outs:
                info = nodes.pop(p)
                if p in values:
                    values[p] = info  # a whiteout node over a copy of tree 0's: a payload
            stacked.update(nodes, parents)
            return
        wset = set(outs)
        kids = stacked.kids
        for p, info in nodes.items():
            if p in values:
                values[p] = info  # replaces the payload, keeps the children
            elif p not in wset:
                slash = p.rfind("/")
                siblings = kids.get(p[:slash] if slash >= 0 else "")
                if siblings is None:
                    stacked.set(p, info)  # links the missing parents too
                else:
                    siblings.add(p)
                    values[p] = info

    # ------------------------------------------------------------------ results
    def finish(self) -> None:
        once = sum(self.eff.values())  # a path seen once: its minimum is its total
        num = once
        den = once
        inefficient = []
        for path, (total, low, count) in self.repeats.items():
            num += low
            den += total
            if count >= 2:
                inefficient.append((path, count, total, low))
        self.min_total = num
        self.cum_total = den
        self.score = 1.0 if den == 0 else num / den
        inefficient.sort(key=lambda r: (-r[2], r[0]))
        self.inefficient = inefficient
        self.stacked = None  # only needed while walking
        self._parents = {}


def _plain(kinds: bytearray) -> bool:
    """No opaque marker and no AUFS metadata: nodes and leaves follow from the paths alone."""
    return OPAQUE not in kinds and META not in kinds

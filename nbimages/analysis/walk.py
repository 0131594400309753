"""One pass over each layer tar: compact per-layer file tables and the merged filesystem.

Every layer is streamed once through `tarscan.records`; its entries are kept as columns
(a list of paths and typed arrays, about 130 bytes per entry) instead of objects. While the
layer is applied to the merged tree its whiteouts are resolved (OCI image-spec, "Whiteouts":
a layer's whiteouts apply to the layers below it, before its own entries), each entry is
marked added or modified, and every path it removes becomes a deletion of that layer.
The dive-compatible efficiency bookkeeping (`dive.DiveModel`) rides on the same loop.
"""

from __future__ import annotations

import copy
import os
from typing import BinaryIO

from ..errors import InvalidImage
from ..oci import whiteout as wh
from ..oci import tartable
from ..oci.whiteout import MergedTree, ancestors
from .codes import (BY_OPAQUE, BY_PARENT_WHITEOUT, BY_REPLACED_DIR, BY_WHITEOUT, DIR, ESCAPES,
                    HARDLINK, KIND_NAME, MASK, META, MISSING_LINK, MODIFIED, OPAQUE,
                    SHIFT, SKIPPED, SYMLINK, UNSAFE, WHITEOUT, positions)
from .dive import DiveModel


class LayerFiles(tartable.Part):
    """The entries of one layer tar as columns, plus what applying it did to the merged tree.

    `changes[i]` is ADDED/MODIFIED for entries that are files of the layer, UNSAFE for
    entries whose path escapes the root (never applied), SKIPPED for whiteouts, opaque
    markers and the root entry; `deleted` holds the copies (as `layer << 32 | entry` ints)
    that this layer removed from the layers below. `unsafe_size` is the bytes of UNSAFE
    entries: they are neither in the final filesystem nor waste.
    """

    __slots__ = (
        "changes",
        "deleted",
        "deleted_how",
        "final_count",
        "final_size",
        "opaques",
        "size",
        "unsafe_size",
        "whiteouts",
    )

    def __init__(self) -> None:
        super().__init__()  # the columns and the links, unsafe entries and members
        self.changes = bytearray()
        self.deleted: list[int] = []
        self.deleted_how = b""
        self.size = 0
        self.unsafe_size = 0
        self.whiteouts: list[int] = []
        self.opaques: list[int] = []
        self.final_size = 0
        self.final_count = 0

    def twin(self) -> LayerFiles:
        """A copy to apply in another walk: the entry columns are shared; `unsafe` and
        `members`, which applying a layer adds to, are copies (the change columns are
        replaced, not changed, by applying)."""
        twin = LayerFiles()
        for cls in type(self).__mro__:
            for name in getattr(cls, "__slots__", ()):
                value = getattr(self, name)
                setattr(twin, name, copy.copy(value) if name in ("unsafe", "members") else value)
        return twin


class Budget:
    """What the file tables of one image may hold, so memory stays bounded: a few MB of gzip
    can hold millions of entries with long names, far past any real image (the largest hold
    about a million files). NBIMAGES_MAX_ENTRIES and NBIMAGES_MAX_NAME_BYTES raise the caps."""

    def __init__(self) -> None:
        self.entries = _env_int("NBIMAGES_MAX_ENTRIES", 2_000_000)
        self.name_bytes = _env_int("NBIMAGES_MAX_NAME_BYTES", 256 << 20)
        self._limits = (self.entries, self.name_bytes)

    def spend(self, entries: int, name_bytes: int) -> None:
        self.entries -= entries
        self.name_bytes -= name_bytes
        if self.entries < 0 or self.name_bytes < 0:
            what = (f"more than {self._limits[0]:,} entries" if self.entries < 0 else
                    f"more than {self._limits[1]:,} bytes of file names")
            raise InvalidImage(f"the image holds {what}, past any real image: it looks crafted "
                               "to exhaust memory, so it is not read further. If you trust it, "
                               "raise NBIMAGES_MAX_ENTRIES or NBIMAGES_MAX_NAME_BYTES.")


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def read_layer(stream: BinaryIO, budget: Budget | None = None) -> LayerFiles:
    """One layer tar as columns, nothing applied yet: safe to run in a worker thread.
    `budget` (shared by the layers of one image) caps entries and name bytes; it is charged
    at every 4096th entry, before the rest is read."""
    lf = LayerFiles()
    paths = lf.paths
    kinds = lf.kinds
    names = 0
    counted = 0
    for part in tartable.parts(stream, 4096):
        first = len(paths)
        paths += part.paths
        kinds += part.kinds
        lf.sizes.extend(part.sizes)
        lf.modes.extend(part.modes)
        lf.uids.extend(part.uids)
        lf.gids.extend(part.gids)
        lf.mtimes.extend(part.mtimes)
        lf.links.update(part.links)
        lf.unsafe += part.unsafe
        lf.members.update(part.members)
        joined = "\0".join(part.paths)
        names += len(joined) - len(part) + 1 + sum(map(len, part.links.values()))
        last = len(paths) - 1
        if budget is not None and not last & 4095:
            budget.spend(last - counted, names)
            counted, names = last, 0
        if ".wh." in joined:
            for idx in range(first, len(paths)):
                if ".wh." in paths[idx]:
                    what = wh.classify(paths[idx])[0]
                    if what == "whiteout":
                        kinds[idx] = WHITEOUT
                        lf.whiteouts.append(idx)
                    elif what == "opaque":
                        kinds[idx] = OPAQUE
                        lf.opaques.append(idx)
                    elif what == "meta":
                        kinds[idx] = META
    if budget is not None:
        budget.spend(len(paths) - counted, names)
    lf.size = sum(lf.sizes)
    return lf


class Walk:
    """The state built by walking an image's layers in order."""

    def __init__(self, bulk: bool = True) -> None:
        # bulk=False applies every layer entry by entry: the reference the tests compare with
        self.bulk = bulk
        self.layers: list[LayerFiles] = []
        self.tree: MergedTree[int] = MergedTree()
        self.dive = DiveModel(self, bulk)
        # events for the explanation of where dive's view differs: (kind, layer, path, files, bytes)
        self.events: list[tuple[str, int, str, int, int]] = []
        self._symlinks: set[str] = set()  # paths ever written as symlinks (checked in the tree)
        self._lost: list[int] = []  # copies that left the tree: overwritten or removed

    def _symlink_in(self, directory: str) -> str:
        """The first component of `directory` that is a symlink in the merged tree, or ''."""
        values = self.tree.values
        layers = self.layers
        end = -1
        while True:
            end = directory.find("/", end + 1)
            q = directory if end < 0 else directory[:end]
            if q in self._symlinks:
                c = values.get(q)
                if c is not None and tree_kind(layers, c) == SYMLINK:
                    return q
            if end < 0:
                return ""

    # ------------------------------------------------------------------ per layer
    def add_layer(self, stream: BinaryIO) -> LayerFiles:
        """Read the next layer up from its tar stream and apply it."""
        return self.apply(read_layer(stream))

    def apply(self, lf: LayerFiles) -> LayerFiles:
        """Apply the next layer up, read by `read_layer` (possibly in another thread)."""
        i = len(self.layers)
        self.layers.append(lf)
        self._apply(i, lf)
        return lf

    def _apply(self, i: int, lf: LayerFiles) -> None:
        """Apply layer `i` to the merged tree; fill `changes`/`deleted`; feed the dive model."""
        tree = self.tree
        layers = self.layers
        removed: dict[str, int] = {}
        how: dict[int, int] = {}
        # entries whose path climbs out of the root are reported, never applied
        skip = {idx for idx, why in lf.unsafe if why == ESCAPES}
        for idx in lf.whiteouts:
            if idx in skip:
                continue
            target = wh.classify(lf.paths[idx])[1]
            gone = tree.remove(target)
            if not gone:
                self.events.append(("whiteout-missing", i, target, 0, 0))
            elif len(gone) > 1 or tree_kind(layers, gone[0][1]) == DIR:
                self.events.append(("dir-deleted", i, target, *self._count(gone)))
            for p, c in gone:
                removed[p] = c
                how[c] = BY_WHITEOUT if p == target else BY_PARENT_WHITEOUT
            self._lost.extend(c for _, c in gone)
        for idx in lf.opaques:
            if idx in skip:
                continue
            directory = wh.classify(lf.paths[idx])[1]
            gone = tree.remove_children(directory)
            if gone:
                self.events.append(("opaque", i, directory, *self._count(gone)))
            for p, c in gone:
                removed[p] = c
                how[c] = BY_OPAQUE
            self._lost.extend(c for _, c in gone)

        bulk = self._apply_bulk(i, lf, removed) if self.bulk and not (
            lf.unsafe or lf.opaques or META in lf.kinds) else None
        if bulk is None:
            parents, duplicates = self._apply_each(i, lf, removed, how, skip)
            below = None
        else:
            parents, below = bulk
            duplicates = False
        lf.deleted = [removed[p] for p in sorted(removed)]  # set order varies between runs
        lf.deleted_how = bytes(how.get(c, BY_WHITEOUT) for c in lf.deleted)
        self.dive.add_layer(i, lf, parents, duplicates, skip, removed, below)

    def _apply_bulk(self, i: int, lf: LayerFiles,
                    removed: dict[str, int]) -> tuple[set[str], set[str]] | None:
        """Apply the entries of layer `i` at once, with set and dict operations; returns the
        layer's directories and its paths that were in the tree before it, or None (nothing
        done) when the result could depend on the tar order, which only `_apply_each`
        follows: a path twice, an entry under a symlink of the tree or of this layer, a
        non-directory where a directory was. The caller left out unsafe entries, opaque
        markers and AUFS metadata."""
        paths = lf.paths
        kinds = lf.kinds
        n = len(paths)
        base = i << SHIFT
        codes = dict(zip(paths, range(base, base + n)))
        if len(codes) != n:
            return None
        changes = bytearray(n)
        for idx in lf.whiteouts:
            del codes[paths[idx]]
            changes[idx] = SKIPPED
        if "" in codes:
            changes[codes.pop("") & MASK] = SKIPPED
        parents = ancestors(paths)
        tree = self.tree
        values = tree.values
        layers = self.layers
        links = [paths[j] for j in positions(kinds, SYMLINK)]
        if links and not parents.isdisjoint(links):
            return None
        for q in parents & self._symlinks:
            c = values.get(q)
            if c is not None and tree_kind(layers, c) == SYMLINK:
                return None
        for q in (codes.keys() & tree.dirs) | (codes.keys() & parents):
            if kinds[codes[q] & MASK] != DIR:
                return None
        missing = []
        for j in positions(kinds, HARDLINK):
            target = lf.links.get(j, "")
            if target not in values and codes.get(target, base | j) & MASK >= j and paths[j]:
                missing.append(j)  # its target is neither below nor earlier in the layer

        self._symlinks.update(links)
        lf.changes = changes
        below = codes.keys() & values.keys()
        self._lost.extend(map(values.__getitem__, below))
        if removed:
            back = codes.keys() & removed.keys()
            for p in back:
                del removed[p]
            below |= back
        for p in below:
            changes[codes[p] & MASK] = MODIFIED
        for j in missing:
            lf.unsafe.append((j, MISSING_LINK))
            lf.members[j] = paths[j]
        tree.update(codes, parents)
        return parents, below

    def _apply_each(self, i: int, lf: LayerFiles, removed: dict[str, int], how: dict[int, int],
                    skip: set[int]) -> tuple[set[str], bool]:
        """Apply the entries of layer `i` one by one, in tar order: any layer can take this
        path; returns the layer's directories and whether a path came twice."""
        tree = self.tree
        values = tree.values
        paths = lf.paths
        kinds = lf.kinds
        changes = bytearray(len(paths))
        lf.changes = changes
        base = i << SHIFT
        parents = {""}           # every directory of this layer's own tree (dive: non-leaves)
        duplicates = False
        tree_set = tree.set
        kids = tree.kids
        through: dict[str, str] = {}  # directory of this layer -> symlink its path crosses
        symlinks = self._symlinks
        lost = self._lost
        for idx, p in enumerate(paths):
            k = kinds[idx]
            if skip and idx in skip:
                changes[idx] = UNSAFE
                lf.unsafe_size += lf.sizes[idx]
                continue
            if k >= WHITEOUT or not p:
                changes[idx] = SKIPPED
                if k == OPAQUE or k == META:
                    self.dive.marker(p, parents)
                elif k == WHITEOUT:
                    _add_parents(p, parents)
                continue
            slash = p.rfind("/")
            par = p[:slash] if slash >= 0 else ""
            if par not in parents:
                _add_parents(p, parents)
                if symlinks:
                    link = self._symlink_in(par)
                    if link:
                        through[par] = link
            if through and par in through:
                # the engine follows the link: this entry lands elsewhere than its name says
                lf.unsafe.append((idx, f"written through the symlink /{through[par]}"))
                lf.members[idx] = p
            if k == HARDLINK and lf.links.get(idx, "") not in values \
                    and all(j != idx for j, _ in lf.unsafe):
                lf.unsafe.append((idx, MISSING_LINK))
                lf.members[idx] = p
            if k == SYMLINK:
                symlinks.add(p)
            if k != DIR and p in kids and kids[p]:
                # A non-directory over a directory replaces the whole subtree.
                for q, c in tree.remove_children(p):
                    removed[q] = c
                    how[c] = BY_REPLACED_DIR
                    lost.append(c)
            old = values.get(p)
            if old is None:
                if removed and p in removed:
                    changes[idx] = MODIFIED
                    del removed[p]
                siblings = kids.get(par)
                if siblings is None:
                    tree_set(p, base | idx)  # links the missing parents too
                else:
                    siblings.add(p)
                    values[p] = base | idx
                continue
            lost.append(old)
            if old >> SHIFT == i:
                duplicates = True
                changes[idx] = changes[old & MASK]
            else:
                changes[idx] = MODIFIED
            values[p] = base | idx
        return parents, duplicates

    def _count(self, gone: list[tuple[str, int]]) -> tuple[int, int]:
        layers = self.layers
        files = 0
        size = 0
        for _, c in gone:
            lf = layers[c >> SHIFT]
            j = c & MASK
            if lf.kinds[j] != DIR:
                files += 1
            size += lf.sizes[j]
        return files, size

    # ------------------------------------------------------------------ results
    def finish(self) -> None:
        """Per-layer bytes and entries still visible in the final filesystem."""
        # every entry went into the tree but those skipped; what is not there now was lost
        layers = self.layers
        for lf in layers:
            never = [*positions(lf.changes, SKIPPED), *positions(lf.changes, UNSAFE)]
            lf.final_count = len(lf.paths) - len(never)
            lf.final_size = sum(lf.sizes) - sum(map(lf.sizes.__getitem__, never))
        for c in self._lost:
            lf = layers[c >> SHIFT]
            lf.final_count -= 1
            lf.final_size -= lf.sizes[c & MASK]
        self.dive.finish()

    def lost_codes(self) -> list[int]:
        """Every copy that was applied and then left the tree (written again, removed by a
        whiteout or an opaque directory, replaced by a file), sorted: layer by layer, in
        entry order. With the entries never applied (changes SKIPPED or UNSAFE), these are
        exactly the entries that are not in the final filesystem. A copy leaves the tree once,
        so none comes twice (`finish` counts on that too)."""
        return sorted(self._lost)

    def copy_info(self, code: int) -> tuple:
        """(path, kind, size, mode, uid, gid, mtime, linkname, layer) of one stored copy."""
        lf = self.layers[code >> SHIFT]
        j = code & MASK
        return (lf.paths[j], KIND_NAME[lf.kinds[j]], lf.sizes[j], lf.modes[j], lf.uids[j],
                lf.gids[j], lf.mtimes[j], lf.links.get(j, ""), code >> SHIFT)


def tree_kind(layers: list[LayerFiles], code: int) -> int:
    return layers[code >> SHIFT].kinds[code & MASK]


def _add_parents(p: str, parents: set) -> None:
    par = p[:p.rfind("/")] if "/" in p else ""
    while par not in parents:
        parents.add(par)
        par = par[:par.rfind("/")] if "/" in par else ""

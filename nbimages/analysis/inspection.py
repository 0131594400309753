"""`nbimages.inspect(source)`: an image's layers, files, sizes and waste as DataFrames.

The layers are walked once (see walk.py); every table is derived from that walk on demand
and cached. The numbers users know from dive are reproduced exactly (`efficiency`,
`waste.total_bytes`), next to what squashing the image would really save (`wasted_bytes`,
`waste.wasted_bytes`); `explain()` says where and why the two views differ.

Paths in the tables are absolute ('/usr/bin/env'); paths handed to `read_files` predicates
are relative, as in the layer tars ('usr/bin/env').
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import hashlib
import html
import json
import math
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidImage, NbimagesError
from ..image import Image, LayerTar
from ..oci import digest as dg
from ..oci import tarscan, whiteout
from ..oci.tarscan import TarEntry, records
from ..progress import format_bytes as fb
from ..sources import open_image
from . import codes, dive as dive_model, walk as walk_module, waste as waste_module
from .advice import HUGE, MIN_DUPLICATE, advice
from .codes import (ADDED, CHANGE_NAME, DELETED, DIR, KIND_NAME, MASK, MODIFIED, OVERWRITTEN,
                    REASON, SHIFT, SKIPPED, UNSAFE)
from .layerindex import LayerIndex
from .packages import packages
from .table import printable, table
from .walk import Budget, LayerFiles, Walk, read_layer
from .waste import lost_by_layer, waste_groups

if TYPE_CHECKING:
    import pandas as pd

HASH_LIMIT = 256 << 20  # diff(content=True) compares files up to this size by their bytes
LOOKAHEAD = 3  # layers read ahead of the one being applied (compressed images only)
AHEAD = 6  # plain layers whose tars are open, their hashes running, ahead of the one parsed
LAYER_COLUMNS = ["index", "digest", "diff_id", "size", "compressed_size", "created_by",
                 "files_added", "files_modified", "files_deleted", "wasted_bytes", "entries"]
# the layer table's columns that only walking the layers tells
WALK_COLUMNS = ["size", "files_added", "files_modified", "files_deleted", "wasted_bytes",
                "entries"]
FILE_COLUMNS = ["layer", "path", "kind", "size", "mode", "uid", "gid", "change", "linkname"]
WASTE_COLUMNS = ["path", "count", "total_bytes", "wasted_bytes", "dive", "reason"]
SIZE_COLUMNS = ["path", "size", "files", "layers", "top_layer", "share"]
DIFF_COLUMNS = ["path", "change", "what", "kind_a", "kind_b", "size_a", "size_b", "mode_a",
                "mode_b", "layer_a", "layer_b"]
HISTORY_COLUMNS = ["index", "created", "created_by", "comment", "empty_layer", "layer", "author"]


def inspect(source: Any, platform: str | None = None, *, index: bool = True) -> Inspection:
    """Open `source` (an Image or any source string) and walk its layers once.

    Sources are those of `nbimages.open_image`: docker-daemon:REF, docker-archive:PATH,
    oci:DIR[:TAG], oci-archive:PATH, docker://REF, a store name, a bare path or reference.
    `platform` picks one image of a multi-platform image (default: this machine's).
    A layer seen before (by any image) is read from the store's layer index instead of its
    tar; `index=False` reads every layer (and neither reads nor writes the index).
    """
    if isinstance(source, Inspection):
        return source
    if isinstance(source, Image):
        # One platform of a multi-platform image: `platform` picks it (default: this one).
        image = source.index.image(platform) if source.index and platform else source
    else:
        image = open_image(source, platform=platform)
    insp = Inspection(image, index=index)
    # The summary, the layer table and the waste at once: from the results stored for this
    # stack of layers if an earlier inspection left them, else by walking the layers now.
    # A registry image not seen before is not downloaded yet: `.layers` shows what the
    # manifest says, and the first file-level table (or `.walk()`) fetches the layers never
    # indexed.
    insp._known_results()
    return insp


@functools.cache
def _producer() -> str:
    """A fingerprint of the code that computes an inspection's results, so results stored by
    another version (or a changed checkout) are never taken for this one's."""
    h = hashlib.sha256(b"nbimages inspection results")
    for module in (sys.modules[__name__], walk_module, dive_model, codes, waste_module,
                   whiteout, tarscan):
        try:
            h.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            h.update(module.__name__.encode())
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def _cycle_collection_paused():
    """The walk and the tables allocate a tuple or two per entry and make no reference
    cycles; left on, the cycle collector would traverse the growing tables again and again
    (a fifth of a warm inspection of 150,000 entries). Reference counting still frees
    everything as usual."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class Inspection:
    """What is inside an image: tables derived from one walk over its layers."""

    def __init__(self, image: Image, *, index: bool = True):
        self.image = image
        self._index = LayerIndex() if index else None
        self._walk: Walk | None = None
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ identity
    @property
    def digest(self) -> str:
        """The manifest digest (depends on how the layers are compressed)."""
        return self.image.digest

    @property
    def id(self) -> str:
        """The config digest, Docker's image ID."""
        return self.image.id

    @property
    def source(self) -> str:
        return self.image.source or (self.image.names[0] if self.image.names else "")

    # ------------------------------------------------------------------ the walk
    @property
    def local(self) -> bool:
        """True when every layer can be read without downloading it."""
        return all(layer.local for layer in self.image.layers)

    @property
    def indexed(self) -> bool:
        """True when every layer's table is in the layer index (nothing to download)."""
        index = self._index
        return index is not None and all(
            layer.diff_id and index.path(layer.diff_id).is_file() for layer in self.image.layers)

    @property
    def walked(self) -> bool:
        """True once the file-level columns of `.layers` are known: the layers were read,
        or an earlier inspection of the same stack of layers left its results."""
        return self._walk is not None or "results" in self._cache

    def walk(self) -> "Inspection":
        """Read every layer now (downloading registry layers first); returns self."""
        self._ensure()
        return self

    def _ensure(self) -> Walk:
        if self._walk is None:
            budget = Budget()  # per walk: a new walk starts from a full budget
            walk = Walk()
            # layers read whose checks still run beside the reader: the walk goes on, and
            # is kept only once every one has passed
            unchecked: deque[tuple[int, LayerTar, LayerFiles]] = deque()
            try:
                with _cycle_collection_paused():
                    for lf in self._read_layers(budget, unchecked):
                        walk.apply(lf)
                    walk.finish()
                    self._check_all(unchecked)
            finally:
                for _i, tar, _lf in unchecked:
                    tar.close()
            self._walk = walk
            # the manifest-only layer table, if one was shown, now gets its file columns
            for key in ("layers", "cols:layers"):
                self._cache.pop(key, None)
        return self._walk

    # ------------------------------------------------------------------ results
    def _stored_results(self) -> dict | None:
        """The results an earlier inspection stored for exactly these layers, if any."""
        if self._index is None:
            return None
        return self._index.load_results([layer.diff_id for layer in self.image.layers],
                                        _producer())

    def _results(self) -> dict:
        """What the summary, `--json`, the layer table and the waste table need of the walk:
        stored for this stack of layers by an earlier inspection, else computed (walking the
        layers) and stored for the next one."""
        results = self._cache.get("results")
        if results is None:
            if self._walk is None:
                results = self._stored_results()
            if results is None:
                results = self._compute_results()
                if self._index is not None:
                    self._index.save_results([layer.diff_id for layer in self.image.layers],
                                             _producer(), results)
            self._cache["results"] = results
        return results

    def _known_results(self) -> dict | None:
        """`_results()` when they are at hand without a download, else None (a registry image
        whose layers were never indexed and whose results were never stored)."""
        if "results" in self._cache or self._walk is not None or self.local or self.indexed:
            return self._results()
        results = self._stored_results()
        if results is not None:
            self._cache["results"] = results
        return results

    def _compute_results(self) -> dict:
        walk = self._ensure()
        per_layer: dict[str, list] = {c: [] for c in WALK_COLUMNS}
        for lf in walk.layers:
            changes = lf.changes
            per_layer["size"].append(lf.size)
            per_layer["files_added"].append(changes.count(ADDED))
            per_layer["files_modified"].append(changes.count(MODIFIED))
            per_layer["files_deleted"].append(len(lf.deleted))
            per_layer["wasted_bytes"].append(lf.size - lf.final_size - lf.unsafe_size)
            per_layer["entries"].append(len(lf))
        return {
            "layers": per_layer,
            "final_size": sum(lf.final_size for lf in walk.layers),
            "unsafe_size": sum(lf.unsafe_size for lf in walk.layers),
            "efficiency": walk.dive.score,
            "inefficient_bytes": sum(r[2] for r in walk.dive.inefficient),
            "waste": self._columns("waste", self._waste_columns),
            "unsafe": self._columns("unsafe", self._unsafe_columns),
            "events": [list(e) for e in walk.events],
            "aborts": [list(a) for a in walk.dive.aborts],
        }

    def _read_layer(self, i: int, budget: Budget) -> LayerFiles:
        lf = self._indexed(i, budget)
        if lf is None:
            tar = self.image.layer_tar(i)
            lf = self._read_tar(i, tar, budget)
            self._check(i, tar, lf)
        return lf

    def _indexed(self, i: int, budget: Budget) -> LayerFiles | None:
        """Layer `i`'s table from the layer index, if it holds it."""
        layer = self.image.layers[i]
        lf = None if self._index is None else self._index.load(layer.diff_id, layer.digest)
        if lf is not None:
            budget.spend(len(lf), sum(map(len, lf.paths)) + sum(map(len, lf.links.values())))
        return lf

    def _read_tar(self, i: int, tar: LayerTar, budget: Budget) -> LayerFiles:
        """Layer `i`'s table, read from `tar`, whose checks may still be running: not to be
        used before `_check(i, tar, table)`."""
        try:
            return tar.read(lambda stream: read_layer(stream, budget))
        except InvalidImage as e:
            raise self._layer_error(i, e) from None

    def _check(self, i: int, tar: LayerTar, lf: LayerFiles) -> None:
        """End the checks of layer `i`'s tar, read into `lf`; index the table if they pass."""
        try:
            tar.check()
        except InvalidImage as e:
            raise self._layer_error(i, e) from None
        # only now, the tar verified against its diff_id (and the blob its digest)
        if self._index is not None:
            layer = self.image.layers[i]
            self._index.save(lf, layer.diff_id, layer.digest)

    def _check_all(self, unchecked: deque[tuple[int, LayerTar, LayerFiles]],
                   finished_only: bool = False) -> None:
        """`_check` the layers in `unchecked`, lowest first, so the first layer that fails is
        the one named; with `finished_only`, only up to the first whose checks still run."""
        while unchecked and (not finished_only or unchecked[0][1].done()):
            self._check(*unchecked.popleft())  # a tar that fails its check is closed

    def _layer_error(self, i: int, e: InvalidImage) -> InvalidImage:
        return InvalidImage(f"Layer {i} ({dg.short(self.image.layers[i].digest)}) of "
                            f"{self.source or 'the image'}: {e}")

    def _read_layers(self, budget: Budget,
                     unchecked: deque[tuple[int, LayerTar, LayerFiles]]) -> Iterator[LayerFiles]:
        """The layers' file tables in order. Compressed or unverified layers are read two at a
        time in threads: the inflaters (isal, zstandard) and the hashes release the GIL, so
        one layer inflates or hashes while another is parsed; at most LOOKAHEAD tables wait
        to be applied."""
        n = len(self.image.layers)
        # Plain layers not yet verified are hashed whole (hashlib releases the GIL too).
        busy = sum(1 for layer in self.image.layers if layer.compression or not layer.verified)
        if n < 2 or not busy:
            for i in range(n):
                yield self._read_layer(i, budget)
            return
        if all(layer.checked_aside for layer in self.image.layers):
            yield from self._read_ahead(budget, unchecked)
            return
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbimages-layer") as pool:
            pending = [pool.submit(self._read_layer, i, budget) for i in range(min(n, LOOKAHEAD))]
            try:
                for i in range(n):
                    lf = pending[i].result()
                    pending[i] = None  # type: ignore[call-overload]
                    if i + LOOKAHEAD < n:
                        pending.append(pool.submit(self._read_layer, i + LOOKAHEAD, budget))
                    yield lf
            finally:
                for f in pending:
                    if f is not None:
                        f.cancel()

    def _read_ahead(self, budget: Budget,
                    unchecked: deque[tuple[int, LayerTar, LayerFiles]]) -> Iterator[LayerFiles]:
        """The layers' file tables in order, for layers that are checked beside the reader
        (plain tars, hashed by the hash helper or a thread of their own): parsed here, one
        after another, while the tars of the next AHEAD layers are already open, so their
        hashes run meanwhile; no parsing threads handing the GIL to each other.

        The reader never waits for a hash: each table read is yielded at once, its tar put
        in `unchecked`, and checked (and indexed) when its hash has finished; the caller
        checks what is left at the end. A layer that does not parse is reported only once
        the layers below it have passed their checks, so the lowest bad layer is named."""
        n = len(self.image.layers)
        ahead: dict[int, LayerFiles | LayerTar] = {}
        try:
            for i in range(n):
                for j in range(i, min(n, i + AHEAD)):
                    if j not in ahead:
                        ahead[j] = self._indexed(j, budget) or self.image.layer_tar(j)
                got = ahead.pop(i)
                if isinstance(got, LayerTar):
                    try:
                        lf = self._read_tar(i, got, budget)
                    except InvalidImage:
                        self._check_all(unchecked)
                        raise
                    unchecked.append((i, got, lf))
                    got = lf
                yield got
                self._check_all(unchecked, finished_only=True)
        finally:
            for got in ahead.values():
                if isinstance(got, LayerTar):
                    got.close()

    def read_files(self, predicate: Callable[[str], bool], *,
                   max_size: int = 64 << 20) -> Iterator[tuple[int, TarEntry]]:
        """Yield `(layer_index, TarEntry)` for every entry whose path satisfies `predicate`.

        Layers in order, entries in tar order. `predicate` gets the relative path as in the
        tar ('var/lib/dpkg/status', whiteouts as 'dir/.wh.name'); regular files selected
        carry their bytes in `entry.data` (None above `max_size`). Only layers holding a
        selected path are read again, each only up to its last selected entry, so asking
        for a few small files costs a fraction of the first walk.
        """
        walk = self._ensure()
        for i, lf in enumerate(walk.layers):
            chosen = [idx for idx, p in enumerate(lf.paths) if predicate(p)]
            if not chosen:
                continue
            wanted = set(chosen)
            names = {lf.paths[idx] for idx in chosen}
            last = chosen[-1]
            layer = self.image.layers[i]
            with layer.open_tar() as stream:
                for idx, rec in enumerate(records(stream, names.__contains__, max_size)):
                    if idx in wanted:
                        yield i, TarEntry(*rec)
                    if idx >= last:
                        break

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        """Bytes of file content in all layers (sum of `layers.size`, dive's image size)."""
        return sum(self._results()["layers"]["size"])

    @property
    def final_size(self) -> int:
        """Bytes of file content in the final filesystem (what a squashed image would hold)."""
        return self._results()["final_size"]

    @property
    def wasted_bytes(self) -> int:
        """What squashing would save: bytes of every file copy not in the final filesystem.

        Overwritten copies, deleted files, files under deleted directories and files hidden
        by opaque directories all count; the copy that is kept does not (unlike dive, #684).
        """
        return self.size - self.final_size - self.unsafe_size

    @property
    def unsafe_size(self) -> int:
        """Bytes of entries whose path escapes the root: never applied, not counted as waste."""
        return self._results()["unsafe_size"]

    @property
    def corrected_efficiency(self) -> float:
        """final_size / size: the share of layer bytes that end up in the filesystem."""
        size = self.size
        return 1.0 if size == 0 else self.final_size / size

    # ------------------------------------------------------------------ dive's numbers
    @property
    def efficiency(self) -> float:
        """dive 0.13's efficiency score for this image, bit for bit (see `explain()`)."""
        return self._results()["efficiency"]

    @property
    def dive(self) -> dict[str, Any]:
        """dive's summary numbers: efficiency, inefficient (potential wasted) bytes, user %."""
        results = self._results()
        sizes = results["layers"]["size"]
        inefficient = results["inefficient_bytes"]
        user = sum(sizes[1:])
        return {"efficiency": results["efficiency"], "inefficient_bytes": inefficient,
                "size": sum(sizes), "user_size": user,
                "user_wasted_percent": inefficient / user if user else None}

    # ------------------------------------------------------------------ tables as columns
    def _columns(self, name: str, build: Callable[[], dict[str, list]]) -> dict[str, list]:
        key = "cols:" + name
        if key not in self._cache:
            with _cycle_collection_paused():  # tables of a tuple or list per file
                self._cache[key] = build()
        return self._cache[key]

    def _layer_columns(self) -> dict[str, list]:
        results = self._known_results()
        hist = self.image.layer_history()
        diff_ids = self.image.diff_ids
        cols: dict[str, list] = {c: [] for c in LAYER_COLUMNS}
        for i, layer in enumerate(self.image.layers):
            cols["index"].append(i)
            cols["digest"].append(layer.digest)
            cols["diff_id"].append(diff_ids[i] if i < len(diff_ids) else layer.diff_id)
            cols["compressed_size"].append(layer.size)
            cols["created_by"].append(hist[i].created_by if i < len(hist) and hist[i] else "")
            for c in WALK_COLUMNS:  # not downloaded yet: only what the manifest and config say
                cols[c].append(None if results is None else results["layers"][c][i])
        return cols

    def _waste_columns(self) -> dict[str, list]:
        if self._walk is None and "results" in self._cache:
            return self._cache["results"]["waste"]
        walk = self._ensure()
        layers = walk.layers
        final = walk.tree.values
        # every copy that is not the final one, with why it left
        why: dict[int, int] = {}
        for lf in layers:
            for c, how in zip(lf.deleted, lf.deleted_how):
                why[c] = how
        # path -> [layers that wrote or removed it, bytes lost, reason, dive's total]
        rows: dict[str, list] = {}
        lost = walk.lost_codes()
        start = 0
        for i, lf in enumerate(layers):
            sizes = lf.sizes
            changes = lf.changes
            kinds = lf.kinds
            paths = lf.paths
            # the copies of this layer not in the final filesystem (most entries are final:
            # no per-entry work for them); entries never applied are left out below anyway
            end = bisect.bisect_left(lost, (i + 1) << SHIFT, start)
            for code in lost[start:end]:
                idx = code & MASK
                # Directories hold no bytes: a directory written again (a chmod, a new file
                # inside) or deleted is not waste; its files are listed themselves.
                if changes[idx] >= UNSAFE or kinds[idx] == DIR:  # unsafe: its own table
                    continue
                p = paths[idx]
                r = rows.get(p)
                if r is None:
                    r = rows[p] = [0, 0, "", None]
                r[0] += 1
                r[1] += sizes[idx]
                r[2] = REASON[why.get(code, OVERWRITTEN)]
            start = end
            for c in lf.deleted:
                r = rows.get(layers[c >> SHIFT].paths[c & MASK])
                if r is not None:
                    r[0] += 1
        for p, r in rows.items():
            if p in final:
                r[0] += 1
        for path, count, cum, _min in walk.dive.inefficient:
            r = rows.get(path)
            if r is None:
                r = rows[path] = [count, 0, "", cum]
            else:
                r[0] = count
                r[3] = cum
        out = sorted(rows.items(), key=lambda kv: (-kv[1][1], -(kv[1][3] or 0), kv[0]))
        return {"path": ["/" + p for p, _ in out],
                "count": [r[0] for _, r in out],
                "total_bytes": [r[3] or 0 for _, r in out],
                "wasted_bytes": [r[1] for _, r in out],
                "dive": [r[3] is not None for _, r in out],
                "reason": [r[2] for _, r in out]}

    def _file_columns(self, layer: int | None) -> dict[str, list]:
        walk = self._ensure()
        layers = walk.layers
        if layer is not None:
            if not -len(layers) <= layer < len(layers):
                have = (f"layers 0..{len(layers) - 1}" if layers else "no layers")
                raise NbimagesError(f"the image has {have}; there is no layer {layer}.")
            layer %= len(layers)
        cols: dict[str, list] = {c: [] for c in FILE_COLUMNS}
        for i, lf in enumerate(layers):
            if layer is not None and i != layer:
                continue
            keep = [idx for idx, ch in enumerate(lf.changes) if ch != SKIPPED]
            n = len(keep) + len(lf.deleted)
            cols["layer"].extend([i] * n)
            paths, kinds, links = lf.paths, lf.kinds, lf.links
            cols["path"].extend("/" + paths[j] if lf.changes[j] != UNSAFE else lf.members[j]
                                for j in keep)
            cols["kind"].extend(KIND_NAME[kinds[j]] for j in keep)
            cols["size"].extend(lf.sizes[j] for j in keep)
            cols["mode"].extend(lf.modes[j] for j in keep)
            cols["uid"].extend(lf.uids[j] for j in keep)
            cols["gid"].extend(lf.gids[j] for j in keep)
            cols["change"].extend(CHANGE_NAME[lf.changes[j]] for j in keep)
            cols["linkname"].extend(links.get(j, "") for j in keep)
            for c in lf.deleted:
                src = layers[c >> SHIFT]
                j = c & MASK
                cols["path"].append("/" + src.paths[j])
                cols["kind"].append(KIND_NAME[src.kinds[j]])
                cols["size"].append(src.sizes[j])
                cols["mode"].append(src.modes[j])
                cols["uid"].append(src.uids[j])
                cols["gid"].append(src.gids[j])
                cols["change"].append(CHANGE_NAME[DELETED])
                cols["linkname"].append(src.links.get(j, ""))
        return cols

    def _final_columns(self) -> dict[str, list]:
        walk = self._ensure()
        layers = walk.layers
        cols: dict[str, list] = {c: [] for c in FILE_COLUMNS}
        for p in sorted(walk.tree.values):
            c = walk.tree.values[p]
            lf = layers[c >> SHIFT]
            j = c & MASK
            cols["layer"].append(c >> SHIFT)
            cols["path"].append("/" + p)
            cols["kind"].append(KIND_NAME[lf.kinds[j]])
            cols["size"].append(lf.sizes[j])
            cols["mode"].append(lf.modes[j])
            cols["uid"].append(lf.uids[j])
            cols["gid"].append(lf.gids[j])
            cols["change"].append(CHANGE_NAME[lf.changes[j]])
            cols["linkname"].append(lf.links.get(j, ""))
        return cols

    def _size_columns(self, depth: int) -> dict[str, list]:
        walk = self._ensure()
        layers = walk.layers
        groups: dict[str, list] = {}  # prefix -> [size, files, {layer: bytes}]
        for p, c in walk.tree.values.items():
            lf = layers[c >> SHIFT]
            j = c & MASK
            if lf.kinds[j] == DIR:
                continue
            parts = p.split("/")[:-1][:depth]
            prefix = "/" + "/".join(parts)
            g = groups.get(prefix)
            if g is None:
                g = groups[prefix] = [0, 0, {}]
            size = lf.sizes[j]
            g[0] += size
            g[1] += 1
            li = c >> SHIFT
            g[2][li] = g[2].get(li, 0) + size
        total = sum(g[0] for g in groups.values()) or 1
        out = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return {"path": [p for p, _ in out],
                "size": [g[0] for _, g in out],
                "files": [g[1] for _, g in out],
                "layers": [sorted(g[2]) for _, g in out],
                "top_layer": [max(g[2], key=lambda k: (g[2][k], -k)) for _, g in out],
                "share": [g[0] / total for _, g in out]}

    def _unsafe_columns(self) -> dict[str, list]:
        if self._walk is None and "results" in self._cache:
            return self._cache["results"]["unsafe"]
        walk = self._ensure()
        cols: dict[str, list] = {"layer": [], "path": [], "kind": [], "linkname": [],
                                 "reason": []}
        for i, lf in enumerate(walk.layers):
            for idx, why in lf.unsafe:
                cols["layer"].append(i)
                cols["path"].append(lf.members.get(idx) or lf.paths[idx])
                cols["kind"].append(KIND_NAME[lf.kinds[idx]])
                cols["linkname"].append(lf.links.get(idx, ""))
                cols["reason"].append(why)
        return cols

    def _history_columns(self) -> dict[str, list]:
        cols: dict[str, list] = {c: [] for c in HISTORY_COLUMNS}
        layer = 0
        for n, h in enumerate(self.image.history):
            cols["index"].append(n)
            cols["created"].append(h.created)
            cols["created_by"].append(h.created_by)
            cols["comment"].append(h.comment)
            cols["empty_layer"].append(h.empty_layer)
            if h.empty_layer or layer >= len(self.image.layers):
                cols["layer"].append(None)
            else:
                cols["layer"].append(layer)
                layer += 1
            cols["author"].append(h.author)
        return cols

    # ------------------------------------------------------------------ DataFrames
    def _frame(self, key: str, build: Callable[[], dict[str, list]]) -> pd.DataFrame:
        if key not in self._cache:
            self._cache[key] = _typed(build())
        return self._cache[key].copy(deep=False)

    @property
    def layers(self) -> pd.DataFrame:
        """One row per filesystem layer: index, digest, diff_id, size (file content bytes, as
        dive counts), compressed_size (the blob), created_by, files_added/modified/deleted,
        wasted_bytes (bytes of this layer missing from the final filesystem), entries.

        For a registry image not yet downloaded, the file-level columns are <NA> until the
        first file table or `.walk()` reads the layers."""
        if self._known_results() is None:
            import pandas as pd
            frame = pd.DataFrame(self._layer_columns())
            for col in ("size", "files_added", "files_modified", "files_deleted",
                        "wasted_bytes", "entries"):
                frame[col] = frame[col].astype("Int64")
            return frame.astype({"index": "int64", "compressed_size": "int64"})
        return self._frame("layers", lambda: self._columns("layers", self._layer_columns))

    @property
    def history(self) -> pd.DataFrame:
        """Every history entry, also those that made no layer (ENV, CMD ...)."""
        frame = self._frame("history", self._history_columns)
        frame["layer"] = frame["layer"].astype("Int64")
        return frame

    def files(self, layer: int | None = None, final: bool = False) -> pd.DataFrame:
        """Entries of every layer (or of `layer`), whiteouts resolved.

        change is added / modified (the path existed below) / deleted (removed by this
        layer: by a whiteout, with a deleted or opaque directory, or a directory replaced
        by a file; size, mode ... are those of the copy that went away). With `final=True`,
        the final filesystem instead: one row per path, from the layer whose copy is kept.
        """
        if final:
            frame = self._frame("final", self._final_columns)
        else:
            frame = _typed(self._file_columns(layer))
        for col in ("kind", "change"):
            frame[col] = frame[col].astype("category")
        return frame

    def sizes(self, depth: int = 2) -> pd.DataFrame:
        """The final filesystem's bytes by directory prefix (`depth` components), largest
        first, with the layers whose files are there (`layers`, the largest `top_layer`)."""
        if depth < 0:
            raise NbimagesError(f"depth must be 0 or more, not {depth}.")
        return self._frame(f"sizes:{depth}", lambda: self._size_columns(depth))

    @property
    def waste(self) -> pd.DataFrame:
        """Every path written in more than one layer or removed later.

        - count: layers that wrote or removed the path (dive's count where dive lists it);
        - total_bytes: dive's figure, all copies, the kept one too; 0 for paths dive does not
          list (so `waste.total_bytes.sum()` is dive's "potential wasted space");
        - wasted_bytes: bytes of the copies that are not in the final filesystem;
        - dive: whether dive lists the path; reason: what happened to the last lost copy.
        """
        return self._frame("waste", lambda: self._columns("waste", self._waste_columns))

    @property
    def waste_by_cause(self) -> pd.DataFrame:
        """The waste as decisions: lost copies grouped by directory and by cause — files,
        wasted_bytes, written_in (layer i), removed_in (layer j), how, the cause in words with
        the steps involved, the fix, and an example path (the largest file of the group)."""
        def build() -> dict[str, list]:
            walk = self._ensure()
            hist = self.image.layer_history()
            made = [(h.created_by if h else "") for h in hist]
            return waste_groups(walk.layers, made)
        return self._frame("waste_by_cause", lambda: self._columns("waste_by_cause", build))

    def lost_files(self, layer: int) -> dict[str, str]:
        """The files of `layer` whose bytes are wasted, path -> what a later layer did to them
        ("deleted in layer 3", "overwritten in layer 2"): what the explorer marks."""
        if "lost" not in self._cache:
            self._cache["lost"] = lost_by_layer(self._ensure().layers)
        lost = self._cache["lost"]
        return lost[layer] if 0 <= layer < len(lost) else {}

    @property
    def unsafe(self) -> pd.DataFrame:
        """Unsafe entries, with `path` and `linkname` as written in the tar and the `reason`:
        paths and links that climb out of the root ('..', absolute link targets), entries
        written through a symlink of a lower layer (an engine writes where the link points),
        hard links to a missing path. Paths escaping the root are never applied: they are
        neither in the final filesystem nor waste (`unsafe_size`); `files()` lists them with
        change 'unsafe'."""
        return self._frame("unsafe", lambda: self._columns("unsafe", self._unsafe_columns))

    def packages(self) -> pd.DataFrame:
        """Size by installed package (Python, Debian, Alpine databases), with its layer."""
        return packages(self)

    def advice(self, huge: int = HUGE, min_duplicate: int = MIN_DUPLICATE) -> pd.DataFrame:
        """What to change to make the image smaller, the largest saving first.

        One row per finding: kind, saves (bytes), layer and step (history created_by) whose
        bytes it saves, files, the change to make, example paths. No byte is counted by two
        findings, so `saves.sum()` is what all the changes together save. Files of `huge`
        bytes or more are reported as data; duplicates smaller than `min_duplicate` are not.
        """
        return advice(self, huge=huge, min_duplicate=min_duplicate)

    # ------------------------------------------------------------------ explanations
    def notes(self) -> list[str]:
        """Where and why dive's view of this image differs from the corrected one."""
        results = self._results()
        out = []
        d = self.dive
        if d["inefficient_bytes"] != self.wasted_bytes:
            out.append(f"dive's potential wasted space is {fb(d['inefficient_bytes'])}: it adds "
                       f"up every copy of each path written twice, the copy that is kept too "
                       f"(dive issue #684). Squashing would save {fb(self.wasted_bytes)}.")
        for kind, layer, path, files, size in results["events"]:
            if kind == "opaque":
                out.append(f"Layer {layer} makes /{path} opaque, hiding {_n(files, 'file')} "
                           f"({fb(size)}) of lower layers; dive ignores opaque markers, so "
                           "it neither removes nor counts them.")
            elif kind == "dir-deleted" and size:  # an empty one changes no number
                out.append(f"Layer {layer} deletes the directory /{path} ({_n(files, 'file')}, "
                           f"{fb(size)}); dive weighs a deleted directory once and does not "
                           "list it as waste.")
            elif kind == "whiteout-missing":
                out.append(f"Layer {layer} has a whiteout for /{path}, which no lower layer "
                           "holds; it deletes nothing.")
        for layer, path, leaves, size in results["aborts"]:
            out.append(f"dive stops counting layer {layer} at the whiteout of /{path}, which "
                       f"is missing below: {leaves} later entries ({fb(size)}) are left out "
                       "of its score and the path adds -1 to it.")
        return out

    def explain(self) -> str:
        """The notes as one paragraph each (empty if dive and nbimages agree)."""
        return "\n".join(self.notes())

    # ------------------------------------------------------------------ diff
    def diff(self, other: Any, content: bool = False) -> pd.DataFrame:
        """What changed from this image to `other` (an Inspection, Image or source), by path.

        change is added / removed / modified; `what` lists the changed attributes (kind,
        size, mode, owner, link, mtime, content). Copies from the same layer are equal.
        With `content=True`, regular files of equal metadata from different layers are
        compared by a hash of their bytes (a second, targeted read of those layers).
        """
        other = inspect(other)
        a, b = self._final_map(), other._final_map()
        cols: dict[str, list] = {c: [] for c in DIFF_COLUMNS}
        suspects: list[str] = []
        rows = []
        for p in sorted(a.keys() | b.keys()):
            x, y = a.get(p), b.get(p)
            if x is None:
                rows.append((p, "added", "", None, y))
            elif y is None:
                rows.append((p, "removed", "", x, None))
            elif x[7] == y[7] and x[9] == y[9]:
                continue  # the same copy of the same layer
            else:
                what = _what_changed(x, y)
                if what:
                    rows.append((p, "modified", what, x, y))
                elif content and x[0] == "file" and x[2] > 0:
                    suspects.append(p)
                    rows.append((p, "?", "", x, y))
                elif x[6] != y[6]:
                    rows.append((p, "modified", "mtime", x, y))
        if suspects:
            ha, hb = self._hashes(set(suspects)), other._hashes(set(suspects))
        for p, change, what, x, y in rows:
            if change == "?":
                if ha.get(p) is None or hb.get(p) is None:
                    change, what = "modified", "content not compared (file too large)"
                elif ha[p] == hb[p]:
                    continue
                else:
                    change, what = "modified", "content"
            cols["path"].append("/" + p)
            cols["change"].append(change)
            cols["what"].append(what)
            cols["kind_a"].append(x[0] if x else None)
            cols["kind_b"].append(y[0] if y else None)
            cols["size_a"].append(x[2] if x else None)
            cols["size_b"].append(y[2] if y else None)
            cols["mode_a"].append(x[3] if x else None)
            cols["mode_b"].append(y[3] if y else None)
            cols["layer_a"].append(x[8] if x else None)
            cols["layer_b"].append(y[8] if y else None)
        frame = table(cols)
        for col in ("size_a", "size_b", "mode_a", "mode_b", "layer_a", "layer_b"):
            frame[col] = frame[col].astype("Int64")
        return frame

    def _final_map(self) -> dict[str, tuple]:
        """path -> (kind, size... , layer diff_id, entry index) of the final filesystem."""
        if "final_map" not in self._cache:
            walk = self._ensure()
            diff_ids = [lc for lc in self._columns("layers", self._layer_columns)["diff_id"]]
            out = {}
            for p, c in walk.tree.values.items():
                kind, size, mode, uid, gid, mtime, link = walk.copy_info(c)[1:8]
                out[p] = (kind, p, size, mode, (uid, gid), link, mtime, diff_ids[c >> SHIFT],
                          c >> SHIFT, c & MASK)
            self._cache["final_map"] = out
        return self._cache["final_map"]

    def _hashes(self, paths: set[str]) -> dict[str, str]:
        final = self._ensure().tree.values
        out = {}
        for i, entry in self.read_files(paths.__contains__, max_size=HASH_LIMIT):
            if final.get(entry.path, -1) >> SHIFT == i and entry.data is not None:
                out[entry.path] = hashlib.sha256(entry.data).hexdigest()
        return out

    # ------------------------------------------------------------------ export
    def to_dict(self, files: bool = False, sizes: bool = False, depth: int = 2) -> dict[str, Any]:
        """What `nbimages inspect --json` prints: plain JSON types, tables as records."""
        d = self.dive
        out: dict[str, Any] = {
            "source": self.source,
            "digest": self.digest,
            "id": self.id,
            "size": self.size,
            "final_size": self.final_size,
            "efficiency": self.efficiency,
            "wasted_bytes": self.wasted_bytes,
            "dive": d,
            "layers": _records(self._columns("layers", self._layer_columns)),
            "waste": _records(self._columns("waste", self._waste_columns)),
            "history": _records(self._history_columns()),
            "unsafe": _records(self._columns("unsafe", self._unsafe_columns)),
            "notes": self.notes(),
        }
        if files:
            out["files"] = _records(self._file_columns(None))
        if sizes:
            out["sizes"] = _records(self._size_columns(depth))
        return out

    def to_json(self, files: bool = False, sizes: bool = False, depth: int = 2,
                indent: int | None = None) -> str:
        """`to_dict()` as JSON text (compact unless `indent`: the C encoder is much faster)."""
        return json.dumps(self.to_dict(files=files, sizes=sizes, depth=depth), indent=indent)

    # ------------------------------------------------------------------ display
    def _summary(self) -> list[tuple[str, str]]:
        entries = self._results()["layers"]["entries"]
        d = self.dive
        return [
            ("image", self.source or ", ".join(self.image.names) or dg.short(self.id)),
            ("digest", self.digest),
            ("id", self.id),
            ("layers", f"{len(entries)} ({sum(entries):,} entries)"),
            ("size", f"{fb(self.size)} in layers, {fb(self.final_size)} in the final filesystem"),
            ("efficiency", f"{self.efficiency:.4%} (dive's score)"),
            ("wasted", (f"{fb(self.wasted_bytes)} squashing would save; dive's potential "
                        f"wasted space {fb(d['inefficient_bytes'])}")),
        ] + self._unsafe_summary()

    def _unsafe_summary(self) -> list[tuple[str, str]]:
        n = len(self._columns("unsafe", self._unsafe_columns)["layer"])
        if not n:
            return []
        entries = "1 entry is" if n == 1 else f"{n:,} entries are"
        return [("unsafe", f"WARNING: {entries} unsafe: they escape the root, land elsewhere "
                           f"than named or cannot be extracted ({fb(self.unsafe_size)} never "
                           "applied, not counted as waste); see .unsafe or nbimages inspect "
                           "--unsafe")]

    def _remote_summary(self) -> list[str]:
        """What a registry image shows before any layer is downloaded."""
        total = sum(layer.size for layer in self.image.layers)
        lines = [f"<Inspection of {self.source or dg.short(self.id)}>",
                 f"  {'digest':<10} {self.digest}", f"  {'id':<10} {self.id}",
                 f"  {'layers':<10} {len(self.image.layers)}, {fb(total)} to download "
                 "(file tables and .walk() fetch them)", "",
                 f"  {'#':>3} {'digest':<19} {'compressed':>10}  created_by"]
        hist = self.image.layer_history()
        for n, layer in enumerate(self.image.layers):
            made = " ".join((hist[n].created_by if hist[n] else "").split())
            lines.append(f"  {n:>3} {dg.short(layer.digest):<19} {fb(layer.size):>10}  {made[:70]}")
        return lines

    def __repr__(self) -> str:
        if self._known_results() is None:
            return "\n".join(self._remote_summary())
        lines = [f"<Inspection of {self.source or dg.short(self.id)}>"]
        lines += [f"  {k:<10} {v}" for k, v in self._summary()[1:]]
        cols = self._columns("layers", self._layer_columns)
        lines.append("")
        lines.append(f"  {'#':>3} {'digest':<19} {'size':>10} {'wasted':>10} {'+':>6} {'~':>6} "
                     f"{'-':>6}  created_by")
        for n in range(len(cols["index"])):
            made = " ".join(str(cols["created_by"][n]).split())
            lines.append(f"  {n:>3} {dg.short(cols['digest'][n]):<19} "
                         f"{fb(cols['size'][n]):>10} {fb(cols['wasted_bytes'][n]):>10} "
                         f"{cols['files_added'][n]:>6} {cols['files_modified'][n]:>6} "
                         f"{cols['files_deleted'][n]:>6}  {made[:70]}")
        notes = self.notes()
        if notes:
            lines.append("")
            lines += [f"  note: {n}" for n in notes[:5]]
            if len(notes) > 5:
                lines.append(f"  ... {len(notes) - 5} more notes: .notes()")
        return printable("\n".join(lines))

    def _repr_html_(self) -> str:
        if self._known_results() is None:
            head = html.escape("\n".join(self._remote_summary()[:4]))
            return f"<div><pre>{head}</pre>{self.layers.to_html(index=False, escape=True)}</div>"
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        table = self.layers.to_html(index=False, escape=True, max_rows=200)
        notes = self.notes()
        notes_html = ""
        if notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in notes[:10])
            notes_html = f"<details><summary>{len(notes)} notes on dive's numbers</summary>" \
                         f"<ul>{items}</ul></details>"
        return printable(f"<div><table>{rows}</table>{notes_html}{table}</div>")


# column dtypes, so that empty tables still have the right types
_DTYPES = {"index": "int64", "size": "int64", "compressed_size": "int64", "files_added": "int64",
           "files_modified": "int64", "files_deleted": "int64", "wasted_bytes": "int64",
           "entries": "int64", "layer": "int64", "mode": "int64", "uid": "int64", "gid": "int64",
           "count": "int64", "total_bytes": "int64", "dive": "bool", "files": "int64",
           "top_layer": "int64", "share": "float64", "empty_layer": "bool"}


def _n(count: int, noun: str) -> str:
    """'1 file', '3 files'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _typed(cols: dict[str, list]) -> pd.DataFrame:
    frame = table(cols)
    for col in frame.columns:
        dtype = _DTYPES.get(col)
        if dtype and (len(frame) == 0 or col != "layer" or frame[col].notna().all()):
            frame[col] = frame[col].astype(dtype)
    return frame


def _records(cols: dict[str, list]) -> list[dict[str, Any]]:
    names = list(cols)
    out = []
    for row in zip(*(cols[n] for n in names)):
        out.append({n: (None if isinstance(v, float) and math.isnan(v) else v)
                    for n, v in zip(names, row)})
    return out


def _what_changed(x: tuple, y: tuple) -> str:
    what = []
    if x[0] != y[0]:
        what.append("kind")
    if x[2] != y[2]:
        what.append("size")
    if x[3] != y[3]:
        what.append("mode")
    if x[4] != y[4]:
        what.append("owner")
    if x[5] != y[5]:
        what.append("link")
    if what and x[6] != y[6]:
        what.append("mtime")
    return ",".join(what)

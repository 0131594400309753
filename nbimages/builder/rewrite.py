"""Daemonless squash and slim: new images written from an image's own layers (issue 14).

`squash(source, tag, from_layer=N)` keeps layers 0..N as they are and merges the layers above
into one: every path of the final filesystem whose kept copy is above N, plus a whiteout for
each path of layers 0..N that the merged layers removed. The merged history entries stay as
entries without a layer, and one entry for the new layer is added. What it saves is exactly
the `wasted_bytes` of the merged layers: the copies that no one could see.

`slim(source, tag, remove=[...], keep=[...])` drops paths (gitignore-style patterns) from every
layer that holds them, after checking the image's package databases (dpkg, pip RECORD):
removing what a package owns needs `force=True`, and the result then names the packages that
are now incomplete. `squash_from=N` squashes the slimmed image too.

Every layer is streamed from the source tar to the new blob (Python's tarfile in stream mode,
file data copied in chunks, never a whole file in memory) and hashed while written; nothing is
visible in the store before the manifest is complete. Metadata of every entry (mode, owners,
mtime, extended attributes) is kept; the output depends only on the input, so two runs give
the same digest.
"""

from __future__ import annotations

import copy as _copy
import html
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..analysis.advice import occurrences
from ..analysis.codes import DIR, HARDLINK, MASK, SHIFT
from ..analysis.inspection import Inspection, inspect
from ..analysis.packages import FinalFS, database_versions, find_packages, wanted
from ..analysis.walk import LayerFiles, Walk
from ..errors import NbimagesError
from ..image import Image, Layer, trust
from ..oci import canonical, compressor as cz, digest as dg, mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.manifest import Manifest
from ..oci.tarstream import CHUNK, members, selected
from ..progress import format_bytes as fb
from ..store import default_store
from .embedded import _TO_OCI, _Staged

WHITEOUT = ".wh."
SQUASH_COMMENT = "merged into the squashed layer by nbimages"


# ------------------------------------------------------------------ public API

def squash(source: Any, tag: str | None = None, from_layer: int = 0, *, store=None,
           compression: str | None = None, platform: str | None = None) -> Image:
    """A new image in the store whose layers above `from_layer` are merged into one.

    `from_layer=N` keeps layers 0..N (N = -1 merges every layer); the history entries of the
    merged layers are kept as entries without a layer. Built without a daemon; the same input
    gives the same digest. Returns the stored Image (tagged `tag` if given).
    """
    insp = _inspection(source, platform)
    n = len(insp.image.layers)
    first = _first_merged(from_layer, n)
    return _rewrite(insp, tag, first=first, drop=set(), store=store, compression=compression,
                    note=None)


@dataclass
class Slimmed:
    """What `slim` made: the new image, both inspections, what was removed, what broke."""

    image: Image
    before: Inspection
    after: Inspection
    removed: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes in the final fs)
    incomplete: dict[str, int] = field(default_factory=dict)      # "deb curl" -> files removed

    @property
    def saved(self) -> int:
        """Bytes of layer content the slimmed image no longer carries."""
        return self.before.size - self.after.size

    def diff(self):
        """The paths that changed from the old image to the new one (a DataFrame)."""
        return self.before.diff(self.after)  # each Inspection caches its final map

    def _lines(self) -> list[str]:
        b, a = self.before.size, self.after.size
        share = f" ({self.saved / b:.1%})" if b else ""
        lines = [f"<Slimmed {self.before.source or dg.short(self.before.id)} -> "
                 f"{', '.join(self.image.names) or dg.short(self.image.digest)}>",
                 f"  digest   {self.image.digest}",
                 f"  size     {fb(b)} -> {fb(a)} in layers, saves {fb(self.saved)}{share}",
                 f"  final    {fb(self.before.final_size)} -> {fb(self.after.final_size)} in "
                 "the filesystem",
                 f"  layers   {len(self.before.image.layers)} -> {len(self.image.layers)}",
                 f"  removed  {len(self.removed):,} paths"]
        if self.incomplete:
            names = ", ".join(f"{k} ({v} files)" for k, v in sorted(self.incomplete.items()))
            lines.append(f"  WARNING: now incomplete (forced): {names}")
        top = sorted(self.removed, key=lambda r: (-r[1], r[0]))[:10]
        if top:
            lines.append("")
            lines += [f"  - {fb(size):>10}  /{p}" for p, size in top]
            if len(self.removed) > 10:
                lines.append(f"  ... {len(self.removed) - 10:,} more: .diff()")
        return lines

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        head = "\n".join(self._lines()[:7])
        diff = self.diff()
        cols = ["path", "change", "what", "size_a", "size_b", "layer_a", "layer_b"]
        return (f"<div><pre>{html.escape(head)}</pre>"
                f"{diff[cols].to_html(index=False, escape=True, max_rows=30, na_rep='')}</div>")


def slim(source: Any, tag: str | None = None, remove: Iterable[str] = (),
         keep: Iterable[str] = (), squash_from: int | None = None, force: bool = False, *,
         store=None, compression: str | None = None, platform: str | None = None) -> Slimmed:
    """A new image without the paths `remove` matches (and `keep` does not), from every layer.

    Patterns are gitignore-style, against paths from the root: '/usr/share/doc/**',
    '**/__pycache__/**', '**/site-packages/*/tests/**'. Directories left empty by the removal
    go too. Paths a package owns (dpkg's file lists, pip's RECORD) are refused unless `force`;
    then `incomplete` names the packages. `squash_from=N` also merges the layers above N.
    """
    remove, keep = list(remove), list(keep)
    if not remove:
        raise NbimagesError("slim needs at least one pattern to remove, for example "
                            "remove=['/usr/share/doc/**', '/var/lib/apt/lists/**'].")
    insp = _inspection(source, platform)
    walk = insp._ensure()  # noqa: SLF001 - same family of modules
    drop = _matching(walk, remove, keep)
    if not drop:
        raise NbimagesError(f"no path of the image matches {remove}"
                            f"{f' outside {keep}' if keep else ''}: nothing to remove. Patterns "
                            "are gitignore-style from the root, like '/usr/share/doc/**'.")
    owned = _owned(insp, drop)
    if owned and not force:
        listed = ", ".join(f"{k} ({v} files)" for k, v in sorted(owned.items(), key=lambda kv:
                                                               (-kv[1], kv[0]))[:20])
        more = f" and {len(owned) - 20} more" if len(owned) > 20 else ""
        raise NbimagesError(
            f"slim would remove {sum(owned.values()):,} files that installed packages own: "
            f"{listed}{more}. Their package databases would list files that are gone, and "
            "reinstalling or verifying them would notice. Narrow the patterns (or add keep=[...]), "
            "or pass force=True (--force) to remove them anyway; the result then names the "
            "packages it left incomplete.")
    n = len(insp.image.layers)
    first = n if squash_from is None else _first_merged(squash_from, n)
    final = walk.tree.values
    removed = sorted((p, walk.layers[final[p] >> SHIFT].sizes[final[p] & MASK])
                     for p in drop if p in final)
    note = (f"nbimages slim: removed {len(removed):,} paths matching "
            f"{', '.join(remove)}{' except ' + ', '.join(keep) if keep else ''}")
    image = _rewrite(insp, tag, first=first, drop=drop, store=store, compression=compression,
                     note=note)
    return Slimmed(image, insp, inspect(image), removed, owned)


# ------------------------------------------------------------------ choosing

def _inspection(source: Any, platform: str | None) -> Inspection:
    insp = inspect(source, platform=platform) if platform else inspect(source)
    insp.walk()
    return insp


def _first_merged(from_layer: int, n: int) -> int:
    if not -1 <= from_layer < n:
        raise NbimagesError(f"the image has layers 0..{n - 1}; from_layer must be -1 (merge all) "
                            f"up to {n - 1}, not {from_layer}.")
    return from_layer + 1


def _matching(walk: Walk, remove: list[str], keep: list[str]) -> set[str]:
    """Final paths to drop: non-directories matched by `remove` and not `keep`, and the
    directories matched whose whole subtree goes."""
    import pathspec
    try:
        rm = pathspec.GitIgnoreSpec.from_lines(remove)
        kp = pathspec.GitIgnoreSpec.from_lines(keep)
    except (ValueError, TypeError) as e:  # GitWildMatchPatternError is a ValueError
        raise NbimagesError(f"a pattern of remove={remove} or keep={keep} cannot be read: {e}. "
                            "Patterns are gitignore-style, like '/usr/share/doc/**'.") from None
    layers = walk.layers
    final = walk.tree.values
    drop: set[str] = set()
    dirs = []
    for p, c in final.items():
        if layers[c >> SHIFT].kinds[c & MASK] == DIR:
            dirs.append(p)
        elif rm.match_file(p) and not kp.match_file(p):
            drop.add(p)
    kids = walk.tree.kids
    for d in sorted(dirs, key=lambda q: -q.count("/")):  # deepest first
        if rm.match_file(d) and not kp.match_file(d) and \
                all(k in drop for k in kids.get(d, ())):
            drop.add(d)
    # a hard link must keep its target
    for p, c in final.items():
        lf = layers[c >> SHIFT]
        if lf.kinds[c & MASK] == HARDLINK and p not in drop:
            drop.discard(_norm(lf.links.get(c & MASK, "")))
    return drop


def _owned(insp: Inspection, drop: set[str]) -> dict[str, int]:
    """'deb curl' / 'python networkx' -> how many of its files `drop` holds."""
    fs = FinalFS.from_frame(insp.files(final=True))
    out: dict[str, int] = {}
    for pkg in find_packages(database_versions(insp.read_files(wanted)), fs):
        n = 0
        for listed in pkg.paths:
            real = fs.resolve(listed)
            if real is not None and real.lstrip("/") in drop and \
                    fs.rows[real].kind != "dir":
                n += 1
        if n:
            out[f"{pkg.type} {pkg.name}"] = n
    return out


def _norm(path: str) -> str:
    return posixpath.normpath("/" + path).lstrip("/")


# ------------------------------------------------------------------ writing

class _StagedLayer(_Staged):
    """A layer copied from tar members into the store's tmp area while hashed; renamed into
    blobs/ at commit (the builder's staged blob, filled from another image's layers)."""

    def __init__(self, store, comp: cz.Compressor,
                 members: Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]):
        def write_tar(pipe: cz.LayerPipeline) -> None:
            with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK,
                              copybufsize=CHUNK) as tf:
                for info, reader in members:
                    tf.addfile(info, reader)
        self._stage(store, comp, write_tar)


def _lower_tree(walk: Walk, first: int) -> dict[str, int]:
    """The merged tree of layers 0..first-1 alone (path -> copy code, as in the walk)."""
    lower = Walk()
    for lf in walk.layers[:first]:
        lower.apply(lf.twin())
    return lower.tree.values


def _whiteout(path: str, mtime: int) -> tarfile.TarInfo:
    parent, name = posixpath.split(path)
    info = tarfile.TarInfo(posixpath.join(parent, WHITEOUT + name))
    info.mode = 0o644
    info.mtime = mtime
    return info


def _orphaned_links(lf: LayerFiles, i: int, keep: dict[str, int], final: dict[str, int]
                    ) -> dict[int, int]:
    """Kept hard links of layer `i` whose target, as it was when the link was written in this
    layer, is not the copy the final filesystem keeps (a later layer rewrote it): link entry
    -> the entry of that older copy. The squashed layer must hold such a link as a file of
    its own with the older content, as the engine's layers did."""
    links = {idx: _norm(lf.links.get(idx, "")) for idx in keep.values()
             if lf.kinds[idx] == HARDLINK}
    if not links:
        return {}
    targets = set(links.values())
    latest: dict[str, int] = {}
    out = {}
    for j in range(max(links) + 1):
        if j in links:
            k = latest.get(links[j])
            if k is not None and final.get(links[j]) != (i << SHIFT | k):
                out[j] = k
        p = lf.paths[j]
        if p in targets:
            latest[p] = j
    return out


def _layer_members(image: Image, walk: Walk, i: int, keep: dict[str, int]
                   ) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None, int]]:
    """(TarInfo named by its normalised path, reader, copy code) of the kept entries; a hard
    link to a copy a later layer replaced comes as a regular file with that copy's bytes
    (spooled to a temporary file while the tar streams past it, never held in memory)."""
    if not keep:
        return  # nothing of this layer is in the final filesystem: not read again
    lf = walk.layers[i]
    final = walk.tree.values
    orphans = _orphaned_links(lf, i, keep, final)
    olds = set(orphans.values())
    occ = occurrences(lf, set(keep.values()) | olds)
    spools: dict[int, tuple[BinaryIO, int]] = {}
    try:
        with image.layer_tar(i) as stream:
            for path, n, info, reader in selected(stream, occ):
                idx = occ[path][n]
                if idx in olds:
                    spool = tempfile.TemporaryFile()
                    shutil.copyfileobj(reader, spool, CHUNK)
                    spools[idx] = (spool, info.size)
                if final.get(path) != (i << SHIFT | idx) or path not in keep:
                    continue
                info.name = path
                if idx in orphans and orphans[idx] in spools:
                    spool, size = spools[orphans[idx]]
                    spool.seek(0)
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", size
                    yield info, spool, i << SHIFT | idx
                    continue
                yield info, reader, i << SHIFT | idx
    finally:
        for spool, _ in spools.values():
            spool.close()


def _merged(image: Image, walk: Walk, first: int, drop: set[str], mtime: int
            ) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    """The squashed layer: whiteouts for lower paths the merged layers removed, then every
    final copy above `first - 1` in layer order (hard links after their targets)."""
    final = walk.tree.values
    layers = walk.layers
    lower = _lower_tree(walk, first)

    def is_dir(p: str) -> bool:
        c = final.get(p)
        return c is not None and layers[c >> SHIFT].kinds[c & MASK] == DIR

    gone = []
    for p in lower:
        if p in final or p in drop:
            continue
        parent = posixpath.dirname(p)
        if not parent or is_dir(parent):  # else an ancestor's whiteout or replacement covers it
            gone.append(p)
    for p in sorted(gone):
        yield _whiteout(p, mtime), None
    by_layer: dict[int, dict[str, int]] = {}
    for p, c in final.items():
        if c >> SHIFT >= first and p not in drop:
            by_layer.setdefault(c >> SHIFT, {})[p] = c & MASK
    later = []
    for i in range(first, len(layers)):
        for info, reader, code in _layer_members(image, walk, i, by_layer.get(i, {})):
            if info.islnk():
                target = final.get(_norm(info.linkname))
                if target is not None and target > code:
                    later.append(info)  # its target comes later in this tar: write it after
                    continue
            yield info, reader
    for info in later:
        yield info, None


def _filtered(image: Image, walk: Walk, i: int, drop: set[str]
              ) -> Iterator[tuple[tarfile.TarInfo, BinaryIO | None]]:
    """Layer `i` without the entries of dropped paths, everything else as it was."""
    with image.layer_tar(i) as stream:
        for path, info, reader in members(stream):
            if path not in drop:
                yield info, reader


def _rewrite(insp: Inspection, tag: str | None, *, first: int, drop: set[str], store,
             compression: str | None, note: str | None) -> Image:
    image = insp.image
    walk = insp._ensure()  # noqa: SLF001
    store = store or default_store()
    comp = cz.get(compression)
    cfg = _copy.deepcopy(image.config)
    created = cfg.get("created") or "1970-01-01T00:00:00Z"
    mtime = 0
    n = len(image.layers)
    staged: list[_StagedLayer] = []
    new_layers: list[Layer] = []
    touched = {i for i, lf in enumerate(walk.layers[:first])
               if drop and not drop.isdisjoint(lf.paths)}
    try:
        for i in range(min(first, n)):
            layer = image.layers[i]
            if i in touched:
                s = _StagedLayer(store, comp, _filtered(image, walk, i, drop))
                staged.append(s)
                new_layers.append(_staged_layer(s))
            else:
                d = layer.descriptor
                new_layers.append(Layer(Descriptor(_TO_OCI.get(d.media_type, d.media_type),
                                                   d.digest, d.size, dict(d.annotations),
                                                   urls=d.urls), layer.diff_id, layer.open_blob))
        if first < n:
            s = _StagedLayer(store, comp, _merged(image, walk, first, drop, mtime))
            staged.append(s)
            new_layers.append(_staged_layer(s))
        cfg["history"] = _history(image.config.get("history") or [], first, n, created, note)
        cfg["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in new_layers]}
        config_bytes = canonical.dumps(cfg)
        manifest = Manifest.build(
            Descriptor(mt.OCI_CONFIG, dg.of_bytes(config_bytes), len(config_bytes)),
            [l.descriptor for l in new_layers], annotations={cz.COMPRESSOR_ANNOTATION: comp.ident})
        with store.writing():
            for i, l in enumerate(new_layers):
                if i < len(image.layers) and l.digest == image.layers[i].digest and \
                        not store.has_blob(l.digest):
                    with l.open_blob() as f:
                        store.write_blob(f, l.digest)
            for s in staged:
                s.commit(store)
            store.write_blob(config_bytes, manifest.config.digest)
            store.write_blob(manifest.raw, manifest.digest)
            desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw),
                              platform=image.platform)
            with store.locked():
                store.set_ref(tag, desc)
    finally:
        for s in staged:
            s.discard()
    out = store.image(desc, source=f"store:{tag}" if tag else f"store:{manifest.digest}")
    if tag:
        out.names = [tag]
    return out


def _staged_layer(s: _StagedLayer) -> Layer:
    r = s.result
    trust(r.digest, r.diff_id)  # hashed here while it was written
    return Layer(Descriptor(r.media_type, r.digest, r.size), r.diff_id, s.open)


def _history(history: list[dict], first: int, n: int, created: str, note: str | None
             ) -> list[dict]:
    """The merged layers' entries kept without a layer, one entry for the new layer."""
    out = []
    made = 0
    for h in history:
        h = dict(h)
        if not h.get("empty_layer"):
            if made >= first:
                h["empty_layer"] = True
                h["comment"] = (h.get("comment", "") + " " + SQUASH_COMMENT).strip()
            made += 1
        out.append(h)
    if first < n:
        out.append({"created": created, "created_by": f"nbimages squash --from-layer {first - 1}"
                    + (f" ({note})" if note else ""),
                    "comment": f"layers {first}..{n - 1} merged"})
    elif note:
        out.append({"created": created, "created_by": note, "empty_layer": True})
    return out

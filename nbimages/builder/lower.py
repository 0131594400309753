"""What a step builds on: the directories and symlinks of the image below it.

A new layer must fit the filesystem it lands on, as Docker's COPY does:
- a parent directory keeps the lower layers' mode and owner (`/tmp` stays 1777, a notebook
  user's home stays theirs) instead of being reset to 0755 root;
- a path through a lower symlink goes where the link points (`/bin/x` on a merged-/usr base
  lands in `/usr/bin/x`), instead of replacing `/bin` by a directory holding one file.
The view of a base image is read once from its layer tars and kept on disk by chain id.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path
from typing import Iterable

from ..atomic import write_atomic
from ..errors import BuildError, InvalidImage
from ..image import LayerTar
from ..oci.tarscan import records
from ..oci.tarwriter import DIR, FILE, OPAQUE, SYMLINK, WHITEOUT_PREFIX, Entry

_MAX_LINKS = 40
_VIEW_VERSION = 1


def chain_id(diff_ids: list[str]) -> str:
    """OCI ChainID of a layer stack (config.md): sha256(parent_chain + ' ' + diff_id)."""
    if not diff_ids:
        return "sha256:" + hashlib.sha256(b"").hexdigest()
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
    return chain


class LowerView:
    """path -> ("d", mode, uid, gid) or ("l", target) for directories and symlinks."""

    def __init__(self, nodes: dict[str, tuple] | None = None):
        self.nodes: dict[str, tuple] = dict(nodes or {})

    def copy(self) -> "LowerView":
        return LowerView(self.nodes)

    # ---- building
    def _remove_tree(self, path: str) -> None:
        node = self.nodes.pop(path, None)
        if node is not None and node[0] == "d":
            self._remove_children(path)

    def _remove_children(self, path: str) -> None:
        prefix = path + "/" if path else ""
        for p in [p for p in self.nodes if p.startswith(prefix) and p != path]:
            del self.nodes[p]

    def apply(self, entries: Iterable[Entry]) -> None:
        """Lay one layer's entries over this view (whiteouts first, as they hide lower paths)."""
        entries = list(entries)
        for e in entries:
            name = posixpath.basename(e.path)
            if name == OPAQUE:
                self._remove_children(posixpath.dirname(e.path))
            elif name.startswith(WHITEOUT_PREFIX):
                gone = posixpath.join(posixpath.dirname(e.path), name[len(WHITEOUT_PREFIX):])
                self.nodes.pop(gone, None)
                self._remove_children(gone)
        for e in entries:
            if posixpath.basename(e.path).startswith(WHITEOUT_PREFIX):
                continue
            if e.kind == DIR:
                self.nodes[e.path] = ("d", e.mode, e.uid, e.gid)
            elif e.kind == SYMLINK:
                self._remove_tree(e.path)
                self.nodes[e.path] = ("l", e.linkname)
            elif e.path in self.nodes:
                self._remove_tree(e.path)

    def apply_summary(self, summary: list[list]) -> None:
        """Apply a stored summary ([path, kind, mode|target, uid, gid] rows) of a cached layer."""
        entries = []
        for row in summary:
            path, kind = row[0], row[1]
            if kind == "d":
                entries.append(Entry(path, DIR, row[2], row[3], row[4]))
            elif kind == "l":
                entries.append(Entry(path, SYMLINK, 0o777, linkname=row[2]))
            else:
                entries.append(Entry(path, FILE))
        self.apply(entries)

    @staticmethod
    def summary(entries: Iterable[Entry]) -> list[list]:
        """The rows of a layer that matter to later steps: dirs, symlinks, whiteouts."""
        rows: list[list] = []
        for e in entries:
            if e.kind == DIR:
                rows.append([e.path, "d", e.mode, e.uid, e.gid])
            elif e.kind == SYMLINK:
                rows.append([e.path, "l", e.linkname])
            elif posixpath.basename(e.path).startswith(WHITEOUT_PREFIX):
                rows.append([e.path, "w"])
        return rows

    # ---- queries
    def kind(self, path: str) -> str | None:
        node = self.nodes.get(path)
        return node[0] if node else None

    def dir_meta(self, path: str) -> tuple[int, int, int] | None:
        node = self.nodes.get(path)
        if node and node[0] == "d":
            return node[1], node[2], node[3]
        return None

    def resolve(self, path: str, *, follow_last: bool = False) -> str:
        """`path` (relative, normalised) with lower-layer symlinks in its parents followed.

        Links are resolved inside the image root (an absolute target is relative to it, `..`
        stops at it), as the engine resolves them in the container's filesystem.
        """
        parts = path.split("/") if path else []
        done: list[str] = []
        hops = 0
        i = 0
        while i < len(parts):
            part = parts[i]
            last = i == len(parts) - 1
            cand = done + [part]
            node = self.nodes.get("/".join(cand))
            if node and node[0] == "l" and (not last or follow_last):
                hops += 1
                if hops > _MAX_LINKS:
                    raise BuildError(f"too many levels of symbolic links resolving /{path} in the "
                                     "base image.")
                target = node[1]
                base = [] if target.startswith("/") else done
                parts = _clamp(base + [p for p in target.split("/") if p not in ("", ".")]) \
                    + parts[i + 1:]
                done, i = [], 0
                continue
            done = cand
            i += 1
        return "/".join(done)


def _clamp(parts: list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return out


def _tar_entries(stream) -> Iterable[Entry]:
    try:
        for name, kind, _size, mode, uid, gid, _mtime, linkname, *_ in records(stream):
            if not name:
                continue
            if kind == "dir":
                yield Entry(name, DIR, mode, uid, gid)
            elif kind == "symlink":
                yield Entry(name, SYMLINK, 0o777, linkname=linkname)
            else:
                yield Entry(name, FILE)
    except (InvalidImage, EOFError, OSError) as e:
        raise InvalidImage(f"a base image layer is not a readable tar ({e}); the image is "
                           "damaged.") from None


def view_of_layers(layers, cache_dir: Path | None = None, diff_ids: list[str] | None = None
                   ) -> LowerView:
    """The view after `layers` (image.Layer objects), read once and then kept in `cache_dir`."""
    diff_ids = diff_ids if diff_ids is not None else [l.diff_id for l in layers]
    cached = None
    path = None
    if cache_dir is not None and diff_ids and all(diff_ids):
        path = cache_dir / (chain_id(diff_ids).split(":", 1)[1] + ".json")
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") == _VIEW_VERSION:
                cached = {k: tuple(v) for k, v in doc["nodes"].items()}
        except (OSError, ValueError, KeyError, AttributeError):
            cached = None
    if cached is not None:
        return LowerView(cached)
    view = LowerView()
    for i, layer in enumerate(layers):
        with LayerTar(layer, i, "the base image") as f:
            view.apply(_tar_entries(f))
    if path is not None:
        write_atomic(path, json.dumps({"version": _VIEW_VERSION, "nodes": view.nodes},
                                      separators=(",", ":")).encode())
    return view

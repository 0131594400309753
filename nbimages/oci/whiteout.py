"""Whiteouts: how a layer deletes what lower layers hold (OCI image-spec, layer.md "Whiteouts").

- `DIR/.wh.NAME` removes `DIR/NAME` (and everything under it) from the layers below.
- `DIR/.wh..wh..opq` makes DIR opaque: every child from the layers below is removed, DIR stays.
- Whiteouts apply only to lower layers: a file beside its whiteout in the same layer stays,
  so a layer's whiteouts are applied before its own entries, whatever the tar order.
- Other `.wh..wh.` names are AUFS bookkeeping (hard-link directories); they hide nothing.

`MergedTree` is the union filesystem these rules produce, with subtree removal, so the
analysis, the package reader and the builders share one implementation.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."

V = TypeVar("V")


def classify(path: str) -> tuple[str, str]:
    """('', path) for a normal entry, ('whiteout', removed path), ('opaque', directory) or
    ('meta', path) for other AUFS `.wh..wh.` names. Paths are relative, no leading '/'."""
    slash = path.rfind("/")
    base = path[slash + 1:]
    if not base.startswith(PREFIX):
        return "", path
    parent = path[:slash] if slash >= 0 else ""
    if base == OPAQUE:
        return "opaque", parent
    if base.startswith(META_PREFIX):
        return "meta", path
    name = base[len(PREFIX):]
    return "whiteout", f"{parent}/{name}" if parent else name


def is_whiteout(path: str) -> bool:
    """True for any `.wh.`-prefixed entry (whiteout, opaque marker or AUFS metadata)."""
    return posixpath.basename(path).startswith(PREFIX)


def whiteout_of(path: str) -> str:
    """The entry name that removes `path` in a layer above (`a/b` -> `a/.wh.b`)."""
    parent, name = posixpath.split(path.rstrip("/"))
    return posixpath.join(parent, PREFIX + name)


def opaque_marker(directory: str) -> str:
    """The entry name that makes `directory` opaque (`a` -> `a/.wh..wh..opq`)."""
    return posixpath.join(directory.rstrip("/"), OPAQUE) if directory.strip("/") else OPAQUE


def parent_of(path: str) -> str:
    slash = path.rfind("/")
    return path[:slash] if slash >= 0 else ""


def ancestors(paths: Iterable[str]) -> set[str]:
    """'' and every ancestor of `paths`, climbing from their distinct parents only."""
    found = {""}
    for par in {p.rpartition("/")[0] for p in paths}:
        while par not in found:
            found.add(par)
            par = par.rpartition("/")[0]
    return found


class MergedTree(Generic[V]):
    """A union filesystem as a path -> value map with a directory index for subtree removal.

    Paths are relative ('usr/bin/env'); '' is the root. A path may have children without a
    value of its own (a parent directory no layer has an entry for): such parents are kept in
    the index only, as the runtime would create them implicitly.

    The index (`kids`) is built on first use: adding paths in bulk (`update`) and removing
    a path that never had children cost no index work, so a walk whose whiteouts delete only
    files never builds it. `dirs` (every path that ever had a child) tells the two apart.
    """

    __slots__ = ("_keep", "_kids", "_unlinked", "dirs", "values")

    def __init__(self) -> None:
        self.values: dict[str, V] = {}
        # every path that ever had a child: a superset of the directories of the index
        self.dirs: set[str] = set()
        # directory -> paths of its children (also for parents that have no value); None
        # until first used, then paths added since are linked on the next use
        self._kids: dict[str, set[str]] | None = None
        self._unlinked: list[list[str]] = []
        # parents that outlive a child removed while the index was not up to date
        self._keep: list[str] = []

    @property
    def kids(self) -> dict[str, set[str]]:
        """directory -> paths of its children (also for parents that have no value)."""
        kids = self._kids
        if kids is None:
            kids = self._kids = {}
            self._link(self.values)
        elif self._unlinked:
            for batch in self._unlinked:
                self._link(batch)
        self._unlinked = []
        if self._keep:
            for parent in self._keep:
                if parent not in kids:
                    kids[parent] = set()
                    self._link((parent,))
            self._keep = []
        return kids

    def _link(self, paths) -> None:
        """Put each of `paths` that has a value in its parent's children, creating the
        index entries of missing parents."""
        kids = self._kids
        assert kids is not None
        values = self.values
        for child in paths:
            if child not in values and child not in kids:
                continue
            while child:
                slash = child.rfind("/")
                parent = child[:slash] if slash >= 0 else ""
                siblings = kids.get(parent)
                if siblings is not None:
                    siblings.add(child)
                    break
                kids[parent] = {child}
                child = parent

    def __contains__(self, path: str) -> bool:
        return path in self.values

    def __len__(self) -> int:
        return len(self.values)

    def get(self, path: str, default=None):
        return self.values.get(path, default)

    def exists(self, path: str) -> bool:
        """True if `path` has a value or is an implicit parent of something that has one."""
        return path in self.values or path in self.dirs and path in self.kids

    def set(self, path: str, value: V) -> None:
        """Add or replace `path`, creating the index entries of its parents."""
        values = self.values
        if path not in values:
            dirs = self.dirs
            child = path
            while child:
                child = parent_of(child)
                if child in dirs:
                    break
                dirs.add(child)
            values[path] = value
            if self._kids is not None:
                self._link((path,))
            return
        values[path] = value

    def update(self, items: dict[str, V], parents: set[str]) -> None:
        """Add or replace many paths at once; `parents` holds every ancestor of the new
        ones (what `set` would create one by one)."""
        self.values.update(items)
        self.dirs |= parents
        if self._kids is not None:
            self._unlinked.append(list(items))

    def remove(self, path: str) -> list[tuple[str, V]]:
        """Remove `path` and everything under it; returns the removed (path, value) pairs."""
        values = self.values
        if path not in self.dirs:
            # never a parent: no subtree, and no index work unless the index is up to date
            if path not in values:
                return []
            removed = [(path, values.pop(path))]
            parent = parent_of(path)
            siblings = self._kids.get(parent) if self._kids is not None else None
            if siblings is not None:
                siblings.discard(path)
            else:
                self._keep.append(parent)  # the parent stays, even if now empty
            return removed
        removed = []
        kids = self.kids
        if path in values or path in kids:
            siblings = kids.get(parent_of(path))
            if siblings is not None:
                siblings.discard(path)
            self._drop(path, removed)
        return removed

    def remove_children(self, path: str) -> list[tuple[str, V]]:
        """Remove everything under `path`, keeping `path` itself (an opaque directory)."""
        removed: list[tuple[str, V]] = []
        if path in self.dirs:
            for child in self.kids.pop(path, ()):
                self._drop(child, removed)
        return removed

    def _drop(self, path: str, removed: list) -> None:
        stack = [path]
        values, kids = self.values, self.kids
        while stack:
            p = stack.pop()
            if p in values:
                removed.append((p, values.pop(p)))
            below = kids.pop(p, None)
            if below:
                stack.extend(below)

    def has_children(self, path: str) -> bool:
        return path in self.dirs and bool(self.kids.get(path))

    def children(self, path: str) -> list[str]:
        return sorted(self.kids.get(path, ()))

    def walk(self, path: str = "") -> Iterator[tuple[str, V]]:
        """(path, value) of `path` and everything under it, in no particular order."""
        stack = [path]
        while stack:
            p = stack.pop()
            if p in self.values and p:
                yield p, self.values[p]
            stack.extend(self.kids.get(p, ()))

    def items(self) -> Iterator[tuple[str, V]]:
        return iter(self.values.items())

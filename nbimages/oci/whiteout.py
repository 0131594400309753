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
from collections.abc import Iterator
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


class MergedTree(Generic[V]):
    """A union filesystem as a path -> value map with a directory index for subtree removal.

    Paths are relative ('usr/bin/env'); '' is the root. A path may have children without a
    value of its own (a parent directory no layer has an entry for): such parents are kept in
    the index only, as the runtime would create them implicitly.
    """

    __slots__ = ("kids", "values")

    def __init__(self) -> None:
        self.values: dict[str, V] = {}
        # directory -> paths of its children (also for parents that have no value)
        self.kids: dict[str, set[str]] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.values

    def __len__(self) -> int:
        return len(self.values)

    def get(self, path: str, default=None):
        return self.values.get(path, default)

    def exists(self, path: str) -> bool:
        """True if `path` has a value or is an implicit parent of something that has one."""
        return path in self.values or path in self.kids

    def set(self, path: str, value: V) -> None:
        """Add or replace `path`, creating the index entries of its parents."""
        values = self.values
        if path not in values:
            kids = self.kids
            child = path
            while True:
                parent = parent_of(child) if child else None
                if parent is None:
                    break
                siblings = kids.get(parent)
                if siblings is None:
                    kids[parent] = {child}
                    child = parent
                    continue
                siblings.add(child)
                break
        values[path] = value

    def remove(self, path: str) -> list[tuple[str, V]]:
        """Remove `path` and everything under it; returns the removed (path, value) pairs."""
        removed: list[tuple[str, V]] = []
        if path in self.values or path in self.kids:
            siblings = self.kids.get(parent_of(path))
            if siblings is not None:
                siblings.discard(path)
            self._drop(path, removed)
        return removed

    def remove_children(self, path: str) -> list[tuple[str, V]]:
        """Remove everything under `path`, keeping `path` itself (an opaque directory)."""
        removed: list[tuple[str, V]] = []
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
        return bool(self.kids.get(path))

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

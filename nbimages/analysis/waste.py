"""Waste as decisions: the lost copies of an image grouped by directory and by cause.

A lost copy is a file written in layer i and removed (a whiteout, its directory deleted,
an opaque directory) or written again in a later layer j. Its bytes stay in layer i however
the final filesystem looks. One row per (directory, layer i, layer j, how) says how many files
and bytes, the cause in words (with the steps that wrote and removed them) and the fix.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterator

from ..progress import format_bytes
from .codes import (BY_OPAQUE, BY_PARENT_WHITEOUT, BY_REPLACED_DIR, BY_WHITEOUT, DIR, MASK,
                    OVERWRITTEN, REASON, SHIFT, UNSAFE)
from .walk import LayerFiles

COLUMNS = ["directory", "files", "wasted_bytes", "written_in", "removed_in", "how", "cause",
           "fix", "example"]
DEPTH = 3  # directories are grouped at most this deep (/var/lib/apt, /root/.cache/pip)


def _directory(path: str, depth: int = DEPTH) -> str:
    parts = posixpath.dirname(path).split("/")
    return "/" + "/".join(p for p in parts[:depth] if p)


def _step(created_by: list[str], i: int) -> str:
    text = " ".join((created_by[i] if i < len(created_by) else "").split())
    text = text.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").strip()
    return f"layer {i} (`{text[:60] + ('…' if len(text) > 60 else '')}`)" if text else f"layer {i}"


def _cause_and_fix(how: int, directory: str, i: int, j: int, created_by: list[str]) -> tuple[str, str]:
    wrote, removed = _step(created_by, i), _step(created_by, j)
    if how == OVERWRITTEN:
        return (f"written in {wrote}, written again in {removed}: the first copies still "
                f"ship in layer {i}",
                f"write the files of {directory} once: make them final in layer {i}'s step, or "
                f"move the step of layer {j} into it")
    if how == BY_OPAQUE or how == BY_REPLACED_DIR:
        verb = "replaced" if how == BY_REPLACED_DIR else "hidden"
        return (f"written in {wrote}, {verb} in {removed}: they still ship in layer {i}",
                f"do not write {directory} in layer {i}'s step (or write it only in layer {j})")
    return (f"written in {wrote}, deleted in {removed}: deleting in a later layer hides the "
            f"files but their bytes still ship in layer {i}",
            f"delete {directory} in the same step that writes it (`RUN … && rm -rf "
            f"{directory}`), or keep it out of that step (a .dockerignore for COPY, "
            "--no-cache-dir for pip, `apt-get clean` in the apt step)")


def lost_copies(layers: list[LayerFiles]) -> Iterator[tuple[int, int, int, int]]:
    """Every lost copy as (layer i, its entry index there, layer j that removed or wrote it
    again, how); directories (no bytes) and unsafe entries (their own table) left out."""
    def lost(i: int, idx: int) -> bool:
        owner = layers[i]
        return owner.kinds[idx] != DIR and owner.changes[idx] < UNSAFE

    removed: set[int] = set()
    for j, lf in enumerate(layers):
        for code, how in zip(lf.deleted, lf.deleted_how):
            removed.add(code)
            if lost(code >> SHIFT, code & MASK):
                yield code >> SHIFT, code & MASK, j, how
    # a copy no layer removed but a later layer wrote again was overwritten by that layer
    seen: dict[str, int] = {}
    for j, lf in enumerate(layers):
        base = j << SHIFT
        for idx, p in enumerate(lf.paths):
            before = seen.get(p)
            if before is not None and before not in removed and lost(before >> SHIFT,
                                                                     before & MASK):
                yield before >> SHIFT, before & MASK, j, OVERWRITTEN
            seen[p] = base | idx


def lost_by_layer(layers: list[LayerFiles]) -> list[dict[str, str]]:
    """For each layer, its files whose bytes are wasted: path -> what happened ("deleted in
    layer 3", "overwritten in layer 2"), for marking them in a file list."""
    out: list[dict[str, str]] = [{} for _ in layers]
    for i, idx, j, how in lost_copies(layers):
        out[i]["/" + layers[i].paths[idx]] = f"{REASON[how]} in layer {j}"
    return out


def waste_groups(layers: list[LayerFiles], created_by: list[str]) -> dict[str, list[Any]]:
    """Columns of the grouped waste table, largest group first."""
    groups: dict[tuple[str, int, int, int], list[Any]] = {}

    def lose(i: int, idx: int, j: int, how: int) -> None:
        owner = layers[i]
        path = "/" + owner.paths[idx]
        key = (_directory(path), i, j, BY_WHITEOUT if how == BY_PARENT_WHITEOUT else how)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [0, 0, path, -1]
        g[0] += 1
        g[1] += owner.sizes[idx]
        if owner.sizes[idx] > g[3]:
            g[2], g[3] = path, owner.sizes[idx]

    for lost in lost_copies(layers):
        lose(*lost)
    rows = sorted(groups.items(), key=lambda kv: (-kv[1][1], kv[0]))
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for (directory, i, j, how), (files, size, example, _) in rows:
        cause, fix = _cause_and_fix(how, directory, i, j, created_by)
        for name, value in zip(COLUMNS, (directory, files, size, i, j, REASON[how], cause, fix,
                                         example)):
            cols[name].append(value)
    return cols


def describe(cols: dict[str, list[Any]], limit: int = 10) -> list[str]:
    """The groups as sentences, for a text view."""
    out = []
    for n in range(min(limit, len(cols["directory"]))):
        out.append(f"{format_bytes(cols['wasted_bytes'][n])} in {cols['files'][n]:,} files "
                   f"under {cols['directory'][n]}: {cols['cause'][n]}. Fix: {cols['fix'][n]}.")
    return out

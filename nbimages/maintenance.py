"""Keeping the local store: what uses the space (`df`), reclaiming it (`prune`), finding and
repairing damage (`check`).

    nbimages.store_df()                         # bytes per image, shared vs unique, cache, partials
    nbimages.store_prune(dry_run=True)          # what a prune would remove
    nbimages.store_check(repair=True)           # re-hash everything; fetch damaged blobs again

The store is an OCI layout: a blob is live when an index.json entry reaches it (manifest →
config and layers) or the build cache names it. Prune takes the store's gc lock exclusively,
so it waits for builds and pulls in other processes (they hold it shared from their first
blob to their tag) and never removes what they are about to reference; it rewrites index.json
and the cache file first and deletes blobs last, so a prune killed at any point leaves a store
that `check` passes (at worst with blobs still to reclaim).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import filelock
import pandas as pd

from .analysis.layerindex import LayerIndex
from .builder.cache import BuildCache
from .engines.embedded import split_name
from .errors import InvalidImage, NbimagesError
from .oci import mediatypes as mt
from .oci.layout import REF_NAME
from .oci.manifest import Index, Manifest, media_type_of
from .progress import format_bytes
from .sources import open_image
from .store import Store, default_store

__all__ = ["df", "prune", "check", "StoreUsage", "PruneReport", "CheckReport", "parse_age"]

# Temporary files younger than this may belong to a process still writing them.
TEMP_GRACE = 3600.0
HASH_WORKERS = 4


def parse_age(text: str | float | int | None) -> float | None:
    """`7d`, `12h`, `30m`, `45s` (or a number of seconds) -> seconds; None stays None."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise NbimagesError(f"--older-than {text!r} is not a duration: write a number and a unit, "
                            "e.g. 7d, 12h, 30m or 45s.")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


# ------------------------------------------------------------------------------ the store's graph

@dataclass
class _Entry:
    """One index.json entry and the blobs it reaches."""
    name: str | None
    digest: str
    blobs: dict[str, str] = field(default_factory=dict)  # digest -> kind (manifest/config/layer)
    created: str | None = None
    problem: str | None = None  # a manifest that cannot be read


@dataclass
class _Graph:
    store: Store
    entries: list[_Entry]
    on_disk: dict[str, os.stat_result]  # blob digest -> stat
    cache: dict[str, dict]

    def size(self, digest: str) -> int:
        st = self.on_disk.get(digest)
        return st.st_size if st else 0

    def image_blobs(self) -> set[str]:
        return {d for e in self.entries for d in e.blobs}

    def cache_blobs(self) -> set[str]:
        return {r["digest"] for r in self.cache.values() if isinstance(r, dict) and "digest" in r}


def _scan_blobs(store: Store) -> dict[str, os.stat_result]:
    out: dict[str, os.stat_result] = {}
    root = store.path / "blobs"
    for alg_dir in (root.iterdir() if root.is_dir() else []):
        if not alg_dir.is_dir():
            continue
        with os.scandir(alg_dir) as it:
            for e in it:
                if not e.name.startswith(".") and e.is_file(follow_symlinks=False):
                    out[f"{alg_dir.name}:{e.name}"] = e.stat(follow_symlinks=False)
    return out


def _reach(store: Store, digest: str, mtype: str | None, entry: _Entry, depth: int = 0) -> None:
    """Add the manifest `digest` and what it references to entry.blobs (indexes followed)."""
    entry.blobs[digest] = "manifest"
    if not store.has_blob(digest):
        entry.problem = entry.problem or f"its manifest {digest} is missing"
        return
    try:
        raw = store.blob_path(digest).read_bytes()
        mtype = media_type_of(raw, mtype or None)
        if mt.is_index(mtype):
            if depth > 4:
                raise InvalidImage("index nesting is too deep")
            for child in Index.parse(raw, mtype).manifests:
                _reach(store, child.digest, child.media_type, entry, depth + 1)
            return
        m = Manifest.parse(raw, mtype)
    except (NbimagesError, ValueError, OSError) as e:
        entry.problem = entry.problem or f"its manifest {digest} cannot be read ({e})"
        return
    entry.blobs.setdefault(m.config.digest, "config")
    for layer in m.layers:
        entry.blobs.setdefault(layer.digest, "layer")
    if entry.created is None and store.has_blob(m.config.digest):
        with contextlib.suppress(OSError, ValueError):
            cfg = json.loads(store.blob_path(m.config.digest).read_bytes())
            entry.created = cfg.get("created") if isinstance(cfg, dict) else None


def _graph(store: Store) -> _Graph:
    entries = []
    for desc in store.index().manifests:
        e = _Entry(desc.annotations.get(REF_NAME), desc.digest)
        _reach(store, desc.digest, desc.media_type, e)
        entries.append(e)
    return _Graph(store, entries, _scan_blobs(store), BuildCache(store).entries())


def _temporaries(store: Store) -> Iterator[tuple[Path, str]]:
    """(path, kind) of every temporary under the store: partial downloads, blob writes,
    build staging and exports in tmp/."""
    blobs = store.path / "blobs"
    for alg_dir in (blobs.iterdir() if blobs.is_dir() else []):
        for p in alg_dir.glob(".tmp-*"):
            yield p, "temporary"
    tmp = store.home / "tmp"
    downloads = tmp / "downloads"
    for p in (downloads.iterdir() if downloads.is_dir() else []):
        if p.name.endswith(".partial"):
            yield p, "partial download"
        elif not p.name.endswith(".lock"):
            yield p, "temporary"
    for p in (tmp.iterdir() if tmp.is_dir() else []):
        if p.name != "downloads":
            yield p, "temporary"


def _size_of(p: Path) -> int:
    try:
        if p.is_dir() and not p.is_symlink():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.lstat().st_size
    except OSError:
        return 0


def _mtime(p: Path) -> float:
    try:
        if p.is_dir() and not p.is_symlink():
            return max([p.stat().st_mtime] + [f.stat().st_mtime for f in p.rglob("*")])
        return p.lstat().st_mtime
    except OSError:
        return time.time()


def _open_paths() -> set[str]:
    """Files some process of this machine has open (Linux /proc; empty elsewhere)."""
    found: set[str] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def _owner_alive(p: Path) -> bool:
    """A temporary named `p<pid>-…` (Store.tmpfile) whose process still runs."""
    m = re.match(r"p(\d+)-", p.name)
    if not m:
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def _partial_in_use(p: Path) -> bool:
    """A partial download whose lock another process holds is being written now."""
    lock = filelock.FileLock(str(p) + ".lock", timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False


# ------------------------------------------------------------------------------------------ df

class StoreUsage:
    """What the store holds, like `docker system df -v`: `.images` (one row per name, with
    size, shared and unique bytes) and `.summary` (images, build cache, partial downloads,
    temporaries, unreferenced blobs: count, size, reclaimable)."""

    def __init__(self, home: Path, images: pd.DataFrame, summary: pd.DataFrame):
        self.home = home
        self.images = images
        self.summary = summary

    @property
    def total(self) -> int:
        return int(self.summary["size"].sum())

    @property
    def reclaimable(self) -> int:
        return int(self.summary["reclaimable"].sum())

    def to_json(self) -> dict[str, Any]:
        def records(frame: pd.DataFrame) -> list[dict]:
            return json.loads(frame.to_json(orient="records"))
        return {"home": str(self.home), "total": self.total, "reclaimable": self.reclaimable,
                "summary": records(self.summary), "images": records(self.images)}

    def __repr__(self) -> str:
        s = self.summary.copy()
        s["size"] = s["size"].map(format_bytes)
        s["reclaimable"] = s["reclaimable"].map(format_bytes)
        im = self.images.copy()
        for col in ("size", "shared", "unique"):
            im[col] = im[col].map(format_bytes)
        im["digest"] = im["digest"].str.slice(7, 19)
        lines = [f"Local store {self.home}: {format_bytes(self.total)}, "
                 f"{format_bytes(self.reclaimable)} reclaimable (nbimages store prune)", "",
                 s.to_string(index=False), ""]
        lines += ["Images:", im.drop(columns=["created"]).to_string(index=False)
                  if len(im) else "(none)"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return (f"<p><b>Local store</b> <code>{self.home}</code>: {format_bytes(self.total)}, "
                f"{format_bytes(self.reclaimable)} reclaimable</p>"
                + self.summary._repr_html_() + self.images._repr_html_())


def df(store: Store | None = None) -> StoreUsage:
    """Bytes the local store uses: per image (shared with other images vs unique to it), the
    build cache, partial downloads, temporaries and unreferenced blobs, with what a prune
    would reclaim."""
    store = store or default_store()
    g = _graph(store)
    users: dict[str, set[str]] = {}
    for e in g.entries:
        for d in e.blobs:
            users.setdefault(d, set()).add(e.digest)
    rows = []
    for e in g.entries:
        repo, tag = split_name(e.name) if e.name else ("<none>", "<none>")
        size = sum(g.size(d) for d in e.blobs)
        unique = sum(g.size(d) for d in e.blobs if users[d] == {e.digest})
        rows.append({"repository": repo, "tag": tag, "digest": e.digest, "size": size,
                     "shared": size - unique, "unique": unique, "blobs": len(e.blobs),
                     "created": e.created})
    images = pd.DataFrame(rows, columns=["repository", "tag", "digest", "size", "shared", "unique",
                                         "blobs", "created"])
    images = images.sort_values("size", ascending=False, kind="stable").reset_index(drop=True)
    used = g.image_blobs()
    dangling = {e.digest for e in g.entries if e.name is None}
    dangling_only = {d for e in g.entries if e.name is None for d in e.blobs
                     if users[d] <= dangling}
    cache_only = g.cache_blobs() - used
    unreferenced = set(g.on_disk) - used - g.cache_blobs()
    temps: dict[str, list[int]] = {"partial download": [0, 0], "temporary": [0, 0]}
    for p, kind in _temporaries(store):
        temps[kind][0] += 1
        temps[kind][1] += _size_of(p)

    indexed = LayerIndex(store.home).usage()

    def row(kind: str, count: int, size: int, reclaimable: int) -> dict:
        return {"type": kind, "count": count, "size": size, "reclaimable": reclaimable}
    image_bytes = sum(g.size(d) for d in used)
    summary = pd.DataFrame([
        row("images", len({e.digest for e in g.entries}), image_bytes,
            sum(g.size(d) for d in dangling_only)),
        row("build cache", len(g.cache), sum(g.size(d) for d in cache_only),
            sum(g.size(d) for d in cache_only)),
        row("partial downloads", *temps["partial download"], temps["partial download"][1]),
        row("temporaries", *temps["temporary"], temps["temporary"][1]),
        row("unreferenced blobs", len(unreferenced), sum(g.size(d) for d in unreferenced),
            sum(g.size(d) for d in unreferenced)),
        row("layer index", *indexed, indexed[1]),
    ], columns=["type", "count", "size", "reclaimable"])
    return StoreUsage(store.home, images, summary)


# --------------------------------------------------------------------------------------- prune

class PruneReport:
    """What a prune removed (or, with dry_run, would remove): `.removed` rows of kind, what,
    size; `.freed` bytes."""

    def __init__(self, removed: pd.DataFrame, dry_run: bool):
        self.removed = removed
        self.dry_run = dry_run

    @property
    def freed(self) -> int:
        return int(self.removed["size"].sum()) if len(self.removed) else 0

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "freed": self.freed,
                "removed": json.loads(self.removed.to_json(orient="records"))}

    def __repr__(self) -> str:
        verb = "would free" if self.dry_run else "freed"
        head = f"Prune {verb} {format_bytes(self.freed)} ({len(self.removed)} items)"
        if not len(self.removed):
            return head + ": nothing to remove."
        counts = self.removed.groupby("kind", sort=False)["size"].agg(["count", "sum"])
        parts = [f"{int(r['count'])} {k}{'s' if r['count'] != 1 else ''}"
                 + (f" ({format_bytes(r['sum'])})" if r["sum"] else "") for k, r in counts.iterrows()]
        return head + ": " + ", ".join(parts) + "."

    def _repr_html_(self) -> str:
        return f"<p>{repr(self)}</p>" + self.removed._repr_html_()


def prune(*, all: bool = False, older_than: str | float | None = None, dry_run: bool = False,
          store: Store | None = None, wait: float = 600) -> PruneReport:
    """Remove what no image needs: untagged (dangling) build results, blobs no image or cache
    entry reaches, cache entries whose blob is gone, partial downloads and temporaries left by
    a process that is gone. `all=True` also empties the build cache. `older_than` ("7d", "12h")
    keeps anything newer. Tagged images are never removed (`nbimages rm` untags them first).

    Waits up to `wait` seconds for builds and pulls in other processes to finish."""
    store = store or default_store()
    age = parse_age(older_than)
    now = time.time()

    def old(mtime: float, grace: float = 0.0) -> bool:
        return now - mtime >= max(age or 0.0, grace)

    removed: list[dict] = []
    with store.exclusive(timeout=wait):
        g = _graph(store)
        stat = g.on_disk

        def mtime(d: str) -> float:
            return stat[d].st_mtime if d in stat else 0.0

        # 1. the index: drop untagged entries (dangling build results)
        drop = [e for e in g.entries if e.name is None and old(mtime(e.digest))]
        keep_entries = [e for e in g.entries if e not in drop]
        kept_blobs = {d for e in keep_entries for d in e.blobs}
        for e in drop:
            removed.append({"kind": "dangling image", "what": e.digest, "size": 0})
        # 2. the build cache: entries whose blob is gone; with all=True every entry
        cache = dict(g.cache)
        gone = [k for k, r in cache.items() if not isinstance(r, dict) or r.get("digest") not in stat
                or (all and old(mtime(r["digest"])))]
        for k in gone:
            del cache[k]
            removed.append({"kind": "cache entry", "what": k, "size": 0})
        live = kept_blobs | {r["digest"] for r in cache.values()}
        # 3. blobs nothing reaches
        dead = [d for d in stat if d not in live and old(mtime(d))]
        for d in dead:
            removed.append({"kind": "blob", "what": d, "size": stat[d].st_size})
        # 4. temporaries of processes that are gone
        in_use = _open_paths()
        temps = []
        for p, kind in _temporaries(store):
            grace = 0.0 if all and kind == "partial download" else TEMP_GRACE
            if str(p) in in_use or _owner_alive(p) or not old(_mtime(p), grace):
                continue
            if kind == "partial download" and _partial_in_use(p):
                continue
            temps.append(p)
            removed.append({"kind": kind, "what": str(p.relative_to(store.home)), "size": _size_of(p)})
        # 5. the layer index: a cache of per-layer file tables, rebuilt on the next inspection
        index = LayerIndex(store.home)
        indexed = [p for p in index.all_files() if old(_mtime(p))]
        for p in indexed:
            removed.append({"kind": "layer index file", "what": str(p.relative_to(store.home)),
                            "size": _size_of(p)})

        if not dry_run:
            if drop:
                with store.locked():
                    names = {e.digest for e in drop}
                    current = store.index()
                    store.write_index(Index.build(
                        [d for d in current.manifests
                         if REF_NAME in d.annotations or d.digest not in names],
                        annotations=current.annotations or None))
            BuildCache(store).drop(gone)
            for d in dead:  # last: a kill before here leaves only unreferenced blobs
                with contextlib.suppress(FileNotFoundError):
                    store.blob_path(d).unlink()
            for p in temps:
                with contextlib.suppress(OSError):
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                    if p.name.endswith(".partial"):
                        Path(str(p) + ".lock").unlink(missing_ok=True)
            for p in indexed:
                p.unlink(missing_ok=True)
            store.forget_origins({e.digest for e in keep_entries})
    frame = pd.DataFrame(removed, columns=["kind", "what", "size"])
    return PruneReport(frame, dry_run)


# --------------------------------------------------------------------------------------- check

class CheckReport:
    """The result of `store check`: `.problems` rows (blob, kind, images, problem, action),
    `.ok` when there are none left, `.checked` blobs and bytes re-hashed."""

    def __init__(self, problems: pd.DataFrame, checked: int, checked_bytes: int, repair: bool):
        self.problems = problems
        self.checked = checked
        self.checked_bytes = checked_bytes
        self.repair = repair

    @property
    def ok(self) -> bool:
        """True when the store is sound now (no problems, or all of them repaired)."""
        return bool((self.problems["action"].str.startswith(("repaired", "removed"))).all()) \
            if len(self.problems) else True

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "checked_bytes": self.checked_bytes,
                "problems": json.loads(self.problems.to_json(orient="records"))}

    def __repr__(self) -> str:
        head = f"Checked {self.checked} blobs ({format_bytes(self.checked_bytes)})"
        if not len(self.problems):
            return head + ": the store is sound."
        n = len(self.problems)
        lines = [head + f": {n} problem{'s' if n != 1 else ''}."]
        for r in self.problems.itertuples():
            lines.append(f"  {r.problem}: {r.kind} {r.blob} of {r.images or 'no image'} -> {r.action}")
        if not self.repair:
            lines.append("Repair them with: nbimages store check --repair")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"


def _hash_all(store: Store, digests: list[str]) -> dict[str, str | None]:
    """digest -> None when the blob hashes to its name, else the digest it hashes to."""
    def one(d: str) -> tuple[str, str | None]:
        try:
            actual = store.rehash(d)
        except OSError as e:
            return d, f"unreadable ({e.strerror})"
        return d, None if actual == d else actual
    with ThreadPoolExecutor(HASH_WORKERS) as pool:
        return dict(pool.map(one, digests))


def check(*, repair: bool = False, store: Store | None = None) -> CheckReport:
    """Re-hash every blob of the store and follow every reference (index → manifests →
    configs and layers). `repair=True` fetches each damaged or missing blob again from where
    its image came from (the registry it was pulled from, the Docker engine, a tar or layout
    still present); when no source has it, the images that need it are removed (and said so).
    """
    store = store or default_store()
    with store.writing():  # a prune (exclusive) does not run under a check
        g = _graph(store)
        digests = sorted(g.on_disk)
        results = _hash_all(store, digests)
        users: dict[str, list[_Entry]] = {}
        for e in g.entries:
            for d in e.blobs:
                users.setdefault(d, []).append(e)
        problems = []
        for d, actual in results.items():
            if actual is not None:
                problems.append((d, "damaged", actual))
        for d in users:
            if d not in g.on_disk:
                problems.append((d, "missing", None))
        rows = []
        for d, problem, _actual in problems:
            entries = users.get(d, [])
            kind = entries[0].blobs[d] if entries else "unreferenced blob"
            images = ", ".join(sorted({e.name or e.digest for e in entries}))
            action = "none (run with --repair)"
            if repair:
                action = _repair(store, d, entries, problem)
            rows.append({"blob": d, "kind": kind, "images": images, "problem": problem,
                         "action": action})
        for e in g.entries:
            if e.problem and not any(r["blob"] in e.blobs for r in rows):
                rows.append({"blob": e.digest, "kind": "manifest", "images": e.name or e.digest,
                             "problem": e.problem, "action": "none"})
        # the layer index is a cache: a damaged file is never used (an inspection deletes and
        # rebuilds it); check reports it and --repair removes it
        for diff_id, p in LayerIndex(store.home).damaged():
            action = "none (run with --repair; the next inspection rebuilds it too)"
            if repair:
                with contextlib.suppress(OSError):
                    p.unlink()
                action = "removed (rebuilt from the layer by the next inspection)"
            rows.append({"blob": diff_id, "kind": "layer index file", "images": "",
                         "problem": "damaged", "action": action})
    frame = pd.DataFrame(rows, columns=["blob", "kind", "images", "problem", "action"])
    return CheckReport(frame, len(digests), sum(st.st_size for st in g.on_disk.values()), repair)


def _candidate_sources(store: Store, entries: list[_Entry]) -> list[str]:
    origins = store.origins()
    out: list[str] = []
    for e in entries:
        out += origins.get(e.digest, [])
        if e.name and "/" in e.name and "." in e.name.split("/", 1)[0] or \
                e.name and ":" in e.name.split("/", 1)[0]:
            out.append(f"docker://{e.name}")  # a name with a registry host: it was pulled
    # origins of the other manifests that share the blob (a base image's layers)
    for manifest, sources in origins.items():
        if manifest not in {e.digest for e in entries}:
            out += sources
    seen: list[str] = []
    for s in out:
        if s not in seen:
            seen.append(s)
    return seen


def _fetch_from(store: Store, source: str, digest: str) -> bool:
    """Write blob `digest` from `source` into the store (verified); True when it was there."""
    image = open_image(source)
    if image.manifest.digest == digest:
        store.write_blob(image.manifest.raw, digest)
        return True
    if image.manifest.config.digest == digest:
        store.write_blob(image.config_bytes, digest)
        return True
    for layer in image.layers:
        if layer.digest == digest:
            with layer.open_blob() as f:
                store.write_blob(f, digest)
            return True
    return False


def _repair(store: Store, digest: str, entries: list[_Entry], problem: str) -> str:
    if problem == "damaged":
        with contextlib.suppress(FileNotFoundError):
            store.blob_path(digest).unlink()  # the bad copy goes; write_blob verifies the new one
    if not entries:
        return "removed (no image used it)"
    tried = []
    # A source that is this very store would only find the blob gone: skip store: origins.
    for source in _candidate_sources(store, entries):
        try:
            if _fetch_from(store, source, digest):
                return f"repaired from {source}"
        except NbimagesError as e:
            tried.append(f"{source} ({type(e).__name__})")
            continue
    names = sorted({e.name or e.digest for e in entries})
    with store.locked():
        current = store.index()
        bad = {e.digest for e in entries}
        store.write_index(Index.build([d for d in current.manifests if d.digest not in bad],
                                      annotations=current.annotations or None))
    where = f" (tried {', '.join(tried)})" if tried else " (no source of it is known)"
    return (f"removed image {', '.join(names)}: no source had the blob{where}; pull or build "
            "it again")

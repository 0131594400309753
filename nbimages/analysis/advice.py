"""`inspection.advice()`: what to change to make an image smaller, with the bytes each saves.

Every byte of the layers is claimed by at most one finding, so the `saves` column adds up:

1. copies not in the final filesystem: deleted by a later layer (`deleted-later`: do both in
   one step) or written again by a later layer (`rewritten`: write it once, last);
2. files of the final filesystem, in this order of claim: package manager caches and lists
   (`apt-lists`, `apt-cache`, `pip-cache`, `conda-cache`, `npm-cache`, `yarn-cache`), Debian
   packages installed only as recommendations (`recommends`, from dpkg's status and apt's
   extended_states), documentation (`docs`) and test suites (`tests`) shipped inside packages,
   `.pyc` compiled by a Python the image does not have (`foreign-pyc`), single files larger
   than `huge` (`huge-file`), and the same content at several paths (`duplicates`, by sha256).

A finding names the layer whose bytes it saves and the step (history `created_by`) that wrote
them. Findings of one kind and layer are one row; duplicates and huge files are one row each.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..oci.tarstream import selected, sha256_of
from ..progress import format_bytes as fb
from .codes import DIR, FILE, MASK, SHIFT, SKIPPED, UNSAFE
from .packages import (DPKG_STATUS, database_versions, find_packages, FinalFS,
                       parse_dpkg_status, wanted)
from .table import table

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["kind", "saves", "layer", "step", "files", "change", "paths"]
HUGE = 100 << 20          # a single file this large is data that belongs in a volume
MIN_DUPLICATE = 1024      # smaller duplicates are not worth a finding
HASH_IN_MEMORY = 8 << 20  # files up to this size are hashed from memory, larger ones streamed
EXAMPLES = 5              # paths listed per finding
APT_STATES = "var/lib/apt/extended_states"
_SITE = r"(?:^|/)(?:site|dist)-packages/"
_CACHES = [  # kind, pattern on the relative path, the change to make
    ("apt-lists", re.compile(r"^var/lib/apt/lists/"),
     "update and install in one RUN and end it with `rm -rf /var/lib/apt/lists/*`"),
    ("apt-cache", re.compile(r"^var/cache/apt/"),
     "end the RUN that installs with `apt-get clean` (the .deb files and apt's package cache "
     "are not needed once installed)"),
    ("pip-cache", re.compile(r"(?:^|/)\.cache/pip/"),
     "`pip install --no-cache-dir` (or ENV PIP_NO_CACHE_DIR=1)"),
    ("conda-cache", re.compile(r"(?:^|/)(?:conda|miniconda3?|anaconda3?|miniforge3|mambaforge)"
                               r"/pkgs/"),
     "end the RUN that installs with `conda clean -afy`"),
    ("npm-cache", re.compile(r"(?:^|/)\.npm/"),
     "end the RUN that installs with `npm cache clean --force`"),
    ("yarn-cache", re.compile(r"(?:^|/)\.cache/yarn/|(?:^|/)\.yarn-cache/"),
     "end the RUN that installs with `yarn cache clean`"),
]
_DOCS = re.compile(r"^usr/share/(?:doc|man|info|gtk-doc|help)/|" + _SITE + r"[^/]+/(?:docs?|examples?)/")
_TESTS = re.compile(_SITE + r"(?:[^/]+/)+?(?:tests?|testing/tests)/|"
                    r"(?:^|/)node_modules/(?:@[^/]+/)?[^/]+/(?:tests?|__tests__)/")
_PYC = re.compile(r"/__pycache__/[^/]+\.(?:cpython|pypy)-?(\d)(\d+)[^/]*\.pyc$")
_PYTHON_BIN = re.compile(r"(?:^|/)bin/python(\d)\.(\d+)$")
_BOOKKEEPING = re.compile(r"var/lib/dpkg/|var/cache/debconf/|var/lib/apt/|var/log/|"
                          r"var/cache/ldconfig/|lib/apk/db/|etc/ld\.so\.cache$")
_SITE_DIR = re.compile(r"(.*?((?:site|dist)-packages))/")
_PACKAGE_OF = re.compile(_SITE + r"([^/]+)/|^usr/share/doc/([^/]+)/")


@dataclass
class Finding:
    """One change to make: its kind, the bytes it saves, the layer and step it concerns."""

    kind: str
    layer: int
    change: str
    saves: int = 0
    files: int = 0
    step: str = ""
    sized: list[tuple[int, str]] = field(default_factory=list)  # (bytes, path) of the files

    def add(self, path: str, size: int) -> None:
        self.saves += size
        self.files += 1
        self.sized.append((size, path))

    def row(self) -> dict[str, Any]:
        top = sorted(self.sized, key=lambda sp: (-sp[0], sp[1]))[:EXAMPLES]
        return {"kind": self.kind, "saves": self.saves, "layer": self.layer, "step": self.step,
                "files": self.files, "change": self.change,
                "paths": ["/" + p for _, p in top]}


def advice(inspection: Any, *, huge: int = HUGE, min_duplicate: int = MIN_DUPLICATE
           ) -> pd.DataFrame:
    """`Inspection.advice()`: the findings as a DataFrame, the largest saving first."""
    return to_frame(findings(inspection, huge=huge, min_duplicate=min_duplicate))


def to_frame(found: Iterable[Finding]) -> pd.DataFrame:
    rows = [f.row() for f in found]
    cols = {c: [r[c] for r in rows] for c in COLUMNS}
    frame = table(cols)
    for c in ("saves", "layer", "files"):
        frame[c] = frame[c].astype("int64")
    return frame


def findings(inspection: Any, *, huge: int = HUGE, min_duplicate: int = MIN_DUPLICATE
             ) -> list[Finding]:
    """Every finding of the image, ranked by the bytes it saves."""
    walk = inspection._ensure()  # noqa: SLF001 - the walk is the analysis package's own
    hist = inspection.image.layer_history()
    steps = [" ".join((h.created_by if h else "").split()) for h in hist]
    out: list[Finding] = []
    out += _lost_copies(walk, steps)
    final = walk.tree.values
    claimed: set[str] = set()
    files = {p: c for p, c in final.items() if _kind(walk, c) == FILE and _size(walk, c) > 0}
    out += _by_pattern(walk, files, claimed, steps)
    out += _recommends(inspection, walk, files, claimed, steps)
    out += _patterned(walk, files, claimed, steps, "docs", _DOCS,
                      "delete documentation in the step that installs it: for apt, a dpkg "
                      "`path-exclude=/usr/share/doc/*` (and man, info) in /etc/dpkg/dpkg.cfg.d/ "
                      "before installing, or `rm -rf /usr/share/doc/* /usr/share/man/*` at the end "
                      "of that RUN; for an image already built, nbimages.slim(remove=[...])")
    out += _patterned(walk, files, claimed, steps, "tests", _TESTS,
                      "delete the packages' test suites in the step that installs them "
                      "(`find {site} -depth -type d -name tests -exec rm -rf {{}} +`), or "
                      "nbimages.slim(remove=['**/{packages}/*/**/tests/**'])")
    out += _foreign_pyc(walk, files, claimed, steps)
    out += _huge(walk, files, claimed, steps, huge)
    out += _duplicates(inspection, walk, files, claimed, steps, min_duplicate)
    for f in out:
        f.step = f.step or (steps[f.layer] if 0 <= f.layer < len(steps) else "")
    out = [f for f in out if f.saves > 0]
    out.sort(key=lambda f: (-f.saves, f.layer, f.kind))
    return out


# ------------------------------------------------------------------ helpers over the walk

def _kind(walk, code: int) -> int:
    return walk.layers[code >> SHIFT].kinds[code & MASK]


def _size(walk, code: int) -> int:
    return walk.layers[code >> SHIFT].sizes[code & MASK]


def _step(steps: list[str], layer: int) -> str:
    text = steps[layer] if 0 <= layer < len(steps) else ""
    return f"layer {layer} (`{text[:80]}`)" if text else f"layer {layer}"


# ------------------------------------------------------------------ copies that are lost

def _lost_copies(walk, steps: list[str]) -> list[Finding]:
    """Copies deleted by a later layer, and copies written again by a later layer."""
    layers = walk.layers
    final = walk.tree.values
    deleted_by: dict[int, int] = {}
    for j, lf in enumerate(layers):
        for c in lf.deleted:
            deleted_by[c] = j
    groups: dict[tuple[str, int, int], Finding] = {}
    for i, lf in enumerate(layers):
        base = i << SHIFT
        for idx, p in enumerate(lf.paths):
            ch = lf.changes[idx]
            if ch == UNSAFE or ch == SKIPPED or lf.kinds[idx] == DIR or not lf.sizes[idx]:
                continue
            code = base | idx
            if final.get(p) == code:
                continue
            if code in deleted_by:
                kind, later = "deleted-later", deleted_by[code]
            else:
                kind, later = "rewritten", (final[p] >> SHIFT) if p in final else i
            books = kind == "rewritten" and bool(_BOOKKEEPING.match(p))
            f = groups.get((kind, i, later, books))
            if f is None:
                if kind == "deleted-later":
                    change = (f"delete these files in the step that creates them, "
                              f"{_step(steps, i)}, not in a later one, {_step(steps, later)}: "
                              "a later deletion hides them but the layer below still carries "
                              "them (do both in one RUN, or use a multi-stage build)")
                elif books:
                    change = (f"merge the package installs of {_step(steps, i)} and "
                              f"{_step(steps, later)} into one step: every install writes the "
                              "package manager's databases again")
                else:
                    change = (f"write these files once, in the last step that needs them, "
                              f"{_step(steps, later)}, and not in {_step(steps, i)}: the "
                              "earlier copy stays in the image though nothing can see it")
                f = groups[(kind, i, later, books)] = Finding(kind, i, change)
            f.add(p, lf.sizes[idx])
    return list(groups.values())


# ------------------------------------------------------------------ final files by pattern

def _claim(walk, files: dict[str, int], claimed: set[str], groups: dict, key, path: str,
           make) -> None:
    code = files[path]
    f = groups.get(key)
    if f is None:
        f = groups[key] = make()
    f.add(path, _size(walk, code))
    claimed.add(path)


def _by_pattern(walk, files, claimed, steps) -> list[Finding]:
    groups: dict[tuple[str, int], Finding] = {}
    for p in sorted(files):
        for kind, pattern, change in _CACHES:
            if pattern.search(p):
                layer = files[p] >> SHIFT
                _claim(walk, files, claimed, groups, (kind, layer), p,
                       lambda k=kind, c=change, l=layer: Finding(k, l, f"{c}, in {_step(steps, l)}"))
                break
    return list(groups.values())


def _patterned(walk, files, claimed, steps, kind: str, pattern: re.Pattern, change: str
               ) -> list[Finding]:
    groups: dict[int, Finding] = {}
    owners: dict[int, set[str]] = defaultdict(set)
    for p in sorted(files):
        if p in claimed or not pattern.search(p):
            continue
        layer = files[p] >> SHIFT
        m = _PACKAGE_OF.search(p)
        if m:
            owners[layer].add(m.group(1) or m.group(2))
        _claim(walk, files, claimed, groups, layer, p, lambda l=layer: Finding(kind, l, change))
    for layer, f in groups.items():
        site = _SITE_DIR.match(max(f.sized)[1])
        f.change = f.change.format(site="/" + site.group(1) if site else "DIR",
                                   packages=site.group(2) if site else "site-packages")
        names = sorted(owners[layer])
        if names:
            more = f" and {len(names) - 8} more" if len(names) > 8 else ""
            f.change = f"{f.change} ({', '.join(names[:8])}{more})"
    return list(groups.values())


def _foreign_pyc(walk, files, claimed, steps) -> list[Finding]:
    have = set()
    for p, c in walk.tree.values.items():
        m = _PYTHON_BIN.search(p)
        if m and _kind(walk, c) != DIR:
            have.add(f"{m.group(1)}.{m.group(2)}")
    groups: dict[int, Finding] = {}
    versions: dict[int, set[str]] = defaultdict(set)
    for p in sorted(files):
        m = _PYC.search("/" + p)
        if p in claimed or not m:
            continue
        version = f"{m.group(1)}.{m.group(2)}"
        if version in have:
            continue
        layer = files[p] >> SHIFT
        versions[layer].add(version)
        _claim(walk, files, claimed, groups, layer, p, lambda l=layer: Finding("foreign-pyc", l, ""))
    runs = f"it has Python {', '.join(sorted(have))}" if have else "it has no Python"
    for layer, f in groups.items():
        f.change = (f"these .pyc were compiled by Python {', '.join(sorted(versions[layer]))} and "
                    f"this image never reads them ({runs}): do not copy __pycache__ into the "
                    f"image (add `__pycache__/` to .dockerignore), in {_step(steps, layer)}")
    return list(groups.values())


def _huge(walk, files, claimed, steps, huge: int) -> list[Finding]:
    out = []
    for p in sorted(files):
        size = _size(walk, files[p])
        if p in claimed or size < huge:
            continue
        layer = files[p] >> SHIFT
        f = Finding("huge-file", layer,
                    f"/{p} is one file of {fb(size)}, data rather than software: mount it as a "
                    f"volume or fetch it when the container starts, instead of {_step(steps, layer)}"
                    "; every push, pull and rebuild of the layers above carries it")
        f.add(p, size)
        claimed.add(p)
        out.append(f)
    return out


# ------------------------------------------------------------------ recommends

def _dependency_names(value: str) -> list[list[str]]:
    """'a (>= 1) | b:any, c' -> [['a', 'b'], ['c']]."""
    out = []
    for group in value.split(","):
        alts = [re.split(r"[\s(:\[]", a.strip(), maxsplit=1)[0] for a in group.split("|")]
        alts = [a for a in alts if a]
        if alts:
            out.append(alts)
    return out


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def recommended_only(status: str, states: str) -> list[str]:
    """Installed packages that nothing needs: auto-installed (apt's extended_states) and not
    reached by Depends/Pre-Depends from a package installed by hand or essential."""
    recs = {r.name: _fields(r.text) for r in parse_dpkg_status(status)}
    auto = set()
    for para in re.split(r"\n\s*\n", states):
        f = _fields(para)
        if f.get("Auto-Installed") == "1" and f.get("Package"):
            auto.add(f["Package"])
    providers: dict[str, list[str]] = defaultdict(list)
    for name, f in recs.items():
        providers[name].append(name)
        for group in _dependency_names(f.get("Provides", "")):
            providers[group[0]].append(name)
    needed: set[str] = set()
    todo = [n for n, f in recs.items() if n not in auto or f.get("Essential") == "yes"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        f = recs[name]
        for group in _dependency_names(f.get("Pre-Depends", "") + "," + f.get("Depends", "")):
            for alt in group:
                todo += [p for p in providers.get(alt, []) if p not in needed]
    return sorted(set(recs) - needed)


def _recommends(inspection, walk, files, claimed, steps) -> list[Finding]:
    final = walk.tree.values
    if DPKG_STATUS not in final or APT_STATES not in final:
        return []
    texts: dict[str, str] = {}
    entries = []
    for layer, entry in inspection.read_files(lambda p: wanted(p) or p == APT_STATES):
        if entry.path in (DPKG_STATUS, APT_STATES) and entry.data is not None \
                and final.get(entry.path, -1) >> SHIFT == layer:
            texts[entry.path] = entry.data.decode("utf-8", "replace")
        entries.append((layer, entry))
    spare = set(recommended_only(texts.get(DPKG_STATUS, ""), texts.get(APT_STATES, "")))
    if not spare:
        return []
    fs = FinalFS.from_frame(inspection.files(final=True))
    groups: dict[int, Finding] = {}
    names: dict[int, set[str]] = defaultdict(set)
    for pkg in find_packages(database_versions(entries), fs):
        if pkg.type != "deb" or pkg.name not in spare:
            continue
        for listed in pkg.paths:
            real = fs.resolve(listed)
            p = real.lstrip("/") if real else None
            if p is None or p not in files or p in claimed:
                continue
            layer = files[p] >> SHIFT
            names[layer].add(pkg.name)
            _claim(walk, files, claimed, groups, layer, p,
                   lambda l=layer: Finding("recommends", l, ""))
    for layer, f in groups.items():
        listed = sorted(names[layer])
        more = f" and {len(listed) - 10} more" if len(listed) > 10 else ""
        f.change = (f"`apt-get install --no-install-recommends` in {_step(steps, layer)}: "
                    f"{len(listed)} packages came only as recommendations "
                    f"({', '.join(listed[:10])}{more}); install by name those you need "
                    "(this counts the files the packages own; what their install scripts "
                    "generate goes too)")
    return list(groups.values())


# ------------------------------------------------------------------ duplicates

def _duplicates(inspection, walk, files, claimed, steps, min_size: int) -> list[Finding]:
    by_size: dict[int, list[str]] = defaultdict(list)
    for p, c in files.items():  # a package manager's own records are not the user's to link
        if p not in claimed and _size(walk, c) >= min_size and not _BOOKKEEPING.match(p):
            by_size[_size(walk, c)].append(p)
    wanted_paths = {p for group in by_size.values() if len(group) > 1 for p in group}
    if not wanted_paths:
        return []
    digests: dict[str, str] = {}
    big: set[str] = set()
    # small files through the walk's fast reader (bytes in memory, one file at a time) ...
    for i, entry in inspection.read_files(wanted_paths.__contains__, max_size=HASH_IN_MEMORY):
        if files[entry.path] >> SHIFT == i:  # the final copy (a later entry of a path wins)
            if entry.data is None:
                big.add(entry.path)
            else:
                digests[entry.path] = hashlib.sha256(entry.data).hexdigest()
    # ... larger ones streamed
    for i, lf in enumerate(walk.layers):
        mine = {p for p in big if files[p] >> SHIFT == i}
        if not mine:
            continue
        with inspection.image.layer_tar(i) as stream:
            for path, _n, _info, reader in selected(stream, occurrences(
                    lf, (files[p] & MASK for p in mine))):
                if reader is not None:
                    digests[path] = sha256_of(reader)
    groups: dict[str, list[str]] = defaultdict(list)
    for p, d in digests.items():
        groups[d].append(p)
    out = []
    for paths in groups.values():
        if len(paths) < 2:
            continue
        paths.sort(key=lambda p: (files[p] >> SHIFT, p))  # the first copy stays
        keep, extra = paths[0], paths[1:]
        layer = max(files[p] >> SHIFT for p in extra)
        size = _size(walk, files[keep])
        f = Finding("duplicates", layer,
                    f"the same {fb(size)} is at {len(paths)} paths (/{keep} and "
                    f"{', '.join('/' + p for p in extra[:3])}{' ...' if len(extra) > 3 else ''}): "
                    f"keep one and make the others links (`ln`), in {_step(steps, layer)}")
        for p in extra:
            f.add(p, size)
            claimed.add(p)
        out.append(f)
    return out


def occurrences(lf, indexes: Iterable[int]) -> dict[str, dict[int, int]]:
    """path -> {occurrence: entry index} for entries `indexes` of one walked layer, the
    occurrence counting the entries of the same path before it (0 unless the tar holds the
    path twice): how `tarstream.selected` finds them again."""
    wanted = set(indexes)
    if not wanted:
        return {}
    paths = lf.paths
    chosen = {paths[i] for i in wanted}
    out: dict[str, dict[int, int]] = {p: {} for p in chosen}
    seen: dict[str, int] = {}
    for j in range(max(wanted) + 1):
        p = paths[j]
        if p in chosen:
            n = seen.get(p, 0)
            seen[p] = n + 1
            if j in wanted:
                out[p][n] = j
    return out

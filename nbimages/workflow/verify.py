"""Verify a handout: rebuild it in a clean store and say whether its digest matches.

    v = verify("analysis.ipynb", "sha256:…")      # `nbimages verify analysis.ipynb --digest …`
    v.ok, v.matched                               # True, "manifest digest" / "image ID"
    v                                             # on a mismatch: which layer, which files

The rebuild runs with a temporary NBIMAGES_HOME, so no cached layer can hide a difference.
The digest may be the manifest digest or the image ID (the config digest, which does not
depend on the compressor). On a mismatch the rebuilt layers are compared with the expected
image's, when it can be found (given as `expected=`, or in the local store by digest), or
else with the diff_ids per step recorded in the notebook's metadata; the files of a layer
that differs are compared when the expected layer's blob is at hand.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import html
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import datetime as _dt
from ..builder.recipe import Recipe
from ..builder.steps import cell_name
from ..errors import BuildError, NbimagesError
from ..image import Layer
from ..oci import digest as dg, mediatypes as mt
from ..oci.compressor import COMPRESSOR_ANNOTATION
from ..oci.descriptor import Descriptor
from ..oci.manifest import Index
from ..sources import open_image
from ..store import Store, existing_store
from .notebook_recipe import build_notebook, find_record
from .session import current

__all__ = ["verify", "Verification", "LayerDifference", "layer_files", "compare_files"]


@dataclass
class LayerDifference:
    """One layer whose diff_id differs between the expected and the rebuilt image."""

    index: int                       # 0-based position in the image (base layers first)
    count: int                       # layers in the rebuilt image
    expected: str | None             # diff_ids
    rebuilt: str | None
    step: int | None = None          # the recipe step that made it (None: a base layer)
    instruction: str | None = None
    cell: Any = None                 # the notebook cell (or execution count) of the step
    cell_text: str | None = None
    files: list[dict[str, str]] | None = None   # None: the expected layer's files unknown
    note: str = ""

    def title(self) -> str:
        where = f"layer {self.index + 1} of {self.count}"
        if self.step is None:
            what = "a base image layer" if self.instruction is None else self.instruction
            return f"{where} ({what})"
        origin = ""
        if self.cell is not None:
            text = f" ({self.cell_text!r})" if self.cell_text else ""
            origin = f", from {cell_name(self.cell)}{text}"
        return f"{where}: step {self.step} `{_short_instr(self.instruction)}`{origin}"


def _short_instr(text: str | None, n: int = 70) -> str:
    text = (text or "").split(" # sha256:")[0]
    return text if len(text) <= n else text[:n - 1] + "…"


@dataclass
class Verification:
    """The answer of verify(): does the rebuilt image have the digest, and if not, why."""

    source: str
    digest: str
    rebuilt_digest: str
    rebuilt_id: str
    matched: str | None = None         # "manifest digest" or "image ID"
    compared_with: str | None = None   # where the expected layers came from
    layers: list[LayerDifference] = field(default_factory=list)
    config: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    record: str | None = None          # where the expected digest was read (the lock file, ...)

    @property
    def ok(self) -> bool:
        return self.matched is not None

    def __bool__(self) -> bool:
        return self.ok

    def files(self):
        """The files that differ, one row per path and layer (a DataFrame)."""
        import pandas as pd
        rows = [{"layer": d.index + 1, "step": d.step, "cell": d.cell, **f}
                for d in self.layers for f in d.files or []]
        return pd.DataFrame(rows, columns=["layer", "step", "cell", "path", "change", "detail"])

    def lines(self) -> list[str]:
        if self.ok:
            out = [f"verified: {self.source} rebuilt in a clean store has {self.matched} "
                   f"{self.digest}"]
            if self.record:
                out.append(f"  (the digest recorded in {self.record})")
            out += [f"  {n}" for n in self.notes]
            return out
        out = [f"MISMATCH: {self.source} rebuilt in a clean store is not {self.digest}"
               + (f" (recorded in {self.record})" if self.record else ""),
               f"  rebuilt: manifest digest {self.rebuilt_digest}",
               f"           image ID        {self.rebuilt_id}"]
        for d in self.layers:
            out.append(f"  {d.title()} differs")
            out.append(f"    diff_id expected {d.expected or '(no such layer)'}")
            out.append(f"            rebuilt  {d.rebuilt or '(no such layer)'}")
            if d.files:
                for f in d.files[:20]:
                    out.append(f"    {f['change']:<9} {f['path']}" +
                               (f"  ({f['detail']})" if f.get("detail") else ""))
                if len(d.files) > 20:
                    out.append(f"    … and {len(d.files) - 20} more paths")
            if d.note:
                out.append(f"    {d.note}")
        if self.config:
            out.append("  the config differs in: " + ", ".join(self.config))
        if self.compared_with:
            out.append(f"  compared with {self.compared_with}")
        out += [f"  {n}" for n in self.notes]
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        head, *rest = self.lines()
        return (f"<p style='color:{colour}'><b>{html.escape(head)}</b></p>"
                f"<pre>{html.escape(chr(10).join(rest))}</pre>")


# ---- the entry point

def verify(source: Any = None, digest: str | None = None, *, expected: Any = None
           ) -> Verification:
    """Rebuild `source` in a clean store and compare with `digest` (manifest digest or image ID).

    `source`: a notebook path (`.ipynb`), a Recipe, or None for the notebook's current recipe
    (the kernel's session). `digest` defaults to the one recorded in the notebook's metadata,
    or to the session's last build. `expected`: the expected image (an Image or any source
    string: a tar, an OCI layout, a store name) to compare layers and files with.
    """

    notebook: Path | None = None
    recipe = None
    record = None
    found = None
    if source is None:
        s = current()
        recipe = s.recipe
        if digest is None and s.last_image is not None:
            digest = (s.last_image.index or s.last_image).digest  # a multi-platform: its index
        label = "this notebook's recipe"
    elif isinstance(source, Recipe):
        recipe = source
        label = f"the recipe from {source.base}"
    elif isinstance(source, (str, os.PathLike)) and str(source).endswith(".ipynb"):
        notebook = Path(source).expanduser().resolve()
        found = find_record(notebook)
        record = found.record
        if digest is None and record:
            digest = record.get("digest")
        label = notebook.name
    else:
        raise BuildError(f"verify needs a notebook (.ipynb file) or a Recipe, not {source!r}.")
    if digest is None:
        why = found.why_none if found else "there is no recorded build to take it from."
        raise BuildError(f"verify {label}: which digest? Give it (--digest sha256:…); {why}")
    digest = _digest(digest)

    user_store = existing_store()
    expected_image, compared_with = _expected(expected, digest, user_store)
    if record and digest not in (record.get("digest"), record.get("image_id")):
        record = None  # the notebook records another build: no use for this digest

    with _clean_store() as clean:
        try:
            if notebook is not None:
                rebuilt = build_notebook(notebook, record=False, store=clean)
            else:
                fresh = copy.copy(recipe)
                fresh._base_image = None  # open the base again, as a stranger would
                fresh._bases = {}
                fresh.report = None
                rebuilt = fresh.build(None, store=clean)
        except NbimagesError as e:
            raise type(e)(f"verify {label}: the rebuild in a clean store failed: {e} (the "
                          "clean store starts empty: the base must come from a registry, a "
                          "file or the engine, not from the local store).") from None
        v = Verification(label, digest, rebuilt.digest, rebuilt.id)
        if found is not None and found.record is not None:
            v.record = found.source if digest == found.record.get("digest") or \
                digest == found.record.get("image_id") else None
            v.notes += found.notes
        if rebuilt.index is not None:
            noted = len(v.notes)
            _check_platforms(v, rebuilt.index, user_store)
            if v.matched or len(v.notes) > noted:
                return v
        if digest == rebuilt.digest:
            v.matched = "manifest digest"
        elif digest == rebuilt.id:
            v.matched = "image ID"
            v.notes.append(f"(its manifest digest here is {rebuilt.digest})")
        else:
            _explain(v, rebuilt, expected_image, compared_with, record, user_store)
    return v


def _check_platforms(v: Verification, index, user_store) -> None:
    """A multi-platform image: the index digest, then every platform's manifest digest (the
    expected ones from the index of that digest in the user's store, when it is there)."""
    rebuilt = {str(i.platform): i.digest for i in index.images}
    if v.digest == index.digest:
        v.matched = "index digest"
        v.notes += [f"{p}: manifest digest {d}" for p, d in rebuilt.items()]
        return
    expected: dict[str, str] = {}
    with contextlib.suppress(NbimagesError, OSError, ValueError):
        if user_store is not None and user_store.has_blob(v.digest):
            expected = {str(d.platform): d.digest for d in
                        Index.parse(user_store.read_blob(v.digest)).manifests if d.platform}
    if not expected:
        return
    v.rebuilt_digest = index.digest
    for p in sorted(set(expected) | set(rebuilt)):
        want, got = expected.get(p), rebuilt.get(p)
        state = "same" if want == got else "DIFFERS"
        v.notes.append(f"{p}: {state} (expected {want or '(no such platform)'}, rebuilt "
                       f"{got or '(no such platform)'})")


def _digest(text: Any) -> str:
    text = str(text).strip()
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        text = "sha256:" + text
    if not dg.is_digest(text):
        raise BuildError(f"{text!r} is not a digest: give the image's manifest digest or image "
                         "ID in full, as sha256: followed by 64 hex digits.")
    return text


@contextlib.contextmanager
def _clean_store() -> Iterator[Store]:
    """A temporary, empty store for the rebuild (its layers, build cache and wheels), passed
    to the build explicitly: the user's store and the process environment are left alone."""
    tmp = Path(tempfile.mkdtemp(prefix="nbimages-verify-"))
    try:
        yield Store(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _expected(expected: Any, digest: str, store) -> tuple[Any, str | None]:
    """The expected image: given, or found in the local store by manifest digest / image ID."""
    if expected is not None:
        image = open_image(expected)
        where = f"the expected image {getattr(image, 'source', '') or expected}"
        if digest not in (image.digest, image.id):
            where += f" (whose digest is {image.digest}, not {digest})"
        return image, where
    if store is None:
        return None, None
    with contextlib.suppress(NbimagesError, OSError, ValueError):
        if store.has_blob(digest):
            image = store.get(digest)
            if image.digest == digest:
                return image, f"the image {dg.short(digest)} in the local store"
    for name, desc in sorted(store.names().items()):
        with contextlib.suppress(NbimagesError, OSError, ValueError):
            image = store.image(desc)
            if digest in (image.digest, image.id):
                return image, f"the image {name} ({dg.short(image.digest)}) in the local store"
    return None, None


# ---- explaining a mismatch

def _explain(v: Verification, rebuilt, expected, compared_with, record, store) -> None:
    rows = [r for r in (rebuilt.build_report or []) if r.get("diff_id")]
    ours = rebuilt.diff_ids
    base = len(ours) - len(rows)
    build = rebuilt.notebook_build
    first_lines = {c.origin: c.first_line for c in (build.calls if build is not None else [])}

    def describe(d: LayerDifference) -> None:
        if d.index >= base and d.index - base < len(rows):
            r = rows[d.index - base]
            d.step, d.instruction, d.cell = r["step"], r["instruction"], r.get("origin")
            d.cell_text = first_lines.get(d.cell)
        elif d.index >= len(ours) and record:
            steps = [s for s in record.get("steps") or [] if s.get("diff_id")]
            k = d.index - int(record.get("base_layers") or 0)
            if 0 <= k < len(steps):
                d.instruction = f"expected step {steps[k]['step']}: " + \
                    _short_instr(steps[k]["instruction"])

    if expected is not None:
        v.compared_with = compared_with
        _epoch_note(v, expected.config, rebuilt.config)
        for i, a, b in _differing(expected.diff_ids, ours):
            d = LayerDifference(i, len(ours), a, b)
            describe(d)
            if a is not None and b is not None:
                d.files = _files_or_note(d, expected.layers[i], rebuilt.layers[i])
            v.layers.append(d)
        if not v.layers:
            v.config = _config_differences(expected.config, rebuilt.config)
            if not v.config and expected.id == rebuilt.id:
                theirs_c = expected.manifest.annotations.get(COMPRESSOR_ANNOTATION)
                ours_c = rebuilt.manifest.annotations.get(COMPRESSOR_ANNOTATION)
                v.notes.append(f"same image ID {rebuilt.id}: the files and config are identical, "
                               f"only the compressed layers differ (compressor {theirs_c!r} "
                               f"then, {ours_c!r} now); verify with the image ID instead.")
        return

    if record:
        v.compared_with = "the layers recorded in the notebook's metadata (metadata.nbimages)"
        recorded = {s["diff_id"]: s for s in record.get("steps") or [] if s.get("diff_id")}
        for i, a, b in _differing(list(record.get("diff_ids") or []), ours):
            d = LayerDifference(i, len(ours), a, b)
            describe(d)
            layer_rec = recorded.get(a) if a else None
            if a and b and layer_rec and store is not None and store.has_blob(layer_rec["layer"]):
                d.files = _files_or_note(d, _stored_layer(store, layer_rec), rebuilt.layers[i])
            elif a and b:
                d.note = ("the expected layer is not in the local store, so its files cannot be "
                          "compared; give the expected image (--expected SOURCE) to see them.")
            v.layers.append(d)
        if not v.layers:
            then = [s.get("instruction") for s in record.get("steps") or []]
            now = [r["instruction"] for r in rebuilt.build_report or []]
            changed = [f"step {i + 1}: `{_short_instr(b)}` (was `{_short_instr(a)}`)"
                       for i, (a, b) in enumerate(zip(then, now)) if a != b]
            if len(then) != len(now):
                changed.append(f"{len(now)} steps now, {len(then)} then")
            v.config = changed or ["the config (the layers are identical)"]
        return

    v.notes.append("no copy of the expected image and no record of its layers were found, so "
                   "the difference cannot be located: give the expected image (--expected "
                   "SOURCE, e.g. the handout's OCI tar).")


def image_epoch(config: dict) -> int | None:
    """The SOURCE_DATE_EPOCH an nbimages build used, read back from its config's `created`."""
    try:
        when = _dt.datetime.strptime(str(config.get("created")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return int(when.replace(tzinfo=_dt.timezone.utc).timestamp())


def _epoch_note(v: Verification, expected: dict, rebuilt: dict) -> None:
    """Builds at different SOURCE_DATE_EPOCHs differ in every mtime: say so, and what to set."""
    theirs, ours = image_epoch(expected), image_epoch(rebuilt)
    if theirs is not None and ours is not None and theirs != ours:
        v.notes.append(f"the expected image was built with SOURCE_DATE_EPOCH={theirs} "
                       f"(created {expected.get('created')}), this rebuild with {ours}: every "
                       f"file's mtime differs. Run again with SOURCE_DATE_EPOCH={theirs} set.")


def _stored_layer(store, rec: dict):
    desc = Descriptor(rec.get("media_type") or mt.OCI_LAYER_GZIP, rec["layer"],
                      int(rec.get("size") or store.blob_path(rec["layer"]).stat().st_size))
    return Layer(desc, rec["diff_id"], lambda d=rec["layer"]: store.open_blob(d))


def _differing(theirs: list[str], ours: list[str]):
    """(index, expected diff_id, rebuilt diff_id) for each layer position that differs;
    None stands for a layer one side does not have."""
    for i in range(max(len(ours), len(theirs))):
        a = theirs[i] if i < len(theirs) else None
        b = ours[i] if i < len(ours) else None
        if a != b:
            yield i, a, b


def _files_or_note(d: LayerDifference, expected_layer, rebuilt_layer):
    try:
        return compare_files(layer_files(expected_layer), layer_files(rebuilt_layer))
    except (NbimagesError, OSError, tarfile.TarError, ValueError) as e:
        d.note = f"the files could not be compared ({e.__class__.__name__}: {e})."
        return None


def _config_differences(a: dict, b: dict) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key in ("rootfs",):
            continue
        if key == "config":
            ca, cb = a.get("config") or {}, b.get("config") or {}
            out += [f"config.{k}" for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]
        elif a.get(key) != b.get(key):
            out.append(key)
    return out


# ---- files of a layer

def layer_files(layer) -> dict[str, tuple]:
    """Each path of a layer tar -> (type, mode, uid, gid, size, link, sha256, mtime), streamed."""
    out: dict[str, tuple] = {}
    with layer.open_tar() as raw, tarfile.open(fileobj=raw, mode="r|") as tf:
        for m in tf:
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            name = "/" + name.strip("/")
            sha = None
            if m.isreg():
                h = hashlib.sha256()
                f = tf.extractfile(m)
                if f is not None:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                sha = h.hexdigest()
            kind = "file" if m.isreg() else "dir" if m.isdir() else "symlink" if m.issym() \
                else "hardlink" if m.islnk() else "other"
            out[name] = (kind, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0,
                         m.linkname or "", sha, int(m.mtime))
    return out


_FIELDS = ("type", "mode", "uid", "gid", "size", "link target", "content", "mtime")


def compare_files(expected: dict[str, tuple], rebuilt: dict[str, tuple]) -> list[dict[str, str]]:
    """Paths added, removed or modified from the expected layer to the rebuilt one."""
    out = []
    for path in sorted(set(expected) | set(rebuilt)):
        a, b = expected.get(path), rebuilt.get(path)
        if a == b:
            continue
        if a is None:
            out.append({"path": path, "change": "added", "detail": b[0]})
        elif b is None:
            out.append({"path": path, "change": "removed", "detail": a[0]})
        else:
            what = []
            for name, x, y in zip(_FIELDS, a, b):
                if x == y:
                    continue
                if name == "mode":
                    what.append(f"mode {x:o} -> {y:o}")
                elif name in ("size", "uid", "gid", "type", "mtime"):
                    what.append(f"{name} {x} -> {y}")
                else:
                    what.append(name)
            out.append({"path": path, "change": "modified", "detail": ", ".join(what)})
    return out

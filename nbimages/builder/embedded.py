"""The embedded builder: a recipe -> layers, config and manifest in the store, no daemon.

Reproducible by construction: every layer is a deterministic tar (oci.tarwriter) compressed
by one pinned compressor (oci.compressor), JSON is canonical, dates come from
SOURCE_DATE_EPOCH (else 1970-01-01), `created_by` names the step, never the tool version.

Cache keys say exactly what a layer's bytes depend on:
- file, copy and remove steps: the full list of entries as they will be written (paths after
  following lower symlinks, modes and owners, parent directories' inherited metadata, and the
  sha256 of every file's content), the epoch and the compressor. Equal keys mean equal bytes,
  so a layer is reused even when an unrelated earlier step changed;
- pip steps: the ChainID of the layers below (the packages depend on the image's Python),
  the requirements and options, the epoch and the compressor.

Nothing reaches the store until every step has succeeded: new layer blobs are written to the
store's tmp area and renamed into place at the end, with the config, manifest, cache entries
and tag, so a failed build leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import datetime as _dt
import hashlib
import html
import os
import posixpath
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..analysis.layerindex import index_written_layer
from ..errors import BuildError
from ..image import Image, Layer, trust
from ..oci import canonical, compressor as cz, digest as dg, mediatypes as mt
from ..oci.descriptor import Descriptor, Platform, check_platform
from ..oci.manifest import Manifest
from ..progress import format_bytes
from ..oci.tarwriter import DIR, FILE, Entry, LayerTree, iter_tar, normalize_path, source_date_epoch
from ..sources import open_image
from ..store import default_store
from .apk import APK_LABEL, apk_layer
from .apt import APT_LABEL, apt_layer
from .cache import BuildCache
from .context import Context, file_digest
from .lower import LowerView, chain_id, view_of_layers
from .pip import install_layer_tree
from .steps import CONFIG_KINDS, EMBEDDED_KINDS, Step, cell_name

PIP_LABEL = "org.nbimages.pip"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"
_KEY_VERSION = "nbimages-layer-1"

# Docker layer media types have OCI twins with the same bytes (image-spec media-types.md).
_TO_OCI = {mt.DOCKER_LAYER: mt.OCI_LAYER, mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
           mt.DOCKER_LAYER_ZSTD: mt.OCI_LAYER_ZSTD,
           mt.DOCKER_LAYER_FOREIGN_GZIP: mt.OCI_LAYER_ND_GZIP}


def rfc3339(epoch: int) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the build report

class BuildReport(list):
    """One row per step: what it made, from the cache or rebuilt, in how long (a DataFrame-able list)."""

    # `size` in a row is the layer blob's (compressed) size; the tables say so.
    COLUMNS = ("step", "origin", "instruction", "layer", "compressed_size", "cache", "seconds")

    def __init__(self, *rows):
        super().__init__(*rows)
        self.notes: list[str] = []  # what a step did not do (apt: maintainer scripts not run)

    def to_frame(self):
        import pandas as pd
        frame = pd.DataFrame(list(self), columns=["step", "origin", "instruction", "layer", "size",
                                                  "cache", "seconds", "kind", "key", "diff_id"])
        frame["size"] = frame["size"].astype("Int64")
        return frame.rename(columns={"size": "compressed_size"})

    def _repr_html_(self) -> str:
        """For people: the cell as `In [n]`, a 12-digit layer digest (the whole one on hover,
        and selected whole by a copy), sizes in kB/MB, the instruction without its content
        hash (on hover too)."""
        head = "".join(f"<th>{h}</th>" for h in ("step", "cell", "instruction", "layer",
                                                   "compressed", "cache", "seconds"))
        rows = []
        for r in self:
            instr = r["instruction"] or ""
            cell = cell_name(r["origin"])
            layer = (f"<code title='{html.escape(r['layer'])}' style='user-select:all'>"
                     f"{dg.short(r['layer'])}</code>") if r["layer"] else ""
            size = format_bytes(r["size"]) if r["size"] is not None else ""
            rows.append(f"<tr><td>{r['step']}</td><td>{html.escape(str(cell))}</td>"
                        f"<td title='{html.escape(instr)}'>{html.escape(instr.split(' # ')[0])}"
                        f"</td><td>{layer}</td><td style='text-align:right'>{size}</td>"
                        f"<td>{r['cache']}</td><td style='text-align:right'>"
                        f"{r['seconds']:.2f}</td></tr>")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (f"<table class='nbimages-build-report'><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>" + (f"<ul>{notes}</ul>" if notes else ""))

    def __repr__(self) -> str:
        lines = [f"{'#':>3} {'cell':>8} {'cache':8} {'layer':14} {'compressed':>11} {'s':>6}  step"]
        for r in self:
            layer = dg.short(r["layer"]) if r["layer"] else ""
            size = format_bytes(r["size"]) if r["size"] is not None else ""
            instr = (r["instruction"] or "").split(" # ")[0]  # no content hash, as the HTML
            lines.append(f"{r['step']:>3} {cell_name(r['origin']):>8} {r['cache']:8} {layer:14} "
                         f"{size:>11} {r['seconds']:6.2f}  {instr[:70]}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


# ---- opening the base

def open_base(source: str | None, platform: str | Platform | None, store) -> Image | None:
    """The base image (None for scratch), opened by nbimages.sources.open_image."""
    if source is None or source.strip().lower() == "scratch":
        return None
    return open_image(source, platform=platform, store=store)


def _scratch_config(platform: Platform) -> dict[str, Any]:
    cfg: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os,
                           "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
                           "history": []}
    if platform.variant:
        cfg["variant"] = platform.variant
    return cfg


def _start_config(base: Image | None, platform: Platform) -> dict[str, Any]:
    if base is None:
        return _scratch_config(platform)
    cfg = _copy.deepcopy(base.config)
    # These describe the container that built the base, not this image.
    for k in ("container", "container_config", "docker_version", "parent", "id", "author"):
        cfg.pop(k, None)
    cfg.setdefault("config", {})
    if cfg["config"] is None:
        cfg["config"] = {}
    cfg.setdefault("history", [])
    return cfg


# ---- config steps

class _ConfigState:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.c = cfg["config"]
        self.workdir = self.c.get("WorkingDir") or "/"
        self.cmd_set = False

    def apply(self, step: Step) -> None:
        a, c = step.args, self.c
        if step.kind == "env":
            env = list(c.get("Env") or [])
            for name, value in a["vars"].items():
                env = [e for e in env if e.split("=", 1)[0] != name] + [f"{name}={value}"]
            c["Env"] = env
        elif step.kind == "workdir":
            self.workdir = posixpath.normpath(posixpath.join(self.workdir, a["path"]))
            c["WorkingDir"] = self.workdir
        elif step.kind == "user":
            c["User"] = a["user"]
        elif step.kind == "cmd":
            c["Cmd"] = list(a["command"])
            self.cmd_set = True
        elif step.kind == "entrypoint":
            c["Entrypoint"] = list(a["command"]) or None
            if not self.cmd_set:
                # Docker: an ENTRYPOINT resets a CMD inherited from the base image.
                c.pop("Cmd", None)
        elif step.kind == "label":
            labels = dict(c.get("Labels") or {})
            labels.update(a["labels"])
            c["Labels"] = labels
        elif step.kind == "expose":
            ports = dict(c.get("ExposedPorts") or {})
            for p in a["ports"]:
                ports[p] = {}
            c["ExposedPorts"] = ports
        elif step.kind == "arg":
            pass  # build-time only; the Dockerfile reader substitutes it
        if c.get("Entrypoint") is None:
            c.pop("Entrypoint", None)

    def image_path(self, path: str) -> str:
        """A step's path made absolute against the current WORKDIR (Docker's rule for COPY)."""
        return posixpath.join(self.workdir, path)


# ---- layer trees

def _resolve_entries(view: LowerView, entries: list[Entry], *, keep_lower_dirs: bool) -> LayerTree:
    """Entries moved through the lower layers' symlinks; dirs keep lower metadata if asked."""
    memo: dict[str, str] = {"": ""}

    def rdir(p: str) -> str:
        if p in memo:
            return memo[p]
        parent, name = posixpath.split(p)
        cand = posixpath.join(rdir(parent), name) if parent else name
        if view.kind(cand) == "l":
            cand = view.resolve(cand, follow_last=True)
        memo[p] = cand
        return cand

    out = LayerTree()
    for e in entries:
        parent, name = posixpath.split(e.path)
        if e.kind == DIR:
            path = rdir(e.path)
            if not path:
                continue
            if keep_lower_dirs:
                meta = view.dir_meta(path)
                if meta:
                    e = Entry(path, DIR, *meta)
        else:
            path = posixpath.join(rdir(parent), name) if parent else name
        out.add(Entry(path, e.kind, e.mode, e.uid, e.gid, e.uname, e.gname, e.size, e.linkname,
                      e.source))
    return out


def _file_tree(step: Step, state: _ConfigState) -> list[Entry]:
    a = step.args
    t = LayerTree()
    t.add_bytes(state.image_path(a["path"]), step.content or b"", a["mode"], uid=a["uid"],
                gid=a["gid"])
    return [t.get(state.image_path(a["path"]))]  # type: ignore[list-item]


def _remove_tree(step: Step, state: _ConfigState, view: LowerView) -> list[Entry]:
    t = LayerTree()
    for p in step.args["paths"]:
        path = normalize_path(state.image_path(p))
        if not path:
            raise BuildError("REMOVE / would remove the whole filesystem; name what to remove.")
        parent, name = posixpath.split(path)
        t.add_whiteout(posixpath.join(parent, name))
    return [t.get(p) for p in _paths(t)]  # type: ignore[misc]


def _paths(tree: LayerTree) -> list[str]:
    return list(tree._entries)  # noqa: SLF001 - same package family


def _copy_tree(step: Step, state: _ConfigState, view: LowerView, ctx: Context) -> list[Entry]:
    a = step.args
    dest_text = state.image_path(a["dest"])
    if a["dest"].endswith("/") or a["dest"] in (".", "./"):
        dest_text += "/"
    dest = normalize_path(dest_text) if dest_text.strip("/") else ""
    sources = []
    for src in a["src"]:
        sources += ctx.resolve(src)
    multi = len(sources) > 1
    dest_is_dir = dest_text.endswith("/") or dest == "" or \
        view.kind(view.resolve(dest, follow_last=True)) == "d"
    if multi and not dest_text.endswith("/"):
        raise BuildError(f"COPY of several sources ({', '.join(a['src'])}) needs a destination "
                         f"directory ending in '/': write {a['dest']}/.")
    uid, gid, mode = a.get("uid", 0), a.get("gid", 0), a.get("chmod")
    t = LayerTree()
    for rel, host in sources:
        if host.is_dir():
            before = len(t)
            t.add_host_tree(dest, host, include=ctx.include_under(rel), uid=uid, gid=gid, mode=mode)
            if len(t) == before and dest and dest not in t:
                meta = view.dir_meta(dest)
                t.add(Entry(dest, DIR, *(meta or (0o755, uid, gid))))
        else:
            if a.get("add") and _is_archive(host):
                raise BuildError(f"ADD {rel}: Docker would unpack this archive, which the "
                                 "embedded builder does not do; unpack it into the build context "
                                 "and COPY the folder, or use COPY to keep the archive as a file.")
            name = posixpath.basename(rel) or host.name
            target = posixpath.join(dest, name) if (dest_is_dir or multi) else dest
            if not target:
                raise BuildError(f"COPY {rel} / would replace the root directory; copy it into "
                                 "a directory (end the destination with '/').")
            t.add_host_file(target, host, follow=True, uid=uid, gid=gid, mode=mode)
    return [t.get(p) for p in _paths(t)]  # type: ignore[misc]


def _is_archive(path: Path) -> bool:
    """What Docker's ADD unpacks: a tar, plain or gzip/bzip2/xz/zstd compressed."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or \
            head[:4] == b"\x28\xb5\x2f\xfd":
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


def _layer_key(entries: list[Entry], comp: cz.Compressor, epoch: int) -> str:
    h = hashlib.sha256()
    h.update(canonical.dumps({"v": _KEY_VERSION, "compressor": comp.ident, "epoch": epoch}))
    for e in entries:
        content = None
        if e.kind == FILE and e.size:
            if isinstance(e.source, (bytes, bytearray)):
                content = "sha256:" + hashlib.sha256(e.source).hexdigest()
            else:
                content = file_digest(e.source)  # type: ignore[arg-type]
        h.update(b"\n" + canonical.dumps([e.path, e.kind, e.mode, e.uid, e.gid, e.uname, e.gname,
                                         e.size, e.linkname, content]))
    return "sha256:" + h.hexdigest()


# ---- staged blobs

class _Staged:
    """A layer blob written under the store's tmp area; renamed into blobs/ at commit."""

    def __init__(self, store, entries: list[Entry], comp: cz.Compressor, epoch: int):
        self.entries, self.epoch = entries, epoch  # for the layer index, at commit
        self._stage(store, comp, lambda pipe: [pipe.write(c) for c in iter_tar(entries, epoch)])

    def _stage(self, store, comp: cz.Compressor, write_tar: Callable[[cz.LayerPipeline], Any]
               ) -> None:
        """Write the tar through `write_tar(pipe)` into a tmp file, hashed and compressed."""
        fd, self.path = tempfile.mkstemp(prefix="layer-", dir=store.tmpdir())
        try:
            with os.fdopen(fd, "wb") as f:
                pipe = cz.LayerPipeline(comp, f.write)
                write_tar(pipe)
                self.result = pipe.close()
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            self.discard()
            raise

    def open(self):
        return open(self.path, "rb")

    def commit(self, store) -> None:
        target = store.blob_path(self.result.digest)
        if target.exists():
            self.discard()
        else:
            os.chmod(self.path, 0o644)
            os.replace(self.path, target)
            self.done = True
        # the layer's file table, from the entries just written (a failed build has none;
        # a layer copied from tar members is indexed when it is first read)
        if self.entries is not None:
            r = self.result
            index_written_layer(store.home, self.entries, self.epoch, r.diff_id, r.digest)
            self.entries = None

    done = False
    entries: "list[Entry] | None" = None

    def discard(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


# ---- the build

def _check_embedded(steps: list[Step]) -> None:
    for i, step in enumerate(steps):
        if step.kind not in EMBEDDED_KINDS:
            raise BuildError(
                f"step {i + 1} ({step.describe()}) runs a command in a container, which the "
                "embedded builder cannot do: it has no engine. Build this recipe with the Docker "
                "engine (recipe.build(tag, engine='docker')), or replace the RUN by steps the "
                "embedded builder makes (file, copy, pip, remove).")


def _intermediate(cfg: dict, layers: list[Layer], history: list[dict]) -> Image:
    """The image as built so far (not stored): what a pip step inspects for its Python."""
    c = _copy.deepcopy(cfg)
    c["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in layers]}
    c["history"] = list(history)
    raw = canonical.dumps(c)
    man = Manifest.build(Descriptor(mt.OCI_CONFIG, dg.of_bytes(raw), len(raw)),
                         [l.descriptor for l in layers])
    return Image(man, raw, list(layers), source="build:intermediate")


class _Build:
    """One run of the embedded builder over a recipe (state kept between steps)."""

    def __init__(self, recipe, store, compression, progress, *, shared: "_Build | None" = None):
        self.recipe = recipe
        self.store = store
        self.comp = cz.get(compression if compression is not None else recipe.compression)
        self.epoch = source_date_epoch()
        self.created = rfc3339(self.epoch)
        self.progress = progress
        self.cache = BuildCache(store)
        # A multi-platform build's platforms share the new layers: a layer whose key an
        # earlier platform made (a cell file, a copy) is the same blob, built once.
        self.shared = shared is not None
        self.staged: list[_Staged] = shared.staged if shared else []
        self.records: dict[str, dict] = shared.records if shared else {}
        self.pins: list[dict] = []
        self.system_pins: dict[str, list[dict]] = {"apt": [], "apk": []}
        self.report = BuildReport()
        self._ctx: Context | None = None
        self.view: LowerView | None = None

    def context(self) -> Context:
        if self._ctx is None:
            self._ctx = Context(self.recipe.context)
        return self._ctx

    def run(self, tag: str | None) -> Image:
        _check_embedded(self.recipe.steps)
        store = self.store
        base = self.recipe._open_base(store)  # noqa: SLF001
        try:
            platform = self.steps(base, self.recipe.platform)
            desc, manifest = self._finish(platform, tag)
        finally:
            for s in self.staged:
                s.discard()
        if base is not None:
            self.recipe._pin_base(store, base)  # noqa: SLF001
        image = store.image(desc, source=f"store:{tag}" if tag else f"store:{manifest.digest}")
        if tag:  # the handle carries its name, so save(), push() and reprs see it
            image.names = [tag]
        image.build_report = self.report
        image.recipe = self.recipe
        return image

    def steps(self, base: Image | None, want: "str | Platform | None") -> Platform:
        """Run every step on `base` (for the platform `want`); the platform built."""
        self.base = base
        if base is not None:  # the embedded builder cannot change a base's platform
            check_platform(base.platform, want, f"the base image {self.recipe.base}")
        platform = base.platform if base is not None else Platform.parse(want)
        self.platform = platform
        cfg = self.cfg = _start_config(base, platform)
        self.state = _ConfigState(cfg)
        self.history: list[dict] = list(cfg.get("history") or [])
        self.layers: list[Layer] = []
        if base is not None:
            for l in base.layers:
                d = l.descriptor
                d = Descriptor(_TO_OCI.get(d.media_type, d.media_type), d.digest, d.size,
                               dict(d.annotations), urls=d.urls)
                self.layers.append(Layer(d, l.diff_id, l.open_blob))
        for i, step in enumerate(self.recipe.steps):
            self._step(i, step)
        return platform

    def _step(self, i: int, step: Step) -> None:
        t0 = time.perf_counter()
        row = {"step": i + 1, "origin": step.origin, "instruction": step.describe(),
               "layer": None, "size": None, "cache": "config", "seconds": 0.0,
               "kind": step.kind, "key": step.key, "diff_id": None}
        if step.kind in CONFIG_KINDS:
            self.state.apply(step)
            if step.kind != "arg":
                self.history.append({"created": self.created, "created_by": step.describe(),
                                     "empty_layer": True})
        else:
            if self.view is None:
                views = Path(self.store.home) / "build-cache" / "views"
                self.view = (view_of_layers(self.base.layers, views) if self.base is not None
                             else LowerView())
            layer, hit = self._layer(step)
            self.layers.append(layer)
            self.history.append({"created": self.created, "created_by": step.describe()})
            row.update(layer=layer.digest, size=layer.size, diff_id=layer.diff_id,
                       cache=hit if isinstance(hit, str) else "hit" if hit else "rebuilt")
        row["seconds"] = round(time.perf_counter() - t0, 4)
        self.report.append(row)
        if self.progress:
            self.progress(row)

    def _layer(self, step: Step) -> tuple[Layer, "bool | str"]:
        view, state = self.view, self.state
        assert view is not None
        if step.kind == "pip":
            return self._pip(step)
        if step.kind in ("apt", "apk"):
            return self._system(step)
        if step.kind == "file":
            raw = _file_tree(step, state)
        elif step.kind == "copy":
            raw = _copy_tree(step, state, view, self.context())
        else:
            raw = _remove_tree(step, state, view)
        tree = _resolve_entries(view, raw, keep_lower_dirs=False)
        entries = tree.entries(parent_meta=view.dir_meta)
        key = _layer_key(entries, self.comp, self.epoch)
        rec = self.cache.get(key)
        view.apply(entries)
        if rec:
            return self._cached_layer(rec), True
        if key in self.records:
            return self._cached_layer(self.records[key]), "shared" if self.shared else True
        return self._new_layer(key, entries, {}), False

    def _pip(self, step: Step) -> tuple[Layer, bool]:
        view = self.view
        assert view is not None
        a = step.args
        key, rec = self._below_key(step)
        if rec:
            view.apply_summary(rec.get("summary") or [])
            self.pins += rec.get("pins") or []
            return self._cached_layer(rec), True
        staging = Path(tempfile.mkdtemp(prefix="pip-", dir=self.store.tmpdir()))
        try:
            parent = _intermediate(self.cfg, self.layers, self.history)
            pins = install_layer_tree(parent, list(a["requirements"]), staging,
                                      index_url=a.get("index_url"),
                                      find_links=a.get("find_links"), store=self.store)
            t = LayerTree()
            t.add_host_tree("", staging)
            raw = [t.get(p) for p in _paths(t)]
            tree = _resolve_entries(view, raw, keep_lower_dirs=True)  # type: ignore[arg-type]
            entries = tree.entries(parent_meta=view.dir_meta)
            view.apply(entries)
            pins = [dict(p) for p in pins or []]
            self.pins += pins
            extra = {"pins": pins, "summary": LowerView.summary(entries)}
            return self._new_layer(key, entries, extra), False
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _below_key(self, step: Step) -> tuple[str, dict | None]:
        """The cache key of a step whose layer depends on the image below it (pip, apt), and
        the cached record for it if any."""
        key = "sha256:" + hashlib.sha256(canonical.dumps({
            "v": _KEY_VERSION, "kind": step.kind,
            "below": chain_id([l.diff_id for l in self.layers]),
            "step": step.definition(), "compressor": self.comp.ident, "epoch": self.epoch,
        })).hexdigest()
        return key, self.cache.get(key) or self.records.get(key)

    def _system(self, step: Step) -> tuple[Layer, bool]:
        """Debian (apt) or Alpine (apk) packages resolved against the image below (its
        package database), in one layer."""
        view = self.view
        assert view is not None
        pins = self.system_pins[step.kind]
        key, rec = self._below_key(step)
        if rec:
            view.apply_summary(rec.get("summary") or [])
            pins += rec.get("pins") or []
            self.report.notes += rec.get("notes") or []
            return self._cached_layer(rec), True
        staging = Path(tempfile.mkdtemp(prefix=f"{step.kind}-", dir=self.store.tmpdir()))
        try:
            a = step.args
            parent = _intermediate(self.cfg, self.layers, self.history)
            if step.kind == "apt":
                result = apt_layer(parent, list(a["packages"]), staging, store=self.store,
                                   mirror=a.get("mirror"), snapshot=a.get("snapshot"),
                                   suite=a.get("suite"), keyring=a.get("keyring"))
            else:
                result = apk_layer(parent, list(a["packages"]), staging, store=self.store,
                                   mirror=a.get("mirror"), repository=a.get("repository"),
                                   key=a.get("key"))
            tree = _resolve_entries(view, result.entries, keep_lower_dirs=True)
            entries = tree.entries(parent_meta=view.dir_meta)
            view.apply(entries)
            pins += result.pins
            self.report.notes += result.notes
            extra = {"pins": result.pins, "notes": result.notes,
                     "summary": LowerView.summary(entries)}
            return self._new_layer(key, entries, extra), False
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _cached_layer(self, rec: dict) -> Layer:
        desc = Descriptor(rec["media_type"], rec["digest"], rec["size"])
        staged = next((s for s in self.staged if s.result.digest == rec["digest"]), None)
        opener = staged.open if staged else (lambda d=rec["digest"]: self.store.open_blob(d))
        trust(rec["digest"], rec["diff_id"])  # both computed by this builder when it wrote it
        return Layer(desc, rec["diff_id"], opener)

    def _new_layer(self, key: str, entries: list[Entry], extra: dict) -> Layer:
        s = _Staged(self.store, entries, self.comp, self.epoch)
        self.staged.append(s)
        r = s.result
        self.records[key] = {"digest": r.digest, "size": r.size, "diff_id": r.diff_id,
                             "media_type": r.media_type, "tar_size": r.tar_size, **extra}
        trust(r.digest, r.diff_id)  # hashed here while the layer was written
        return Layer(Descriptor(r.media_type, r.digest, r.size), r.diff_id, s.open)

    def _finish(self, platform: Platform, tag: str | None) -> tuple[Descriptor, Manifest]:
        config_bytes, manifest = self.compose()
        self.commit_blobs(config_bytes, manifest)
        self.cache.put_many(self.records)
        desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw),
                          platform=platform)
        with self.store.locked():
            self.store.set_ref(tag, desc)
        return desc, manifest

    def compose(self) -> tuple[bytes, Manifest]:
        """The config and manifest of what the steps made (nothing written yet)."""
        cfg, base = self.cfg, self.base
        if self.pins:
            labels = dict(cfg["config"].get("Labels") or {})
            labels[PIP_LABEL] = canonical.dumps(self.pins).decode("utf-8")
            cfg["config"]["Labels"] = labels
        for kind, label in (("apt", APT_LABEL), ("apk", APK_LABEL)):
            if self.system_pins[kind]:
                labels = dict(cfg["config"].get("Labels") or {})
                labels[label] = canonical.dumps(self.system_pins[kind]).decode("utf-8")
                cfg["config"]["Labels"] = labels
        cfg["created"] = self.created
        cfg["history"] = self.history
        cfg["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in self.layers]}
        config_bytes = canonical.dumps(cfg)
        annotations = {cz.COMPRESSOR_ANNOTATION: self.comp.ident}
        if base is not None:
            annotations[BASE_DIGEST_ANNOTATION] = base.digest
        manifest = Manifest.build(
            Descriptor(mt.OCI_CONFIG, dg.of_bytes(config_bytes), len(config_bytes)),
            [l.descriptor for l in self.layers], annotations=annotations)
        return config_bytes, manifest

    def commit_blobs(self, config_bytes: bytes, manifest: Manifest) -> None:
        """Every step succeeded: make it visible. Blobs first, then the manifest."""
        store, base = self.store, self.base
        if base is not None:
            for l in base.layers:
                if not store.has_blob(l.digest):
                    with l.open_blob() as f:
                        store.write_blob(f, l.digest)
            store.write_blob(base.config_bytes, base.manifest.config.digest)
            store.write_blob(base.manifest.raw, base.manifest.digest)
            store.note_origin(base.manifest.digest, base.source)  # for check --repair
        for s in self.staged:
            s.commit(store)
        store.write_blob(config_bytes, manifest.config.digest)
        store.write_blob(manifest.raw, manifest.digest)
        if base is not None:  # its base layers can be fetched again from where the base came
            store.note_origin(manifest.digest, base.source)


def build_recipe(recipe, tag: str | None = None, *, store=None, compression=None,
                 progress: Callable[[dict], Any] | None = None) -> Image:
    """Build `recipe` without an engine; the image is stored (and tagged) in `store`.

    Returns the stored Image with `.build_report` (a BuildReport) attached; the recipe keeps
    it as `recipe.report` too. `progress(row)` is called after each step.
    """
    build = _Build(recipe, store or default_store(), compression, progress)
    try:
        with build.store.writing():  # a concurrent prune waits until the tag is written
            return build.run(tag)
    finally:
        recipe.report = build.report

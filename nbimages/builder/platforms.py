"""Multi-platform builds: the same steps on every platform of a base, one OCI index over them.

No emulation: each platform's image is built on that platform's base (picked from the base's
index) by the embedded builder. File, copy and remove layers depend only on their entries, so
the first platform builds them and the others reuse the same blob (same digest); pip steps
resolve wheels for each platform's Python, libc and architecture, and each platform's config
records its own pins. Nothing reaches the store until every platform has succeeded; then the
blobs, the manifests, the index and the tag, in that order.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import BuildError, PlatformNotFound
from ..image import Image
from ..oci import digest as dg
from ..oci.descriptor import Descriptor, Platform
from ..oci.manifest import Index
from ..sources import platforms_of
from ..store import default_store
from .embedded import BuildReport, _Build, _check_embedded

ALL = "all"


def parse_platforms(platforms: "str | list[str] | tuple[str, ...] | None"
                    ) -> "list[Platform] | str | None":
    """`"linux/amd64,linux/arm64"`, a list of such names, or "all" -> Platforms (or "all")."""
    if platforms is None:
        return None
    if isinstance(platforms, str):
        if platforms.strip().lower() == ALL:
            return ALL
        platforms = [p for p in platforms.split(",") if p.strip()]
    if not isinstance(platforms, (list, tuple)) or not platforms or \
            not all(isinstance(p, (str, Platform)) for p in platforms):
        raise BuildError(f"platforms={platforms!r} names no platform: give a list such as "
                         "['linux/amd64', 'linux/arm64'], or 'all' for every platform of the base.")
    out: list[Platform] = []
    for p in platforms:
        plat = Platform.parse(p if isinstance(p, Platform) else p.strip())
        if any(plat == q for q in out):
            raise BuildError(f"the platform {plat} is listed twice in platforms={platforms!r}; "
                             "name each platform once.")
        out.append(plat)
    return out


class PlatformsReport(list):
    """One row per step with a column group per platform: from the cache (`hit`), built for an
    earlier platform of this build (`shared`), or `rebuilt`; layer digest, size, seconds."""

    FIELDS = ("cache", "layer", "compressed_size", "seconds")

    def __init__(self, reports: dict[str, BuildReport]):
        super().__init__()
        self.platforms = reports  # platform name -> that platform's BuildReport
        first = next(iter(reports.values()), BuildReport())
        for i, row in enumerate(first):
            merged = {"step": row["step"], "origin": row["origin"],
                      "instruction": row["instruction"], "kind": row["kind"], "key": row["key"]}
            for name, rep in reports.items():
                r = rep[i]
                merged[name] = {"cache": r["cache"], "layer": r["layer"], "size": r["size"],
                                "seconds": r["seconds"], "diff_id": r["diff_id"]}
            self.append(merged)

    def to_frame(self):
        """A DataFrame with (platform, field) column pairs after step, origin and instruction."""
        import pandas as pd
        cols = [("", "step"), ("", "origin"), ("", "instruction")]
        cols += [(name, f) for name in self.platforms for f in self.FIELDS]
        rows = []
        for r in self:
            row = [r["step"], r["origin"], r["instruction"]]
            for name in self.platforms:
                p = r[name]
                row += [p["cache"], p["layer"], p["size"], p["seconds"]]
            rows.append(row)
        frame = pd.DataFrame(rows, columns=pd.MultiIndex.from_tuples(cols))
        for name in self.platforms:
            frame[(name, "compressed_size")] = frame[(name, "compressed_size")].astype("Int64")
        return frame

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False, na_rep="",
                                       float_format=lambda x: f"{x:.2f}")

    def __repr__(self) -> str:
        names = list(self.platforms)
        cell = "{:8} {:12} {:>10} {:>5}"
        lines = [f"{'':>3} {'':34}  " + "  ".join(f"{n:41}" for n in names),
                 f"{'#':>3} {'step':34}  " + "  ".join(
                     cell.format("cache", "layer", "compressed", "s") for _ in names)]
        for r in self:
            cells = []
            for n in names:
                p = r[n]
                layer = dg.short(p["layer"]) if p["layer"] else ""
                size = f"{p['size']:,}" if p["size"] is not None else ""
                cells.append(cell.format(p["cache"], layer, size, f"{p['seconds']:.2f}"))
            lines.append(f"{r['step']:>3} {r['instruction'][:34]:34}  " + "  ".join(cells))
        return "\n".join(lines)


def build_platforms(recipe, tag: str | None, platforms: "list[Platform] | str", *, store=None,
                    compression=None, progress: Callable[[dict], Any] | None = None) -> Image:
    """Build `recipe` for each of `platforms` ("all": every platform of the base) and store an
    OCI image index over the images, tagged `tag`.

    Returns the image of the host's platform when it is one of them (else the first), whose
    `.index` is the whole ImageIndex and whose `.build_report` is a PlatformsReport.
    """
    store = store or default_store()
    _check_embedded(recipe.steps)
    if platforms == ALL:
        if recipe.base.strip().lower() == "scratch":
            raise BuildError("platforms='all' takes the platforms of the base image, and scratch "
                             "has none: list them, e.g. platforms=['linux/amd64', 'linux/arm64'].")
        platforms = platforms_of(recipe._base_image or recipe.base, store=store)  # noqa: SLF001
    assert isinstance(platforms, list)
    builds: list[_Build] = []
    reports: dict[str, BuildReport] = {}
    try:
        with store.writing():  # a concurrent prune waits until the tag is written
            for plat in platforms:
                def tell(row, name=str(plat)):
                    if progress:
                        progress({**row, "platform": name})
                build = _Build(recipe, store, compression, tell,
                               shared=builds[0] if builds else None)
                try:
                    base = recipe._open_base(store, plat)  # noqa: SLF001
                except PlatformNotFound as e:
                    raise BuildError(f"the base {recipe.base} cannot be built for {plat}: {e} "
                                     "List only the base's platforms in platforms= (or "
                                     "platforms='all').") from None
                reports[str(plat)] = build.report
                build.steps(base, plat)
                builds.append(build)
            composed = [b.compose() for b in builds]
            descs = []
            for build, (config_bytes, manifest) in zip(builds, composed):
                build.commit_blobs(config_bytes, manifest)
                descs.append(Descriptor(manifest.media_type, manifest.digest, len(manifest.raw),
                                        platform=build.platform))
            builds[0].cache.put_many(builds[0].records)
            index = Index.build(descs)
            store.write_blob(index.raw, dg.of_bytes(index.raw))
            desc = Descriptor(index.media_type, dg.of_bytes(index.raw), len(index.raw))
            with store.locked():
                store.set_ref(tag, desc)
    finally:
        if builds:
            for s in builds[0].staged:
                s.discard()
        recipe.report = PlatformsReport(reports)
    for build in builds:
        if build.base is not None:
            recipe._pin_base(store, build.base, build.platform)  # noqa: SLF001
    host = Platform.host()
    pick = next((p for p in platforms if host.matches(p)), platforms[0])
    image = store.image(desc, pick, source=f"store:{tag}" if tag else f"store:{desc.digest}")
    if tag:
        image.names = [tag]
        if image.index is not None:
            image.index.names = [tag]
            for one in image.index.images:
                one.names = [tag]
    image.build_report = recipe.report
    image.recipe = recipe
    if image.index is not None:
        for one in image.index.images:
            one.build_report, one.recipe = recipe.report, recipe
    return image

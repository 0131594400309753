"""`nbimages.explore(src)`: an image explorer for notebooks, with static fallbacks.

In a live Jupyter kernel it is an ipywidgets app: the layer table (click a layer to list the
files it added, modified and deleted, sortable and filterable by path), the size breakdown as
bar charts (by directory, by layer, wasted bytes hatched), the wasted-space table, and for two
images the diff. Where widgets cannot run (nbconvert, GitHub's viewer, a terminal IPython) the
same object shows as static HTML (every layer row, each layer's first files in a <details>,
the charts) or as plain text. The DOM uses stable `nbimages-*` class names:

    nbimages-explorer   the whole view        nbimages-layer-row     one layer
    nbimages-layer-select  its button         nbimages-file-row      one file of a layer
    nbimages-diff-row   one changed path      nbimages-wasteful      a layer with wasted bytes
"""

from __future__ import annotations

import html
import sys
from typing import TYPE_CHECKING, Any

from ..analysis import inspect
from ..analysis.table import printable
from ..errors import NbimagesError
from ..progress import format_bytes
from .charts import (WASTE, directory_bars, hbar_chart, layer_bars, layer_color, layer_commands,
                     short_command)

if TYPE_CHECKING:
    import pandas as pd

    from ..analysis import Inspection

FILE_ROWS = 300            # rows of the live file table (filter to see others)
STATIC_FILE_ROWS = 25      # files per layer in the static HTML
STATIC_FILE_TOTAL = 400    # files in all layers of the static HTML
WASTE_ROWS = 50
DIFF_ROWS = 300
CHANGES = ("added", "modified", "deleted")
SORTS = {"path": "path", "size": "size (largest first)", "change": "change"}
DIFF_CHANGES = ("added", "modified", "removed")
DIFF_SORTS = {"impact": "biggest change first", "path": "path",
              "size": "size after (largest first)"}

CSS = """
.nbimages-explorer { font-size: 13px; }
.nbimages-explorer table { border-collapse: collapse; margin: 4px 0; }
.nbimages-explorer table[class] th, .nbimages-explorer table[class] td { padding: 2px 8px;
  text-align: left; border-bottom: 1px solid rgba(128,128,128,.25); white-space: nowrap; }
.nbimages-explorer table[class] td.nbimages-num,
.nbimages-explorer table[class] th.nbimages-num { text-align: right; }
.nbimages-explorer .nbimages-cmd { max-width: 46em; overflow: hidden; text-overflow: ellipsis; }
.nbimages-explorer .nbimages-path { font-family: monospace; }
.nbimages-explorer .nbimages-added { color: var(--jp-success-color1, #2e7d32); }
.nbimages-explorer .nbimages-modified { color: var(--jp-warn-color1, #b26a00); }
.nbimages-explorer .nbimages-deleted, .nbimages-explorer .nbimages-removed
  { color: var(--jp-error-color1, #c62828); }
.nbimages-explorer tr.nbimages-deleted .nbimages-path,
.nbimages-explorer tr.nbimages-removed .nbimages-path { text-decoration: line-through; }
.nbimages-explorer .nbimages-waste { color: var(--jp-error-color1, #c62828); font-weight: bold; }
.nbimages-explorer tr.nbimages-wasteful, .nbimages-explorer .nbimages-layer-row.nbimages-wasteful
  { background: rgba(225,87,89,.10); }
.nbimages-explorer .nbimages-layer-row.nbimages-selected { background: rgba(78,121,167,.18); }
.nbimages-explorer .nbimages-layer-row { align-items: center; margin: 0; }
.nbimages-explorer .nbimages-layer-row .widget-html-content,
.nbimages-explorer .nbimages-layer-head { white-space: nowrap; overflow: hidden; }
.nbimages-explorer .nbimages-layer-head { padding-left: 4px; font-weight: bold; }
.nbimages-explorer .nbimages-cell { display: inline-block; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; vertical-align: middle; padding: 0 6px; }
.nbimages-explorer .nbimages-c-size { width: 7em; text-align: right; }
.nbimages-explorer .nbimages-c-files { width: 11em; }
.nbimages-explorer .nbimages-c-waste { width: 8em; text-align: right; }
.nbimages-explorer .nbimages-c-cmd { width: 40em; }
.nbimages-explorer .nbimages-swatch { display: inline-block; width: 10px; height: 10px;
  margin-right: 4px; border-radius: 2px; }
.nbimages-explorer .nbimages-muted { color: var(--jp-content-font-color2, #666); }
.nbimages-explorer details { margin: 2px 0; }
.nbimages-explorer .nbimages-scroll { max-height: 26em; overflow: auto; }
.nbimages-explorer .nbimages-scroll thead th { position: sticky; top: 0;
  background: var(--jp-layout-color1, #fff); }
.nbimages-explorer tr.nbimages-lost { background: rgba(225,87,89,.10); }
.nbimages-explorer .nbimages-lost-note { color: var(--jp-error-color1, #c62828);
  font-size: 11px; margin-left: 6px; }
.nbimages-explorer .nbimages-image-label { margin: 4px 0; font-weight: bold; }
/* The static copy shown before the live widget (see Explorer._ipython_display_): hidden while
   the widget is drawn next to it; after a kernel restart the widget's "model not found" line
   is hidden instead and the static copy stays. */
.jp-OutputArea-child:has(.nbimages-static-fallback):has(+ .jp-OutputArea-child .nbimages-live)
  { display: none; }
.jp-OutputArea-child:has(.nbimages-static-fallback) + .jp-OutputArea-child:not(:has(.nbimages-live))
  { display: none; }
"""


def explore(source: Any, diff: Any = None, *, platform: str | None = None,
            diff_platform: str | None = None) -> "Explorer":
    """Open an explorer on `source` (any source string, Image or Inspection).

    With `diff=OTHER` it also compares the two images path by path (a Diff tab, and the
    layer table of either image). `diff_platform` compares two platforms of one
    multi-platform image: `explore(img, platform="linux/amd64", diff_platform="linux/arm64")`.
    """
    if diff is None and diff_platform is not None:
        diff = source
    a = inspect(source, platform=platform)
    b = inspect(diff, platform=diff_platform or platform) if diff is not None else None
    return Explorer(a, b)


def filter_files(files: "pd.DataFrame", change: str | None = None, text: str = "",
                 sort: str = "path", lost: Any = ()) -> "pd.DataFrame":
    """The rows of a file table the explorer shows: one `change` (or all, or "wasted": the
    paths in `lost`), paths containing `text` (case-insensitive), sorted by path, by size
    (largest first) or by change."""
    frame = files
    if change == "wasted":
        frame = frame[frame["path"].isin(list(lost))]
    elif change and change != "all":
        frame = frame[frame["change"].astype(str) == change]
    if text:
        frame = frame[frame["path"].str.contains(text, case=False, regex=False)]
    if sort == "size":
        frame = frame.sort_values(["size", "path"], ascending=[False, True], kind="stable")
    elif sort == "change":
        order = {c: n for n, c in enumerate(CHANGES + ("removed",))}
        frame = frame.assign(_o=frame["change"].astype(str).map(order)) \
            .sort_values(["_o", "path"], kind="stable").drop(columns="_o")
    else:
        frame = frame.sort_values("path", kind="stable")
    return frame


class Explorer:
    """An image (and optionally a second one to compare) ready to be explored.

    Display it in a notebook (the widget), call `to_html()` for the static page, or use the
    tables it holds: `.inspection`, `.other`, `.files(layer)`, `.diff`.
    """

    def __init__(self, inspection: "Inspection", other: "Inspection | None" = None):
        self.inspection = inspection
        self.other = other
        self._files: dict[tuple[int, int], pd.DataFrame] = {}
        self._diff: pd.DataFrame | None = None
        self._app: _App | None = None

    # ---------------------------------------------------------------- tables
    def files(self, layer: int, image: int = 0) -> "pd.DataFrame":
        """The file table of one layer (of the second image with `image=1`), cached."""
        key = (image, layer)
        if key not in self._files:
            insp = self.other if image and self.other is not None else self.inspection
            self._files[key] = insp.files(layer=layer)
        return self._files[key]

    @property
    def diff(self) -> "pd.DataFrame | None":
        """`inspection.diff(other)` when there is a second image, else None."""
        if self.other is None:
            return None
        if self._diff is None:
            self._diff = self.inspection.diff(self.other)
        return self._diff

    # ---------------------------------------------------------------- the live widget
    @property
    def widget(self) -> Any:
        """The ipywidgets view (built on first use)."""
        if self._app is None:
            self._app = _App(self)
        return self._app.root

    @property
    def app(self) -> "_App":
        """The widget app itself: its controls, for scripting and tests."""
        self.widget  # noqa: B018 - build it
        assert self._app is not None
        return self._app

    def select(self, layer: int) -> None:
        """Select `layer` in the widget (as if its row was clicked)."""
        self.app.select(layer)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": repr(self), "text/html": self.to_html()}
        if _widgets_live():
            view = self.widget._repr_mimebundle_()
            for key, value in view.items():
                if key != "text/plain":
                    data[key] = value
        return data

    def _ipython_display_(self) -> None:
        """In a live kernel: two outputs, the static HTML and then the widget. JupyterLab
        draws a widget view whenever the output has one, and after a kernel restart that is
        "Error displaying widget: model not found", never the bundle's text/html. So the
        static copy is an output of its own, hidden by CSS while the widget is drawn after it
        and shown (the error line hidden) once the widget's model is gone. Elsewhere (a
        terminal, nbconvert of a static bundle) one output: text and the static HTML."""
        from IPython.display import display
        if not _widgets_live():
            display(self._repr_mimebundle_(), raw=True)
            return
        display({"text/plain": repr(self), "text/html": self.to_html(fallback=True)}, raw=True)
        display(self.widget)

    # ---------------------------------------------------------------- static views
    def to_html(self, fallback: bool = False) -> str:
        """The whole explorer as static HTML (no scripts, no network): what nbconvert and
        GitHub's viewer show, and (`fallback`) what a notebook shows once the live widget's
        kernel is gone. With a second image, its layers, sizes and waste follow A's, each
        labelled."""
        a, b = self.inspection, self.other
        cls = "nbimages-explorer nbimages-static" + (" nbimages-static-fallback" if fallback
                                                     else "")
        parts = [f"<div class='{cls}'><style>{CSS}</style>", summary_html(a, b)]
        if b is not None:
            parts.append(diff_summary_html(a, b, self.diff))
            parts.append(diff_table_html(sort_diff(self.diff), limit=DIFF_ROWS))
        images = [(a, 0)] + ([(b, 1)] if b is not None else [])
        for insp, which in images:
            if b is not None:
                parts.append(image_label(insp, which, "Layers, sizes and waste of"))
            parts.append(layers_table_html(insp))
            parts.append(self._static_layer_files(insp, which))
            parts.append("<div class='nbimages-charts'>")
            parts.append(directory_chart(insp))
            parts.append(layer_chart(insp))
            parts.append("</div>")
            parts.append(waste_html(insp))
            parts.append(advice_html(insp))
        parts.append("</div>")
        return "".join(parts)

    def _static_layer_files(self, insp: "Inspection", which: int) -> str:
        out = ["<div class='nbimages-layer-files-all'>"]
        budget = STATIC_FILE_TOTAL
        for i in range(len(insp.image.layers)):
            files = filter_files(self.files(i, which), sort="change")
            shown = files.head(min(STATIC_FILE_ROWS, max(budget, 0)))
            budget -= len(shown)
            more = len(files) - len(shown)
            counts = files["change"].astype(str).value_counts()
            summary = (f"Layer {i}: {len(files):,} entries (+{counts.get('added', 0)} "
                       f"~{counts.get('modified', 0)} -{counts.get('deleted', 0)})")
            out.append(f"<details class='nbimages-layer-files' data-layer='{i}'>"
                       f"<summary>{html.escape(summary)}</summary>"
                       f"{files_table_html(shown, insp.lost_files(i))}")
            if more:
                out.append(f"<p class='nbimages-muted'>… {more:,} more: "
                           f"<code>inspect(...).files(layer={i})</code></p>")
            out.append("</details>")
        out.append("</div>")
        return "".join(out)

    def __repr__(self) -> str:
        a, b = self.inspection, self.other
        lines = [repr(a)]
        sizes = a.sizes(2).head(10)
        if len(sizes):
            lines += ["", "  largest directories (final filesystem):"]
            lines += [f"    {format_bytes(int(r.size)):>10}  {r.path}" for r in sizes.itertuples()]
        waste = a.waste
        waste = waste[waste["wasted_bytes"] > 0].head(10)
        if len(waste):
            lines += ["", "  wasted space (copies not in the final filesystem):"]
            lines += [f"    {format_bytes(int(r.wasted_bytes)):>10}  {r.path} ({r.reason})"
                      for r in waste.itertuples()]
        if b is not None:
            d = self.diff
            assert d is not None
            counts = d["change"].value_counts()
            lines += ["", f"  diff {_name(a)} -> {_name(b)}: " + ", ".join(
                f"{counts.get(c, 0)} {c}" for c in ("added", "modified", "removed"))]
            lines += [f"    {r.change:<9} {r.path}" for r in d.head(20).itertuples()]
            if len(d) > 20:
                lines.append(f"    … {len(d) - 20} more")
        return printable("\n".join(lines))


# -------------------------------------------------------------------- HTML pieces (shared)

def _name(insp: "Inspection") -> str:
    names = list(getattr(insp.image, "names", []) or [])
    if names:
        return names[0]
    source = insp.source or ""
    return source[len("store:"):] if source.startswith("store:") else (source or insp.digest[:19])


def _e(value: Any) -> str:
    return html.escape(printable(str(value)))


def summary_html(a: "Inspection", b: "Inspection | None" = None) -> str:
    def one(insp: "Inspection") -> str:
        n = len(insp.image.layers)
        return (f"<b>{_e(_name(insp))}</b> · {n} layer{'s' if n != 1 else ''} · "
                f"{format_bytes(insp.size)} in layers, {format_bytes(insp.final_size)} in the "
                f"final filesystem · dive efficiency {insp.efficiency:.2%} · "
                f"<span class='{'nbimages-waste' if insp.wasted_bytes else ''}'>"
                f"{format_bytes(insp.wasted_bytes)} wasted</span> · "
                f"<code title='{_e(insp.digest)}'>{_e(insp.digest[:19])}</code>")
    body = one(a) if b is None else f"{one(a)}<br>→ {one(b)}"
    return f"<div class='nbimages-summary'>{body}</div>"


def layers_table_html(insp: "Inspection") -> str:
    """Every layer as a table row: index, size, compressed, files changed, wasted, command."""
    rows = []
    commands = layer_commands(insp)
    for r in insp.layers.itertuples(index=False):
        i = int(r.index)
        wasteful = int(r.wasted_bytes) > 0
        cls = "nbimages-layer-row" + (" nbimages-wasteful" if wasteful else "")
        made = commands[i]
        waste = (f"<span class='nbimages-waste'>{format_bytes(int(r.wasted_bytes))}</span>"
                 if wasteful else "<span class='nbimages-muted'>0 B</span>")
        rows.append(
            f"<tr class='{cls}' data-layer='{i}'>"
            f"<td class='nbimages-num'><span class='nbimages-swatch' "
            f"style='background:{layer_color(i)}'></span>{i}</td>"
            f"<td class='nbimages-num'>{format_bytes(int(r.size))}</td>"
            f"<td class='nbimages-num'>{format_bytes(int(r.compressed_size))}</td>"
            f"<td>{_changes_html(r.files_added, r.files_modified, r.files_deleted)}</td>"
            f"<td class='nbimages-num'>{waste}</td>"
            f"<td class='nbimages-cmd' title='{_e(made)}'>{_e(short_command(made, 90))}</td></tr>")
    head = ("<thead><tr><th class='nbimages-num'>layer</th><th class='nbimages-num'>size</th>"
            "<th class='nbimages-num'>compressed</th><th>files</th>"
            "<th class='nbimages-num'>wasted</th><th>created by</th></tr></thead>")
    return f"<table class='nbimages-layers'>{head}<tbody>{''.join(rows)}</tbody></table>"


def _changes_html(added: Any, modified: Any, deleted: Any) -> str:
    return (f"<span class='nbimages-added'>+{int(added):,}</span> "
            f"<span class='nbimages-modified'>~{int(modified):,}</span> "
            f"<span class='nbimages-deleted'>-{int(deleted):,}</span>")


def _mode(value: Any) -> str:
    try:
        return f"{int(value) & 0o7777:04o}"
    except (TypeError, ValueError):
        return ""


def image_label(insp: "Inspection", which: int, what: str) -> str:
    """"Sizes of B: name": which image of a diff a view shows."""
    return (f"<p class='nbimages-image-label' data-image='{'AB'[which]}'>{_e(what)} "
            f"{'AB'[which]}: {_e(_name(insp))}</p>")


def files_table_html(files: "pd.DataFrame", lost: dict[str, str] | None = None) -> str:
    """Rows of a file table (already filtered and cut) as HTML; the files in `lost` (path ->
    what a later layer did to them) are marked as wasted."""
    if files.empty:
        return "<p class='nbimages-muted'>no files here</p>"
    rows = []
    lost = lost or {}
    for r in files.itertuples(index=False):
        change = str(r.change)
        link = f" → {_e(r.linkname)}" if getattr(r, "linkname", "") else ""
        fate = lost.get(r.path)
        mark = (f"<span class='nbimages-lost-note' title='these bytes still ship in this "
                f"layer'>wasted: {_e(fate)}</span>" if fate else "")
        rows.append(f"<tr class='nbimages-file-row nbimages-{change}"
                    f"{' nbimages-lost' if fate else ''}'>"
                    f"<td class='nbimages-{change}'>{change}</td>"
                    f"<td class='nbimages-path'>{_e(r.path)}{link}{mark}</td>"
                    f"<td>{_e(r.kind)}</td>"
                    f"<td class='nbimages-num'>{format_bytes(int(r.size))}</td>"
                    f"<td>{_mode(r.mode)}</td><td>{int(r.uid)}:{int(r.gid)}</td></tr>")
    head = ("<thead><tr><th>change</th><th>path</th><th>kind</th><th class='nbimages-num'>size"
            "</th><th>mode</th><th>owner</th></tr></thead>")
    return f"<table class='nbimages-files'>{head}<tbody>{''.join(rows)}</tbody></table>"


def directory_chart(insp: "Inspection", depth: int = 2) -> str:
    bars = directory_bars(insp.files(final=True), depth)
    used = sorted({s.layer for bar in bars for s in bar.segments if s.layer is not None})
    legend = [(f"layer {i}", layer_color(i)) for i in used[:12]]
    return hbar_chart(bars, title=f"Final filesystem by directory (depth {depth}), "
                      "coloured by the layer that put the bytes there",
                      css_class="nbimages-chart nbimages-chart-dirs", legend=legend)


def layer_chart(insp: "Inspection") -> str:
    legend = [("wasted (overwritten or deleted later)", WASTE)] if insp.wasted_bytes else []
    return hbar_chart(layer_bars(insp), title="Bytes by layer",
                      css_class="nbimages-chart nbimages-chart-layers", legend=legend,
                      label_width=300, cut="end")


def waste_html(insp: "Inspection", limit: int = WASTE_ROWS) -> str:
    waste = insp.waste
    d = insp.dive
    head = (f"<h4>Wasted space</h4><p>Squashing would save "
            f"<span class='{'nbimages-waste' if insp.wasted_bytes else ''}'>"
            f"{format_bytes(insp.wasted_bytes)}</span> of {format_bytes(insp.size)}; dive's "
            f"efficiency score {insp.efficiency:.2%}, its potential wasted space "
            f"{format_bytes(d['inefficient_bytes'])}.</p>")
    if waste.empty:
        return head + "<p class='nbimages-muted'>No path is written twice or removed: no " \
                      "wasted space.</p>"
    head += waste_causes_html(insp)
    rows = []
    for r in waste.head(limit).itertuples(index=False):
        rows.append(f"<tr class='nbimages-waste-row'><td class='nbimages-path'>{_e(r.path)}</td>"
                    f"<td class='nbimages-num'>{int(r.count)}</td>"
                    f"<td class='nbimages-num nbimages-waste'>{format_bytes(int(r.wasted_bytes))}"
                    f"</td><td class='nbimages-num'>{format_bytes(int(r.total_bytes))}</td>"
                    f"<td>{_e(r.reason)}</td></tr>")
    more = (f"<p class='nbimages-muted'>… {len(waste) - limit:,} more: "
            "<code>inspect(...).waste</code></p>") if len(waste) > limit else ""
    notes = insp.notes()
    notes_html = ("<details><summary>Where dive counts differently</summary><ul>"
                  + "".join(f"<li>{_e(n)}</li>" for n in notes[:10]) + "</ul></details>"
                  if notes else "")
    return (head + "<table class='nbimages-waste-table'><thead><tr><th>path</th>"
            "<th class='nbimages-num'>layers</th><th class='nbimages-num'>wasted</th>"
            "<th class='nbimages-num'>dive total</th><th>last copy lost by</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{more}{notes_html}")


def waste_causes_html(insp: "Inspection", limit: int = 10) -> str:
    """The waste grouped by directory and cause, each group with the fix, largest first."""
    groups = insp.waste_by_cause
    if groups.empty:
        return ""
    rows = "".join(
        f"<tr class='nbimages-cause-row'><td class='nbimages-path'>{_e(r.directory)}</td>"
        f"<td class='nbimages-num'>{int(r.files):,}</td>"
        f"<td class='nbimages-num nbimages-waste'>{format_bytes(int(r.wasted_bytes))}</td>"
        f"<td>{_e(r.cause)}<br><b>Fix:</b> {_e(r.fix)}</td></tr>"
        for r in groups.head(limit).itertuples(index=False))
    more = (f"<p class='nbimages-muted'>{len(groups) - limit:,} more groups: "
            "<code>inspect(...).waste_by_cause</code></p>") if len(groups) > limit else ""
    return ("<h4>By cause</h4><table class='nbimages-cause-table'><thead><tr><th>directory</th>"
            "<th class='nbimages-num'>files</th><th class='nbimages-num'>wasted</th>"
            f"<th>cause and fix</th></tr></thead><tbody>{rows}</tbody></table>{more}"
            "<h4>By path</h4>")


def advice_html(insp: "Inspection", limit: int = WASTE_ROWS) -> str:
    """The Advice panel: what to change, the bytes it saves, the layer and step it concerns."""
    advice = insp.advice()
    total = int(advice["saves"].sum()) if len(advice) else 0
    head = (f"<h4>Advice</h4><p>These changes together would save "
            f"<span class='{'nbimages-waste' if total else ''}'>{format_bytes(total)}</span> of "
            f"{format_bytes(insp.size)}; <code>nbimages.squash</code> and <code>nbimages.slim"
            "</code> make the smaller image without a daemon.</p>")
    if advice.empty:
        return head + "<p class='nbimages-muted'>Nothing to advise: no cache, duplicate, " \
                      "deleted or rewritten file found.</p>"
    rows = []
    for r in advice.head(limit).itertuples(index=False):
        paths = "<br>".join(_e(p) for p in r.paths[:3])
        rows.append(f"<tr class='nbimages-advice-row'><td>{_e(r.kind)}</td>"
                    f"<td class='nbimages-num nbimages-waste'>{format_bytes(int(r.saves))}</td>"
                    f"<td class='nbimages-num'>{int(r.layer)}</td><td>{_e(r.change)}</td>"
                    f"<td class='nbimages-path'>{paths}</td></tr>")
    more = (f"<p class='nbimages-muted'>… {len(advice) - limit:,} more: "
            "<code>inspect(...).advice()</code></p>") if len(advice) > limit else ""
    return (head + "<table class='nbimages-advice-table'><thead><tr><th>kind</th>"
            "<th class='nbimages-num'>saves</th><th class='nbimages-num'>layer</th>"
            "<th>change to make</th><th>paths</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{more}")


def shared_layers(a: "Inspection", b: "Inspection") -> int:
    """How many bottom layers the two images share (same diff_id, same position)."""
    n = 0
    for x, y in zip(a.image.diff_ids, b.image.diff_ids):
        if x != y:
            break
        n += 1
    return n


def diff_summary_html(a: "Inspection", b: "Inspection", diff: "pd.DataFrame | None") -> str:
    assert diff is not None
    counts = diff["change"].value_counts()
    shared = shared_layers(a, b)
    la, lb = len(a.image.layers), len(b.image.layers)
    parts = [f"<span class='nbimages-{c}'>{counts.get(c, 0):,} {c}</span>"
             for c in ("added", "modified", "removed")]
    return (f"<div class='nbimages-diff-summary'><h4>Diff {_e(_name(a))} → {_e(_name(b))}</h4>"
            f"<p>{', '.join(parts)} paths. Bytes in layers {_delta(b.size - a.size)}, in the "
            f"final filesystem {_delta(b.final_size - a.final_size)}. "
            f"The images share their bottom {shared} of {la} / {lb} layers"
            f"{'' if shared else ' (none)'}.</p></div>")


def _delta(n: int) -> str:
    return ("+" if n >= 0 else "−") + format_bytes(abs(n))


def sort_diff(diff: "pd.DataFrame | None", sort: str = "impact") -> "pd.DataFrame | None":
    """The diff in the order people read it: by default the biggest size change first and
    paths whose only change is their mtime (directories touched by a later step) last; or by
    path, or by the size in B."""
    if diff is None or diff.empty:
        return diff
    if sort == "path":
        return diff.sort_values("path", kind="stable")
    after = diff["size_b"].fillna(0).astype("int64")
    if sort == "size":
        return diff.assign(_s=after).sort_values(["_s", "path"], ascending=[False, True],
                                                 kind="stable").drop(columns="_s")
    change = (after - diff["size_a"].fillna(0).astype("int64")).abs()
    mtime_only = diff["what"].astype(str) == "mtime"
    return diff.assign(_m=mtime_only, _c=change).sort_values(
        ["_m", "_c", "path"], ascending=[True, False, True], kind="stable").drop(
        columns=["_m", "_c"])


def diff_table_html(diff: "pd.DataFrame | None", limit: int = DIFF_ROWS) -> str:
    if diff is None or diff.empty:
        return "<p class='nbimages-muted'>The two filesystems are the same.</p>"
    rows = []
    for r in diff.head(limit).itertuples(index=False):
        sa = "" if _na(r.size_a) else format_bytes(int(r.size_a))
        sb = "" if _na(r.size_b) else format_bytes(int(r.size_b))
        rows.append(f"<tr class='nbimages-diff-row nbimages-{_e(r.change)}'>"
                    f"<td class='nbimages-{_e(r.change)}'>{_e(r.change)}</td>"
                    f"<td class='nbimages-path'>{_e(r.path)}</td><td>{_e(r.what)}</td>"
                    f"<td>{_e(r.kind_b if not _na(r.kind_b) else r.kind_a)}</td>"
                    f"<td class='nbimages-num'>{sa}</td><td class='nbimages-num'>{sb}</td></tr>")
    more = (f"<p class='nbimages-muted'>… {len(diff) - limit:,} more</p>"
            if len(diff) > limit else "")
    return ("<table class='nbimages-diff'><thead><tr><th>change</th><th>path</th><th>what</th>"
            "<th>kind</th><th class='nbimages-num'>size before</th>"
            "<th class='nbimages-num'>size after</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{more}")


def _na(value: Any) -> bool:
    import pandas as pd
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


# -------------------------------------------------------------------- the live app

def _widgets_live() -> bool:
    """True in a Jupyter kernel, where a widget view can be drawn by the frontend."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _App:
    """The ipywidgets app behind an Explorer."""

    def __init__(self, explorer: Explorer):
        import ipywidgets as W
        self.W = W
        self.ex = explorer
        self.image = 0                     # which image's layers are listed (1: the other)
        self.selected: int | None = None
        self._relabelling = False          # the change buttons' labels are being replaced
        self.rows: list[Any] = []
        self.buttons: list[Any] = []

        self.summary = W.HTML(f"<style>{CSS}</style>" + summary_html(explorer.inspection,
                                                                     explorer.other))
        # which image the Layers, Sizes and Waste tabs show (with a second image)
        self.which = W.ToggleButtons(options=[(f"A: {_name(explorer.inspection)}", 0)] + (
            [(f"B: {_name(explorer.other)}", 1)] if explorer.other is not None else []),
            description="image", layout=W.Layout(
                display="flex" if explorer.other is not None else "none"))
        self.which.add_class("nbimages-which")
        self.which.observe(lambda ch: self.show_image(ch["new"]), "value")
        self.labels = [W.HTML("") for _ in range(3)]  # "Layers of B: name", one per tab
        # layers + files
        self.layer_box = W.VBox([])
        self.layer_box.add_class("nbimages-layers")
        self.files_title = W.HTML("<p class='nbimages-muted'>Click a layer number to list its "
                                  "files.</p>")
        self.change = W.ToggleButtons(options=["all", *CHANGES, "wasted"], value="all",
                                      style={"button_width": "auto"})
        self.filter = W.Text(placeholder="filter paths (substring)", continuous_update=True,
                             layout=W.Layout(width="24em"))
        self.sort = W.Dropdown(options=[(v, k) for k, v in SORTS.items()], value="path",
                               description="sort", layout=W.Layout(width="20em"))
        for control in (self.change, self.filter, self.sort):
            control.observe(lambda _ch: self._relabelling or self.show_files(), "value")
        self.files_html = W.HTML("")
        self.files_html.add_class("nbimages-files-view")
        self.files_panel = W.VBox([self.files_title,
                                   W.HBox([self.change, self.filter, self.sort]),
                                   self.files_html])
        self.files_panel.add_class("nbimages-files-panel")
        header = W.HTML(
            "<div class='nbimages-layer-head'><span class='nbimages-cell' style='width:3.2em'>"
            "layer</span><span class='nbimages-cell nbimages-c-size'>size</span>"
            "<span class='nbimages-cell nbimages-c-files'>files + ~ -</span>"
            "<span class='nbimages-cell nbimages-c-waste'>wasted</span>"
            "<span class='nbimages-cell nbimages-c-cmd'>created by</span></div>",
            layout=W.Layout(width="auto"))
        layers_tab = W.VBox([self.labels[0], header, self.layer_box, self.files_panel])
        # sizes
        self.size_mode = W.ToggleButtons(options=[("by directory", "dirs"), ("by layer", "layers")],
                                         value="dirs")
        self.depth = W.Dropdown(options=[1, 2, 3, 4], value=2, description="depth",
                                layout=W.Layout(width="10em"))
        self.chart = W.HTML("")
        self.chart.add_class("nbimages-chart-view")
        for control in (self.size_mode, self.depth):
            control.observe(lambda _ch: self.show_chart(), "value")
        self.sizes_tab = sizes_tab = W.VBox([self.labels[1], W.HBox([self.size_mode, self.depth]),
                                             self.chart])
        # waste
        self.waste = W.HTML("")
        self.waste.add_class("nbimages-waste-view")
        self.waste_tab = waste_tab = W.VBox([self.labels[2], self.waste])
        children, titles = [layers_tab, sizes_tab, waste_tab], ["Layers", "Sizes", "Waste"]
        self.advice = W.HTML("")
        children.append(self.advice)
        titles.append("Advice")
        # diff
        if explorer.other is not None:
            diff = explorer.diff
            assert diff is not None
            counts = diff["change"].astype(str).value_counts()
            self.diff_change = W.ToggleButtons(
                options=[(f"all ({len(diff):,})", "all")] + [
                    (f"{c} ({counts.get(c, 0):,})", c) for c in DIFF_CHANGES],
                value="all", style={"button_width": "auto"})
            self.diff_filter = W.Text(placeholder="filter paths (substring)",
                                      continuous_update=True, layout=W.Layout(width="24em"))
            self.diff_sort = W.Dropdown(options=[(v, k) for k, v in DIFF_SORTS.items()],
                                        value="impact", description="sort",
                                        layout=W.Layout(width="22em"))
            self.diff_html = W.HTML("")
            self.diff_html.add_class("nbimages-diff-view")
            for control in (self.diff_change, self.diff_filter, self.diff_sort):
                control.observe(lambda _ch: self.show_diff(), "value")
            diff_tab = W.VBox([
                W.HTML(diff_summary_html(explorer.inspection, explorer.other, diff)),
                W.HBox([self.diff_change, self.diff_filter, self.diff_sort]), self.diff_html])
            children.insert(0, diff_tab)
            titles.insert(0, "Diff")
            self.show_diff()
        self.tabs = W.Tab(children=children, titles=titles)
        self.tabs.observe(lambda _ch: self.show_tab(), "selected_index")
        self.root = W.VBox([self.summary, self.which, self.tabs])
        self.root.add_class("nbimages-explorer")
        self.root.add_class("nbimages-live")
        self.show_image(0)

    # ------------------------------------------------------------ layers and files
    @property
    def insp(self) -> "Inspection":
        ex = self.ex
        return ex.other if self.image and ex.other is not None else ex.inspection

    def show_tab(self) -> None:
        """Fill the tab being shown if it is still empty. The first view (the summary and the
        layer table) needs only an inspection's results, which a stack of layers seen before
        has stored; the Sizes chart by directory and the waste by cause need the file tables,
        and the advice reads file contents: they are made when their tab is first shown."""
        tabs = self.tabs
        shown = tabs.children[tabs.selected_index or 0]
        if shown is self.sizes_tab and not self.chart.value:
            self.show_chart()
        elif shown is self.waste_tab and not self.waste.value:
            self.waste.value = waste_html(self.insp)
        elif shown is self.advice and not self.advice.value:
            self.advice.value = (image_label(self.insp, self.image, "Advice for")
                                 if self.ex.other is not None else "") + advice_html(self.insp)

    def show_image(self, which: int) -> None:
        """Show image A (0) or B (1) in the Layers, Sizes, Waste and Advice tabs, each labelled."""
        W = self.W
        self.image = which
        if self.ex.other is not None:
            for label, what in zip(self.labels, ("Layers of", "Sizes of", "Waste of")):
                label.value = image_label(self.insp, which, what)
        self.waste.value = self.advice.value = self.chart.value = ""
        self.show_tab()
        self.rows, self.buttons = [], []
        commands = layer_commands(self.insp)
        for r in self.insp.layers.itertuples(index=False):
            i = int(r.index)
            wasted = int(r.wasted_bytes)
            made = commands[i]
            button = W.Button(description=str(i), tooltip=f"list the files of layer {i}",
                              layout=W.Layout(width="3.6em"))
            button.add_class("nbimages-layer-select")
            button.on_click(lambda _b, i=i: self.select(i))
            waste = (f"<span class='nbimages-waste'>{format_bytes(wasted)}</span>" if wasted
                     else "<span class='nbimages-muted'>0 B</span>")
            cells = W.HTML(
                f"<span class='nbimages-cell nbimages-c-size'>{format_bytes(int(r.size))}</span>"
                f"<span class='nbimages-cell nbimages-c-files'>"
                f"{_changes_html(r.files_added, r.files_modified, r.files_deleted)}</span>"
                f"<span class='nbimages-cell nbimages-c-waste'>{waste}</span>"
                f"<span class='nbimages-cell nbimages-c-cmd' title='{_e(made)}'>"
                f"<span class='nbimages-swatch' style='background:{layer_color(i)}'></span>"
                f"{_e(short_command(made, 80))}</span>",
                layout=W.Layout(width="auto", flex="1 1 auto"))
            row = W.HBox([button, cells], layout=W.Layout(width="100%"))
            row.add_class("nbimages-layer-row")
            if wasted:
                row.add_class("nbimages-wasteful")
            self.rows.append(row)
            self.buttons.append(button)
        self.layer_box.children = self.rows
        self.selected = None
        self.files_html.value = ""
        # no layer selected: the change buttons must not keep the other image's counts
        self._relabel_changes(["all", *CHANGES, "wasted"])
        self.files_title.value = ("<p class='nbimages-muted'>Click a layer number to list its "
                                  "files.</p>")

    def select(self, layer: int) -> None:
        """Show the files of `layer` of the listed image."""
        n = len(self.rows)
        if not -n <= layer < n:
            raise NbimagesError(f"the image has {n} layers (0..{n - 1}); there is no layer "
                                f"{layer}.")
        layer %= n
        if self.selected is not None:
            self.rows[self.selected].remove_class("nbimages-selected")
            self.buttons[self.selected].button_style = ""
        self.selected = layer
        self.rows[layer].add_class("nbimages-selected")
        self.buttons[layer].button_style = "info"
        self.show_files()

    def _relabel_changes(self, options: list[Any]) -> None:
        """New labels (file counts) for the change buttons, keeping the chosen change:
        replacing the options of a ToggleButtons resets its value to the first."""
        value = self.change.value
        self._relabelling = True
        try:
            self.change.options = options
            self.change.value = value
        finally:
            self._relabelling = False

    def visible_files(self) -> "pd.DataFrame":
        """The selected layer's files as the controls filter and sort them."""
        if self.selected is None:
            import pandas as pd
            return pd.DataFrame(columns=["layer", "path", "kind", "size", "mode", "uid", "gid",
                                         "change", "linkname"])
        files = self.ex.files(self.selected, self.image)
        return filter_files(files, self.change.value, self.filter.value.strip(),
                            self.sort.value, lost=self.insp.lost_files(self.selected))

    def show_files(self) -> None:
        if self.selected is None:
            return
        layer = self.selected
        all_files = self.ex.files(layer, self.image)
        shown = self.visible_files()
        row = self.insp.layers.iloc[layer]
        made = layer_commands(self.insp)[layer]
        lost = self.insp.lost_files(layer)
        counts = all_files["change"].astype(str).value_counts()
        labels = {"all": f"all ({len(all_files):,})", "wasted": f"wasted ({len(lost):,})"}
        labels.update({c: f"{c} ({counts.get(c, 0):,})" for c in CHANGES})
        keys = ("all", *CHANGES, "wasted")
        if [o[0] if isinstance(o, tuple) else o for o in self.change.options] != \
                [labels[k] for k in keys]:
            self._relabel_changes([(labels[k], k) for k in keys])
        self.files_title.value = (
            f"<p class='nbimages-files-title'><b>Layer {layer}</b> · "
            f"{format_bytes(int(row['size']))} · <code>{_e(short_command(made, 100))}</code>"
            + (f" · <span class='nbimages-waste'>{format_bytes(int(row['wasted_bytes']))} "
               "wasted</span>" if int(row["wasted_bytes"]) else "") + "</p>")
        # the count and byte total of what the filter selected, above a box that scrolls
        total = format_bytes(int(shown["size"].sum())) if len(shown) else "0 B"
        count = (f"<p class='nbimages-files-count nbimages-muted'>{len(shown):,} of "
                 f"{len(all_files):,} files · {total}")
        if len(shown) > FILE_ROWS:
            count += (f" · showing {FILE_ROWS:,} of {len(shown):,}: filter by path to see "
                      "others")
        self.files_html.value = (count + "</p><div class='nbimages-scroll'>"
                                 + files_table_html(shown.head(FILE_ROWS), lost) + "</div>")

    # ------------------------------------------------------------ sizes, diff
    def show_chart(self) -> None:
        insp = self.insp
        if self.size_mode.value == "layers":
            self.depth.disabled = True
            self.chart.value = layer_chart(insp)
        else:
            self.depth.disabled = False
            self.chart.value = directory_chart(insp, self.depth.value)

    def visible_diff(self) -> "pd.DataFrame":
        d = self.ex.diff
        assert d is not None
        return sort_diff(filter_files(d, self.diff_change.value, self.diff_filter.value.strip(),
                                      "path"), self.diff_sort.value)

    def show_diff(self) -> None:
        self.diff_html.value = diff_table_html(self.visible_diff())


__all__ = ["explore", "Explorer", "filter_files", "sort_diff"]

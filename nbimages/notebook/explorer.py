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
from .charts import WASTE, directory_bars, hbar_chart, layer_bars, layer_color, short_command

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

CSS = """
.nbimages-explorer { font-size: 13px; }
.nbimages-explorer table { border-collapse: collapse; margin: 4px 0; }
.nbimages-explorer table[class] th, .nbimages-explorer table[class] td { padding: 2px 8px;
  text-align: left; border-bottom: 1px solid rgba(128,128,128,.25); white-space: nowrap; }
.nbimages-explorer table[class] td.nbimages-num,
.nbimages-explorer table[class] th.nbimages-num { text-align: right; }
.nbimages-explorer .nbimages-cmd { max-width: 46em; overflow: hidden; text-overflow: ellipsis; }
.nbimages-explorer .nbimages-path { font-family: monospace; }
.nbimages-explorer .nbimages-added { color: #2e7d32; }
.nbimages-explorer .nbimages-modified { color: #b26a00; }
.nbimages-explorer .nbimages-deleted, .nbimages-explorer .nbimages-removed { color: #c62828; }
.nbimages-explorer tr.nbimages-deleted .nbimages-path,
.nbimages-explorer tr.nbimages-removed .nbimages-path { text-decoration: line-through; }
.nbimages-explorer .nbimages-waste { color: #c62828; font-weight: bold; }
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
.nbimages-explorer .nbimages-muted { color: #777; }
.nbimages-explorer details { margin: 2px 0; }
"""


def explore(source: Any, diff: Any = None, *, platform: str | None = None) -> "Explorer":
    """Open an explorer on `source` (any source string, Image or Inspection).

    With `diff=OTHER` it also compares the two images path by path (a Diff tab, and the
    layer table of either image).
    """
    a = inspect(source, platform=platform)
    b = inspect(diff, platform=platform) if diff is not None else None
    return Explorer(a, b)


def filter_files(files: "pd.DataFrame", change: str | None = None, text: str = "",
                 sort: str = "path") -> "pd.DataFrame":
    """The rows of a file table the explorer shows: one `change` (or all), paths containing
    `text` (case-insensitive), sorted by path, by size (largest first) or by change."""
    frame = files
    if change and change != "all":
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

    # ---------------------------------------------------------------- static views
    def to_html(self) -> str:
        """The whole explorer as static HTML (no scripts, no network): what nbconvert and
        GitHub's viewer show."""
        a, b = self.inspection, self.other
        parts = [f"<div class='nbimages-explorer nbimages-static'><style>{CSS}</style>",
                 summary_html(a, b)]
        images = [(a, 0)] + ([(b, 1)] if b is not None else [])
        for insp, which in images:
            if b is not None:
                parts.append(f"<h4>Layers of {html.escape(_name(insp))}</h4>")
            parts.append(layers_table_html(insp))
            parts.append(self._static_layer_files(insp, which))
        parts.append("<div class='nbimages-charts'>")
        parts.append(directory_chart(a))
        parts.append(layer_chart(a))
        parts.append("</div>")
        parts.append(waste_html(a))
        if b is not None:
            parts.append(diff_summary_html(a, b, self.diff))
            parts.append(diff_table_html(self.diff, limit=DIFF_ROWS))
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
                       f"<summary>{html.escape(summary)}</summary>{files_table_html(shown)}")
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
    for r in insp.layers.itertuples(index=False):
        i = int(r.index)
        wasteful = int(r.wasted_bytes) > 0
        cls = "nbimages-layer-row" + (" nbimages-wasteful" if wasteful else "")
        made = " ".join(str(r.created_by or "").split())
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


def files_table_html(files: "pd.DataFrame") -> str:
    """Rows of a file table (already filtered and cut) as HTML."""
    if files.empty:
        return "<p class='nbimages-muted'>no files here</p>"
    rows = []
    for r in files.itertuples(index=False):
        change = str(r.change)
        link = f" → {_e(r.linkname)}" if getattr(r, "linkname", "") else ""
        rows.append(f"<tr class='nbimages-file-row nbimages-{change}'>"
                    f"<td class='nbimages-{change}'>{change}</td>"
                    f"<td class='nbimages-path'>{_e(r.path)}{link}</td>"
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
    return hbar_chart(layer_bars(insp.layers), title="Bytes by layer",
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
        # layers + files
        self.which = W.ToggleButtons(options=[(f"A: {_name(explorer.inspection)}", 0)] + (
            [(f"B: {_name(explorer.other)}", 1)] if explorer.other is not None else []),
            description="layers of", layout=W.Layout(
                display="flex" if explorer.other is not None else "none"))
        self.which.observe(lambda ch: self.show_image(ch["new"]), "value")
        self.layer_box = W.VBox([])
        self.layer_box.add_class("nbimages-layers")
        self.files_title = W.HTML("<p class='nbimages-muted'>Click a layer number to list its "
                                  "files.</p>")
        self.change = W.ToggleButtons(options=["all", *CHANGES], value="all",
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
        layers_tab = W.VBox([self.which, header, self.layer_box, self.files_panel])
        # sizes
        self.size_mode = W.ToggleButtons(options=[("by directory", "dirs"), ("by layer", "layers")],
                                         value="dirs")
        self.depth = W.Dropdown(options=[1, 2, 3, 4], value=2, description="depth",
                                layout=W.Layout(width="10em"))
        self.chart = W.HTML("")
        self.chart.add_class("nbimages-chart-view")
        for control in (self.size_mode, self.depth):
            control.observe(lambda _ch: self.show_chart(), "value")
        sizes_tab = W.VBox([W.HBox([self.size_mode, self.depth]), self.chart])
        # waste
        waste_tab = W.HTML(waste_html(explorer.inspection))
        children, titles = [layers_tab, sizes_tab, waste_tab], ["Layers", "Sizes", "Waste"]
        # diff
        if explorer.other is not None:
            self.diff_change = W.ToggleButtons(options=["all", "added", "modified", "removed"],
                                               value="all", style={"button_width": "auto"})
            self.diff_filter = W.Text(placeholder="filter paths (substring)",
                                      continuous_update=True, layout=W.Layout(width="24em"))
            self.diff_html = W.HTML("")
            self.diff_html.add_class("nbimages-diff-view")
            for control in (self.diff_change, self.diff_filter):
                control.observe(lambda _ch: self.show_diff(), "value")
            diff_tab = W.VBox([
                W.HTML(diff_summary_html(explorer.inspection, explorer.other, explorer.diff)),
                W.HBox([self.diff_change, self.diff_filter]), self.diff_html])
            children.insert(0, diff_tab)
            titles.insert(0, "Diff")
            self.show_diff()
        self.tabs = W.Tab(children=children, titles=titles)
        self.root = W.VBox([self.summary, self.tabs])
        self.root.add_class("nbimages-explorer")
        self.show_image(0)
        self.show_chart()

    # ------------------------------------------------------------ layers and files
    @property
    def insp(self) -> "Inspection":
        ex = self.ex
        return ex.other if self.image and ex.other is not None else ex.inspection

    def show_image(self, which: int) -> None:
        """List the layers of image A (0) or B (1)."""
        W = self.W
        self.image = which
        self.rows, self.buttons = [], []
        for r in self.insp.layers.itertuples(index=False):
            i = int(r.index)
            wasted = int(r.wasted_bytes)
            made = " ".join(str(r.created_by or "").split())
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
        self._relabel_changes(["all", *CHANGES])
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
                            self.sort.value)

    def show_files(self) -> None:
        if self.selected is None:
            return
        layer = self.selected
        all_files = self.ex.files(layer, self.image)
        shown = self.visible_files()
        row = self.insp.layers.iloc[layer]
        made = " ".join(str(row["created_by"] or "").split())
        counts = all_files["change"].astype(str).value_counts()
        labels = {"all": f"all ({len(all_files):,})"}
        labels.update({c: f"{c} ({counts.get(c, 0):,})" for c in CHANGES})
        if [o[0] if isinstance(o, tuple) else o for o in self.change.options] != \
                [labels[k] for k in ("all", *CHANGES)]:
            self._relabel_changes([(labels[k], k) for k in ("all", *CHANGES)])
        self.files_title.value = (
            f"<p class='nbimages-files-title'><b>Layer {layer}</b> · "
            f"{format_bytes(int(row['size']))} · <code>{_e(short_command(made, 100))}</code>"
            + (f" · <span class='nbimages-waste'>{format_bytes(int(row['wasted_bytes']))} "
               "wasted</span>" if int(row["wasted_bytes"]) else "") + "</p>")
        note = ""
        if len(shown) > FILE_ROWS:
            note = (f"<p class='nbimages-muted'>showing {FILE_ROWS:,} of {len(shown):,}: "
                    "filter by path to see others</p>")
        self.files_html.value = files_table_html(shown.head(FILE_ROWS)) + note

    # ------------------------------------------------------------ sizes, diff
    def show_chart(self) -> None:
        insp = self.ex.inspection
        if self.size_mode.value == "layers":
            self.depth.disabled = True
            self.chart.value = layer_chart(insp)
        else:
            self.depth.disabled = False
            self.chart.value = directory_chart(insp, self.depth.value)

    def visible_diff(self) -> "pd.DataFrame":
        d = self.ex.diff
        assert d is not None
        return filter_files(d, self.diff_change.value, self.diff_filter.value.strip(), "path")

    def show_diff(self) -> None:
        self.diff_html.value = diff_table_html(self.visible_diff())


__all__ = ["explore", "Explorer", "filter_files"]

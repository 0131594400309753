"""Size pictures as inline SVG: horizontal stacked bars, drawn here with no library and no network.

The SVG is text, so the same picture shows in a live JupyterLab (inside an ipywidgets.HTML),
in a static nbconvert export and in GitHub's notebook viewer. Each bar is a row of segments
(bytes of one layer, or the wasted part of a layer); hovering a segment shows its `<title>`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from ..analysis.table import printable
from ..progress import format_bytes

if TYPE_CHECKING:
    import pandas as pd

# Okabe-Ito and Tableau-like hues that stay apart for colour-blind readers; layer i gets
# PALETTE[i % len(PALETTE)]. Wasted bytes are always drawn in WASTE with a hatch.
PALETTE = ["#4e79a7", "#59a14f", "#9c755f", "#b07aa1", "#76b7b2", "#edc948", "#bab0ac",
           "#ff9da7", "#86bcb6", "#8cd17d", "#a0cbe8", "#d4a6c8"]
WASTE = "#e15759"


def _escape(text: str) -> str:
    """HTML-escaped, with names that are not UTF-8 as \\xNN (see analysis/table.py)."""
    return html.escape(printable(text))


def layer_color(index: int) -> str:
    """The colour of layer `index` in every chart (stable across charts of one image)."""
    return PALETTE[index % len(PALETTE)]


@dataclass
class Segment:
    value: int
    color: str
    tip: str = ""
    wasted: bool = False
    layer: int | None = None


@dataclass
class Bar:
    label: str
    segments: list[Segment] = field(default_factory=list)
    note: str = ""          # right of the bar (e.g. "1.2 MB, 40 files")
    tip: str = ""           # on the label

    @property
    def total(self) -> int:
        return sum(s.value for s in self.segments)


def hbar_chart(bars: list[Bar], *, title: str = "", width: int = 720, label_width: int = 230,
               note_width: int = 150, css_class: str = "nbimages-chart",
               legend: Iterable[tuple[str, str]] = (), cut: str = "middle") -> str:
    """An SVG of horizontal stacked bars, one per `Bar`, scaled to the largest total.

    Labels longer than the label column are cut in the middle (paths: both ends matter) or
    at the `end` (commands); the whole label stays in the hover title.
    """
    row_h, gap, top = 20, 6, 28 if title else 6
    legend = list(legend)
    legend_h = 22 if legend else 0
    height = top + len(bars) * (row_h + gap) + legend_h + 4
    plot_w = max(40, width - label_width - note_width - 16)
    scale_max = max((b.total for b in bars), default=0) or 1
    out = [f'<svg class="{_escape(css_class)}" xmlns="http://www.w3.org/2000/svg" '
           f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'font-family="sans-serif" font-size="12">',
           '<defs><pattern id="nbimages-hatch" width="6" height="6" '
           'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           f'<rect width="6" height="6" fill="{WASTE}"/>'
           '<line x1="0" y1="0" x2="0" y2="6" stroke="#fff" stroke-width="2" '
           'stroke-opacity="0.6"/></pattern></defs>']
    if title:
        out.append(f'<text x="0" y="16" font-weight="bold" font-size="13">'
                   f'{_escape(title)}</text>')
    if not bars:
        out.append(f'<text x="0" y="{top + 14}" fill="#666">nothing to show</text>')
    for n, bar in enumerate(bars):
        y = top + n * (row_h + gap)
        label = _cut(bar.label, max(8, int((label_width - 10) / 6.6)), cut)
        out.append(f'<g class="nbimages-bar" data-label="{_escape(bar.label)}">')
        out.append(f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">'
                   f'<title>{_escape(bar.tip or bar.label)}</title>{_escape(label)}</text>')
        x = float(label_width)
        for seg in bar.segments:
            if seg.value <= 0:
                continue
            w = max(1.0, plot_w * seg.value / scale_max)
            fill = "url(#nbimages-hatch)" if seg.wasted else seg.color
            cls = "nbimages-seg nbimages-wasted" if seg.wasted else "nbimages-seg"
            out.append(f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" '
                       f'height="{row_h}" fill="{fill}" stroke="#fff" stroke-width="0.5">'
                       f'<title>{_escape(seg.tip)}</title></rect>')
            x += w
        note = bar.note or format_bytes(bar.total)
        out.append(f'<text x="{x + 6:.1f}" y="{y + 14}" fill="#333">{_escape(note)}</text>')
        out.append("</g>")
    if legend:
        y = top + len(bars) * (row_h + gap) + 4
        x = 0
        for name, color in legend:
            fill = "url(#nbimages-hatch)" if color == WASTE else color
            out.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{fill}"/>'
                       f'<text x="{x + 16}" y="{y + 11}">{_escape(name)}</text>')
            x += 24 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def directory_bars(final_files: "pd.DataFrame", depth: int = 2, limit: int = 15) -> list[Bar]:
    """Bytes of the final filesystem by directory prefix, each bar split by the layer that
    put the files there (from `Inspection.files(final=True)`)."""
    if final_files.empty:
        return []
    files = final_files[final_files["kind"].astype(str) != "dir"]
    if files.empty:
        return []
    prefix = files["path"].map(lambda p: _prefix(p, depth))
    by = files.assign(prefix=prefix).groupby(["prefix", "layer"], observed=True)["size"].sum()
    totals = by.groupby(level=0).sum().sort_values(ascending=False, kind="stable")
    counts = files.assign(prefix=prefix).groupby("prefix").size()
    bars = []
    for name in list(totals.index)[:limit]:
        total = int(totals[name])
        segs = [Segment(int(v), layer_color(int(layer)),
                        f"{name}: {format_bytes(int(v))} from layer {int(layer)}",
                        layer=int(layer))
                for layer, v in by[name].items()]
        n = int(counts[name])
        bars.append(Bar(name, segs, f"{format_bytes(total)}, {n:,} file{'' if n == 1 else 's'}"))
    rest = list(totals.index)[limit:]
    if rest:
        size = int(totals[rest].sum())
        bars.append(Bar(f"({len(rest)} more)", [Segment(size, "#cccccc", "the other directories")],
                        f"{format_bytes(size)}"))
    return bars


def layer_bars(layers: "pd.DataFrame") -> list[Bar]:
    """One bar per layer: the bytes that stay in the image, then (hatched) the wasted ones."""
    bars = []
    for row in layers.itertuples(index=False):
        i = int(row.index)
        wasted = int(row.wasted_bytes)
        kept = int(row.size) - wasted
        made = " ".join(str(row.created_by or "").split())
        segs = [Segment(kept, layer_color(i), f"layer {i}: {format_bytes(kept)} kept")]
        if wasted:
            segs.append(Segment(wasted, WASTE, f"layer {i}: {format_bytes(wasted)} wasted "
                                "(overwritten or deleted by a later layer)", wasted=True))
        note = format_bytes(int(row.size)) + (f" ({format_bytes(wasted)} wasted)" if wasted else "")
        bars.append(Bar(f"{i}  {short_command(made)}", segs, note, tip=made or f"layer {i}"))
    return bars


def short_command(created_by: str, limit: int = 60) -> str:
    """A history command made readable: no '/bin/sh -c #(nop)', no trailing content hash."""
    text = " ".join(created_by.split())
    for noise in ("/bin/sh -c #(nop) ", "/bin/sh -c "):
        if text.startswith(noise):
            text = text[len(noise):]
            break
    cut = text.find(" # sha256:")
    if cut > 0:
        text = text[:cut]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _cut(text: str, n: int, where: str) -> str:
    if len(text) <= n:
        return text
    if where == "end":
        return text[:n - 1] + "…"
    half = (n - 1) // 2
    return text[:half] + "…" + text[len(text) - (n - 1 - half):]


def _prefix(path: str, depth: int) -> str:
    parts = path.strip("/").split("/")[:-1][:depth]
    return "/" + "/".join(parts)


__all__ = ["Bar", "Segment", "hbar_chart", "directory_bars", "layer_bars", "layer_color",
           "short_command", "PALETTE", "WASTE"]

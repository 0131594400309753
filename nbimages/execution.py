"""Run a notebook inside its image and compare every cell's outputs with the saved ones.

    r = nbimages.execute("paper.ipynb", image="paper:1")     # `nbimages execute paper.ipynb --image paper:1`
    r.ok                  # True when every compared cell gives its saved outputs again
    r.table               # cell, execution_count, status (same/differs/error/new/...), diff

The cells run with nbclient in a Jupyter kernel inside the image (nbimages.kernel, on the
Docker engine), in a fresh kernel from top to bottom. Cells that describe or inspect the
image rather than the analysis (`%image` / `%%image` lines, `%load_ext nbimages`,
`import nbimages`) are skipped: the image does not need nbimages, and they keep their saved
outputs. A cell tagged `nbimages-volatile`, or named with ignore_cells, runs but is not
compared.

What is compared: stream output (stdout and stderr, each as one text), the text/plain of
results and displays, errors (name and message, not the traceback) and images (PNG, JPEG,
GIF, SVG) by their SHA-256. HTML and other rich forms are not compared (they repeat the
text/plain or carry random ids). Before comparing, text is normalised: ANSI colours are
removed, line ends unified and trailing spaces dropped; memory addresses (`0x7f3a…`) become
`0x…`; durations (`1.52 s`, `830 ms`, `12.1 µs ± 96 ns per loop`, `Wall time: …`) become
`<time>`; temporary paths (`/tmp/…`, `/var/folders/…`) become `<tmp>`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from . import kernel as kernels
from .atomic import write_atomic
from .errors import NbimagesError
from .workflow.notebook_recipe import (build_notebook, cell_source, notebook_text, read_notebook,
                                       record_in)
from .workflow.verify import Verification, verify

if TYPE_CHECKING:
    from nbclient import NotebookClient

__all__ = ["execute", "verify_outputs", "Execution", "CellResult", "normalise", "comparable", "VOLATILE_TAG",
           "ExecuteError"]

VOLATILE_TAG = "nbimages-volatile"
PASSING = ("same", "skipped", "ignored")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")

# Cells of the notebook's own tooling: they build or inspect the image, and need nbimages.
_TOOLING = re.compile(r"^[ \t]*(?:[\w.\[\], \t]+=[ \t]*)?%%?image\b"
                      r"|^[ \t]*%load_ext[ \t]+nbimages\b"
                      r"|^[ \t]*(?:import|from)[ \t]+nbimages\b", re.M)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RULES = (
    (re.compile(r"\b0x[0-9a-fA-F]{4,16}\b"), "0x…"),
    (re.compile(r"(?:/private)?(?:/var/folders|/tmp|/var/tmp)/[^\s'\"<>()\[\],:]*"), "<tmp>"),
    (re.compile(r"^(?:CPU times|Wall time):.*$", re.M), "<timing>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ns|µs|μs|us|ms)\b"
                r"|\b\d+\.\d+\s?(?:s|sec|secs|seconds|min|mins|minutes)\b"), "<time>"),
    (re.compile(r"\b\d[\d,]* loops? each\b"), "N loops each"),
)


class ExecuteError(NbimagesError):
    """A notebook that cannot be executed (no code cells, no image given, a bad cell number)."""


def normalise(text: str) -> str:
    """Text as it is compared: see the module docstring for the rules."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def comparable(outputs: Iterable[dict]) -> list[tuple[str, str]]:
    """A cell's outputs as (kind, normalised value) pairs, in the order they are compared."""
    streams: dict[str, str] = {}
    items: list[tuple[str, str]] = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            name = out.get("name", "stdout")
            streams[name] = streams.get(name, "") + notebook_text(out.get("text"))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            for mime in IMAGE_TYPES:
                if mime in data:
                    raw = notebook_text(data[mime])
                    blob = raw.encode() if mime == "image/svg+xml" else \
                        base64.b64decode("".join(raw.split()) or b"")
                    items.append((mime, "sha256:" + hashlib.sha256(blob).hexdigest()[:16]))
            if "text/plain" in data and not any(m in data for m in IMAGE_TYPES):
                items.append(("result" if kind == "execute_result" else "display",
                              normalise(notebook_text(data["text/plain"]))))
        elif kind == "error":
            items.append(("error", normalise(f"{out.get('ename')}: {out.get('evalue')}")))
    head = [(name, normalise(text)) for name, text in sorted(streams.items())
            if normalise(text)]
    return head + items


def _short_diff(saved: list[tuple[str, str]], new: list[tuple[str, str]]) -> str:
    """The first place where two comparable lists differ, in one line."""
    def clip(s: str, n: int = 60) -> str:
        s = s.replace("\n", "⏎")
        return s if len(s) <= n else s[:n - 1] + "…"

    for (k1, v1), (k2, v2) in zip(saved, new):
        if k1 != k2:
            return f"saved {k1} output, now {k2}"
        if v1 != v2:
            l1, l2 = v1.split("\n"), v2.split("\n")
            for n, (a, b) in enumerate(zip(l1, l2), start=1):
                if a != b:
                    return f"{k1} line {n}: saved {clip(a)!r}, now {clip(b)!r}"
            shorter = "saved" if len(l1) < len(l2) else "new"
            extra = (l2 if len(l1) < len(l2) else l1)[min(len(l1), len(l2))]
            return f"{k1}: the {shorter} output ends before line {min(len(l1), len(l2)) + 1} " \
                   f"({clip(extra)!r})"
    if len(saved) > len(new):
        k, v = saved[len(new)]
        return f"missing {k} output {clip(v)!r}"
    k, v = new[len(saved)]
    return f"new {k} output {clip(v)!r}"


@dataclass
class CellResult:
    """How one cell of the notebook fared."""

    cell: int                       # 1-based position in the notebook (markdown cells count)
    cell_id: str | None
    execution_count: int | None     # the saved one, as the notebook shows it
    new_count: int | None
    status: str                     # same, differs, error, new, skipped, ignored, not run
    diff: str = ""
    first_line: str = ""


@dataclass
class Execution:
    """The result of execute(): every code cell's status, and the executed notebook."""

    notebook: Path
    image: str
    image_id: str | None
    cells: list[CellResult] = field(default_factory=list)
    executed: Any = None            # the executed notebook (nbformat node)
    output: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every compared cell gave its saved outputs again."""
        return bool(self.cells) and all(c.status in PASSING for c in self.cells)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failed(self) -> list[CellResult]:
        return [c for c in self.cells if c.status not in PASSING]

    @property
    def table(self) -> Any:
        """One row per code cell: cell, execution_count, new_count, status, diff, source."""
        import pandas as pd
        return pd.DataFrame(self.to_json(), columns=["cell", "execution_count", "new_count",
                                                     "status", "diff", "source"])

    def to_json(self) -> list[dict[str, Any]]:
        """The table as records (`nbimages execute --json`)."""
        return [{"cell": c.cell, "execution_count": c.execution_count, "new_count": c.new_count,
                 "status": c.status, "diff": c.diff, "source": c.first_line} for c in self.cells]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for c in self.cells:
            counts[c.status] = counts.get(c.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in counts.items())
        where = f"image {self.image}" + (f" ({self.image_id[:19]})" if self.image_id else "")
        if self.ok:
            head = f"outputs reproduced: {self.notebook.name} in {where}"
        else:
            bad = ", ".join(f"cell {c.cell} {c.status}" for c in self.failed[:8])
            head = f"OUTPUTS DIFFER: {self.notebook.name} in {where}: {bad}"
        return f"{head} ({parts}; {self.seconds:.1f} s)"

    def lines(self) -> list[str]:
        out = [self.summary()]
        width = max([len(c.status) for c in self.cells] + [6])
        out.append(f"  {'cell':>4} {'[n]':>5}  {'status':<{width}}  diff / source")
        for c in self.cells:
            count = "" if c.execution_count is None else f"[{c.execution_count}]"
            text = c.diff or c.first_line
            out.append(f"  {c.cell:>4} {count:>5}  {c.status:<{width}}  {text}")
        if self.output:
            out.append(f"  executed copy: {self.output}")
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.ok else "#cf222e"
        rows = "".join(
            f"<tr><td>{c.cell}</td><td>{'' if c.execution_count is None else c.execution_count}"
            f"</td><td style='color:{'#1a7f37' if c.status in PASSING else '#cf222e'}'>"
            f"{c.status}</td><td><code>{html.escape(c.diff or c.first_line)}</code></td></tr>"
            for c in self.cells)
        return (f"<p style='color:{colour}'><b>{html.escape(self.summary())}</b></p>"
                "<table><tr><th>cell</th><th>[n]</th><th>status</th><th>diff / source</th></tr>"
                f"{rows}</table>")


def _first_line(cell: dict) -> str:
    line = next((l.strip() for l in cell_source(cell).splitlines() if l.strip()), "")
    return line if len(line) <= 70 else line[:69] + "…"


def _ignored(nb: Any, ignore_cells: Iterable[Any], path: Path) -> set[int]:
    """0-based indices of the cells named by number (1-based) or cell id."""
    ids = {str(c.get("id")): i for i, c in enumerate(nb.cells) if c.get("id")}
    out = set()
    for item in ignore_cells:
        text = str(item).strip()
        if text.isdigit():
            index = int(text) - 1
            if not 0 <= index < len(nb.cells):
                raise ExecuteError(f"--ignore-cell {text}: {path.name} has {len(nb.cells)} cells "
                                   "(numbered from 1, markdown cells included).")
        elif text in ids:
            index = ids[text]
        else:
            raise ExecuteError(f"--ignore-cell {text!r}: give a cell number (from 1, markdown "
                               f"cells included) or a cell id of {path.name}.")
        if nb.cells[index].get("cell_type") != "code":
            raise ExecuteError(f"--ignore-cell {text}: cell {index + 1} of {path.name} is a "
                               f"{nb.cells[index].get('cell_type')} cell, not a code cell.")
        out.add(index)
    return out


def _default_image(doc: dict, path: Path) -> str:
    """The image the notebook's metadata records a build of (read_notebook's `doc`)."""
    rec = record_in(doc) or {}
    image = rec.get("tag") or rec.get("digest")
    if not image:
        raise ExecuteError(f"execute {path.name}: in which image? Give it (--image REF, or "
                           "image=...); the notebook records no build to take it from.")
    return image


def execute(notebook: str | os.PathLike, image: Any = None, *, output: str | os.PathLike | None = None,
            timeout: float | None = 600, ignore_cells: Iterable[Any] = (),
            pull: str = "missing") -> Execution:
    """Run the notebook's cells in a kernel inside `image` and compare their outputs.

    `image`: an engine or store name, a registry reference or an Image (default: the build
    recorded in the notebook's metadata). The image needs Python and ipykernel. `output`:
    where to write the executed notebook (atomically; default: not written). `timeout`: seconds
    per cell, after which the cell is interrupted and reported as an error. `ignore_cells`:
    cell numbers (1-based, markdown cells included) or cell ids that run but are not compared;
    cells tagged `nbimages-volatile` are treated the same way.
    """
    # nbformat, jupyter_client and nbclient (~1 s together) load when a notebook is run, not
    # with the %image table or the CLI.
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    path = Path(notebook).expanduser().resolve()
    doc = read_notebook(path)  # read once; its one-paragraph errors for a missing or malformed file
    nb = _as_node(doc)
    code = [i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"
            and cell_source(c).strip()]
    if not code:
        raise ExecuteError(f"{path.name} has no code cells: there is nothing to run and no output "
                           "to compare.")
    tooling = {i for i in code if _TOOLING.search(cell_source(nb.cells[i]))}
    if not set(code) - tooling:
        raise ExecuteError(f"every code cell of {path.name} is an %image cell (they build the "
                           "image and are not run inside it): there is no analysis to compare.")
    ignored = _ignored(nb, ignore_cells, path)
    ignored |= {i for i in code if VOLATILE_TAG in (nb.cells[i].get("metadata") or {}).get("tags", [])}
    image = image if image is not None else _default_image(doc, path)
    saved = {i: [dict(o) for o in nb.cells[i].get("outputs", [])] for i in code}
    counts = {i: nb.cells[i].get("execution_count") for i in code}

    started = time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="nbimages-execute-"))
    name = f"nbimages-execute-{os.urandom(4).hex()}"
    try:
        ksm = KernelSpecManager(kernel_dirs=[str(home / "share" / "jupyter" / "kernels")])
        info = kernels.install(image, name, prefix=str(home), pull=pull, kernel_spec_manager=ksm)
        km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                interrupt_on_timeout=True, record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}})
        log = home / "kernel.log"
        with open(log, "wb") as stderr:
            try:
                results = _run(client, nb, code, tooling, ignored, saved, counts, timeout,
                               stderr=stderr)
            except RuntimeError as e:  # nbclient: the kernel died before it answered
                raise ExecuteError(f"the kernel in image {info.image} did not start: {e}. Its "
                                   f"log ends with: {_tail(log)}") from None
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result = Execution(path, info.image, info.image_id, results, nb,
                       seconds=time.monotonic() - started)
    if output is not None:
        result.output = Path(output).expanduser()
        write_atomic(result.output, nbformat.writes(nb).encode("utf-8"))
    return result


def _as_node(doc: dict) -> Any:
    """read_notebook's notebook as nbformat.reads(text, as_version=4) gives it, without reading
    and parsing the file again. A v4 file's JSON goes through nbformat's own v4 reader (lines
    joined: nbclient wants each source as one str; transient keys dropped) and is validated,
    a problem only logged, as nbformat.reads does; older formats were converted and validated
    by read_notebook (with nbformat.reads) already."""
    import nbformat
    if isinstance(doc, nbformat.NotebookNode):
        return doc
    try:
        nb = nbformat.v4.to_notebook_json(doc)
    except AttributeError as e:  # a missing key, as nbformat's reader reports it
        raise nbformat.ValidationError(
            f"The notebook is invalid and is missing an expected key: {e}") from None
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        nbformat.get_logger().error("Notebook JSON is invalid: %s", e)
    return nb


def _tail(log: Path, n: int = 600) -> str:
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip()
        return text[-n:] or "(nothing)"
    return "(no log)"


def _run(client: NotebookClient, nb: Any, code: list[int], tooling: set[int], ignored: set[int],
         saved: dict[int, list], counts: dict[int, Any], timeout: float | None,
         stderr: Any) -> list[CellResult]:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    results: list[CellResult] = []
    dead: str | None = None
    with client.setup_kernel(cleanup_kc=True, stderr=stderr):
        for i in code:
            cell = nb.cells[i]
            row = CellResult(i + 1, cell.get("id"), counts[i], None, "same",
                             first_line=_first_line(cell))
            results.append(row)
            if i in tooling:
                row.status, row.diff = "skipped", "an %image / nbimages cell: not run in the image"
                continue
            if dead:
                row.status, row.diff = "not run", dead
                continue
            began = time.monotonic()
            try:
                client.execute_cell(cell, i)
            except DeadKernelError as e:
                dead = f"the kernel died in cell {i + 1}"
                row.status, row.diff = "error", f"the kernel died ({str(e)[:80]})"
                continue
            except CellTimeoutError:
                row.status, row.diff = "error", f"timed out after {timeout:g} s"
                continue
            row.new_count = cell.get("execution_count")
            if timeout is not None and time.monotonic() - began >= timeout:
                # nbclient interrupted it (interrupt_on_timeout); its outputs may be cut short
                row.status, row.diff = "error", f"timed out after {timeout:g} s (interrupted)"
                continue
            _judge(row, saved[i], cell.get("outputs", []), i in ignored)
    return results


def _judge(row: CellResult, saved: list, outputs: list, ignored: bool) -> None:
    before, after = comparable(saved), comparable(outputs)
    errors = [v for k, v in after if k == "error"]
    if ignored:
        row.status, row.diff = "ignored", "volatile: run, not compared"
    elif before == after:
        row.status = "same"
    elif errors and ("error", errors[0]) not in before:
        row.status, row.diff = "error", errors[0][:100]
    elif not before:
        row.status, row.diff = "new", _short_diff(before, after)
    else:
        row.status, row.diff = "differs", _short_diff(before, after)


def verify_outputs(notebook: str | os.PathLike, digest: str | None = None, *, expected: Any = None,
                   timeout: float | None = 600, ignore_cells: Iterable[Any] = ()
                   ) -> tuple[Verification, Execution | None]:
    """A handout's whole reproducibility claim: same digest, then same outputs.

    Rebuilds the notebook's image in a clean store and compares the digest (nbimages.verify);
    if it matches, runs the notebook in that image and compares every cell's outputs
    (execute). Returns (verification, execution); the execution is None on a digest mismatch.
    """
    v = verify(notebook, digest, expected=expected)
    if not v.ok:
        return v, None
    # The same build in the user's store (its cache makes it quick), to hand to the engine.
    image = build_notebook(notebook, record=False)
    if v.digest not in (image.digest, image.id):
        raise ExecuteError(f"the image built from {Path(notebook).name} in the local store "
                           f"({image.digest}) is not the verified one ({v.digest}); the local "
                           "store holds a different base or cached layers. Run again with "
                           "NBIMAGES_HOME pointing to an empty folder.")
    return v, execute(notebook, image, timeout=timeout, ignore_cells=ignore_cells)

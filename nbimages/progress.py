"""One progress helper for builds, pulls and pushes: a bar per item (layer) plus a total.

In a live Jupyter kernel the bars are ipywidgets, in a terminal they are tqdm text bars, and
when stderr is neither (CI logs, cron, `nbconvert`) each finished item is one plain line, so
logs stay readable instead of filling with carriage returns. tqdm.auto makes the widget/text
choice; nothing here imports IPython until a bar is actually drawn.

    with progress("pull python:3.12", unit="B") as p:
        bar = p.bar("sha256:ab12…", total=layer.size)   # create bars in the calling thread
        bar.update(len(chunk))                           # update from any thread
        bar.close()

Set NBIMAGES_PROGRESS=0 to turn progress off, =lines to force plain lines.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["Progress", "Bar", "progress", "format_bytes"]


def format_bytes(n: float) -> str:
    """Human-readable SI size ("12.3 MB"), the units docker and registries print."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _format_amount(n: float, unit: str) -> str:
    if unit == "B":
        return format_bytes(n)
    return f"{n:,.0f} {unit}{'' if round(n) == 1 else 's'}"


def _choose_mode(enabled: bool | None, stream: TextIO) -> str:
    """'off', 'bars' (tqdm.auto: widgets in a kernel, text in a terminal) or 'lines'."""
    setting = os.environ.get("NBIMAGES_PROGRESS", "").strip().lower()
    if enabled is False or (enabled is None and setting in ("0", "off", "false", "no")):
        return "off"
    if setting == "lines":
        return "lines"
    if _in_notebook_kernel():
        return "bars"
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "bars" if tty else "lines"


def _default_stream() -> TextIO:
    """stderr in a terminal (stdout stays for results such as a digest); stdout in a Jupyter
    kernel, where stderr is drawn as an error (a pink box) and progress is not one."""
    return sys.stdout if "ipykernel.zmqshell" in sys.modules else sys.stderr


def _in_notebook_kernel() -> bool:
    """True when tqdm.auto would draw ipywidgets (a Jupyter kernel with ipywidgets)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.std import tqdm as std_tqdm
    return auto_tqdm is not std_tqdm


class Bar:
    """Progress of one item (a layer, a blob, a build step); updating it advances the total."""

    def __init__(self, owner: "Progress", name: str, total: int | None, tq: Any = None):
        self._owner = owner
        self.name = name
        self.total = total
        self.n = 0
        self.closed = False
        self._tq = tq
        self._started = time.monotonic()

    def update(self, n: int) -> None:
        """Add `n` units (bytes) done; thread-safe."""
        if n:
            self._owner._advance(self, n)

    def close(self, note: str | None = None) -> None:
        """Mark the item finished; `note` (e.g. "cached", "exists") is shown next to it."""
        self._owner._finish(self, note)

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Bar {self.name} {self.n}/{self.total if self.total is not None else '?'}>"


class Progress:
    """A group of per-item bars plus a total bar, with bytes and speed.

    `total=None` lets the total grow with the totals of the bars as they are created.
    `enabled=None` means automatic: widgets in a notebook, text bars on a terminal, one plain
    line per finished item elsewhere (NBIMAGES_PROGRESS=0 turns it off). All updates are
    thread-safe, since pulls fetch blobs in parallel.
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "B",
                 enabled: bool | None = None, file: TextIO | None = None):
        self.desc = desc
        self.unit = unit
        self.total = total
        self.n = 0
        self._fixed_total = total is not None
        self._file = file if file is not None else _default_stream()
        self.mode = _choose_mode(enabled, self._file)
        self._lock = threading.Lock()
        self._bars: list[Bar] = []
        self._started = time.monotonic()
        self._closed = False
        self._total_tq = None
        if self.mode == "bars":
            self._total_tq = self._tqdm(desc, total, leave=True)

    # -- public -----------------------------------------------------------------------------
    def bar(self, name: str, total: int | None = None) -> Bar:
        """A bar for one item; create it in the calling thread, update it from any thread."""
        with self._lock:
            if not self._fixed_total and total is not None:
                self.total = (self.total or 0) + total
                if self._total_tq is not None:
                    self._total_tq.total = self.total
                    self._total_tq.refresh()
            tq = None
            if self.mode == "bars":
                tq = self._tqdm(name, total, leave=self._in_notebook)
            b = Bar(self, name, total, tq)
            self._bars.append(b)
            return b

    def update(self, n: int) -> None:
        """Advance the total alone (work not tied to an item)."""
        if n:
            self._advance(None, n)

    def close(self, failed: bool = False) -> None:
        """Finish: close any open bars and show the total (a summary line in 'lines' mode).

        `failed=True` (what leaving the `with` block on an exception does) says "stopped"
        instead of "done".
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            open_bars = [b for b in self._bars if not b.closed]
        for b in open_bars:
            self._finish(b, None)
        with self._lock:
            items = len(self._bars)
            what = f"{items} item{'s' if items != 1 else ''}, " if items else ""
            word = "stopped after" if failed else "done,"
            summary = f"{self.desc}: {word} {what}{self._amount_and_speed(self.n, self._started)}"
            if self._total_tq is not None:
                self._total_tq.close()
                if self._in_notebook:
                    # A saved notebook keeps the widget's text form from when it was first
                    # drawn ("0%"); this line is what nbconvert and GitHub's viewer show.
                    self._line(summary)
            elif self.mode == "lines":
                self._line(summary)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)

    def __repr__(self) -> str:
        return f"<Progress {self.desc!r} {self.n}/{self.total if self.total is not None else '?'} {self.mode}>"

    # -- internals --------------------------------------------------------------------------
    @property
    def _in_notebook(self) -> bool:
        return _in_notebook_kernel()

    def _tqdm(self, desc: str, total: int | None, *, leave: bool):
        from tqdm.auto import tqdm
        byte_units = self.unit == "B"
        return tqdm(total=total, desc=desc, unit=self.unit, unit_scale=byte_units,
                    unit_divisor=1000, leave=leave, file=None if self._in_notebook else self._file,
                    dynamic_ncols=True, mininterval=0.2)

    def _advance(self, bar: Bar | None, n: int) -> None:
        with self._lock:
            self.n += n
            if bar is not None:
                bar.n += n
                if bar._tq is not None:
                    bar._tq.update(n)
            if self._total_tq is not None:
                self._total_tq.update(n)

    def _finish(self, bar: Bar, note: str | None) -> None:
        with self._lock:
            if bar.closed:
                return
            bar.closed = True
            if bar._tq is not None:
                if note:
                    bar._tq.set_postfix_str(note, refresh=False)
                bar._tq.close()
            elif self.mode == "lines":
                tail = f" ({note})" if note else ""
                self._line(f"{self.desc}: {bar.name} {self._amount_and_speed(bar.n, bar._started)}{tail}")

    def _amount_and_speed(self, n: int, started: float) -> str:
        elapsed = max(time.monotonic() - started, 1e-9)
        text = f"{_format_amount(n, self.unit)} in {elapsed:.1f} s"
        if n and elapsed >= 0.05:
            text += f" ({_format_amount(n / elapsed, self.unit)}/s)"
        return text

    def _line(self, text: str) -> None:
        try:
            print(text, file=self._file, flush=True)
        except (OSError, ValueError):  # a closed stream must not break a pull
            pass


def progress(desc: str, total: int | None = None, *, unit: str = "B",
             enabled: bool | None = None) -> Progress:
    """Start a Progress (use it as a context manager)."""
    return Progress(desc, total, unit=unit, enabled=enabled)

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

Code below the progress (the registry client) says what it waits for without knowing who
shows it: `with waiting("the registry r:5000 (the manifest x:1)", limit=60):` around a request,
`note("... asking again")` on a retry. The progress open in the calling context (worker
threads of a pull inherit it) shows a wait that lasts, with its seconds and the limit.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
import time
from typing import Any, Iterator, TextIO

__all__ = ["Progress", "Bar", "progress", "step_progress", "format_bytes", "waiting", "note"]

# The Progress whose `with` block the running code is in (copied into a pull's worker threads).
_current: contextvars.ContextVar["Progress | None"] = contextvars.ContextVar(
    "nbimages_progress", default=None)
# A wait is shown once it lasts this long (or half its limit, when that is shorter).
SLOW_AFTER = 2.0


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


def _in_notebook_kernel() -> bool:
    """True when tqdm.auto would draw ipywidgets (a Jupyter kernel with ipywidgets)."""
    if "ipykernel.zmqshell" not in sys.modules:
        return False
    from tqdm.auto import tqdm as auto_tqdm
    from tqdm.std import tqdm as std_tqdm
    return auto_tqdm is not std_tqdm


def _wait_text(now: float, what: str, limit: float | None, started: float) -> str:
    waited = now - started
    text = f"waiting for {what}: no answer for {waited:.1f} s" if waited < 10 else \
        f"waiting for {what}: no answer for {waited:.0f} s"
    return text + (f" (gives up after {limit:g} s)" if limit else "")


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
        self._file = file if file is not None else sys.stderr
        self.mode = _choose_mode(enabled, self._file)
        self._lock = threading.Lock()
        self._bars: list[Bar] = []
        self._started = time.monotonic()
        self._closed = False
        self._total_tq = None
        self._context_token: contextvars.Token | None = None
        self._waits: dict[int, list] = {}  # id -> [what, limit, started, shown]
        self._wait_ids = itertools.count()
        self._ticker: threading.Thread | None = None
        self._ticks = threading.Event()  # set when the progress closes: the ticker stops
        # Nothing is drawn until there is something to show: a pull refused at its first
        # request ends in its error alone, not in an empty bar or "stopped after 0 B".
        self._shown = False

    # -- public -----------------------------------------------------------------------------
    def bar(self, name: str, total: int | None = None) -> Bar:
        """A bar for one item; create it in the calling thread, update it from any thread."""
        with self._lock:
            self._show()
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

    def note(self, text: str) -> None:
        """Say something about the transfer as a whole ("asking again", "waiting for …"):
        next to the total bar, or as a line of its own in 'lines' mode."""
        if self.mode == "off":
            return
        with self._lock:
            self._show()
            if self._total_tq is not None:
                self._total_tq.set_postfix_str(text)
            elif self.mode == "lines":
                self._line(f"{self.desc}: {text}")

    @contextlib.contextmanager
    def waiting(self, what: str, limit: float | None = None) -> Iterator[None]:
        """While the block runs we wait for `what`; if that lasts (SLOW_AFTER seconds, or half
        of `limit`), the progress says so with the seconds waited and the limit."""
        with self._lock:
            key = next(self._wait_ids)
            self._waits[key] = [what, limit, time.monotonic(), False]
            if self._ticker is None and self.mode != "off":
                self._ticker = threading.Thread(target=self._tick, daemon=True,
                                                name="nbimages-progress-waits")
                self._ticker.start()
        try:
            yield
        finally:
            with self._lock:
                shown = self._waits.pop(key)[3]
                if shown and self._total_tq is not None:
                    self._total_tq.set_postfix_str("")

    def close(self, failed: bool = False) -> None:
        """Finish: close any open bars and show the total (a summary line in 'lines' mode).

        `failed=True` (what leaving the `with` block on an exception does) says "stopped"
        instead of "done".
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ticks.set()
            open_bars = [b for b in self._bars if not b.closed]
        for b in open_bars:
            self._finish(b, None)
        with self._lock:
            if failed and not self._shown:
                return
            self._show()
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
        self._context_token = _current.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._context_token is not None:
            _current.reset(self._context_token)
            self._context_token = None
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

    def _show(self) -> None:
        """Draw the total bar (in 'bars' mode) on first use; call with the lock held."""
        self._shown = True
        if self.mode == "bars" and self._total_tq is None:
            self._total_tq = self._tqdm(self.desc, self.total, leave=True)

    def _advance(self, bar: Bar | None, n: int) -> None:
        with self._lock:
            self._show()
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

    def _tick(self) -> None:
        """Every quarter second: show the longest wait that lasts (refreshing its seconds)."""
        while not self._ticks.wait(0.25):
            now = time.monotonic()
            with self._lock:
                slow = [w for w in self._waits.values()
                        if now - w[2] >= min(SLOW_AFTER, (w[1] or SLOW_AFTER * 2) / 2)]
                if not slow:
                    continue
                self._show()
                if self._total_tq is not None:
                    longest = min(slow, key=lambda w: w[2])
                    self._total_tq.set_postfix_str(_wait_text(now, *longest[:3]))
                elif self.mode == "lines":
                    for w in slow:  # one line per slow wait, not one per tick
                        if not w[3]:
                            self._line(f"{self.desc}: {_wait_text(now, *w[:3])}")
                for w in slow:
                    w[3] = True

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


@contextlib.contextmanager
def waiting(what: str, limit: float | None = None) -> Iterator[None]:
    """Tell the progress of the running transfer, if any, that we wait for `what` (at most
    `limit` seconds); nothing is shown unless the wait lasts."""
    current = _current.get()
    if current is None:
        yield
        return
    with current.waiting(what, limit):
        yield


def note(text: str) -> bool:
    """Show `text` on the progress of the running transfer; False when there is none (the
    caller then logs it instead)."""
    current = _current.get()
    if current is None or current.mode == "off":
        return False
    current.note(text)
    return True


def progress(desc: str, total: int | None = None, *, unit: str = "B",
             enabled: bool | None = None) -> Progress:
    """Start a Progress (use it as a context manager)."""
    return Progress(desc, total, unit=unit, enabled=enabled)


def step_progress(desc: str, quiet: bool = False) -> Progress:
    """A Progress counting build steps, as `nbimages build` and `handout` show it: off with
    --quiet, else as NBIMAGES_PROGRESS and the stream decide."""
    return Progress(desc, unit="step", enabled=False if quiet else None)

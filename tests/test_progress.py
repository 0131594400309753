"""The progress helper: per-item bars plus a total, thread-safe, right output for where it runs."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import pytest

from nbimages.progress import Progress, format_bytes, note, progress, waiting


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _auto_mode(monkeypatch):
    monkeypatch.delenv("NBIMAGES_PROGRESS", raising=False)


def test_updating_a_bar_advances_the_total():
    with Progress("pull", enabled=False) as p:
        a = p.bar("layer a", total=100)
        b = p.bar("layer b", total=50)
        a.update(60)
        b.update(50)
        assert (a.n, b.n, p.n) == (60, 50, 110)


def test_total_grows_with_bar_totals_when_not_given():
    p = Progress("pull", enabled=False)
    p.bar("a", total=100)
    p.bar("b")  # unknown size does not change the total
    p.bar("c", total=20)
    assert p.total == 120
    p.close()


def test_fixed_total_is_kept():
    p = Progress("build", total=7, unit="step", enabled=False)
    p.bar("a", total=100)
    assert p.total == 7
    p.close()


def test_parallel_updates_are_counted_exactly():
    p = Progress("pull", enabled=False)
    bars = [p.bar(f"layer {i}", total=4000) for i in range(8)]

    def work(bar):
        for _ in range(4000):
            bar.update(1)

    threads = [threading.Thread(target=work, args=(b,)) for b in bars]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    assert p.n == 32000
    assert all(b.n == 4000 for b in bars)


def test_parallel_updates_with_text_bars_are_counted_exactly():
    out = FakeTTY()
    p = Progress("pull", file=out)
    assert p.mode == "bars"
    bars = [p.bar(f"layer {i}", total=2000) for i in range(4)]
    threads = [threading.Thread(target=lambda b=b: [b.update(1) for _ in range(2000)]) for b in bars]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    assert p.n == 8000
    assert p._total_tq.n == 8000


def test_log_output_is_one_plain_line_per_item_and_a_summary():
    out = io.StringIO()  # not a terminal: a CI log
    with Progress("pull busybox", file=out) as p:
        assert p.mode == "lines"
        a = p.bar("sha256:aaaa", total=2_500_000)
        a.update(2_500_000)
        a.close()
        b = p.bar("sha256:bbbb", total=10)
        b.close(note="exists")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 3
    assert lines[0].startswith("pull busybox: sha256:aaaa 2.5 MB in ")
    assert lines[1].startswith("pull busybox: sha256:bbbb 0 B in ") and lines[1].endswith("(exists)")
    assert lines[2].startswith("pull busybox: done, 2 items, 2.5 MB in ")


def test_close_finishes_bars_left_open_once():
    out = io.StringIO()
    p = Progress("push", file=out)
    p.bar("x", total=3).update(3)
    p.close()
    p.close()
    assert len(out.getvalue().splitlines()) == 2


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    with Progress("pull", file=out, enabled=False) as p:
        p.bar("x", total=5).update(5)
    assert p.mode == "off"
    assert out.getvalue() == ""


def test_environment_turns_progress_off_or_to_lines(monkeypatch):
    monkeypatch.setenv("NBIMAGES_PROGRESS", "0")
    assert Progress("x", file=FakeTTY()).mode == "off"
    assert Progress("x", file=FakeTTY(), enabled=True).mode != "off"
    monkeypatch.setenv("NBIMAGES_PROGRESS", "lines")
    assert Progress("x", file=FakeTTY()).mode == "lines"


def test_terminal_gets_tqdm_text_bars_with_bytes_and_speed():
    out = FakeTTY()
    with Progress("pull busybox", file=out) as p:
        bar = p.bar("layer 1", total=3_000_000)
        bar.update(3_000_000)
    text = out.getvalue()
    assert "pull busybox" in text
    assert "3.00M" in text and "B/s" in text


def test_non_byte_units_are_counted_plainly():
    out = io.StringIO()
    with Progress("build", unit="step", file=out) as p:
        p.update(3)
    assert "3 steps in" in out.getvalue()


def test_format_bytes_uses_si_units():
    assert format_bytes(999) == "999 B"
    assert format_bytes(1500) == "1.5 kB"
    assert format_bytes(361_000_000) == "361.0 MB"


def test_progress_function_returns_a_context_manager():
    with progress("x", 10, enabled=False) as p:
        p.update(10)
    assert p.n == 10 and p.total == 10


def test_importing_progress_does_not_import_ipython():
    code = ("import sys, io, nbimages.progress as m\n"
            "with m.Progress('x', file=io.StringIO()) as p: p.bar('a', 1).update(1)\n"
            "assert 'IPython' not in sys.modules, 'IPython imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_live_kernel_draws_ipywidgets_bars_and_a_summary_line_for_saved_notebooks():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "from nbimages.progress import Progress\n"
        "with Progress('pull demo') as p:\n"
        "    b = p.bar('layer 1', total=1000)\n"
        "    b.update(1000)\n"
        "print(p.mode)"))
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 2  # the total and the layer
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "bars" in text.split()
    # the widget's saved text form is stale ("0%"), so a plain summary follows it
    assert "pull demo: done, 1 item, 1.0 kB" in text


def test_leaving_on_an_error_says_stopped_not_done():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("pull x", file=out) as p:
            p.bar("layer", total=10).update(4)
            raise RuntimeError("network down")
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("pull x: stopped after 1 item, 4 B in ")


def test_a_wait_that_lasts_is_shown_once_and_a_short_one_not_at_all():
    out = io.StringIO()
    with Progress("pull x", enabled=True, file=out) as p:
        assert p.mode == "lines"
        with waiting("the registry r:5000 (quick)", limit=60):
            pass
        with waiting("the registry r:5000 (the manifest x:1)", limit=0.6):
            time.sleep(0.8)
    waits = [line for line in out.getvalue().splitlines() if "waiting" in line]
    assert len(waits) == 1, waits
    assert waits[0].startswith("pull x: waiting for the registry r:5000 (the manifest x:1): no "
                               "answer for 0."), waits
    assert waits[0].endswith("(gives up after 0.6 s)"), waits


def test_waits_and_notes_outside_a_progress_are_left_to_the_caller():
    with waiting("nothing shown"):
        pass
    assert note("no progress open") is False
    with Progress("push y", enabled=False):
        assert note("progress turned off") is False

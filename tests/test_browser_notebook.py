"""In JupyterLab, in a real browser: the recipe follows the notebook and the build record
survives the editor.

A notebook open in JupyterLab is built from the shell (`nbimages build`), then run and saved
in the browser: JupyterLab writes its own copy of the metadata over the build record there,
and the lock file beside the notebook keeps it, so `nbimages verify` still has the digest and
says where it read it. Then a step cell is deleted, the notebook saved, and the build cell run
again: the deleted cell's step is gone from the build. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from test_browser import ARTIFACTS, browser, lab, local_only, run_all, wait_for_kernel  # noqa: F401

BUILD_CELL = ('img = %image build nbtest/lab-follow:1\n'
              'print("built steps:", [r["instruction"].split(" #")[0] for r in img.build_report])')


@contextlib.contextmanager
def opened(browser, lab, name: str, *sources: str, shot: str):
    """Write a notebook of code cells, open it in JupyterLab with its kernel attached; a
    screenshot goes to test-artifacts/`shot` at the end, pass or fail."""
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                               "language": "python"}}
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources], metadata=metadata),
                   str(lab["work"] / name))
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route("**/*", local_only)
    page = context.new_page()
    try:
        # a workspace of its own: JupyterLab would reopen the other tests' notebooks too
        page.goto(f"{lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}"
                  f"?token={lab['token']}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        wait_for_kernel(page)
        yield page
    finally:
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        context.close()


def shell(lab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBIMAGES_HOME": str(lab["work"].parent / "nbimages"),
           "NBIMAGES_PROGRESS": "lines"}
    return subprocess.run([sys.executable, "-m", "nbimages", *args], cwd=lab["work"], env=env,
                          capture_output=True, text=True, timeout=300)


def command(page, name: str, index: int | None = None) -> None:
    if index is not None:
        page.evaluate(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index}")
    # not awaited: a save waits for the answer to JupyterLab's "File Changed" dialog
    page.evaluate(f"() => {{ window.jupyterapp.commands.execute('{name}'); }}")


def save(page) -> None:
    """Save as the user does (Ctrl+S); answer JupyterLab's "File Changed" dialog (the
    notebook changed on disk since it was opened) with Overwrite, as users do."""
    overwrite = page.get_by_role("button", name="Overwrite")
    for attempt in range(3):   # a save that races an edit leaves the model dirty: save again
        command(page, "docmanager:save")
        try:
            overwrite.wait_for(timeout=3000)
            overwrite.click()
        except Exception:  # noqa: BLE001 - no conflict dialog: JupyterLab saved at once
            pass
        try:
            page.wait_for_function(
                "() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                timeout=15_000)
            return
        except Exception:  # noqa: BLE001 - still dirty
            if attempt == 2:
                raise


def test_lock_survives_a_jupyterlab_save_and_a_deleted_cell_leaves_the_build(browser, lab):
    nb = lab["work"] / "follow.ipynb"
    with opened(browser, lab, "follow.ipynb", "%load_ext nbimages", "%image from scratch",
                "%%image file /a.txt\nA", "%%image file /b.txt\nB", BUILD_CELL,
                shot="browser-recipe-follows-notebook.png") as page:
        built = shell(lab, "build", "follow.ipynb", "-q")
        assert built.returncode == 0, built.stderr
        digest = built.stdout.strip()
        assert json.loads(nb.read_text())["metadata"]["nbimages"]["digest"] == digest

        run_all(page)
        page.get_by_text("built steps: ['COPY --chmod=644 <cell> /a.txt', "
                         "'COPY --chmod=644 <cell> /b.txt']").wait_for(timeout=120_000)
        save(page)
        assert "nbimages" not in json.loads(nb.read_text())["metadata"]  # saved over
        verified = shell(lab, "verify", "follow.ipynb")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"has manifest digest {digest}" in verified.stdout
        assert "recorded in follow.nbimages.lock" in verified.stdout

        command(page, "notebook:delete-cell", index=3)
        save(page)
        command(page, "notebook:run-cell", index=3)  # the build cell, now fourth
        page.get_by_text("built steps: ['COPY --chmod=644 <cell> /a.txt']").wait_for(
            timeout=120_000)
        page.get_by_text("is no longer in follow.ipynb").first.wait_for(timeout=10_000)


CONTRAST_JS = """() => {
    const lum = (css) => {
        const [r, g, b] = css.match(/[\\d.]+/g).slice(0, 3).map(Number).map((v) => {
            v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
                              return (x + 0.05) / (y + 0.05); };
    const bg = getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor;
    const texts = [...document.querySelectorAll('.nbimages-live svg text')];
    return {bg, n: texts.length,
            worst: Math.min(...texts.map((t) => ratio(getComputedStyle(t).fill, bg)))};
}"""


def test_charts_follow_the_dark_theme_with_readable_text(browser, lab):
    with opened(browser, lab, "dark.ipynb", "%load_ext nbimages", "%image from scratch",
                "%%image file /data/a.txt\n" + "a" * 5000, "%image build nbtest/lab-dark:1",
                "%image explore nbtest/lab-dark:1", shot="browser-explorer-dark-theme.png") as page:
        run_all(page)
        explorer = page.locator(".nbimages-explorer.nbimages-live")
        explorer.wait_for(timeout=120_000)
        explorer.get_by_role("tab", name="Sizes").click()  # its chart is drawn when shown
        page.wait_for_selector(".nbimages-live svg text", state="attached", timeout=120_000)
        light = page.evaluate(CONTRAST_JS)
        page.evaluate("() => { window.jupyterapp.commands.execute('apputils:change-theme', "
                      "{theme: 'JupyterLab Dark'}); }")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=30_000)
        page.wait_for_timeout(500)
        dark = page.evaluate(CONTRAST_JS)
    assert light["n"] > 0 and dark["n"] == light["n"]
    assert dark["bg"] != light["bg"]  # the theme really changed
    assert light["worst"] >= 4.5 and dark["worst"] >= 4.5, (light, dark)  # WCAG AA


DIFF_CELL = ('import nbimages\n'
             'a = nbimages.Recipe("scratch").file("/data/a.txt", "a" * 5000)'
             '.file("/data/a.txt", "b" * 10).build("nbtest/lab19-a:1")\n'
             'b = nbimages.Recipe("scratch").file("/srv/b.txt", "c" * 3000).build("nbtest/lab19-b:1")\n'
             'nbimages.explore(a, diff=b)')


def visible_text(locator) -> str:
    return " ".join(t for t in locator.all_inner_texts() if t.strip())


def test_every_tab_of_a_diff_follows_the_image_toggle(browser, lab):
    with opened(browser, lab, "diff19.ipynb", DIFF_CELL, shot="browser-diff-follows-toggle.png") \
            as page:
        run_all(page)
        explorer = page.locator(".nbimages-explorer.nbimages-live")
        explorer.wait_for(timeout=120_000)
        explorer.get_by_role("tab", name="Waste").click()
        label = explorer.locator(".nbimages-image-label")
        explorer.get_by_text("Waste of A: nbtest/lab19-a:1", exact=True).wait_for(timeout=30_000)
        # the label is there from the start; the table is made by the kernel when the tab is
        # first shown
        explorer.locator(".nbimages-waste-view .nbimages-cause-table").wait_for(timeout=30_000)
        explorer.locator(".nbimages-which button", has_text="B: nbtest/lab19-b:1").click()
        explorer.get_by_text("Waste of B: nbtest/lab19-b:1", exact=True).wait_for(timeout=30_000)
        explorer.locator(".nbimages-waste-view", has_text="no wasted space").wait_for(
            timeout=30_000)
        assert explorer.locator(".nbimages-waste-view .nbimages-cause-table").count() == 0
        page.screenshot(path=str(ARTIFACTS / "browser-diff-waste-of-b.png"), full_page=True)
        explorer.get_by_role("tab", name="Sizes").click()
        explorer.get_by_text("Sizes of B: nbtest/lab19-b:1", exact=True).wait_for(timeout=30_000)
        # the chart is drawn by the kernel when the tab is first shown
        explorer.locator("svg.nbimages-chart-dirs .nbimages-bar").first.wait_for(timeout=30_000)
        bars = explorer.locator("svg.nbimages-chart-dirs .nbimages-bar").evaluate_all(
            "bars => bars.filter(b => b.getBoundingClientRect().width > 0)"
            ".map(b => b.getAttribute('data-label'))")
        assert "/srv" in bars and "/data" not in bars
        explorer.get_by_role("tab", name="Layers").click()
        assert "Layers of B: nbtest/lab19-b:1" in visible_text(label)
        explorer.locator(".nbimages-which button", has_text="A: nbtest/lab19-a:1").click()
        explorer.get_by_role("tab", name="Sizes").click()
        explorer.get_by_text("Sizes of A: nbtest/lab19-a:1", exact=True).wait_for(timeout=30_000)


STATIC_SHOWN_JS = """() => {
    const shown = (el) => !!el && el.getClientRects().length > 0;
    const errors = [...document.querySelectorAll('.jp-OutputArea-output')].filter(
        (el) => el.textContent.includes('Error displaying widget') && shown(el));
    return {static: shown(document.querySelector('.nbimages-static-fallback tr.nbimages-layer-row')),
            live: shown(document.querySelector('.nbimages-live .nbimages-layer-row')),
            errors: errors.length};
}"""


def test_after_a_kernel_restart_the_explorer_is_its_static_html(browser, lab):
    cells = ("%load_ext nbimages", "%image from scratch", "%%image file /data/a.txt\n" + "a" * 900,
             "%image build nbtest/lab19-restart:1", "%image explore nbtest/lab19-restart:1")
    with opened(browser, lab, "restart19.ipynb", *cells,
                shot="browser-explorer-after-restart.png") as page:
        run_all(page)
        page.locator(".nbimages-live .nbimages-layer-row").first.wait_for(timeout=120_000)
        assert page.evaluate(STATIC_SHOWN_JS) == {"static": False, "live": True, "errors": 0}
        save(page)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session"
                      ".kernel.restart()")
        wait_for_kernel(page)
        page.reload()
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        wait_for_kernel(page)
        page.wait_for_function(STATIC_SHOWN_JS.replace("return {", "const r = {").replace(
            "errors: errors.length};", "errors: errors.length}; return r.static;"),
            timeout=60_000)
        page.wait_for_timeout(1500)  # the widget manager gives up on the model meanwhile
        assert page.evaluate(STATIC_SHOWN_JS) == {"static": True, "live": False, "errors": 0}

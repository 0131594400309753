"""In a real browser: JupyterLab runs the quickstart notebook and the explorer widget works.

A JupyterLab server on 127.0.0.1 (token, isolated HOME/TMPDIR/Jupyter/IPython dirs, the news
pop-up and the extension manager disabled) serves a copy of quickstart.ipynb (autosave would
rewrite the original). Debian's chromium, driven by Python Playwright (never its own browser
download), opens it, waits until the kernel is really attached, runs all cells through the
Run menu, and checks that the explorer's layer rows are in the page and that clicking a layer
lists its files. Every request to an address outside 127.0.0.1 is aborted by the page router.
An image kernel (`nbimages kernel install`) is picked from the launcher and runs a cell
inside its image. Screenshots go to test-artifacts/. Two static exports are checked too: without widget state
(the explorer's own HTML fallback) and with it (the widget drawn by @jupyter-widgets/html-manager,
served from a local npm copy instead of the CDN nbconvert points at).

Needs /usr/bin/chromium and Playwright: `bash scripts/browser-deps.sh` installs them (the
fixture runs it as root when they are missing). Under CI=true a missing browser fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from bases import unavailable
from conftest import ROOT
from kernel_image import KERNEL_TAG, MARKER, ONLY_IN_IMAGE

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-dev-shm-usage"]
LOCAL_SCHEMES = ("data", "blob", "about", "file")


WIDGETS = ROOT / ".venv" / "share" / "nbimages-test"   # html-manager + require.js from npm
EMBED_JS = WIDGETS / "html-manager" / "dist" / "embed-amd.js"
REQUIRE_JS = WIDGETS / "requirejs" / "require.js"


def _have_browser() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK) and EMBED_JS.is_file() and REQUIRE_JS.is_file()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium under Playwright (installed by scripts/browser-deps.sh)."""
    if not _have_browser() and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "browser-deps.sh")], check=False,
                       timeout=900)
    if not _have_browser():
        message = ("chromium, playwright or the local widget manager is missing: run "
                   "`bash scripts/browser-deps.sh` as root")
        unavailable(message)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def local_only(route) -> None:
    """Let through requests to the loopback server (and data:/blob:), abort everything else."""
    url = urlparse(route.request.url)
    if url.scheme in LOCAL_SCHEMES or url.hostname in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a folder with a copy of the quickstart."""
    base = tmp_path_factory.mktemp("lab")
    dirs = {n: base / n for n in ("home", "tmp", "config", "data", "runtime", "ipython",
                                  "nbimages", "work", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir()
    (dirs["config"] / "labconfig").mkdir()
    (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps({
        "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True,
                               "@jupyterlab/extensionmanager-extension": True},
        "exposeAppInBrowser": True}))
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", dirs["work"] / "quickstart.ipynb")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "IPYTHON", "NBIMAGES_"))}
    env.update(HOME=str(dirs["home"]), TMPDIR=str(dirs["tmp"]),
               JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
               JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
               NBIMAGES_HOME=str(dirs["nbimages"]), NBIMAGES_PROGRESS="lines",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    port, token = free_port(), secrets.token_hex(16)
    log = (base / "jupyterlab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--ServerApp.allow_root=True",
         f"--ServerApp.root_dir={dirs['work']}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=dirs["work"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("JupyterLab did not start:\n" +
                                     (base / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield {"url": url, "token": token, "work": dirs["work"], "log": base / "jupyterlab.log",
               "data": dirs["data"]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for_kernel(page, timeout_ms: int = 60_000) -> None:
    """Wait until the notebook's session has a connected, idle kernel.

    The status bar says "Idle" before the kernel is attached, so ask the app itself.
    """
    page.wait_for_function(
        """() => {
            const app = window.jupyterapp;
            const w = app && app.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session
                      && w.sessionContext.session.kernel;
            return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
        }""", timeout=timeout_ms)


def run_all(page) -> None:
    """Run > Run All Cells, through the command the menu item runs (clicking the menu races
    with the menu bar's own layout and is not what is being tested)."""
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")


@contextlib.contextmanager
def lab_page(browser):
    """A page in a fresh browser context that reaches only the loopback server."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route("**/*", local_only)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def quickstart_page(browser, lab):
    """The quickstart opened in JupyterLab and run top to bottom."""
    with lab_page(browser) as page:
        try:
            page.goto(f"{lab['url']}/lab/tree/quickstart.ipynb?token={lab['token']}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            wait_for_kernel(page)
            run_all(page)
            page.wait_for_selector(".nbimages-explorer .nbimages-layer-row", timeout=120_000)
            # the last cell prints the digest: every cell ran
            page.get_by_text("handout: quickstart.tar").wait_for(timeout=60_000)
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / "browser-quickstart-page.png"))


def test_quickstart_runs_all_cells_without_errors(quickstart_page):
    page = quickstart_page
    assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
    assert page.get_by_text("rows;").count() >= 1 or page.get_by_text("busybox").count() >= 1
    assert page.get_by_text("digest: sha256:").count() == 1


def test_explorer_widget_lists_one_row_per_layer(quickstart_page):
    explorer = quickstart_page.locator(".nbimages-explorer").first
    rows = explorer.locator(".nbimages-layer-row")
    assert rows.count() == 3
    texts = [rows.nth(i).inner_text() for i in range(3)]
    assert "/app/report.sh" in texts[0]
    assert "/data/" in texts[1]
    assert "/bin/" in texts[2]
    # the static fallback is not drawn next to the live widget
    assert quickstart_page.locator("tr.nbimages-layer-row").count() == 0


def test_clicking_a_layer_lists_its_files(quickstart_page):
    page = quickstart_page
    explorer = page.locator(".nbimages-explorer").first
    explorer.scroll_into_view_if_needed()
    explorer.locator(".nbimages-layer-row").nth(1).locator(".nbimages-layer-select").click()
    files = explorer.locator(".nbimages-file-row")
    files.first.wait_for(timeout=30_000)
    paths = files.locator(".nbimages-path").all_inner_texts()
    assert "/data/measurements.csv" in paths
    assert "/app/report.sh" not in paths
    assert "nbimages-selected" in explorer.locator(".nbimages-layer-row").nth(1).get_attribute("class")
    # the path filter narrows the list in the live kernel
    explorer.locator(".nbimages-files-panel input[type='text']").fill("no-such-path")
    page.get_by_text("no files here").wait_for(timeout=30_000)
    explorer.locator(".nbimages-files-panel input[type='text']").fill("")
    files.first.wait_for(timeout=30_000)
    explorer.screenshot(path=str(ARTIFACTS / "browser-explorer.png"))


def test_sizes_tab_draws_the_directory_chart(quickstart_page):
    explorer = quickstart_page.locator(".nbimages-explorer").first
    explorer.get_by_role("tab", name="Sizes").click()
    chart = explorer.locator("svg.nbimages-chart-dirs")
    chart.wait_for(timeout=30_000)
    labels = chart.locator(".nbimages-bar").evaluate_all(
        "bars => bars.map(b => b.getAttribute('data-label'))")
    assert "/bin" in labels and "/data" in labels and "/app" in labels
    explorer.screenshot(path=str(ARTIFACTS / "browser-explorer-sizes.png"))


def execute_quickstart(workdir: Path, store_widget_state: bool):
    """The quickstart executed by nbclient in `workdir` (as test_notebooks does)."""
    import nbformat
    from nbclient import NotebookClient
    from test_notebooks import kernel_env

    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=240, kernel_name="python3",
                            store_widget_state=store_widget_state,
                            resources={"metadata": {"path": str(workdir)}})
    # in a thread of its own: Playwright's event loop runs in this one and slows nbclient down
    with ThreadPoolExecutor(1) as pool:
        pool.submit(client.execute, env=kernel_env(workdir / ".isolated"),
                    cwd=str(workdir)).result()
    return nb


def test_static_html_export_with_widget_state_renders_the_widget_offline(browser, tmp_path):
    """A notebook saved with its widget state (as nbclient does, and nbviewer shows it): the
    HTML export draws the explorer widget itself, here with html-manager served locally."""
    from nbconvert import HTMLExporter

    nb = execute_quickstart(tmp_path, store_widget_state=True)
    exporter = HTMLExporter(widget_renderer_url=EMBED_JS.as_uri(),
                            require_js_url=REQUIRE_JS.as_uri())
    body, _ = exporter.from_notebook_node(nb)
    page_file = tmp_path / "quickstart-widgets.html"
    page_file.write_text(body)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route("**/*", local_only)
    page = context.new_page()
    try:
        page.goto(page_file.as_uri())
        page.wait_for_selector(".nbimages-explorer .nbimages-layer-row", timeout=30_000)
        rows = page.locator(".nbimages-explorer .nbimages-layer-row")
        assert rows.count() == 3                         # widget rows, not the static table
        assert page.locator("tr.nbimages-layer-row").count() == 0
        assert "/data/" in rows.nth(1).inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".nbimages-explorer").first.screenshot(
            path=str(ARTIFACTS / "static-widget-explorer.png"))
    finally:
        context.close()


def test_static_html_export_shows_layer_rows_without_widgets(browser, tmp_path):
    """nbconvert's HTML of the executed quickstart, saved without widget state as JupyterLab
    does by default, shows the explorer's static HTML in the browser (no network)."""
    from nbconvert import HTMLExporter

    nb = execute_quickstart(tmp_path, store_widget_state=False)
    body, _ = HTMLExporter().from_notebook_node(nb)
    page_file = tmp_path / "quickstart.html"
    page_file.write_text(body)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route("**/*", local_only)
    page = context.new_page()
    try:
        page.goto(page_file.as_uri())
        rows = page.locator("tr.nbimages-layer-row")
        assert rows.count() == 3
        assert rows.first.is_visible()
        details = page.locator("details.nbimages-layer-files").nth(1)
        details.locator("summary").click()
        assert details.locator(".nbimages-file-row .nbimages-path").get_by_text(
            "/data/measurements.csv").is_visible()
        assert page.locator("svg.nbimages-chart-dirs .nbimages-bar").count() >= 3
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".nbimages-explorer").first.screenshot(
            path=str(ARTIFACTS / "static-explorer.png"))
    finally:
        context.close()


def test_jupyterlab_launches_an_image_kernel_whose_cells_run_inside_the_image(browser, lab,
                                                                            kernel_image):
    """`nbimages kernel install` into the server's Jupyter folder: the launcher shows the
    image's kernel, and a cell run with it reads a file that exists only in the image."""
    label = "Python 3.11 (image nbtest/kernel-py:1)"
    proc = subprocess.run([sys.executable, "-m", "nbimages", "kernel", "install", KERNEL_TAG,
                           "--name", "nbtest-browser"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "JUPYTER_DATA_DIR": str(lab["data"])})
    assert proc.returncode == 0, proc.stderr
    with lab_page(browser) as page:
        # a workspace of its own, so the quickstart opened by the other tests is not restored
        page.goto(f"{lab['url']}/lab/workspaces/image-kernel?token={lab['token']}")
        page.wait_for_function("() => !!window.jupyterapp", timeout=60_000)
        page.evaluate("""async () => {
            await window.jupyterapp.restored;
            if (!document.querySelector('.jp-Launcher')) {
                await window.jupyterapp.commands.execute('launcher:create');
            }
        }""")
        card = page.locator(".jp-LauncherCard", has_text=label).first
        card.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "browser-image-kernel-launcher.png"))
        card.click()
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        wait_for_kernel(page, timeout_ms=90_000)
        code = f"import sys\nprint(open({ONLY_IN_IMAGE!r}).read().strip(), sys.executable)"
        page.evaluate("""code => {
            const nb = window.jupyterapp.shell.currentWidget;
            nb.content.activeCell.model.sharedModel.setSource(code);
            return window.jupyterapp.commands.execute('notebook:run-cell');
        }""", code)
        output = page.locator(".jp-OutputArea-output", has_text=MARKER.strip()).first
        output.wait_for(timeout=60_000)
        assert output.inner_text().strip() == f"{MARKER.strip()} /usr/bin/python3"
        kernel_name = page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.kernelDisplayName")
        assert kernel_name == label
        page.screenshot(path=str(ARTIFACTS / "browser-image-kernel-cell.png"))

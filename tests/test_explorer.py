"""The explorer: its widget app driven like a user would, its static HTML and text fallbacks,
and the SVG charts, on real images built into the store (overwrites, deletions, a diff)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

import nbimages
from nbimages.errors import NbimagesError
from nbimages.notebook import explorer as explorer_mod
from nbimages.notebook.charts import Bar, Segment, hbar_chart, short_command
from nbimages.notebook.explorer import Explorer, explore, filter_files

WIDGET = "application/vnd.jupyter.widget-view+json"
STORE_HOME: list = []   # the module store's NBIMAGES_HOME (each test gets its own otherwise)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two images in one store: `wasteful` (data overwritten, then removed) and `slim`."""
    import os
    home = tmp_path_factory.mktemp("explorer-store")
    STORE_HOME[:] = [home]
    old = os.environ.get("NBIMAGES_HOME")
    os.environ["NBIMAGES_HOME"] = str(home)
    try:
        r = nbimages.Recipe("scratch")
        r.file("/data/big.csv", "x" * 200_000)
        r.file("/data/big.csv", "y" * 100_000)
        r.file("/app/run.sh", "echo hi\n", mode=0o755)
        r.file("/app/lib/util.sh", "true\n")
        r.remove("/data/big.csv")
        wasteful = nbimages.inspect(r.build("explorer:wasteful"))
        s = nbimages.Recipe("scratch")
        s.file("/app/run.sh", "echo hi\n", mode=0o755)
        s.file("/app/new.txt", "new\n")
        slim = nbimages.inspect(s.build("explorer:slim"))
        yield wasteful, slim
    finally:
        if old is None:
            os.environ.pop("NBIMAGES_HOME", None)
        else:
            os.environ["NBIMAGES_HOME"] = old


def rows(page: str, cls: str) -> int:
    return len(re.findall(rf"<tr class=['\"]{cls}[ '\"]", page))


# -- the live app ----------------------------------------------------------------------------------

def test_widget_has_one_row_per_layer_with_wasteful_layers_marked(images):
    app = Explorer(images[0]).app
    assert len(app.rows) == 5
    assert all("nbimages-layer-row" in r._dom_classes for r in app.rows)
    wasteful = [i for i, r in enumerate(app.rows) if "nbimages-wasteful" in r._dom_classes]
    assert wasteful == [0, 1]
    assert "nbimages-explorer" in app.root._dom_classes


def test_clicking_a_layer_lists_the_files_it_changed(images):
    app = Explorer(images[0]).app
    assert app.files_html.value == ""
    app.buttons[1].click()
    assert app.selected == 1 and "nbimages-selected" in app.rows[1]._dom_classes
    assert app.buttons[1].button_style == "info"
    assert rows(app.files_html.value, "nbimages-file-row") == 2   # /data and /data/big.csv
    assert "/data/big.csv" in app.files_html.value and "modified" in app.files_html.value
    app.buttons[4].click()
    assert "nbimages-selected" not in app.rows[1]._dom_classes
    shown = app.visible_files()
    assert list(shown.loc[shown["change"] == "deleted", "path"]) == ["/data/big.csv"]
    assert "nbimages-deleted" in app.files_html.value


def test_file_list_filters_by_change_and_path_and_sorts_by_size(images):
    ex = Explorer(images[0])
    app = ex.app
    ex.select(3)                                   # /app/lib/util.sh and its directories
    assert set(app.visible_files()["path"]) == {"/app", "/app/lib", "/app/lib/util.sh"}
    app.filter.value = "UTIL"
    assert list(app.visible_files()["path"]) == ["/app/lib/util.sh"]
    assert rows(app.files_html.value, "nbimages-file-row") == 1
    app.filter.value = ""
    app.change.value = "modified"
    assert list(app.visible_files()["path"]) == ["/app"]
    app.change.value = "all"
    app.sort.value = "size"
    assert app.visible_files()["path"].iloc[0] == "/app/lib/util.sh"
    labels = [label for label, _ in app.change.options]
    assert labels == ["all (3)", "added (2)", "modified (1)", "deleted (0)", "wasted (0)"]


def test_selecting_a_layer_that_does_not_exist_is_a_clear_error(images):
    with pytest.raises(NbimagesError, match="no layer 9"):
        Explorer(images[0]).select(9)


def test_long_file_lists_are_cut_with_a_hint(images, monkeypatch):
    monkeypatch.setattr(explorer_mod, "FILE_ROWS", 1)
    ex = Explorer(images[0])
    ex.select(3)
    assert rows(ex.app.files_html.value, "nbimages-file-row") == 1
    assert "showing 1 of 3" in ex.app.files_html.value


def test_file_list_says_its_count_and_bytes_above_a_scroll_box(images):
    ex = Explorer(images[0])
    ex.select(3)
    shown = ex.app.visible_files()
    html = ex.app.files_html.value
    total = explorer_mod.format_bytes(int(shown["size"].sum()))
    assert html.startswith(f"<p class='nbimages-files-count nbimages-muted'>{len(shown):,} of ")
    assert f"files · {total}" in html.split("</p>")[0]
    assert "<div class='nbimages-scroll'><table" in html
    assert ".nbimages-scroll { max-height: 26em; overflow: auto; }" in explorer_mod.CSS


def test_sizes_tab_switches_between_directories_and_layers(images):
    app = Explorer(images[0]).app
    app.tabs.selected_index = 1
    assert "nbimages-chart-dirs" in app.chart.value and 'data-label="/app"' in app.chart.value
    app.depth.value = 1
    assert 'data-label="/app"' in app.chart.value and 'data-label="/app/lib"' not in app.chart.value
    app.depth.value = 2
    assert 'data-label="/app/lib"' in app.chart.value
    app.size_mode.value = "layers"
    assert "nbimages-chart-layers" in app.chart.value and app.depth.disabled
    assert app.chart.value.count("nbimages-wasted") == 2    # layers 0 and 1, hatched


def test_diff_mode_lists_changed_paths_and_both_layer_tables(images):
    wasteful, slim = images
    ex = explore(wasteful, diff=slim)
    app = ex.app
    assert app.tabs.titles[0] == "Diff"
    diff_rows = rows(app.diff_html.value, "nbimages-diff-row")
    assert diff_rows == len(ex.diff) > 0
    app.diff_change.value = "added"
    assert set(app.visible_diff()["path"]) == {"/app/new.txt"}
    app.diff_change.value = "removed"
    assert "/app/lib/util.sh" in set(app.visible_diff()["path"])
    app.which.value = 1
    assert len(app.rows) == 2
    app.buttons[1].click()
    assert "/app/new.txt" in app.files_html.value


# -- fallbacks -------------------------------------------------------------------------------------

def test_outside_a_kernel_the_bundle_is_static_html_and_text(images):
    bundle = Explorer(images[0])._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "<script" not in bundle["text/html"]
    assert "explorer:wasteful" in bundle["text/plain"]


def test_in_a_kernel_the_bundle_adds_the_widget_view(images, monkeypatch):
    monkeypatch.setattr(explorer_mod, "_widgets_live", lambda: True)
    ex = Explorer(images[0])
    bundle = ex._repr_mimebundle_()
    assert bundle[WIDGET]["model_id"] == ex.widget.model_id
    assert rows(bundle["text/html"], "nbimages-layer-row") == 5
    assert bundle["text/plain"].startswith("<Inspection of")


def test_static_html_has_layer_rows_files_charts_and_waste(images):
    page = Explorer(images[0]).to_html()
    assert rows(page, "nbimages-layer-row") == 5
    assert len(re.findall(r"<tr class='nbimages-layer-row nbimages-wasteful'", page)) == 2
    assert page.count("<details class='nbimages-layer-files'") == 5
    assert rows(page, "nbimages-file-row") == 2 + 2 + 2 + 3 + 2
    assert "nbimages-chart-dirs" in page and "nbimages-chart-layers" in page
    assert "nbimages-waste-row" in page and "/data/big.csv" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")


def test_static_html_cuts_long_layers(images, monkeypatch):
    monkeypatch.setattr(explorer_mod, "STATIC_FILE_ROWS", 1)
    page = Explorer(images[0]).to_html()
    assert rows(page, "nbimages-file-row") == 5
    assert "files(layer=3)" in page


def test_static_html_of_a_diff_lists_changes_and_shared_layers(images):
    wasteful, slim = images
    page = explore(wasteful, diff=slim).to_html()
    assert "nbimages-diff-row" in page and "/app/new.txt" in page
    assert "share their bottom 0 of 5 / 2 layers" in page
    assert "Bytes in layers −300.0 kB, in the final filesystem −1 B." in page


def test_text_view_names_the_waste_and_the_diff(images):
    text = repr(explore(images[0], diff=images[1]))
    assert re.search(r"wasted space.*\n.*300\.0 kB\s+/data/big\.csv", text)
    assert "diff explorer:wasteful -> explorer:slim" in text
    assert "added     /app/new.txt" in text


def test_explore_accepts_a_store_name(images, monkeypatch):
    monkeypatch.setenv("NBIMAGES_HOME", str(STORE_HOME[0]))
    ex = explore("store:explorer:slim")
    assert ex.inspection.digest == images[1].digest and ex.other is None


def test_explore_of_a_missing_image_is_an_nbimages_error(tmp_path):
    with pytest.raises(NbimagesError):
        explore(str(tmp_path / "missing.tar"))


def test_filter_files_sorts_by_change_order():
    import pandas as pd
    frame = pd.DataFrame({"path": ["/b", "/a", "/c"], "change": ["deleted", "added", "modified"],
                          "size": [1, 2, 3]})
    assert list(filter_files(frame, sort="change")["path"]) == ["/a", "/c", "/b"]
    assert list(filter_files(frame, change="added")["path"]) == ["/a"]


# -- charts ----------------------------------------------------------------------------------------

def test_bar_chart_is_well_formed_svg_scaled_to_the_largest_bar():
    svg = hbar_chart([Bar("/usr", [Segment(300, "#111"), Segment(100, "#222", wasted=True)]),
                      Bar("/a&b<c>", [Segment(200, "#333")])], title="t & t", width=600,
                      label_width=100, note_width=100)
    root = ET.fromstring(svg)
    rects = [r for r in root.iter("{http://www.w3.org/2000/svg}rect")
             if "nbimages-seg" in r.get("class", "")]
    widths = [float(r.get("width")) for r in rects]
    assert widths[0] + widths[1] == pytest.approx(600 - 100 - 100 - 16, abs=0.2)
    assert widths[2] == pytest.approx(widths[0] * 2 / 3, abs=0.2)
    assert rects[1].get("fill") == "url(#nbimages-hatch)"


def test_empty_chart_says_so():
    assert "nothing to show" in hbar_chart([])


def test_short_command_drops_shell_noise_and_content_hashes():
    assert short_command("/bin/sh -c #(nop)  CMD [\"sh\"]") == 'CMD ["sh"]'
    assert short_command("COPY --chmod=644 <cell> /a # sha256:" + "0" * 64) == \
        "COPY --chmod=644 <cell> /a"
    assert short_command("RUN " + "x" * 100, 20).endswith("…")


def test_an_image_without_layers_explores_to_empty_views():
    r = nbimages.Recipe("scratch")
    r.env(A="1")
    ex = explore(r.build("explorer:empty"))
    assert rows(ex.to_html(), "nbimages-layer-row") == 0
    assert "nothing to show" in ex.to_html()
    ex.app.tabs.selected_index = 1
    assert ex.app.rows == [] and "nothing to show" in ex.app.chart.value


def test_switching_images_in_a_diff_drops_the_file_counts_of_the_other_image(images):
    """The change buttons say 'all (5)' for a selected layer; listing the other image's layers
    (nothing selected there) must not keep the first image's counts on them."""
    app = explore(images[0], diff=images[1]).app
    app.select(1)
    labels = [label for label, _ in app.change.options]
    assert labels[0].startswith("all (")
    app.change.value = "added"
    app.which.value = 1
    assert list(app.change.options) == ["all", "added", "modified", "deleted", "wasted"]
    assert app.change.value == "added"
    app.buttons[1].click()
    assert app.change.options[0][0].startswith("all (")


def test_the_chosen_change_stays_chosen_when_another_layer_is_clicked(images):
    """Pick 'deleted', then click layer after layer: each list shows only its deletions
    (the buttons' new counts used to reset the choice to 'all')."""
    app = Explorer(images[0]).app
    app.select(0)
    app.change.value = "added"
    app.buttons[4].click()                                  # REMOVE /data/big.csv
    assert app.change.value == "added"
    assert app.visible_files().empty and "no files here" in app.files_html.value
    app.change.value = "deleted"
    assert "/data/big.csv" in app.files_html.value
    app.buttons[2].click()
    assert app.change.value == "deleted" and "no files here" in app.files_html.value


# -- issue 19: diffs that follow A/B, wasted files marked, the diff's order and counts -----------

def test_every_tab_of_a_diff_follows_the_image_toggle_and_says_which(images):
    app = explore(images[0], diff=images[1]).app
    assert "Waste of A: explorer:wasteful" in app.labels[2].value
    app.tabs.selected_index = 3                                 # Diff, Layers, Sizes, Waste
    assert "nbimages-cause-table" in app.waste.value            # A wastes 300 kB
    app.tabs.selected_index = 2
    a_chart = app.chart.value
    app.which.value = 1
    assert [label.value.count("B: explorer:slim") for label in app.labels] == [1, 1, 1]
    assert "Sizes of B" in app.labels[1].value
    assert app.chart.value != a_chart and "/data" not in app.chart.value
    assert app.waste.value == ""                                # made when shown
    app.tabs.selected_index = 3
    assert "no wasted space" in app.waste.value                 # B wastes nothing
    app.tabs.selected_index = 2
    app.size_mode.value = "layers"
    assert app.chart.value.count("class=\"nbimages-bar\"") == 2 or \
        len(re.findall(r"nbimages-bar", app.chart.value)) >= 2


def test_wasted_files_are_marked_and_filtered_in_the_layer_file_list(images):
    insp = images[0]
    assert insp.lost_files(0) == {"/data/big.csv": "overwritten in layer 1"}
    assert insp.lost_files(1) == {"/data/big.csv": "deleted in layer 4"}
    app = Explorer(insp).app
    app.select(0)
    assert "wasted: overwritten in layer 1" in app.files_html.value
    assert "nbimages-lost" in app.files_html.value
    labels = dict((v, k) for k, v in app.change.options)
    assert labels["wasted"] == "wasted (1)"
    app.change.value = "wasted"
    assert list(app.visible_files()["path"]) == ["/data/big.csv"]
    page = Explorer(insp).to_html()
    assert page.count("wasted: ") == 2                          # the static lists mark them too


def test_diff_sorts_by_impact_with_mtime_only_changes_last_and_counts_its_filters(images):
    import pandas as pd
    diff = pd.DataFrame({
        "path": ["/a", "/b", "/c", "/d"], "change": ["modified", "added", "modified", "removed"],
        "what": ["mtime", "", "size", ""], "size_a": pd.array([0, None, 10, 500], "Int64"),
        "size_b": pd.array([0, 20, 5000, None], "Int64")})
    assert list(explorer_mod.sort_diff(diff)["path"]) == ["/c", "/d", "/b", "/a"]
    assert list(explorer_mod.sort_diff(diff, "size")["path"]) == ["/c", "/b", "/a", "/d"]
    assert list(explorer_mod.sort_diff(diff, "path")["path"]) == ["/a", "/b", "/c", "/d"]
    app = explore(images[0], diff=images[1]).app
    labels = [label for label, _ in app.diff_change.options]
    n = len(app.ex.diff)
    assert labels[0] == f"all ({n})" and [x.split(" (")[0] for x in labels] == \
        ["all", "added", "modified", "removed"]
    assert sum(int(x.split("(")[1].rstrip(")")) for x in labels[1:]) == n
    app.diff_sort.value = "size"
    sizes = app.visible_diff()["size_b"].fillna(0).tolist()
    assert sizes == sorted(sizes, reverse=True)


def test_in_a_kernel_the_static_copy_is_an_output_of_its_own_before_the_widget(images,
                                                                               monkeypatch):
    """JupyterLab shows "model not found" for a widget view after a restart, never the same
    bundle's text/html: so the static HTML is a separate output the CSS hides while live."""
    import IPython.display
    shown = []
    monkeypatch.setattr(explorer_mod, "_widgets_live", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    ex = Explorer(images[0])
    ex._ipython_display_()
    (static, raw), (widget, _) = shown
    assert raw == {"raw": True} and set(static[0]) == {"text/plain", "text/html"}
    fallback = "class='nbimages-explorer nbimages-static nbimages-static-fallback'"
    assert fallback in static[0]["text/html"]
    assert ":has(.nbimages-static-fallback)" in static[0]["text/html"]  # the hiding rules
    assert widget[0] is ex.widget and "nbimages-live" in ex.widget._dom_classes
    shown.clear()
    monkeypatch.setattr(explorer_mod, "_widgets_live", lambda: False)
    ex._ipython_display_()
    assert len(shown) == 1 and fallback not in shown[0][0][0]["text/html"]


def test_tables_show_sizes_with_units_and_modes_in_octal_but_keep_raw_values(images):
    files = images[0].files()
    page = files._repr_html_()
    assert "195.3 kB" not in page and "200.0 kB" in page and "<td>0755</td>" in page
    assert files["mode"].dtype.kind == "i" and 0o755 in set(files["mode"])
    assert files["size"].max() == 200_000
    layers = images[0].layers._repr_html_()
    assert "300.0 kB" in layers or "200.0 kB" in layers
    diff = images[0].diff(images[1])._repr_html_()
    assert "&lt;NA&gt;" not in diff


def test_a_layer_without_a_recorded_command_says_so(images):
    from nbimages.notebook.charts import layer_commands

    class Entry:
        created_by, comment = "", "Imported from -"

    class Image:
        def layer_history(self):
            return [Entry(), None]

    class Insp:
        image = Image()
        layers = __import__("pandas").DataFrame({"created_by": ["", ""]})

    assert layer_commands(Insp()) == ["(no command recorded: Imported from -)",
                                      "(no command recorded in the image's history)"]
    Entry.comment = ""
    assert layer_commands(Insp())[0] == "(the base layer: no command recorded)"

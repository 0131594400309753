"""Waste as decisions: lost copies grouped by directory and cause, with the steps and the fix."""

from __future__ import annotations

import nbimages
from nbimages.builder.recipe import Recipe


def test_waste_is_grouped_by_directory_and_cause_with_the_fix():
    r = Recipe("scratch")
    r.file("/data/cache/a.bin", "a" * 30_000).file("/data/cache/b.bin", "b" * 20_000)
    r.remove("/data/cache")
    r.file("/etc/app.conf", "first" * 100).file("/etc/app.conf", "second")
    img = r.build("nbtest/waste-groups:1")
    ins = nbimages.inspect(img)
    groups = ins.waste_by_cause
    assert list(groups.columns[:6]) == ["directory", "files", "wasted_bytes", "written_in",
                                        "removed_in", "how"]
    assert groups.wasted_bytes.sum() == ins.wasted_bytes  # every lost byte, once
    deleted = groups[groups.how == "deleted with its directory"]
    assert deleted.empty  # a directory's deletion is counted as "deleted"
    cache = groups[groups.directory == "/data/cache"]
    assert len(cache) == 2  # written in two layers, both deleted in layer 2
    assert set(cache.written_in) == {0, 1} and set(cache.removed_in) == {2}
    assert cache.wasted_bytes.sum() == 50_000 and (cache.how == "deleted").all()
    first = cache.iloc[0]
    assert first.example == "/data/cache/a.bin" and "deleted in layer 2" in first.cause
    assert "in the same step that writes it" in first.fix and "rm -rf /data/cache" in first.fix
    conf = groups[groups.directory == "/etc"].iloc[0]
    assert (conf.written_in, conf.removed_in, conf.how) == (3, 4, "overwritten")
    assert conf.wasted_bytes == 500 and "write the files of /etc once" in conf.fix


def test_waste_tab_and_shell_show_the_groups_with_the_fix(tmp_path):
    from nbimages.notebook.explorer import waste_html
    from test_cli import cli
    r = Recipe("scratch").file("/tmp/junk/x.bin", "x" * 4000).remove("/tmp/junk")
    img = r.build("nbtest/waste-tab:1")
    html = waste_html(nbimages.inspect(img))
    assert "<h4>By cause</h4>" in html and "nbimages-cause-row" in html
    assert "<b>Fix:</b> delete /tmp/junk in the same step" in html
    img.save(tmp_path / "waste.tar")
    out = cli("waste", f"docker-archive:{tmp_path / 'waste.tar'}", "--by-cause").stdout
    assert "/tmp/junk" in out and "deleted" in out

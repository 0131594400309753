"""The notebook build session without IPython: cells map to steps, re-runs replace in place."""

from __future__ import annotations

import pytest

from nbimages.workflow import session
from nbimages.errors import BuildError


@pytest.fixture
def s():
    session.reset()
    yield session.current()
    session.reset()


def test_steps_before_from_are_a_clear_error(s):
    with pytest.raises(BuildError, match="%image from"):
        s.add("env", A="1", cell_id="c1", execution_count=1)


def test_rerunning_a_cell_replaces_its_step_in_place(s):
    s.start("scratch", cell_id="c0", execution_count=1)
    s.add("file", "/a.txt", "one", cell_id="c1", execution_count=2)
    s.add("env", {"A": "1"}, cell_id="c2", execution_count=3)
    s.add("file", "/a.txt", "two", cell_id="c1", execution_count=4)
    r = s.recipe
    assert [(st.kind, st.key, st.origin) for st in r.steps] == [("file", "c1", 4),
                                                                  ("env", "c2", 3)]
    assert r.steps[0].content == b"two"


def test_several_lines_of_one_execution_stay_together_and_a_rerun_replaces_them_all(s):
    s.start("scratch", cell_id="c0", execution_count=1)
    s.add("env", {"A": "1"}, cell_id="c1", execution_count=2)
    s.add("workdir", "/app", cell_id="c1", execution_count=2)
    s.add("user", "1000", cell_id="c2", execution_count=3)
    s.add("env", {"A": "2"}, cell_id="c1", execution_count=4)
    assert [st.describe() for st in s.recipe.steps] == ["ENV A=2", "USER 1000"]
    s.add("expose", 80, cell_id="c1", execution_count=4)
    assert [st.describe() for st in s.recipe.steps] == ["ENV A=2", "EXPOSE 80/tcp", "USER 1000"]


def test_rerunning_the_from_cell_keeps_the_steps_and_another_from_starts_over(s):
    s.start("scratch", cell_id="c0", execution_count=1)
    s.add("env", {"A": "1"}, cell_id="c1", execution_count=2)
    s.start("scratch", cell_id="c0", execution_count=3)
    assert len(s.recipe.steps) == 1
    s.start("scratch", cell_id="c9", execution_count=4)
    assert s.recipe.steps == []


def test_build_report_links_steps_to_cells_and_only_later_layers_rebuild(s):
    s.start("scratch", cell_id="c0", execution_count=1)
    s.add("file", "/a.txt", "a", cell_id="c1", execution_count=2)
    s.add("file", "/b.txt", "b", cell_id="c2", execution_count=3)
    s.add("cmd", ["cat", "/a.txt"], cell_id="c3", execution_count=4)
    first = s.build("nb:1")
    s.add("file", "/b.txt", "b2", cell_id="c2", execution_count=5)
    second = s.build("nb:1")
    rows = [(r["origin"], r["cache"]) for r in second.build_report]
    assert rows == [(2, "hit"), (5, "rebuilt"), (4, "config")]
    assert first.digest != second.digest
    frame = second.build_report.to_frame()
    assert list(frame["origin"]) == [2, 5, 4] and frame["compressed_size"].notna().sum() == 2


def test_unknown_step_kind_and_options_are_clear_errors(s):
    s.start("scratch", cell_id="c0")
    with pytest.raises(BuildError, match="unknown step"):
        s.add("frobnicate", cell_id="c1")
    with pytest.raises(BuildError, match="unknown option"):
        s.add("copy", "a", "/b", chmode=1, cell_id="c1")
    assert s.recipe.steps == []


def test_dockerfile_cell_builds_and_becomes_the_current_recipe(s):
    img = s.dockerfile("FROM scratch\nENV A=1\nCMD [\"true\"]\n", "df:1", cell_id="c5",
                       execution_count=7)
    assert img.config["config"]["Env"] == ["A=1"]
    assert [st.origin for st in s.recipe.steps] == [7, 7]
    assert "ENV A=1" in s.recipe.to_dockerfile()


def test_build_report_says_its_layer_size_is_the_compressed_blob(s):
    s.start("scratch", cell_id="c1", execution_count=1)
    s.add("file", "/a.txt", "x" * 5000, cell_id="c2", execution_count=2)
    s.add("env", {"A": "1"}, cell_id="c3", execution_count=3)
    image = s.build("t:report")
    report = image.build_report
    frame = report.to_frame()
    assert frame["compressed_size"].iloc[0] == image.layers[0].size < 5000
    assert "compressed" in repr(report).splitlines()[0]
    html = report._repr_html_()
    assert "<th>compressed</th>" in html and "NaN" not in html and "<NA>" not in html


def test_build_report_html_is_for_people(s):
    s.start("scratch", cell_id="c1", execution_count=1)
    s.add("file", "/a.txt", "x" * 5000, cell_id="c2", execution_count=3)
    image = s.build("t:people")
    row = image.build_report[0]
    html = image.build_report._repr_html_()
    assert "<td>In [3]</td>" in html  # the cell as the notebook numbers it
    short = row["layer"].split(":")[1][:12]
    assert f">{short}</code>" in html and f"title='{row['layer']}'" in html  # whole on hover
    assert f">{row['layer']}<" not in html
    assert "&lt;cell&gt; /a.txt</td>" in html and " B</td>" in html  # no content hash, a unit

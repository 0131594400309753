"""The %image magics in a real IPython shell: parsing, help, errors, completion.

The analysis API is replaced by a small stub here so that these tests are about the skin;
tests/test_magics_images.py runs the same magics on real images.
"""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbimages
from nbimages.errors import ImageNotFound
from nbimages.commands.verbs import TABLE


class FakeInspection:
    calls: list = []

    def __init__(self, source, platform=None):
        self.source, self.platform = source, platform
        self.layers = pd.DataFrame({"index": [0, 1], "size": [10, 20], "source": [str(source)] * 2})
        self.waste = pd.DataFrame({"path": ["/a"], "count": [2], "total_bytes": [8], "wasted_bytes": [4]})
        self.history = pd.DataFrame({"created_by": ["COPY", "CMD"]})

    def files(self, layer=None, final=False):
        return pd.DataFrame({"layer": [layer], "path": ["/a"], "final": [final]})

    def sizes(self, depth=2):
        return pd.DataFrame({"path": ["/usr"], "depth": [depth]})

    def diff(self, other, content=False):
        return pd.DataFrame({"a": [self.source], "b": [other.source], "content": [content]})

    def packages(self):
        return pd.DataFrame({"name": ["busybox"]})


@pytest.fixture
def stub_api(monkeypatch):
    """nbimages.inspect as a stub, and every API counted as present."""
    calls = []

    def fake_inspect(source, platform=None):
        calls.append((source, platform))
        if source == "missing:thing":
            raise ImageNotFound("no image 'missing:thing' anywhere. Build it or pull it first.")
        if source == "bug:thing":
            raise KeyError("an internal bug")
        return FakeInspection(source, platform)

    monkeypatch.setattr(nbimages.analysis, "inspect", fake_inspect)
    return calls


def usage_error(ip, line: str, cell: str | None = None) -> str:
    with pytest.raises(UsageError) as e:
        if cell is None:
            ip.run_line_magic("image", line)
        else:
            ip.run_cell_magic("image", line, cell)
    message = str(e.value)
    assert "\n" not in message, f"UsageError must be one line: {message!r}"
    return message


# -- help ------------------------------------------------------------------------------------------

def test_help_lists_every_subcommand_on_one_line_each(ip, capsys):
    assert ip.run_line_magic("image", "--help") is None
    out = capsys.readouterr().out
    for name, cmd in TABLE.commands.items():
        lines = [l for l in out.splitlines() if l.split()[:1] == [name]]
        assert len(lines) == 1, name
        assert cmd.summary in lines[0]


def test_bare_magic_and_help_word_show_the_same_help(ip, capsys):
    ip.run_line_magic("image", "--help")
    full = capsys.readouterr().out
    ip.run_line_magic("image", "")
    assert capsys.readouterr().out == full
    ip.run_line_magic("image", "help")
    assert capsys.readouterr().out == full


def test_subcommand_help_is_printed_not_exited(ip, capsys, stub_api):
    assert ip.run_line_magic("image", "files --help") is None
    out = capsys.readouterr().out
    assert out.startswith("usage: %image files")
    assert "--layer N" in out and "--platform" in out
    assert "SOURCE" in out
    ip.run_line_magic("image", "help files")
    assert capsys.readouterr().out == out


@pytest.mark.parametrize("name", TABLE.names())
def test_every_subcommand_help_prints_its_usage(ip, capsys, name):
    ip.run_line_magic("image", f"{name} --help")  # a '%' in a help text broke argparse
    assert f"{name}" in capsys.readouterr().out.splitlines()[0]

def test_question_mark_help_lists_subcommands(ip):
    doc = ip.magics_manager.magics["line"]["image"].__doc__
    assert "layers" in doc and "--help" in doc


# -- usage errors ---------------------------------------------------------------------------------

def test_unknown_subcommand_suggests_the_close_one_and_lists_all(ip):
    msg = usage_error(ip, "layerz docker-archive:x.tar")
    assert "unknown subcommand 'layerz'" in msg
    assert "Did you mean 'layers'?" in msg
    assert "waste" in msg and "pull" in msg


def test_wrong_option_is_one_usage_line(ip, stub_api):
    msg = usage_error(ip, "layers oci:dir --bogus")
    assert msg.startswith("%image layers: unrecognized arguments: --bogus")


def test_missing_argument_is_one_usage_line(ip, stub_api):
    msg = usage_error(ip, "diff oci:a")
    assert "%image diff" in msg and "required: B" in msg


def test_bad_option_value_is_one_usage_line(ip, stub_api):
    msg = usage_error(ip, "files oci:dir --layer two")
    assert "--layer" in msg and "invalid int value" in msg


def test_option_before_subcommand_is_a_usage_error(ip):
    assert "unknown option '--json'" in usage_error(ip, "--json layers x")


def test_unbalanced_quote_is_a_usage_error(ip):
    assert "cannot parse" in usage_error(ip, "layers 'oci:dir")


def test_cell_body_on_a_line_only_subcommand_is_a_usage_error(ip, stub_api):
    msg = usage_error(ip, "layers oci:dir", cell="something\n")
    assert "%%image layers takes no cell body" in msg


def test_usage_error_in_a_cell_prints_one_line_and_fails_the_cell(ip, capsys):
    result = ip.run_cell("%image layerz x")
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, UsageError)
    text = (captured.out + captured.err).strip()
    assert text.startswith("UsageError: %image: unknown subcommand 'layerz'")
    assert len(text.splitlines()) == 1
    assert "Traceback" not in text


# -- errors from the API ---------------------------------------------------------------------------

def test_api_error_is_one_red_paragraph_without_traceback(ip, capsys, stub_api):
    result = ip.run_cell("%image layers missing:thing")
    captured = capsys.readouterr()
    assert isinstance(result.error_in_exec, ImageNotFound)
    text = captured.out + captured.err
    assert "\x1b[31mImageNotFound: no image 'missing:thing' anywhere. Build it or pull it first.\x1b[0m" in text
    assert "Traceback" not in text and "File " not in text
    assert len(text.strip().splitlines()) == 1


def test_api_error_keeps_its_class_for_python_callers(ip, stub_api):
    with pytest.raises(ImageNotFound):
        ip.run_line_magic("image", "layers missing:thing")


def test_internal_bug_keeps_its_traceback(ip, capsys, stub_api):
    result = ip.run_cell("%image layers bug:thing")
    text = capsys.readouterr()
    assert isinstance(result.error_in_exec, KeyError)
    assert "Traceback" in text.out + text.err or "KeyError" in text.out + text.err
    assert "fake_inspect" in text.out + text.err  # the frame of the bug is shown


# -- subcommands call the API ---------------------------------------------------------------------

def test_layers_returns_the_inspection_dataframe(ip, stub_api):
    df = ip.run_line_magic("image", "layers docker-archive:/tmp/x.tar")
    assert isinstance(df, pd.DataFrame)
    assert list(df["source"]) == ["docker-archive:/tmp/x.tar"] * 2
    assert stub_api == [("docker-archive:/tmp/x.tar", None)]


def test_platform_option_is_passed_to_inspect(ip, stub_api):
    ip.run_line_magic("image", "waste oci:dir --platform linux/arm64")
    assert stub_api == [("oci:dir", "linux/arm64")]


def test_files_layer_and_sizes_depth_reach_the_api(ip, stub_api):
    assert ip.run_line_magic("image", "files oci:dir --layer 3")["layer"].tolist() == [3]
    assert ip.run_line_magic("image", "sizes oci:dir --depth 4")["depth"].tolist() == [4]
    assert ip.run_line_magic("image", "sizes oci:dir")["depth"].tolist() == [2]


def test_diff_inspects_both_images(ip, stub_api):
    df = ip.run_line_magic("image", "diff oci:a oci:b")
    assert df.iloc[0].tolist() == ["oci:a", "oci:b", False]
    df = ip.run_line_magic("image", "diff oci:a oci:b --content")
    assert df.iloc[0].tolist() == ["oci:a", "oci:b", True]


def test_variables_are_expanded_in_the_line(ip, stub_api):
    ip.user_ns["archive"] = "docker-archive:/tmp/with space.tar"
    df = ip.run_line_magic("image", 'layers "{archive}"')
    assert df["source"].iloc[0] == "docker-archive:/tmp/with space.tar"


def test_an_inspection_held_in_a_variable_is_reused(ip, stub_api, monkeypatch):
    monkeypatch.setattr(nbimages.analysis, "Inspection", FakeInspection)
    ip.user_ns["insp"] = FakeInspection("oci:held")
    df = ip.run_line_magic("image", "layers insp")
    assert df["source"].iloc[0] == "oci:held"
    assert stub_api == []


def test_cell_magic_value_is_the_cell_result(ip, stub_api):
    result = ip.run_cell("%image packages oci:dir")
    assert result.success
    assert result.result["name"].tolist() == ["busybox"]


# -- completion ------------------------------------------------------------------------------------

def _complete(ip, line: str) -> list[str]:
    from IPython.core.completer import provisionalcompleter
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(line, len(line))]


def test_tab_completes_subcommands(ip):
    matches = _complete(ip, "%image la")
    assert "layers" in matches
    assert not any(m.startswith("%") for m in matches)


def test_tab_completes_options_of_a_subcommand(ip, stub_api):
    assert "--layer" in _complete(ip, "%image files oci:dir --la")


def test_tab_completes_image_names_from_the_store(ip, stub_api):
    from nbimages.oci.descriptor import Descriptor
    from nbimages.store import default_store
    store = default_store()
    desc = Descriptor("application/vnd.oci.image.manifest.v1+json",
                      "sha256:" + "a" * 64, 10)
    store.tag("handout:1", desc)
    matches = _complete(ip, "%image layers han")
    assert "handout:1" in matches


def test_reload_extension_keeps_one_working_magic(ip, capsys):
    ip.run_line_magic("reload_ext", "nbimages")
    ip.run_line_magic("image", "--help")
    assert "layers" in capsys.readouterr().out

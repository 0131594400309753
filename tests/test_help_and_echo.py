"""Help that names notebooks, did-you-mean for mistyped options, step cells without echo."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbimages.cli import main
from test_magics_build import cell, fresh_session  # noqa: F401  (fixture)


def test_a_mistyped_option_names_the_one_meant_in_the_magic(ip):
    with pytest.raises(UsageError, match=r"--depht 3; did you mean --depth\?"):
        ip.run_line_magic("image", "sizes x --depht 3")
    with pytest.raises(UsageError, match=r"did you mean --layer / --final\?"):
        ip.run_line_magic("image", "files x --layr 1 --fnal")


def test_a_mistyped_option_names_the_one_meant_in_the_cli(capsys):
    assert main(["inspect", "x", "--depht", "3"]) == 2
    assert "did you mean --depth?" in capsys.readouterr().err
    assert main(["build", ".", "--tga", "x:1"]) == 2
    assert "nbimages build: unrecognized arguments: --tga x:1; did you mean --tag?" \
        in capsys.readouterr().err
    assert main(["sizes", "x", "--detph=2"]) == 2  # a %image subcommand from the shell
    assert "did you mean --depth?" in capsys.readouterr().err
    assert main(["inspect", "x", "--zzzz"]) == 2  # nothing close: no guess
    assert "did you mean" not in capsys.readouterr().err


def test_build_help_explains_notebook_builds(capsys):
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    assert "nbimages build analysis.ipynb -t app:1" in out
    assert "analysis.nbimages.lock" in out and "%image cells" in out


def test_step_cells_show_no_step_repr(ip, capsys):
    cell(ip, "%image from scratch", "e1")
    for source, cid in (("%%image file /a.txt\nhello\n", "e2"), ("%image env A=1", "e3"),
                        ("%image workdir /app", "e4"), ('%image cmd ["/bin/true"]', "e5")):
        assert cell(ip, source, cid) is None  # nothing for IPython to echo as Out[n]
    out = capsys.readouterr().out
    assert "<Step" not in out
    assert [s.describe() for s in ip.run_line_magic("image", "recipe").steps][1:] == \
        ["ENV A=1", "WORKDIR /app", 'CMD ["/bin/true"]']


def test_the_build_report_names_cells_as_the_notebook_does(ip, capsys):
    ip.run_cell("%image from scratch", store_history=True, cell_id="r1")
    ip.run_cell("%%image file /a.txt\nhello\n", store_history=True, cell_id="r2")
    count = ip.execution_count - 1  # the In [n] of the file cell
    img = cell(ip, "%image build nbt19/report:1", "r3")
    text = repr(img.build_report)
    assert text.splitlines()[0].split()[:3] == ["#", "cell", "cache"]
    assert f"In [{count}]" in text and "# sha256:" not in text  # no content hash in the text
    assert "COPY --chmod=644 <cell> /a.txt" in text and " B " in text + " "

"""Tab completion of %image lines as JupyterLab gets it: complete_request to a real ipykernel.

One kernel for the module, with its own HOME and NBIMAGES_HOME and one image (demo:1) built in
its store. The last test runs in-process (the matcher is removed on unload).
"""

from __future__ import annotations

import os

import pytest
from jupyter_client.manager import start_new_kernel

from test_magics_kernel import execute


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    home = tmp_path_factory.mktemp("completion-home")
    work = tmp_path_factory.mktemp("completion-cwd")
    (work / "images").mkdir()
    (work / "images" / "app.tar").write_bytes(b"")
    (work / "images" / "layout").mkdir()
    (work / "notes.txt").write_text("")
    env = {**os.environ, "HOME": str(home), "NBIMAGES_HOME": str(home / "nbimages"),
           "NBIMAGES_PROGRESS": "lines"}
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(work))
    try:
        reply, outputs = execute(kc, "import nbimages\n%load_ext nbimages\n"
                                     "img = nbimages.Recipe('scratch').file('/a', 'x').build('demo:1')")
        assert reply["status"] == "ok", outputs
        kc.work = work
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def complete(kc, code: str) -> tuple[list[str], str]:
    """The matches of a complete_request at the end of `code`, and the text they replace."""
    reply = kc.complete(code, len(code), reply=True, timeout=30)["content"]
    assert reply["status"] == "ok"
    assert reply["cursor_end"] == len(code)
    return reply["matches"], code[reply["cursor_start"]:]


def test_subcommand_completes_from_its_prefix(kernel):
    assert complete(kernel, "%image lay") == (["layers"], "lay")


def test_bare_dashes_offer_only_the_options_of_the_subcommand(kernel):
    matches, replaced = complete(kernel, "%image layers --")
    assert sorted(matches) == ["--help", "--platform"]  # not ~200 Python builtins from Jedi
    assert replaced == "--"


def test_options_are_those_of_the_subcommand_typed(kernel):
    assert complete(kernel, "%image files demo:1 --")[0] == ["--final", "--help", "--layer", "--platform"]
    assert complete(kernel, "x = %image files demo:1 --la")[0] == ["--layer"]


def test_store_prefix_is_followed_by_store_names(kernel):
    assert complete(kernel, "%image layers store:de") == (["store:demo:1"], "store:de")


def test_empty_source_offers_store_names_variables_and_transports(kernel):
    matches, _ = complete(kernel, "%image layers ")
    assert matches[0] == "demo:1"
    assert "img" in matches
    for prefix in ("docker-daemon:", "docker-archive:", "oci:", "oci-archive:", "docker://", "store:"):
        assert prefix in matches
    assert "print" not in matches and "abs" not in matches


def test_store_name_completes_without_prefix(kernel):
    assert complete(kernel, "%image inspect de") == (["demo:1"], "de")


def test_file_transports_complete_local_paths(kernel):
    folder = f"{kernel.work}/images/"
    matches, replaced = complete(kernel, f"%image layers docker-archive:{folder}")
    assert matches == [f"docker-archive:{folder}app.tar", f"docker-archive:{folder}layout/"]
    assert replaced == f"docker-archive:{folder}"
    assert complete(kernel, "%image layers oci:ima")[0] == ["oci:images/"]
    assert complete(kernel, "%image layers oci-archive:images/a")[0] == ["oci-archive:images/app.tar"]


def test_save_and_load_complete_local_paths(kernel):
    assert complete(kernel, "%image save demo:1 im")[0] == ["images/"]
    assert complete(kernel, "%image load images/")[0] == ["images/app.tar", "images/layout/"]
    assert complete(kernel, "%image copy no")[0] == ["notes.txt"]


def test_option_with_choices_completes_its_values(kernel):
    assert complete(kernel, "%image save demo:1 out.tar --format oc")[0] == ["oci", "oci-dir"]


def test_cell_magic_first_line_completes_like_the_line_magic(kernel):
    assert complete(kernel, "%%image fro")[0] == ["from"]


def test_python_lines_still_get_python_completion(kernel):
    matches, _ = complete(kernel, "pri")
    assert "print" in matches


def test_unload_removes_the_matcher(ip):
    from nbimages.notebook.magics import MATCHER_ID
    ids = lambda: [getattr(m, "matcher_identifier", None) for m in ip.Completer.custom_matchers]  # noqa: E731
    assert ids().count(MATCHER_ID) == 1
    ip.run_line_magic("reload_ext", "nbimages")
    assert ids().count(MATCHER_ID) == 1

"""The magics in a real Jupyter kernel: errors as the frontend receives them, cell ids from
JupyterLab's execute metadata, progress as widgets."""

from __future__ import annotations

import queue

import pytest
from jupyter_client.manager import start_new_kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    home = tmp_path_factory.mktemp("kernel-home")
    km, kc = start_new_kernel(kernel_name="python3", env={
        **__import__("os").environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "lines"})
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(kc, code: str, cell_id: str | None = None) -> tuple[dict, list[dict]]:
    """Send an execute_request as JupyterLab does (cellId in the metadata); collect iopub."""
    msg = kc.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                             "user_expressions": {}, "allow_stdin": False,
                                             "stop_on_error": True},
                         metadata={"cellId": cell_id} if cell_id else {})
    kc.shell_channel.send(msg)
    msg_id = msg["header"]["msg_id"]
    outputs = []
    while True:
        try:
            m = kc.get_iopub_msg(timeout=60)
        except queue.Empty:
            raise AssertionError(f"no answer from the kernel for {code!r}") from None
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
        if m["msg_type"] in ("stream", "error", "execute_result", "display_data"):
            outputs.append(m)
    reply = kc.get_shell_msg(timeout=60)
    return reply["content"], outputs


def test_api_error_reaches_the_frontend_as_one_red_line_and_fails_the_cell(kernel, tmp_path):
    execute(kernel, "%load_ext nbimages")
    reply, outputs = execute(kernel, f"%image layers docker-archive:{tmp_path}/missing.tar")
    assert reply["status"] == "error"
    errors = [o["content"] for o in outputs if o["msg_type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["ename"] == "ImageNotFound"
    assert len(errors[0]["traceback"]) == 1
    assert errors[0]["traceback"][0].startswith("\x1b[31mImageNotFound: ")


def test_usage_error_reaches_the_frontend_as_one_line(kernel):
    execute(kernel, "%load_ext nbimages")
    reply, outputs = execute(kernel, "%image layerz x")
    assert reply["status"] == "error"
    texts = [o["content"] for o in outputs if o["msg_type"] in ("error", "stream")]
    joined = "".join(t.get("text", "") + "".join(t.get("traceback", [])) for t in texts)
    assert joined.strip().startswith("UsageError: %image: unknown subcommand 'layerz'")
    assert len(joined.strip().splitlines()) == 1


def test_rerunning_a_jupyterlab_cell_replaces_its_step(kernel):
    execute(kernel, "%load_ext nbimages")
    assert execute(kernel, "%image from scratch", cell_id="cell-from")[0]["status"] == "ok"
    execute(kernel, "%%image file /a.txt\nfirst\n", cell_id="cell-a")
    execute(kernel, "%image workdir /w", cell_id="cell-w")
    execute(kernel, "%%image file /a.txt\nsecond, edited\n", cell_id="cell-a")
    reply, outputs = execute(kernel, "r = %image recipe\nprint([s.key for s in r.steps])")
    assert reply["status"] == "ok", outputs
    text = "".join(o["content"].get("text", "") for o in outputs if o["msg_type"] == "stream")
    assert text.strip() == "['cell-a', 'cell-w']"


def test_a_steps_origin_and_the_build_reports_cell_are_the_cells_in_number(kernel):
    execute(kernel, "%load_ext nbimages")
    execute(kernel, "%image from scratch", cell_id="origin-from")
    reply, _ = execute(kernel, "%%image file /o.txt\norigin\n", cell_id="origin-file")
    shown = reply["execution_count"]  # the n of In [n] the frontend shows for that cell
    reply, outputs = execute(kernel, "img = %image build nbtest/origin:1\n"
                                     "print([r['origin'] for r in img.build_report])",
                             cell_id="origin-build")
    assert reply["status"] == "ok", outputs
    text = "".join(o["content"].get("text", "") for o in outputs if o["msg_type"] == "stream")
    assert f"[{shown}]" in text
    streams: dict[str, str] = {}
    for o in outputs:
        if o["msg_type"] == "stream":
            streams[o["content"]["name"]] = streams.get(o["content"]["name"], "") + o["content"]["text"]
    assert "done, 1 step" in streams.get("stdout", "") and "stderr" not in streams  # not pink
    reply, outputs = execute(kernel, "r = %image recipe\nprint(repr(r))", cell_id="origin-show")
    text = "".join(o["content"].get("text", "") for o in outputs if o["msg_type"] == "stream")
    assert f"In [{shown}]" in text

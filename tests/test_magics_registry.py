"""%image pull / push / copy-image / tags / catalog / search against the real loopback registry."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest

import nbimages
from nbimages.errors import RegistryError


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("NBIMAGES_PROGRESS", "lines")


def test_pull_magic_returns_the_image_and_shows_progress_per_layer(ip, busybox_in_registry, quiet, capsys):
    img = ip.run_line_magic("image", f"pull {busybox_in_registry}")
    assert isinstance(img, nbimages.Image)
    assert len(img.layers) >= 1
    lines = capsys.readouterr().err.splitlines()
    prefix = f"pull {busybox_in_registry}: "
    per_layer = [l for l in lines if l.startswith(prefix) and l.endswith("(done)")]
    assert len(per_layer) == len(img.layers)
    assert lines[-1].startswith(prefix + f"done, {len(img.layers)} items, ")


def test_push_magic_takes_an_image_variable_and_keeps_the_digest(ip, busybox_in_registry, registry, quiet):
    img = ip.run_line_magic("image", f"pull {busybox_in_registry}")
    ip.user_ns["base"] = img
    digest = ip.run_line_magic("image", f"push base {registry}/nbtest/magic-push:1 -q")
    assert digest == img.digest
    tags = ip.run_line_magic("image", f"tags {registry}/nbtest/magic-push --details")
    assert isinstance(tags, pd.DataFrame)
    assert tags.loc[tags.tag == "1", "digest"].item() == img.digest


def test_copy_image_magic_writes_an_oci_archive(ip, busybox_in_registry, tmp_path, quiet):
    dest = tmp_path / "bb.tar"
    digest = ip.run_line_magic("image", f"copy-image docker://{busybox_in_registry} oci-archive:{dest}")
    assert dest.stat().st_size > 0
    assert digest.startswith("sha256:")


def test_catalog_magic_lists_repositories(ip, busybox_in_registry, registry):
    df = ip.run_line_magic("image", f"catalog {registry}")
    assert "nbtest/busybox" in df.repository.tolist()


def test_pull_from_a_closed_port_is_one_red_paragraph(ip, capsys, quiet):
    result = ip.run_cell("%image pull 127.0.0.1:9/nothing/here:1")
    out = capsys.readouterr()
    assert isinstance(result.error_in_exec, RegistryError)
    text = (out.out + out.err).strip()
    assert "Traceback" not in text
    assert "\x1b[31m" in text and "127.0.0.1:9" in text


def test_pull_magic_wrong_option_is_one_usage_line(ip):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("image", "pull --platfrom linux/arm64 x")
    assert "\n" not in str(e.value) and "--platfrom" in str(e.value)


class _Hub(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"count": 1, "next": None, "results": [{
            "repo_name": "python", "short_description": "Python is a programming language.",
            "star_count": 10, "pull_count": 1000, "is_official": True}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_search_magic_returns_the_hub_results(ip, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("NBIMAGES_HUB_URL", f"http://127.0.0.1:{server.server_port}")
        df = ip.run_line_magic("image", "search python --limit 5")
    finally:
        server.shutdown()
        server.server_close()
    assert df.name.tolist() == ["python"]
    assert bool(df.official.iloc[0])


def test_save_magic_writes_a_tar_that_opens_as_the_same_image(ip, busybox_image, tmp_path):
    out = ip.run_line_magic("image", f"save docker-daemon:{busybox_image} {tmp_path}/bb.tar --format oci")
    assert str(out) == f"{tmp_path}/bb.tar"
    again = nbimages.open_image(f"oci-archive:{out}")
    original = nbimages.open_image(f"docker-daemon:{busybox_image}")
    assert again.diff_ids == original.diff_ids


def test_save_magic_bad_format_is_one_usage_line(ip, tmp_path):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError) as e:
        ip.run_line_magic("image", f"save docker-daemon:x {tmp_path}/x.tar --format zip")
    assert "\n" not in str(e.value) and "invalid choice: 'zip'" in str(e.value)

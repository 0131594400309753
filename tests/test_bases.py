"""The Python base image the tests build themselves, and the loopback wheel index."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from bases import download_wheels
from conftest import run, tool


@pytest.mark.engine
def test_python_base_runs_debians_python_with_local_dist_packages(docker_client, python_base_image):
    out = docker_client.containers.run(
        python_base_image, ["python3", "-c",
                            "import sys, site, os; print(os.path.realpath(sys.executable)); "
                            "print(sys.version_info[:2]); print(site.getsitepackages()[0])"],
        network_mode="none", remove=True).decode().split("\n")
    assert out[0] == "/usr/bin/python3.11"
    assert out[1] == "(3, 11)"
    assert out[2] == "/usr/local/lib/python3.11/dist-packages"


@pytest.mark.registry
def test_python_base_is_in_the_loopback_registry(python_base_in_registry):
    data = run([tool("skopeo"), "inspect", "--tls-verify=false",
                "docker://" + python_base_in_registry])
    assert '"Architecture": "amd64"' in data.stdout
    assert "PATH=/usr/local/sbin:/usr/local/bin" in data.stdout


def test_wheel_index_serves_downloaded_wheels_to_pip(wheel_index, tmp_path):
    download_wheels(["six==1.17.0"])
    page = requests.get(wheel_index.url + "six/", timeout=10)
    assert page.status_code == 200 and "six-1.17.0-py2.py3-none-any.whl#sha256=" in page.text
    assert requests.get(wheel_index.url + "no-such-project/", timeout=10).status_code == 404
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--isolated",
                           "--index-url", wheel_index.url, "-d", str(tmp_path), "six==1.17.0"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "six-1.17.0-py2.py3-none-any.whl").exists()

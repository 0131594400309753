"""An image with Python and ipykernel for the kernel tests, built here without Docker Hub.

The debootstrap Python base (tests/bases.py) from the loopback registry, plus an nbimages
`pip ipykernel` layer (wheels downloaded on the host, served on 127.0.0.1) and a file that
exists only in the image. Built once per session with the embedded builder in a store of its
own, then loaded into the engine as KERNEL_TAG.
"""

from __future__ import annotations

import os

import pytest

from bases import download_wheels

KERNEL_TAG = "nbtest/kernel-py:1"
ONLY_IN_IMAGE = "/srv/nbtest/only-in-image.txt"
MARKER = "this file exists only in the kernel image\n"


def kernel_containers(docker_client, name: str) -> list:
    """Containers (running or not) of the nbimages kernel `name`."""
    from nbimages.kernel import LABEL_KERNEL
    return docker_client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL_KERNEL}={name}"})


@pytest.fixture(scope="session")
def kernel_image(python_base_in_registry, wheel_index, docker_client, tmp_path_factory):
    """KERNEL_TAG in the engine; returns the nbimages Image (its store outlives the session)."""
    import nbimages
    download_wheels(["ipykernel"])
    saved = {k: os.environ.get(k) for k in ("NBIMAGES_HOME", "PIP_CONFIG_FILE")}
    os.environ["NBIMAGES_HOME"] = str(tmp_path_factory.mktemp("kernel-image-home"))
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    try:
        image = nbimages.Recipe(python_base_in_registry) \
            .pip("ipykernel", index_url=wheel_index.url) \
            .file(ONLY_IN_IMAGE, MARKER) \
            .build(KERNEL_TAG)
        eng = nbimages.engine("docker")
        eng.tag(eng.ensure_image(image), KERNEL_TAG)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return image


@pytest.fixture
def jupyter_dirs(tmp_path, monkeypatch):
    """Jupyter's user folders (kernelspecs, runtime, config) in a temporary directory."""
    dirs = {}
    for var, sub in (("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_CONFIG_DIR", "config")):
        d = tmp_path / "jupyter" / sub
        d.mkdir(parents=True)
        monkeypatch.setenv(var, str(d))
        dirs[sub] = d
    monkeypatch.delenv("JUPYTER_PATH", raising=False)
    return dirs

"""A handout that others can rebuild: its Dockerfile pins the base by digest and every pip
package by version; a base that exists only on this machine is a warning everywhere."""

from __future__ import annotations

import pytest

import nbimages
from nbimages.builder.recipe import Recipe
from test_notebook_build import write_notebook
from test_pip_install import make_wheel, python_image


@pytest.fixture
def pip_notebook(tmp_path, offline_pip):
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "demo", "1.0", requires=("helper>=2",))
    make_wheel(links, "helper", "2.1")
    make_wheel(links, "helper", "1.0")
    base = tmp_path / "base"
    python_image(tmp_path).save(base, format="oci-dir", tag="py")
    return write_notebook(tmp_path / "pins.ipynb", "%load_ext nbimages",
                          f"%image from oci:{base}:py",
                          f"%image pip demo --index-url file:///nonexistent --find-links {links}",
                          "%image build pins:1")


def test_handout_on_a_local_base_warns_and_pins_base_digest_and_every_package(
        pip_notebook, tmp_path):
    h = nbimages.handout(pip_notebook, tmp_path / "out", tag="pins:1")
    dockerfile = h.path("dockerfile").read_text()
    base_digest = h.image.manifest.annotations["org.opencontainers.image.base.digest"]
    from_line = next(line for line in dockerfile.splitlines() if line.startswith("FROM "))
    assert from_line.endswith(f"@{base_digest}")
    pip_line = next(line for line in dockerfile.splitlines() if "pip install" in line)
    assert pip_line.endswith(" demo==1.0 helper==2.1")  # the dependency pinned too
    assert "# WARNING: the base oci:" in dockerfile
    assert len(h.warnings) == 1 and "exists only on this machine" in h.warnings[0]
    assert "warning: the base oci:" in repr(h)
    assert "**warning**: the base oci:" in h.path("readme").read_text()


def test_a_registry_base_gets_no_warning_and_an_unbuilt_recipe_is_not_pinned():
    r = Recipe("registry.example/python:3.12").pip("six")
    text = r.to_dockerfile()
    assert "WARNING" not in text and "FROM registry.example/python:3.12\n" in text
    assert text.rstrip().endswith("pip install --no-cache-dir six")

"""Image handles carry their names: whatever way a handle was got (build, pull, copy, load),
`save()` writes its tag into the tar, so `docker load` then `docker run NAME` works; `push()`
defaults to it; the repr shows it."""

from __future__ import annotations

import uuid

import pytest

import nbimages
import nbimages.engines
from conftest import run
from nbimages.sources import open_image

UNIQUE = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def base(busybox_in_registry) -> str:
    return f"docker://{busybox_in_registry}"


def _recipe(base: str, marker: str) -> "nbimages.Recipe":
    return nbimages.Recipe(base).file("/marker.txt", marker + "\n").cmd(["cat", "/marker.txt"])


def _load_and_run(path, name: str, docker_client) -> str:
    """docker load the tar, then docker run NAME (by its name only); the output."""
    try:
        out = run(["docker", "load", "-i", str(path)]).stdout
        assert f"Loaded image: {name}" in out
        return run(["docker", "run", "--rm", "--network", "none", name]).stdout
    finally:
        for _ in range(1):
            try:
                docker_client.images.remove(name, force=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def test_a_built_handle_carries_its_name_into_docker_load(base, tmp_path, docker_client):
    name = f"nbt10/built-{UNIQUE}:1"
    img = _recipe(base, "built").build(name)
    assert img.names == [name]
    assert img.tag == name
    assert name in repr(img)
    assert _load_and_run(img.save(tmp_path / "app.tar"), name, docker_client) == "built\n"


def test_a_pulled_handle_carries_its_name_into_docker_load(base, registry, tmp_path, docker_client):
    ref = f"{registry}/nbt10/pulled-{UNIQUE}:2"
    _recipe(base, "pulled").build("nbt10/to-push:1").push(ref, progress=False)
    nbimages.Store().untag("nbt10/to-push:1")
    img = nbimages.pull(ref, progress=False)
    assert img.tag == ref
    assert _load_and_run(img.save(tmp_path / "p.tar"), ref, docker_client) == "pulled\n"


def test_push_defaults_to_the_handles_own_name(base, registry):
    ref = f"{registry}/nbt10/default-push-{UNIQUE}:3"
    img = _recipe(base, "default push").build(ref)
    digest = img.push(progress=False)
    assert digest == img.digest
    assert nbimages.open_remote(ref).digest == img.digest


def test_push_without_any_name_says_how_to_name_it(base):
    img = _recipe(base, "nameless").build()
    assert img.names == []
    with pytest.raises(nbimages.errors.InvalidReference, match="no tagged name"):
        img.push(progress=False)


def test_a_copied_handle_carries_its_name_into_docker_load(base, tmp_path, docker_client):
    src = _recipe(base, "copied").build()
    name = f"nbt10/copied-{UNIQUE}:1"
    nbimages.copy(src, f"store:{name}", progress=False)
    img = open_image(f"store:{name}")
    assert img.tag == name
    assert _load_and_run(img.save(tmp_path / "c.tar"), name, docker_client) == "copied\n"


def test_a_loaded_handle_carries_its_name_into_docker_load(base, tmp_path, docker_client):
    name = f"nbt10/loaded-{UNIQUE}:1"
    _recipe(base, "loaded").build(name).save(tmp_path / "in.tar")
    nbimages.Store().untag(name)
    loaded = nbimages.engines.load(tmp_path / "in.tar", where="store")
    assert loaded == [name]
    for img in (open_image(f"docker-archive:{tmp_path / 'in.tar'}"), open_image(f"store:{name}")):
        assert img.tag == name
    out = open_image(f"store:{name}").save(tmp_path / "out.tar")
    assert _load_and_run(out, name, docker_client) == "loaded\n"

"""Damage in the local store is named where it is met: one error naming the image, the layer
index, the blob digest and the repair command; never a gzip traceback, never "in transit"."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
import requests

import nbimages
from nbimages.errors import StoreDamaged
from nbimages.store import Store

ROOT = Path(__file__).resolve().parent.parent
NAME = "team/app:1"


def _build(home: Path) -> "nbimages.Image":
    """An image of two gzip layers (the second 3 MB of random bytes), tagged team/app:1."""
    os.environ["NBIMAGES_HOME"] = str(home)
    r = nbimages.Recipe("scratch").file("/etc/hello", "hello\n")
    r.file("/data/random.bin", os.urandom(3_000_000))
    return r.build(NAME)


def _flip(store: Store, digest: str, offset: int) -> None:
    path = store.blob_path(digest)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "nbimages", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _assert_named(text: str, digest: str, layer: int) -> None:
    assert f"layer {layer} of {NAME}" in text
    assert digest in text
    assert "store check --repair" in text
    assert "in transit" not in text
    assert "Traceback" not in text and "BadGzipFile" not in text


@pytest.fixture(autouse=True)
def _layers_are_read(monkeypatch):
    """These tests are about meeting damage while a layer is read. The builder indexes the
    layers it writes, and an inspection answered from the layer index reads no layer (see
    tests/test_layer_index.py: `store check` finds the damage then), so the index is off."""
    monkeypatch.setenv("NBIMAGES_LAYER_INDEX", "0")


@pytest.fixture
def damaged(_isolated_home) -> tuple[Store, "nbimages.Image", str]:
    img = _build(_isolated_home)
    store = Store(_isolated_home)
    digest = img.layers[1].digest
    _flip(store, digest, store.blob_path(digest).stat().st_size // 2)
    return store, img, digest


def test_inspect_of_a_damaged_layer_names_image_layer_digest_and_repair(damaged, _isolated_home):
    _store, _img, digest = damaged
    done = _cli("inspect", "--files", f"store:{NAME}", home=_isolated_home)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("nbimages: StoreDamaged: ")
    _assert_named(done.stderr, digest, 1)


def test_python_api_raises_store_damaged_with_its_context(damaged):
    _store, _img, digest = damaged
    with pytest.raises(StoreDamaged) as info:
        nbimages.inspect(f"store:{NAME}").files()
    e = info.value
    assert (e.image, e.layer, e.expected) == (NAME, 1, digest)
    _assert_named(str(e), digest, 1)


def test_save_of_a_damaged_image_blames_the_store_and_leaves_no_file(damaged, tmp_path, _isolated_home):
    _store, _img, digest = damaged
    out = tmp_path / "app.tar"
    done = _cli("save", f"store:{NAME}", str(out), home=_isolated_home)
    assert done.returncode == 1
    _assert_named(done.stderr, digest, 1)
    assert not out.exists() and not list(tmp_path.glob(".app.tar*"))


def test_a_flipped_gzip_header_mtime_is_noticed_by_inspect_files(_isolated_home):
    img = _build(_isolated_home)
    store = Store(_isolated_home)
    digest = img.layers[0].digest
    _flip(store, digest, 4)  # gzip MTIME: decompressing still works, the digest does not
    done = _cli("inspect", "--files", f"store:{NAME}", home=_isolated_home)
    assert done.returncode == 1
    _assert_named(done.stderr, digest, 0)


def test_push_of_a_damaged_layer_stops_before_the_registry_accepts_it(damaged, registry, _isolated_home):
    _store, _img, digest = damaged
    repo = f"nbt10/damaged-{uuid.uuid4().hex[:8]}"
    done = _cli("push", f"store:{NAME}", f"{registry}/{repo}:1", home=_isolated_home)
    assert done.returncode == 1
    _assert_named(done.stderr, digest, 1)
    assert "DIGEST_INVALID" not in done.stderr
    head = requests.head(f"http://{registry}/v2/{repo}/blobs/{digest}", timeout=10)
    assert head.status_code == 404
    tags = requests.get(f"http://{registry}/v2/{repo}/tags/list", timeout=10)
    assert tags.status_code == 404 or not tags.json().get("tags")


def test_a_damaged_config_names_the_image_and_the_repair(_isolated_home):
    img = _build(_isolated_home)
    store = Store(_isolated_home)
    _flip(store, img.manifest.config.digest, 10)
    with pytest.raises(StoreDamaged) as info:
        store.get(NAME)
    text = str(info.value)
    assert f"the manifest or config of {NAME}" in text and img.manifest.config.digest in text
    assert "store check --repair" in text and "in transit" not in text


def test_a_missing_layer_blob_names_the_image_and_the_repair(_isolated_home):
    img = _build(_isolated_home)
    Store(_isolated_home).blob_path(img.layers[1].digest).unlink()
    done = _cli("inspect", "--files", f"store:{NAME}", home=_isolated_home)
    assert done.returncode == 1
    assert f"layer 1 of {NAME} is missing from the local store" in done.stderr
    assert "store check --repair" in done.stderr and "Traceback" not in done.stderr



def _text(n: int) -> bytes:
    """n bytes of compressible but varied text (its gzip blob is about half as large)."""
    return " ".join(f"{i:x}-{(i * 7919) % 104729:x}" for i in range(n // 8)).encode()[:n]


def _flip_where_inflating_fails_early(store: Store, digest: str) -> None:
    """Flip the first byte from the middle of a gzip blob on which inflating fails while more
    than 256 KB of the blob are still unread: the inflater's error comes before the blob's end,
    where its digest would be checked."""
    data = store.blob_path(digest).read_bytes()
    for offset in range(len(data) // 2, len(data) // 2 + 4096):
        bad = bytearray(data)
        bad[offset] ^= 0xFF
        inflate, pos = zlib.decompressobj(31), 0
        try:
            while pos < len(bad):
                inflate.decompress(bytes(bad[pos:pos + 16384]))
                pos += 16384
        except zlib.error:
            if pos < len(bad) - (256 << 10):
                _flip(store, digest, offset)
                return
    raise AssertionError("no byte of the blob makes inflating fail early")  # pragma: no cover


@pytest.mark.parametrize("in_process", [True, False], ids=["trusted", "fresh-process"])
def test_a_flipped_byte_inside_a_compressed_layer_is_store_damaged(in_process, _isolated_home):
    # The inflater trips over the flipped byte long before the blob's end, where the digest
    # check would run: its error must still become the store's StoreDamaged, not InvalidImage.
    os.environ["NBIMAGES_HOME"] = str(_isolated_home)
    img = nbimages.Recipe("scratch").file("/data/words.txt", _text(2_000_000)).build(NAME)
    store = Store(_isolated_home)
    digest = img.layers[0].digest
    assert store.blob_path(digest).stat().st_size < 1_500_000  # deflated, not stored blocks
    _flip_where_inflating_fails_early(store, digest)
    if in_process:
        with pytest.raises(StoreDamaged) as info:
            nbimages.inspect(f"store:{NAME}").files()
        assert (info.value.image, info.value.layer, info.value.expected) == (NAME, 0, digest)
        _assert_named(str(info.value), digest, 0)
    else:
        done = _cli("inspect", "--files", f"store:{NAME}", home=_isolated_home)
        assert done.returncode == 1
        assert done.stderr.startswith("nbimages: StoreDamaged: "), done.stderr
        _assert_named(done.stderr, digest, 0)

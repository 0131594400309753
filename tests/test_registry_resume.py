"""Pulls are verified and resumable: a proxy in front of the real registry corrupts or throttles
blobs, and a pulling subprocess is killed half-way with SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from nbimages.errors import DigestMismatch, ImageNotFound
from nbimages.sources.copy import push
from nbimages.sources.remote import pull
from nbimages.store import Store

from registry_servers import Proxy, image_of_tars, sha256, tar_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def layered(registry, tmp_path_factory) -> dict:
    """An image of three random-data layers (one of 6 MB) pushed to the real registry."""
    store = Store(tmp_path_factory.mktemp("layered"))
    image, layers = image_of_tars(store, [tar_of(f"data{i}.bin", os.urandom(size)) for i, size
                                          in enumerate((200_000, 6_000_000, 300_000))])
    repo = f"nbtest/layered-{uuid.uuid4().hex[:8]}"
    push(image, f"{registry}/{repo}:1", progress=False)
    return {"repo": repo, "image": image, "big": layers[1], "small": [layers[0], layers[2]]}


@pytest.fixture
def proxy(registry):
    with Proxy(registry) as p:
        yield p


def _assert_store_consistent(store: Store) -> None:
    """Every visible blob hashes to its name; index.json parses."""
    for path in (store.path / "blobs" / "sha256").iterdir():
        if path.name.startswith("."):
            continue
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == f"sha256:{path.name}"
    json.loads((store.path / "index.json").read_text())


def test_a_corrupted_blob_is_rejected_and_never_stored(layered, proxy, tmp_path):
    store = Store(tmp_path)
    bad = layered["small"][0].digest
    proxy.corrupt.add(bad)
    with pytest.raises(DigestMismatch, match="not stored"):
        pull(f"{proxy.address}/{layered['repo']}:1", store=store, progress=False)
    assert not store.has_blob(bad)
    # The bad bytes are dropped (other layers may keep partials, cancelled by the failure).
    assert not (store.tmpdir() / "downloads" / f"sha256-{bad.split(':')[1]}.partial").exists()
    _assert_store_consistent(store)
    with pytest.raises(ImageNotFound):
        store.get(f"{proxy.address}/{layered['repo']}:1")


def test_a_damaged_partial_download_is_fetched_again(layered, registry, tmp_path):
    store = Store(tmp_path)
    big = layered["big"]
    partial = store.tmpdir() / "downloads" / f"sha256-{big.digest.split(':')[1]}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage" * 1000)
    image = pull(f"{registry}/{layered['repo']}:1", store=store, progress=False)
    assert image.digest == layered["image"].digest
    assert sha256(store.blob_path(big.digest).read_bytes()) == big.digest


def test_a_killed_pull_leaves_the_store_consistent_and_resumes(layered, proxy, tmp_path):
    home = tmp_path / "home"
    ref = f"{proxy.address}/{layered['repo']}:1"
    big = layered["big"]
    partial = home / "tmp" / "downloads" / f"sha256-{big.digest.split(':')[1]}.partial"
    proxy.rate = 1_500_000  # bytes/s per response: the 6 MB layer takes about 4 s
    env = {**os.environ, "NBIMAGES_HOME": str(home), "NBIMAGES_PROGRESS": "0"}
    child = subprocess.Popen([sys.executable, "-c", f"import nbimages; nbimages.pull({ref!r})"],
                             env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size >= 2_000_000:
                break
            assert child.poll() is None, "the pull ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("the throttled pull never got going")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    store = Store(home)
    _assert_store_consistent(store)
    assert not store.has_blob(big.digest)
    with pytest.raises(ImageNotFound):
        store.get(ref)
    had = {d.digest for d in layered["small"] if store.has_blob(d.digest)}
    assert had, "the small layers were complete before the kill"
    kept = partial.stat().st_size

    proxy.rate = None
    proxy.reset()
    image = pull(ref, store=store, progress=False)
    assert image.digest == layered["image"].digest
    assert not any(d in proxy.blob_requests for d in had)  # complete blobs are not fetched again
    assert proxy.blob_requests[big.digest] == [f"bytes={kept}-"]  # the partial one resumes
    assert proxy.blob_bytes[big.digest] == big.size - kept
    _assert_store_consistent(store)
    assert not partial.exists()


def test_a_failed_blob_stops_the_other_transfers_and_keeps_their_partials(layered, proxy, tmp_path):
    store = Store(tmp_path)
    big = layered["big"]
    proxy.rate = 1_000_000  # the 6 MB layer alone would take 6 s
    proxy.corrupt.add(layered["small"][0].digest)
    started = time.monotonic()
    with pytest.raises(DigestMismatch):
        pull(f"{proxy.address}/{layered['repo']}:1", store=store, progress=False)
    assert time.monotonic() - started < 3
    partial = store.tmpdir() / "downloads" / f"sha256-{big.digest.split(':')[1]}.partial"
    assert 0 < partial.stat().st_size < big.size
    assert not store.has_blob(big.digest)
    _assert_store_consistent(store)


def test_an_upload_whose_connection_drops_is_resumed(registry, proxy, monkeypatch):
    from nbimages.registry import RegistryClient
    monkeypatch.setenv("NBIMAGES_REGISTRY_BACKOFF", "0.01")
    data = os.urandom(500_000)
    repo = f"nbtest/upload-{uuid.uuid4().hex[:8]}"
    proxy.drop_patches = {1, 3}  # the first chunk fails once, then the second chunk once
    client = RegistryClient(proxy.address)
    sent = []
    client.upload_blob(repo, sha256(data), len(data), lambda: __import__("io").BytesIO(data),
                       sent.append, chunk_size=200_000)
    assert proxy.patches == 5  # 3 chunks + 2 resends: the second chunk resumed, not restarted
    import requests
    assert requests.get(f"http://{registry}/v2/{repo}/blobs/{sha256(data)}").content == data
    assert sum(sent) == len(data)  # progress rewound for what the registry did not keep


def test_a_resumed_pull_says_where_it_resumed_and_what_it_fetched(layered, registry, tmp_path, capsys):
    import requests
    store = Store(tmp_path)
    big = layered["big"]
    url = f"http://{registry}/v2/{layered['repo']}/blobs/{big.digest}"
    kept = 2_000_000
    head = requests.get(url, headers={"Range": f"bytes=0-{kept - 1}"}, timeout=30).content
    assert len(head) == kept
    partial = store.tmpdir() / "downloads" / f"sha256-{big.digest.split(':')[1]}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(head)
    pull(f"{registry}/{layered['repo']}:1", store=store, progress=True)
    lines = capsys.readouterr().err.splitlines()
    resumed = [line for line in lines if big.digest.split(":")[1][:12] in line]
    assert len(resumed) == 1
    assert resumed[0].endswith(f"(resumed at 2.0 MB: fetched {(big.size - kept) / 1e6:.1f} MB "
                               f"of {big.size / 1e6:.1f} MB)")
    others = [line for line in lines if line not in resumed and "done," not in line]
    assert others and all(line.endswith("(done)") for line in others)

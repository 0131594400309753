"""Engine selection (auto, DOCKER_HOST, docker contexts, no engine) and the image verbs:
images(), tag, rm, save, load, pull and push through the engine with per-layer progress."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import uuid

import pytest
import requests

import nbimages
from nbimages import docker_endpoint as ep
from nbimages.errors import EngineUnavailable, ImageNotFound

SOCK = "unix:///var/run/docker.sock"


@pytest.fixture
def no_docker_env(monkeypatch, tmp_path):
    """No DOCKER_HOST / DOCKER_CONTEXT / NBIMAGES_ENGINE, and an empty docker config dir."""
    for var in ("DOCKER_HOST", "DOCKER_CONTEXT", "NBIMAGES_ENGINE", "DOCKER_TLS_VERIFY",
                "DOCKER_CERT_PATH"):
        monkeypatch.delenv(var, raising=False)
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    return cfg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _context(cfg, name: str, host: str, current: bool = True) -> None:
    meta = cfg / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}}))
    if current:
        (cfg / "config.json").write_text(json.dumps({"currentContext": name}))


# -- selection ---------------------------------------------------------------------------------
@pytest.mark.engine
def test_auto_uses_the_docker_engine_when_it_answers(docker_client, no_docker_env):
    eng = nbimages.engine()
    assert eng.name == "docker"
    assert eng.reason.startswith("Docker engine 20.10") or eng.reason.startswith("Docker engine ")
    assert f"answered at {SOCK} (DOCKER_HOST unset)" in eng.reason
    assert "docker" in repr(eng)


@pytest.mark.engine
def test_docker_host_is_honoured(docker_client, no_docker_env, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", SOCK)
    eng = nbimages.engine("auto")
    assert eng.name == "docker" and f"{SOCK} (DOCKER_HOST)" in eng.reason


@pytest.mark.engine
def test_the_current_docker_context_is_honoured(docker_client, no_docker_env):
    _context(no_docker_env, "nbtest-local", SOCK)
    eng = nbimages.engine()
    assert eng.name == "docker"
    assert "docker context 'nbtest-local'" in eng.reason


def test_docker_host_wins_over_the_context(no_docker_env, monkeypatch):
    _context(no_docker_env, "elsewhere", "tcp://127.0.0.1:1")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2")
    assert ep.resolve().host == "tcp://127.0.0.1:2"
    monkeypatch.delenv("DOCKER_HOST")
    assert ep.resolve().host == "tcp://127.0.0.1:1"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert ep.resolve().host == SOCK


def test_a_context_pointing_at_nothing_falls_back_to_embedded(no_docker_env):
    port = _closed_port()
    _context(no_docker_env, "gone", f"tcp://127.0.0.1:{port}")
    eng = nbimages.engine()
    assert eng.name == "embedded"
    assert f"tcp://127.0.0.1:{port}" in eng.reason and "docker context 'gone'" in eng.reason
    assert eng.reason.endswith("using the embedded engine")


def test_a_missing_context_is_explained(no_docker_env, monkeypatch):
    monkeypatch.setenv("DOCKER_CONTEXT", "never-created")
    with pytest.raises(EngineUnavailable, match="docker context 'never-created'"):
        nbimages.engine("docker")
    assert nbimages.engine().name == "embedded"


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:{port}"])
def test_no_engine_running(no_docker_env, monkeypatch, host):
    host = host.format(port=_closed_port())
    monkeypatch.setenv("DOCKER_HOST", host)
    eng = nbimages.engine()
    assert eng.name == "embedded"
    assert eng.reason.startswith(f"no Docker engine answered at {host} (DOCKER_HOST)")
    with pytest.raises(EngineUnavailable) as info:
        nbimages.run("nbtest/busybox:1", ["true"])
    msg = str(info.value)
    assert "DOCKER_HOST" in msg and "embedded engine" in msg and host in msg
    with pytest.raises(EngineUnavailable, match="DOCKER_HOST"):
        nbimages.engine("docker")
    with pytest.raises(EngineUnavailable, match="embedded"):
        nbimages.engines.ps()


def test_embedded_can_be_forced_and_unknown_names_are_refused(no_docker_env, monkeypatch):
    assert nbimages.engine("embedded").name == "embedded"
    monkeypatch.setenv("NBIMAGES_ENGINE", "embedded")
    assert "NBIMAGES_ENGINE=embedded" in nbimages.engine().reason
    with pytest.raises(nbimages.errors.NbimagesError, match="unknown engine 'podman'"):
        nbimages.engine("podman")


def test_endpoint_locality():
    assert ep.Endpoint(SOCK, "x").is_local
    assert ep.Endpoint("tcp://127.0.0.1:2375", "x").is_local
    assert not ep.Endpoint("tcp://build-box:2376", "x").is_local


# -- image verbs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eng(docker_client):
    return nbimages.engine("docker")


@pytest.mark.engine
def test_images_lists_engine_and_store_images(eng, busybox_image, tmp_path):
    df = nbimages.images(engine=eng)
    assert list(df.columns) == ["repository", "tag", "digest", "id", "size", "created", "where"]
    row = df[(df.repository == "nbtest/busybox") & (df.tag == "1")].iloc[0]
    assert row["where"] == "engine" and row["id"].startswith("sha256:") and row["size"] > 100_000
    assert str(row["created"].tz) == "UTC"
    assert not (df["where"] == "store").any()  # the test's store is empty

    tar = nbimages.engines.save(busybox_image, tmp_path / "bb.tar", engine=eng)
    assert nbimages.engines.load(tar, where="store") == ["nbtest/busybox:1"]
    df = nbimages.images(engine=eng)
    stored = df[df["where"] == "store"].iloc[0]
    assert (stored.repository, stored.tag, stored.id) == ("nbtest/busybox", "1", row["id"])
    assert stored.digest.startswith("sha256:") and stored["size"] > 100_000


@pytest.mark.engine
def test_tag_then_rm_in_the_engine(eng, busybox_image, docker_client):
    name = f"nbtest/tagged:{uuid.uuid4().hex[:8]}"
    nbimages.engines.tag(busybox_image, name, engine=eng)
    assert docker_client.images.get(name).id == docker_client.images.get(busybox_image).id
    assert nbimages.engines.rm(name, engine=eng) == ["engine"]
    assert name.split(":")[1] not in set(nbimages.images(engine=eng)["tag"])
    with pytest.raises(ImageNotFound, match="nbimages.images"):
        nbimages.engines.rm(name, engine=eng)
    with pytest.raises(ImageNotFound):
        nbimages.engines.tag("nbtest/nothing-here:1", name, engine=eng)


@pytest.mark.engine
def test_save_and_load_round_trip_through_the_engine(eng, busybox_image, docker_client, tmp_path):
    name = f"nbtest/roundtrip:{uuid.uuid4().hex[:8]}"
    nbimages.engines.tag(busybox_image, name, engine=eng)
    path = nbimages.engines.save(name, tmp_path / "out" / "rt.tar", engine=eng)
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["rt.tar"]
    docker_client.images.remove(name)
    assert nbimages.engines.load(path, engine=eng) == [name]
    assert docker_client.images.get(name).id == docker_client.images.get(busybox_image).id
    docker_client.images.remove(name)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all")
    with pytest.raises(nbimages.errors.InvalidImage, match="junk.tar"):
        nbimages.engines.load(tmp_path / "junk.tar", engine=eng)
    with pytest.raises(ImageNotFound):
        nbimages.engines.save("nbtest/nothing-here:1", tmp_path / "x.tar", engine=eng)
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.engine
@pytest.mark.registry
def test_push_and_pull_through_the_engine_show_layer_progress(eng, busybox_image, registry,
                                                              docker_client, tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("NBIMAGES_PROGRESS", "lines")
    ref = f"{registry}/nbtest/engine-move:{uuid.uuid4().hex[:8]}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "blob").write_bytes(os.urandom(300_000))  # a fresh layer the registry lacks
    built = eng.build_dockerfile("FROM nbtest/busybox:1\nCOPY blob /blob\n", ctx, ref, stream=False)
    digest = eng.push(ref)
    err = capsys.readouterr().err
    assert digest and digest.startswith("sha256:")
    assert f"push {ref}:" in err and ("mounted" in err or "exists" in err), err  # busybox layers: already there
    head = requests.head(f"http://{registry}/v2/nbtest/engine-move/manifests/{ref.rsplit(':', 1)[1]}",
                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert head.headers["Docker-Content-Digest"] == digest

    docker_client.images.remove(ref)
    pulled = eng.pull(ref)
    err = capsys.readouterr().err
    assert pulled.id == built.id and f"{registry}/nbtest/engine-move@{digest}" in pulled.digests
    assert f"pull {ref}: done" in err and re.search(r": [0-9a-f]{12} 30\d\.\d kB in ", err), err
    docker_client.images.remove(ref)


@pytest.mark.engine
@pytest.mark.registry
def test_pulling_a_missing_image_through_the_engine(eng, registry):
    with pytest.raises(ImageNotFound, match="nbtest/not-there"):
        eng.pull(f"{registry}/nbtest/not-there:1")

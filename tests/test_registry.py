"""The registry client against the real loopback registry, the real engine, and scripted fakes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tarfile
import uuid

import pytest
import requests

import nbimages
from nbimages.errors import (AuthenticationError, DigestMismatch, ImageNotFound, InvalidReference,
                             PlatformNotFound, RegistryError)
from nbimages.image import Image
from nbimages.oci import canonical, mediatypes as mt
from nbimages.oci.descriptor import Descriptor
from nbimages.oci.manifest import Manifest
from nbimages.registry import RegistryClient, catalog, search, tags
from nbimages.sources.copy import push
from nbimages.sources.remote import open_remote, pull, push_index
from nbimages.registry.client import MANIFEST_ACCEPT
from nbimages.store import Store

from conftest import run
from registry_servers import Fake, basic_auth, docker_config, free_port, sha256


def _unique(name: str) -> str:
    return f"nbtest/{name}-{uuid.uuid4().hex[:8]}"


def _registry_manifest(registry: str, repo: str, ident: str) -> bytes:
    r = requests.get(f"http://{registry}/v2/{repo}/manifests/{ident}", headers={"Accept": MANIFEST_ACCEPT})
    r.raise_for_status()
    return r.content


def _registry_blob(registry: str, repo: str, digest: str) -> bytes:
    r = requests.get(f"http://{registry}/v2/{repo}/blobs/{digest}")
    r.raise_for_status()
    return r.content


@pytest.fixture
def no_docker_config(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker-empty", {})))


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setenv("NBIMAGES_REGISTRY_BACKOFF", "0.01")
    monkeypatch.setenv("NBIMAGES_REGISTRY_RETRIES", "2")


# ---- against the real registry and engine ---------------------------------------------------

def test_pull_of_an_engine_pushed_image_keeps_the_registry_bytes(busybox_in_registry, registry, tmp_path):
    store = Store(tmp_path / "home")
    image = pull(busybox_in_registry, store=store, progress=False)
    raw = _registry_manifest(registry, "nbtest/busybox", "1")
    assert image.manifest.raw == raw and image.digest == sha256(raw)
    for layer in image.layers:
        stored = store.blob_path(layer.digest).read_bytes()
        assert sha256(stored) == layer.digest
        assert stored == _registry_blob(registry, "nbtest/busybox", layer.digest)
    assert store.get(busybox_in_registry).digest == image.digest
    assert image.names == [busybox_in_registry]
    assert not list((store.home / "tmp" / "downloads").glob("*.partial"))


def test_push_then_pull_round_trip_is_byte_identical(busybox_in_registry, registry, tmp_path):
    first = pull(busybox_in_registry, store=Store(tmp_path / "a"), progress=False)
    repo = _unique("roundtrip")
    digest = push(first, f"{registry}/{repo}:v1", progress=False)
    assert digest == first.digest
    assert _registry_manifest(registry, repo, "v1") == first.manifest.raw
    second_store = Store(tmp_path / "b")
    second = pull(f"{registry}/{repo}:v1", store=second_store, progress=False)
    assert second.digest == first.digest and second.config_bytes == first.config_bytes
    for a, b in zip(first.layers, second.layers):
        with a.open_blob() as fa, b.open_blob() as fb:
            assert fa.read() == fb.read()


def test_pull_by_digest_checks_the_digest(busybox_in_registry, registry, tmp_path):
    image = pull(busybox_in_registry, store=Store(tmp_path / "a"), progress=False)
    by_digest = pull(f"{registry}/nbtest/busybox@{image.digest}", store=Store(tmp_path / "b"), progress=False)
    assert by_digest.digest == image.digest


def test_a_second_push_skips_or_mounts_every_blob(busybox_in_registry, registry, tmp_path, monkeypatch):
    image = pull(busybox_in_registry, store=Store(tmp_path), progress=False)
    uploads = []
    real = RegistryClient.upload_blob
    monkeypatch.setattr(RegistryClient, "upload_blob",
                        lambda self, repo, digest, *a, **k: uploads.append(digest) or real(self, repo, digest, *a, **k))
    push(image, f"{registry}/{_unique('mount')}:1", progress=False)  # mounted from nbtest/busybox
    repo = _unique("again")
    push(image, f"{registry}/{repo}:1", progress=False)
    push(image, f"{registry}/{repo}:2", progress=False)  # HEAD finds them all
    assert uploads == []


def test_chunked_upload_sends_several_patches(busybox_in_registry, registry, tmp_path):
    image = pull(busybox_in_registry, store=Store(tmp_path), progress=False)
    src = Store(tmp_path / "src")
    # A fresh random blob so no mount or HEAD can short-cut the upload.
    data = os.urandom(300_000)
    client = RegistryClient(registry)
    repo = _unique("chunks")
    client.upload_blob(repo, sha256(data), len(data), lambda: io.BytesIO(data), chunk_size=64 * 1024)
    assert _registry_blob(registry, repo, sha256(data)) == data
    del image, src


def _with_extra_layer(base: Image, store: Store, text: bytes) -> Image:
    """`base` plus a layer holding /hello.txt, with OCI media types, written into `store`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode = len(text), 0o644
        tar.addfile(info, io.BytesIO(text))
    tar_bytes = buf.getvalue()
    blob = gzip.compress(tar_bytes, mtime=0)
    layer_desc = store.write_blob(blob, sha256(blob), mt.OCI_LAYER_GZIP)
    for layer in base.layers:
        with layer.open_blob() as f:
            store.write_blob(f, layer.digest)
    config = json.loads(base.config_bytes)
    config["rootfs"]["diff_ids"].append(sha256(tar_bytes))
    config.setdefault("history", []).append({"created_by": "nbimages test layer"})
    config_bytes = canonical.dumps(config)
    config_desc = store.write_blob(config_bytes, sha256(config_bytes), mt.OCI_CONFIG)
    layers = [Descriptor(mt.OCI_LAYER_GZIP, l.digest, l.size) for l in base.layers] + [layer_desc]
    manifest = Manifest.build(config_desc, layers)
    store.write_blob(manifest.raw, manifest.digest)
    desc = Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))
    return store.image(desc)


def test_an_image_built_here_and_pushed_runs_in_the_engine(busybox_in_registry, registry, docker_client, tmp_path):
    store = Store(tmp_path)
    base = pull(busybox_in_registry, store=store, progress=False)
    token = uuid.uuid4().hex
    image = _with_extra_layer(base, store, f"hello {token}\n".encode())
    ref = f"{registry}/{_unique('hello')}:1"
    digest = push(image, ref, progress=False)
    assert digest == image.digest
    try:
        run(["docker", "pull", "-q", ref])
        out = run(["docker", "run", "--rm", "--network", "none", ref, "cat", "/hello.txt"]).stdout
        assert out == f"hello {token}\n"
        assert docker_client.images.get(ref).id == image.id
    finally:
        run(["docker", "rmi", "-f", ref], check=False)


def test_multi_platform_index_selects_the_platform(busybox_in_registry, registry, tmp_path):
    store = Store(tmp_path)
    amd64 = pull(busybox_in_registry, store=store, progress=False)
    config = json.loads(amd64.config_bytes)
    config.update(architecture="arm64", variant="v8")
    arm_config = canonical.dumps(config)
    arm_cfg_desc = store.write_blob(arm_config, sha256(arm_config), mt.DOCKER_CONFIG)
    arm_manifest = Manifest.build(arm_cfg_desc, [l.descriptor for l in amd64.layers], docker=True)
    store.write_blob(arm_manifest.raw, arm_manifest.digest)
    arm64 = store.image(Descriptor(arm_manifest.media_type, arm_manifest.digest, len(arm_manifest.raw)))
    repo = f"{registry}/{_unique('multi')}"
    push(amd64, f"{repo}:amd64", progress=False)
    push(arm64, f"{repo}:arm64", progress=False)
    index_digest = push_index([(f"{repo}:amd64", None), (f"{repo}:arm64", None)], f"{repo}:multi")
    raw_index = _registry_manifest(registry, repo.split("/", 1)[1], "multi")
    assert sha256(raw_index) == index_digest

    got_arm = pull(f"{repo}:multi", platform="linux/arm64", store=Store(tmp_path / "x"), progress=False)
    assert got_arm.digest == arm64.digest and got_arm.platform.architecture == "arm64"
    got_default = pull(f"{repo}:multi", store=Store(tmp_path / "y"), progress=False)
    assert got_default.digest == amd64.digest
    with pytest.raises(PlatformNotFound, match="s390x"):
        open_remote(f"{repo}:multi", platform="linux/s390x")
    listing = tags(repo, details=True).set_index("tag")
    assert listing.loc["multi", "platforms"] == "linux/amd64, linux/arm64/v8"
    assert listing.loc["multi", "digest"] == index_digest


def test_open_remote_shows_layer_sizes_without_downloading(busybox_in_registry, registry):
    store = nbimages.Store()
    image = open_remote(busybox_in_registry)
    raw = json.loads(_registry_manifest(registry, "nbtest/busybox", "1"))
    assert [l.size for l in image.layers] == [d["size"] for d in raw["layers"]]
    assert not any(store.has_blob(l.digest) for l in image.layers)
    with image.layers[0].open_blob() as f:
        data = f.read()
    assert sha256(data) == image.layers[0].digest and store.has_blob(image.layers[0].digest)


def test_tags_follow_pagination_and_catalog_lists_repositories(busybox_in_registry, registry, tmp_path):
    image = pull(busybox_in_registry, store=Store(tmp_path), progress=False)
    repo = _unique("tags")
    for t in ("a", "b", "c"):
        push(image, f"{registry}/{repo}:{t}", progress=False)
    assert sorted(RegistryClient(registry).tags(repo)) == ["a", "b", "c"]
    df = tags(f"{registry}/{repo}", details=True)
    assert list(df.columns) == ["tag", "digest", "size", "media_type", "platforms"]
    assert set(df["digest"]) == {image.digest}
    assert int(df["size"][0]) == image.manifest.config.size + sum(l.size for l in image.layers)
    assert repo in set(catalog(registry)["repository"])
    assert RegistryClient(registry).catalog(page=1)  # paging through one entry per page


def test_tag_lists_follow_link_headers():
    def page(handler):
        if "last=b" in handler.path:
            return (200, {}, {"name": "app", "tags": ["c"]})
        assert "n=2" in handler.path
        return (200, {"Link": '</v2/app/tags/list?n=2&last=b>; rel="next"'}, {"name": "app", "tags": ["a", "b"]})
    with Fake({"/v2/app/tags/list": page}) as fake:
        assert RegistryClient(fake.address).tags("app", page=2) == ["a", "b", "c"]
        assert len(fake.seen) == 2


# ---- errors --------------------------------------------------------------------------------

def test_malformed_reference_is_refused_before_any_request():
    with pytest.raises(InvalidReference, match="lower-case"):
        pull("127.0.0.1:5000/Bad/Name")


def test_a_closed_port_says_connection_refused():
    port = free_port()
    with pytest.raises(RegistryError, match="connection refused") as e:
        pull(f"127.0.0.1:{port}/nothing:1", progress=False)
    assert "running" in str(e.value)


def test_a_host_name_that_does_not_resolve_fails_at_once_without_retries(monkeypatch):
    calls = []

    def unresolved(self, method, url, **kw):
        calls.append(url)
        raise requests.ConnectionError("HTTPSConnectionPool(host='nbtest.invalid', port=443): Max "
                                       "retries exceeded (Caused by NameResolutionError(\"Failed "
                                       "to resolve 'nbtest.invalid'\"))")

    monkeypatch.setattr(requests.Session, "request", unresolved)
    with pytest.raises(RegistryError, match="'nbtest.invalid' does not resolve"):
        pull("nbtest.invalid/team/app:1", progress=False)
    assert len(calls) == 1


def test_unknown_repository_is_image_not_found(registry):
    with pytest.raises(ImageNotFound, match="not found"):
        pull(f"{registry}/nbtest/does-not-exist-{uuid.uuid4().hex[:6]}:1", progress=False)


def _manifest_route(ctype: str, body: dict):
    return (200, {"Content-Type": ctype}, json.dumps(body).encode())


@pytest.mark.parametrize("status, error, says", [
    (401, AuthenticationError, "without saying how to log in"),
    (403, AuthenticationError, "denied"),
    (404, ImageNotFound, "not found"),
    (429, RegistryError, "rate limiting"),
    (500, RegistryError, "HTTP 500"),
])
def test_error_statuses_become_clear_errors(status, error, says, fast_retries, no_docker_config):
    routes = {"/v2/app/manifests/1": (status, {}, b'{"errors":[{"code":"X","message":"nope"}]}')}
    with Fake(routes) as fake:
        with pytest.raises(error, match=says) as e:
            open_remote(f"{fake.address}/app:1")
    assert "Traceback" not in str(e.value)
    if status in (429, 500):
        assert len(fake.seen) == 3  # bounded: the first try and NBIMAGES_REGISTRY_RETRIES=2 more
        assert "nope" in str(e.value)


def test_retry_after_a_transient_503_succeeds(fast_retries):
    calls = []

    def flaky(handler):
        calls.append(1)
        if len(calls) == 1:
            return (503, {"Retry-After": "0"}, b"")
        return (200, {}, {"tags": ["x"]})
    with Fake({"/v2/app/tags/list": flaky}) as fake:
        assert RegistryClient(fake.address).tags("app") == ["x"]
    assert len(calls) == 2


def test_basic_challenge_without_credentials_says_docker_login(no_docker_config):
    routes = {"/v2/app/manifests/1": (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")}
    with Fake(routes) as fake:
        with pytest.raises(AuthenticationError, match="docker login"):
            open_remote(f"{fake.address}/app:1")


@pytest.mark.parametrize("ctype, body, says", [
    ("application/vnd.example.thing+json", {"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"},
     "not an image"),
    ("application/vnd.docker.distribution.manifest.v1+prettyjws", {"schemaVersion": 1}, "schema 1"),
])
def test_unknown_manifest_media_types_are_refused(ctype, body, says):
    with Fake({"/v2/app/manifests/1": _manifest_route(ctype, body)}) as fake:
        with pytest.raises(RegistryError, match=says):
            open_remote(f"{fake.address}/app:1")


def test_a_manifest_that_does_not_match_its_digest_is_refused():
    body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}, "layers": []}).encode()
    wrong = "sha256:" + "0" * 64
    with Fake({f"/v2/app/manifests/{wrong}": (200, {"Content-Type": mt.OCI_MANIFEST}, body),
               "/v2/app/manifests/1": (200, {"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": wrong}, body)}) as fake:
        with pytest.raises(DigestMismatch):
            open_remote(f"{fake.address}/app@{wrong}")
        with pytest.raises(DigestMismatch):
            open_remote(f"{fake.address}/app:1")


# ---- credentials and secrets ------------------------------------------------------------------

def test_basic_credentials_from_docker_config_are_sent_and_never_shown(tmp_path, monkeypatch, caplog):
    secret = "pw-" + uuid.uuid4().hex
    seen = []

    def guarded(handler):
        auth = handler.headers.get("Authorization")
        seen.append(auth)
        if auth != "Basic " + basic_auth("alice", "right"):
            return (401, {"WWW-Authenticate": 'Basic realm="fake"'}, b"")
        return (200, {}, {"tags": ["1"]})
    with Fake({"/v2/app/tags/list": guarded}) as fake:
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(
            tmp_path / "ok", {"auths": {f"http://{fake.address}": {"auth": basic_auth("alice", "right")}}})))
        assert tags(f"{fake.address}/app")["tag"].tolist() == ["1"]
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(
            tmp_path / "bad", {"auths": {fake.address: {"auth": basic_auth("alice", secret)}}})))
        caplog.set_level(logging.DEBUG)
        client = RegistryClient(fake.address)
        with pytest.raises(AuthenticationError) as e:
            client.tags("app")
    message = str(e.value)
    assert "alice" in message and secret not in message
    for text in (message, repr(client), repr(client.auth), repr(client.auth.credentials),
                 str(client.auth.credentials), caplog.text):
        assert secret not in text
        assert basic_auth("alice", secret) not in text


def test_docker_hub_credentials_are_found_under_the_index_key(tmp_path, monkeypatch):
    from nbimages.registry.auth import lookup
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(
        tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": basic_auth("hubuser", "hubpw")}}})))
    creds = lookup("docker.io")
    assert (creds.username, creds.secret) == ("hubuser", "hubpw")
    assert lookup("registry-1.docker.io").username == "hubuser"
    assert lookup("ghcr.io") is None


def _fake_helper(bin_dir, name, answers: dict[str, tuple[str, str]]):
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    table = json.dumps({k: {"ServerURL": k, "Username": u, "Secret": s} for k, (u, s) in answers.items()})
    script.write_text(f"#!{os.sys.executable}\nimport json, sys\n"
                      f"table = json.loads({table!r})\n"
                      "assert sys.argv[1] == 'get'\n"
                      "server = sys.stdin.read().strip()\n"
                      "if server not in table:\n"
                      "    print('credentials not found in native keychain'); sys.exit(1)\n"
                      "print(json.dumps(table[server]))\n")
    script.chmod(0o755)


def test_credential_helpers_and_stores_are_asked(tmp_path, monkeypatch):
    from nbimages.registry.auth import lookup
    bin_dir = tmp_path / "bin"
    _fake_helper(bin_dir, "nbone", {"reg.example:5000": ("helper-user", "helper-secret")})
    _fake_helper(bin_dir, "nbstore", {"https://index.docker.io/v1/": ("store-user", "store-secret"),
                                       "ghcr.io": ("<token>", "refresh-me")})
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "cfg", {
        "credHelpers": {"reg.example:5000": "nbone"}, "credsStore": "nbstore",
        "auths": {"plain.example": {"auth": basic_auth("file-user", "file-pw")}}})))
    one = lookup("reg.example:5000")
    assert (one.username, one.secret) == ("helper-user", "helper-secret") and "nbone" in one.source
    hub = lookup("docker.io")
    assert (hub.username, hub.secret) == ("store-user", "store-secret")
    assert lookup("ghcr.io").identity_token
    assert lookup("plain.example").username == "file-user"  # the store has none: fall back to auths
    assert "helper-secret" not in repr(one)


def test_missing_credential_helper_is_not_fatal(tmp_path, monkeypatch):
    from nbimages.registry.auth import lookup
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path, {"credsStore": "nbimages-nonexistent"})))
    assert lookup("ghcr.io") is None


# ---- Docker Hub search --------------------------------------------------------------------------

HUB_PAGE_1 = {"count": 3, "next": "/v2/search/repositories/?query=python&page=2&page_size=2", "previous": None,
              "results": [
                  {"repo_name": "python", "short_description": "Python is an interpreted language",
                   "star_count": 9000, "pull_count": 1000000000, "repo_owner": "", "is_automated": False,
                   "is_official": True},
                  {"repo_name": "bitnami/python", "short_description": "Bitnami Python", "star_count": 30,
                   "pull_count": 5000000, "is_automated": False, "is_official": False,
                   "badge": "verified_publisher"}]}
HUB_PAGE_2 = {"count": 3, "next": None, "previous": "x",
              "results": [{"repo_name": "jupyter/scipy-notebook", "short_description": "Scientific Python",
                           "star_count": 400, "pull_count": 90000000, "is_automated": False,
                           "is_official": False, "badge": "open_source"}]}


def test_search_reads_the_hub_shape_with_badges_and_pages(monkeypatch):
    def page(handler):
        return (200, {}, HUB_PAGE_2 if "page=2" in handler.path else HUB_PAGE_1)
    with Fake({"/v2/search/repositories/": page}) as hub:
        monkeypatch.setenv("NBIMAGES_HUB_URL", f"http://{hub.address}")
        df = search("python", limit=10)
        assert hub.seen[0][1].startswith("/v2/search/repositories/?query=python")
        assert list(df.columns) == ["name", "description", "stars", "pulls", "official",
                                    "verified_publisher", "sponsored_oss"]
        assert df["name"].tolist() == ["python", "bitnami/python", "jupyter/scipy-notebook"]
        assert df["official"].tolist() == [True, False, False]
        assert df["verified_publisher"].tolist() == [False, True, False]
        assert df["sponsored_oss"].tolist() == [False, False, True]
        assert df["pulls"][0] == 1000000000
        assert len(search("python", limit=2, hub_url=f"http://{hub.address}")) == 2


def test_search_without_a_reachable_hub_says_so():
    with pytest.raises(RegistryError, match="could not reach"):
        search("python", hub_url=f"http://127.0.0.1:{free_port()}")


# ---- copy between transports --------------------------------------------------------------------

def test_copy_between_registry_store_and_files_keeps_the_digest(busybox_in_registry, registry, tmp_path):
    from nbimages.sources.copy import copy
    from nbimages.sources import open_image
    src = f"docker://{busybox_in_registry}"
    digest = open_remote(busybox_in_registry).digest
    assert copy(src, "store:copied:1", progress=False) == digest
    assert nbimages.Store().get("copied:1").digest == digest
    image_id = open_remote(busybox_in_registry).id
    layout_digest = copy(src, f"oci:{tmp_path / 'layout'}:v1", progress=False)
    layout_image = open_image(f"oci:{tmp_path / 'layout'}:v1")
    assert layout_image.digest == layout_digest and layout_image.id == image_id
    assert copy(src, f"docker-archive:{tmp_path / 'img.tar'}:nbtest/copied:1", progress=False) == image_id
    assert open_image(f"docker-archive:{tmp_path / 'img.tar'}").id == image_id
    # The OCI layout back to another repository of the registry, its bytes unchanged.
    repo = _unique("copy")
    assert copy(f"oci:{tmp_path / 'layout'}:v1", f"docker://{registry}/{repo}:1", progress=False) == layout_digest
    assert sha256(_registry_manifest(registry, repo, "1")) == layout_digest


def test_copy_into_the_engine(busybox_in_registry, docker_client):
    from nbimages.sources.copy import copy
    name = f"nbtest/copied-{uuid.uuid4().hex[:6]}:1"
    image_id = copy(f"docker://{busybox_in_registry}", f"docker-daemon:{name}", progress=False)
    try:
        assert docker_client.images.get(name).id == image_id == open_remote(busybox_in_registry).id
    finally:
        docker_client.images.remove(name, force=True)


def test_copy_to_an_unknown_transport_is_refused(busybox_in_registry):
    from nbimages.errors import UnknownTransport
    from nbimages.sources.copy import copy
    with pytest.raises(UnknownTransport, match="docker://"):
        copy(f"docker://{busybox_in_registry}", "ftp:somewhere", progress=False)

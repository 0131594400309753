"""Authenticated registries started by the tests: htpasswd basic auth over TLS with a test CA,
and token auth with a token issuer of our own (RS256 JWTs), both real `docker-registry`s."""

from __future__ import annotations

import logging

import pytest

from nbimages.errors import AuthenticationError, RegistryError
from nbimages.registry import RegistryClient, tags
from nbimages.sources.copy import push
from nbimages.sources.remote import open_remote, pull
from nbimages.store import Store

from registry_servers import (HTPASSWD_PASS, HTPASSWD_USER, Distribution, TokenIssuer, basic_auth,
                              docker_config, make_ca)


@pytest.fixture(scope="module")
def busybox_local(busybox_in_registry, tmp_path_factory):
    """The busybox base pulled into a store of this module (the source for pushes here)."""
    return pull(busybox_in_registry, store=Store(tmp_path_factory.mktemp("base")), progress=False)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    certs = make_ca(d / "certs")
    with Distribution(d / "reg", tls=certs, htpasswd=True) as reg:
        yield reg, certs["ca"]


@pytest.fixture
def login(tmp_path, monkeypatch):
    def write(registry: str, user: str, password: str):
        auths = {registry: {"auth": basic_auth(user, password)}} if user else {}
        monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker", {"auths": auths})))
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker", {})))
    return write


def test_htpasswd_over_tls_round_trip_with_test_ca(tls_registry, busybox_local, login, tmp_path):
    reg, ca = tls_registry
    login(reg.address, HTPASSWD_USER, HTPASSWD_PASS)
    ref = f"{reg.address}/team/busybox:1"
    digest = push(busybox_local, ref, ca_bundle=str(ca), progress=False)
    assert digest == busybox_local.digest
    back = pull(ref, ca_bundle=str(ca), store=Store(tmp_path / "s"), progress=False)
    assert back.digest == digest and back.config_bytes == busybox_local.config_bytes
    assert tags(f"{reg.address}/team/busybox", ca_bundle=str(ca))["tag"].tolist() == ["1"]


def test_tls_registry_on_loopback_is_found_without_saying_https(tls_registry, busybox_local, login,
                                                                 monkeypatch, tmp_path):
    # Loopback means plain http by default; a TLS-only registry there answers 400, then https.
    reg, ca = tls_registry
    login(reg.address, HTPASSWD_USER, HTPASSWD_PASS)
    monkeypatch.setenv("NBIMAGES_CA_BUNDLE", str(ca))
    ref = f"{reg.address}/team/auto-tls:1"
    assert push(busybox_local, ref, progress=False) == busybox_local.digest
    assert tags(f"{reg.address}/team/auto-tls")["tag"].tolist() == ["1"]
    assert pull(ref, store=Store(tmp_path / "s"), progress=False).digest == busybox_local.digest


def test_ca_bundle_from_environment(tls_registry, busybox_local, login, monkeypatch):
    reg, ca = tls_registry
    login(reg.address, HTPASSWD_USER, HTPASSWD_PASS)
    monkeypatch.setenv("NBIMAGES_CA_BUNDLE", str(ca))
    push(busybox_local, f"{reg.address}/team/env:1", insecure=False, progress=False)


def test_unknown_ca_is_a_tls_error_with_a_hint(tls_registry, login):
    reg, _ = tls_registry
    login(reg.address, HTPASSWD_USER, HTPASSWD_PASS)
    with pytest.raises(RegistryError, match="ca_bundle"):
        open_remote(f"{reg.address}/team/busybox:1", insecure=False)


def test_wrong_password_is_refused_without_showing_it(tls_registry, login, caplog):
    reg, ca = tls_registry
    wrong = "wrong-Pa55word-xyz"
    login(reg.address, HTPASSWD_USER, wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthenticationError) as e:
        open_remote(f"{reg.address}/team/busybox:1", ca_bundle=str(ca))
    assert HTPASSWD_USER in str(e.value) and "docker login" in str(e.value)
    assert wrong not in str(e.value) and wrong not in caplog.text
    assert basic_auth(HTPASSWD_USER, wrong) not in caplog.text


def test_no_credentials_for_basic_auth_says_to_log_in(tls_registry, login):
    reg, ca = tls_registry
    with pytest.raises(AuthenticationError, match="docker login"):
        open_remote(f"{reg.address}/team/busybox:1", ca_bundle=str(ca))


# ---- token auth ---------------------------------------------------------------------------------

TOKEN_USER, TOKEN_PASS = "tokenuser", "token-secret-pw"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("token")
    with TokenIssuer(d / "issuer", {TOKEN_USER: TOKEN_PASS}) as issuer:
        with Distribution(d / "reg", token=issuer) as reg:
            yield reg, issuer


def test_token_auth_push_with_credentials_then_anonymous_pull(token_registry, busybox_local, login,
                                                             tmp_path, caplog):
    reg, issuer = token_registry
    ref = f"{reg.address}/team/app:1"
    login(reg.address, TOKEN_USER, TOKEN_PASS)
    caplog.set_level(logging.DEBUG)
    before = len(issuer.requests)
    assert push(busybox_local, ref, progress=False) == busybox_local.digest
    pushes = issuer.requests[before:]
    assert (TOKEN_USER, ["repository:team/app:pull,push"]) in pushes

    login(reg.address, "", "")  # no credentials: anonymous from now on
    before = len(issuer.requests)
    got = pull(ref, store=Store(tmp_path / "anon"), progress=False)
    assert got.digest == busybox_local.digest
    assert issuer.requests[before:] and all(user is None for user, _ in issuer.requests[before:])
    for token in issuer.issued:
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


def test_a_pull_token_is_not_reused_for_a_push(token_registry, busybox_local, login):
    reg, issuer = token_registry
    login(reg.address, TOKEN_USER, TOKEN_PASS)
    client = RegistryClient(reg.address)
    repo = "team/scopes"
    push(busybox_local, f"{reg.address}/{repo}:1", progress=False)
    before = len(issuer.requests)
    client.get_manifest(repo, "1")  # pull scope
    client.has_blob(repo, busybox_local.layers[0].digest, push=True)  # needs a new pull,push token
    scopes = [s for _, ss in issuer.requests[before:] for s in ss]
    assert scopes == [f"repository:{repo}:pull", f"repository:{repo}:pull,push"]


def test_anonymous_push_to_token_registry_is_refused(token_registry, busybox_local, login):
    reg, issuer = token_registry
    with pytest.raises(AuthenticationError, match="anonymous"):
        push(busybox_local, f"{reg.address}/team/anon:1", progress=False)


def test_wrong_password_at_the_token_service(token_registry, login):
    reg, issuer = token_registry
    login(reg.address, TOKEN_USER, "not-the-password-123")
    with pytest.raises(AuthenticationError, match="refused user 'tokenuser'") as e:
        open_remote(f"{reg.address}/team/app:1")
    assert "not-the-password-123" not in str(e.value)


def test_cross_repository_mount_with_token_scopes(token_registry, busybox_local, login, monkeypatch):
    reg, issuer = token_registry
    login(reg.address, TOKEN_USER, TOKEN_PASS)
    push(busybox_local, f"{reg.address}/team/origin:1", progress=False)
    uploads = []
    real = RegistryClient.upload_blob
    monkeypatch.setattr(RegistryClient, "upload_blob",
                        lambda self, *a, **k: uploads.append(a[1]) or real(self, *a, **k))
    before = len(issuer.requests)
    push(busybox_local, f"{reg.address}/team/mounted:1", progress=False)
    assert uploads == []
    scopes = {s for _, ss in issuer.requests[before:] for s in ss}
    assert "repository:team/origin:pull" in scopes

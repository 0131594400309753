"""Image references parse and print as Docker's do."""

from __future__ import annotations

import pytest

from nbimages.errors import InvalidReference
from nbimages.reference import Reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, canonical, familiar", [
    ("python", "docker.io/library/python:latest", "python:latest"),
    ("python:3.12-slim", "docker.io/library/python:3.12-slim", "python:3.12-slim"),
    ("jupyter/scipy-notebook", "docker.io/jupyter/scipy-notebook:latest", "jupyter/scipy-notebook:latest"),
    ("docker.io/library/python:3.12", "docker.io/library/python:3.12", "python:3.12"),
    ("index.docker.io/python", "docker.io/library/python:latest", "python:latest"),
    ("ghcr.io/org/team/app:v1.2", "ghcr.io/org/team/app:v1.2", "ghcr.io/org/team/app:v1.2"),
    ("127.0.0.1:5000/nbtest/busybox:1", "127.0.0.1:5000/nbtest/busybox:1", "127.0.0.1:5000/nbtest/busybox:1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b", "localhost:5000/a/b:latest", "localhost:5000/a/b:latest"),
    ("[::1]:5000/app:x", "[::1]:5000/app:x", "[::1]:5000/app:x"),
    (f"python@{DIGEST}", f"docker.io/library/python@{DIGEST}", f"python@{DIGEST}"),
    (f"python:3.12@{DIGEST}", f"docker.io/library/python:3.12@{DIGEST}", f"python:3.12@{DIGEST}"),
    ("docker://python:3", "docker.io/library/python:3", "python:3"),
    ("my.registry:8443/a__b/c-d.e:T_1", "my.registry:8443/a__b/c-d.e:T_1", "my.registry:8443/a__b/c-d.e:T_1"),
])
def test_references_normalise_like_docker(text, canonical, familiar):
    ref = Reference.parse(text)
    assert str(ref) == canonical
    assert ref.familiar() == familiar
    assert Reference.parse(str(ref)) == ref


def test_parts_and_api_host():
    ref = Reference.parse("python:3.12")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("docker.io", "library/python", "3.12", None)
    assert ref.api_host == "registry-1.docker.io"
    local = Reference.parse("127.0.0.1:5000/a/b@" + DIGEST)
    assert (local.registry, local.repository, local.tag, local.digest) == ("127.0.0.1:5000", "a/b", None, DIGEST)
    assert local.api_host == "127.0.0.1:5000" and local.identifier == DIGEST


def test_a_localhost_without_slash_is_a_hub_repository():
    assert str(Reference.parse("localhost")) == "docker.io/library/localhost:latest"


@pytest.mark.parametrize("host, loopback", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.8.9.1", True), ("[::1]:5000", True),
    ("ghcr.io", False), ("10.0.0.1:5000", False),
])
def test_loopback_registries_are_recognised(host, loopback):
    assert Reference.parse(f"{host}/app").is_loopback is loopback


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("Python", "lower-case"),
    ("python:3.12:extra", "tag"),
    ("python:-bad", "tag"),
    ("python@sha256:abc", "64 hex"),
    ("python@md5", "digest"),
    ("a//b", "empty path component"),
    ("a/b/", "empty path component"),
    ("127.0.0.1:99999/app", "port"),
    ("bad_host.example:5000/app", "host"),
    ("https://ghcr.io/a/b", "URL"),
    ("my app", "white space"),
    ("repo/with spaces:1", "white space"),
    ("a/" + "b" * 300, "longer than 255"),
    ("ab--cd_", "repository component"),
])
def test_malformed_references_say_what_is_wrong(text, says):
    with pytest.raises(InvalidReference) as e:
        Reference.parse(text)
    assert says in str(e.value)
    assert "REPOSITORY" in str(e.value)  # the message shows the expected shape


def test_non_strings_are_refused_clearly():
    with pytest.raises(InvalidReference, match="must be a string"):
        Reference.parse(42)  # type: ignore[arg-type]


def test_store_name_forms_use_the_reference():
    from nbimages.store import _name_forms
    forms = _name_forms("busybox")
    assert "docker.io/library/busybox:latest" in forms and "busybox:latest" in forms

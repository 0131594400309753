"""The suite's own guard: nothing in a test may reach beyond the loopback range."""

import socket

import pytest
import requests

import nbimages
from nbimages.errors import NbimagesError


def test_names_outside_loopback_are_refused_before_any_lookup():
    with pytest.raises(socket.gaierror, match="loopback"):
        socket.getaddrinfo("registry-1.docker.io", 443)


def test_loopback_addresses_still_resolve():
    assert socket.getaddrinfo("127.0.0.1", 5000)
    assert socket.getaddrinfo("localhost", 5000)


def test_a_pull_from_docker_hub_fails_fast_with_a_clear_error_instead_of_leaving(monkeypatch):
    monkeypatch.setenv("NBIMAGES_REGISTRY_RETRIES", "0")
    with pytest.raises((NbimagesError, requests.ConnectionError)) as err:
        nbimages.pull("busybox:1.36")
    assert "registry-1.docker.io" in str(err.value) or "docker.io" in str(err.value)

"""No credential or token leaks: a registry on loopback that echoes the Authorization header
back (in 4xx/5xx bodies, in headers, in redirects), for basic and bearer auth, through the
Python API, the CLI and a magic, with debug logging on."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

import nbimages
from nbimages import redact
from nbimages.errors import NbimagesError

from registry_servers import _Quiet, _Server, docker_config

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "user", "SECRETPW123"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # dXNlcjpTRUNSRVRQVzEyMw==
TOKEN = "tok-SECRETTOKEN-4f9a1c"
REFRESH = "refresh-SECRETREFRESH-77"
LEAKS = [PASSWORD, BASIC, TOKEN, REFRESH, quote(BASIC, safe=""), quote(TOKEN, safe="")]


class EchoRegistry(_Server):
    """A registry that wants basic or bearer auth and echoes the Authorization it gets.

    /v2/<mode>/manifests/...: mode `body` answers 403 with the header in the JSON error,
    `text` 400 with it in a text body, `server` 500, `header` 404 with it in response headers,
    `redirect` 307 to a URL carrying it in the query, whose page echoes the query back.
    """

    def __init__(self, scheme: str):
        self.scheme = scheme

    class handler_class(_Quiet):
        def do_GET(self):  # noqa: N802 - http.server's naming
            owner = self.owner
            auth = self.headers.get("Authorization", "")
            if self.path.startswith("/token"):
                if auth != f"Basic {BASIC}":
                    return self.reply(401, b'{"details": "echo ' + auth.encode() + b'"}')
                return self.reply(200, json.dumps({"token": TOKEN, "refresh_token": REFRESH,
                                                   "expires_in": 300}).encode(),
                                  {"Content-Type": "application/json"})
            if self.path.startswith("/landing"):
                return self.reply(404, f"not here: {self.path}".encode(), {"Content-Type": "text/plain"})
            wanted = f"Basic {BASIC}" if owner.scheme == "basic" else f"Bearer {TOKEN}"
            if auth != wanted:
                challenge = ('Basic realm="echo"' if owner.scheme == "basic" else
                             f'Bearer realm="http://{owner.address}/token",service="echo"')
                return self.reply(401, b"", {"WWW-Authenticate": challenge})
            if self.path == "/v2/":
                return self.reply(200, b"{}", {"Content-Type": "application/json"})
            mode = self.path.split("/")[2]
            echo = f"echo Authorization: {auth}"
            if mode == "body":
                body = json.dumps({"errors": [{"code": "DENIED", "message": echo}]}).encode()
                return self.reply(403, body, {"Content-Type": "application/json"})
            if mode == "text":
                return self.reply(400, echo.encode(), {"Content-Type": "text/plain"})
            if mode == "server":
                return self.reply(500, echo.encode(), {"Content-Type": "text/plain"})
            if mode == "header":
                return self.reply(404, b"", {"X-Echo": auth, "Warning": f'199 - "{echo}"',
                                             "Content-Type": "text/plain"})
            if mode == "redirect":
                return self.reply(307, b"", {"Location": f"/landing?auth={quote(auth, safe='')}"})
            return self.reply(404, b"")

        do_HEAD = do_GET


MODES = ["body", "text", "server", "header", "redirect"]


@pytest.fixture(params=["basic", "bearer"])
def echo(request, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "docker", {})))
    monkeypatch.setenv("NBIMAGES_REGISTRY_RETRIES", "0")
    with EchoRegistry(request.param) as server:
        docker_config(tmp_path / "docker", {"auths": {server.address: {"auth": BASIC}}})
        yield server


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for leak in LEAKS:
            assert leak not in text, f"{leak!r} leaked in: {text}"


@pytest.mark.parametrize("mode", MODES)
def test_api_errors_reprs_args_and_logs_are_scrubbed(echo, mode, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(NbimagesError) as info:
        nbimages.pull(f"{echo.address}/{mode}/app:1", progress=False)
    e = info.value
    if mode in ("body", "text", "server"):
        assert "echo Authorization: " in str(e)  # the registry's words are still quoted
    _assert_clean(str(e), repr(e), repr(e.args), caplog.text)


@pytest.mark.parametrize("mode", ["body", "redirect"])
def test_cli_output_is_scrubbed(echo, mode, tmp_path):
    env = {**os.environ, "NBIMAGES_HOME": str(tmp_path / "home"), "NBIMAGES_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-m", "nbimages", "pull", f"{echo.address}/{mode}/app:1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("nbimages: ")
    _assert_clean(done.stdout, done.stderr)


def test_magic_output_is_scrubbed(echo, ip):
    with pytest.raises(NbimagesError) as info:
        ip.run_line_magic("image", f"pull {echo.address}/body/app:1 -q")
    shown = "\n".join(info.value._render_traceback_())
    assert "echo Authorization: " in shown
    _assert_clean(shown)


def test_credential_shapes_are_scrubbed_even_when_never_sent():
    text = ('Authorization: Basic Zm9vOmJhcg== and "Bearer abc.def.ghi" '
            'https://bob:hunter22@example.test/x?token=abcdef&x=1 {"password": "pw12345"}')
    out = redact.scrub(text)
    for leak in ("Zm9vOmJhcg==", "abc.def.ghi", "hunter22", "abcdef", "pw12345"):
        assert leak not in out
    assert "x=1" in out and "example.test" in out and "bob" in out


def test_explicit_credentials_are_remembered_and_scrubbed():
    from nbimages.registry.auth import Credentials
    Credentials("alice", "another-Secret-99", "a test")
    err = NbimagesError("the server said another-Secret-99 and "
                        + base64.b64encode(b"alice:another-Secret-99").decode())
    assert "another-Secret-99" not in str(err) and "YWxpY2U6" not in str(err)

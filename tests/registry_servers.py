"""Servers the registry tests start on 127.0.0.1: extra distribution registries (TLS, htpasswd,
token auth), a token issuer, a proxy that corrupts or throttles blobs, and a scripted fake.

Everything listens on loopback only and is stopped by its context manager.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

# bcrypt of "nbtest-pass" (distribution's htpasswd reads bcrypt only); made once with crypt(3).
HTPASSWD_USER = "nbtester"
HTPASSWD_PASS = "nbtest-pass"
HTPASSWD_LINE = f"{HTPASSWD_USER}:$2b$05$Wr2YnmS2kd8wiJPROhsbWOvKjvHWB2UjrIJ4gfp6mGJ22NsFY.76q"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=True).stdout


def make_ca(directory: Path) -> dict[str, Path]:
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "san.ext"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_crt),
            "-days", "2", "-subj", "/CN=nbimages test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                   "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return {"ca": ca_crt, "cert": crt, "key": key}


class Distribution:
    """`docker-registry serve` (Debian's distribution) on a free loopback port."""

    def __init__(self, root: Path, *, tls: dict | None = None, htpasswd: bool = False,
                 token: "TokenIssuer | None" = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tls = tls
        cfg: dict = {
            "version": "0.1",
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.address, "secret": "nbimages-test-secret"},
        }
        if tls:
            cfg["http"]["tls"] = {"certificate": str(tls["cert"]), "key": str(tls["key"])}
        if htpasswd:
            pw = self.root / "htpasswd"
            pw.write_text(HTPASSWD_LINE + "\n")
            cfg["auth"] = {"htpasswd": {"realm": "nbimages-test", "path": str(pw)}}
        if token:
            cfg["auth"] = {"token": {"realm": token.realm, "service": token.service,
                                     "issuer": token.issuer, "rootcertbundle": str(token.cert)}}
        self.config = self.root / "config.yml"
        self.config.write_text(json.dumps(cfg))  # YAML is a superset of JSON
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Distribution":
        self._log = open(self.root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited: "
                                   + (self.root / "registry.log").read_text()[-2000:])
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            time.sleep(0.05)
        raise RuntimeError("docker-registry did not start in 20 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ---- small HTTP server plumbing -------------------------------------------------------------

class _Server:
    """A ThreadingHTTPServer on a free loopback port, run in a thread."""

    handler_class: type

    def __enter__(self):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        handler = type("H", (self.handler_class,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        hdrs = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)


# ---- token issuer ---------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer(_Server):
    """A Docker-style token service: RS256 JWTs (signed with openssl) carrying `access` claims.

    Anonymous callers get `pull` only; `users` (name -> password) get what they ask for.
    `requests` records (user or None, [scopes]) of every token request; `issued` the tokens.
    """

    service = "nbimages-test-registry"
    issuer = "nbimages-test-issuer"

    def __init__(self, directory: Path, users: dict[str, str]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.requests: list[tuple[str | None, list[str]]] = []
        self.issued: list[str] = []
        self.key = self.dir / "token.key"
        self.cert = self.dir / "token.crt"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                "-out", str(self.cert), "-days", "2", "-subj", "/CN=nbimages token issuer")
        der = openssl("x509", "-in", str(self.cert), "-outform", "DER")
        self.x5c = base64.b64encode(der).decode()

    @property
    def realm(self) -> str:
        return f"http://{self.address}/token"

    def __enter__(self):
        return super().__enter__()

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = openssl("dgst", "-sha256", "-sign", str(self.key), input=signing_input.encode())
        return f"{signing_input}.{_b64url(sig)}"

    class handler_class(_Quiet):
        def do_GET(self):
            owner: TokenIssuer = self.owner
            q = parse_qs(urlparse(self.path).query)
            scopes = [p for s in q.get("scope", []) for p in s.split()]
            user = None
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                name, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
                if owner.users.get(name) != pw:
                    owner.requests.append((name, scopes))
                    return self.reply(401, b'{"details":"bad credentials"}',
                                      {"Content-Type": "application/json"})
                user = name
            owner.requests.append((user, scopes))
            access = []
            for s in scopes:
                typ, name, actions = s.split(":", 2) if s.count(":") >= 2 else (s, "", "")
                wanted = [a for a in actions.split(",") if a]
                granted = wanted if user else [a for a in wanted if a == "pull"]
                access.append({"type": typ, "name": name, "actions": granted})
            now = int(time.time())
            token = owner.sign({"iss": owner.issuer, "sub": user or "", "aud": owner.service,
                                "exp": now + 300, "nbf": now - 10, "iat": now,
                                "jti": uuid.uuid4().hex, "access": access})
            owner.issued.append(token)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.reply(200, body, {"Content-Type": "application/json"})


# ---- reverse proxy that can corrupt or throttle ------------------------------------------------

class Proxy(_Server):
    """A reverse proxy in front of a registry: counts bytes per blob, can corrupt or throttle.

    `corrupt`: set of blob digests whose body gets one byte flipped.
    `rate`: bytes per second per response for blob bodies (None = full speed).
    `drop_patches`: numbers (1-based) of the upload PATCHes to swallow without an answer.
    `blob_bytes[digest]` counts body bytes sent; `blob_requests[digest]` the GETs.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.corrupt: set[str] = set()
        self.rate: float | None = None
        self.blob_bytes: dict[str, int] = {}
        self.blob_requests: dict[str, list[str | None]] = {}
        self.lock = threading.Lock()
        self.generation = 0
        self.drop_patches: set[int] = set()
        self.patches = 0

    def reset(self) -> None:
        """Forget the counts; responses still streaming from before are not counted."""
        with self.lock:
            self.generation += 1
            self.blob_bytes.clear()
            self.blob_requests.clear()

    class handler_class(_Quiet):
        def _forward(self):
            owner: Proxy = self.owner
            generation = owner.generation
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "PATCH":
                with owner.lock:
                    owner.patches += 1
                    drop = owner.patches in owner.drop_patches
                if drop:  # swallow the upload and hang up, like a dropped link
                    self.close_connection = True
                    return
            conn = http.client.HTTPConnection(owner.upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            m = re.match(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})$", urlparse(self.path).path)
            digest = m.group(1) if m and self.command == "GET" else None
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() in ("connection", "transfer-encoding"):
                    continue
                if k.lower() == "location":
                    v = v.replace(owner.upstream, self.headers.get("Host", owner.address))
                self.send_header(k, v)
            self.end_headers()
            if digest:
                with owner.lock:
                    owner.blob_requests.setdefault(digest, []).append(self.headers.get("Range"))
            flipped = False
            started = time.monotonic()
            sent = 0
            while True:
                chunk = resp.read(64 * 1024 if owner.rate is None or not digest else 16 * 1024)
                if not chunk:
                    break
                if digest and digest in owner.corrupt and not flipped and resp.status in (200, 206):
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    flipped = True
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
                if digest:
                    with owner.lock:
                        if owner.generation == generation:
                            owner.blob_bytes[digest] = owner.blob_bytes.get(digest, 0) + len(chunk)
                    if owner.rate:
                        ahead = sent / owner.rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


# ---- a scripted fake registry / Hub ------------------------------------------------------------

class Fake(_Server):
    """Answers each request with `routes[path]` -> (status, headers, body) or a callable."""

    def __init__(self, routes: dict[str, tuple | Callable] | None = None):
        self.routes = dict(routes or {})
        self.seen: list[tuple[str, str, dict]] = []

    class handler_class(_Quiet):
        def _answer(self):
            owner: Fake = self.owner
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            owner.seen.append((self.command, self.path, dict(self.headers)))
            path = urlparse(self.path).path
            route = owner.routes.get(path)
            if route is None:
                return self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}',
                                  {"Content-Type": "application/json"})
            if callable(route):
                route = route(self)
            status, headers, body = route
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **headers}
            self.reply(status, body or b"", headers)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _answer


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(name: str, data: bytes) -> bytes:
    """A one-file tar (a layer's uncompressed content)."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_of_tars(store, tars: list[bytes], *, gz: bool = True):
    """An image in `store` (an nbimages Store) whose layers are `tars`, gzip-compressed
    (level 1) or left plain; returns (Image, layer descriptors)."""
    import gzip
    from nbimages.oci import canonical, mediatypes as mt
    from nbimages.oci.descriptor import Descriptor
    from nbimages.oci.manifest import Manifest
    layers, diff_ids = [], []
    for tar in tars:
        blob = gzip.compress(tar, compresslevel=1, mtime=0) if gz else tar
        layers.append(store.write_blob(blob, sha256(blob), mt.OCI_LAYER_GZIP if gz else mt.OCI_LAYER))
        diff_ids.append(sha256(tar))
    config = canonical.dumps({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    cfg = store.write_blob(config, sha256(config), mt.OCI_CONFIG)
    manifest = Manifest.build(cfg, layers)
    store.write_blob(manifest.raw, manifest.digest)
    return store.image(Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))), layers


def docker_config(directory: Path, doc: dict) -> Path:
    """Write a Docker config.json into `directory` (use as DOCKER_CONFIG)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(doc))
    return d


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def env_without_docker_config() -> dict:
    env = dict(os.environ)
    env.pop("DOCKER_CONFIG", None)
    return env

"""Which Docker engine to talk to: DOCKER_HOST, else the docker context, else the default socket.

The docker CLI's order (cli/command/cli.go, resolveContextName): an explicit DOCKER_HOST wins,
then DOCKER_CONTEXT, then `currentContext` in $DOCKER_CONFIG/config.json (default ~/.docker).
A context's endpoint lives in contexts/meta/<sha256(name)>/meta.json and its TLS files in
contexts/tls/<sha256(name)>/docker/. The docker SDK's `from_env` reads DOCKER_HOST only, so
contexts are resolved here.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from .errors import EngineUnavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT = float(os.environ.get("NBIMAGES_ENGINE_TIMEOUT", "3"))


@dataclass(frozen=True)
class Endpoint:
    """Where the engine should answer, and how we came to that address (for messages)."""

    host: str
    origin: str              # "DOCKER_HOST", "docker context 'x'", "the default socket"
    tls: Any = None          # docker.tls.TLSConfig or None
    tls_verify: bool = False

    @property
    def is_local(self) -> bool:
        """True when the engine runs on this machine, so its host ports are our ports."""
        if self.host.startswith(("unix://", "npipe://")) or "://" not in self.host:
            return True
        name = urlparse(self.host).hostname or ""
        return name in ("localhost", "::1") or name.startswith("127.")

    def client(self, timeout: float):
        """A docker SDK client for this endpoint (not yet asked anything)."""
        import docker
        if self.origin == "DOCKER_HOST":
            return docker.from_env(timeout=timeout)
        return docker.DockerClient(base_url=self.host, tls=self.tls or False, timeout=timeout)

    def describe(self) -> str:
        """`unix:///var/run/docker.sock (DOCKER_HOST unset)` and the like."""
        if self.origin == "DOCKER_HOST":
            return f"{self.host} (DOCKER_HOST)"
        if self.origin.startswith("docker context"):
            return f"{self.host} ({self.origin}; DOCKER_HOST unset)"
        return f"{self.host} (DOCKER_HOST unset)"


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def current_context_name() -> str | None:
    """The selected context name, None for the default one."""
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            name = json.loads((config_dir() / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            name = None
    return None if not name or name == "default" else name


def resolve() -> Endpoint:
    """The endpoint the docker CLI would use in this environment."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        verify = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        return Endpoint(host, "DOCKER_HOST", None, verify)
    name = current_context_name()
    if name:
        return _from_context(name)
    return Endpoint(DEFAULT_HOST, "the default socket")


def _from_context(name: str) -> Endpoint:

    context_id = hashlib.sha256(name.encode()).hexdigest()
    meta_file = config_dir() / "contexts" / "meta" / context_id / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        docker_ep = meta["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError, TypeError):
        raise EngineUnavailable(
            f"the docker context {name!r} (from DOCKER_CONTEXT or {config_dir() / 'config.json'}) "
            f"has no readable endpoint at {meta_file}. Create it with `docker context create`, "
            "switch with `docker context use default`, or set DOCKER_HOST.") from None
    host = docker_ep.get("Host") or DEFAULT_HOST
    tls = None
    tls_dir = config_dir() / "contexts" / "tls" / context_id / "docker"
    if tls_dir.is_dir():
        import docker.tls
        ca, cert, key = (tls_dir / "ca.pem", tls_dir / "cert.pem", tls_dir / "key.pem")
        verify = not docker_ep.get("SkipTLSVerify", False)
        tls = docker.tls.TLSConfig(
            client_cert=(str(cert), str(key)) if cert.exists() and key.exists() else None,
            ca_cert=str(ca) if ca.exists() and verify else None,
            verify=str(ca) if ca.exists() and verify else verify)
    return Endpoint(host, f"docker context {name!r}", tls)


def short_cause(e: BaseException) -> str:
    """The useful end of a connection error ("connection refused", "no such socket")."""
    text = str(e)
    for needle, say in (("No such file or directory", "the socket does not exist"),
                        ("Connection refused", "connection refused"),
                        ("Permission denied", "permission denied (is your user in the docker group?)"),
                        ("timed out", f"no answer within {CONNECT_TIMEOUT:g} s"),
                        ("Name or service not known", "unknown host name"),
                        ("ssh", "ssh:// endpoints need the paramiko package")):
        if needle in text:
            return say
    return text[:200] or e.__class__.__name__

"""Registry credentials as Docker users have them, and the token / basic challenge flow.

Credentials come from `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`): `credHelpers`
for one registry, `credsStore` for all, and `auths` entries (base64 `user:password`, or an
`identitytoken`). Docker Hub's entry is keyed `https://index.docker.io/v1/`.

Secrets never leave this module in a printable form: `Credentials.__repr__` hides them, and
error messages name the user and where the credentials came from, never the secret.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import redact
from ..errors import AuthenticationError, RegistryError

log = logging.getLogger(__name__)

HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    """A user name and a secret (password, access token, or identity token)."""

    username: str
    secret: str = field(repr=False)
    source: str = ""
    identity_token: bool = False  # secret is an OAuth2 refresh token (`docker login` with SSO)

    def __post_init__(self) -> None:
        redact.remember_credentials(self.username, self.secret)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret='***', source={self.source!r})"

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def docker_config_dir() -> Path:
    """`$DOCKER_CONFIG`, else `~/.docker` (where `docker login` writes config.json)."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env).expanduser() if env else Path.home() / ".docker"


def _config() -> dict:
    path = docker_config_dir() / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable Docker config %s (%s)", path, e.__class__.__name__)
        return {}


def _host_of(key: str) -> str:
    """`https://index.docker.io/v1/` -> `index.docker.io`; `host:5000` stays."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0].lower()


def _server_keys(registry: str) -> list[str]:
    """The names a config may file `registry` under, most specific first."""
    reg = registry.lower()
    if reg in _HUB_HOSTS:
        return [HUB_CONFIG_KEY, "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [reg, f"https://{reg}", f"http://{reg}"]


def _from_helper(helper: str, server: str) -> Credentials | None:
    """Ask `docker-credential-<helper> get` for `server`'s credentials (None if it has none)."""
    exe = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([exe, "get"], input=server, capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError:
        log.warning("Docker config names the credential helper %r but %s is not on PATH", helper, exe)
        return None
    except subprocess.TimeoutExpired:
        log.warning("credential helper %s did not answer in 30 s", exe)
        return None
    if proc.returncode != 0:
        # "credentials not found in native keychain" is the normal answer for an unknown server.
        log.debug("credential helper %s has nothing for %s", exe, server)
        return None
    try:
        doc = json.loads(proc.stdout)
        user, secret = doc.get("Username") or "", doc.get("Secret") or ""
    except (ValueError, AttributeError):
        log.warning("credential helper %s printed something that is not JSON", exe)
        return None
    if not secret:
        return None
    return Credentials(user, secret, f"credential helper {exe}", identity_token=user == "<token>")


def lookup(registry: str) -> Credentials | None:
    """The credentials Docker would use for `registry` (a host[:port]), or None."""
    cfg = _config()
    keys = _server_keys(registry)
    helpers = cfg.get("credHelpers") or {}
    for key in keys:
        helper = helpers.get(key) or helpers.get(_host_of(key))
        if helper:
            found = _from_helper(helper, keys[0])
            if found:
                return found
            break
    if cfg.get("credsStore") and not any(helpers.get(k) for k in keys):
        found = _from_helper(cfg["credsStore"], keys[0])
        if found:
            return found
    auths = cfg.get("auths") or {}
    wanted = {_host_of(k) for k in keys}
    for key, entry in auths.items():
        if _host_of(key) not in wanted or not isinstance(entry, dict):
            continue
        source = f"{docker_config_dir() / 'config.json'} auths[{key!r}]"
        if entry.get("identitytoken"):
            user = entry.get("username") or ""
            if entry.get("auth"):
                user = _decode_auth(entry["auth"], source)[0]
            return Credentials(user or "<token>", entry["identitytoken"], source, identity_token=True)
        if entry.get("auth"):
            user, secret = _decode_auth(entry["auth"], source)
            return Credentials(user, secret, source)
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], source)
    return None


def _decode_auth(value: str, source: str) -> tuple[str, str]:
    try:
        user, _, secret = base64.b64decode(value).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise AuthenticationError(f"the `auth` value of {source} is not base64 of user:password. "
                                  "Run `docker login` again for that registry.") from None
    return user, secret


# ---- challenges -------------------------------------------------------------------------

_PARAM = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def scope_for(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


class Authenticator:
    """Answers one registry's challenges; caches tokens per scope (a pull token never pushes)."""

    def __init__(self, registry: str, credentials: Credentials | None = None, *,
                 lookup_credentials: bool = True):
        self.registry = registry
        self._explicit = credentials
        self._lookup = lookup_credentials
        self._creds: Credentials | None = None
        self._looked_up = False
        self._scheme: str | None = None  # "bearer" / "basic" once a challenge was seen
        self._params: dict[str, str] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Authenticator {self.registry} {self._scheme or 'no challenge yet'}>"

    @property
    def credentials(self) -> Credentials | None:
        if self._explicit is not None:
            return self._explicit
        if not self._looked_up:
            self._creds = lookup(self.registry) if self._lookup else None
            self._looked_up = True
        return self._creds

    def known_credentials(self) -> Credentials | None:
        """The credentials already in use, without looking any up (for error messages)."""
        return self._explicit if self._explicit is not None else self._creds

    def header(self, scope: str | None) -> str | None:
        """The Authorization value to send for `scope`, if one is already known."""
        if self._scheme == "basic":
            creds = self.credentials
            return creds.basic_header() if creds else None
        if self._scheme == "bearer" and scope:
            with self._lock:
                tok = self._tokens.get(scope)
            if tok and tok[1] > time.monotonic():
                return f"Bearer {tok[0]}"
        return None

    def answer(self, challenge: str, scope: str | None, session, timeout: float,
               verify: str | bool = True) -> str:
        """Handle a 401 challenge and return the Authorization value to retry with."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            self._scheme = "basic"
            creds = self.credentials
            if creds is None:
                raise AuthenticationError(
                    f"the registry {self.registry} asks for a user name and password and none were "
                    f"found. Run `docker login {self.registry}` (nbimages reads "
                    f"{docker_config_dir() / 'config.json'} and its credential helpers).")
            return creds.basic_header()
        if scheme != "bearer" or "realm" not in params:
            raise AuthenticationError(f"the registry {self.registry} asked for an authentication "
                                      f"scheme nbimages does not speak ({scheme or 'none'}).")
        self._scheme, self._params = "bearer", params
        # Ask for the scope this request needs (the challenge's when we have none): a token
        # that also carries the challenge's narrower scope would only be larger.
        wanted = [scope] if scope else [params["scope"]] if params.get("scope") else []
        token, ttl = self._fetch_token(params, wanted, session, timeout, verify)
        key = scope or params.get("scope") or ""
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + max(ttl - 10, 5))
        return f"Bearer {token}"

    def forget(self, scope: str | None) -> None:
        with self._lock:
            self._tokens.pop(scope or "", None)

    def _fetch_token(self, params: dict[str, str], scopes: list[str], session,
                     timeout: float, verify: str | bool = True) -> tuple[str, float]:
        import requests

        realm = params["realm"]
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        scopes = list(dict.fromkeys(part for s in scopes for part in s.split()))
        for s in scopes:
            query.append(("scope", s))
        creds = self.credentials
        try:
            if creds is not None and creds.identity_token:
                # docker login with an identity token: OAuth2 refresh-token grant (token spec).
                data = {"grant_type": "refresh_token", "refresh_token": creds.secret,
                        "client_id": "nbimages", "service": params.get("service", ""),
                        "scope": " ".join(scopes)}
                resp = session.post(realm, data=data, timeout=timeout, verify=verify)
            else:
                headers = {"Authorization": creds.basic_header()} if creds else {}
                resp = session.get(realm, params=query, headers=headers, timeout=timeout,
                                   verify=verify)
        except requests.RequestException as e:
            raise RegistryError(f"could not reach the token service of {self.registry} "
                                f"({_host_of(realm)}): {e.__class__.__name__}. Check the network "
                                "and that the registry's auth service is up.") from None
        if resp.status_code in (401, 403):
            who = (f"user {creds.username!r} (from {creds.source})" if creds
                   else "anonymous access")
            raise AuthenticationError(
                f"the token service of {self.registry} refused {who} for "
                f"{', '.join(scopes) or 'access'} (HTTP {resp.status_code}). "
                + ("Check the user name and password, or run `docker login` again."
                   if creds else f"Log in first: `docker login {self.registry}`."))
        if resp.status_code != 200:
            raise RegistryError(f"the token service of {self.registry} answered HTTP "
                                f"{resp.status_code}. Try again later.")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            redact.remember(*(v for k, v in doc.items() if isinstance(v, str)
                              and k in ("token", "access_token", "refresh_token", "id_token")))
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"the token service of {self.registry} sent no token.")
        ttl = float(doc.get("expires_in") or 60)
        return token, ttl

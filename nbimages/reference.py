"""Image references as Docker understands them: `python` is `docker.io/library/python:latest`.

The grammar follows distribution's reference package (`reference/regexp.go`, `normalize.go`):
the first path component is a registry host only if it contains a `.` or a `:`, is
`localhost`, or has upper-case letters; otherwise the registry is Docker Hub (`docker.io`),
and a one-component Hub repository lives under `library/`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
_HOST_LABEL = re.compile(r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$")
_MAX_NAME = 255


def _bad(text: str, why: str) -> InvalidReference:
    return InvalidReference(
        f"{text!r} is not a valid image reference: {why}. Write it as [REGISTRY/]REPOSITORY"
        "[:TAG][@sha256:DIGEST], for example python:3.12, ghcr.io/org/app:v1 or "
        "127.0.0.1:5000/team/base@sha256:<64 hex digits>.")


def _check_host(text: str, host: str) -> None:
    name, port = host, None
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        if end < 0:
            raise _bad(text, f"registry host {host!r} has an unclosed '['")
        try:
            ipaddress.IPv6Address(host[1:end])
        except ValueError:
            raise _bad(text, f"{host[1:end]!r} is not an IPv6 address") from None
        rest = host[end + 1:]
        if rest and not rest.startswith(":"):
            raise _bad(text, f"unexpected {rest!r} after the IPv6 address")
        port = rest[1:] if rest else None
    else:
        if ":" in host:
            name, port = host.rsplit(":", 1)
        labels = name.split(".")
        if not all(_HOST_LABEL.match(label) for label in labels):
            raise _bad(text, f"registry host {name!r} is not a valid host name")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise _bad(text, f"registry port {port!r} is not a number from 1 to 65535")


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference (registry, repository, tag and/or digest)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: "str | Reference") -> "Reference":
        """Parse `text` as `docker pull` would; InvalidReference says what is wrong.

        A reference with neither tag nor digest gets the tag `latest`. A leading `docker://`
        (the transport prefix of skopeo and nbimages sources) is accepted and dropped.
        """
        if isinstance(text, Reference):
            return text
        if not isinstance(text, str):
            raise InvalidReference(f"an image reference must be a string, not {type(text).__name__}.")
        original = text
        text = text.strip()
        if text.startswith("docker://"):
            text = text[len("docker://"):]
        if not text:
            raise _bad(original, "it is empty")
        if any(c.isspace() for c in text):
            raise _bad(original, "it contains white space")
        if "://" in text:
            raise _bad(original, "it looks like a URL; leave out the scheme (http:// or https://)")

        digest = None
        if "@" in text:
            text, digest = text.split("@", 1)
            if not _DIGEST.match(digest):
                raise _bad(original, f"{digest!r} after '@' is not a digest (sha256: then 64 hex digits)")
            alg, hexpart = digest.split(":", 1)
            if alg == "sha256" and len(hexpart) != 64:
                raise _bad(original, f"a sha256 digest has 64 hex digits, this one has {len(hexpart)}")
            if hexpart != hexpart.lower():
                raise _bad(original, "digests are written in lower-case hex")

        registry, _, rest = text.partition("/")
        if not rest or not ("." in registry or ":" in registry or registry == "localhost"
                            or registry != registry.lower()):
            registry, rest = DOCKER_HUB, text
        else:
            _check_host(original, registry)

        tag = None
        last = rest.rsplit("/", 1)[-1]
        if ":" in last:
            rest, tag = rest.rsplit(":", 1)
            if not _TAG.match(tag):
                raise _bad(original, f"tag {tag!r} may only hold letters, digits, '_', '.' and '-' "
                                     "(at most 128, not starting with '.' or '-')")
        if not rest:
            raise _bad(original, "the repository name is missing")
        for comp in rest.split("/"):
            if not comp:
                raise _bad(original, "it has an empty path component ('//' or a trailing '/')")
            if not _COMPONENT.match(comp):
                if ":" in comp:
                    raise _bad(original, "it has more than one ':' - a tag comes once, after the "
                                         "last '/' (a registry port goes in the first part)")
                if comp.lower() != comp and _COMPONENT.match(comp.lower()):
                    raise _bad(original, f"repository names must be lower-case ({comp!r})")
                raise _bad(original, f"{comp!r} is not a valid repository component: use lower-case "
                                     "letters and digits, separated by '.', '_', '__' or '-'")

        if registry.lower() in _HUB_ALIASES:
            registry = DOCKER_HUB
            if "/" not in rest:
                rest = "library/" + rest
        if len(registry) + 1 + len(rest) > _MAX_NAME:
            raise _bad(original, f"the name is longer than {_MAX_NAME} characters")
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, rest, tag, digest)

    # ---- forms
    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return self.name + self._suffix()

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        """The short form Docker prints: `python:3.12`, `user/app:v1`, `ghcr.io/o/a:v1`."""
        if self.registry == DOCKER_HUB:
            repo = self.repository
            if repo.startswith("library/") and repo.count("/") == 1:
                repo = repo[len("library/"):]
            return repo + self._suffix()
        return self.name + self._suffix()

    @property
    def identifier(self) -> str:
        """What goes after `/manifests/` in the API: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        """The host that answers the distribution API (registry-1.docker.io for Docker Hub)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def hostname(self) -> str:
        """The registry host without its port."""
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def is_loopback(self) -> bool:
        """True for localhost and 127.0.0.0/8 / ::1 registries, which Docker reaches over http."""
        host = self.hostname
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def with_tag(self, tag: str) -> "Reference":
        if not _TAG.match(tag):
            raise _bad(f"{self.name}:{tag}", f"tag {tag!r} is not valid")
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference.parse(f"{self.name}@{digest}")


def is_reference(text: str) -> bool:
    """True when `text` parses as an image reference (Reference.parse would accept it)."""
    try:
        Reference.parse(text)
    except InvalidReference:
        return False
    return True

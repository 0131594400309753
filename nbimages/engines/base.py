"""The engine interface: where images are built, run, pulled, pushed and listed.

Two engines speak it: `docker` (the Docker Engine API through the docker SDK) and `embedded`
(the daemonless builder, registry client and local store). Each verb an engine cannot do
raises a NbimagesError saying which engine can, so callers never need to test the type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import EngineUnavailable, NbimagesError

# Labels on every container nbimages starts: `ps()` lists them, `stop()` knows what to remove.
LABEL_SESSION = "org.nbimages.session"
LABEL_REMOVE = "org.nbimages.remove"
LABEL_PORTS = "org.nbimages.ports"
LABEL_COMMAND = "org.nbimages.command"
SESSION = f"{os.getpid()}-{os.urandom(4).hex()}"


class ContainerError(NbimagesError):
    """A container could not be created or started (bad command, port, volume, network)."""


class CommandNotFound(ContainerError):
    """The command to run does not exist in the image."""


class PortInUse(ContainerError):
    """A port the container should listen on is already taken on the engine's host."""


@dataclass
class ImageRow:
    """One line of `images()`: a name (or `<none>`) of an image in the engine or the store."""

    repository: str
    tag: str
    digest: str | None
    id: str
    size: int | None
    created: Any          # pandas-compatible timestamp (datetime) or None
    where: str            # "engine" or "store"


class RunResult(int):
    """The exit code of a foreground container (an int), with the end of its output.

    A non-zero exit is returned, not raised: `if nbimages.run(...) != 0: ...` works, and
    `result.output` holds the last lines of what the container wrote (stdout and stderr).
    """

    output: str
    stdout: str
    stderr: str
    container: str
    image: str

    def __new__(cls, code: int, *, output: str = "", stdout: str = "", stderr: str = "",
                container: str = "", image: str = "") -> "RunResult":
        self = super().__new__(cls, code)
        self.output, self.stdout, self.stderr = output, stdout, stderr
        self.container, self.image = container, image
        return self

    @property
    def exit_code(self) -> int:
        return int(self)

    def tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the combined output."""
        return "\n".join(self.output.splitlines()[-lines:])


class Logs(str):
    """Container logs as text; shows as the text itself (not a quoted repr) in a notebook."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


class OutputTail:
    """Collects what a container or build writes: stdout, stderr and both interleaved, each
    kept up to its last `limit` characters (for the tail of an error message)."""

    def __init__(self, limit: int = 1 << 20):
        self.limit = limit
        self.parts: dict[str, list[str]] = {"stdout": [], "stderr": [], "all": []}
        self.sizes = {"stdout": 0, "stderr": 0, "all": 0}

    def add(self, stream: str, text: str) -> None:
        for key in (stream, "all"):
            self.parts[key].append(text)
            self.sizes[key] += len(text)
            while self.sizes[key] > self.limit and len(self.parts[key]) > 1:
                self.sizes[key] -= len(self.parts[key].pop(0))

    def text(self, stream: str = "all") -> str:
        return "".join(self.parts[stream])[-self.limit:]


class Engine:
    """What every engine offers; the defaults say which engine can do the verb instead."""

    name: str = "engine"
    reason: str = ""

    def _needs_docker(self, what: str) -> NbimagesError:
        return EngineUnavailable(
            f"{what} needs the Docker engine, and nbimages is using the embedded engine "
            f"({self.reason}). Start a Docker engine or point DOCKER_HOST at one (for example "
            "DOCKER_HOST=tcp://host:2375 or a docker context), then try again; the embedded "
            "engine builds, pulls, pushes and inspects images without Docker but cannot run "
            "containers or RUN steps.")

    # -- images ---------------------------------------------------------------------------
    def build_recipe(self, recipe, tag: str | None = None, **kw) -> Any:
        """Build a Recipe into an image named `tag` (what Recipe.build(engine=...) calls)."""
        raise NotImplementedError

    def build(self, recipe, tag: str | None = None, **kw) -> Any:
        return self.build_recipe(recipe, tag, **kw)

    def build_dockerfile(self, dockerfile: str, context=None, tag: str | None = None, **kw) -> Any:
        """Build Dockerfile text with the files of `context` (a directory)."""
        raise self._needs_docker("building a Dockerfile with RUN lines")

    def pull(self, ref: str, **kw) -> Any:
        raise NotImplementedError

    def push(self, ref: str, **kw) -> Any:
        raise NotImplementedError

    def images(self) -> list[ImageRow]:
        raise NotImplementedError

    def remove(self, ref: str, *, force: bool = False) -> None:
        raise NotImplementedError

    def tag(self, source: str, target: str) -> None:
        raise NotImplementedError

    def save(self, ref: str, path) -> Any:
        raise NotImplementedError

    def load(self, path) -> list[str]:
        raise NotImplementedError

    # -- containers -----------------------------------------------------------------------
    def run(self, image, command=None, **kw):
        raise self._needs_docker("running a container")

    def containers(self, all: bool = False) -> list:
        raise self._needs_docker("listing containers")

    def container(self, name: str):
        raise self._needs_docker("managing containers")

    def __repr__(self) -> str:
        return f"<Engine {self.name}: {self.reason}>"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))

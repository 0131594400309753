"""Where images are built and run: the Docker engine when one answers, else the embedded one.

    nbimages.engine()                  # which engine, and why
    nbimages.run("nbtest/busybox:1", ["sh", "-c", "echo hi; exit 3"])   # -> 3, output streamed
    c = nbimages.run(ref, ["httpd", "-f", "-p", "8080"], ports=8080, detach=True)
    nbimages.images()                  # the engine's and the store's images, one DataFrame

The functions here take `engine=` ("auto", "docker", "embedded" or an Engine) and are the
API behind the `%image run/ps/stop/logs/images/rm/tag/save/load` magics. The docker SDK is
imported only when the Docker engine is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import docker_endpoint as ep
from ..errors import EngineUnavailable, ImageNotFound, NbimagesError
from .base import (LABEL_COMMAND, LABEL_SESSION, SESSION, CommandNotFound, ContainerError, Engine,
                   ImageRow, Logs, PortInUse, RunResult)
from .docker import connect
from .embedded import EmbeddedEngine

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from .docker import Container, DockerEngine

__all__ = ["engine", "run", "ps", "stop", "logs", "container", "images", "rm", "tag", "save",
           "load", "pull", "push", "build", "Engine", "RunResult", "Logs", "ImageRow",
           "ContainerError", "CommandNotFound", "PortInUse"]

ENGINE_NAMES = ("auto", "docker", "embedded")


def engine(name: "str | Engine | None" = "auto") -> Engine:
    """The engine to use: `auto` picks the Docker engine when one answers (within a few
    seconds), else the embedded engine. `.name` says which, `.reason` says why.

    DOCKER_HOST and docker contexts (DOCKER_CONTEXT, `docker context use`) are honoured, so a
    remote engine works the same. NBIMAGES_ENGINE=docker|embedded changes what `auto` means.
    """
    if isinstance(name, Engine):
        return name
    name = name or "auto"
    if name not in ENGINE_NAMES:
        raise NbimagesError(f"unknown engine {name!r}: use 'auto' (the default), 'docker' or "
                            "'embedded'.")
    chosen_by_env = False
    if name == "auto":
        env = os.environ.get("NBIMAGES_ENGINE", "").strip().lower()
        if env in ("docker", "embedded"):
            name, chosen_by_env = env, True
    if name == "embedded":
        why = "NBIMAGES_ENGINE=embedded" if chosen_by_env else "engine='embedded' was asked for"
        return EmbeddedEngine(f"{why}; images live in the local store")
    try:
        where = ep.resolve()
        return connect(where)
    except EngineUnavailable as e:
        if name == "docker":
            raise EngineUnavailable(
                f"{e} Start the Docker engine (for example `sudo systemctl start docker`) or "
                "point DOCKER_HOST at one (DOCKER_HOST=tcp://HOST:2375, ssh://USER@HOST, or a "
                "docker context); without one, engine='embedded' builds, pulls, pushes and "
                "inspects images but cannot run containers.") from None
        return EmbeddedEngine(f"{str(e).rstrip('.')}; using the embedded engine")


_select = engine  # the functions below take a parameter named `engine`


def _docker(engine_: "str | Engine | None", what: str) -> "DockerEngine":
    """The Docker engine, or EngineUnavailable explaining that `what` needs it."""
    eng = _select(engine_)
    if eng.name != "docker":
        raise eng._needs_docker(what)
    return eng  # type: ignore[return-value]


# -- containers ---------------------------------------------------------------------------------
def run(image: Any, command: "str | list[str] | None" = None, *, env: "dict | list | None" = None,
        ports: Any = None, volumes: Any = None, network: str | None = None, detach: bool = False,
        remove: bool = True, engine: "str | Engine | None" = None, stream: bool = True,
        user: str | None = None, workdir: str | None = None,
        entrypoint: "str | list[str] | None" = None, name: str | None = None,
        pull: str = "missing") -> "RunResult | Container":
    """Run a container with the Docker engine.

    `image`: a reference the engine (or the local store) has, or an Image from any source
    (loaded into the engine first if it lacks it). `command`: a list (exec form) or a string
    (shell form, run as `/bin/sh -c STRING` like a Dockerfile's RUN/CMD); None = the image's CMD.

    Foreground (default): the output streams into the cell as it is written and the exit code
    is returned as a RunResult (an int; `.output` holds the end of the output); a non-zero exit
    is returned, not raised. Interrupting the kernel stops the container.
    `detach=True` returns a Container handle (logs(), stop(), remove(), wait(), status).

    Network: containers never use a bridge. The default is network='none' (no network at
    all), or 'host' when `ports` are given: the service then listens on the host's own port,
    so `ports=8080` means "the container serves on 8080, reach it at 127.0.0.1:8080"
    (mappings like {80: 8080} are refused; a port already in use is reported before starting).

    `remove=True`: a foreground container is removed when it exits; a detached one keeps its
    logs after it exits and is removed by stop(). `pull`: 'missing' (pull when neither the
    engine nor the store has it), 'never' or 'always'.
    """
    eng = _docker(engine, "running a container")
    return eng.run(image, command, env=env, ports=ports, volumes=volumes, network=network,
                   detach=detach, remove=remove, stream=stream, user=user, workdir=workdir,
                   entrypoint=entrypoint, name=name, pull=pull)


def container(name: Any, *, engine: "str | Engine | None" = None) -> "Container":
    """The handle of a container by name or ID (for logs(), stop(), wait())."""
    return _docker(engine, "managing containers").container(name)


def ps(all: bool = False, *, engine: "str | Engine | None" = None) -> "pd.DataFrame":
    """The containers started from nbimages (running ones; all=True also the stopped ones)."""
    import pandas as pd
    rows = []
    for c in _docker(engine, "listing containers").containers(all=all):
        state = c.attrs.get("State") or {}
        session = c.labels.get(LABEL_SESSION, "")
        rows.append({
            "name": c.name, "id": c.short_id, "image": c.image,
            "command": c.labels.get(LABEL_COMMAND) or " ".join(
                (c.attrs.get("Config") or {}).get("Cmd") or []),
            "status": state.get("Status"),
            "exit_code": state.get("ExitCode") if state.get("Status") == "exited" else None,
            "ports": ",".join(c.ports),
            "created": pd.to_datetime(c.attrs.get("Created"), utc=True),
            "this_kernel": session == SESSION,
        })
    columns = ["name", "id", "image", "command", "status", "exit_code", "ports", "created",
               "this_kernel"]
    return pd.DataFrame(rows, columns=columns)


def stop(container: Any = None, *, all: bool = False, timeout: int = 5,
         engine: "str | Engine | None" = None) -> list[str]:
    """Stop a container by name/ID/handle (or every nbimages container with all=True);
    those started with remove=True are removed too. Returns the names stopped."""
    eng = _docker(engine, "stopping a container")
    if all:
        targets = eng.containers(all=False)
    elif container is None:
        raise ContainerError("say which container to stop (a name from nbimages.engines.ps()), or "
                             "pass all=True.")
    else:
        targets = [eng.container(container)]
    for c in targets:
        c.stop(timeout=timeout)
    return [c.name for c in targets]


def logs(container: Any, *, tail: int | None = None, follow: bool = False,
         engine: "str | Engine | None" = None) -> Logs:
    """What a container wrote (stdout and stderr); follow=True streams it into the cell."""
    return _docker(engine, "reading container logs").container(container).logs(
        tail=tail, follow=follow)


# -- images -------------------------------------------------------------------------------------
def images(*, engine: "str | Engine | None" = None, store: bool = True) -> "pd.DataFrame":
    """The engine's images and the local store's images as one DataFrame.

    Columns: repository, tag, digest, id, size, created, where ('engine' or 'store').
    `size` is what each place holds: unpacked bytes in the engine, compressed blobs in the
    store.
    """
    import pandas as pd
    eng = _select(engine)
    rows: list[ImageRow] = []
    if eng.name == "docker":
        rows += eng.images()
    if store or eng.name != "docker":
        rows += EmbeddedEngine("the local store").images()
    df = pd.DataFrame([r.__dict__ for r in rows],
                      columns=["repository", "tag", "digest", "id", "size", "created", "where"])
    df["created"] = pd.to_datetime(df["created"], utc=True)
    df["size"] = df["size"].astype("Int64")
    return df.sort_values(["where", "repository", "tag"], kind="stable").reset_index(drop=True)


def _places(where: str | None, engine_: "str | Engine | None") -> list[Engine]:
    """The engines a verb acts on: where='engine', 'store', or None (the engine in use)."""
    if where not in (None, "engine", "store"):
        raise NbimagesError(f"where={where!r}: use 'engine' (the Docker engine) or 'store' "
                            "(the local store).")
    if where == "store":
        return [EmbeddedEngine("the local store")]
    eng = _select(engine_)
    if where == "engine" and eng.name != "docker":
        raise eng._needs_docker("acting on the engine's images")
    return [eng]


def rm(ref: str, *, force: bool = False, where: str | None = None,
       engine: "str | Engine | None" = None) -> list[str]:
    """Remove an image name: from the Docker engine and/or the local store.

    where=None removes it wherever it is (engine and store); 'engine' or 'store' limits that.
    Returns the places it was removed from.
    """
    if where is None:
        eng = _select(engine)
        places = [eng] + ([EmbeddedEngine("the local store")] if eng.name == "docker" else [])
    else:
        places = _places(where, engine)
    removed = []
    for place in places:
        try:
            place.remove(ref, force=force)
            removed.append("store" if place.name == "embedded" else "engine")
        except ImageNotFound:
            continue
    if not removed:
        raise ImageNotFound(f"no image {ref!r} in the {' or '.join(p.name if p.name == 'docker' else 'store' for p in places)}; "
                            "nbimages.images() lists the images and where they are.")
    return removed


def tag(source: str, target: str, *, where: str | None = None,
        engine: "str | Engine | None" = None) -> None:
    """Give an image another name (in the engine in use, or where='store'/'engine')."""
    _places(where, engine)[0].tag(source, target)


def save(ref: str, path: "str | os.PathLike", *, where: str | None = None,
         engine: "str | Engine | None" = None) -> Path:
    """Write a `docker load`-able tar of an image held by the engine (or where='store')."""
    return Path(_places(where, engine)[0].save(ref, path))


def load(path: "str | os.PathLike", *, where: str | None = None,
         engine: "str | Engine | None" = None) -> list[str]:
    """Load a `docker save` tar into the engine in use (or where='store'); the names loaded."""
    return _places(where, engine)[0].load(path)


def pull(ref: str, *, engine: "str | Engine | None" = None, **kw: Any) -> Any:
    """Pull with the engine in use: the Docker engine (per-layer progress from its stream)
    returns an EngineImage; the embedded engine pulls into the store and returns an Image."""
    return _select(engine).pull(ref, **kw)


def push(ref: str, *, engine: "str | Engine | None" = None, **kw: Any) -> Any:
    """Push an image named `ref` with the engine in use; returns the pushed manifest digest."""
    return _select(engine).push(ref, **kw)


def build(source: Any, tag: str | None = None, *, context: "str | os.PathLike | None" = None,
          engine: "str | Engine | None" = None, network: str | None = None,
          stream: bool = True, **kw: Any) -> Any:
    """Build a Recipe, or Dockerfile text, with the engine in use.

    With the Docker engine every step is one Dockerfile instruction (so one layer for
    file/copy/pip/remove/run steps), the log streams into the cell, and a failing step raises
    BuildError with its command, exit code and last lines of output. Dockerfile text builds
    with network 'none' unless network='host' is given (for apt/pip).
    """
    eng = _select(engine)
    if isinstance(source, (str, bytes, os.PathLike)):
        text, ctx = _dockerfile_source(source, context)
        return eng.build_dockerfile(text, ctx, tag, network=network or "none", stream=stream, **kw)
    return eng.build(source, tag, network=network, stream=stream, **kw)


def _dockerfile_source(source: Any, context: Any) -> tuple[str, Any]:
    """Dockerfile text, or the path of a Dockerfile (its directory is then the default context)."""
    if isinstance(source, bytes):
        source = source.decode()
    if isinstance(source, os.PathLike) or ("\n" not in str(source) and Path(str(source)).is_file()):
        path = Path(source)
        return path.read_text(), context if context is not None else path.parent
    return str(source), context

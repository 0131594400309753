"""The `%image` subcommands: one small function each, a thin wrapper over the public API.

Each function gets an Invocation (parsed options, cell body, shell) and returns a normal
object (a DataFrame, an Inspection, an Image) that becomes the value of the cell, so
`df = %image layers SOURCE` is the same as `nbimages.inspect(SOURCE).layers`.
A subcommand whose API is not in this installation yet is listed as "not available yet".
"""

from __future__ import annotations

from typing import Any

import nbimages

from .parsing import CELL_ARGS, CELL_TEXT, CommandTable, Invocation, arg

GROUPS = [
    ("look", "Look inside an image"),
    ("build", "Build an image from cells (no Docker needed)"),
    ("registry", "Move images: registries, tars, layouts"),
    ("engine", "Run with the Docker engine"),
    ("notebook", "Notebook tools"),
]

TABLE = CommandTable(GROUPS)
command = TABLE.add

SOURCE = arg("source", metavar="SOURCE", help="the image: transport:reference, a store name, or a variable holding an Image")
PLATFORM = arg("--platform", metavar="OS/ARCH[/VARIANT]", default=None,
               help="which image of a multi-platform index (default: this machine's)")


def _image_or_source(inv: Invocation, source: str) -> Any:
    """An Image/Inspection held in a notebook variable of that name, else the source string."""
    value = inv.user_ns.get(source) if source.isidentifier() else None
    if value is not None and isinstance(value, _image_types()):
        return value
    return source


def _image_types() -> tuple[type, ...]:
    types: list[type] = [nbimages.Image]
    try:
        types.append(nbimages.Inspection)
    except (AttributeError, ImportError):
        pass
    return tuple(types)


def _inspect(inv: Invocation, source: str | None = None) -> Any:
    """nbimages.inspect on SOURCE (reusing an Inspection held in a variable)."""
    obj = _image_or_source(inv, source if source is not None else inv.args.source)
    if not isinstance(obj, str) and not isinstance(obj, nbimages.Image):
        return obj  # an Inspection already
    kw = {"platform": inv.args.platform} if getattr(inv.args, "platform", None) else {}
    return nbimages.inspect(obj, **kw)


# -- look ---------------------------------------------------------------------------------------

@command("inspect", "the Inspection object: summary and layer table", SOURCE, PLATFORM,
         group="look", needs=("inspect",))
def inspect_(inv: Invocation) -> Any:
    """The Inspection object of an image (shown as a summary and the layer table).

    Same as nbimages.inspect(SOURCE); keep it in a variable to ask further questions:
    `insp = %image inspect SOURCE`, then `insp.files()`, `insp.sizes()`, `insp.waste`.
    """
    return _inspect(inv)


@command("layers", "one row per layer: sizes, command, files changed, waste",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def layers(inv: Invocation) -> Any:
    """The layer table of an image, as a pandas DataFrame (nbimages.inspect(SOURCE).layers)."""
    return _inspect(inv).layers


@command("history", "history entries, also those with no layer (ENV, CMD)",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def history(inv: Invocation) -> Any:
    """The history entries of an image (nbimages.inspect(SOURCE).history)."""
    return _inspect(inv).history


@command("files", "every entry of every layer, added/modified/deleted",
         SOURCE, PLATFORM,
         arg("--layer", type=int, default=None, metavar="N", help="only layer N (0 is the base)"),
         group="look", needs=("inspect",))
def files(inv: Invocation) -> Any:
    """The file table of an image, whiteouts resolved (nbimages.inspect(SOURCE).files(layer=N))."""
    return _inspect(inv).files(layer=inv.args.layer)


@command("sizes", "size of the final filesystem by directory",
         SOURCE, PLATFORM,
         arg("--depth", type=int, default=2, metavar="N", help="directory depth to group by (default 2)"),
         group="look", needs=("inspect",))
def sizes(inv: Invocation) -> Any:
    """The size breakdown of the final filesystem (nbimages.inspect(SOURCE).sizes(depth=N))."""
    return _inspect(inv).sizes(depth=inv.args.depth)


@command("waste", "wasted space: paths written twice or removed later",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def waste(inv: Invocation) -> Any:
    """Wasted space as dive counts it, per path (nbimages.inspect(SOURCE).waste)."""
    return _inspect(inv).waste


@command("diff", "what changed between two images, path by path",
         arg("a", metavar="A", help="the old image"), arg("b", metavar="B", help="the new image"),
         PLATFORM, group="look", needs=("inspect",))
def diff(inv: Invocation) -> Any:
    """The paths added, modified and deleted from image A to image B (inspect(A).diff(B))."""
    return _inspect(inv, inv.args.a).diff(_inspect(inv, inv.args.b))


@command("packages", "installed packages (pip, dpkg, apk): size and layer",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def packages(inv: Invocation) -> Any:
    """Installed packages with their size and layer (nbimages.inspect(SOURCE).packages())."""
    return _inspect(inv).packages()


# -- build (wired when nbimages/build/session.py lands) -------------------------------------------

for _name, _summary in [
    ("from", "start a recipe on a base image (or scratch)"),
    ("file", "the cell text becomes a file in a layer"),
    ("pip", "a layer of Python packages for the image's Python"),
    ("env", "set environment variables K=V"),
    ("workdir", "set the working directory"),
    ("user", "set the user"),
    ("cmd", "set the default command"),
    ("entrypoint", "set the entrypoint"),
    ("label", "add labels K=V"),
    ("expose", "declare ports"),
    ("remove", "remove a path (a whiteout layer)"),
    ("copy", "copy local files into a layer"),
    ("dockerfile", "build the Dockerfile in the cell"),
    ("build", "build this notebook's recipe"),
    ("recipe", "show the recipe's steps and its Dockerfile"),
]:
    TABLE.planned(_name, _summary, group="build", needs=("Recipe",))

# -- registries ----------------------------------------------------------------------------------

INSECURE = arg("--insecure", action="store_true", default=None,
               help="plain http / unverified TLS (loopback registries are plain http already)")
QUIET = arg("--quiet", "-q", action="store_true", help="no progress bars")


def _registry_kw(inv: Invocation) -> dict[str, Any]:
    return {"insecure": True} if getattr(inv.args, "insecure", None) else {}


@command("pull", "pull into the local store, with progress",
         arg("ref", metavar="REF", help="an image reference, e.g. python:3.12-slim or 127.0.0.1:5000/app:1"),
         PLATFORM, INSECURE, QUIET, group="registry", needs=("pull",))
def pull(inv: Invocation) -> Any:
    """Pull an image from its registry into the local store and return it (nbimages.pull).

    A progress bar per layer plus a total; layers already in the store are not fetched again.
    """
    a = inv.args
    return nbimages.pull(a.ref, a.platform, progress=not a.quiet, **_registry_kw(inv))


@command("push", "push to a registry, digests kept",
         arg("src", metavar="SRC", help="the image: a source string or a variable holding an Image"),
         arg("ref", metavar="REF", help="where to push, e.g. 127.0.0.1:5000/team/app:1"),
         INSECURE, QUIET, group="registry", needs=("push",))
def push(inv: Invocation) -> Any:
    """Push an image to a registry as its exact bytes, so its digest is kept (nbimages.push).

    Returns the manifest digest; blobs the registry already has are skipped or mounted.
    """
    a = inv.args
    return nbimages.push(_image_or_source(inv, a.src), a.ref, progress=not a.quiet, **_registry_kw(inv))


@command("copy-image", "copy an image between any two transports",
         arg("src", metavar="SRC", help="docker://REF, store:NAME, docker-archive:FILE, oci:DIR, "
                                       "oci-archive:FILE, docker-daemon:REF or an Image variable"),
         arg("dest", metavar="DEST", help="docker://REF, store:NAME, docker-archive:FILE[:TAG], "
                                         "oci-archive:FILE[:TAG], oci:DIR[:TAG] or docker-daemon:NAME"),
         PLATFORM, INSECURE, QUIET, group="registry", needs=("copy",))
def copy_image(inv: Invocation) -> Any:
    """Copy an image between transports, like `skopeo copy` (nbimages.copy).

    Named copy-image because `copy` is the build step that copies local files into a layer.
    Returns the manifest digest at the destination.
    """
    a = inv.args
    return nbimages.copy(_image_or_source(inv, a.src), a.dest, platform=a.platform,
                         progress=not a.quiet, **_registry_kw(inv))


@command("search", "search Docker Hub",
         arg("term", metavar="TERM", help="what to look for"),
         arg("--limit", type=int, default=25, metavar="N", help="at most N results (25)"),
         group="registry", needs=("search",))
def search(inv: Invocation) -> Any:
    """Docker Hub repositories matching TERM, with stars, pulls and trust badges (nbimages.search)."""
    return nbimages.search(inv.args.term, limit=inv.args.limit)


@command("tags", "the tags of a repository",
         arg("ref", metavar="REF", help="a repository, e.g. 127.0.0.1:5000/team/app"),
         arg("--details", action="store_true", help="also the digest, size and platforms of each tag"),
         INSECURE, group="registry", needs=("tags",))
def tags(inv: Invocation) -> Any:
    """The tags of a repository as a DataFrame (nbimages.tags)."""
    return nbimages.tags(inv.args.ref, details=inv.args.details, **_registry_kw(inv))


@command("catalog", "the repositories of a private registry",
         arg("registry", metavar="HOST[:PORT]", help="the registry, e.g. 127.0.0.1:5000"),
         INSECURE, group="registry", needs=("tags",))
def catalog(inv: Invocation) -> Any:
    """The repositories a registry lists in its catalog (nbimages.registry.catalog)."""
    from nbimages.registry import catalog as registry_catalog
    return registry_catalog(inv.args.registry, **_registry_kw(inv))


@command("save", "write a docker-archive or OCI tar (or an OCI layout)",
         SOURCE, arg("path", metavar="PATH", help="the tar file (or directory for --format oci-dir)"),
         arg("--format", choices=["docker", "oci", "oci-dir"], default="docker",
             help="docker: for `docker load` (default); oci: an OCI tar; oci-dir: an OCI layout"),
         arg("--tag", metavar="NAME", help="the name inside (default: the image's own tagged name)"),
         PLATFORM, group="registry", needs=("save", "open_image"))
def save(inv: Invocation) -> Any:
    """Write an image as a handout file and return its path (nbimages.save).

    `--format docker` loads with `docker load`; `oci` and `oci-dir` suit any OCI tool.
    """
    a = inv.args
    image = _image_or_source(inv, a.source)
    if a.platform or isinstance(image, str):
        image = nbimages.open_image(image, platform=a.platform)
    return nbimages.save(image, a.path, format=a.format, tag=a.tag)


# -- engine --------------------------------------------------------------------------------------

for _name, _summary, _needs in [
    ("run", "run a container, output streamed into the cell", "run"),
    ("ps", "running containers", "engine"),
    ("stop", "stop a container", "engine"),
    ("logs", "a container's output", "engine"),
    ("images", "images in the local store and the engine", "images"),
    ("rm", "remove an image", "images"),
    ("tag", "give an image another name", "images"),
    ("load", "load a tar into the local store", "open_image"),
]:
    TABLE.planned(_name, _summary, group="engine", needs=(_needs,))

# -- notebook ------------------------------------------------------------------------------------

TABLE.planned("explore", "widget: layers, files, sizes chart, waste", group="notebook",
              needs=("explore",))
TABLE.planned("freeze", "pin a recipe's inputs for a reproducible handout", group="notebook",
              needs=("freeze",))
TABLE.planned("verify", "rebuild a handout and check its digest", group="notebook", needs=("freeze",))

__all__ = ["TABLE", "GROUPS", "CELL_ARGS", "CELL_TEXT"]

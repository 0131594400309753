"""The `%image` subcommands: one small function each, a thin wrapper over the public API.

Each function gets an Invocation (parsed options, cell body, shell) and returns a normal
object (a DataFrame, an Inspection, an Image) that becomes the value of the cell, so
`df = %image layers SOURCE` is the same as `nbimages.inspect(SOURCE).layers`.
A subcommand whose API is not in this installation yet is listed as "not available yet".
"""

from __future__ import annotations

from typing import Any

import nbimages

from .parsing import CELL_ARGS, CELL_OPTIONAL, CELL_TEXT, CommandTable, Invocation, arg

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
ENGINE_ARG = arg("--engine", choices=["embedded", "docker", "auto"], default=None,
                 help="build with the embedded builder (default) or the Docker engine (for RUN)")
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
         arg("--final", action="store_true", help="the final filesystem instead: one row per path"),
         group="look", needs=("inspect",))
def files(inv: Invocation) -> Any:
    """The file table of an image, whiteouts resolved (nbimages.inspect(SOURCE).files(layer=N)).

    With --final, the merged filesystem: one row per path, from the layer whose copy is kept.
    """
    if inv.args.final:
        return _inspect(inv).files(final=True)
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
         arg("--content", action="store_true",
             help="also compare the bytes of files whose metadata is equal (reads them)"),
         PLATFORM, group="look", needs=("inspect",))
def diff(inv: Invocation) -> Any:
    """The paths added, removed and modified from image A to image B (inspect(A).diff(B))."""
    return _inspect(inv, inv.args.a).diff(_inspect(inv, inv.args.b), content=inv.args.content)


@command("unsafe", "entries that would escape the root ('..', absolute links)",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def unsafe(inv: Invocation) -> Any:
    """Layer entries that would escape the root if extracted naively (reported, never followed)."""
    return _inspect(inv).unsafe


@command("packages", "installed packages (pip, dpkg, apk): size and layer",
         SOURCE, PLATFORM, group="look", needs=("inspect",))
def packages(inv: Invocation) -> Any:
    """Installed packages with their size and layer (nbimages.inspect(SOURCE).packages())."""
    return _inspect(inv).packages()


# -- build: the notebook's recipe (nbimages/build/session.py), one step per cell --------------------

def _session() -> Any:
    from nbimages.build import session
    return session.current()


def _cell(inv: Invocation) -> dict[str, Any]:
    """Which cell a step comes from: re-running that cell replaces its steps."""
    return {"cell_id": inv.cell_id, "execution_count": inv.execution_count}


def _pairs(items: list[str], what: str) -> dict[str, str]:
    """K=V words (from the line or the cell's lines) as a dict; a bare word is a usage error."""
    from IPython.core.error import UsageError
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"%image {what}: {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


def _command_form(inv: Invocation, what: str) -> Any:
    """CMD/ENTRYPOINT as a Dockerfile reads them: a JSON array is the exec form, any other
    text the shell form (run by /bin/sh -c)."""
    import json
    from IPython.core.error import UsageError
    text = inv.raw.strip()
    if not text:
        raise UsageError(f"%image {what}: give the command, e.g. %image {what} [\"python\", \"app.py\"]")
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError as e:
            raise UsageError(f"%image {what}: {text} is not a JSON array of strings ({e})") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"%image {what}: {text} is not a JSON array of strings")
        return value
    return text


def _build_progress(tag: str | None, steps: int) -> Any:
    from nbimages.progress import Progress
    return Progress(f"build {tag or 'image'}", total=steps, unit="step")


def _show_report(image: Any) -> None:
    report = getattr(image, "build_report", None)
    if report is not None:
        from IPython.display import display
        display(report)


@command("from", "start a recipe on a base image (or scratch)",
         arg("base", metavar="REF", help="the base: a reference, any SOURCE, or scratch"),
         PLATFORM, arg("--context", metavar="DIR", default=None,
                       help="directory that copy steps read from (default: the current directory)"),
         arg("--compression", metavar="NAME", default=None, help="layer compression (default: gzip)"),
         group="build", needs=("Recipe",))
def from_(inv: Invocation) -> Any:
    """Start the notebook's recipe on REF (Dockerfile FROM); returns the Recipe.

    Running the same cell again keeps the steps and changes the base; a `from` in another
    cell starts a new recipe.
    """
    a = inv.args
    return _session().start(a.base, context=a.context, platform=a.platform,
                            compression=a.compression, **_cell(inv))


@command("file", "the cell text becomes a file in a layer",
         arg("path", metavar="PATH", help="where the file goes in the image"),
         arg("--mode", default="0644", metavar="MODE", help="permissions, octal (default 0644)"),
         arg("--owner", default=None, metavar="UID[:GID]", help="owner (default 0:0)"),
         group="build", needs=("Recipe",), cell=CELL_TEXT)
def file(inv: Invocation) -> Any:
    """The body of the cell becomes the file PATH, in a layer of its own.

    Re-running the cell with new text rebuilds that layer and the ones after it only.
    """
    a = inv.args
    return _session().add("file", a.path, inv.cell or "", mode=a.mode, owner=a.owner, **_cell(inv))


@command("pip", "a layer of Python packages for the image's Python",
         arg("requirements", nargs="+", metavar="REQUIREMENT", help="e.g. pandas==2.2.3"),
         arg("--index-url", default=None, metavar="URL"),
         arg("--find-links", action="append", default=None, metavar="URL"),
         group="build", needs=("Recipe",), cell=CELL_ARGS,
         epilog="As %%image pip, the cell body is a requirements list (one per line, # comments).")
def pip(inv: Invocation) -> Any:
    """Install wheels built for the image's own Python and platform, in one layer, no container."""
    a = inv.args
    return _session().add("pip", *a.requirements, index_url=a.index_url, find_links=a.find_links,
                          **_cell(inv))


@command("env", "set environment variables K=V",
         arg("pairs", nargs="+", metavar="K=V"), group="build", needs=("Recipe",), cell=CELL_ARGS)
def env(inv: Invocation) -> Any:
    """Environment variables of the image (Dockerfile ENV)."""
    return _session().add("env", _pairs(inv.args.pairs, "env"), **_cell(inv))


@command("label", "add labels K=V",
         arg("pairs", nargs="+", metavar="K=V"), group="build", needs=("Recipe",), cell=CELL_ARGS)
def label(inv: Invocation) -> Any:
    """Labels of the image (Dockerfile LABEL)."""
    return _session().add("label", _pairs(inv.args.pairs, "label"), **_cell(inv))


@command("workdir", "set the working directory", arg("path", metavar="PATH"),
         group="build", needs=("Recipe",))
def workdir(inv: Invocation) -> Any:
    """The working directory of the image (Dockerfile WORKDIR)."""
    return _session().add("workdir", inv.args.path, **_cell(inv))


@command("user", "set the user", arg("user", metavar="USER[:GROUP]"), group="build", needs=("Recipe",))
def user(inv: Invocation) -> Any:
    """The user the image runs as (Dockerfile USER)."""
    return _session().add("user", inv.args.user, **_cell(inv))


@command("cmd", "set the default command", arg("command", nargs="...", metavar="COMMAND"),
         group="build", needs=("Recipe",),
         epilog='As in a Dockerfile: a JSON array is the exec form (%image cmd ["python", "app.py"]), '
                "any other text runs with /bin/sh -c.")
def cmd(inv: Invocation) -> Any:
    """The default command of the image (Dockerfile CMD)."""
    return _session().add("cmd", _command_form(inv, "cmd"), **_cell(inv))


@command("entrypoint", "set the entrypoint", arg("command", nargs="...", metavar="COMMAND"),
         group="build", needs=("Recipe",),
         epilog="As in a Dockerfile: a JSON array is the exec form, any other text runs with /bin/sh -c.")
def entrypoint(inv: Invocation) -> Any:
    """The entrypoint of the image (Dockerfile ENTRYPOINT)."""
    return _session().add("entrypoint", _command_form(inv, "entrypoint"), **_cell(inv))


@command("expose", "declare ports", arg("ports", nargs="+", metavar="PORT[/PROTO]"),
         group="build", needs=("Recipe",))
def expose(inv: Invocation) -> Any:
    """Ports the image serves on (Dockerfile EXPOSE)."""
    return _session().add("expose", *inv.args.ports, **_cell(inv))


@command("remove", "remove paths (a whiteout layer)", arg("paths", nargs="+", metavar="PATH"),
         group="build", needs=("Recipe",))
def remove(inv: Invocation) -> Any:
    """A layer that deletes PATHs (and what is under them) from the image."""
    return _session().add("remove", *inv.args.paths, **_cell(inv))


@command("copy", "copy local files into a layer",
         arg("src", nargs="+", metavar="SRC", help="files or folders of the build context"),
         arg("dest", metavar="DEST", help="where they go in the image"),
         arg("--chown", default=None, metavar="UID[:GID]"),
         arg("--chmod", default=None, metavar="MODE"),
         group="build", needs=("Recipe",))
def copy(inv: Invocation) -> Any:
    """Files of the build context into a layer, like Dockerfile COPY (.dockerignore honoured).

    To copy a whole image between transports use `%image copy-image`.
    """
    a = inv.args
    return _session().add("copy", a.src, a.dest, chown=a.chown, chmod=a.chmod, **_cell(inv))


@command("build", "build this notebook's recipe",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name in the local store"),
         ENGINE_ARG, arg("--compression", default=None, metavar="NAME"),
         group="build", needs=("Recipe",))
def build(inv: Invocation) -> Any:
    """Build the recipe (only the layers whose inputs changed) and return the Image.

    Shows the build report: each step, the cell it came from, its layer, size, cache hit or
    rebuilt, and the time it took.
    """
    a = inv.args
    session = _session()
    kw = {k: v for k, v in (("engine", a.engine), ("compression", a.compression)) if v}
    with _build_progress(a.tag, len(session.recipe.steps)) as p:
        image = session.build(a.tag, progress=lambda row: p.update(1), **kw)
    _show_report(image)
    return image


@command("dockerfile", "build the Dockerfile in the cell",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name in the local store"),
         arg("--context", default=".", metavar="DIR", help="directory COPY reads from (default: .)"),
         arg("--build-arg", action="append", default=[], metavar="K=V", dest="build_args"),
         ENGINE_ARG, group="build", needs=("Recipe",), cell=CELL_TEXT)
def dockerfile(inv: Invocation) -> Any:
    """The cell is a Dockerfile: build it (embedded unless it has RUN lines) and return the Image.

    It becomes the notebook's recipe, so later `%image` steps extend it.
    """
    a = inv.args
    kw = {"engine": a.engine} if a.engine else {}
    image = _session().dockerfile(inv.cell or "", a.tag, context=a.context,
                                  build_args=_pairs(a.build_args, "dockerfile --build-arg") or None,
                                  **_cell(inv), **kw)
    _show_report(image)
    return image


@command("recipe", "show the recipe's steps and its Dockerfile",
         arg("--dockerfile", action="store_true", help="only the equivalent Dockerfile, as text"),
         arg("--reset", action="store_true", help="forget the recipe and start again"),
         group="build", needs=("Recipe",))
def recipe(inv: Invocation) -> Any:
    """The notebook's recipe: its steps (with their cells) and the equivalent Dockerfile."""
    if inv.args.reset:
        _session().reset()
        return None
    r = _session().recipe
    if inv.args.dockerfile:
        print(r.to_dockerfile())
        return None
    return r


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

ENGINE = arg("--engine", choices=["auto", "docker", "embedded"], default=None,
             help="which engine (default: auto, the Docker engine when one answers)")
WHERE = arg("--where", choices=["engine", "store"], default=None,
            help="the Docker engine or the local store (default: the engine in use)")


def _engines() -> Any:
    import nbimages.engines as engines
    return engines


def _env_list(items: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            from IPython.core.error import UsageError
            raise UsageError(f"%image run: -e {item!r} is not KEY=VALUE")
        env[key] = value
    return env


@command("run", "run a container, output streamed into the cell",
         arg("-e", "--env", action="append", default=[], metavar="K=V", help="an environment variable"),
         arg("-p", "--port", action="append", default=[], metavar="PORT",
             help="a port the container serves on (reach it at 127.0.0.1:PORT)"),
         arg("-v", "--volume", action="append", default=[], metavar="HOST:PATH[:ro]", help="a bind mount"),
         arg("--network", choices=["none", "host"], default=None,
             help="none (default), or host (default when ports are given)"),
         arg("-d", "--detach", action="store_true", help="start it in the background; returns a handle"),
         arg("--keep", action="store_true", help="do not remove the container when it exits"),
         arg("--name", default=None), arg("--user", default=None), arg("--workdir", default=None),
         arg("--entrypoint", default=None),
         arg("--pull", choices=["missing", "never", "always"], default="missing"),
         ENGINE,
         arg("image", metavar="IMAGE", help="a reference, a store name or a variable holding an Image"),
         arg("command", nargs="...", metavar="COMMAND",
             help="the command (default: the image's CMD); one quoted word runs in /bin/sh -c"),
         group="engine", needs=("run",), cell=CELL_OPTIONAL,
         epilog="Options go before IMAGE; everything after IMAGE is the command. With %%image run "
                "IMAGE, the cell body is a shell script run with /bin/sh -c.")
def run(inv: Invocation) -> Any:
    """Run a container of IMAGE with the Docker engine; its output streams into the cell.

    Returns the exit code (an int with `.output`), or a container handle with --detach.
    """
    from IPython.core.error import UsageError
    a = inv.args
    command: Any = list(a.command) or None
    if inv.cell is not None and inv.cell.strip():
        if command:
            raise UsageError("%%image run: give the command either after IMAGE or in the cell body, not both")
        command = inv.cell
    elif command and len(command) == 1 and any(c.isspace() for c in command[0]):
        command = command[0]  # one quoted word: the shell form
    return nbimages.run(_image_or_source(inv, a.image), command, env=_env_list(a.env) or None,
                        ports=a.port or None, volumes=a.volume or None, network=a.network,
                        detach=a.detach, remove=not a.keep, name=a.name, user=a.user,
                        workdir=a.workdir, entrypoint=a.entrypoint, pull=a.pull, engine=a.engine)


@command("ps", "containers started from nbimages", arg("-a", "--all", action="store_true",
         help="also the stopped ones"), ENGINE, group="engine", needs=("engine",))
def ps(inv: Invocation) -> Any:
    """The containers nbimages started, as a DataFrame (nbimages.engines.ps)."""
    return _engines().ps(all=inv.args.all, engine=inv.args.engine)


@command("stop", "stop a container (and remove it unless kept)",
         arg("names", nargs="*", metavar="NAME", help="container names or IDs"),
         arg("--all", action="store_true", help="every container nbimages started"),
         ENGINE, group="engine", needs=("engine",))
def stop(inv: Invocation) -> Any:
    """Stop containers by name (or --all); returns the names stopped (nbimages.engines.stop)."""
    a = inv.args
    if a.all:
        return _engines().stop(all=True, engine=a.engine)
    if not a.names:
        from IPython.core.error import UsageError
        raise UsageError("%image stop: name the containers to stop (see %image ps), or give --all")
    stopped: list[str] = []
    for name in a.names:
        stopped += _engines().stop(name, engine=a.engine)
    return stopped


@command("logs", "what a container wrote",
         arg("name", metavar="NAME", help="a container name or ID"),
         arg("--tail", type=int, default=None, metavar="N", help="only the last N lines"),
         arg("-f", "--follow", action="store_true", help="stream it into the cell until it exits"),
         ENGINE, group="engine", needs=("engine",))
def logs(inv: Invocation) -> Any:
    """A container's stdout and stderr (nbimages.engines.logs)."""
    a = inv.args
    return _engines().logs(a.name, tail=a.tail, follow=a.follow, engine=a.engine)


@command("images", "images in the local store and the engine",
         arg("--no-store", action="store_true", help="only the engine's images"),
         ENGINE, group="engine", needs=("images",))
def images(inv: Invocation) -> Any:
    """The engine's and the local store's images as one DataFrame (nbimages.images)."""
    return nbimages.images(engine=inv.args.engine, store=not inv.args.no_store)


@command("rm", "remove an image name", arg("ref", metavar="REF"),
         arg("-f", "--force", action="store_true"), WHERE, ENGINE, group="engine", needs=("engine",))
def rm(inv: Invocation) -> Any:
    """Remove an image name from the engine and/or the store (nbimages.engines.rm)."""
    a = inv.args
    return _engines().rm(a.ref, force=a.force, where=a.where, engine=a.engine)


@command("tag", "give an image another name", arg("source", metavar="SOURCE"),
         arg("target", metavar="TARGET"), WHERE, ENGINE, group="engine", needs=("engine",))
def tag(inv: Invocation) -> Any:
    """Name an image TARGET too, in the engine or the store (nbimages.engines.tag)."""
    a = inv.args
    return _engines().tag(a.source, a.target, where=a.where, engine=a.engine)


@command("load", "load a docker-save tar into the engine or the store",
         arg("path", metavar="PATH"), WHERE, ENGINE, group="engine", needs=("engine",))
def load(inv: Invocation) -> Any:
    """Load a `docker save` tar; returns the names loaded (nbimages.engines.load)."""
    a = inv.args
    return _engines().load(a.path, where=a.where, engine=a.engine)


# -- notebook ------------------------------------------------------------------------------------

@command("explore", "widget: layers, files, sizes chart, waste",
         SOURCE, arg("--diff", metavar="OTHER", default=None, help="compare with a second image"),
         PLATFORM, group="notebook", needs=("explore",))
def explore(inv: Invocation) -> Any:
    """The explorer: click a layer to see its files, sizes as charts, wasted space, a diff.

    Static HTML where widgets cannot run (nbconvert, GitHub's viewer); text in a terminal.
    """
    a = inv.args
    other = _image_or_source(inv, a.diff) if a.diff else None
    return nbimages.explore(_image_or_source(inv, a.source), other, platform=a.platform)


@command("freeze", "a recipe from this kernel: its Python, exact package pins, the notebook",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name `%%image build` gives it"),
         arg("--imported", action="store_true", help="only the packages the notebook imported"),
         arg("--base", default=None, metavar="REF", help="the base (default: python:X.Y-slim)"),
         arg("--notebook", default=None, metavar="FILE.ipynb",
             help="the notebook to put in (default: this one, when Jupyter tells the kernel)"),
         arg("--data", action="append", default=[], metavar="PATH", help="a data file or folder"),
         arg("--script", default=None, metavar="FILE.py", help="run it instead of opening the notebook"),
         arg("--index-url", default=None, metavar="URL", help="where the pip step finds wheels"),
         group="notebook", needs=("freeze",))
def freeze(inv: Invocation) -> Any:
    """Freeze the kernel into the notebook's recipe, shown (steps, Dockerfile) before building.

    Packages installed from local paths or editable are listed as not pinned, with the reason.
    `%image build` then builds it (nbimages.freeze).
    """
    from nbimages.build.freeze import use_in_session
    a = inv.args
    frozen = nbimages.freeze(a.tag, base=a.base, imported=a.imported, notebook=a.notebook,
                             data=a.data, command=a.script, index_url=a.index_url)
    return use_in_session(frozen, line=inv.raw, **_cell(inv))


@command("verify", "rebuild in a clean store and check the digest",
         arg("notebook", nargs="?", default=None, metavar="NOTEBOOK.ipynb",
             help="a notebook file (default: this notebook's recipe)"),
         arg("--digest", default=None, metavar="sha256:…",
             help="manifest digest or image ID (default: the last build's)"),
         arg("--expected", default=None, metavar="SOURCE",
             help="the expected image, to name the files that differ"),
         arg("--execute", action="store_true",
             help="then run the notebook in the verified image and compare its outputs"),
         group="notebook", needs=("freeze",))
def verify(inv: Invocation) -> Any:
    """Rebuild in a clean store: does the digest match? If not, which layer and files differ.

    With --execute (a notebook file), the verification is shown and the output check of the
    notebook run inside the verified image is returned (nbimages.verify_outputs).
    """
    from nbimages.build.verify import verify as verify_
    a = inv.args
    if not a.execute:
        return verify_(a.notebook, a.digest, expected=a.expected)
    if not a.notebook:
        from IPython.core.error import UsageError
        raise UsageError("%image verify --execute: name the notebook file (NOTEBOOK.ipynb)")
    from IPython.display import display
    verification, result = nbimages.verify_outputs(a.notebook, a.digest, expected=a.expected)
    if result is None:
        return verification
    display(verification)
    return result

@command("kernel", "a Jupyter kernel that runs inside an image (in JupyterLab's launcher)",
         arg("image", metavar="TAG", help="the image: a store or engine name, a reference, or a "
                                          "variable holding an Image"),
         arg("--name", default=None, help="the kernelspec name (default: nbimages-<image name>)"),
         arg("--display-name", default=None, metavar="TEXT", help="what JupyterLab shows"),
         arg("--sys-prefix", action="store_true",
             help="install into this Python environment instead of the user's Jupyter folder"),
         arg("--no-check", action="store_true",
             help="write the kernelspec without asking the engine (nothing checked or pinned)"),
         group="notebook", needs=("kernel",))
def kernel(inv: Invocation) -> Any:
    """Register a kernel that runs ipykernel inside the image on the Docker engine.

    The image needs Python and ipykernel (`%image pip ipykernel`); reload JupyterLab's launcher
    to see it (nbimages.kernel.install).
    """
    a = inv.args
    return nbimages.kernel.install(_image_or_source(inv, a.image), a.name,
                                   display_name=a.display_name, sys_prefix=a.sys_prefix,
                                   check=not a.no_check)


@command("execute", "run a notebook inside an image and compare its outputs with the saved ones",
         arg("notebook", metavar="NOTEBOOK.ipynb"),
         arg("--image", default=None, metavar="REF",
             help="the image (needs ipykernel; default: the build recorded in the notebook)"),
         arg("-o", "--output", default=None, metavar="OUT.ipynb", help="write the executed copy"),
         arg("--timeout", type=float, default=600, metavar="S", help="seconds per cell (600)"),
         arg("--ignore-cell", action="append", default=[], metavar="N", dest="ignore_cells",
             help="run cell N (from 1; or a cell id) without comparing it"),
         group="notebook", needs=("execute",))
def execute(inv: Invocation) -> Any:
    """Run the notebook's cells in a kernel inside the image (its %image cells skipped) and
    compare every cell's outputs with the saved ones (nbimages.execute)."""
    a = inv.args
    image = _image_or_source(inv, a.image) if a.image else None
    return nbimages.execute(a.notebook, image, output=a.output, timeout=a.timeout,
                            ignore_cells=a.ignore_cells)

__all__ = ["TABLE", "GROUPS", "CELL_ARGS", "CELL_TEXT"]

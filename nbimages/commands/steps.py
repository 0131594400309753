"""The build subcommands of `%image` (from, file, pip, env, ..., build, dockerfile, recipe).

They describe the notebook's recipe (nbimages/workflow/session.py), one step per cell. They
form a table of their own because the notebook replay (workflow/notebook_recipe.py) applies
exactly these to a fresh session; commands/verbs.py puts them in the full %image table.
"""

from __future__ import annotations

import json
from typing import Any

from ..progress import Progress
from ..workflow import session
from .parsing import (BUILD_ARG, BUILD_ENGINE as ENGINE_ARG, BUILD_PLATFORM, CELL_ARGS, CELL_TEXT,
                      COMPRESSION, CommandTable, Invocation, UsageError, arg, pairs)

STEPS = CommandTable([("build", "Build an image from cells (no Docker needed)")])
command = STEPS.add



# -- build: the notebook's recipe (nbimages/workflow/session.py), one step per cell --------------------

def _session() -> Any:
    return session.current()


def cell_of(inv: Invocation) -> dict[str, Any]:
    """Which cell a step comes from: re-running that cell replaces its steps."""
    return {"cell_id": inv.cell_id, "execution_count": inv.execution_count}


def _command_form(inv: Invocation, what: str) -> Any:
    """CMD/ENTRYPOINT as a Dockerfile reads them: a JSON array is the exec form, any other
    text the shell form (run by /bin/sh -c)."""
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


def _add_step(inv: Invocation, kind: str, *args: Any, **kwargs: Any) -> None:
    """Add the cell's step to the notebook's recipe. It returns nothing, so a step cell shows
    no `<Step …>` echo; `%image recipe` lists the steps with their cells."""
    _session().add(kind, *args, **kwargs, **cell_of(inv))


def _build_progress(tag: str | None, steps: int) -> Any:
    return Progress(f"build {tag or 'image'}", total=steps, unit="step")


def _show_report(inv: Invocation, image: Any) -> None:
    report = image.build_report
    if report is not None:
        inv.show(report)


@command("from", "start a recipe on a base image (or scratch)",
         arg("base", metavar="REF", help="the base: a reference, any SOURCE, or scratch"),
         BUILD_PLATFORM, arg("--context", metavar="DIR", default=None,
                       help="directory that copy steps read from (default: the current directory)"),
         COMPRESSION,
         group="build")
def from_(inv: Invocation) -> Any:
    """Start the notebook's recipe on REF (Dockerfile FROM); returns the Recipe.

    Running the same cell again keeps the steps and changes the base; a `from` in another
    cell starts a new recipe.
    """
    a = inv.args
    return _session().start(a.base, context=a.context, platform=a.platform,
                            compression=a.compression, **cell_of(inv))


@command("file", "the cell text becomes a file in a layer",
         arg("path", metavar="PATH", help="where the file goes in the image"),
         arg("--mode", default="0644", metavar="MODE", help="permissions, octal (default 0644)"),
         arg("--owner", default=None, metavar="UID[:GID]", help="owner (default 0:0)"),
         group="build", cell=CELL_TEXT)
def file(inv: Invocation) -> Any:
    """The body of the cell becomes the file PATH, in a layer of its own.

    Re-running the cell with new text rebuilds that layer and the ones after it only.
    """
    a = inv.args
    _add_step(inv, "file", a.path, inv.cell or "", mode=a.mode, owner=a.owner)


@command("pip", "a layer of Python packages for the image's Python",
         arg("requirements", nargs="+", metavar="REQUIREMENT", help="e.g. pandas==2.2.3"),
         arg("--index-url", default=None, metavar="URL"),
         arg("--find-links", action="append", default=None, metavar="URL"),
         group="build", cell=CELL_ARGS,
         epilog="As %%image pip, the cell body is a requirements list (one per line, # comments).")
def pip(inv: Invocation) -> Any:
    """Install wheels built for the image's own Python and platform, in one layer, no container."""
    a = inv.args
    _add_step(inv, "pip", *a.requirements, index_url=a.index_url, find_links=a.find_links)


@command("apt", "a layer of Debian/Ubuntu packages from the base's own suite, no engine",
         arg("packages", nargs="+", metavar="PACKAGE", help="e.g. libgomp1 or graphviz=2.42.2-7"),
         arg("--mirror", default=None, metavar="URL",
             help="archive to use instead of the base's apt sources"),
         arg("--snapshot", default=None, metavar="TIMESTAMP",
             help="the distribution's snapshot archive at this time, e.g. 20250520T000000Z"),
         arg("--suite", default=None, metavar="SUITE", help="suite (default: the base's)"),
         arg("--keyring", action="append", default=None, metavar="FILE",
             help="OpenPGP keyring that signs the archive (default: the base's keyrings)"),
         group="build", cell=CELL_ARGS,
         epilog="As %%image apt, the cell body lists packages (one or more per line, # comments). "
                "Maintainer scripts are not run; the build report lists what was skipped.")
def apt(inv: Invocation) -> Any:
    """Install Debian/Ubuntu packages and their dependencies in one layer, without a container.

    Resolved against the base's dpkg database and suite, verified against the archive's
    signed InRelease, unpacked and recorded so `dpkg -s` and scanners see them; versions and
    sha256 are pinned in the image label org.nbimages.apt.
    """
    a = inv.args
    return _session().add("apt", *a.packages, mirror=a.mirror, snapshot=a.snapshot,
                          suite=a.suite, keyring=a.keyring, **cell_of(inv))


@command("apk", "a layer of Alpine packages from the base's own repositories, no engine",
         arg("packages", nargs="+", metavar="PACKAGE", help="e.g. curl, so:libz.so.1 or curl=8.9.1-r0"),
         arg("--mirror", default=None, metavar="URL",
             help="host the base's repositories from here instead (URL/v3.20/main ...)"),
         arg("--repository", action="append", default=None, metavar="URL",
             help="repository to use instead of the base's /etc/apk/repositories"),
         arg("--key", action="append", default=None, metavar="FILE",
             help="RSA public key that signs an index, trusted besides the base's /etc/apk/keys"),
         group="build", cell=CELL_ARGS,
         epilog="As %%image apk, the cell body lists packages (one or more per line, # comments). "
                "Install scripts are not run; the build report lists what was skipped.")
def apk(inv: Invocation) -> Any:
    """Install Alpine packages and their dependencies in one layer, without a container.

    Resolved against the base's apk database and repositories, verified against each
    repository's signed APKINDEX, unpacked and recorded in /lib/apk/db/installed so `apk info`
    and scanners see them; versions and checksums are pinned in the image label
    org.nbimages.apk.
    """
    a = inv.args
    return _session().add("apk", *a.packages, mirror=a.mirror, repository=a.repository,
                          key=a.key, **cell_of(inv))


@command("env", "set environment variables K=V",
         arg("pairs", nargs="+", metavar="K=V"), group="build", cell=CELL_ARGS)
def env(inv: Invocation) -> Any:
    """Environment variables of the image (Dockerfile ENV)."""
    _add_step(inv, "env", pairs(inv.args.pairs, "env"))


@command("label", "add labels K=V",
         arg("pairs", nargs="+", metavar="K=V"), group="build", cell=CELL_ARGS)
def label(inv: Invocation) -> Any:
    """Labels of the image (Dockerfile LABEL)."""
    _add_step(inv, "label", pairs(inv.args.pairs, "label"))


@command("workdir", "set the working directory", arg("path", metavar="PATH"),
         group="build")
def workdir(inv: Invocation) -> Any:
    """The working directory of the image (Dockerfile WORKDIR)."""
    _add_step(inv, "workdir", inv.args.path)


@command("user", "set the user", arg("user", metavar="USER[:GROUP]"), group="build")
def user(inv: Invocation) -> Any:
    """The user the image runs as (Dockerfile USER)."""
    _add_step(inv, "user", inv.args.user)


@command("cmd", "set the default command", arg("command", nargs="...", metavar="COMMAND"),
         group="build",
         epilog='As in a Dockerfile: a JSON array is the exec form (%image cmd ["python", "app.py"]), '
                "any other text runs with /bin/sh -c.")
def cmd(inv: Invocation) -> Any:
    """The default command of the image (Dockerfile CMD)."""
    _add_step(inv, "cmd", _command_form(inv, "cmd"))


@command("entrypoint", "set the entrypoint", arg("command", nargs="...", metavar="COMMAND"),
         group="build",
         epilog="As in a Dockerfile: a JSON array is the exec form, any other text runs with /bin/sh -c.")
def entrypoint(inv: Invocation) -> Any:
    """The entrypoint of the image (Dockerfile ENTRYPOINT)."""
    _add_step(inv, "entrypoint", _command_form(inv, "entrypoint"))


@command("expose", "declare ports", arg("ports", nargs="+", metavar="PORT[/PROTO]"),
         group="build")
def expose(inv: Invocation) -> Any:
    """Ports the image serves on (Dockerfile EXPOSE)."""
    _add_step(inv, "expose", *inv.args.ports)


@command("remove", "remove paths (a whiteout layer)", arg("paths", nargs="+", metavar="PATH"),
         group="build")
def remove(inv: Invocation) -> Any:
    """A layer that deletes PATHs (and what is under them) from the image."""
    _add_step(inv, "remove", *inv.args.paths)


@command("copy", "copy local files into a layer",
         arg("src", nargs="+", metavar="SRC", help="files or folders of the build context"),
         arg("dest", metavar="DEST", help="where they go in the image"),
         arg("--chown", default=None, metavar="UID[:GID]"),
         arg("--chmod", default=None, metavar="MODE"),
         group="build")
def copy(inv: Invocation) -> Any:
    """Files of the build context into a layer, like Dockerfile COPY (.dockerignore honoured).

    To copy a whole image between transports use `%image copy-image`.
    """
    a = inv.args
    _add_step(inv, "copy", a.src, a.dest, chown=a.chown, chmod=a.chmod)


@command("build", "build this notebook's recipe",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name in the local store"),
         ENGINE_ARG, COMPRESSION,
         group="build")
def build(inv: Invocation) -> Any:
    """Build the recipe (only the layers whose inputs changed) and return the Image.

    Shows the build report: each step, the cell it came from, its layer, size, cache hit or
    rebuilt, and the time it took.
    """
    a = inv.args
    session = _session()
    # A deleted cell's step goes: ipykernel names the notebook file the kernel serves.
    for note in session.prune(inv.user_ns.get("__session__") if inv.user_ns else None):
        print(f"nbimages: {note}")
    kw = {k: v for k, v in (("engine", a.engine), ("compression", a.compression)) if v}
    with _build_progress(a.tag, len(session.recipe.steps)) as p:
        image = session.build(a.tag, progress=lambda row: p.update(1), **kw)
    _show_report(inv, image)
    return image


@command("dockerfile", "build the Dockerfile in the cell",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name in the local store"),
         arg("--context", default=".", metavar="DIR", help="directory COPY reads from (default: .)"),
         BUILD_ARG, ENGINE_ARG, group="build", cell=CELL_TEXT)
def dockerfile(inv: Invocation) -> Any:
    """The cell is a Dockerfile: build it (embedded unless it has RUN lines) and return the Image.

    It becomes the notebook's recipe, so later `%image` steps extend it.
    """
    a = inv.args
    kw = {"engine": a.engine} if a.engine else {}
    image = _session().dockerfile(inv.cell or "", a.tag, context=a.context,
                                  build_args=pairs(a.build_args, "dockerfile --build-arg") or None,
                                  **cell_of(inv), **kw)
    _show_report(inv, image)
    return image


@command("recipe", "show the recipe's steps and its Dockerfile",
         arg("--dockerfile", action="store_true", help="only the equivalent Dockerfile, as text"),
         arg("--reset", action="store_true", help="forget the recipe and start again"),
         arg("--remove", metavar="N|CELL", default=None,
             help="drop step N, or every step of a cell (In [n] or its id), from the recipe"),
         group="build")
def recipe(inv: Invocation) -> Any:
    """The notebook's recipe: its steps (with their cells) and the equivalent Dockerfile."""
    if inv.args.reset:
        _session().reset()
        return None
    if inv.args.remove is not None:
        for step in _session().remove(inv.args.remove):
            print(f"removed {step.describe()}" + (f" (from {step.cell})" if step.cell else ""))
    r = _session().recipe
    if inv.args.dockerfile:
        print(r.to_dockerfile())
        return None
    return r

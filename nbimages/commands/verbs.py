"""The `%image` subcommands: one small function each, a thin wrapper over the public API.

Each function gets an Invocation (parsed options, cell body, shell) and returns a normal
object (a DataFrame, an Inspection, an Image) that becomes the value of the cell, so
`df = %image layers SOURCE` is the same as `nbimages.inspect(SOURCE).layers`.
"""

from __future__ import annotations

from typing import Any

from .. import analysis, engines, execution, kernel as kernels, maintenance, registry, sources
from ..image import Image
from ..progress import step_progress
from ..sources import copy as copy_transports, remote
from ..verbs import provided
from ..workflow import freeze as freezing, handout as handing_out, verify as verifying
from .parsing import (CELL_ARGS, CELL_OPTIONAL, CELL_TEXT, CONTENT, DEPTH, EXECUTE_OPTIONS, FINAL,
                      LAYER, PLATFORM, SAVE_FORMAT, SOURCE, CommandTable, Invocation, UsageError,
                      arg, pairs)
from .steps import STEPS, cell_of
from .summaries import SUMMARIES

GROUPS = [
    ("look", "Look inside an image"),
    ("build", "Build an image from cells (no Docker needed)"),
    ("registry", "Move images: registries, tars, layouts"),
    ("engine", "Run with the Docker engine"),
    ("notebook", "Notebook tools"),
]

TABLE = CommandTable(GROUPS)
command = TABLE.add
TABLE.commands.update(STEPS.commands)  # the build steps (steps.py), shared with notebook replay


def _image_or_source(inv: Invocation, source: str) -> Any:
    """An Image/Inspection held in a notebook variable of that name, else the source string."""
    value = inv.user_ns.get(source) if source.isidentifier() else None
    if value is not None and isinstance(value, _image_types()):
        return value
    return source


def _image_types() -> tuple[type, ...]:
    # A function, not a constant: it reads analysis.Inspection when called, so a stand-in
    # put there (tests/test_magics.py fakes one) is honoured by the magics and completion.
    return (Image, analysis.Inspection)


def _inspect(inv: Invocation, source: str | None = None) -> Any:
    """nbimages.inspect on SOURCE (reusing an Inspection held in a variable)."""
    obj = _image_or_source(inv, source if source is not None else inv.args.source)
    if not isinstance(obj, str) and not isinstance(obj, Image):
        return obj  # an Inspection already
    kw = {"platform": inv.args.platform} if getattr(inv.args, "platform", None) else {}
    return analysis.inspect(obj, **kw)


# -- look ---------------------------------------------------------------------------------------

@command("inspect", "the Inspection object: summary and layer table", SOURCE, PLATFORM,
         group="look")
def inspect_(inv: Invocation) -> Any:
    """The Inspection object of an image (shown as a summary and the layer table).

    Same as nbimages.inspect(SOURCE); keep it in a variable to ask further questions:
    `insp = %image inspect SOURCE`, then `insp.files()`, `insp.sizes()`, `insp.waste`,
    `insp.unsafe` (tables that take options are methods; `layers`, `waste`, `unsafe` are
    properties).
    """
    return _inspect(inv)


@command("layers", "one row per layer: sizes, command, files changed, waste",
         SOURCE, PLATFORM, group="look")
def layers(inv: Invocation) -> Any:
    """The layer table of an image, as a pandas DataFrame (nbimages.inspect(SOURCE).layers)."""
    return _inspect(inv).layers


@command("history", "history entries, also those with no layer (ENV, CMD)",
         SOURCE, PLATFORM, group="look")
def history(inv: Invocation) -> Any:
    """The history entries of an image (nbimages.inspect(SOURCE).history)."""
    return _inspect(inv).history


@command("files", "every entry of every layer, added/modified/deleted",
         SOURCE, PLATFORM,
         LAYER, FINAL,
         group="look")
def files(inv: Invocation) -> Any:
    """The file table of an image, whiteouts resolved (nbimages.inspect(SOURCE).files(layer=N)).

    With --final, the merged filesystem: one row per path, from the layer whose copy is kept.
    """
    if inv.args.final:
        return _inspect(inv).files(final=True)
    return _inspect(inv).files(layer=inv.args.layer)


@command("sizes", "size of the final filesystem by directory",
         SOURCE, PLATFORM,
         DEPTH,
         group="look")
def sizes(inv: Invocation) -> Any:
    """The size breakdown of the final filesystem (nbimages.inspect(SOURCE).sizes(depth=N))."""
    return _inspect(inv).sizes(depth=inv.args.depth)


@command("waste", "wasted space: paths written twice or removed later",
         SOURCE, PLATFORM, group="look")
def waste(inv: Invocation) -> Any:
    """Wasted space as dive counts it, per path (nbimages.inspect(SOURCE).waste)."""
    return _inspect(inv).waste


@command("diff", "what changed between two images, path by path",
         arg("a", metavar="A", help="the old image"), arg("b", metavar="B", help="the new image"),
         CONTENT,
         PLATFORM, group="look")
def diff(inv: Invocation) -> Any:
    """The paths added, removed and modified from image A to image B (inspect(A).diff(B))."""
    return _inspect(inv, inv.args.a).diff(_inspect(inv, inv.args.b), content=inv.args.content)


@command("unsafe", "entries that escape the root, are written through a symlink or hard-link "
                   "a missing path",
         SOURCE, PLATFORM, group="look")
def unsafe(inv: Invocation) -> Any:
    """Unsafe layer entries with the reason (reported, never followed).

    The table of `nbimages.inspect(SOURCE).unsafe`, a property like `.waste` and `.layers`
    (no parentheses)."""
    return _inspect(inv).unsafe


@command("packages", "installed packages (pip, dpkg, apk): size and layer",
         SOURCE, PLATFORM, group="look")
def packages(inv: Invocation) -> Any:
    """Installed packages with their size and layer (nbimages.inspect(SOURCE).packages())."""
    return _inspect(inv).packages()


# -- registries ----------------------------------------------------------------------------------

INSECURE = arg("--insecure", action="store_true", default=None,
               help="plain http / unverified TLS (loopback registries are plain http already)")
QUIET = arg("--quiet", "-q", action="store_true", help="no progress bars")


def _registry_kw(inv: Invocation) -> dict[str, Any]:
    return {"insecure": True} if getattr(inv.args, "insecure", None) else {}


@command("pull", SUMMARIES["pull"],
         arg("ref", metavar="REF", help="an image reference, e.g. python:3.12-slim or 127.0.0.1:5000/app:1"),
         PLATFORM, INSECURE, QUIET, group="registry")
def pull(inv: Invocation) -> Any:
    """Pull an image from its registry into the local store and return it (nbimages.pull).

    A progress bar per layer plus a total; layers already in the store are not fetched again.
    """
    a = inv.args
    return remote.pull(a.ref, a.platform, progress=not a.quiet, **_registry_kw(inv))


@command("push", SUMMARIES["push"],
         arg("src", metavar="SRC", help="the image: a source string or a variable holding an Image"),
         arg("ref", metavar="REF", nargs="?", default=None,
             help="where to push, e.g. 127.0.0.1:5000/team/app:1 (default: the image's own name)"),
         INSECURE, QUIET, group="registry")
def push(inv: Invocation) -> Any:
    """Push an image to a registry as its exact bytes, so its digest is kept (nbimages.push).

    Returns the manifest digest; blobs the registry already has are skipped or mounted.
    """
    a = inv.args
    return copy_transports.push(_image_or_source(inv, a.src), a.ref, progress=not a.quiet, **_registry_kw(inv))


@command("copy-image", SUMMARIES["copy-image"],
         arg("src", metavar="SRC", help="docker://REF, store:NAME, docker-archive:FILE, oci:DIR, "
                                       "oci-archive:FILE, docker-daemon:REF or an Image variable"),
         arg("dest", metavar="DEST", help="docker://REF, store:NAME, docker-archive:FILE[:TAG], "
                                         "oci-archive:FILE[:TAG], oci:DIR[:TAG] or docker-daemon:NAME"),
         PLATFORM, INSECURE, QUIET, group="registry")
def copy_image(inv: Invocation) -> Any:
    """Copy an image between transports, like `skopeo copy` (nbimages.copy).

    Named copy-image because `copy` is the build step that copies local files into a layer.
    Returns the manifest digest at the destination.
    """
    a = inv.args
    return copy_transports.copy(_image_or_source(inv, a.src), a.dest, platform=a.platform,
                         progress=not a.quiet, **_registry_kw(inv))


@command("search", SUMMARIES["search"],
         arg("term", metavar="TERM", help="what to look for"),
         arg("--limit", type=int, default=25, metavar="N", help="at most N results (25)"),
         group="registry")
def search(inv: Invocation) -> Any:
    """Docker Hub repositories matching TERM, with stars, pulls and trust badges (nbimages.search)."""
    return registry.search(inv.args.term, limit=inv.args.limit)


@command("tags", SUMMARIES["tags"],
         arg("ref", metavar="REF", help="a repository, e.g. 127.0.0.1:5000/team/app"),
         arg("--details", action="store_true", help="also the digest, size and platforms of each tag"),
         INSECURE, group="registry")
def tags(inv: Invocation) -> Any:
    """The tags of a repository as a DataFrame (nbimages.tags)."""
    return registry.tags(inv.args.ref, details=inv.args.details, **_registry_kw(inv))


@command("catalog", SUMMARIES["catalog"],
         arg("registry", metavar="HOST[:PORT]", help="the registry, e.g. 127.0.0.1:5000"),
         INSECURE, group="registry")
def catalog(inv: Invocation) -> Any:
    """The repositories a registry lists in its catalog (nbimages.registry.catalog)."""
    return registry.catalog(inv.args.registry, **_registry_kw(inv))


@command("save", SUMMARIES["save"],
         SOURCE, arg("path", metavar="PATH", help="the tar file (or directory for --format oci-dir)"),
         SAVE_FORMAT,
         arg("--tag", metavar="NAME", help="the name inside (default: the image's own tagged name)"),
         PLATFORM, group="registry")
def save(inv: Invocation) -> Any:
    """Write an image as a handout file and return its path (nbimages.save).

    `--format docker` loads with `docker load`; `oci` and `oci-dir` suit any OCI tool.
    """
    a = inv.args
    image = _image_or_source(inv, a.source)
    if a.platform or isinstance(image, str):
        image = sources.open_image(image, platform=a.platform)
    return sources.save(image, a.path, format=a.format, tag=a.tag)


# -- engine --------------------------------------------------------------------------------------

ENGINE = arg("--engine", choices=["auto", "docker", "embedded"], default=None,
             help="which engine (default: auto, the Docker engine when one answers)")
WHERE = arg("--where", choices=["engine", "store"], default=None,
            help="the Docker engine or the local store (default: the engine in use)")


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
         group="engine", cell=CELL_OPTIONAL,
         epilog="Options go before IMAGE; everything after IMAGE is the command. With %%image run "
                "IMAGE, the cell body is a shell script run with /bin/sh -c.")
def run(inv: Invocation) -> Any:
    """Run a container of IMAGE with the Docker engine; its output streams into the cell.

    Returns the exit code (an int with `.output`), or a container handle with --detach.
    """
    a = inv.args
    command: Any = list(a.command) or None
    if inv.cell is not None and inv.cell.strip():
        if command:
            raise UsageError("%%image run: give the command either after IMAGE or in the cell body, not both")
        command = inv.cell
    elif command and len(command) == 1 and any(c.isspace() for c in command[0]):
        command = command[0]  # one quoted word: the shell form
    return engines.run(_image_or_source(inv, a.image), command, env=pairs(a.env, "run -e") or None,
                        ports=a.port or None, volumes=a.volume or None, network=a.network,
                        detach=a.detach, remove=not a.keep, name=a.name, user=a.user,
                        workdir=a.workdir, entrypoint=a.entrypoint, pull=a.pull, engine=a.engine)


@command("ps", "containers started from nbimages", arg("-a", "--all", action="store_true",
         help="also the stopped ones"), ENGINE, group="engine")
def ps(inv: Invocation) -> Any:
    """The containers nbimages started, as a DataFrame (nbimages.engines.ps)."""
    return engines.ps(all=inv.args.all, engine=inv.args.engine)


@command("stop", "stop a container (and remove it unless kept)",
         arg("names", nargs="*", metavar="NAME", help="container names or IDs"),
         arg("--all", action="store_true", help="every container nbimages started"),
         ENGINE, group="engine")
def stop(inv: Invocation) -> Any:
    """Stop containers by name (or --all); returns the names stopped (nbimages.engines.stop)."""
    a = inv.args
    if a.all:
        return engines.stop(all=True, engine=a.engine)
    if not a.names:
        raise UsageError("%image stop: name the containers to stop (see %image ps), or give --all")
    stopped: list[str] = []
    for name in a.names:
        stopped += engines.stop(name, engine=a.engine)
    return stopped


@command("logs", "what a container wrote",
         arg("name", metavar="NAME", help="a container name or ID"),
         arg("--tail", type=int, default=None, metavar="N", help="only the last N lines"),
         arg("-f", "--follow", action="store_true", help="stream it into the cell until it exits"),
         ENGINE, group="engine")
def logs(inv: Invocation) -> Any:
    """A container's stdout and stderr (nbimages.engines.logs)."""
    a = inv.args
    return engines.logs(a.name, tail=a.tail, follow=a.follow, engine=a.engine)


@command("images", "images in the local store and the engine",
         arg("--no-store", action="store_true", help="only the engine's images"),
         ENGINE, group="engine")
def images(inv: Invocation) -> Any:
    """The engine's and the local store's images as one DataFrame (nbimages.images)."""
    return engines.images(engine=inv.args.engine, store=not inv.args.no_store)


@command("rm", "remove image names", arg("refs", nargs="+", metavar="REF"),
         arg("-f", "--force", action="store_true"), WHERE, ENGINE, group="engine")
def rm(inv: Invocation) -> Any:
    """Remove image names from the engine and/or the store (nbimages.rm); `%image store prune`
    then reclaims the blobs only they used. Returns where each was removed from."""
    a = inv.args
    removed = [Removed(ref, engines.rm(ref, force=a.force, where=a.where, engine=a.engine))
               for ref in a.refs]
    return removed[0] if len(removed) == 1 else RemovedMany((r.ref, r) for r in removed)


PRUNE_HINT = "(their blobs stay until `store prune` reclaims them)"


class Removed(list):
    """The places one name was removed from (as engines.rm returns them), shown as a sentence."""

    def __init__(self, ref: str, places: list[str]):
        super().__init__(places)
        self.ref = ref

    def line(self) -> str:
        return f"removed {self.ref} from the {' and the '.join(self)}"

    def __repr__(self) -> str:
        return self.line() + (f"\n{PRUNE_HINT}" if "store" in self else "")


class RemovedMany(dict):
    """{name: Removed} for `rm` of several names, shown one line each."""

    def __repr__(self) -> str:
        hint = [PRUNE_HINT] if any("store" in r for r in self.values()) else []
        return "\n".join([r.line() for r in self.values()] + hint)


@command("store", "the local store: df, prune, check [--repair]",
         arg("action", choices=["df", "prune", "check"], metavar="ACTION",
             help="df: space per image, cache, partials; prune: reclaim it; check: re-hash everything"),
         arg("--all", action="store_true", help="prune: also empty the build cache"),
         arg("--older-than", metavar="AGE", default=None, help="prune: keep anything newer (7d, 12h)"),
         arg("--dry-run", action="store_true", help="prune: only say what would be removed"),
         arg("--repair", action="store_true",
             help="check: fetch damaged blobs again from where they came from, else remove the image"),
         group="engine")
def store(inv: Invocation) -> Any:
    """Keep the local store: `df` (nbimages.store_df), `prune` (nbimages.store_prune),
    `check` (nbimages.store_check); each returns a report with a table and a text form."""
    a = inv.args
    if a.action == "df":
        return maintenance.df()
    if a.action == "prune":
        return maintenance.prune(all=a.all, older_than=a.older_than, dry_run=a.dry_run)
    return maintenance.check(repair=a.repair)


@command("tag", "give an image another name", arg("source", metavar="SOURCE"),
         arg("target", metavar="TARGET"), WHERE, ENGINE, group="engine")
def tag(inv: Invocation) -> Any:
    """Name an image TARGET too, in the engine or the store (nbimages.engines.tag)."""
    a = inv.args
    return engines.tag(a.source, a.target, where=a.where, engine=a.engine)


@command("load", "load a docker-save tar into the engine or the store",
         arg("path", metavar="PATH"), WHERE, ENGINE, group="engine")
def load(inv: Invocation) -> Any:
    """Load a `docker save` tar; returns the names loaded (nbimages.engines.load)."""
    a = inv.args
    return engines.load(a.path, where=a.where, engine=a.engine)


# -- notebook ------------------------------------------------------------------------------------

@command("explore", "widget: layers, files, sizes chart, waste",
         SOURCE, arg("--diff", metavar="OTHER", default=None, help="compare with a second image"),
         PLATFORM, group="notebook")
def explore(inv: Invocation) -> Any:
    """The explorer: click a layer to see its files, sizes as charts, wasted space, a diff.

    Static HTML where widgets cannot run (nbconvert, GitHub's viewer); text in a terminal.
    """
    a = inv.args
    other = _image_or_source(inv, a.diff) if a.diff else None
    return provided("explore")(_image_or_source(inv, a.source), other, platform=a.platform)


@command("freeze", "a recipe from this kernel: its Python, exact package pins, the notebook",
         arg("tag", nargs="?", default=None, metavar="TAG", help="the name `%%image build` gives it"),
         arg("--imported", action="store_true", help="only the packages the notebook imported"),
         arg("--base", default=None, metavar="REF", help="the base (default: python:X.Y-slim)"),
         arg("--notebook", default=None, metavar="FILE.ipynb",
             help="the notebook to put in (default: this one, when Jupyter tells the kernel)"),
         arg("--data", action="append", default=[], metavar="PATH", help="a data file or folder"),
         arg("--script", default=None, metavar="FILE.py", help="run it instead of opening the notebook"),
         arg("--index-url", default=None, metavar="URL", help="where the pip step finds wheels"),
         group="notebook")
def freeze(inv: Invocation) -> Any:
    """Freeze the kernel into the notebook's recipe, shown (steps, Dockerfile) before building.

    Packages installed from local paths or editable are listed as not pinned, with the reason.
    `%image build` then builds it (nbimages.freeze).
    """
    a = inv.args
    frozen = freezing.freeze(a.tag, base=a.base, imported=a.imported, notebook=a.notebook,
                             data=a.data, command=a.script, index_url=a.index_url)
    return freezing.use_in_session(frozen, line=inv.raw, **cell_of(inv))


@command("verify", SUMMARIES["verify"],
         arg("notebook", nargs="?", default=None, metavar="NOTEBOOK.ipynb",
             help="the notebook whose cells build the image (in a notebook, default: this "
                  "notebook's recipe)"),
         arg("--digest", default=None, metavar="sha256:…",
             help="the manifest digest or image ID to expect (default: the one recorded in the "
                  "notebook's metadata, else this kernel's last build)"),
         arg("--expected", default=None, metavar="SOURCE",
             help="the expected image (oci-archive:FILE, docker-archive:FILE, a store name), to "
                  "name the files that differ"),
         arg("--execute", action="store_true",
             help="then also run the notebook in the verified image and compare its outputs "
                  "(the image needs ipykernel)"),
         *EXECUTE_OPTIONS,
         group="notebook")
def verify(inv: Invocation) -> Any:
    """Rebuild in a clean store: does the digest match? If not, which layer and files differ.

    With --execute (a notebook file), the verification is shown and the output check of the
    notebook run inside the verified image is returned (nbimages.verify_outputs). From a
    shell (`nbimages verify NOTEBOOK.ipynb`) the exit status is 0 when everything matched.
    """
    a = inv.args
    if not a.notebook and (a.execute or inv.cli):
        where = "nbimages verify" if inv.cli else "%image verify --execute"
        raise UsageError(f"{where}: name the notebook file (NOTEBOOK.ipynb)")
    if not a.execute:
        return verifying.verify(a.notebook, a.digest, expected=a.expected)
    verification, result = execution.verify_outputs(a.notebook, a.digest, expected=a.expected,
                                                    timeout=a.timeout, ignore_cells=a.ignore_cells)
    if result is None:
        return verification
    inv.show(verification)
    return result


@command("handout", SUMMARIES["handout"],
         arg("notebook", metavar="NOTEBOOK.ipynb", help="the notebook whose cells build it"),
         arg("-o", "--output", required=True, metavar="DIR", help="the folder for the handout files"),
         arg("-t", "--tag", default=None, metavar="NAME[:TAG]",
             help="the image's name (default: the notebook's %%image build tag)"),
         arg("--quiet", "-q", action="store_true", help="return (print) only the digest"),
         group="notebook")
def handout(inv: Invocation) -> Any:
    """Build the notebook's image from its saved %image cells and write the handout folder:
    the image as an OCI tar and a docker tar, its Dockerfile and a README saying how to load,
    run and verify it (nbimages.handout). Returns the Handout, or with -q its digest."""
    a = inv.args
    with step_progress(f"handout {a.notebook}", a.quiet) as p:
        h = handing_out.handout(a.notebook, a.output, tag=a.tag, progress=lambda row: p.update(1))
    return h.digest if a.quiet else h


KERNEL_ACTIONS = ("install", "list", "remove")


@command("kernel", SUMMARIES["kernel"],
         arg("action", nargs="?", metavar="ACTION",
             help="install IMAGE: register a kernel (it appears in JupyterLab's launcher; "
                  "`%%image kernel IMAGE` says the same); list: the nbimages kernels; "
                  "remove NAME: unregister one"),
         arg("target", nargs="?", default=None, metavar="IMAGE|NAME",
             help="install: a store or engine name, a reference, or a variable holding an Image; "
                  "remove: the kernel's name"),
         arg("--name", default=None, help="install: the kernelspec name (default: nbimages-<image name>)"),
         arg("--display-name", default=None, metavar="TEXT", help="install: what JupyterLab shows"),
         arg("--sys-prefix", action="store_true",
             help="install: into this Python environment instead of the user's Jupyter folder"),
         arg("--no-check", action="store_true",
             help="install: write the kernelspec without asking the engine (nothing checked or pinned)"),
         group="engine")
def kernel(inv: Invocation) -> Any:
    """Kernels that run ipykernel inside an image on the Docker engine: `install IMAGE`
    (nbimages.kernel.install; the image needs Python and ipykernel, `%image pip ipykernel`;
    reload JupyterLab's launcher to see it), `list` (nbimages.kernel.list), `remove NAME`."""
    a = inv.args
    if a.action is None:
        raise UsageError("%image kernel: say install, list or remove (see %image kernel --help)")
    if a.action not in KERNEL_ACTIONS:
        if a.target is not None:
            raise UsageError(f"%image kernel: {a.action!r} is not one of "
                             f"{', '.join(KERNEL_ACTIONS)} (see %image kernel --help)")
        a.action, a.target = "install", a.action  # `%image kernel TAG` installs TAG
    if a.action == "list":
        return kernels.list()
    if not a.target:
        what = "the image" if a.action == "install" else "the kernel"
        raise UsageError(f"%image kernel {a.action}: name {what} (see %image kernel --help)")
    if a.action == "remove":
        return f"removed {kernels.remove(a.target)}"
    return kernels.install(_image_or_source(inv, a.target), a.name, display_name=a.display_name,
                           sys_prefix=a.sys_prefix, check=not a.no_check)


@command("execute", SUMMARIES["execute"],
         arg("notebook", metavar="NOTEBOOK.ipynb"),
         arg("--image", default=None, metavar="REF",
             help="the image (needs Python and ipykernel; default: the build recorded in the notebook)"),
         arg("-o", "--output", default=None, metavar="OUT.ipynb", help="write the executed notebook there"),
         *EXECUTE_OPTIONS,
         group="engine")
def execute(inv: Invocation) -> Any:
    """Run the notebook's cells in a kernel inside the image (its %image cells skipped) and
    compare every cell's outputs with the saved ones (nbimages.execute)."""
    a = inv.args
    image = _image_or_source(inv, a.image) if a.image else None
    return execution.execute(a.notebook, image, output=a.output, timeout=a.timeout,
                             ignore_cells=a.ignore_cells)

__all__ = ["TABLE", "GROUPS", "CELL_ARGS", "CELL_TEXT"]

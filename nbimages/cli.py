"""The `nbimages` command (also `python -m nbimages`): the notebook's verbs from a shell.

A thin parser in front of the public API, like the %image magics. A user's mistake is one
paragraph on stderr with exit status 2 (bad usage) or 1 (an NbimagesError: a missing image,
no engine, a registry refusing); an internal bug still prints its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import shutil
import sys
from typing import Any, Callable, Sequence

PROG = "nbimages"


class CLIUsageError(Exception):
    """Bad command-line usage: printed as one paragraph, exit status 2."""


def public_api(name: str) -> Any | None:
    """`nbimages.<name>` if this installation has it yet, else None.

    Only a missing module (or a missing attribute) counts as "not there yet": an import that
    fails for another reason is a bug in that module and is raised.
    """
    import nbimages
    target = nbimages._EXPORTS.get(name)
    if target is None:
        return getattr(nbimages, name, None)
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            return None
        raise
    return getattr(module, attr, None)


def _api(name: str, command: str) -> Any:
    func = public_api(name)
    if func is None:
        raise CLIUsageError(f"{PROG} {command} is not available yet in this version of nbimages "
                            f"(it needs nbimages.{name}).")
    return func


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one paragraph naming the subcommand and its --help."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIUsageError(f"{self.prog}: {message} (see {self.prog} --help)")


# -- output -----------------------------------------------------------------------------------

def _short_digests(df):
    """Digest columns shortened to 12 hex digits for the text table (docker's habit)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype == object and len(values) and values.map(
                lambda v: isinstance(v, str) and v.startswith("sha256:") and len(v) == 71).all():
            out[col] = values.str.slice(0, 19)
    return out


def print_table(df, *, full: bool = False) -> None:
    """A DataFrame as plain text: every row, no index, digests shortened unless `full`."""
    import pandas as pd
    if df is None:
        return
    if not isinstance(df, pd.DataFrame):
        print(df)
        return
    if df.empty:
        print("(no rows)")
        return
    width = shutil.get_terminal_size((160, 24)).columns
    out = _left_aligned(df, None) if full else _left_aligned(_short_digests(df))
    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", width, "display.max_colwidth", None):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _left_aligned(df, limit: int | None = 60):
    """Text columns padded to the left, header included (pandas right-aligns them, which
    makes a column of paths hard to read); long values other than paths end in '…'."""
    out = df.copy()
    renames = {}
    for col in out.columns:
        if out[col].dtype.kind in "iufcbmM":
            continue
        values = out[col].astype(object)
        if not all(v is None or isinstance(v, str) or v != v for v in values):
            continue
        texts = values.map(lambda v: "" if v is None or v != v else v)
        if limit and col not in ("path", "location"):
            texts = texts.map(lambda v: v if len(v) <= limit else v[:limit - 1] + "…")
        w = max(len(str(col)), int(texts.str.len().max()))
        out[col] = texts.map(lambda v, w=w: v.ljust(w)).astype(object)
        renames[col] = str(col).ljust(w)
    return out.rename(columns=renames)


def _json_value(v: Any) -> Any:
    """A DataFrame cell as JSON: numpy scalars as Python numbers, NA/NaN as null."""
    import pandas as pd
    if v is None or (not isinstance(v, (list, dict, tuple)) and pd.isna(v)):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, dict, tuple)):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


def _print_json(value: Any) -> None:
    import pandas as pd
    if isinstance(value, pd.DataFrame):
        # row by row: an 80,000-row file table is never held as JSON text or records
        out = sys.stdout
        cols = [str(c) for c in value.columns]
        out.write("[")
        for n, row in enumerate(value.itertuples(index=False, name=None)):
            rec = {c: _json_value(v) for c, v in zip(cols, row)}
            out.write(("," if n else "") + "\n  " + json.dumps(rec, default=str))
        out.write("\n]\n" if len(value) else "]\n")
        return
    if isinstance(value, str):
        print(value)
    else:
        print(json.dumps(value, indent=2, default=str))


# -- subcommands --------------------------------------------------------------------------------

def cmd_inspect(a: argparse.Namespace) -> int:
    inspect = _api("inspect", "inspect")
    kw = {"platform": a.platform} if a.platform else {}
    insp = inspect(a.source, **kw)
    if a.files:
        view = insp.files(layer=a.layer, final=a.final)
    elif a.sizes:
        view = insp.sizes(depth=a.depth)
    elif a.waste:
        view = insp.waste
    elif a.history:
        view = insp.history
    elif a.packages:
        view = insp.packages()
    elif a.diff:
        view = insp.diff(inspect(a.diff, **kw), content=a.content)
    else:
        view = None
    if a.json:
        _print_json(insp.to_json() if view is None else view)
    elif view is None and not a.full:
        print(repr(insp))  # the summary, the layer table and notes on dive's numbers
    elif view is None:
        print_table(insp.layers, full=True)
    else:
        print_table(view, full=a.full)
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None] | None,
                          Callable[[argparse.Namespace], int] | None]] = {}


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE",
                   help="docker-daemon:REF, docker-archive:PATH, oci:DIR[:TAG], oci-archive:PATH, "
                        "docker://REF or a name in the local store")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="which image of a multi-platform index (default: this machine's)")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--files", action="store_true", help="every entry of every layer")
    view.add_argument("--sizes", action="store_true", help="size of the final filesystem by directory")
    view.add_argument("--waste", action="store_true", help="paths written twice or removed later")
    view.add_argument("--history", action="store_true", help="history entries, also those with no layer")
    view.add_argument("--packages", action="store_true", help="installed packages with size and layer")
    view.add_argument("--diff", metavar="OTHER", help="what changed from SOURCE to OTHER, path by path")
    p.add_argument("--layer", type=int, metavar="N", help="with --files: only layer N")
    p.add_argument("--final", action="store_true", help="with --files: the final filesystem, one row per path")
    p.add_argument("--content", action="store_true",
                   help="with --diff: also compare the bytes of files whose metadata is equal")
    p.add_argument("--depth", type=int, default=2, metavar="N", help="with --sizes: directory depth (2)")
    p.add_argument("--json", action="store_true",
                   help="JSON instead of a table: the whole inspection, or the chosen view as records")
    p.add_argument("--full", action="store_true",
                   help="every column, digests not shortened (without a view: the layers DataFrame)")


COMMANDS["inspect"] = ("show an image's layers (or files, sizes, waste, diff) as a table or JSON",
                       _inspect_args, cmd_inspect)


def _registry_args(p: argparse.ArgumentParser, *, progress: bool = True) -> None:
    p.add_argument("--insecure", action="store_true", default=None,
                   help="plain http / unverified TLS (loopback registries are plain http already)")
    if progress:
        p.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def _registry_kw(a: argparse.Namespace) -> dict[str, Any]:
    return {"insecure": True} if a.insecure else {}


def _pull_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF", help="an image reference, e.g. python:3.12-slim")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine's")
    _registry_args(p)


def cmd_pull(a: argparse.Namespace) -> int:
    image = _api("pull", "pull")(a.ref, a.platform, progress=not a.quiet, **_registry_kw(a))
    print(f"{image.names[0] if image.names else a.ref} {image.digest}")
    return 0


def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="the image: store:NAME, docker-archive:FILE, oci:DIR, ...")
    p.add_argument("ref", metavar="REF", help="where to push, e.g. 127.0.0.1:5000/team/app:1")
    _registry_args(p)


def cmd_push(a: argparse.Namespace) -> int:
    print(_api("push", "push")(a.src, a.ref, progress=not a.quiet, **_registry_kw(a)))
    return 0


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="docker://REF, store:NAME, docker-archive:FILE, oci:DIR[:TAG], "
                                             "oci-archive:FILE, docker-daemon:REF")
    p.add_argument("dest", metavar="DEST", help="docker://REF, store:NAME, docker-archive:FILE[:TAG], "
                                               "oci-archive:FILE[:TAG], oci:DIR[:TAG], docker-daemon:NAME")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine's")
    _registry_args(p)


def cmd_copy(a: argparse.Namespace) -> int:
    print(_api("copy", "copy")(a.src, a.dest, platform=a.platform, progress=not a.quiet,
                               **_registry_kw(a)))
    return 0


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("term", metavar="TERM")
    p.add_argument("--limit", type=int, default=25, metavar="N", help="at most N results (25)")
    p.add_argument("--json", action="store_true", help="records as JSON")


def cmd_search(a: argparse.Namespace) -> int:
    df = _api("search", "search")(a.term, limit=a.limit)
    _print_json(df) if a.json else print_table(df)
    return 0


def _tags_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="REF", help="a repository, e.g. 127.0.0.1:5000/team/app")
    p.add_argument("--details", action="store_true", help="also digest, size and platforms of each tag")
    p.add_argument("--json", action="store_true", help="records as JSON")
    _registry_args(p, progress=False)


def cmd_tags(a: argparse.Namespace) -> int:
    df = _api("tags", "tags")(a.ref, details=a.details, **_registry_kw(a))
    _print_json(df) if a.json else print_table(df, full=True)
    return 0


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("registry", metavar="HOST[:PORT]", help="the registry, e.g. 127.0.0.1:5000")
    p.add_argument("--json", action="store_true", help="records as JSON")
    _registry_args(p, progress=False)


def cmd_catalog(a: argparse.Namespace) -> int:
    _api("tags", "catalog")
    from .registry import catalog
    df = catalog(a.registry, **_registry_kw(a))
    _print_json(df) if a.json else print_table(df)
    return 0


def _save_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="the image (any source inspect accepts)")
    p.add_argument("path", metavar="PATH", help="the tar file (or directory for --format oci-dir)")
    p.add_argument("--format", choices=["docker", "oci", "oci-dir"], default="docker",
                   help="docker: for `docker load` (default); oci: an OCI tar; oci-dir: an OCI layout")
    p.add_argument("--tag", metavar="NAME", help="the name inside (default: the image's tagged name)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="default: this machine's")


def cmd_save(a: argparse.Namespace) -> int:
    image = _api("open_image", "save")(a.source, platform=a.platform)
    print(_api("save", "save")(image, a.path, format=a.format, tag=a.tag))
    return 0


def _build_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("context", nargs="?", default=".", metavar="CONTEXT",
                   help="the directory COPY reads from (default: .)")
    p.add_argument("-f", "--file", metavar="DOCKERFILE",
                   help="the Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("-t", "--tag", metavar="NAME[:TAG]", help="the name in the local store")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", dest="build_args")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="of the base (default: this machine's)")
    p.add_argument("--engine", choices=["embedded", "docker", "auto"], default=None,
                   help="embedded (default, no daemon, no RUN) or the Docker engine")
    p.add_argument("--compression", metavar="NAME", help="layer compression (default: gzip)")
    p.add_argument("-o", "--output", metavar="FILE", help="also write the image to FILE")
    p.add_argument("--format", choices=["docker", "oci", "oci-dir"], default="docker",
                   help="of --output: docker (for docker load, default), oci, or oci-dir")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the digest")


def cmd_build(a: argparse.Namespace) -> int:
    from pathlib import Path
    dockerfile = Path(a.file) if a.file else Path(a.context) / "Dockerfile"
    if dockerfile.suffix == ".ipynb" or str(a.context).endswith(".ipynb"):
        from .build.handout import cli_build_notebook  # the notebook's %image cells (issue 7)
        return cli_build_notebook(a)
    build_args = {}
    for item in a.build_args:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CLIUsageError(f"{PROG} build: --build-arg {item!r} is not KEY=VALUE")
        build_args[key] = value
    kw: dict[str, Any] = {k: v for k, v in (("platform", a.platform), ("engine", a.engine),
                                             ("compression", a.compression)) if v}
    from .progress import Progress
    with Progress(f"build {a.tag or dockerfile}", unit="step", enabled=False if a.quiet else None) as p:
        image = _api("build", "build")(dockerfile, a.tag, context=a.context,
                                       build_args=build_args or None,
                                       progress=lambda row: p.update(1), **kw)
    report = getattr(image, "build_report", None)
    if report is not None and not a.quiet:
        print(repr(report), file=sys.stderr)
    if a.output:
        if not hasattr(image, "layers") and hasattr(image, "open"):
            image = image.open()  # an engine-built image: read it back from the engine
        print(_api("save", "build --output")(image, a.output, format=a.format, tag=a.tag),
              file=sys.stderr)
    digest = getattr(image, "digest", None) or getattr(image, "id", "")
    print(digest if a.quiet or not a.tag else f"{a.tag} {digest}")
    return 0


COMMANDS["build"] = ("build an image from a Dockerfile or a notebook's %image cells (no daemon needed)", _build_args, cmd_build)
COMMANDS["save"] = ("write an image as a docker-archive or OCI tar (or OCI layout)", _save_args, cmd_save)
COMMANDS["pull"] = ("pull an image into the local store, with progress", _pull_args, cmd_pull)
COMMANDS["push"] = ("push an image to a registry, its digest kept", _push_args, cmd_push)
COMMANDS["copy"] = ("copy an image between transports (registry, store, tars, layouts, engine)",
                    _copy_args, cmd_copy)
COMMANDS["search"] = ("search Docker Hub", _search_args, cmd_search)
COMMANDS["tags"] = ("list the tags of a repository", _tags_args, cmd_tags)
COMMANDS["catalog"] = ("list the repositories of a private registry", _catalog_args, cmd_catalog)


def _notebook_verb(name: str) -> Callable:
    """A verb defined in nbimages.build.handout (imported when used)."""
    return lambda arg: getattr(importlib.import_module("nbimages.build.handout"), name)(arg)


def _execute_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=600, metavar="S",
                   help="seconds a cell may run before it is interrupted (600)")
    p.add_argument("--ignore-cell", action="append", default=[], metavar="N", dest="ignore_cells",
                   help="run cell N (from 1, markdown cells included; or a cell id) but do not "
                        "compare it; cells tagged nbimages-volatile are ignored too")


def _execute_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    p.add_argument("--image", metavar="REF",
                   help="the image to run it in (needs Python and ipykernel; default: the build "
                        "recorded in the notebook)")
    p.add_argument("-o", "--output", metavar="OUT.ipynb", help="write the executed notebook there")
    _execute_options(p)
    p.add_argument("--json", action="store_true", help="the table as JSON records")


def _print_execution(result: Any, as_json: bool = False) -> int:
    if as_json:
        _print_json(result.table)
    else:
        print(repr(result))
    return 0 if result.ok else 1


def cmd_execute(a: argparse.Namespace) -> int:
    result = _api("execute", "execute")(a.notebook, a.image, output=a.output, timeout=a.timeout,
                                        ignore_cells=a.ignore_cells)
    return _print_execution(result, a.json)


def _verify_args(p: argparse.ArgumentParser) -> None:
    _notebook_verb("verify_args")(p)
    p.add_argument("--execute", action="store_true",
                   help="then also run the notebook in the verified image and compare its outputs "
                        "(the image needs ipykernel)")
    _execute_options(p)


def cmd_verify(a: argparse.Namespace) -> int:
    if not a.execute:
        return _notebook_verb("cli_verify")(a)
    verification, result = _api("verify_outputs", "verify --execute")(
        a.notebook, a.digest, expected=a.expected, timeout=a.timeout, ignore_cells=a.ignore_cells)
    print(repr(verification))
    if result is None:
        return 1
    print(repr(result))
    return 0 if result.ok else 1


def _kernel_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    i = sub.add_parser("install", help="register a Jupyter kernel that runs inside IMAGE",
                       description="Register a Jupyter kernel that runs ipykernel inside IMAGE on "
                                   "the Docker engine (it appears in JupyterLab's launcher).")
    i.add_argument("image", metavar="IMAGE", help="an engine or store name, or a registry reference")
    i.add_argument("--name", help="the kernelspec name (default: nbimages-<image name>)")
    i.add_argument("--display-name", metavar="TEXT", help="what JupyterLab shows")
    i.add_argument("--sys-prefix", action="store_true",
                   help="install into this Python environment instead of the user's Jupyter folder")
    i.add_argument("--no-check", action="store_true",
                   help="write the kernelspec without asking the engine (nothing checked or pinned)")
    lst = sub.add_parser("list", help="the installed nbimages kernels")
    lst.add_argument("--json", action="store_true", help="records as JSON")
    r = sub.add_parser("remove", help="remove an nbimages kernel")
    r.add_argument("name", metavar="NAME")


def cmd_kernel(a: argparse.Namespace) -> int:
    kernel = importlib.import_module("nbimages.kernel")
    if a.action == "install":
        print(repr(kernel.install(a.image, a.name, display_name=a.display_name,
                                  sys_prefix=a.sys_prefix, check=not a.no_check)))
    elif a.action == "list":
        df = kernel.list()
        _print_json(df) if a.json else print_table(df, full=True)
    elif a.action == "remove":
        print(f"removed {kernel.remove(a.name)}")
    else:
        raise CLIUsageError(f"{PROG} kernel: say install, list or remove (see {PROG} kernel --help)")
    return 0


COMMANDS["verify"] = ("rebuild a notebook's image in a clean store and check its digest "
                      "(--execute: and its outputs)", _verify_args, cmd_verify)
COMMANDS["execute"] = ("run a notebook inside an image and compare its outputs with the saved ones",
                       _execute_args, cmd_execute)
COMMANDS["kernel"] = ("install, list or remove Jupyter kernels that run inside an image",
                      _kernel_args, cmd_kernel)
COMMANDS["handout"] = ("write a notebook's image as OCI and docker tars, Dockerfile and README",
                       _notebook_verb("handout_args"), _notebook_verb("cli_handout"))

PLANNED: dict[str, str] = {}


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Container images without a daemon: look inside, build, "
                                            "pull, push and save. The %image magics, from a shell.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"nbimages {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (summary, configure, _func) in COMMANDS.items():
        p = sub.add_parser(name, help=summary.replace("%", "%%"), description=summary)  # help is %-formatted
        if configure:
            configure(p)
    for name, summary in PLANNED.items():
        if name not in COMMANDS:
            p = sub.add_parser(name, help=f"{summary} (not available yet)", description=summary,
                               add_help=True)
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _unknown_command_hint(argv: Sequence[str]) -> None:
    """An unknown subcommand: name the close one and list them all (before argparse's message)."""
    known = list(COMMANDS) + [n for n in PLANNED if n not in COMMANDS]
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in known and argv and argv[0] == first:
        close = difflib.get_close_matches(first, known, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise CLIUsageError(f"{PROG}: unknown command '{first}'.{hint} Commands: {', '.join(known)} "
                            f"(see {PROG} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the nbimages command; returns the exit status (0 ok, 1 user error, 2 usage)."""
    from .errors import NbimagesError
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _unknown_command_hint(argv)
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help and --version print and exit 0
            return int(e.code or 0)
        if not args.command:
            parser.print_help()
            return 2
        entry = COMMANDS.get(args.command)
        if entry is None or entry[2] is None:
            raise CLIUsageError(f"{PROG} {args.command} is not available yet in this version of nbimages.")
        return entry[2](args)
    except CLIUsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except NbimagesError as e:
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `nbimages inspect ... | head`: the reader left; say nothing more.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

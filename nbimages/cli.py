"""The `nbimages` command (also `python -m nbimages`): the notebook's verbs from a shell.

A thin parser in front of the public API, like the %image magics. A user's mistake is one
paragraph on stderr with exit status 2 (bad usage) or 1 (an NbimagesError: a missing image,
no engine, a registry refusing); an internal bug still prints its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import nbimages  # the facade: the API loads on first use, so `nbimages --help` stays fast

from . import __version__
from .commands.parsing import (BUILD_ARG, BUILD_ENGINE, BUILD_PLATFORM, COMPRESSION, CONTENT, DEPTH,
                               FINAL, LAYER, PLATFORM, SAVE_FORMAT, SOURCE, HelpShown, Invocation,
                               UsageError, add_arguments, did_you_mean, pairs, qualified)
from .commands.summaries import SUMMARIES
from .errors import NbimagesError, os_errors
from .progress import step_progress
from .verbs import provided

PROG = "nbimages"


CLIUsageError = UsageError  # bad command-line usage: printed as one paragraph, exit status 2


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one paragraph naming the subcommand and its --help."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIUsageError(f"{self.prog}: {message}{did_you_mean(self, message)} "
                            f"(see {self.prog} --help)")


# -- output -----------------------------------------------------------------------------------

def _short_digests(df):
    """Digest columns shortened to 12 hex digits for the text table (docker's habit)."""
    out = df.copy()
    for col in out.columns:
        values = out[col]
        if values.dtype.kind in "OT" and len(values) and all(  # object, or pandas 3's str
                isinstance(v, str) and v.startswith("sha256:") and len(v) == 71 for v in values):
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
    # a DataFrame exists only once pandas is loaded: the summary's JSON never loads it
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(value, pd.DataFrame):
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
    inspect = nbimages.inspect
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
    elif a.unsafe:
        view = insp.unsafe
    elif a.advice:
        view = insp.advice()
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
    # The options are those of %image inspect|files|sizes|diff (commands/parsing.py); the
    # views are the CLI's own spelling of those subcommands (`inspect SRC --files`).
    add_arguments(p, SOURCE, PLATFORM)
    view = p.add_mutually_exclusive_group()
    view.add_argument("--files", action="store_true", help="every entry of every layer")
    view.add_argument("--sizes", action="store_true", help="size of the final filesystem by directory")
    view.add_argument("--waste", action="store_true", help="paths written twice or removed later")
    view.add_argument("--history", action="store_true", help="history entries, also those with no layer")
    view.add_argument("--packages", action="store_true", help="installed packages with size and layer")
    view.add_argument("--unsafe", action="store_true",
                      help="entries that escape the root ('..', links climbing out), are written "
                           "through a symlink, or hard-link a missing path (in Python the "
                           "property inspect(SOURCE).unsafe, like .waste)")
    view.add_argument("--diff", metavar="OTHER", help="what changed from SOURCE to OTHER, path by path")
    view.add_argument("--advice", action="store_true",
                      help="what to change to make the image smaller, the bytes each change "
                           "saves, the layer and step it concerns (inspect(SOURCE).advice())")
    add_arguments(p, qualified(LAYER, "with --files"), qualified(FINAL, "with --files"),
                  qualified(CONTENT, "with --diff"), qualified(DEPTH, "with --sizes"))
    p.add_argument("--json", action="store_true",
                   help="JSON instead of a table: the whole inspection, or the chosen view as records")
    p.add_argument("--full", action="store_true",
                   help="every column, digests not shortened (without a view: the layers DataFrame)")


COMMANDS["inspect"] = ("show an image's layers (or files, sizes, waste, diff) as a table or JSON",
                       _inspect_args, cmd_inspect)


def _build_args(p: argparse.ArgumentParser) -> None:
    # --build-arg, --platform, --engine, --compression and --format are the options of
    # %image dockerfile / build / from / save (commands/parsing.py).
    p.add_argument("context", nargs="?", default=".", metavar="CONTEXT",
                   help="the directory COPY reads from (default: .), or a NOTEBOOK.ipynb")
    p.add_argument("-f", "--file", metavar="DOCKERFILE",
                   help="the Dockerfile (default: CONTEXT/Dockerfile)")
    p.add_argument("-t", "--tag", metavar="NAME[:TAG]", help="the name in the local store")
    add_arguments(p, BUILD_ARG, BUILD_PLATFORM, BUILD_ENGINE, COMPRESSION)
    p.add_argument("-o", "--output", metavar="FILE", help="also write the image to FILE")
    add_arguments(p, qualified(SAVE_FORMAT, "of --output"))
    p.add_argument("--quiet", "-q", action="store_true", help="print only the digest")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = BUILD_EPILOG


BUILD_EPILOG = """\
examples:
  nbimages build . -t app:1                 the Dockerfile in . (COPY reads from .)
  nbimages build analysis.ipynb -t app:1    a notebook: its saved %image cells (from, file, pip,
                                            copy, env, ...) in order, as Run All would build them

A notebook build records the digest in analysis.nbimages.lock beside it and in its metadata,
which `nbimages verify analysis.ipynb` checks and `nbimages handout` ships; --build-arg,
--platform and --engine do not apply to a notebook (its %image cells say how to build it)."""


def cmd_build(a: argparse.Namespace) -> int:
    dockerfile = Path(a.file) if a.file else Path(a.context) / "Dockerfile"
    if dockerfile.suffix == ".ipynb" or str(a.context).endswith(".ipynb"):
        return cli_build_notebook(a)  # the notebook's %image cells
    build_args = pairs(a.build_args, "build --build-arg", PROG)
    kw: dict[str, Any] = {k: v for k, v in (("platform", a.platform), ("engine", a.engine),
                                             ("compression", a.compression)) if v}
    with step_progress(f"build {a.tag or dockerfile}", a.quiet) as p:
        image = nbimages.build(dockerfile, a.tag, context=a.context,
                                       build_args=build_args or None,
                                       progress=lambda row: p.update(1), **kw)
    return _built(image, a)


def _built(image: Any, a: argparse.Namespace) -> int:
    """The end of `nbimages build` (a Dockerfile or a notebook): the build report on stderr
    unless --quiet, the image saved to --output, then the digest (after the tag, if given)."""
    report = image.build_report
    if report is not None and not a.quiet:
        print(repr(report), file=sys.stderr)
    if a.output:
        print(nbimages.save(image, a.output, format=a.format, tag=a.tag), file=sys.stderr)
    digest = (image.index or image).digest  # a multi-platform build: its index
    print(digest if a.quiet or not a.tag else f"{a.tag} {digest}")
    return 0


COMMANDS["build"] = ("build an image from a Dockerfile or a notebook's %image cells (no daemon needed)", _build_args, cmd_build)
# These are the %image subcommands of the same names (commands/verbs.py: one argument table,
# one function); `nbimages --help` lists their summaries from commands/summaries.py, which
# loads nothing, so the help does without the table. `copy` is %image copy-image.
FROM_TABLE = {"save": "save", "pull": "pull", "push": "push", "copy": "copy-image",
              "search": "search", "tags": "tags", "catalog": "catalog",
              "execute": "execute", "kernel": "kernel", "verify": "verify", "handout": "handout",
              "squash": "squash", "slim": "slim"}
COMMANDS.update({cli_name: (SUMMARIES[name], None, None) for cli_name, name in FROM_TABLE.items()})

# ---- command line (nbimages build NOTEBOOK.ipynb, nbimages verify, nbimages handout)

def cli_build_notebook(a: Any) -> int:
    """`nbimages build NOTEBOOK.ipynb -t TAG [-o FILE --format F]`."""
    path = a.file if a.file and str(a.file).endswith(".ipynb") else a.context
    unsupported = [flag for flag, value in (("--build-arg", a.build_args),
                                            ("--platform", a.platform),
                                            ("--engine", a.engine)) if value]
    if unsupported:
        raise CLIUsageError(f"nbimages build {path}: {', '.join(unsupported)} cannot be used "
                            "with a notebook; its %image cells say how to build it.")
    with step_progress(f"build {a.tag or path}", a.quiet) as p:
        image = nbimages.build_notebook(path, a.tag, compression=a.compression,
                               progress=lambda row: p.update(1))
    return _built(image, a)


SHELL_EPILOG = """\
The %image subcommands that look at, move or run images work here too, spelled as in the
notebook, with --json or --full for their tables:
  nbimages layers|history|waste|packages|unsafe|advice SOURCE    nbimages files SOURCE [--layer N]
  nbimages sizes SOURCE [--depth N]    nbimages diff A B    nbimages copy-image SRC DEST
  nbimages squash SOURCE TAG [--from-layer N]    nbimages slim SOURCE TAG --remove PATTERN ...
  nbimages images|ps|stop|logs|rm|tag|load|store ...    nbimages run IMAGE [COMMAND...]
  nbimages sbatch IMAGE [COMMAND...]    nbimages squeue [JOB]
`nbimages store df|prune|check` keeps the local store; nbimages SUBCOMMAND --help explains one."""


def build_parser() -> _Parser:
    parser = _Parser(prog=PROG, description="Container images without a daemon: look inside, build, "
                                            "pull, push and save.\nThe %image magics, from a shell.",
                     epilog=SHELL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"nbimages {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.subcommands = sub.choices  # type: ignore[attr-defined]  # for main's did-you-mean
    for name, (summary, configure, _func) in COMMANDS.items():
        p = sub.add_parser(name, help=summary.replace("%", "%%"), description=summary)  # help is %-formatted
        if configure:  # None: a %image subcommand, parsed by run_table_command
            configure(p)
    return parser


# -- the %image subcommands, from a shell ------------------------------------------------------
# One grammar: `nbimages layers SRC` is `%image layers SRC` (the same table, parser and
# function, commands/verbs.py); the CLI's own spellings above (`inspect SRC --files`, `copy`)
# stay. Build steps describe a notebook's recipe and the notebook group needs a kernel, so
# only these groups are offered here. The table is loaded only when one of them is asked for,
# which keeps `nbimages --help` fast.
SHELL_GROUPS = ("look", "registry", "engine", "cluster")


def _shell_commands() -> dict[str, Any]:
    """The %image subcommands offered from a shell, by their CLI names."""
    table = provided("command_table")().commands
    out = {name: cmd for name, cmd in table.items()
           if cmd.group in SHELL_GROUPS and name not in COMMANDS}
    out.update({cli_name: table[name] for cli_name, name in FROM_TABLE.items()})
    return out


def run_table_command(argv: list[str]) -> int:
    """`nbimages NAME ARGS` for a %image subcommand NAME: parse, run, print its value."""
    name = argv[0]
    cmd = _shell_commands().get(name)
    if cmd is None:
        _unknown_command(name)
    p = cmd.parser(prog=f"{PROG} {name}")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--full", action="store_true", help="every column, digests not shortened")
    try:
        ns = p.parse_args(argv[1:])
    except HelpShown:
        return 0
    # A side result (verify --execute's verification) is output too, before the value.
    inv = Invocation(ns, None, None, None, None, " ".join(argv[1:]), {},
                     show=lambda value: print(repr(value)), cli=True)
    return _print_value(cmd.func(inv), json_out=ns.json, full=ns.full)


def _print_value(value: Any, *, json_out: bool, full: bool) -> int:
    """A subcommand's value on stdout; an int (a container's exit code) is the exit status."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # `run`: the output already streamed, the exit code is the status
    import pandas as pd  # only when a value is printed: `nbimages --help` does without
    frame = isinstance(value, pd.DataFrame)
    if isinstance(value, nbimages.Image):  # pull: the name and the digest, as `docker pull`
        print(f"{value.names[0] if value.names else value.source} {value.digest}")
    elif json_out:
        _print_json(value if frame or not hasattr(value, "to_json") else value.to_json())
    elif isinstance(value, os.PathLike):
        print(os.fspath(value))
    elif type(value) in (list, tuple):  # subclasses (rm's Removed) print as their repr
        for item in value:
            print(item)
    elif isinstance(value, str):
        print(value)
    elif frame:
        print_table(value, full=full)
    else:
        print(repr(value))
    return 1 if getattr(value, "ok", True) is False else 0  # `store check` found damage


def _unknown_command(first: str) -> None:
    """An unknown subcommand: name the close one and list them all."""
    magic = provided("command_table")().commands.get(first)
    if magic is not None:  # a build step or a notebook tool: it needs a notebook
        raise CLIUsageError(f"{PROG}: %image {first} works in a notebook only ({magic.summary}). "
                            f"From a shell, build a notebook's cells or a Dockerfile with "
                            f"{PROG} build NOTEBOOK.ipynb|CONTEXT (see {PROG} --help).")
    known = list(COMMANDS) + sorted(n for n in _shell_commands() if n not in COMMANDS)
    close = difflib.get_close_matches(first, known, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise CLIUsageError(f"{PROG}: unknown command '{first}'.{hint} Commands: {', '.join(known)} "
                        f"(see {PROG} --help)")


def run() -> int:
    """The `nbimages` console script and `python -m nbimages`: `main()`, then the objects the
    command built are frozen (gc.freeze), so that the interpreter's exit does not spend tens
    of milliseconds freeing file tables the operating system takes back at once anyway."""
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the nbimages command; returns the exit status (0 ok, 1 user error, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # File names in layers are bytes: print undecodable ones as they are, like `tar tf`.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        if argv and not argv[0].startswith("-") and (argv[0] not in COMMANDS
                                                     or argv[0] in FROM_TABLE):
            with os_errors():  # no space, permission denied, read-only: one paragraph too
                return run_table_command(argv)
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as e:  # --help and --version print and exit 0
            return int(e.code or 0)
        if extra:  # named by the subcommand's parser, which knows its options
            parser_of = parser.subcommands.get(args.command, parser)
            parser_of.error(f"unrecognized arguments: {' '.join(extra)}")
        if not args.command:
            parser.print_help()
            return 2
        with os_errors():
            return COMMANDS[args.command][2](args)
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
    raise SystemExit(run())

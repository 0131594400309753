"""The `%image` subcommand table and its parser: one argparse parser per subcommand.

A mistake (unknown subcommand, wrong option, missing argument, unbalanced quote) becomes ONE
IPython UsageError line instead of a traceback or a `SystemExit` of the kernel; `--help` prints
the help text and returns. Subcommands are registered in a table (see commands.py), each a
thin function over the public API function of the same name.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable



class UsageError(Exception):
    """A mistyped command: one line naming the mistake and the --help to read.

    The magics show it as IPython's UsageError (one red line), the CLI prints it and exits 2.
    Deliberately not an NbimagesError: it is about the words typed, not about an image.
    """

MAGIC = "%image"
CELL_MAGIC = "%%image"

# How a subcommand uses the body of a `%%image` cell.
NO_CELL = "none"          # a body is a mistake
CELL_TEXT = "text"        # the body is the command's input text (file content, Dockerfile)
CELL_ARGS = "args"        # the body's lines are more arguments (requirements, K=V lines)
CELL_OPTIONAL = "optional" # the body, when there is one, is the command's input text


SOURCE_NOTE = ("SOURCE is docker-daemon:REF, docker-archive:PATH, oci:DIR[:TAG], oci-archive:PATH,\n"
               "docker://REF, a name in the local store, or a variable holding an Image.")


class HelpShown(Exception):
    """`--help` printed its text; the magic returns nothing."""


class MagicArgumentParser(argparse.ArgumentParser):
    """argparse that reports mistakes as one UsageError line and never exits the kernel."""

    def __init__(self, *args: Any, **kw: Any):
        kw.setdefault("allow_abbrev", False)
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kw)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        if status:
            raise UsageError(f"{self.prog}: {(message or 'invalid arguments').strip()}")
        if message:
            print(message, end="")
        raise HelpShown()


def arg(*flags: str, **kw: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One `add_argument` call, kept as data so the table stays declarative."""
    return flags, kw


# -- options defined once, used by the %image subcommands and the CLI's own verbs alike

# How a notebook is run and compared inside an image: `%image execute` and `%image verify
# --execute` (which is also `nbimages verify --execute`) take the same options.
EXECUTE_OPTIONS = (
    arg("--timeout", type=float, default=600, metavar="S",
        help="seconds a cell may run before it is interrupted (600)"),
    arg("--ignore-cell", action="append", default=[], metavar="N", dest="ignore_cells",
        help="run cell N (from 1, markdown cells included; or a cell id) but do not compare it; "
             "cells tagged nbimages-volatile are ignored too"),
)

SOURCE = arg("source", metavar="SOURCE",
             help="the image: transport:reference, a store name, or a variable holding an Image")
PLATFORM = arg("--platform", metavar="OS/ARCH[/VARIANT]", default=None,
               help="which image of a multi-platform index (default: this machine's)")
# Options of the views of an image (`%image files|sizes|diff`, `nbimages inspect --files ...`).
LAYER = arg("--layer", type=int, default=None, metavar="N", help="only layer N (0 is the base)")
FINAL = arg("--final", action="store_true", help="the final filesystem instead: one row per path")
DEPTH = arg("--depth", type=int, default=2, metavar="N", help="directory depth to group by (default 2)")
CONTENT = arg("--content", action="store_true",
              help="also compare the bytes of files whose metadata is equal (reads them)")
# Options of a build (`%image build|dockerfile`, `nbimages build`) and of writing an image out.
BUILD_ENGINE = arg("--engine", choices=["embedded", "docker", "auto"], default=None,
                   help="build with the embedded builder (default, no daemon) or the Docker "
                        "engine (for RUN)")
BUILD_ARG = arg("--build-arg", action="append", default=[], metavar="K=V", dest="build_args",
                help="a Dockerfile ARG value (repeat for more)")
COMPRESSION = arg("--compression", default=None, metavar="NAME",
                  help="layer compression: gzip (default), zstd or none")
SAVE_FORMAT = arg("--format", choices=["docker", "oci", "oci-dir"], default="docker",
                  help="docker: for `docker load` (default); oci: an OCI tar; oci-dir: an OCI layout")


def qualified(option: tuple[tuple[str, ...], dict[str, Any]], condition: str):
    """The same option, its help saying when it applies ("with --files: only layer N")."""
    flags, kw = option
    return flags, {**kw, "help": f"{condition}: {kw.get('help', '')}"}


def add_arguments(parser: argparse.ArgumentParser, *options) -> None:
    """Add options kept as data (`arg(...)`) to an argparse parser."""
    for flags, kw in options:
        parser.add_argument(*flags, **kw)


@dataclass
class Invocation:
    """What a subcommand function receives: parsed options, the cell body and the shell."""

    args: argparse.Namespace
    cell: str | None = None
    shell: Any = None
    cell_id: str | None = None
    execution_count: int | None = None
    raw: str = ""                        # the line after the subcommand name, unsplit
    user_ns: dict[str, Any] = field(default_factory=dict)
    show: Callable[[Any], None] = print  # how a side result (a build report) is shown
    cli: bool = False                    # run as `nbimages NAME ...` from a terminal


@dataclass
class Command:
    name: str
    summary: str
    group: str
    arguments: tuple
    func: Callable[[Invocation], Any]
    cell: str = NO_CELL
    description: str = ""
    epilog: str = ""

    def parser(self, cell_magic: bool = False, prog: str | None = None) -> MagicArgumentParser:
        """The argparse parser of this subcommand, named `prog` (default: as a magic)."""
        prog = prog or f"{CELL_MAGIC if cell_magic or self.cell == CELL_TEXT else MAGIC} {self.name}"
        p = MagicArgumentParser(prog=prog, description=self.description or self.summary,
                                epilog=textwrap.fill(self.epilog, 88) if self.epilog else None)
        add_arguments(p, *self.arguments)
        return p


class CommandTable:
    """The subcommands of `%image`, in the order their groups are shown in the help."""

    def __init__(self, groups: list[tuple[str, str]]):
        self.groups = groups               # (key, title)
        self.commands: dict[str, Command] = {}

    def add(self, name: str, summary: str, *arguments, group: str, cell: str = NO_CELL,
            epilog: str = "") -> Callable:
        """Decorator: register `func(inv) -> value` as subcommand `name`."""
        def register(func: Callable[[Invocation], Any] | None) -> Callable | None:
            doc = (func.__doc__ or "").strip() if func else ""
            self.commands[name] = Command(name, summary, group, tuple(arguments), func, cell, doc,
                                          epilog)
            return func
        return register

    def names(self) -> list[str]:
        return sorted(self.commands)

    def lookup(self, name: str, prog: str = MAGIC) -> Command:
        cmd = self.commands.get(name)
        if cmd is not None:
            return cmd
        close = difflib.get_close_matches(name, self.commands, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"{prog}: unknown subcommand '{name}'.{hint} Known subcommands: "
                         f"{', '.join(self.names())} (see {prog} --help)")

    def help_text(self) -> str:
        lines = [f"{MAGIC} SUBCOMMAND [ARGS]   container images in the notebook",
                 f"{CELL_MAGIC} SUBCOMMAND [ARGS]  the same, with the cell body as input",
                 ""]
        width = max(len(n) for n in self.commands) + 2
        for key, title in self.groups:
            cmds = [c for c in self.commands.values() if c.group == key]
            if not cmds:
                continue
            lines.append(title)
            for c in cmds:
                cell = f" [{CELL_MAGIC}]" if c.cell == CELL_TEXT else ""
                lines.append(f"  {c.name:<{width}}{c.summary}{cell}")
            lines.append("")
        lines.append(SOURCE_NOTE)
        lines.append(f"{MAGIC} SUBCOMMAND --help explains one subcommand.")
        return "\n".join(lines)


def split_line(line: str, prog: str = MAGIC) -> list[str]:
    """shlex-split a magic line; an unbalanced quote is a UsageError."""
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as e:
        raise UsageError(f"{prog}: cannot parse the line ({e}): {line.strip()}") from None


def cell_lines(cell: str | None) -> list[str]:
    """Arguments from a cell body: one per line, blank lines and # comments dropped."""
    out: list[str] = []
    for line in (cell or "").splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def rest_after(line: str, word: str) -> str:
    """The text of `line` after its first word `word` (to keep JSON or quotes verbatim)."""
    stripped = line.lstrip()
    return stripped[len(word):].strip() if stripped.startswith(word) else stripped


def pairs(items: list[str], what: str, prog: str = MAGIC) -> dict[str, str]:
    """K=V words (from the line, the cell's lines or repeated options) as a dict; a bare word
    or an empty key is a UsageError. The one K=V parser of the magics, the CLI and replay."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{prog} {what}: {item!r} is not KEY=VALUE")
        out[key.strip()] = value
    return out


@dataclass
class Call:
    """A `%image` line (and cell body) parsed against a table: what dispatch runs."""

    command: Command | None            # None: the help was asked for and printed
    args: argparse.Namespace | None = None
    raw: str = ""


def prepare(table: CommandTable, line: str, cell: str | None = None) -> Call:
    """Split and parse one `%image` call as the magic reads it (used by the magics and by the
    notebook replay alike): help, unknown subcommands, cell-body rules, options."""
    prog = CELL_MAGIC if cell is not None else MAGIC
    words = split_line(line, prog)
    if not words or words[0] in ("-h", "--help"):
        print(table.help_text())
        return Call(None)
    if words[0] == "help":
        if len(words) == 1:
            print(table.help_text())
            return Call(None)
        words = [words[1], "--help"]
    if words[0].startswith("-"):
        raise UsageError(f"{prog}: unknown option '{words[0]}' before the subcommand; write "
                         f"{prog} SUBCOMMAND [ARGS] (see {MAGIC} --help)")
    cmd = table.lookup(words[0], prog)
    rest = words[1:]
    asks_help = bool({"-h", "--help"} & set(rest))
    if cell is not None:
        if cmd.cell == NO_CELL and cell.strip():
            raise UsageError(f"{CELL_MAGIC} {cmd.name} takes no cell body; write it as a line "
                             f"magic: {MAGIC} {cmd.name} ...")
        if cmd.cell == CELL_ARGS:
            rest += cell_lines(cell)
    elif cmd.cell == CELL_TEXT and not asks_help:
        raise UsageError(f"{MAGIC} {cmd.name} needs a cell body: put {CELL_MAGIC} {cmd.name} ... on "
                         "the first line of a cell and the text below it")
    raw = rest_after(line, words[0])
    try:
        ns = cmd.parser(cell is not None).parse_args(rest)
    except HelpShown:
        return Call(None)
    return Call(cmd, ns, raw)

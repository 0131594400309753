"""`%load_ext nbimages`: the `%image` line magic and the `%%image` cell magic.

Both dispatch through the subcommand table in commands.py. A usage mistake is one UsageError
line; an NbimagesError from the API (bad reference, no engine, ...) is shown as one red
paragraph naming the error, without a traceback, and still fails the cell so "Run All" stops
there. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import TryNext, UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import NbimagesError, os_errors
from .commands import TABLE
from .completion import complete_line
from .parsing import (CELL_ARGS, CELL_MAGIC, CELL_TEXT, MAGIC, NO_CELL, HelpShown, Invocation,
                      cell_lines, rest_after, split_line)

RED, RESET = "\x1b[31m", "\x1b[0m"
MATCHER_ID = "nbimages.image_matcher"


def short_error(err: NbimagesError) -> NbimagesError:
    """Make IPython show `err` as one red paragraph instead of a traceback.

    IPython renders an exception through its `_render_traceback_` when it has one; the
    exception keeps its class, so `except NbimagesError` around run_line_magic still works.
    """
    text = f"{RED}{type(err).__name__}: {err}{RESET}"
    err._render_traceback_ = lambda: [text]  # type: ignore[attr-defined]
    return err


@magics_class
class ImageMagics(Magics):
    """Container images in the notebook. `%image --help` lists the subcommands."""

    def __init__(self, shell: Any):
        super().__init__(shell)
        self.cell_id: str | None = None

    def pre_run_cell(self, info: Any) -> None:
        """Remember the running cell's id (JupyterLab sends it; other frontends may not)."""
        self.cell_id = getattr(info, "cell_id", None)

    @line_cell_magic
    def image(self, line: str, cell: str | None = None) -> Any:
        return self.dispatch(line, cell)

    def dispatch(self, line: str, cell: str | None = None) -> Any:
        """Parse `line` (and the cell body), run the subcommand, return its value."""
        prog = CELL_MAGIC if cell is not None else MAGIC
        words = split_line(line, prog)
        if not words or words[0] in ("-h", "--help"):
            print(TABLE.help_text())
            return None
        if words[0] == "help":
            if len(words) == 1:
                print(TABLE.help_text())
                return None
            words = [words[1], "--help"]
        if words[0].startswith("-"):
            raise UsageError(f"{prog}: unknown option '{words[0]}' before the subcommand; write "
                             f"{prog} SUBCOMMAND [ARGS] (see {MAGIC} --help)")
        cmd = TABLE.lookup(words[0], prog)
        rest = words[1:]
        if not cmd.available:
            if "-h" in rest or "--help" in rest:
                print(f"{prog} {cmd.name}: {cmd.summary}\n\nNot available yet in this version of nbimages.")
                return None
            missing = ", ".join(f"nbimages.{n}" for n in cmd.missing_api())
            raise UsageError(f"{prog} {cmd.name} is not available yet in this version of nbimages "
                             f"(it needs {missing}). See {MAGIC} --help for what is.")
        if cell is not None:
            if cmd.cell == NO_CELL and cell.strip():
                raise UsageError(f"{CELL_MAGIC} {cmd.name} takes no cell body; write it as a line "
                                 f"magic: {MAGIC} {cmd.name} ...")
            if cmd.cell == CELL_ARGS:
                rest += cell_lines(cell)
        elif cmd.cell == CELL_TEXT and not ({"-h", "--help"} & set(rest)):
            raise UsageError(f"{MAGIC} {cmd.name} needs a cell body: put {CELL_MAGIC} {cmd.name} ... on "
                             "the first line of a cell and the text below it")
        try:
            ns = cmd.parser(cell is not None).parse_args(rest)
        except HelpShown:
            return None
        inv = Invocation(ns, cell, self.shell, self.cell_id,
                         getattr(self.shell, "execution_count", None),
                         rest_after(line, words[0]), self.shell.user_ns if self.shell else {})
        try:
            with os_errors():  # no space, permission denied, read-only: one paragraph too
                return cmd.func(inv)  # type: ignore[misc]
        except NbimagesError as err:
            raise short_error(err) from None

    # -- tab completion ------------------------------------------------------------------------
    def complete(self, event: Any) -> list[str]:
        """The `complete_command` hook (IPython < 8.6): same answers as the v2 matcher.

        The hook must return words starting with IPython's token, which stops at ':' (so
        `store:de` is the token `de`): strip the part of our word before that token.
        """
        found = complete_line(event.text_until_cursor, self.shell.user_ns if self.shell else {})
        if found is None:
            raise TryNext()
        word, matches = found
        if not matches:
            raise TryNext()
        symbol = event.symbol or ""
        cut = len(word) - len(symbol) if word.endswith(symbol) else 0
        return [m.text[cut:] for m in matches]


def image_matcher(shell: Any) -> Any:
    """A Matcher API v2 matcher for `%image` lines that hides every other matcher's results
    (Jedi would list ~200 builtins after `--`); None when this IPython lacks the v2 API (< 8.6).
    """
    try:
        from IPython.core.completer import SimpleCompletion, context_matcher
    except ImportError:
        return None

    @context_matcher(priority=100, identifier=MATCHER_ID)
    def matcher(context: Any) -> dict[str, Any]:
        found = complete_line(context.text_until_cursor, shell.user_ns)
        if found is None:
            return {"completions": [], "suppress": False}
        word, matches = found
        # matched_fragment: our word (`store:de`) replaces IPython's token (`de`, ':' splits it).
        return {"completions": [SimpleCompletion(m.text, type=m.type) for m in matches],
                "matched_fragment": word, "suppress": True, "ordered": True}

    return matcher


_loaded: dict[int, ImageMagics] = {}


def load_ipython_extension(ipython: Any) -> None:
    """Register %image / %%image, their tab completion and the cell-id tracking."""
    magics = ImageMagics(ipython)
    ipython.register_magics(magics)
    magics.image.__func__.__doc__ = TABLE.help_text()  # `%image?` shows the subcommands
    matcher = image_matcher(ipython)
    completer = getattr(ipython, "Completer", None)
    if matcher is not None and completer is not None:
        completer.custom_matchers.append(matcher)
    else:
        def hook(_shell: Any, event: Any) -> list[str]:  # set_hook binds hooks to the shell
            return magics.complete(event)

        for key in (MAGIC, CELL_MAGIC):
            ipython.set_hook("complete_command", hook, str_key=key)
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    _loaded[id(ipython)] = magics


def unload_ipython_extension(ipython: Any) -> None:
    """Remove what load_ipython_extension registered (for %reload_ext)."""
    magics = _loaded.pop(id(ipython), None)
    if magics is None:
        return
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("image", None)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:
        completer.custom_matchers[:] = [m for m in completer.custom_matchers
                                        if getattr(m, "matcher_identifier", None) != MATCHER_ID]
    dispatcher = ipython.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in (MAGIC, CELL_MAGIC):
            dispatcher.strs.pop(key, None)
    try:
        ipython.events.unregister("pre_run_cell", magics.pre_run_cell)
    except ValueError:
        pass


__all__ = ["ImageMagics", "image_matcher", "load_ipython_extension", "unload_ipython_extension", "short_error"]

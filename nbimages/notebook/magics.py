"""`%load_ext nbimages`: the `%image` line magic and the `%%image` cell magic.

Both dispatch through the subcommand table in commands.py. A usage mistake is one UsageError
line; an NbimagesError from the API (bad reference, no engine, ...) is shown as one red
paragraph naming the error, without a traceback, and still fails the cell so "Run All" stops
there. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

from IPython.core.completer import SimpleCompletion, context_matcher
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from ..commands.parsing import Invocation, UsageError as CommandUsageError, prepare
from ..commands.verbs import TABLE
from ..errors import NbimagesError, os_errors
from ..workflow import session
from .completion import complete_line

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
        self.execution_count: int | None = None

    def pre_run_cell(self, info: Any) -> None:
        """Remember the running cell's id (JupyterLab sends it; other frontends may not) and
        its `In [n]`: IPython has already counted the cell when this event fires."""
        self.cell_id = getattr(info, "cell_id", None)
        count = getattr(self.shell, "execution_count", None)
        stored = getattr(info, "store_history", False)
        self.execution_count = count - 1 if stored and isinstance(count, int) else count
        session.current().begin_cell(self.cell_id)

    def post_run_cell(self, result: Any) -> None:
        """A cell that ran again without describing a step loses its old steps."""
        for step in session.current().end_cell(self.cell_id):
            print(f"nbimages: this cell no longer describes `{step.describe()}`; the step is "
                  "dropped from the recipe.")
        self.execution_count = None

    @line_cell_magic
    def image(self, line: str, cell: str | None = None) -> Any:
        return self.dispatch(line, cell)

    def dispatch(self, line: str, cell: str | None = None) -> Any:
        """Parse `line` (and the cell body), run the subcommand, return its value."""
        try:
            call = prepare(TABLE, line, cell)
            if call.command is None:
                return None  # --help was printed
            count = self.execution_count if self.execution_count is not None else \
                getattr(self.shell, "execution_count", None)
            inv = Invocation(call.args, cell, self.shell, self.cell_id, count, call.raw,
                             self.shell.user_ns if self.shell else {}, show=display)
            with os_errors():  # no space, permission denied, read-only: one paragraph too
                return call.command.func(inv)
        except CommandUsageError as err:
            raise UsageError(str(err)) from None
        except NbimagesError as err:
            raise short_error(err) from None

def image_matcher(shell: Any) -> Any:
    """A Matcher API v2 matcher for `%image` lines that hides every other matcher's results
    (Jedi would list ~200 builtins after `--`)."""
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
    completer = getattr(ipython, "Completer", None)
    if completer is not None:  # a shell without completion (a bare InteractiveShell) has none
        completer.custom_matchers.append(image_matcher(ipython))
    ipython.events.register("pre_run_cell", magics.pre_run_cell)
    ipython.events.register("post_run_cell", magics.post_run_cell)
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
    for event, handler in (("pre_run_cell", magics.pre_run_cell),
                           ("post_run_cell", magics.post_run_cell)):
        try:
            ipython.events.unregister(event, handler)
        except ValueError:
            pass


__all__ = ["ImageMagics", "image_matcher", "load_ipython_extension", "unload_ipython_extension", "short_error"]

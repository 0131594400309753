"""The notebook's build session, without IPython: one current recipe per kernel, steps by cell.

The `%image` magics (nbimages.notebook) are thin parsers in front of these calls:

    s = session.current()
    s.start("python:3.12-slim", cell_id=..., execution_count=...)      # %image from REF
    s.add("file", "/app/clean.py", cell_text, cell_id=..., execution_count=...)  # %%image file
    s.add("pip", "pandas==2.2.3", cell_id=..., execution_count=...)    # %image pip ...
    s.add("env", {"A": "1"}, cell_id=..., ...)                         # %image env A=1
    img = s.build("handout:1")          # %image build TAG  (img.build_report: the table)
    s.recipe                            # %image recipe     (rich repr: steps + Dockerfile)
    s.dockerfile(cell_text, "tag", cell_id=...)                        # %%image dockerfile

Re-running a cell replaces that cell's steps in place (steps are keyed by cell id); a cell
may hold several `%image` lines: the calls of one execution (same execution_count) become
consecutive steps, and a re-run replaces them all. A step from a cell never run before is
appended at the end (the kernel does not know where the cell sits in the notebook). Only the
layers whose inputs changed are rebuilt.

The recipe follows the notebook: a cell that runs again without any `%image` step (its text
re-purposed, or its new step rejected) loses its old steps (`begin_cell`/`end_cell`, called
by the magics around each cell), and before a build the steps of cells no longer in the
saved notebook file are dropped (`prune`), each named in a note of the build.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..builder.dockerfile import build_dockerfile, build_naming_lines, parse_dockerfile
from ..builder.recipe import Recipe
from ..builder.steps import Step
from ..errors import BuildError


class Session:
    """The current recipe of one kernel and the bookkeeping that maps cells to steps."""

    def __init__(self) -> None:
        self._recipe: Recipe | None = None
        self._from_cell: str | None = None
        self._last_cell: tuple[str, Any] | None = None  # (cell id, execution count) of last add
        self._running: str | None = None  # the cell now running (begin_cell)
        self._touched = False  # the running cell added a step or started a recipe
        self._added_at: dict[str, float] = {}  # cell id -> when it last added a step
        self.last_image = None

    @property
    def recipe(self) -> Recipe:
        """The current recipe; BuildError if `%image from` has not run yet."""
        if self._recipe is None:
            raise BuildError("no recipe yet: start one with `%image from IMAGE` (or "
                             "`%image from scratch`), then add steps.")
        return self._recipe

    @property
    def started(self) -> bool:
        return self._recipe is not None

    def start(self, base: str, *, cell_id: str | None = None, execution_count: Any = None,
              context: str | os.PathLike | None = None, platform: str | None = None,
              compression: str | None = None) -> Recipe:
        """`%image from REF`. Re-running the same cell keeps the steps and changes the base;
        a `from` in another cell starts a new recipe."""
        same_cell = cell_id is not None and cell_id == self._from_cell and self._recipe is not None
        recipe = Recipe(base, context=context or ".", platform=platform, compression=compression)
        if same_cell:
            old = self._recipe
            assert old is not None
            recipe.steps = old.steps
            if old.base == recipe.base and old.platform == recipe.platform \
                    and old.platforms == recipe.platforms:
                recipe._base_image = old._base_image  # noqa: SLF001 - same base, keep it open
        self._recipe = recipe
        self._from_cell = cell_id
        self._last_cell = None
        self._touch(cell_id)
        return recipe

    def _touch(self, cell_id: str | None) -> None:
        if cell_id is not None:
            self._added_at[cell_id] = time.time()
            if cell_id == self._running:
                self._touched = True

    # ---- the recipe follows the notebook
    def begin_cell(self, cell_id: str | None) -> None:
        """A cell starts running (the magics call this from IPython's pre_run_cell)."""
        self._running = cell_id
        self._touched = False

    def end_cell(self, cell_id: str | None) -> list[Step]:
        """A cell finished: if it ran without describing a step, its old steps go (the cell
        was re-purposed, or its new step was rejected). Returns the dropped steps."""
        touched, self._running, self._touched = self._touched, None, False
        if cell_id is None or touched or self._recipe is None:
            return []
        dropped = [s for s in self._recipe.steps if s.key == cell_id]
        if dropped:
            self._recipe.drop(cell_id)
        return dropped

    def prune(self, notebook: str | os.PathLike | None) -> list[str]:
        """Drop the steps of cells that are no longer in the saved `notebook` file.

        Only steps added before the file was last saved are judged (a cell run since may not
        be saved yet). Returns one note per dropped step, for the build to show.
        """
        if notebook is None or self._recipe is None:
            return []
        path = Path(notebook)
        try:
            saved_at = path.stat().st_mtime
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError, AttributeError):
            return []  # not a notebook we can read: judge nothing
        ids = {c.get("id") for c in cells if isinstance(c, dict)}
        notes = []
        keep = []
        for i, step in enumerate(self._recipe.steps):
            gone = (step.key is not None and step.key not in ids
                    and self._added_at.get(step.key, 0) < saved_at)
            if gone:
                notes.append(f"dropped step {i + 1} ({step.describe()}): its cell "
                             f"{step.cell or step.key} is no longer in {path.name}")
            else:
                keep.append(step)
        self._recipe.steps = keep
        return notes

    def remove(self, which: str) -> list[Step]:
        """`%image recipe --remove N|CELL`: drop step number N, or every step of a cell
        (by its id, or its `In [n]` number as shown by `%image recipe`)."""
        steps = self.recipe.steps
        text = which.strip()
        if text.isdigit() and 1 <= int(text) <= len(steps):
            return [steps.pop(int(text) - 1)]
        if text.startswith("#") and text[1:].isdigit() and 1 <= int(text[1:]) <= len(steps):
            return [steps.pop(int(text[1:]) - 1)]
        cell = text.removeprefix("In [").removesuffix("]").strip()
        gone = [s for s in steps if s.key == text or str(s.origin) == cell]
        if not gone:
            raise BuildError(f"the recipe has no step {which!r}: give a step number (1 to "
                             f"{len(steps)}) or a cell as `%image recipe` shows them.")
        self.recipe.steps = [s for s in steps if s not in gone]
        return gone

    def add(self, kind: str, *args: Any, cell_id: str | None = None,
            execution_count: Any = None, **kwargs: Any) -> Step:
        """Add a step made by `Recipe.step(kind, *args, **kwargs)` for a cell.

        Keyword names of the step itself (e.g. env vars) go in a dict positional argument
        when they clash with `cell_id` / `execution_count`.
        """
        recipe = self.recipe
        step = Recipe.step(kind, *args, **kwargs)
        if kind == "pip":
            recipe.check_pip(step)  # a requirement that does not resolve fails in its cell
        self._touch(cell_id)
        step.key = cell_id
        step.origin = execution_count
        if cell_id is None:
            recipe.steps.append(step)
            return step
        this = (cell_id, execution_count)
        mine = [i for i, s in enumerate(recipe.steps) if s.key == cell_id]
        if self._last_cell == this and mine:
            # another %image line of the same execution: right after the previous one
            recipe.steps.insert(mine[-1] + 1, step)
        elif mine:
            # the cell runs again: its first step takes the old place, the old ones go
            first = mine[0]
            recipe.steps = [s for i, s in enumerate(recipe.steps) if i not in mine[1:]]
            recipe.steps[first] = step
        else:
            recipe.steps.append(step)
        self._last_cell = this
        return step

    def drop_cell(self, cell_id: str) -> bool:
        """Forget the steps of a cell (deleted from the notebook)."""
        return self.recipe.drop(cell_id)

    def build(self, tag: str | None = None, **kwargs: Any):
        """`%image build TAG`: build the current recipe; the image carries `.build_report`."""
        image = self.recipe.build(tag, **kwargs)
        self.last_image = image
        return image

    def dockerfile(self, text: str, tag: str | None = None, *, cell_id: str | None = None,
                   execution_count: Any = None, context: str | os.PathLike = ".",
                   build_args: dict | None = None, **kwargs: Any):
        """`%%image dockerfile [TAG]`: the cell is a Dockerfile; build it and make it current."""
        recipe = parse_dockerfile(text, context=context, build_args=build_args)
        lines = [s.origin for s in recipe.steps]
        for step in recipe.steps:
            step.key = cell_id
            step.origin = execution_count if execution_count is not None else step.origin
        self._recipe = recipe
        self._from_cell = cell_id
        self._last_cell = None
        self._touch(cell_id)
        if any(s.kind == "run" for s in recipe.steps) and kwargs.get("engine") in (None, "embedded"):
            return build_dockerfile(text, tag, context, build_args=build_args, **kwargs)
        return build_naming_lines(recipe, lambda: self.build(tag, **kwargs), lines)

    def reset(self) -> None:
        """Forget the current recipe."""
        self.__init__()


_current: Session | None = None


def current() -> Session:
    """The kernel's session (one per process)."""
    global _current
    if _current is None:
        _current = Session()
    return _current


def reset() -> None:
    global _current
    _current = None

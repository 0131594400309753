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
"""

from __future__ import annotations

import os
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
        return recipe

    def add(self, kind: str, *args: Any, cell_id: str | None = None,
            execution_count: Any = None, **kwargs: Any) -> Step:
        """Add a step made by `Recipe.step(kind, *args, **kwargs)` for a cell.

        Keyword names of the step itself (e.g. env vars) go in a dict positional argument
        when they clash with `cell_id` / `execution_count`.
        """
        recipe = self.recipe
        step = Recipe.step(kind, *args, **kwargs)
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
